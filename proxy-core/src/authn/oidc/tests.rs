//! Verification and claim mapping with keys made for these tests
//! (`testdata/`: a throwaway RSA and P-256 key). The same cases run against
//! a real provider in `tests/tests/oidc.rs`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{encode, jwk::Jwk, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::keys::{Keys, VerifyingKey};
use super::verify::{self, TokenError};
use super::*;

const RSA: &[u8] = include_bytes!("testdata/rsa.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("testdata/rsa.pub.pem");
const EC: &[u8] = include_bytes!("testdata/ec.pem");
const ISSUER: &str = "https://idp.example/realms/ops";

fn config() -> OidcConfig {
    OidcConfig::new(
        "corp",
        ISSUER,
        "paddock",
        SecretString::from("secret"),
        SecretString::from("key"),
    )
}

fn keys() -> Keys {
    let rsa = EncodingKey::from_rsa_pem(RSA).unwrap();
    let ec = EncodingKey::from_ec_pem(EC).unwrap();
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("r1".into());
    let mut ec_jwk = Jwk::from_encoding_key(&ec, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("e1".into());
    Keys {
        keys: vec![
            VerifyingKey::from_jwk(&rsa_jwk).unwrap(),
            VerifyingKey::from_jwk(&ec_jwk).unwrap(),
        ],
        generation: 1,
        fetched_at: Some(std::time::Instant::now()),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": "paddock", "sub": "u-42", "exp": now() + 300,
        "iat": now(), "name": "Alice", "email": "alice@example.com",
        "groups": ["ops", "devs", "ops"],
    })
}

fn sign(alg: Algorithm, kid: &str, claims: &Value) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, &key).unwrap()
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn valid_rs256_and_es256_tokens_verify_and_map_to_principals() {
    let config = config();
    for (alg, kid) in [(Algorithm::RS256, "r1"), (Algorithm::ES256, "e1")] {
        let token = sign(alg, kid, &claims());
        assert!(looks_like_jwt(&token));
        assert_eq!(verify::unverified_issuer(&token).as_deref(), Some(ISSUER));
        let claims = verify::verify(&config, &keys(), &token).unwrap();
        let user = verify::external_user(&config, &claims).unwrap();
        assert_eq!(user.username, format!("{ISSUER}#u-42"));
        assert_eq!(user.display_name, "Alice");
        assert!(user.principal.id.starts_with("oidc_user://"));
        assert!(user.principal.id.ends_with("/u-42"));
        let groups: Vec<_> = user.groups.iter().map(|g| g.id.as_str()).collect();
        assert_eq!(groups, ["oidc_group://devs", "oidc_group://ops"]);
    }
}

#[test]
fn refused_tokens() {
    let config = config();
    let keys = keys();
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = claims();
        change(&mut c);
        sign(Algorithm::RS256, "r1", &c)
    };
    let cases: Vec<(&str, String)> = vec![
        ("expired", with(&|c| c["exp"] = json!(now() - 120))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 600))),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "no subject",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
        ),
        ("unknown kid", sign(Algorithm::RS256, "r9", &claims())),
        // An EC key id with an RSA signature: the key decides the algorithm.
        (
            "algorithm of another key",
            sign(Algorithm::RS256, "e1", &claims()),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "r1"})),
                b64(&claims())
            ),
        ),
        (
            "HS256 signed with the public key",
            encode(
                &Header {
                    kid: Some("r1".into()),
                    ..Header::new(Algorithm::HS256)
                },
                &claims(),
                &EncodingKey::from_secret(RSA_PUBLIC),
            )
            .unwrap(),
        ),
        ("tampered payload", {
            let token = sign(Algorithm::RS256, "r1", &claims());
            let parts: Vec<&str> = token.split('.').collect();
            let mut c = claims();
            c["groups"] = json!(["system:masters"]);
            format!("{}.{}.{}", parts[0], b64(&c), parts[2])
        }),
    ];
    for (case, token) in cases {
        assert!(
            verify::verify(&config, &keys, &token).is_err(),
            "{case} must be refused"
        );
    }
    // Leeway: expired 10 s ago is still inside the 30 s of clock skew.
    let recent = with(&|c| c["exp"] = json!(now() - 10));
    assert!(verify::verify(&config, &keys, &recent).is_ok());
    assert_eq!(
        verify::header(&format!("{}.e30.", b64(&json!({"alg": "HS256"})))),
        Err(TokenError::Algorithm)
    );
}

#[test]
fn required_claims_audiences_and_prefixes() {
    let mut config = config();
    config
        .required_claims
        .insert("hd".into(), "example.com".into());
    let token = sign(Algorithm::RS256, "r1", &claims());
    assert!(verify::verify(&config, &keys(), &token).is_err());
    let mut c = claims();
    c["hd"] = json!("example.com");
    c["aud"] = json!(["kubelogin", "other"]);
    config.audiences = vec!["kubelogin".into()];
    let token = sign(Algorithm::RS256, "r1", &c);
    let claims = verify::verify(&config, &keys(), &token).unwrap();

    config.username_claim = "email".into();
    config.groups_prefix = "corp:".into();
    let user = verify::external_user(&config, &claims).unwrap();
    assert_eq!(user.username, "alice@example.com");
    assert_eq!(user.groups[0].id, "oidc_group://corp:devs");
    config.username_prefix = Some("oidc:".into());
    assert_eq!(
        verify::external_user(&config, &claims).unwrap().username,
        "oidc:alice@example.com"
    );
    config.username_prefix = Some("-".into());
    config.username_claim = "sub".into();
    assert_eq!(
        verify::external_user(&config, &claims).unwrap().username,
        "u-42"
    );
    // The principal is the issuer and sub, whatever the name claim.
    assert_eq!(
        verify::external_user(&config, &claims)
            .unwrap()
            .principal
            .id,
        user_principal(ISSUER, "u-42")
    );
    assert_ne!(
        user_principal(ISSUER, "u-42"),
        user_principal("https://other.example", "u-42")
    );
}

#[test]
fn opaque_tokens_are_not_taken_for_jwts() {
    for token in ["pdk_abc.def", "static-token", "eyJ.only-two", "a.b.c"] {
        assert!(!looks_like_jwt(token), "{token}");
    }
}

#[test]
fn debug_output_redacts_secrets() {
    let debug = format!("{:?}", config());
    assert!(!debug.contains("secret\""), "{debug}");
    assert!(debug.contains("[redacted]"), "{debug}");
}

/// A token signed with a key id the cache lacks may carry a key the
/// provider rotated to. While the provider cannot be asked, that is its
/// outage, not a bad token: 503, on the first request and on those within
/// the refresh interval after the failed fetch.
#[tokio::test]
async fn an_unknown_key_while_the_provider_is_down_is_unavailable_not_invalid() {
    // A port nothing listens on: taken, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("https://127.0.0.1:{port}");
    let mut config = config();
    config.issuer.clone_from(&issuer);
    let interval = std::time::Duration::from_secs(1);
    config.key_refresh_min_interval = interval;
    let provider = OidcProvider::new(config).unwrap();
    provider
        .inner
        .keys
        .refresh(0, || async { Ok(keys().keys) })
        .await
        .unwrap();
    let mut claims = claims();
    claims["iss"] = json!(issuer);
    let known = provider
        .verify_token(&sign(Algorithm::RS256, "r1", &claims))
        .await;
    assert!(known.is_ok(), "{known:?}");
    // Past the interval since the keys were fetched, so the next unknown
    // key fetches again (and fails); the one after is within the interval.
    tokio::time::sleep(interval + interval / 10).await;
    for attempt in ["fetching", "within the interval"] {
        let unknown = provider
            .verify_token(&sign(Algorithm::RS256, "r9", &claims))
            .await;
        assert!(
            matches!(unknown, Err(AuthnError::Unavailable { .. })),
            "{attempt}: {unknown:?}"
        );
    }
}

/// While the provider is down, anonymous login requests (each needs the
/// discovery document) share the connection attempt in flight when they
/// arrive; a request after it fails asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_discovery_is_fetched_once_for_concurrent_callers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A provider that accepts connections and closes them after a while,
    // long enough that every caller below arrives while one is open.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("https://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                drop(socket);
            });
        }
    });
    let mut config = config();
    config.issuer = issuer;
    let provider = Arc::new(OidcProvider::new(config).unwrap());
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.inner.discovery().await.map(drop) })
        })
        .collect();
    for caller in callers {
        assert!(caller.await.unwrap().is_err());
    }
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    assert!(provider.inner.discovery().await.is_err());
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}
