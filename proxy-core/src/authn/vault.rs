//! The store of provider tokens (GitHub access tokens, OpenID Connect
//! refresh tokens), sealed by the provider, that the background refresh
//! reads users' groups with.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// Sealed provider tokens, one file per user (mode 0600) in one directory
/// per provider (`<data dir>/github-tokens/`, `<data dir>/oidc-tokens/<name>/`).
#[derive(Debug, Clone)]
pub struct TokenVault {
    dir: PathBuf,
}

impl TokenVault {
    /// The vault in directory `dir` (created with the first token).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn path(&self, user_id: &str) -> Option<PathBuf> {
        // User ids are `u-` and base32; anything else never names a file.
        user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            .then(|| self.dir.join(user_id))
    }

    /// Stores the sealed token of `user_id`, replacing any. Blocking.
    pub fn put(&self, user_id: &str, sealed: &str) -> std::io::Result<()> {
        let path = self
            .path(user_id)
            .ok_or_else(|| std::io::Error::other("invalid user id"))?;
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(sealed.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// The sealed token of `user_id`, if stored. Blocking.
    pub fn get(&self, user_id: &str) -> Option<String> {
        std::fs::read_to_string(self.path(user_id)?).ok()
    }

    /// Forgets the token of `user_id`. Blocking.
    pub fn remove(&self, user_id: &str) {
        if let Some(path) = self.path(user_id) {
            let _ = std::fs::remove_file(path);
        }
    }
}
