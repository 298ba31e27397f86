//! The GitHub and GitHub Enterprise provider (cargo feature `github`).
//!
//! People log in through the browser (the OAuth web flow of [`oauth`], with
//! PKCE and an encrypted state cookie) or with a GitHub token
//! (`POST /paddock/v1/login` with `{"provider":"github","token":…}`). Either
//! way Paddock reads the user, their verified primary e-mail, all their
//! organisations and all their teams ([`api`]), applies the access mode,
//! and stores the user with principals
//!
//! | what | principal id | display name |
//! |---|---|---|
//! | user | `github_user://<id>` | `login` |
//! | organisation | `github_org://<id>` | `org` |
//! | team | `github_team://<id>` | `org:team-slug` |
//!
//! Nothing is asked of GitHub per request: the user's GitHub token is kept
//! sealed in the vault the accounts wing hands over ([`crate::authn::vault`]:
//! the shared store) and used only by the background refresh of their
//! organisations and teams, which the accounts wing drives through
//! [`ExternalProvider::refresh`] on the replica elected to run it.

pub mod api;
pub mod config;
pub mod oauth;

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use secrecy::{ExposeSecret, SecretString};

pub use api::{ApiError, GithubApi, HttpClient, Profile};
pub use config::{AccessMode, GithubConfig, GithubEndpoints, RefreshSettings};
pub use oauth::{OAuthError, OAuthFlow, Sealer};

use super::vault::TokenVault;
use super::{
    external::{
        user_id_for, AccountGate, CredentialKind, ExternalProvider, ExternalUser, KnownUser,
        LoginCredential, Principal, RefreshError, RefreshSchedule,
    },
    AuthnError, BoxFuture,
};
use api::ApiUser;

/// The provider's name, in logins and on tokens.
pub const PROVIDER: &str = "github";

/// Why a GitHub login failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GithubError {
    /// The token (or code) is not valid at GitHub.
    #[error("invalid GitHub credentials")]
    InvalidToken,
    /// The user is valid but the access mode keeps them out.
    #[error("GitHub user {login} is not allowed to log in to Paddock: {reason}")]
    AccessDenied {
        /// Their login.
        login: String,
        /// Why, for the refusal page.
        reason: String,
    },
    /// The Paddock user exists but is disabled.
    #[error("this Paddock user is disabled")]
    Disabled,
    /// The browser flow failed.
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    /// GitHub could not be asked.
    #[error("GitHub is unavailable: {0}")]
    Unavailable(String),
    /// GitHub's rate limit is exhausted.
    #[error("GitHub rate limit reached, retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until it lifts.
        retry_after_secs: u64,
    },
    /// Storing the user failed.
    #[error("storing the user failed: {0}")]
    Store(String),
}

impl From<ApiError> for GithubError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::Unauthorized => Self::InvalidToken,
            ApiError::RateLimited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// The GitHub provider: settings, API client and OAuth flow.
pub struct GithubProvider {
    config: GithubConfig,
    api: GithubApi,
    flow: OAuthFlow,
    sealer: Arc<Sealer>,
    vault: OnceLock<TokenVault>,
}

impl std::fmt::Debug for GithubProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubProvider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Purpose tag of sealed GitHub tokens.
const TOKEN_PURPOSE: &str = "github access token";

impl GithubProvider {
    /// Builds the provider; fails on an unusable CA bundle.
    pub fn new(config: GithubConfig) -> Result<Self, String> {
        let http = HttpClient::new(
            config.ca_pem.as_deref(),
            config.timeout,
            config.proxy.clone(),
        )?;
        let sealer = Arc::new(Sealer::new(&config.encryption_key));
        Ok(Self {
            api: GithubApi::new(http.clone(), config.endpoints.api.clone()),
            flow: OAuthFlow::new(&config, http, sealer.clone()),
            sealer,
            vault: OnceLock::new(),
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &GithubConfig {
        &self.config
    }

    /// The REST API client.
    pub fn api(&self) -> &GithubApi {
        &self.api
    }

    /// The browser flow.
    pub fn flow(&self) -> &OAuthFlow {
        &self.flow
    }

    /// Reads who `token` belongs to, with all their groups. No access check.
    pub async fn identify(&self, token: &SecretString) -> Result<ExternalUser, GithubError> {
        if token.expose_secret().trim().is_empty() {
            return Err(GithubError::InvalidToken);
        }
        let profile = self.api.profile(token).await?;
        Ok(external_user(&profile))
    }

    /// Applies the access mode to `user`; `has_binding` says whether a
    /// subject (user id or principal id) has a role binding.
    pub fn check_access(
        &self,
        user: &ExternalUser,
        has_binding: &dyn Fn(&str) -> bool,
    ) -> Result<(), GithubError> {
        let ok = self
            .config
            .access_mode
            .admits(&self.config.allowed, user, has_binding);
        if ok {
            Ok(())
        } else {
            Err(GithubError::AccessDenied {
                login: user.username.clone(),
                reason: match self.config.access_mode {
                    AccessMode::Required => {
                        "neither the user nor any of their organisations or teams is on Paddock's allowed list"
                    }
                    _ => "neither the user nor any of their organisations or teams is allowed or has a role binding",
                }
                .to_owned(),
            })
        }
    }

    /// Decrypts a GitHub token an earlier version kept in a file (sealed
    /// with the provider's own key), to move it into the vault.
    fn open_file_token(&self, sealed: &str) -> Option<SecretString> {
        let plain = self.sealer.open(TOKEN_PURPOSE, sealed.trim())?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

impl ExternalProvider for GithubProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn credential_kind(&self) -> CredentialKind {
        CredentialKind::Token
    }

    /// Reads the owner of a GitHub token (from the browser flow or presented
    /// directly) with their groups, and keeps the token, encrypted, for the
    /// background refresh. Nothing else is asked of GitHub later on the
    /// request path.
    fn login<'a>(
        &'a self,
        credential: LoginCredential<'a>,
        _gate: AccountGate<'a>,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>> {
        Box::pin(async move {
            let LoginCredential::Token(token) = credential else {
                return Err(AuthnError::Invalid);
            };
            let external = self.identify(token).await.map_err(authn_error)?;
            if let Some(vault) = self.vault.get() {
                let id = user_id_for(&external.principal.id);
                if let Err(error) = vault.keep(TOKEN_PURPOSE, &id, token).await {
                    tracing::warn!(
                        auth.provider = PROVIDER,
                        %error,
                        "keeping the GitHub token for refreshes failed"
                    );
                }
            }
            Ok(external)
        })
    }

    fn admit(&self, user: &ExternalUser, bound: &dyn Fn(&str) -> bool) -> Result<(), AuthnError> {
        self.check_access(user, bound).map_err(authn_error)
    }

    fn refresh_schedule(&self) -> RefreshSchedule {
        let settings = self.config.refresh;
        RefreshSchedule {
            max_age: settings.max_age,
            jitter: settings.jitter,
            interval: settings.interval.max(Duration::from_secs(1)),
            // GitHub being down or limiting us keeps the last known groups.
            grace: None,
        }
    }

    /// Re-reads the user's organisations and teams with their stored token.
    /// 401/404 (token revoked, user gone) is access lost; 5xx, timeouts and
    /// rate limits keep the last known groups.
    fn refresh<'a>(
        &'a self,
        known: &'a KnownUser,
    ) -> BoxFuture<'a, Result<ExternalUser, RefreshError>> {
        Box::pin(async move {
            let Some(vault) = self.vault.get() else {
                return Err(RefreshError::NotRefreshable);
            };
            let token = vault
                .token(TOKEN_PURPOSE, &known.user_id)
                .await
                .ok_or(RefreshError::NotRefreshable)?;
            let github_id = known
                .principal
                .strip_prefix("github_user://")
                .and_then(|id| id.parse::<u64>().ok())
                .ok_or(RefreshError::NotRefreshable)?;
            let (orgs, teams) = self.api.groups(&token).await.map_err(|error| match error {
                error if error.is_permanent() => RefreshError::AccessLost {
                    reason: error.to_string(),
                },
                ApiError::RateLimited { retry_after_secs } => RefreshError::Unavailable {
                    reason: "GitHub rate limit".to_owned(),
                    retry_after_secs,
                },
                error => RefreshError::Unavailable {
                    reason: error.to_string(),
                    retry_after_secs: 0,
                },
            })?;
            Ok(external_user(&Profile {
                user: ApiUser {
                    id: github_id,
                    login: known.username.clone(),
                    name: Some(known.display_name.clone()),
                },
                email: None,
                orgs,
                teams,
            }))
        })
    }

    /// Keeps tokens in `vault` from now on, after moving there the ones an
    /// earlier version kept in files (`token_dir`).
    fn keep_tokens_in(&self, vault: TokenVault) {
        if let Some(dir) = &self.config.token_dir {
            vault.import_files(TOKEN_PURPOSE, dir, |sealed| self.open_file_token(sealed));
        }
        let _ = self.vault.set(vault);
    }

    fn forget(&self, user_id: &str) {
        if let Some(vault) = self.vault.get() {
            vault.forget(user_id);
        }
    }
}

/// A failed GitHub login as the accounts wing counts it: an invalid token is
/// the caller's failure; GitHub being down or rate limited is not.
fn authn_error(error: GithubError) -> AuthnError {
    match error {
        GithubError::InvalidToken | GithubError::Disabled => AuthnError::Invalid,
        GithubError::AccessDenied { .. } => AuthnError::Denied {
            reason: error.to_string(),
        },
        GithubError::RateLimited { retry_after_secs } => AuthnError::Throttled { retry_after_secs },
        GithubError::Unavailable(_) | GithubError::OAuth(_) | GithubError::Store(_) => {
            // The caller hears only that the provider is unavailable; the
            // operator needs why (a proxy refusing, a TLS failure, ...).
            tracing::warn!(%error, "GitHub login failed: the provider is unavailable");
            AuthnError::Unavailable {
                provider: PROVIDER.to_owned(),
            }
        }
    }
}

/// The principals of a GitHub profile.
pub fn external_user(profile: &Profile) -> ExternalUser {
    let mut groups: Vec<Principal> = profile
        .orgs
        .iter()
        .map(|o| Principal::new(format!("github_org://{}", o.id), o.login.clone()))
        .collect();
    groups.extend(profile.teams.iter().map(|t| {
        Principal::new(
            format!("github_team://{}", t.id),
            format!("{}:{}", t.organization.login, t.slug),
        )
    }));
    groups.sort_by(|a, b| a.id.cmp(&b.id));
    groups.dedup_by(|a, b| a.id == b.id);
    ExternalUser {
        provider: PROVIDER.to_owned(),
        principal: Principal::new(
            format!("github_user://{}", profile.user.id),
            profile.user.login.clone(),
        ),
        username: profile.user.login.clone(),
        display_name: profile
            .user
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| profile.user.login.clone()),
        email: profile.email.clone(),
        groups,
        locator: None,
    }
}

#[cfg(test)]
mod tests {
    use super::api::{ApiOrg, ApiTeam, ApiUser};
    use super::*;

    fn profile() -> Profile {
        Profile {
            user: ApiUser {
                id: 583231,
                login: "octocat".into(),
                name: None,
            },
            email: Some("octocat@example.com".into()),
            orgs: vec![ApiOrg {
                id: 1001,
                login: "acme".into(),
            }],
            teams: vec![ApiTeam {
                id: 5001,
                slug: "platform".into(),
                organization: ApiOrg {
                    id: 1001,
                    login: "acme".into(),
                },
            }],
        }
    }

    fn provider(mode: AccessMode, allowed: &[&str]) -> GithubProvider {
        let mut config = GithubConfig::new(
            "id",
            SecretString::from("secret"),
            SecretString::from("key"),
        );
        config.ca_pem = None;
        config.access_mode = mode;
        config.allowed = allowed.iter().map(|s| (*s).to_owned()).collect();
        GithubProvider::new(config).unwrap()
    }

    #[test]
    fn principals_are_typed_numeric_ids_with_readable_names() {
        let user = external_user(&profile());
        assert_eq!(
            user.principal,
            Principal::new("github_user://583231", "octocat")
        );
        assert_eq!(user.display_name, "octocat");
        assert_eq!(
            user.groups,
            vec![
                Principal::new("github_org://1001", "acme"),
                Principal::new("github_team://5001", "acme:platform"),
            ]
        );
    }

    #[test]
    fn access_modes() {
        let user = external_user(&profile());
        let none = |_: &str| false;
        assert!(provider(AccessMode::Unrestricted, &[])
            .check_access(&user, &none)
            .is_ok());
        assert!(provider(AccessMode::Required, &[])
            .check_access(&user, &none)
            .is_err());
        for allowed in [
            "github_team://5001",
            "ACME:platform",
            "acme",
            "github_user://583231",
            "octocat",
        ] {
            assert!(
                provider(AccessMode::Required, &[allowed])
                    .check_access(&user, &none)
                    .is_ok(),
                "{allowed}"
            );
        }
        assert!(provider(AccessMode::Required, &["github_org://9"])
            .check_access(&user, &none)
            .is_err());
        let restricted = provider(AccessMode::Restricted, &[]);
        assert!(restricted.check_access(&user, &none).is_err());
        assert!(restricted
            .check_access(&user, &|s: &str| s == "github_team://5001")
            .is_ok());
        assert!(restricted
            .check_access(&user, &|s: &str| s == user_id_for("github_user://583231"))
            .is_ok());
    }

    #[test]
    fn tokens_an_earlier_version_kept_in_files_move_into_the_vault() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = provider(AccessMode::Unrestricted, &[]);
        p.config.token_dir = Some(dir.path().to_owned());
        std::fs::write(
            dir.path().join("u-octocat"),
            p.sealer.seal(TOKEN_PURPOSE, b"gho_abc"),
        )
        .unwrap();
        let memory = Arc::new(crate::authn::vault::tests::Memory::default());
        let sealer = Sealer::new(&SecretString::from("the shared key"));
        p.keep_tokens_in(TokenVault::new(memory.clone(), Arc::new(sealer), PROVIDER));
        assert!(!dir.path().exists());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let vault = p.vault.get().unwrap();
        let token = runtime.block_on(vault.token(TOKEN_PURPOSE, "u-octocat"));
        assert_eq!(token.unwrap().expose_secret(), "gho_abc");
        p.forget("u-octocat");
        assert!(runtime
            .block_on(vault.token(TOKEN_PURPOSE, "u-octocat"))
            .is_none());
    }
}
