//! Users of external providers (LDAP, Active Directory, GitHub) as the
//! providers report them at login and at refresh. [`crate::accounts::Accounts::upsert_external`]
//! turns one into a stored user with the provider's groups.

use secrecy::SecretString;
use sha2::{Digest, Sha256};

use super::{local::Throttled, AuthnError, BoxFuture};

/// A provider people log in to with a username and password (a directory).
/// Local users are [`crate::authn::local::LocalProvider`]; both are reached
/// through [`crate::accounts::Accounts::login`], which throttles, stores the
/// user and issues the session.
///
/// Implementations must reject an empty password before any I/O (an empty
/// password is an unauthenticated bind that directories may accept), answer
/// [`AuthnError::Invalid`] for every credential problem alike, and
/// [`AuthnError::Unavailable`] when the backend cannot be asked.
pub trait PasswordProvider: Send + Sync + 'static {
    /// The provider's name, as in `{"provider": …}` of a login.
    fn name(&self) -> &str;

    /// Checks `username` and `password`; on success, who the user is now.
    fn login<'a>(
        &'a self,
        username: &'a str,
        password: &'a SecretString,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>>;

    /// Like [`PasswordProvider::login`], for a provider that accepts one
    /// account under several names: once it knows which account `username`
    /// means, and before the password is checked, it calls `gate` with a
    /// stable id of that account (its principal id); a refusal ends the login
    /// with [`AuthnError::Throttled`]. So the caller can throttle per account,
    /// not per spelling. The default resolves nothing and never calls `gate`.
    fn login_gated<'a>(
        &'a self,
        username: &'a str,
        password: &'a SecretString,
        gate: AccountGate<'a>,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>> {
        let _ = gate;
        self.login(username, password)
    }
}

/// What [`PasswordProvider::login_gated`] asks before checking a password: may
/// this account (a stable id) try now?
pub type AccountGate<'a> = &'a (dyn Fn(&str) -> Result<(), Throttled> + Send + Sync);

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

/// A user as an external provider reported them.
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

/// The per-user delay, in `0..jitter_secs`, added to a background refresh's
/// maximum age: derived from the user id (FNV-1a), so it is stable and
/// spreads users evenly.
pub(crate) fn refresh_jitter(user_id: &str, jitter_secs: u64) -> u64 {
    if jitter_secs == 0 {
        return 0;
    }
    let hash = user_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % jitter_secs
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
    fn refresh_jitter_is_stable_and_bounded() {
        assert_eq!(refresh_jitter("u-abc", 300), refresh_jitter("u-abc", 300));
        assert!(refresh_jitter("u-abc", 300) < 300);
        assert_eq!(refresh_jitter("u-abc", 0), 0);
        let spread: std::collections::BTreeSet<u64> = (0..50)
            .map(|n| refresh_jitter(&format!("u-{n}"), 300))
            .collect();
        assert!(spread.len() > 30, "{spread:?}");
    }

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
