//! Paddock-issued tokens: `<token-id>:<secret>`, opaque to clients.
//!
//! * The secret is 256 bits from the OS CSPRNG (the `hash` module); only a salted,
//!   peppered, versioned hash is stored ([`TokenHasher`]).
//! * Issuing, listing and revoking them is the accounts wing's
//!   (`accounts::tokens`); this module only verifies them, on the request
//!   path and in the sidecar.
//! * [`TokenVerifier`] checks a presented token against any [`TokenSource`] (the
//!   server's snapshot, or a sidecar's replicated hashes); [`TokenCache`] puts a
//!   short-TTL cache in front, found by token id and confirmed by a keyed
//!   digest of the secret; [`LastUsed`] coalesces last-used writes to one per
//!   token per minute.

mod authenticator;
mod cache;
mod hash;
mod last_used;
mod verify;

pub(crate) use authenticator::token_identity;
pub use authenticator::StoreTokens;
pub use cache::TokenCache;
pub(crate) use hash::{new_secret, new_token_id, os_random, os_random_string, ID_ALPHABET};
pub use hash::{Pepper, TokenHasher, SECRET_BYTES};
pub use last_used::LastUsed;
pub use verify::{split_presented, TokenSource, TokenState, TokenVerifier, VerifiedToken};

use crate::store::Timestamp;

/// Why a presented token was rejected. Every variant means "401, must
/// authenticate" to the client; the variants exist for logs and audit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not `<token-id>:<secret>`.
    #[error("malformed token")]
    Malformed,
    /// No token with that id.
    #[error("unknown token")]
    Unknown,
    /// The secret does not match.
    #[error("token secret does not match")]
    Mismatch,
    /// Past its absolute expiry.
    #[error("token expired at {at}")]
    Expired {
        /// When it expired.
        at: Timestamp,
    },
    /// Unused for longer than its idle timeout.
    #[error("token idle timeout exceeded")]
    IdleExpired,
    /// Disabled by an administrator.
    #[error("token disabled")]
    Disabled,
    /// Its user is disabled or gone.
    #[error("the token's user is disabled")]
    UserDisabled,
}
