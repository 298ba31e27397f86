//! The provider's signing keys (its JWKS), cached: tokens are verified
//! against the keys in memory. A token signed with an unknown key id makes
//! one fetch of the key set (concurrent callers wait for that one fetch,
//! not each their own), at most once per minimum interval, so made-up
//! `kid`s cannot make Paddock hammer the provider; a failed fetch keeps
//! the last good set. This is go-oidc's `RemoteKeySet` (kube-apiserver's
//! verifier) plus the rate limit and the "keep the last good set" it lacks.
//!
//! The key, not the token, decides the algorithm (RFC 8725 §3.1): each key
//! admits the algorithms of its type (RSA: RS*/PS*; EC: the one of its
//! curve; OKP Ed25519: EdDSA), narrowed to its `alg` when it names one.
//! Symmetric (`oct`) keys and encryption keys are never loaded, so neither
//! `none` nor HMAC with a public key can verify.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use arc_swap::ArcSwap;
use jsonwebtoken::{
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
    Algorithm, DecodingKey,
};

/// The asymmetric algorithms Paddock verifies (kube-apiserver's list plus EdDSA).
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// One verification key.
#[derive(Clone)]
pub struct VerifyingKey {
    /// The key id, if the JWKS gave one.
    pub kid: Option<String>,
    /// The algorithms this key may verify.
    pub algorithms: Vec<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// A signature key from a JWK; `None` for keys Paddock never verifies
    /// with (symmetric, encryption-only, unsupported curves).
    pub fn from_jwk(jwk: &Jwk) -> Option<Self> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return None;
        }
        let family: Vec<Algorithm> = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ],
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => vec![Algorithm::ES256],
                EllipticCurve::P384 => vec![Algorithm::ES384],
                _ => return None,
            },
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                vec![Algorithm::EdDSA]
            }
            _ => return None,
        };
        let algorithms = match jwk.common.key_algorithm {
            None => family,
            Some(named) => {
                let named = algorithm_of(named)?;
                if !family.contains(&named) {
                    return None;
                }
                vec![named]
            }
        };
        let key = DecodingKey::from_jwk(jwk).ok()?;
        Some(Self {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }
}

fn algorithm_of(named: KeyAlgorithm) -> Option<Algorithm> {
    Some(match named {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Parses a JWKS document, keeping the keys that can verify signatures and
/// skipping the others (an `enc` key, an unknown type) rather than failing.
pub fn parse_jwks(body: &[u8]) -> Result<Vec<VerifyingKey>, String> {
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set =
        serde_json::from_slice(body).map_err(|e| format!("the key set is not a JWKS: {e}"))?;
    let keys: Vec<VerifyingKey> = set
        .keys
        .into_iter()
        .filter_map(|value| serde_json::from_value::<Jwk>(value).ok())
        .filter_map(|jwk| VerifyingKey::from_jwk(&jwk))
        .collect();
    if keys.is_empty() {
        return Err("the key set holds no signature key Paddock can use".to_owned());
    }
    Ok(keys)
}

/// The keys as last fetched.
#[derive(Debug, Default)]
pub struct Keys {
    /// The keys.
    pub keys: Vec<VerifyingKey>,
    /// Counts successful fetches: a caller that saw generation `n` knows a
    /// fetch happened when it finds a higher one.
    pub generation: u64,
    /// When they were fetched; `None` before the first fetch.
    pub fetched_at: Option<Instant>,
}

impl Keys {
    /// The keys that may verify a token with header `kid` and `alg`: the
    /// one with that id, or every key of that algorithm when the token
    /// names none.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
    ) -> impl Iterator<Item = &'a VerifyingKey> + 'a {
        self.keys.iter().filter(move |key| {
            key.algorithms.contains(&alg)
                && match kid {
                    Some(kid) => key.kid.as_deref() == Some(kid),
                    None => true,
                }
        })
    }

    /// Whether a key with id `kid` is known (whatever its algorithm).
    pub fn knows(&self, kid: Option<&str>) -> bool {
        match kid {
            Some(kid) => self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)),
            None => !self.keys.is_empty(),
        }
    }
}

/// The cached key set with its single-flight, rate-limited refresh.
#[derive(Debug)]
pub struct KeyCache {
    current: ArcSwap<Keys>,
    /// When the last fetch was tried, and whether it failed.
    refresh: tokio::sync::Mutex<Option<(Instant, bool)>>,
    min_interval: Duration,
}

/// What a refresh found.
#[derive(Debug)]
pub enum Refreshed {
    /// This call or a concurrent one fetched the set: these are the keys now.
    Fresh(Arc<Keys>),
    /// The last fetch was too recent: the keys as they were.
    RateLimited(Arc<Keys>),
    /// The last fetch, too recent to try again, failed: the keys as they
    /// were, which may lack a key the provider has rotated to since.
    LastFailed(Arc<Keys>),
}

impl KeyCache {
    /// An empty cache refreshing at most once per `min_interval`.
    pub fn new(min_interval: Duration) -> Self {
        Self {
            current: ArcSwap::from_pointee(Keys::default()),
            refresh: tokio::sync::Mutex::new(None),
            min_interval,
        }
    }

    /// The keys now, without waiting.
    pub fn current(&self) -> Arc<Keys> {
        self.current.load_full()
    }

    /// Fetches the set with `fetch` unless another caller did since this
    /// one saw generation `seen`, or the last attempt was less than the
    /// minimum interval ago. One fetch at a time; the others wait for it.
    /// A failed fetch keeps the last good set and returns the error.
    pub async fn refresh<F, Fut>(&self, seen: u64, fetch: F) -> Result<Refreshed, String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<VerifyingKey>, String>>,
    {
        let mut last_attempt = self.refresh.lock().await;
        let now = self.current.load_full();
        if now.generation != seen {
            return Ok(Refreshed::Fresh(now));
        }
        match *last_attempt {
            Some((at, failed)) if at.elapsed() < self.min_interval => {
                return Ok(if failed {
                    Refreshed::LastFailed(now)
                } else {
                    Refreshed::RateLimited(now)
                });
            }
            _ => {}
        }
        *last_attempt = Some((Instant::now(), true));
        let keys = fetch().await?;
        *last_attempt = Some((Instant::now(), false));
        let fresh = Arc::new(Keys {
            keys,
            generation: now.generation + 1,
            fetched_at: Some(Instant::now()),
        });
        self.current.store(fresh.clone());
        Ok(Refreshed::Fresh(fresh))
    }

    /// Whether a refresh is running now (a background refresh need not
    /// start another).
    pub fn refreshing(&self) -> bool {
        self.refresh.try_lock().is_err()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const RSA_JWK: &str = r#"{"kty":"RSA","kid":"r1","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}"#;
    const EC_JWK: &str = r#"{"kty":"EC","kid":"e1","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    fn jwks(keys: &[&str]) -> Vec<u8> {
        format!(r#"{{"keys":[{}]}}"#, keys.join(",")).into_bytes()
    }

    #[test]
    fn the_key_type_decides_the_algorithms_and_symmetric_keys_are_dropped() {
        let oct = r#"{"kty":"oct","kid":"h1","k":"c2VjcmV0"}"#;
        let enc = r#"{"kty":"RSA","kid":"x1","use":"enc","n":"sXch","e":"AQAB"}"#;
        let keys = parse_jwks(&jwks(&[RSA_JWK, EC_JWK, oct, enc, r#"{"kty":"weird"}"#])).unwrap();
        let kids: Vec<_> = keys.iter().map(|k| k.kid.clone().unwrap()).collect();
        assert_eq!(kids, ["r1", "e1"]);
        assert!(keys[0].algorithms.contains(&Algorithm::RS256));
        assert!(!keys[0].algorithms.contains(&Algorithm::HS256));
        assert_eq!(keys[1].algorithms, [Algorithm::ES256]);
        let set = Keys {
            keys,
            ..Keys::default()
        };
        // An RSA key id with an EC or HMAC algorithm finds nothing.
        assert_eq!(set.candidates(Some("r1"), Algorithm::ES256).count(), 0);
        assert_eq!(set.candidates(Some("r1"), Algorithm::HS256).count(), 0);
        assert_eq!(set.candidates(Some("r1"), Algorithm::RS256).count(), 1);
        assert!(parse_jwks(&jwks(&[oct])).is_err());
        // A key naming its algorithm admits only that one.
        let named = RSA_JWK.replace(r#""use":"sig""#, r#""use":"sig","alg":"PS256""#);
        let keys = parse_jwks(&jwks(&[&named])).unwrap();
        assert_eq!(keys[0].algorithms, [Algorithm::PS256]);
    }

    #[tokio::test]
    async fn concurrent_unknown_kids_make_one_fetch_and_then_wait_for_the_interval() {
        let cache = Arc::new(KeyCache::new(Duration::from_secs(3600)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .refresh(0, || async {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        parse_jwks(&jwks(&[RSA_JWK]))
                    })
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert!(matches!(task.await.unwrap(), Refreshed::Fresh(_)));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        // Generation 1 seen, asked again at once: rate limited, no fetch.
        let again = cache
            .refresh(1, || async {
                fetches.fetch_add(1, Ordering::SeqCst);
                parse_jwks(&jwks(&[EC_JWK]))
            })
            .await
            .unwrap();
        assert!(matches!(again, Refreshed::RateLimited(keys) if keys.knows(Some("r1"))));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_fetch_keeps_the_last_good_keys() {
        let cache = KeyCache::new(Duration::ZERO);
        cache
            .refresh(0, || async { parse_jwks(&jwks(&[RSA_JWK])) })
            .await
            .unwrap();
        let failed = cache
            .refresh(1, || async { Err("connection refused".to_owned()) })
            .await;
        assert!(failed.is_err());
        assert!(cache.current().knows(Some("r1")));
        assert_eq!(cache.current().generation, 1);
    }

    #[tokio::test]
    async fn within_the_interval_a_failed_fetch_is_reported_not_retried() {
        let cache = KeyCache::new(Duration::from_secs(3600));
        let failed = cache
            .refresh(0, || async { Err("connection refused".to_owned()) })
            .await;
        assert!(failed.is_err());
        let again = cache
            .refresh(0, || async { parse_jwks(&jwks(&[RSA_JWK])) })
            .await
            .unwrap();
        assert!(matches!(again, Refreshed::LastFailed(keys) if !keys.knows(Some("r1"))));
    }
}
