//! Accounts: local users, sessions and Paddock-issued tokens over the store,
//! in one place. The login, kubeconfig and admin endpoints and the `paddock
//! user|token|kubeconfig` commands all go through [`Accounts`], so a server
//! and a CLI writing the same data directory apply the same rules.
//!
//! ```no_run
//! use proxy_core::accounts::{Accounts, AccountsOptions};
//!
//! let accounts = Accounts::open("./paddock-data".as_ref(), AccountsOptions::default())?;
//! if let Some(admin) = accounts.bootstrap()? {
//!     eprintln!("admin password: see {}", admin.password_file.display());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{path::Path, sync::Arc, time::Duration};

use crate::{
    authn::{
        local::{
            bootstrap_admin, BootstrapAdmin, BootstrapError, LocalProvider, LoginThrottle,
            PasswordError, PasswordHasher, PasswordParams, PasswordPolicy, ThrottleConfig,
        },
        tokens::{
            self, IssueError, IssuedToken, LastUsed, NewToken, Pepper, StoreTokens, TokenHasher,
            TokenPolicy,
        },
    },
    store::{EmbeddedOptions, EmbeddedStore, Store, StoreError, StoreView, Timestamp},
};

/// The pepper's file in the data directory.
pub const PEPPER_FILE: &str = "token-pepper";

/// How often the server looks for other processes' commits (the CLI's).
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Last-used times reach the store at most this often per token.
const LAST_USED_INTERVAL: Duration = Duration::from_secs(60);
/// How often expired tokens are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Settings of [`Accounts`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct AccountsOptions {
    /// argon2id parameters for new password hashes.
    pub password_params: PasswordParams,
    /// What a new password must satisfy.
    pub password_policy: PasswordPolicy,
    /// Token lifetimes per kind.
    pub token_policy: TokenPolicy,
    /// Login throttling.
    pub throttle: ThrottleConfig,
}

/// Why [`Accounts`] could not be opened or bootstrapped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountsError {
    /// The store refused to open (corrupt, newer, locked) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The pepper file could not be read or created.
    #[error("token pepper {path}: {detail}")]
    Pepper {
        /// The file.
        path: String,
        /// What failed.
        detail: String,
    },
    /// The password settings are weaker than allowed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// Creating the bootstrap admin failed.
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
}

/// Users, passwords and tokens over one store.
pub struct Accounts {
    view: Arc<StoreView>,
    data_dir: std::path::PathBuf,
    local: LocalProvider,
    passwords: Arc<PasswordHasher>,
    password_policy: PasswordPolicy,
    token_hasher: Arc<TokenHasher>,
    token_policy: TokenPolicy,
    last_used: Arc<LastUsed>,
    tokens: Arc<StoreTokens>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Accounts {
    /// Opens the embedded store and the token pepper in `data_dir` (created
    /// with mode 0700 when missing). A corrupt or newer store is refused
    /// untouched. Blocking.
    pub fn open(data_dir: &Path, options: AccountsOptions) -> Result<Self, AccountsError> {
        let store = EmbeddedStore::open_in_dir(data_dir, EmbeddedOptions::default())?;
        let pepper_path = data_dir.join(PEPPER_FILE);
        let pepper = Pepper::load_or_create(&pepper_path).map_err(|e| AccountsError::Pepper {
            path: pepper_path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::new(Arc::new(store), &pepper, data_dir, options)
    }

    /// Accounts over any [`Store`] backend. `data_dir` receives the bootstrap
    /// password file. Blocking (loads the store).
    pub fn new(
        store: Arc<dyn Store>,
        pepper: &Pepper,
        data_dir: &Path,
        options: AccountsOptions,
    ) -> Result<Self, AccountsError> {
        let view = StoreView::new(store)?;
        let passwords = Arc::new(PasswordHasher::new(options.password_params)?);
        let throttle = Arc::new(LoginThrottle::new(options.throttle));
        let token_hasher = Arc::new(TokenHasher::new(pepper));
        let last_used = Arc::new(LastUsed::new(LAST_USED_INTERVAL));
        let tokens = Arc::new(StoreTokens::new(
            view.clone(),
            token_hasher.clone(),
            last_used.clone(),
        ));
        Ok(Self {
            local: LocalProvider::new(view.clone(), passwords.clone(), throttle),
            view,
            data_dir: data_dir.to_owned(),
            passwords,
            password_policy: options.password_policy,
            token_hasher,
            token_policy: options.token_policy,
            last_used,
            tokens,
        })
    }

    /// Creates the bootstrap admin on an empty store (see [`bootstrap_admin`]).
    /// Blocking.
    pub fn bootstrap(&self) -> Result<Option<BootstrapAdmin>, AccountsError> {
        Ok(bootstrap_admin(
            &self.view,
            &self.passwords,
            &self.data_dir,
            Timestamp::now(),
        )?)
    }

    /// Starts the server's background work: noticing other processes'
    /// commits, flushing last-used times, purging expired tokens. The tasks
    /// end when `self` is dropped.
    pub fn spawn_background(self: &Arc<Self>) {
        self.view.spawn_poller(POLL_INTERVAL);
        self.last_used
            .spawn_flusher(self.view.clone(), LAST_USED_INTERVAL);
        let view = Arc::downgrade(&self.view);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_INTERVAL);
            loop {
                tick.tick().await;
                let Some(view) = view.upgrade() else { return };
                let purged = tokio::task::spawn_blocking(move || {
                    tokens::purge_expired(&view, Timestamp::now())
                })
                .await;
                match purged {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(tokens = n, "expired tokens purged"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "purging expired tokens failed"),
                    Err(e) => tracing::warn!(error = %e, "token purge task failed"),
                }
            }
        });
    }

    /// The store as the request path reads it.
    pub fn view(&self) -> &Arc<StoreView> {
        &self.view
    }

    /// Local username/password login.
    pub fn local(&self) -> &LocalProvider {
        &self.local
    }

    /// The authenticator for Paddock-issued tokens.
    pub fn tokens(&self) -> &Arc<StoreTokens> {
        &self.tokens
    }

    /// The hasher for new passwords.
    pub fn password_hasher(&self) -> &Arc<PasswordHasher> {
        &self.passwords
    }

    /// What new passwords must satisfy.
    pub fn password_policy(&self) -> &PasswordPolicy {
        &self.password_policy
    }

    /// Token lifetimes.
    pub fn token_policy(&self) -> &TokenPolicy {
        &self.token_policy
    }

    /// Issues a token (see [`tokens::issue`]). Blocking.
    pub fn issue(&self, request: NewToken) -> Result<IssuedToken, IssueError> {
        tokens::issue(
            &self.view,
            &self.token_hasher,
            &self.token_policy,
            request,
            Timestamp::now(),
        )
    }

    /// Revokes a token; the next request with it fails. Returns whether it
    /// existed. Blocking.
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let existed = tokens::revoke(&self.view, Some(&self.last_used), id)?;
        self.tokens.invalidate_token(id);
        Ok(existed)
    }
}
