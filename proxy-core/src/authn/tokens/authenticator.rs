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

    /// The identity a verified token presents downstream: the user id as
    /// `Impersonate-User`, the groups every provider reported at the last
    /// refresh, and Rancher's two extras (`principalid`, `username`).
    fn identity(&self, token: &VerifiedToken) -> Arc<Identity> {
        self.view.with_snapshot(|snap| {
            let user = snap.user(token.user_id()).map(|u| u.value.clone());
            let attributes = snap.user_attributes(token.user_id());
            let groups = attributes.map(|a| a.value.all_groups()).unwrap_or_default();
            let (username, principals) = user
                .map(|u| (u.username, u.principal_ids))
                .unwrap_or_default();
            let mut extra = BTreeMap::new();
            if !principals.is_empty() {
                extra.insert("principalid".to_owned(), principals);
            }
            extra.insert("username".to_owned(), vec![username.clone()]);
            Arc::new(Identity {
                user: token.user_id().to_owned(),
                username,
                uid: None,
                groups,
                extra,
                provider: token.record().provider.clone(),
                cluster_scope: token.cluster().map(str::to_owned),
                token_id: Some(token.token_id().to_owned()),
                password_change_required: false,
            })
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
