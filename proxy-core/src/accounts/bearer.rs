//! Bearer tokens that external providers verify themselves (OpenID Connect
//! JWTs): one [`Authenticator`] in the chain for all of them. A provider
//! says whether a token is its own by a cheap look (shape and unverified
//! issuer; an opaque token fails at its first bytes), verifies it without
//! I/O, and the accounts wing applies what it owns: the provider's access
//! rules (role bindings count for `restricted`) and a disabled Paddock user.
//!
//! Verified tokens are remembered for a short while (at most
//! [`CACHE_TTL`], never past their `exp`) under their SHA-256, so a client
//! that sends the same JWT on every request pays one signature check per
//! interval, as kube-apiserver's token cache does. The cache is asked
//! before the providers: a hit costs the hash and a lookup, not the
//! providers' decoding of the token's issuer. The disabled check runs on
//! every request.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use crate::{
    authn::{
        external::{may_be_provider_bearer, user_id_for, ExternalProvider, VerifiedBearer},
        Authenticator, AuthnError, Credential, Identity, ReadyOrBoxed,
    },
    store::StoreView,
};

/// Longest a verified token is served from memory.
const CACHE_TTL: Duration = Duration::from_secs(10);
const CACHE_CAPACITY: u64 = 100_000;

#[derive(Clone)]
struct Verified {
    identity: Arc<Identity>,
    until: Instant,
}

/// The authenticator of provider-verified bearer tokens; see the module docs.
pub struct ProviderBearer {
    providers: Vec<Arc<dyn ExternalProvider>>,
    view: Arc<StoreView>,
    cache: moka::sync::Cache<[u8; 32], Verified>,
}

impl std::fmt::Debug for ProviderBearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderBearer")
            .field(
                "providers",
                &self.providers.iter().map(|p| p.name()).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ProviderBearer {
    /// Tokens of `providers`, checked against the store of `view`.
    pub fn new(providers: Vec<Arc<dyn ExternalProvider>>, view: Arc<StoreView>) -> Self {
        Self {
            providers,
            view,
            cache: moka::sync::Cache::builder()
                .time_to_live(CACHE_TTL)
                .max_capacity(CACHE_CAPACITY)
                .build(),
        }
    }

    /// Whether the stored user `id` exists and is disabled.
    fn disabled(&self, id: &str) -> bool {
        self.view
            .with_snapshot(|s| s.user(id).is_some_and(|u| !u.value.enabled))
    }

    async fn verify(
        &self,
        provider: &Arc<dyn ExternalProvider>,
        token: &str,
        key: [u8; 32],
    ) -> Result<Arc<Identity>, AuthnError> {
        let VerifiedBearer { user, expires_at } = provider.verify_bearer(token).await?;
        provider.admit(&user, &|subject| super::has_binding(&self.view, subject))?;
        let id = user_id_for(&user.principal.id);
        let mut extra = BTreeMap::new();
        extra.insert("principalid".to_owned(), vec![user.principal.id.clone()]);
        extra.insert("username".to_owned(), vec![user.username.clone()]);
        let identity = Arc::new(
            Identity {
                user: id,
                username: user.username,
                uid: None,
                groups: user.groups.into_iter().map(|g| g.id).collect(),
                extra,
                provider: user.provider,
                cluster_scope: None,
                token_id: None,
                password_change_required: false,
            }
            // Cached and shared: with `system:authenticated` now, or the chain
            // would copy the identity on every request to add it.
            .with_authenticated_group(),
        );
        let left = expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        self.cache.insert(
            key,
            Verified {
                identity: identity.clone(),
                until: Instant::now() + left.min(CACHE_TTL),
            },
        );
        Ok(identity)
    }
}

impl Authenticator for ProviderBearer {
    fn name(&self) -> &str {
        "provider-bearer"
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let Credential::Bearer(token) = credential else {
            return ReadyOrBoxed::ready(Ok(None));
        };
        let token = token.expose_secret();
        if !may_be_provider_bearer(token) {
            return ReadyOrBoxed::ready(Ok(None));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache.get(&key).filter(|v| v.until > Instant::now()) {
            let result = if self.disabled(&hit.identity.user) {
                Err(AuthnError::Invalid)
            } else {
                Ok(Some(hit.identity))
            };
            return ReadyOrBoxed::ready(result);
        }
        let Some(provider) = self.providers.iter().find(|p| p.recognizes_bearer(token)) else {
            return ReadyOrBoxed::ready(Ok(None));
        };
        ReadyOrBoxed::boxed(async move {
            let identity = self.verify(provider, token, key).await?;
            if self.disabled(&identity.user) {
                return Err(AuthnError::Invalid);
            }
            Ok(Some(identity))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::SecretString;

    use super::*;
    use crate::{
        authn::{
            external::{AccountGate, CredentialKind, ExternalUser, LoginCredential, Principal},
            BoxFuture, SYSTEM_AUTHENTICATED,
        },
        store::{EmbeddedOptions, EmbeddedStore},
    };

    /// Recognizes every token and verifies it as alice's, counting the calls.
    #[derive(Default)]
    struct Counting {
        recognized: AtomicUsize,
        verified: AtomicUsize,
    }

    impl ExternalProvider for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn credential_kind(&self) -> CredentialKind {
            CredentialKind::Token
        }
        fn login<'a>(
            &'a self,
            _: LoginCredential<'a>,
            _: AccountGate<'a>,
        ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>> {
            Box::pin(async { Err(AuthnError::Invalid) })
        }
        fn refresh_schedule(&self) -> crate::authn::external::RefreshSchedule {
            crate::authn::external::RefreshSchedule {
                max_age: Duration::from_secs(3600),
                jitter: Duration::ZERO,
                interval: Duration::from_secs(3600),
                grace: None,
            }
        }
        fn refresh<'a>(
            &'a self,
            _: &'a crate::authn::external::KnownUser,
        ) -> BoxFuture<'a, Result<ExternalUser, crate::authn::external::RefreshError>> {
            unreachable!("not refreshed in these tests")
        }
        fn recognizes_bearer(&self, _: &str) -> bool {
            self.recognized.fetch_add(1, Ordering::SeqCst);
            true
        }
        fn verify_bearer<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<VerifiedBearer, AuthnError>> {
            self.verified.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                Ok(VerifiedBearer {
                    user: ExternalUser {
                        provider: "counting".into(),
                        principal: Principal::new("counting_user://alice", "alice"),
                        username: "alice".into(),
                        display_name: "Alice".into(),
                        email: None,
                        groups: vec![Principal::new("counting_group://ops", "ops")],
                        locator: None,
                    },
                    expires_at: SystemTime::now() + Duration::from_secs(3600),
                })
            })
        }
    }

    /// A verified token is served from the cache, before any provider is
    /// asked, as one shared identity that already has
    /// `system:authenticated`; opaque and oversized tokens never reach the
    /// providers.
    #[tokio::test]
    async fn cached_tokens_skip_the_providers_and_share_one_identity() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.redb"), EmbeddedOptions::default()).unwrap();
        let view = StoreView::new(Arc::new(store)).unwrap();
        let provider = Arc::new(Counting::default());
        let bearer = ProviderBearer::new(vec![provider.clone()], view);
        let authenticate = |token: &str| {
            let credential = Credential::Bearer(SecretString::from(token));
            let bearer = &bearer;
            async move { bearer.authenticate(&credential).await }
        };

        assert!(authenticate("pdk_t-abc:secret").await.unwrap().is_none());
        let huge = format!("eyJ{}", "a".repeat(16 * 1024));
        assert!(authenticate(&huge).await.unwrap().is_none());
        assert_eq!(provider.recognized.load(Ordering::SeqCst), 0);

        let first = authenticate("eyJ.a.b").await.unwrap().unwrap();
        let second = authenticate("eyJ.a.b").await.unwrap().unwrap();
        assert_eq!(provider.recognized.load(Ordering::SeqCst), 1);
        assert_eq!(provider.verified.load(Ordering::SeqCst), 1);
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(first.groups, ["counting_group://ops", SYSTEM_AUTHENTICATED]);
    }
}
