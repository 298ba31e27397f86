//! The background refresh of GitHub users' organisations and teams, and
//! the encrypted store of the GitHub tokens it uses.
//!
//! Never per request: a task looks for GitHub users whose groups are older
//! than the maximum age (plus a per-user jitter), re-reads their
//! organisations and teams with their stored token, re-applies the access
//! mode, and stores the new groups. 401/404 from GitHub (token revoked,
//! user gone) or losing access revokes all the user's Paddock tokens;
//! 5xx, timeouts and rate limits keep the last known groups and retry
//! with backoff (until the rate limit's reset at the earliest).

use std::{
    io::Write,
    path::{Path, PathBuf},
};

/// GitHub tokens sealed by [`super::GithubProvider::seal_token`], one file
/// per user (mode 0600) under `<data dir>/github-tokens/`.
#[derive(Debug, Clone)]
pub struct TokenVault {
    dir: PathBuf,
}

impl TokenVault {
    /// The vault of the data directory `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("github-tokens"),
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
