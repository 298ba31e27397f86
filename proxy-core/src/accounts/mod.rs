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

mod bearer;
pub mod local;
mod login;
mod provider_tokens;
mod refresh;
pub mod tokens;

pub use crate::authn::external::LoginCredential;
pub use bearer::ProviderBearer;
pub use refresh::Outcome;

use local::{
    bootstrap_admin, BootstrapAdmin, BootstrapError, LocalProvider, LoginThrottle, PasswordError,
    PasswordHasher, PasswordParams, PasswordPolicy, ThrottleConfig,
};
use tokens::{IssueError, IssuedToken, NewToken, TokenPolicy};

pub mod bindings;
pub mod clusters;
pub mod lookup;

use crate::{
    authn::external::{user_id_for, CredentialKind, ExternalProvider, ExternalUser},
    authn::seal::Sealer,
    authn::tokens::{LastUsed, Pepper, StoreTokens, TokenHasher},
    authn::vault::TokenVault,
    store::{
        EmbeddedOptions, EmbeddedStore, Expect, Object, Op, Store, StoreError, StoreView,
        Timestamp, User, UserAttributes,
    },
};

/// The pepper's file in the data directory.
pub const PEPPER_FILE: &str = "token-pepper";

/// How often the server looks for other processes' commits (the CLI's).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);
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
    /// External providers by registration order; logins name them.
    providers: Vec<Arc<dyn ExternalProvider>>,
    /// The key providers seal their users' tokens with before they go into
    /// the store (derived from the pepper: every replica has it).
    provider_token_sealer: Arc<Sealer>,
    /// The GitHub provider again, for its browser flow's endpoints.
    #[cfg(feature = "github")]
    github: Option<Arc<crate::authn::github::GithubProvider>>,
    /// The OpenID Connect providers again, for their browser flows.
    #[cfg(feature = "oidc")]
    oidc: Vec<Arc<crate::authn::oidc::OidcProvider>>,
    throttle: Arc<LoginThrottle>,
    /// The refreshes running on this replica (`refresh::claim_refresh`).
    refreshing: std::sync::Mutex<std::collections::HashSet<String>>,
    background: std::sync::Once,
    /// Providers whose backend failed last time it was asked, and why.
    degraded: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Where provider health changes and refresh outcomes go: the plugins
    /// of the proxy serving these accounts.
    events: std::sync::OnceLock<crate::events::Events>,
}

/// A successful login through [`Accounts::login`].
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The stored user.
    pub user: User,
    /// The provider that checked the password.
    pub provider: String,
    /// Only a password change is allowed until it happens.
    pub must_change_password: bool,
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
        // Several replicas: one budget of attempts for all of them.
        if let Some(counters) = view.store().shared_counters() {
            throttle.share(counters);
        }
        let token_hasher = Arc::new(TokenHasher::new(pepper));
        let last_used = Arc::new(LastUsed::new(LAST_USED_INTERVAL));
        let tokens = Arc::new(StoreTokens::new(
            view.clone(),
            token_hasher.clone(),
            last_used.clone(),
        ));
        Ok(Self {
            local: LocalProvider::new(view.clone(), passwords.clone(), throttle.clone()),
            view,
            data_dir: data_dir.to_owned(),
            passwords,
            password_policy: options.password_policy,
            token_hasher,
            token_policy: options.token_policy,
            last_used,
            tokens,
            providers: Vec::new(),
            provider_token_sealer: Arc::new(Sealer::for_provider_tokens(pepper)),
            #[cfg(feature = "github")]
            github: None,
            #[cfg(feature = "oidc")]
            oidc: Vec::new(),
            throttle,
            refreshing: Default::default(),
            background: std::sync::Once::new(),
            degraded: Default::default(),
            events: std::sync::OnceLock::new(),
        })
    }

    /// Registers an external provider (a directory, GitHub): logins by its
    /// name, and the background refresh of its users, whose tokens it keeps
    /// sealed in the store (moving there any an earlier version kept in
    /// files). Names are unique (`local` included); the configuration checks
    /// that. Blocking.
    pub fn with_provider(mut self, provider: Arc<dyn ExternalProvider>) -> Self {
        provider.keep_tokens_in(TokenVault::new(
            Arc::new(provider_tokens::StoreSealedTokens::new(self.view.clone())),
            self.provider_token_sealer.clone(),
            provider.name(),
        ));
        self.providers.push(provider);
        self
    }

    /// The registered external providers, in registration order.
    pub fn providers(&self) -> &[Arc<dyn ExternalProvider>] {
        &self.providers
    }

    /// The external provider named `name`.
    pub fn provider(&self, name: &str) -> Option<&Arc<dyn ExternalProvider>> {
        self.providers.iter().find(|p| p.name() == name)
    }

    /// Records whether `provider`'s backend answered (`None`) or why not;
    /// a change is an [`Event::ProviderHealth`](crate::events::Event::ProviderHealth).
    pub fn set_provider_health(&self, provider: &str, problem: Option<String>) {
        let mut degraded = self
            .degraded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let was_degraded = match &problem {
            Some(problem) => degraded
                .insert(provider.to_owned(), problem.clone())
                .is_some(),
            None => degraded.remove(provider).is_some(),
        };
        drop(degraded);
        if was_degraded != problem.is_some() {
            self.emit(&crate::events::Event::ProviderHealth {
                provider: provider.to_owned(),
                problem,
            });
        }
    }

    /// Sends this accounts' background events to `events` (the plugins of
    /// the proxy serving them); the first call wins.
    /// [`crate::ProxyBuilder::build`] calls it.
    pub(crate) fn set_events(&self, events: crate::events::Events) {
        let _ = self.events.set(events);
    }

    pub(crate) fn emit(&self, event: &crate::events::Event) {
        if let Some(events) = self.events.get() {
            events.emit(event);
        }
    }

    /// The providers whose backend failed when last asked, and why.
    pub fn degraded_providers(&self) -> std::collections::BTreeMap<String, String> {
        self.degraded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Drops the groups `provider` reported for a user (access lost, or the
    /// directory down past the grace period), keeping the time of the last
    /// successful refresh. Blocking.
    pub fn clear_provider_groups(&self, user_id: &str, provider: &str) -> Result<(), StoreError> {
        let Some((mut attributes, revision)) = self.view.with_snapshot(|s| {
            s.user_attributes(user_id)
                .map(|a| (a.value.clone(), a.revision))
        }) else {
            return Ok(());
        };
        if attributes.groups.get(provider).is_none_or(Vec::is_empty) {
            return Ok(());
        }
        attributes.groups.insert(provider.to_owned(), Vec::new());
        attributes.group_names.remove(provider);
        self.view
            .commit(vec![Op::put(
                Object::UserAttributes(attributes),
                Expect::Revision(revision),
            )])
            .map(drop)
    }

    /// Registers the GitHub provider: token logins (`{"provider":"github"}`),
    /// the browser flow and the refresh of its users.
    #[cfg(feature = "github")]
    pub fn with_github(mut self, provider: Arc<crate::authn::github::GithubProvider>) -> Self {
        self.github = Some(provider.clone());
        self.with_provider(provider)
    }

    /// Registers an OpenID Connect provider: its browser flow, its bearer
    /// JWTs on the request path, its logins and the refresh of its users.
    #[cfg(feature = "oidc")]
    pub fn with_oidc(mut self, provider: Arc<crate::authn::oidc::OidcProvider>) -> Self {
        self.oidc.push(provider.clone());
        self.with_provider(provider)
    }

    /// The OpenID Connect providers, in registration order.
    #[cfg(feature = "oidc")]
    pub fn oidc_providers(&self) -> &[Arc<crate::authn::oidc::OidcProvider>] {
        &self.oidc
    }

    /// The authenticator of the bearer tokens providers verify themselves
    /// (OpenID Connect JWTs), for the request path's chain; `None` when no
    /// registered provider has such tokens.
    pub fn provider_bearer(&self) -> Option<ProviderBearer> {
        #[cfg(feature = "oidc")]
        let any = !self.oidc.is_empty();
        #[cfg(not(feature = "oidc"))]
        let any = false;
        any.then(|| ProviderBearer::new(self.providers.clone(), self.view.clone()))
    }

    /// The GitHub provider, when configured.
    #[cfg(feature = "github")]
    pub fn github(&self) -> Option<&Arc<crate::authn::github::GithubProvider>> {
        self.github.as_ref()
    }

    /// The data directory (bootstrap password, provider state).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The names of the providers people log in to with a password, `local`
    /// first.
    pub fn provider_names(&self) -> Vec<&str> {
        std::iter::once(local::PROVIDER)
            .chain(
                self.providers
                    .iter()
                    .filter(|p| p.credential_kind() == CredentialKind::Password)
                    .map(|p| p.name()),
            )
            .collect()
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

    /// Starts the background work: noticing other processes' commits,
    /// flushing last-used times, purging expired tokens, and refreshing
    /// external providers' users. Once per `Accounts` (later calls do
    /// nothing); [`crate::ProxyBuilder::build`] calls it, so an embedder
    /// cannot forget it. The tasks end when `self` is dropped. Needs a
    /// tokio runtime.
    ///
    /// With several replicas on one etcd, the refresh and the purge run on the
    /// replica the store elects ([`crate::store::Store::leadership`]); every
    /// replica flushes the last-used times it saw itself (at most one write per
    /// token per minute and replica).
    pub fn spawn_background(self: &Arc<Self>) {
        self.background.call_once(|| {
            self.view.spawn_poller(POLL_INTERVAL);
            let leadership = self.view.store().leadership();
            for provider in &self.providers {
                refresh::spawn(Arc::downgrade(self), provider.clone(), leadership.clone());
            }
            self.last_used
                .spawn_flusher(self.view.clone(), LAST_USED_INTERVAL);
            spawn_purge(Arc::downgrade(&self.view), leadership);
        });
    }

    /// Hashes and verifies token secrets (users' tokens and agents'
    /// registration tokens).
    pub fn token_hasher(&self) -> &Arc<TokenHasher> {
        &self.token_hasher
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

    /// One answer of `cluster`'s replica feed after `since` (see
    /// [`crate::replica`]). Blocking.
    pub fn replica_feed(
        &self,
        cluster: &str,
        since: crate::store::Revision,
    ) -> Result<crate::replica::ReplicaFeed, StoreError> {
        crate::replica::build(&self.view, &self.token_hasher, cluster, since)
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

    /// Creates or updates the user an external provider reported at login
    /// or refresh, with that provider's groups and extras; the user id is
    /// derived from the principal ([`user_id_for`]), so it never changes. A
    /// disabled user stays disabled: the caller gets it back and must refuse
    /// the login. Blocking.
    pub fn upsert_external(&self, external: &ExternalUser) -> Result<User, StoreError> {
        let id = user_id_for(&external.principal.id);
        let now = Timestamp::now();
        loop {
            let (existing, attributes) = self.view.with_snapshot(|s| {
                (
                    s.user(&id).map(|u| (u.value.clone(), u.revision)),
                    s.user_attributes(&id)
                        .map(|a| (a.value.clone(), a.revision)),
                )
            });
            let principal = external.principal.id.clone();
            let (user, user_expect) = match existing {
                Some((mut user, rev)) => {
                    if !user.principal_ids.contains(&principal) {
                        user.principal_ids.push(principal.clone());
                    }
                    user.display_name.clone_from(&external.display_name);
                    user.username.clone_from(&external.username);
                    (user, Expect::Revision(rev))
                }
                None => (
                    User {
                        id: id.clone(),
                        username: external.username.clone(),
                        display_name: external.display_name.clone(),
                        enabled: true,
                        must_change_password: false,
                        principal_ids: vec![principal.clone()],
                        created_at: now,
                    },
                    Expect::Absent,
                ),
            };
            let (mut attrs, attrs_expect) = match attributes {
                Some((a, rev)) => (a, Expect::Revision(rev)),
                None => (
                    UserAttributes {
                        user_id: id.clone(),
                        ..UserAttributes::default()
                    },
                    Expect::Absent,
                ),
            };
            attrs.groups.insert(
                external.provider.clone(),
                external.groups.iter().map(|g| g.id.clone()).collect(),
            );
            attrs.group_names.insert(
                external.provider.clone(),
                external
                    .groups
                    .iter()
                    .map(|g| (g.id.clone(), g.display_name.clone()))
                    .collect(),
            );
            attrs.extra.insert(
                external.provider.clone(),
                [
                    ("principalid".to_owned(), vec![principal]),
                    ("username".to_owned(), vec![external.username.clone()]),
                ]
                .into(),
            );
            attrs.last_refresh = Some(now);
            if let Some(locator) = &external.locator {
                attrs
                    .locators
                    .insert(external.provider.clone(), locator.clone());
            }
            let ops = vec![
                Op::put(Object::User(user.clone()), user_expect),
                Op::put(Object::UserAttributes(attrs), attrs_expect),
            ];
            match self.view.commit(ops) {
                Ok(_) => return Ok(user),
                // A concurrent login or refresh of the same user: redo on its result.
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Revokes every token of `user_id` (sessions, kubeconfig and API
    /// tokens), as when a provider says the user lost access. Returns how
    /// many. Blocking.
    pub fn revoke_user_tokens(&self, user_id: &str) -> Result<usize, StoreError> {
        let ids: Vec<String> = tokens::list(&self.view, Some(user_id))
            .into_iter()
            .map(|t| t.id)
            .collect();
        let revoked = tokens::revoke_user_tokens(&self.view, user_id)?;
        for id in &ids {
            self.tokens.invalidate_token(id);
        }
        Ok(revoked)
    }

    /// Revokes a token; the next request with it fails. Returns whether it
    /// existed. Blocking.
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let existed = tokens::revoke(&self.view, Some(&self.last_used), id)?;
        self.tokens.invalidate_token(id);
        Ok(existed)
    }
}

/// Whether `subject` (a user id or principal id) has a role binding.
pub(crate) fn has_binding(view: &StoreView, subject: &str) -> bool {
    view.with_snapshot(|s| s.role_bindings().any(|b| b.value.subject == subject))
}

/// Deletes expired tokens every [`PURGE_INTERVAL`] while the store lives.
fn spawn_purge(
    view: std::sync::Weak<StoreView>,
    leadership: Option<Arc<dyn crate::store::Leadership>>,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PURGE_INTERVAL);
        loop {
            tick.tick().await;
            let Some(view) = view.upgrade() else { return };
            if !crate::store::may_run_singletons(leadership.as_ref()) {
                continue;
            }
            let purged =
                tokio::task::spawn_blocking(move || tokens::purge_expired(&view, Timestamp::now()))
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
