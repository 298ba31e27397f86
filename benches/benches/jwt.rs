//! JWT bearer verification on the request path, with the provider's keys
//! already in memory: the signature and claim checks of one ID token
//! (RS256 with a 2048-bit key, ES256 on P-256), and the shape check that
//! every other bearer token (Paddock's own, static tokens) pays.
//!
//! Run: `cargo bench -p paddock-benches --bench jwt`

use std::{
    hint::black_box,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, jwk::Jwk, Algorithm, EncodingKey, Header};
use proxy_core::authn::oidc::{
    keys::{Keys, VerifyingKey},
    looks_like_jwt, verify, OidcConfig,
};
use secrecy::SecretString;

const RSA: &[u8] = include_bytes!("../../proxy-core/src/authn/oidc/testdata/rsa.pem");
const EC: &[u8] = include_bytes!("../../proxy-core/src/authn/oidc/testdata/ec.pem");
const ISSUER: &str = "https://idp.example/realms/ops";

fn key(pem: &[u8], alg: Algorithm) -> (EncodingKey, VerifyingKey) {
    let encoding = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem).unwrap(),
        _ => EncodingKey::from_rsa_pem(pem).unwrap(),
    };
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
    jwk.common.key_id = Some(format!("{alg:?}"));
    (encoding, VerifyingKey::from_jwk(&jwk).unwrap())
}

fn bench(c: &mut Criterion) {
    let config = OidcConfig::new(
        "corp",
        ISSUER,
        "paddock",
        SecretString::from("secret"),
        SecretString::from("key"),
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // An ID token as Keycloak sends it, give or take a claim.
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "paddock", "sub": "f1b9c2d4-7a53-4e0b-9b1e-2c64a1d0e5f7",
        "exp": now + 3600, "iat": now, "auth_time": now, "azp": "paddock",
        "email": "alice@example.com", "email_verified": true, "name": "Alice Example",
        "preferred_username": "alice", "groups": ["ops", "devs", "platform", "oncall"],
    });
    let mut group = c.benchmark_group("jwt");
    let mut all = Vec::new();
    for (alg, pem) in [(Algorithm::RS256, RSA), (Algorithm::ES256, EC)] {
        let (encoding, verifying) = key(pem, alg);
        let mut header = Header::new(alg);
        header.kid = Some(format!("{alg:?}"));
        let token = encode(&header, &claims, &encoding).unwrap();
        all.push(verifying);
        let keys = Keys {
            keys: all.clone(),
            generation: 1,
            fetched_at: Some(Instant::now()),
        };
        verify::verify(&config, &keys, &token).expect("the token verifies");
        group.bench_function(format!("verify_{alg:?}"), |b| {
            b.iter(|| verify::verify(&config, &keys, black_box(&token)).unwrap());
        });
        group.bench_function(format!("verify_and_map_{alg:?}"), |b| {
            b.iter(|| {
                let claims = verify::verify(&config, &keys, black_box(&token)).unwrap();
                verify::external_user(&config, &claims).unwrap()
            });
        });
    }
    let opaque = "pdk_t-abcdefgh_0123456789abcdefghijklmnopqrstuvwxyz0123456789";
    group.bench_function("shape_check_opaque_token", |b| {
        b.iter(|| looks_like_jwt(black_box(opaque)));
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
