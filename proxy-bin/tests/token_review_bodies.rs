//! The sidecar's token-review webhook against generated bodies, on the
//! stable toolchain (the `token_review` cargo-fuzz target feeds the parser
//! alone, under nightly): valid reviews of both versions mutated byte by
//! byte, spliced with JSON fragments, cut, grown past the size limit, and
//! plain random bytes, POSTed to a real `paddock sidecar` that replicates a
//! real center. Every answer is a 400 Status or a well-formed TokenReview
//! answer in a version the webhook speaks; never a 5xx, a dropped
//! connection or a crash; only the real token ever authenticates, and no
//! answer echoes it.
//!
//! Reproducible: the generator is seeded (`PADDOCK_REVIEW_SEED`, printed
//! on failure); `PADDOCK_REVIEW_CASES` sets how many bodies (default 2000).

use std::{path::Path, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    paddock::{upstream_args, Paddock},
    sidecar::{feed_args, Sidecar},
};
use serde_json::Value;

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a mutation may splice in: JSON's structure, escapes serde treats
/// specially, numbers at the edges, the fields the parser looks for.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "null",
    "true",
    "1e999",
    "-0",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\\uDFFF",
    "\\",
    "\u{feff}",
    "\u{10ffff}",
    "\"spec\"",
    "\"token\"",
    "\"apiVersion\"",
    "\"kind\"",
    "\"TokenReview\"",
    "\"authentication.k8s.io/v1\"",
    "\"authentication.k8s.io/v1beta1\"",
    "\"audiences\":[\"x\"]",
    "{\"token\":\"\"}",
    "{\"token\":[]}",
    "{\"token\":{}}",
    "\"status\":{\"authenticated\":true}",
];

fn review(version: &str, token: &str) -> String {
    serde_json::json!({
        "apiVersion": format!("authentication.k8s.io/{version}"), "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token, "audiences": ["https://kubernetes.default.svc"]},
        "status": {"user": {}},
    })
    .to_string()
}

/// One generated body.
fn body(rng: &mut Rng, seeds: &[String]) -> Vec<u8> {
    match rng.below(20) {
        // Random bytes.
        0..=2 => (0..rng.below(2048)).map(|_| rng.next() as u8).collect(),
        // Nested past any sane depth.
        3 => {
            let depth = 1 + rng.below(5000);
            let open = rng.pick(&["[", "{\"spec\":"]).repeat(depth);
            format!("{{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{open}").into_bytes()
        }
        // Past the size limit, valid otherwise.
        4 => {
            let padding = " ".repeat(64 * 1024 + rng.below(4096));
            format!("{padding}{}", rng.pick(seeds)).into_bytes()
        }
        // A seed mutated one to eight times.
        _ => {
            let mut body = rng.pick(seeds).clone().into_bytes();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(body.len() + 1);
                match rng.below(6) {
                    0 if at < body.len() => body[at] = rng.next() as u8,
                    1 => body.insert(at, rng.next() as u8),
                    2 => {
                        let end = (at + rng.below(16)).min(body.len());
                        body.drain(at..end);
                    }
                    3 => body.truncate(at),
                    4 => {
                        let fragment = rng.pick(FRAGMENTS).as_bytes().to_vec();
                        body.splice(at..at, fragment);
                    }
                    _ => {
                        let end = (at + rng.below(64)).min(body.len());
                        let copy = body[at..end].to_vec();
                        body.splice(at..at, copy);
                    }
                }
            }
            body
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_token_reviews_get_a_400_status_or_a_well_formed_answer() {
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let center = Paddock::start(bin(), &upstream_args(&fake, dir.path()));
    let client = TestClient::new(&center.ca_pem(), Protocol::Http1, None);
    let admin = center.admin_session(&client, "review-bodies-pass-1").await;
    // The sidecar reads the feed with the cluster's registration token.
    let created = client
        .send_json(
            http::Method::POST,
            &format!("{}/paddock/v1/clusters/default/token", center.url()),
            Some(&admin),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(created.status(), 200, "{}", created.text());
    let feed = write_file(
        dir.path(),
        "feed-token",
        created.json()["token"].as_str().unwrap(),
    );
    let kubeconfig = client
        .get(
            &format!("{}/paddock/v1/kubeconfig?cluster=default", center.url()),
            Some(&admin),
        )
        .await
        .text();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token in the kubeconfig")
        .to_owned();
    let secret = token.split_once(':').unwrap().1.to_owned();
    let args = feed_args(&center, "default", &feed, &dir.path().join("sidecar"));
    let sidecar = Sidecar::start(bin(), "127.0.0.1:0", &args, &dir.path().join("sidecar.log"));
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while sidecar.get("/readyz").0 != 200 {
        assert!(std::time::Instant::now() < deadline, "sidecar never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let seed: u64 = std::env::var("PADDOCK_REVIEW_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x005E_ED0F_7E57);
    let cases: usize = std::env::var("PADDOCK_REVIEW_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let seeds = [
        review("v1", &token),
        review("v1beta1", &token),
        review("v1", "t-unknown:not-a-secret"),
        format!(
            "{{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenReview\",\"spec\":{{\"token\":\"{token}\"}}}}"
        ),
    ];
    let http = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let url = sidecar.webhook_url();
    let mut rng = Rng(seed | 1);
    let (mut malformed, mut answered, mut authenticated) = (0, 0, 0);
    for case in 0..cases {
        let sent = body(&mut rng, &seeds);
        let shown = || String::from_utf8_lossy(&sent[..sent.len().min(300)]).into_owned();
        let context = || format!("seed {seed}, case {case}, body {:?}", shown());
        let request = Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(sent.clone())))
            .unwrap();
        let response = http
            .request(request)
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}\n{}", context(), sidecar.log()));
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&secret),
            "{}: the answer echoes the token",
            context()
        );
        let answer: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{}: answer is not JSON ({e}): {text}", context()));
        match code {
            400 => {
                assert_eq!(
                    (&answer["kind"], &answer["code"], &answer["status"]),
                    (&"Status".into(), &400.into(), &"Failure".into()),
                    "{}: {text}",
                    context()
                );
                malformed += 1;
            }
            200 => {
                assert_eq!(answer["kind"], "TokenReview", "{}: {text}", context());
                assert!(
                    ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"]
                        .contains(&answer["apiVersion"].as_str().unwrap_or_default()),
                    "{}: {text}",
                    context()
                );
                let yes = answer["status"]["authenticated"]
                    .as_bool()
                    .unwrap_or_else(|| panic!("{}: {text}", context()));
                if yes {
                    // Only the real token, intact, authenticates.
                    let sent = String::from_utf8_lossy(&sent);
                    assert!(sent.contains(token.as_str()), "{}: {text}", context());
                    authenticated += 1;
                }
                answered += 1;
            }
            _ => panic!("{}: {code} {text}\n{}", context(), sidecar.log()),
        }
    }
    // The generator reached every outcome, and the sidecar is still there.
    assert!(
        malformed > 0 && answered > 0 && authenticated > 0,
        "{malformed} {answered} {authenticated}"
    );
    assert_eq!(sidecar.get("/healthz").0, 200);
    let (code, text) = sidecar.review(&seeds[0]);
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["status"]["authenticated"],
        true
    );
}
