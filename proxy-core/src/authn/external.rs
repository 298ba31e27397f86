//! The contract of external identity providers (LDAP, Active Directory,
//! GitHub, and whatever comes next): an [`ExternalProvider`] turns a login
//! credential into the user it stands for now, and reads a known user
//! again. Providers return facts and know nothing else: the accounts wing
//! (the `accounts` module) decides what to store, throttle, refresh and revoke.

use std::time::Duration;

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{AuthnError, BoxFuture};

/// Whether a bearer token may be one a provider signs. Providers' bearer
/// tokens are JWTs, and a JWT's header is base64url JSON, which starts
/// `eyJ` (`{"`): three bytes tell every opaque token (Paddock's own, static
/// tokens) apart before anything is hashed or decoded. Nor is anything
/// longer than 16 KiB hashed: no ID token is that long, and the caller
/// chooses the length.
pub fn may_be_provider_bearer(token: &str) -> bool {
    token.starts_with("eyJ") && token.len() <= MAX_PROVIDER_BEARER
}

/// The longest bearer token a provider is asked about.
const MAX_PROVIDER_BEARER: usize = 16 * 1024;

/// What a person presents to log in to an external provider.
#[derive(Debug, Clone, Copy)]
pub enum LoginCredential<'a> {
    /// A directory's username and password.
    Password {
        /// The name as typed (`alice`, `CORP\alice`, `alice@corp.example`).
        username: &'a str,
        /// The password.
        password: &'a SecretString,
    },
    /// A token the provider issued (a GitHub access token).
    Token(&'a SecretString),
}

/// Which [`LoginCredential`] a provider takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// Username and password.
    Password,
    /// A provider-issued token.
    Token,
}

/// A user a provider reported before, as stored: what it needs to find
/// them again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KnownUser {
    /// Paddock's user id.
    pub user_id: String,
    /// The login name.
    pub username: String,
    /// The human-readable name.
    pub display_name: String,
    /// The user's principal id at this provider (`github_user://583231`).
    pub principal: String,
    /// Where the provider found the user last (an LDAP DN), if it said.
    pub locator: Option<String>,
}

/// Why a known user could not be read again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The provider says the user is gone, disabled or no longer admitted:
    /// their groups go and every Paddock token of theirs is revoked.
    #[error("access lost: {reason}")]
    AccessLost {
        /// What the provider said.
        reason: String,
    },
    /// The provider could not be asked; the last known groups stay (for the
    /// grace period). Retry no earlier than `retry_after_secs` from now
    /// (0: with the usual backoff).
    #[error("{reason}")]
    Unavailable {
        /// What failed.
        reason: String,
        /// Seconds to wait, for a rate limit.
        retry_after_secs: u64,
    },
    /// The provider keeps nothing to read this user with (a GitHub user who
    /// logged in before tokens were kept): groups stay until the next login.
    #[error("nothing to refresh this user with")]
    NotRefreshable,
}

/// When the accounts wing reads a provider's users again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSchedule {
    /// Groups older than this are read again.
    pub max_age: Duration,
    /// Up to this much is added per user, so refreshes spread out.
    pub jitter: Duration,
    /// How often due users are looked for.
    pub interval: Duration,
    /// While the provider is down, the last known groups stay this long past
    /// their maximum age, then they are dropped; `None`: kept until the
    /// provider answers.
    pub grace: Option<Duration>,
}

/// Who may log in through a provider (Rancher's access modes), with its
/// allowed list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessMode {
    /// Anyone the provider vouches for.
    #[default]
    Unrestricted,
    /// Users on the allowed list, or whose user or groups have a role
    /// binding in the store.
    Restricted,
    /// Only users on the allowed list (by their user or one of their groups).
    Required,
}

impl std::str::FromStr for AccessMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "unrestricted" => Ok(Self::Unrestricted),
            "restricted" => Ok(Self::Restricted),
            "required" => Ok(Self::Required),
            other => Err(format!(
                "unknown access mode {other:?} (expected unrestricted, restricted or required)"
            )),
        }
    }
}

impl AccessMode {
    /// Whether this mode admits `user`: `allowed` holds principal ids
    /// (`github_team://5001`, compared exactly) or display names (`acme`,
    /// compared case-insensitively); `bound` says whether a subject (user
    /// id or principal id) has a role binding.
    pub fn admits(
        self,
        allowed: &[String],
        user: &ExternalUser,
        bound: &dyn Fn(&str) -> bool,
    ) -> bool {
        let principals = || std::iter::once(&user.principal).chain(&user.groups);
        let listed = || {
            principals().any(|p| {
                allowed.iter().any(|a| {
                    if a.contains("://") {
                        *a == p.id
                    } else {
                        a.eq_ignore_ascii_case(&p.display_name)
                    }
                })
            })
        };
        let has_binding =
            || bound(&user_id_for(&user.principal.id)) || principals().any(|p| bound(&p.id));
        match self {
            Self::Unrestricted => true,
            Self::Required => listed(),
            Self::Restricted => listed() || has_binding(),
        }
    }
}

/// A bearer token a provider verified on its own, without I/O (a JWT
/// signed with keys it already holds): who presented it, and until when
/// the answer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBearer {
    /// The user the token stands for, with the groups it carries.
    pub user: ExternalUser,
    /// When the token expires.
    pub expires_at: std::time::SystemTime,
}

/// An external identity provider, registered with the accounts wing under
/// its [`name`](ExternalProvider::name). Adding one (OIDC, say) is one
/// module implementing this and one registration.
///
/// Implementations reject an empty password or token before any I/O, answer
/// [`AuthnError::Invalid`] for every credential problem alike, and
/// [`AuthnError::Unavailable`] when the backend cannot be asked.
pub trait ExternalProvider: Send + Sync + 'static {
    /// The provider's name, as in `{"provider": …}` of a login.
    fn name(&self) -> &str;

    /// Which credential its logins take.
    fn credential_kind(&self) -> CredentialKind;

    /// Checks `credential`; on success, who the user is now. A provider
    /// that accepts one account under several names calls `gate` with a
    /// stable id of the account (its principal id) once it knows which
    /// account is meant and before the secret is checked; a refusal ends
    /// the login with [`AuthnError::Throttled`], so the caller throttles per
    /// account, not per spelling.
    fn login<'a>(
        &'a self,
        credential: LoginCredential<'a>,
        gate: AccountGate<'a>,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>>;

    /// Whether the provider's own access rules admit `user` (GitHub's
    /// allowed organisations); `bound` says whether a principal has a role
    /// binding. Asked after every login and refresh. Default: everyone.
    fn admit(&self, user: &ExternalUser, bound: &dyn Fn(&str) -> bool) -> Result<(), AuthnError> {
        let _ = (user, bound);
        Ok(())
    }

    /// When its users are read again.
    fn refresh_schedule(&self) -> RefreshSchedule;

    /// Reads a known user again: never on the request path.
    fn refresh<'a>(
        &'a self,
        known: &'a KnownUser,
    ) -> BoxFuture<'a, Result<ExternalUser, RefreshError>>;

    /// Hands the provider the vault to keep its users' tokens in (sealed,
    /// where the wiring says: the accounts wing's shared store), for
    /// [`refresh`](Self::refresh) on whichever replica runs it. Called once,
    /// when the provider is registered; a provider may move tokens an
    /// earlier version kept elsewhere into it. Blocking; default: the
    /// provider keeps no tokens.
    fn keep_tokens_in(&self, vault: super::vault::TokenVault) {
        let _ = vault;
    }

    /// Forgets what the provider keeps for a user who lost access (a stored
    /// GitHub token). Blocking; default: nothing kept.
    fn forget(&self, user_id: &str) {
        let _ = user_id;
    }

    /// Whether `token` (presented as `Authorization: Bearer`) is a token
    /// this provider signs: an I/O-free look at its shape and issuer. Asked
    /// only of tokens that [`may_be_provider_bearer`]. Default: no
    /// provider's bearer tokens are accepted.
    fn recognizes_bearer(&self, token: &str) -> bool {
        let _ = token;
        false
    }

    /// Verifies a bearer token [`recognized`](Self::recognizes_bearer) as
    /// this provider's, on the request path: locally, with no call to the
    /// provider except a bounded refresh of its keys. Every problem with the
    /// token is [`AuthnError::Invalid`]; keys that cannot be had are
    /// [`AuthnError::Unavailable`].
    fn verify_bearer<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<VerifiedBearer, AuthnError>> {
        let _ = token;
        Box::pin(std::future::ready(Err(AuthnError::Invalid)))
    }

    /// Users and groups whose names contain `query`, at most `limit`, for
    /// admins writing bindings. Default: the provider cannot search.
    fn search<'a>(
        &'a self,
        query: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<Option<Vec<Principal>>, AuthnError>> {
        let _ = (query, limit);
        Box::pin(std::future::ready(Ok(None)))
    }
}

/// What [`ExternalProvider::login`] asks before checking a secret: may this
/// account (a stable id) try now?
pub type AccountGate<'a> = &'a (dyn Fn(&str) -> Result<(), GateRefused> + Send + Sync);

/// An [`AccountGate`]'s no: the account is locked out for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateRefused {
    /// Seconds until the account may try again.
    pub retry_after_secs: u64,
}

/// A principal: a stable, typed id (`github_team://1234`,
/// `activedirectory_group://<objectGUID>`) and the name people read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Principal {
    /// The immutable id, as written in bindings.
    pub id: String,
    /// The display name (`org:team-slug`, `CN=Ops,...`), for listings.
    pub display_name: String,
}

impl Principal {
    /// A principal from its id and display name.
    pub fn new(id: impl Into<String>, display_name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            display_name: display_name.into(),
        }
    }
}

/// A user as an external provider reported them: the facts the accounts
/// wing stores, with the provider's groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExternalUser {
    /// The provider's name (`openldap`, `activedirectory`, `github`).
    pub provider: String,
    /// The user's principal (`github_user://583231`).
    pub principal: Principal,
    /// The login name.
    pub username: String,
    /// The human-readable name.
    pub display_name: String,
    /// The e-mail address, when known.
    pub email: Option<String>,
    /// The groups (teams, organisations, directory groups).
    pub groups: Vec<Principal>,
    /// Where the provider finds the user again at refresh (an LDAP DN); kept
    /// with the user's attributes.
    pub locator: Option<String>,
}

/// The Paddock user id for an external principal: `u-` and the first ten
/// characters of the lower-case base32 SHA-256 of the principal id, as
/// Rancher derives them, so a repeated first login finds the same user.
pub fn user_id_for(principal_id: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let digest = Sha256::digest(principal_id.as_bytes());
    let mut id = String::from("u-");
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in digest.iter() {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 && id.len() < 12 {
            bits -= 5;
            id.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_stable_base32_of_the_principal() {
        // Python: "u-" + base64.b32encode(sha256(b"github_user://583231")).lower()[:10]
        assert_eq!(user_id_for("github_user://583231"), "u-yiazcbmwuv");
        assert_ne!(
            user_id_for("github_user://583232"),
            user_id_for("github_user://583231")
        );
    }
}
