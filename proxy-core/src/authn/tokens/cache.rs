//! A short-TTL cache in front of [`TokenVerifier`], keyed by a digest of the
//! presented token (never the token itself), holding whatever the caller derives
//! from a verified token (e.g. the request Identity).
//!
//! A hit is re-validated against the current [`TokenSource`] state: the token and
//! user records must still be at the revisions the entry was built from, and
//! expiry, idle timeout and the enabled flags are re-checked. Revoking a token or
//! disabling its user therefore takes effect on the very next request even for
//! a cached token; [`TokenCache::invalidate_token`] also drops the entry.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::hash::os_random;
use super::verify::{TokenVerifier, VerifiedToken};
use super::TokenError;
use crate::store::Timestamp;

struct Cached<V> {
    verified: VerifiedToken,
    value: V,
}

/// A cache of verified tokens and a derived value `V`.
pub struct TokenCache<V = ()> {
    inner: moka::sync::Cache<[u8; 32], Arc<Cached<V>>>,
    // Per-process random key: the digest identifies a token only inside this
    // process, so cache keys are useless to anyone who reads memory dumps or logs.
    key: [u8; 32],
}

impl<V> std::fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.inner.entry_count())
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> TokenCache<V> {
    /// A cache holding at most `capacity` tokens, each for at most `ttl`.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let mut key = [0u8; 32];
        os_random(&mut key);
        Self {
            inner: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            key,
        }
    }

    fn digest(&self, presented: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(presented.as_bytes());
        h.finalize().into()
    }

    /// Verifies `presented`, from the cache when possible; on a miss runs
    /// `verifier` and `build`, and caches both.
    pub fn verify(
        &self,
        verifier: &TokenVerifier,
        presented: &str,
        now: Timestamp,
        build: impl FnOnce(&VerifiedToken) -> V,
    ) -> Result<(VerifiedToken, V), TokenError> {
        let digest = self.digest(presented);
        if let Some(c) = self.inner.get(&digest) {
            let still_valid = verifier
                .source()
                .token_state(c.verified.token_id())
                .is_some_and(|st| {
                    (st.record.revision, st.user_revision) == c.verified.revisions()
                        && verifier.check_state(&st, now).is_ok()
                });
            if still_valid {
                verifier.touch(c.verified.token_id(), now);
                return Ok((c.verified.clone(), c.value.clone()));
            }
            // Changed, revoked, disabled or expired: fall through to a full
            // verification, which reports the precise reason.
            self.inner.invalidate(&digest);
        }
        let verified = verifier.verify(presented, now)?;
        let value = build(&verified);
        self.inner.insert(
            digest,
            Arc::new(Cached {
                verified: verified.clone(),
                value: value.clone(),
            }),
        );
        Ok((verified, value))
    }

    /// Drops every cached entry of token `id`.
    pub fn invalidate_token(&self, id: &str) {
        let id = id.to_string();
        // Only fails when closures are not supported, which `new` enables.
        let _ = self
            .inner
            .invalidate_entries_if(move |_, c| c.verified.token_id() == id);
    }

    /// Drops every cached entry of a user's tokens (on disable).
    pub fn invalidate_user(&self, user_id: &str) {
        let id = user_id.to_string();
        let _ = self
            .inner
            .invalidate_entries_if(move |_, c| c.verified.user_id() == id);
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }
}
