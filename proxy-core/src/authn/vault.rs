//! Where providers keep their users' tokens (GitHub access tokens, OpenID
//! Connect refresh tokens) for the background refresh of their groups.
//!
//! A provider seals and opens ([`TokenVault`], with the key of
//! [`Sealer::for_provider_tokens`]); where the sealed blobs live is not its
//! business: the wiring hands it a [`SealedTokens`] (the accounts wing's is the
//! shared store, so the replica elected to refresh reads the token of a user
//! who logged in on another one). Providers never see the store.

use std::{path::Path, sync::Arc};

use secrecy::{ExposeSecret, SecretString};

use super::seal::Sealer;

/// Why a sealed token could not be kept or forgotten.
#[derive(Debug, Clone, thiserror::Error)]
#[error("keeping the provider token failed: {0}")]
pub struct VaultError(pub String);

/// Sealed provider tokens, one per provider and user: what a [`TokenVault`]
/// stores its ciphertext in. Only sealed values ever pass through it.
/// Blocking (a store commit); callers on a runtime use `spawn_blocking`.
pub trait SealedTokens: Send + Sync {
    /// `provider`'s sealed token of `user_id`, if kept.
    fn get(&self, provider: &str, user_id: &str) -> Option<String>;

    /// Keeps `sealed` as `provider`'s token of `user_id`, replacing any.
    fn put(&self, provider: &str, user_id: &str, sealed: String) -> Result<(), VaultError>;

    /// Forgets `provider`'s token of `user_id` (absent is fine).
    fn remove(&self, provider: &str, user_id: &str) -> Result<(), VaultError>;
}

/// One provider's kept tokens: sealed under the shared key, bound to the
/// provider, the token's purpose and the user (a sealed token copied to
/// another user's record does not open), stored in a [`SealedTokens`].
#[derive(Clone)]
pub struct TokenVault {
    tokens: Arc<dyn SealedTokens>,
    sealer: Arc<Sealer>,
    provider: String,
}

impl std::fmt::Debug for TokenVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVault")
            .field("provider", &self.provider)
            .finish_non_exhaustive()
    }
}

impl TokenVault {
    /// `provider`'s vault: tokens sealed with `sealer`, kept in `tokens`.
    pub fn new(tokens: Arc<dyn SealedTokens>, sealer: Arc<Sealer>, provider: &str) -> Self {
        Self {
            tokens,
            sealer,
            provider: provider.to_owned(),
        }
    }

    fn binding(&self, purpose: &str, user_id: &str) -> String {
        format!("{}\0{purpose}\0{user_id}", self.provider)
    }

    fn seal(&self, purpose: &str, user_id: &str, token: &SecretString) -> String {
        self.sealer.seal(
            &self.binding(purpose, user_id),
            token.expose_secret().as_bytes(),
        )
    }

    /// Keeps `token` of `user_id`, sealed; `purpose` names what it is
    /// (`github access token`).
    pub async fn keep(
        &self,
        purpose: &str,
        user_id: &str,
        token: &SecretString,
    ) -> Result<(), VaultError> {
        let sealed = self.seal(purpose, user_id, token);
        let (tokens, provider, user) = (
            self.tokens.clone(),
            self.provider.clone(),
            user_id.to_owned(),
        );
        tokio::task::spawn_blocking(move || tokens.put(&provider, &user, sealed))
            .await
            .map_err(|e| VaultError(e.to_string()))?
    }

    /// The token of `user_id` kept for `purpose`, if any and if it opens
    /// (it does not after the pepper changed: the user logs in again).
    pub async fn token(&self, purpose: &str, user_id: &str) -> Option<SecretString> {
        let (tokens, provider, user) = (
            self.tokens.clone(),
            self.provider.clone(),
            user_id.to_owned(),
        );
        let sealed = tokio::task::spawn_blocking(move || tokens.get(&provider, &user))
            .await
            .ok()??;
        let plain = self
            .sealer
            .open(&self.binding(purpose, user_id), sealed.trim())?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }

    /// Forgets the token of `user_id`. Blocking.
    pub fn forget(&self, user_id: &str) {
        if let Err(error) = self.tokens.remove(&self.provider, user_id) {
            tracing::warn!(auth.provider = %self.provider, auth.user = %user_id, %error, "forgetting the provider token failed");
        }
    }

    /// Moves the tokens an earlier Paddock kept in `dir` (one file per user,
    /// sealed with the provider's own key, which `open` undoes) into this
    /// vault, so nobody loses their refresh on upgrade. A token already in
    /// the vault is newer (a login since) and stays. Each imported file is
    /// removed, then the directory if empty; a file that does not open is
    /// left alone. Returns how many were imported. Blocking.
    pub fn import_files(
        &self,
        purpose: &str,
        dir: &Path,
        open: impl Fn(&str) -> Option<SecretString>,
    ) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        let mut imported = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(user_id) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // User ids are `u-` and base32; anything else (a `.tmp`) is not a token.
            if !user_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                continue;
            }
            let Some(token) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|sealed| open(sealed.trim()))
            else {
                tracing::warn!(auth.provider = %self.provider, file = %path.display(), "a kept token from an earlier version does not open; left in place");
                continue;
            };
            let kept = match self.tokens.get(&self.provider, user_id) {
                Some(_) => Ok(()),
                None => {
                    self.tokens
                        .put(&self.provider, user_id, self.seal(purpose, user_id, &token))
                }
            };
            match kept {
                Ok(()) => {
                    imported += 1;
                    let _ = std::fs::remove_file(&path);
                }
                Err(error) => {
                    tracing::warn!(auth.provider = %self.provider, %error, "importing a kept token failed; the file stays");
                }
            }
        }
        // Only when empty: what did not move stays where it was.
        let _ = std::fs::remove_dir(dir);
        if imported > 0 {
            tracing::info!(auth.provider = %self.provider, imported, from = %dir.display(), "provider tokens moved into the store");
        }
        imported
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::{collections::HashMap, sync::Mutex};

    /// Sealed tokens in memory, for providers' tests.
    #[derive(Default)]
    pub(crate) struct Memory(Mutex<HashMap<(String, String), String>>);

    impl SealedTokens for Memory {
        fn get(&self, provider: &str, user_id: &str) -> Option<String> {
            let map = self.0.lock().unwrap();
            map.get(&(provider.to_owned(), user_id.to_owned())).cloned()
        }
        fn put(&self, provider: &str, user_id: &str, sealed: String) -> Result<(), VaultError> {
            let mut map = self.0.lock().unwrap();
            map.insert((provider.to_owned(), user_id.to_owned()), sealed);
            Ok(())
        }
        fn remove(&self, provider: &str, user_id: &str) -> Result<(), VaultError> {
            let mut map = self.0.lock().unwrap();
            map.remove(&(provider.to_owned(), user_id.to_owned()));
            Ok(())
        }
    }

    fn vault(memory: &Arc<Memory>, provider: &str) -> TokenVault {
        let sealer = Sealer::new(&SecretString::from("shared key"));
        TokenVault::new(memory.clone(), Arc::new(sealer), provider)
    }

    #[tokio::test]
    async fn only_ciphertext_is_kept_and_it_opens_only_for_its_provider_user_and_purpose() {
        let memory = Arc::new(Memory::default());
        let github = vault(&memory, "github");
        let token = SecretString::from("gho_secret");
        github.keep("access", "u-a", &token).await.unwrap();
        let stored = memory.get("github", "u-a").unwrap();
        assert!(!stored.contains("gho_secret"));
        let got = github.token("access", "u-a").await.unwrap();
        assert_eq!(got.expose_secret(), "gho_secret");
        assert!(github.token("refresh", "u-a").await.is_none());
        // The blob copied onto another user, or another provider, does not open.
        memory.put("github", "u-b", stored.clone()).unwrap();
        assert!(github.token("access", "u-b").await.is_none());
        memory.put("corp", "u-a", stored).unwrap();
        assert!(vault(&memory, "corp")
            .token("access", "u-a")
            .await
            .is_none());
        github.forget("u-a");
        assert!(github.token("access", "u-a").await.is_none());
    }

    #[test]
    fn files_of_an_earlier_version_are_imported_once_and_removed() {
        let memory = Arc::new(Memory::default());
        let github = vault(&memory, "github");
        let old = Sealer::new(&SecretString::from("the old per-replica key"));
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("github-tokens");
        std::fs::create_dir(&tokens).unwrap();
        std::fs::write(tokens.join("u-old"), old.seal("p", b"gho_old")).unwrap();
        std::fs::write(tokens.join("u-newer"), old.seal("p", b"gho_stale")).unwrap();
        std::fs::write(tokens.join("u-bad"), "not sealed").unwrap();
        // u-newer logged in since the upgrade: the store's token is newer.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(github.keep("access", "u-newer", &SecretString::from("gho_new")))
            .unwrap();
        let open = |sealed: &str| {
            old.open("p", sealed)
                .map(|p| SecretString::from(String::from_utf8(p).unwrap()))
        };
        assert_eq!(github.import_files("access", &tokens, open), 2);
        let token = |user| runtime.block_on(github.token("access", user));
        assert_eq!(token("u-old").unwrap().expose_secret(), "gho_old");
        assert_eq!(token("u-newer").unwrap().expose_secret(), "gho_new");
        assert!(token("u-bad").is_none());
        // What moved is gone; what did not open stays.
        assert!(!tokens.join("u-old").exists());
        assert!(tokens.join("u-bad").exists());
        assert_eq!(github.import_files("access", &tokens, open), 0);
    }
}
