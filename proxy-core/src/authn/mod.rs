//! Authentication: who is calling.
//!
//! Credentials are pulled out of a request once ([`Credential::from_request`]),
//! then an [`AuthenticatorChain`] asks each configured [`Authenticator`] in
//! turn. A provider that does not recognise a credential says `Ok(None)` and
//! the next one is asked; a provider that is down says
//! [`AuthnError::Unavailable`], which becomes 503 rather than 401 so clients
//! retry instead of throwing their credentials away.

pub mod client_cert;
mod credential;
pub mod external;
#[cfg(feature = "github")]
pub mod github;
#[cfg(any(feature = "github", feature = "oidc"))]
pub mod https;
mod identity;
#[cfg(feature = "ldap")]
pub mod ldap;
#[cfg(feature = "oidc")]
pub mod oidc;
pub mod seal;

pub mod token_file;
pub mod tokens;
pub mod vault;

use std::sync::Arc;

pub use credential::{Credential, SESSION_COOKIE};
pub use identity::{Identity, SYSTEM_AUTHENTICATED};

use crate::error::ProxyError;

/// A boxed future, as returned by the object-safe traits of this crate.
pub use crate::future::{BoxFuture, ReadyOrBoxed};

/// Why an authenticator could not produce an identity.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuthnError {
    /// The credential is wrong, expired, revoked or belongs to a disabled user.
    #[error("invalid credentials")]
    Invalid,
    /// The backend needed to decide is down; the caller should retry.
    #[error("provider {provider} is unavailable")]
    Unavailable {
        /// The provider's name.
        provider: String,
    },
    /// Too many failed attempts: retry after this many seconds.
    #[error("too many attempts")]
    Throttled {
        /// Seconds until the next attempt may succeed.
        retry_after_secs: u64,
    },
    /// The provider's own access rules do not admit the user (GitHub's
    /// allowed organisations).
    #[error("access denied: {reason}")]
    Denied {
        /// Why, for the person logging in.
        reason: String,
    },
    /// The credential is valid but its user must change their password first
    /// (the bootstrap admin's first login).
    #[error("the password of {username} must be changed first")]
    PasswordChangeRequired {
        /// The user's login name.
        username: String,
    },
}

impl From<AuthnError> for ProxyError {
    fn from(error: AuthnError) -> Self {
        match error {
            AuthnError::Invalid => ProxyError::InvalidCredentials,
            AuthnError::Unavailable { provider } => {
                ProxyError::AuthenticationUnavailable { provider }
            }
            AuthnError::Throttled { retry_after_secs } => {
                ProxyError::TooManyRequests { retry_after_secs }
            }
            AuthnError::Denied { reason } => ProxyError::Forbidden { reason },
            AuthnError::PasswordChangeRequired { username } => ProxyError::Forbidden {
                reason: format!(
                    "user {username} must change their password before doing anything else: \
                     POST /paddock/v1/password"
                ),
            },
        }
    }
}

/// How one attempt to authenticate ended, a fact of the request's context
/// ([`RequestContext::authn_attempt`](crate::context::RequestContext::authn_attempt))
/// for the plugins (metrics, audit) to read. Recorded when a credential was
/// refused and by the login endpoints; a request whose credential was
/// accepted needs no record, its
/// [`identity`](crate::context::RequestContext::identity) says so. A request
/// that carried no credential made no attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthnAttempt {
    /// The provider that decided, when known: the one that was down, the
    /// one a login named; `None` when no provider took the credential.
    pub provider: Option<String>,
    /// How it ended.
    pub outcome: AuthnOutcome,
}

/// The end of an [`AuthnAttempt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthnOutcome {
    /// The credential was accepted.
    Success,
    /// The credential was wrong, expired, revoked or malformed.
    Invalid,
    /// The credential was valid but the user is not admitted (a provider's
    /// access rules, a token used outside its scope, a password to change).
    Denied,
    /// The provider needed to decide was down.
    Unavailable,
    /// Too many failed attempts: refused without asking the provider.
    Throttled,
}

impl AuthnOutcome {
    /// The outcome's name, as metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthnOutcome::Success => "success",
            AuthnOutcome::Invalid => "invalid",
            AuthnOutcome::Denied => "denied",
            AuthnOutcome::Unavailable => "unavailable",
            AuthnOutcome::Throttled => "throttled",
        }
    }

    /// The outcome an authenticator's error stands for.
    pub fn of(error: &AuthnError) -> Self {
        match error {
            AuthnError::Invalid => AuthnOutcome::Invalid,
            AuthnError::Unavailable { .. } => AuthnOutcome::Unavailable,
            AuthnError::Throttled { .. } => AuthnOutcome::Throttled,
            AuthnError::Denied { .. } | AuthnError::PasswordChangeRequired { .. } => {
                AuthnOutcome::Denied
            }
        }
    }
}

impl AuthnAttempt {
    /// The attempt a refused credential made, `None` when the error says
    /// no credential was tried (none was sent) or nothing about one.
    pub fn refused(error: &ProxyError) -> Option<AuthnAttempt> {
        let (provider, outcome) = match error {
            ProxyError::InvalidCredentials | ProxyError::MalformedCredentials { .. } => {
                (None, AuthnOutcome::Invalid)
            }
            ProxyError::AuthenticationUnavailable { provider } => {
                (Some(provider.clone()), AuthnOutcome::Unavailable)
            }
            ProxyError::TooManyRequests { .. } => (None, AuthnOutcome::Throttled),
            ProxyError::Forbidden { .. } => (None, AuthnOutcome::Denied),
            _ => return None,
        };
        Some(AuthnAttempt { provider, outcome })
    }
}

/// An identity provider: turns a credential into an [`Identity`].
///
/// Implementations must be cheap on the request path: a memory lookup, a
/// cache hit, never a directory round trip per request.
pub trait Authenticator: Send + Sync + 'static {
    /// Short name for logs and errors, e.g. `token-file`.
    fn name(&self) -> &str;

    /// Identities are shared (`Arc`) so a provider can hand out the one it
    /// keeps in memory without copying it per request.
    ///
    /// `Ok(Some(identity))` when the credential is valid, `Ok(None)` when this
    /// provider does not handle this kind of credential or does not know it.
    ///
    /// An answer known at once is [`ReadyOrBoxed::ready`]. Paddock first
    /// tries to authenticate a request without waiting, so a
    /// [`ReadyOrBoxed::boxed`] answer may be dropped before it is polled
    /// and the credential asked about again: what a boxed answer does (a
    /// directory call, a counter) belongs inside its future.
    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>>;
}

/// Authenticators asked in order; the first identity wins.
#[derive(Clone, Default)]
pub struct AuthenticatorChain {
    // Shared: the chain is cloned per request.
    authenticators: Arc<[Arc<dyn Authenticator>]>,
}

impl AuthenticatorChain {
    /// An empty chain: every credential is rejected.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an authenticator, asked after the ones already present.
    pub fn with(self, authenticator: impl Authenticator) -> Self {
        self.with_shared(Arc::new(authenticator))
    }

    /// Appends a shared authenticator.
    pub fn with_shared(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        let mut authenticators = self.authenticators.to_vec();
        authenticators.push(authenticator);
        self.authenticators = authenticators.into();
        self
    }

    /// Appends every authenticator of `other`.
    pub fn extend(mut self, other: AuthenticatorChain) -> Self {
        let mut authenticators = self.authenticators.to_vec();
        authenticators.extend(other.authenticators.iter().cloned());
        self.authenticators = authenticators.into();
        self
    }

    /// Tries every credential with every authenticator. Invalid credentials
    /// are 401; a provider that is down makes the result 503 unless another
    /// one succeeded.
    pub async fn authenticate(
        &self,
        credentials: &[Credential],
    ) -> Result<Arc<Identity>, ProxyError> {
        if credentials.is_empty() {
            return Err(ProxyError::MissingCredentials);
        }
        let mut failure = AuthnError::Invalid;
        for credential in credentials {
            for authenticator in self.authenticators.iter() {
                let answer = authenticator.authenticate(credential).await;
                if let Some(identity) = settle(answer, &mut failure) {
                    return Ok(identity);
                }
            }
        }
        Err(failure.into())
    }

    /// [`authenticate`](Self::authenticate) without waiting: its answer
    /// when every authenticator asked answers at once (a token table, a
    /// cache hit), `None` as soon as one would have to wait; then the
    /// caller awaits `authenticate`, which asks again from the start.
    pub(crate) fn authenticate_now(
        &self,
        credentials: &[Credential],
    ) -> Option<Result<Arc<Identity>, ProxyError>> {
        if credentials.is_empty() {
            return Some(Err(ProxyError::MissingCredentials));
        }
        let mut failure = AuthnError::Invalid;
        for credential in credentials {
            for authenticator in self.authenticators.iter() {
                let ReadyOrBoxed::Ready(answer) = authenticator.authenticate(credential) else {
                    return None;
                };
                if let Some(identity) = settle(answer.into_inner(), &mut failure) {
                    return Some(Ok(identity));
                }
            }
        }
        Some(Err(failure.into()))
    }
}

/// One authenticator's answer: the identity (with `system:authenticated`)
/// when it is one; otherwise `failure` keeps the error worth reporting (a
/// provider that is down outweighs an unknown credential).
fn settle(
    answer: Result<Option<Arc<Identity>>, AuthnError>,
    failure: &mut AuthnError,
) -> Option<Arc<Identity>> {
    match answer {
        Ok(Some(identity)) => return Some(with_authenticated_group(identity)),
        Ok(None) | Err(AuthnError::Invalid) => {}
        Err(error) => *failure = error,
    }
    None
}

/// Adds `system:authenticated`, copying the identity only if it lacks it.
fn with_authenticated_group(mut identity: Arc<Identity>) -> Arc<Identity> {
    if !identity.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED) {
        Arc::make_mut(&mut identity)
            .groups
            .push(SYSTEM_AUTHENTICATED.to_owned());
    }
    identity
}

impl std::fmt::Debug for AuthenticatorChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.authenticators.iter().map(|a| a.name()))
            .finish()
    }
}

#[cfg(test)]
pub(crate) mod tests;
