//! [`StoreTokens`]: the [`Authenticator`] for Paddock-issued tokens, presented as
//! `Authorization: Bearer` or in the session cookie.

use std::{collections::BTreeMap, sync::Arc};

use secrecy::ExposeSecret;

use super::verify::VerifiedToken;
use super::{split_presented, LastUsed, TokenCache, TokenError, TokenHasher, TokenVerifier};
use crate::authn::{Authenticator, AuthnError, Credential, Identity, ReadyOrBoxed};
use crate::store::{StoreView, Timestamp};

/// How long a verified token's identity is served from memory before it is
/// built again (and the stored hash checked again): the bound on stale groups.
/// Revocation does not wait for it: every hit is re-validated against the
/// snapshot (see [`TokenCache`]).
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(60);
const CACHE_CAPACITY: u64 = 100_000;

/// Verifies Paddock-issued tokens against the store's snapshot, with a cache.
pub struct StoreTokens {
    view: Arc<StoreView>,
    verifier: TokenVerifier,
    cache: TokenCache<Arc<Identity>>,
}

impl std::fmt::Debug for StoreTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTokens")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl StoreTokens {
    /// Tokens of `view`, hashed with `hasher`; uses are recorded in `last_used`.
    pub fn new(view: Arc<StoreView>, hasher: Arc<TokenHasher>, last_used: Arc<LastUsed>) -> Self {
        let verifier = TokenVerifier::new(hasher, view.clone()).with_activity(last_used);
        Self {
            view,
            verifier,
            cache: TokenCache::new(CACHE_TTL, CACHE_CAPACITY),
        }
    }

    /// Verifies `presented` now: the token and the identity it stands for.
    pub fn verify(&self, presented: &str) -> Result<(VerifiedToken, Arc<Identity>), TokenError> {
        self.cache
            .verify(&self.verifier, presented, Timestamp::now(), |token| {
                self.identity(token)
            })
    }

    /// Forgets a revoked token's cache entry at once.
    pub fn invalidate_token(&self, id: &str) {
        self.cache.invalidate_token(id);
    }

    /// The identity a verified token presents downstream ([`token_identity`]),
    /// from the snapshot's user and the groups every provider reported at
    /// the last refresh.
    fn identity(&self, token: &VerifiedToken) -> Arc<Identity> {
        self.view.with_snapshot(|snap| {
            let (username, principal_ids) = snap
                .user(token.user_id())
                .map(|u| (u.value.username.clone(), u.value.principal_ids.clone()))
                .unwrap_or_default();
            let groups = snap
                .user_attributes(token.user_id())
                .map(|a| a.value.all_groups())
                .unwrap_or_default();
            Arc::new(token_identity(token, username, principal_ids, groups))
        })
    }

    /// Authenticates a presented token: `Ok(None)` when it is not shaped
    /// like a Paddock token (another provider's), the token and identity when
    /// valid. A user who must change their password still gets an identity,
    /// marked [`Identity::password_change_required`]: the authenticate layer
    /// decides where that is enough (the password, `me` and logout endpoints).
    pub fn authenticate_token(
        &self,
        presented: &str,
    ) -> Result<Option<(VerifiedToken, Arc<Identity>)>, AuthnError> {
        if split_presented(presented).is_err() {
            return Ok(None);
        }
        let (token, mut identity) = self.verify(presented).map_err(|error| {
            tracing::debug!(%error, "paddock token rejected");
            AuthnError::Invalid
        })?;
        // Read now, not from the cached identity: the change ends the state.
        let must_change = self.view.with_snapshot(|snap| {
            snap.user(token.user_id())
                .is_some_and(|u| u.value.must_change_password)
        });
        if must_change {
            Arc::make_mut(&mut identity).password_change_required = true;
        }
        Ok(Some((token, identity)))
    }
}

/// The identity a verified token presents downstream, wherever it was
/// verified (the center's snapshot, a sidecar's replica): the user id as
/// `Impersonate-User`, the user's `groups`, and Rancher's two extras
/// (`principalid` when the user has principals, `username` always, empty for
/// a user not found). Scoped to the token's cluster, if it has one. With
/// `system:authenticated`: the identity is cached and shared, and the chain
/// would otherwise copy it on every request to add the group.
pub(crate) fn token_identity(
    token: &VerifiedToken,
    username: String,
    principal_ids: Vec<String>,
    groups: Vec<String>,
) -> Identity {
    let mut extra = BTreeMap::new();
    if !principal_ids.is_empty() {
        extra.insert("principalid".to_owned(), principal_ids);
    }
    extra.insert("username".to_owned(), vec![username.clone()]);
    Identity {
        user: token.user_id().to_owned(),
        username,
        uid: None,
        groups,
        extra,
        provider: token.record().provider.clone(),
        cluster_scope: token.cluster().map(str::to_owned),
        token_id: Some(token.token_id().to_owned()),
        password_change_required: false,
    }
    .with_authenticated_group()
}

impl Authenticator for StoreTokens {
    fn name(&self) -> &str {
        "paddock-token"
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let result = match credential {
            Credential::Bearer(token) | Credential::Session(token) => self
                .authenticate_token(token.expose_secret())
                .map(|found| found.map(|(_, identity)| identity)),
            _ => Ok(None),
        };
        ReadyOrBoxed::ready(result)
    }
}
