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
//! encrypted at rest and used only by the background [`refresh`] of their
//! organisations and teams.

pub mod api;
pub mod config;
pub mod oauth;
pub mod refresh;

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};

pub use api::{ApiError, GithubApi, HttpClient, Profile};
pub use config::{AccessMode, GithubConfig, GithubEndpoints, RefreshSettings};
pub use oauth::{OAuthError, OAuthFlow, Sealer};

use super::external::{user_id_for, ExternalUser, Principal};
use crate::accounts::{Accounts, LoggedIn};

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
        let http = HttpClient::new(config.ca_pem.as_deref(), config.timeout)?;
        let sealer = Arc::new(Sealer::new(&config.encryption_key));
        Ok(Self {
            api: GithubApi::new(http.clone(), config.endpoints.api.clone()),
            flow: OAuthFlow::new(&config, http, sealer.clone()),
            sealer,
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
        let allowed = || {
            std::iter::once(&user.principal)
                .chain(&user.groups)
                .any(|p| {
                    self.config.allowed.iter().any(|a| {
                        if a.contains("://") {
                            *a == p.id
                        } else {
                            a.eq_ignore_ascii_case(&p.display_name)
                        }
                    })
                })
        };
        let bound = || {
            has_binding(&user_id_for(&user.principal.id))
                || std::iter::once(&user.principal)
                    .chain(&user.groups)
                    .any(|p| has_binding(&p.id))
        };
        let ok = match self.config.access_mode {
            AccessMode::Unrestricted => true,
            AccessMode::Required => allowed(),
            AccessMode::Restricted => allowed() || bound(),
        };
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

    /// Encrypts a GitHub token for storage.
    pub fn seal_token(&self, token: &SecretString) -> String {
        self.sealer
            .seal(TOKEN_PURPOSE, token.expose_secret().as_bytes())
    }

    /// Decrypts a stored GitHub token.
    pub fn open_token(&self, sealed: &str) -> Option<SecretString> {
        let plain = self.sealer.open(TOKEN_PURPOSE, sealed.trim())?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }
}

impl GithubProvider {
    /// Logs in the owner of a GitHub `token` (from the browser flow or
    /// presented directly): reads them and their groups, applies the access
    /// mode, stores the user with their groups and the token (encrypted,
    /// for the background refresh). Nothing else is asked of GitHub later
    /// on the request path.
    pub async fn login(
        &self,
        accounts: &Arc<Accounts>,
        token: &SecretString,
    ) -> Result<LoggedIn, GithubError> {
        let external = self.identify(token).await?;
        let view = accounts.view().clone();
        self.check_access(&external, &|subject| {
            view.with_snapshot(|s| s.role_bindings().any(|b| b.value.subject == subject))
        })?;
        let sealed = self.seal_token(token);
        let vault = refresh::TokenVault::new(accounts.data_dir());
        let store = accounts.clone();
        let user = tokio::task::spawn_blocking(move || {
            let user = store
                .upsert_external(&external)
                .map_err(|e| e.to_string())?;
            vault.put(&user.id, &sealed).map_err(|e| e.to_string())?;
            Ok::<_, String>(user)
        })
        .await
        .map_err(|e| GithubError::Store(e.to_string()))?
        .map_err(GithubError::Store)?;
        if !user.enabled {
            return Err(GithubError::Disabled);
        }
        Ok(LoggedIn {
            user,
            provider: PROVIDER.to_owned(),
            must_change_password: false,
        })
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
    fn sealed_tokens_round_trip() {
        let p = provider(AccessMode::Unrestricted, &[]);
        let sealed = p.seal_token(&SecretString::from("gho_abc"));
        assert!(!sealed.contains("gho_abc"));
        assert_eq!(p.open_token(&sealed).unwrap().expose_secret(), "gho_abc");
    }
}
