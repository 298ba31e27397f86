//! Verifying a presented token against a set of token hashes.
//!
//! [`TokenVerifier`] only needs a [`TokenSource`]: token records (with hashes),
//! whether their user is enabled, and the last flushed use. The server's source is
//! its [`StoreView`]; the authorized-cluster-endpoint sidecar can implement
//! [`TokenSource`] over a replicated copy of those records and reuse the verifier
//! as is, without the central server.

use std::sync::Arc;

use super::last_used::LastUsed;
use super::{TokenError, TokenHasher};
use crate::store::{Entry, Revision, Snapshot, StoreView, Timestamp, TokenKind, TokenRecord};

/// Longest token id accepted.
const MAX_ID_LEN: usize = 64;
/// Longest secret accepted (ours are 43 characters).
const MAX_SECRET_LEN: usize = 256;

/// Splits `<token-id>:<secret>`, rejecting anything malformed before any lookup.
pub fn split_presented(presented: &str) -> Result<(&str, &str), TokenError> {
    // Longer than any id and secret together (a JWT): not scanned at all.
    if presented.len() > MAX_ID_LEN + 1 + MAX_SECRET_LEN {
        return Err(TokenError::Malformed);
    }
    // By bytes: every bearer token presented is split here first, and
    // `split_once(':')` and `contains(':')` each cost a `memchr` call.
    let colon = presented
        .bytes()
        .position(|b| b == b':')
        .ok_or(TokenError::Malformed)?;
    let (id, secret) = (&presented[..colon], &presented[colon + 1..]);
    let id_ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !id_ok
        || secret.is_empty()
        || secret.len() > MAX_SECRET_LEN
        || secret.bytes().any(|b| b == b':')
    {
        return Err(TokenError::Malformed);
    }
    Ok((id, secret))
}

/// What a [`TokenSource`] knows about one token.
#[derive(Clone, Debug)]
pub struct TokenState {
    /// The record and its modification revision.
    pub record: Arc<Entry<TokenRecord>>,
    /// Whether the token's user exists and is enabled.
    pub user_enabled: bool,
    /// The user record's modification revision (0 when absent).
    pub user_revision: Revision,
    /// Last use flushed to the store, if any.
    pub last_used: Option<Timestamp>,
}

/// A set of token hashes to verify against.
pub trait TokenSource: Send + Sync {
    /// The current state of token `id`, or `None` when it does not exist.
    fn token_state(&self, id: &str) -> Option<TokenState>;
}

impl TokenSource for Snapshot {
    fn token_state(&self, id: &str) -> Option<TokenState> {
        let record = self.token(id)?.clone();
        let (user_enabled, user_revision) = match self.user(&record.value.user_id) {
            Some(u) => (u.value.enabled, u.revision),
            None => (false, Revision(0)),
        };
        let last_used = self.token_usage(id).map(|u| u.value.last_used_at);
        Some(TokenState {
            record,
            user_enabled,
            user_revision,
            last_used,
        })
    }
}

impl TokenSource for StoreView {
    fn token_state(&self, id: &str) -> Option<TokenState> {
        self.with_snapshot(|s| s.token_state(id))
    }
}

/// A token that verified: who it authenticates and what it may reach.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    record: Arc<Entry<TokenRecord>>,
    user_revision: Revision,
}

impl VerifiedToken {
    /// The token id.
    pub fn token_id(&self) -> &str {
        &self.record.value.id
    }

    /// The user it authenticates as.
    pub fn user_id(&self) -> &str {
        &self.record.value.user_id
    }

    /// Session, API or kubeconfig.
    pub fn kind(&self) -> TokenKind {
        self.record.value.kind
    }

    /// The only cluster it is valid for, if scoped.
    pub fn cluster(&self) -> Option<&str> {
        self.record.value.cluster.as_deref()
    }

    /// Whether it may be used for a request to `cluster_id` (`None`: a request not
    /// addressed to a cluster, e.g. Paddock's own API). A cluster-scoped token is
    /// valid only for its cluster.
    pub fn permits_cluster(&self, cluster_id: Option<&str>) -> bool {
        match self.cluster() {
            None => true,
            Some(c) => cluster_id == Some(c),
        }
    }

    /// The whole record (the hash inside is redacted from `Debug`).
    pub fn record(&self) -> &TokenRecord {
        &self.record.value
    }

    /// Revisions of the token and user records it was verified against.
    pub fn revisions(&self) -> (Revision, Revision) {
        (self.record.revision, self.user_revision)
    }
}

/// Verifies presented tokens against a [`TokenSource`].
pub struct TokenVerifier {
    hasher: Arc<TokenHasher>,
    source: Arc<dyn TokenSource>,
    activity: Option<Arc<LastUsed>>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier").finish_non_exhaustive()
    }
}

impl TokenVerifier {
    /// A verifier over `source`.
    pub fn new(hasher: Arc<TokenHasher>, source: Arc<dyn TokenSource>) -> Self {
        Self {
            hasher,
            source,
            activity: None,
        }
    }

    /// Records every successful verification in `activity` (and takes it into
    /// account for idle timeouts).
    pub fn with_activity(mut self, activity: Arc<LastUsed>) -> Self {
        self.activity = Some(activity);
        self
    }

    /// The source it verifies against.
    pub fn source(&self) -> &Arc<dyn TokenSource> {
        &self.source
    }

    /// Verifies `presented` (`<token-id>:<secret>`) at `now`.
    ///
    /// The secret is checked (in constant time) before anything about the token's
    /// state is revealed through the error; an unknown id costs the same hash.
    pub fn verify(&self, presented: &str, now: Timestamp) -> Result<VerifiedToken, TokenError> {
        let (id, secret) = split_presented(presented)?;
        let Some(state) = self.source.token_state(id) else {
            self.hasher.dummy_verify(secret);
            return Err(TokenError::Unknown);
        };
        if !self.hasher.verify(&state.record.value.hash, secret) {
            return Err(TokenError::Mismatch);
        }
        self.check_state(&state, now)?;
        self.touch(id, now);
        Ok(VerifiedToken {
            record: state.record,
            user_revision: state.user_revision,
        })
    }

    pub(crate) fn touch(&self, id: &str, now: Timestamp) {
        if let Some(a) = &self.activity {
            a.touch(id, now);
        }
    }

    /// Whether `token`, verified earlier, is still valid at `now`: its token
    /// and user records are at the revisions it was verified against, and
    /// [`Self::check_state`] passes. `seen` is a use known to have happened,
    /// so the idle check rarely needs the last-used tracker.
    pub(crate) fn still_valid(
        &self,
        token: &VerifiedToken,
        seen: Timestamp,
        now: Timestamp,
    ) -> bool {
        self.source.token_state(token.token_id()).is_some_and(|st| {
            (st.record.revision, st.user_revision) == token.revisions()
                && self.check_state_seen(&st, Some(seen), now).is_ok()
        })
    }

    /// The checks after the secret matched, in Rancher's order: expiry, idle,
    /// token enabled, user enabled.
    pub(crate) fn check_state(&self, st: &TokenState, now: Timestamp) -> Result<(), TokenError> {
        self.check_state_seen(st, None, now)
    }

    fn check_state_seen(
        &self,
        st: &TokenState,
        seen: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<(), TokenError> {
        let t = &st.record.value;
        if let Some(at) = t.expires_at {
            if now >= at {
                return Err(TokenError::Expired { at });
            }
        }
        if let Some(idle) = t.idle_timeout_secs {
            let mut last = st.last_used.unwrap_or(t.created_at).max(t.created_at);
            last = last.max(seen.unwrap_or(last));
            // The tracker (a lock) only when the uses known so far are too old.
            if now.seconds_since(last) >= idle {
                if let Some(seen) = self.activity.as_ref().and_then(|a| a.last_seen(&t.id)) {
                    last = last.max(seen);
                }
            }
            if now.seconds_since(last) >= idle {
                return Err(TokenError::IdleExpired);
            }
        }
        if !t.enabled {
            return Err(TokenError::Disabled);
        }
        if !st.user_enabled {
            return Err(TokenError::UserDisabled);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_tokens_split_at_the_colon_within_the_length_limits() {
        let id = "t".repeat(MAX_ID_LEN);
        let secret = "s".repeat(MAX_SECRET_LEN);
        assert_eq!(
            split_presented(&format!("{id}:{secret}")).unwrap(),
            (id.as_str(), secret.as_str())
        );
        for malformed in [
            format!("{id}t:{secret}"),
            format!("{id}:{secret}s"),
            format!("t:{secret}{secret}"),
            "no-colon".to_owned(),
            ":secret".to_owned(),
            "id:".to_owned(),
            "id:se:cret".to_owned(),
            "id with space:secret".to_owned(),
        ] {
            assert!(
                matches!(split_presented(&malformed), Err(TokenError::Malformed)),
                "{malformed}"
            );
        }
    }
}
