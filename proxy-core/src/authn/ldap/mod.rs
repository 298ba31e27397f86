//! Active Directory and OpenLDAP: password logins against a directory, group
//! resolution, and stable principal ids.
//!
//! * [`config`]: one provider entry per directory, validated once into
//!   [`config::Settings`].
//! * [`escape`]: RFC 4515 filter and RFC 4514 DN escaping.
//! * [`guid`]: AD `objectGUID` (mixed-endian) and `objectSid` formatting.
//! * `pool`: a connection pool per server, failover in list order.
//! * `groups`: the membership strategies, paged and batched.
//! * [`LdapProvider`]: login (search-then-bind), refresh, principal search;
//!   registered with the accounts wing as an [`ExternalProvider`].
//!
//! Login order: an empty password is rejected before any I/O; the service
//! account searches the user (every value escaped, exactly one hit); the
//! user's password is checked with a bind as the found DN (never escaped,
//! never logged); the connection is re-bound as the service account and the
//! groups are resolved. Every credential problem is the same
//! [`LdapLoginError::InvalidCredentials`] to the client, with an
//! [`InvalidReason`] for the log; a directory that cannot be reached is
//! [`LdapLoginError::Unavailable`] (503, never 401).

pub mod config;
pub mod escape;
mod groups;
pub mod guid;
mod pool;
mod provider;

pub use config::{DirectoryKind, LdapConfig, RefreshConfig};
pub use provider::{LdapProvider, MAX_SEARCH_RESULTS};

use std::time::Duration;

use crate::authn::{
    external::{
        AccountGate, CredentialKind, ExternalProvider, ExternalUser, KnownUser, LoginCredential,
        RefreshError, RefreshSchedule,
    },
    AuthnError, BoxFuture,
};

pub use crate::authn::external::Principal;

/// A user the directory vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// The user's principal.
    pub principal: Principal,
    /// The login name as the directory spells it (`sAMAccountName`, `uid`).
    pub username: String,
    /// Display name (falls back to the username).
    pub display_name: String,
    /// Email address, when the directory has one.
    pub email: Option<String>,
    /// The entry's DN, for [`LdapProvider::refresh`].
    pub dn: String,
    /// The user's groups (nested ones included when configured), sorted by id.
    pub groups: Vec<Principal>,
}

/// Why credentials were refused. For logs and audit only: clients always see
/// the same "invalid credentials".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidReason {
    /// The password was empty (rejected before any directory I/O: an empty
    /// password would be an unauthenticated bind, RFC 4513 §5.1.2).
    EmptyPassword,
    /// The login name was empty or not acceptable.
    InvalidLoginName,
    /// No entry matched the login name (AD `525` on bind).
    UnknownUser,
    /// More than one entry matched the login name.
    AmbiguousUser,
    /// Wrong password (LDAP 49; AD `52e`).
    WrongPassword,
    /// The account is disabled (the enabled check; AD `533`).
    AccountDisabled,
    /// Logon not permitted at this time (AD `530`).
    LogonHoursRestricted,
    /// Logon not permitted from this workstation (AD `531`).
    WorkstationRestricted,
    /// The password has expired (AD `532`).
    PasswordExpired,
    /// The account has expired (AD `701`).
    AccountExpired,
    /// The password must be changed first (AD `773`).
    PasswordMustChange,
    /// The account is locked out (AD `775`).
    AccountLockedOut,
    /// The server refused the bind with another result code.
    BindRefused {
        /// The LDAP result code.
        code: u32,
    },
}

impl InvalidReason {
    /// Decodes an AD bind diagnostic such as `80090308: LdapErr: DSID-0C09041C,
    /// comment: AcceptSecurityContext error, data 52e, v4563`.
    pub fn from_ad_diagnostic(text: &str) -> Option<Self> {
        let data = text.split("data ").nth(1)?;
        let code: String = data.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        Some(match code.to_ascii_lowercase().as_str() {
            "525" => Self::UnknownUser,
            "52e" => Self::WrongPassword,
            "530" => Self::LogonHoursRestricted,
            "531" => Self::WorkstationRestricted,
            "532" => Self::PasswordExpired,
            "533" => Self::AccountDisabled,
            "701" => Self::AccountExpired,
            "773" => Self::PasswordMustChange,
            "775" => Self::AccountLockedOut,
            _ => return None,
        })
    }
}

impl std::fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::EmptyPassword => "empty password",
            Self::InvalidLoginName => "invalid login name",
            Self::UnknownUser => "unknown user",
            Self::AmbiguousUser => "login name matches several entries",
            Self::WrongPassword => "wrong password",
            Self::AccountDisabled => "account disabled",
            Self::LogonHoursRestricted => "logon hours restricted",
            Self::WorkstationRestricted => "workstation restricted",
            Self::PasswordExpired => "password expired",
            Self::AccountExpired => "account expired",
            Self::PasswordMustChange => "password must be changed",
            Self::AccountLockedOut => "account locked out",
            Self::BindRefused { code } => return write!(f, "bind refused with result code {code}"),
        };
        f.write_str(s)
    }
}

/// Why a directory login (or refresh, or search) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LdapLoginError {
    /// Wrong, unknown, disabled, locked … : one answer for all.
    #[error("invalid username or password")]
    InvalidCredentials {
        /// The real reason, for logs only.
        reason: InvalidReason,
    },
    /// No server of the list could be reached (or one broke mid-login).
    #[error("directory {provider} is unavailable: {message}")]
    Unavailable {
        /// The provider's name.
        provider: String,
        /// What went wrong, for logs (no secrets).
        message: String,
    },
    /// The account the login name resolved to has failed too often; its
    /// password was not sent to the directory.
    #[error("too many failed logins; retry after {retry_after_secs} s")]
    Throttled {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// The directory refused the service account or rejected a search the
    /// configuration built: an operator has to fix something.
    #[error("directory {provider} is misconfigured: {message}")]
    Misconfigured {
        /// The provider's name.
        provider: String,
        /// What went wrong, for logs (no secrets).
        message: String,
    },
}

impl LdapLoginError {
    pub(crate) fn invalid(reason: InvalidReason) -> Self {
        Self::InvalidCredentials { reason }
    }
}

impl From<LdapLoginError> for AuthnError {
    fn from(error: LdapLoginError) -> Self {
        match error {
            LdapLoginError::InvalidCredentials { .. } => AuthnError::Invalid,
            LdapLoginError::Throttled { retry_after_secs } => {
                AuthnError::Throttled { retry_after_secs }
            }
            // A broken service account is not the caller's fault: 503, so
            // clients keep their credentials and retry.
            LdapLoginError::Unavailable { provider, .. }
            | LdapLoginError::Misconfigured { provider, .. } => {
                AuthnError::Unavailable { provider }
            }
        }
    }
}

impl DirectoryUser {
    /// The user as the login flow stores it, under provider `provider`.
    pub fn into_external(self, provider: &str) -> ExternalUser {
        ExternalUser {
            provider: provider.to_owned(),
            principal: self.principal,
            username: self.username,
            display_name: self.display_name,
            email: self.email,
            groups: self.groups,
            locator: Some(self.dn),
        }
    }
}

impl ExternalProvider for LdapProvider {
    fn name(&self) -> &str {
        LdapProvider::name(self)
    }

    fn credential_kind(&self) -> CredentialKind {
        CredentialKind::Password
    }

    fn login<'a>(
        &'a self,
        credential: LoginCredential<'a>,
        gate: AccountGate<'a>,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>> {
        Box::pin(async move {
            let LoginCredential::Password { username, password } = credential else {
                return Err(AuthnError::Invalid);
            };
            match LdapProvider::login_gated(self, username, password, gate).await {
                Ok(user) => Ok(user.into_external(self.name())),
                Err(error) => {
                    // The precise reason (AD sub-code, unknown user) is for the log only.
                    tracing::info!(auth.provider = %self.name(), auth.username = %username, %error, reason = ?error, "directory login refused");
                    Err(error.into())
                }
            }
        })
    }

    fn refresh_schedule(&self) -> RefreshSchedule {
        let settings = self.refresh_settings();
        RefreshSchedule {
            max_age: Duration::from_secs(settings.max_age_seconds),
            jitter: Duration::from_secs(settings.jitter_seconds),
            interval: Duration::from_secs(settings.interval_seconds.max(1)),
            grace: Some(Duration::from_secs(settings.grace_seconds)),
        }
    }

    /// By the stored DN, then by the immutable id if the entry moved.
    fn refresh<'a>(
        &'a self,
        known: &'a KnownUser,
    ) -> BoxFuture<'a, Result<ExternalUser, RefreshError>> {
        Box::pin(async move {
            let stored = DirectoryUser {
                principal: Principal::new(known.principal.clone(), known.display_name.clone()),
                username: known.username.clone(),
                display_name: known.display_name.clone(),
                email: None,
                dn: known.locator.clone().unwrap_or_default(),
                groups: Vec::new(),
            };
            match LdapProvider::refresh(self, &stored).await {
                Ok(fresh) => Ok(fresh.into_external(self.name())),
                Err(LdapLoginError::InvalidCredentials { reason }) => {
                    Err(RefreshError::AccessLost {
                        reason: reason.to_string(),
                    })
                }
                Err(error) => Err(RefreshError::Unavailable {
                    reason: error.to_string(),
                    retry_after_secs: 0,
                }),
            }
        })
    }

    fn search<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<Principal>>, AuthnError>> {
        Box::pin(async move {
            self.search_principals(query, limit)
                .await
                .map(Some)
                .map_err(AuthnError::from)
        })
    }
}

#[cfg(test)]
mod tests;
