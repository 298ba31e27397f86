//! The store behind providers' token vaults: each provider's sealed token of
//! a user is one [`ProviderToken`] object, so the replica elected to refresh
//! reads the token of a user who logged in on any replica, and
//! `paddock store migrate` carries it like every other object. Providers
//! seal; only ciphertext reaches this module.

use std::sync::Arc;

use crate::{
    authn::vault::{SealedTokens, VaultError},
    store::{Expect, Key, Kind, Object, Op, ProviderToken, StoreView, Timestamp},
};

/// [`SealedTokens`] in the store.
pub(super) struct StoreSealedTokens {
    view: Arc<StoreView>,
}

impl StoreSealedTokens {
    pub(super) fn new(view: Arc<StoreView>) -> Self {
        Self { view }
    }
}

impl SealedTokens for StoreSealedTokens {
    /// From the snapshot: no store round trip.
    fn get(&self, provider: &str, user_id: &str) -> Option<String> {
        self.view.with_snapshot(|s| {
            s.provider_token(provider, user_id)
                .map(|t| t.value.sealed.clone())
        })
    }

    /// Last writer wins: a login and a refresh that rotated the token both
    /// write a token the provider accepts.
    fn put(&self, provider: &str, user_id: &str, sealed: String) -> Result<(), VaultError> {
        let token = ProviderToken {
            provider: provider.to_owned(),
            user_id: user_id.to_owned(),
            sealed,
            updated_at: Timestamp::now(),
        };
        self.view
            .commit(vec![Op::put(Object::ProviderToken(token), Expect::Any)])
            .map(drop)
            .map_err(|e| VaultError(e.to_string()))
    }

    fn remove(&self, provider: &str, user_id: &str) -> Result<(), VaultError> {
        let key = Key::new(
            Kind::ProviderToken,
            ProviderToken::id_for(provider, user_id),
        );
        self.view
            .commit(vec![Op::delete(key, Expect::Any)])
            .map(drop)
            .map_err(|e| VaultError(e.to_string()))
    }
}
