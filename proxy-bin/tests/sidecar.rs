//! The authorized cluster endpoint end to end: real kubectl with a Paddock
//! token talks to the (fake) API server directly, which authenticates it
//! through `paddock sidecar`'s token-review webhook; the center can be
//! killed, the sidecar restarted from disk, and a revocation still arrives.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer, TokenWebhook},
    kubectl::{write_file, Kubeconfig},
    paddock::{upstream_args, Paddock},
    sidecar::Sidecar,
};

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

/// Polls `check` every 50 ms until it holds; fails after `limit` (a
/// generous bound for a slow machine, not a performance assertion).
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    start.elapsed()
}

fn review(token: &str) -> String {
    serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1beta1", "kind": "TokenReview",
        "spec": {"token": token},
    })
    .to_string()
}

fn whoami(kube: &Kubeconfig) -> Result<serde_json::Value, String> {
    let out = kube.run(
        &[
            "--context",
            "default-direct",
            "auth",
            "whoami",
            "-o",
            "json",
        ],
        None,
    );
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_goes_direct_through_the_sidecar_without_the_center_and_revocation_arrives() {
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // The cluster, with its authorized cluster endpoint: the fake itself.
    let upstream = upstream_args(&fake, dir.path());
    let fake_ca_file = write_file(dir.path(), "direct-ca.crt", fake.ca_pem());
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            "clusters:\n- id: default\n  default: true\n  server: {}\n  caFile: {}\n  tokenFile: {}\n  directEndpoint:\n    server: {}\n    caFile: {}\nrbacSync:\n  clusters: [default]\n",
            fake.url(),
            upstream[3],
            upstream[5],
            fake.url(),
            fake_ca_file.display()
        ),
    );
    let center_args = vec!["--config".to_owned(), config.display().to_string()];
    let mut center = Paddock::start(bin(), &center_args);
    let client = TestClient::new(&center.ca_pem(), Protocol::Http1, None);
    let admin = center
        .admin_session(&client, "sidecar-test-password-1")
        .await;
    let base = center.url();
    let url = |path: &str| format!("{base}{path}");
    let token = |body: serde_json::Value| {
        let client = &client;
        let admin = admin.clone();
        let url = url("/paddock/v1/tokens");
        async move {
            let created = client
                .send_json(http::Method::POST, &url, Some(&admin), &body)
                .await;
            assert_eq!(created.status(), 201, "{}", created.text());
            let json = created.json();
            (
                json["token"].as_str().unwrap().to_owned(),
                json["id"].as_str().unwrap().to_owned(),
            )
        }
    };
    // The sidecar's feed credential (until clusters carry their own).
    let (feed_token, _) = token(serde_json::json!({"kind": "api", "description": "sidecar"})).await;
    // The user's kubeconfig, as downloaded: through Paddock, and direct.
    let downloaded = client
        .get(&url("/paddock/v1/kubeconfig?cluster=default"), Some(&admin))
        .await;
    assert_eq!(downloaded.status(), 200, "{}", downloaded.text());
    let yaml = downloaded.text();
    assert!(yaml.contains("name: default-direct"), "{yaml}");
    let user_token = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token")
        .to_owned();
    let user_token_id = user_token.split_once(':').unwrap().0.to_owned();
    let me = client
        .get(&url("/paddock/v1/me"), Some(&admin))
        .await
        .json();
    let admin_id = me["user"].as_str().unwrap().to_owned();
    // A token for another cluster, issued with the CLI on the same store.
    let other = center.cli(
        bin(),
        &[
            "token",
            "create",
            "--user",
            "admin",
            "--kind",
            "kubeconfig",
            "--cluster",
            "elsewhere",
        ],
        "",
    );
    assert!(
        other.status.success(),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    let other_token = String::from_utf8_lossy(&other.stdout)
        .split_whitespace()
        .find(|w| w.starts_with("t-") && w.contains(':'))
        .expect("the CLI prints the token")
        .to_owned();

    let feed_file = write_file(dir.path(), "feed-token", &feed_token);
    let sidecar_args: Vec<String> = [
        "--server",
        &center.url(),
        "--server-ca",
        &center.ca_path().display().to_string(),
        "--cluster",
        "default",
        "--token-file",
        &feed_file.display().to_string(),
        "--data-dir",
        &dir.path().join("sidecar").display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let log = dir.path().join("sidecar.log");
    let mut sidecar = Sidecar::start(bin(), "127.0.0.1:0", &sidecar_args, &log);
    eventually("sidecar ready", Duration::from_secs(20), || {
        sidecar.get("/readyz").0 == 200
    })
    .await;
    fake.set_token_webhook(
        TokenWebhook::from_config_file(&sidecar.write_webhook_config(dir.path()), "v1").unwrap(),
    );
    let direct = Arc::new(Kubeconfig::from_yaml(&yaml));

    // Direct, authenticated by the sidecar: who it was, down to the token.
    let k = direct.clone();
    let seen = tokio::task::spawn_blocking(move || whoami(&k))
        .await
        .unwrap();
    let seen = seen.unwrap_or_else(|e| panic!("direct kubectl failed: {e}\n{}", sidecar.log()));
    let user = &seen["status"]["userInfo"];
    assert_eq!(user["username"], admin_id.as_str(), "{seen}");
    assert_eq!(user["uid"], admin_id.as_str(), "{seen}");
    assert_eq!(
        user["extra"]["requesttokenid"][0],
        user_token_id.as_str(),
        "{seen}"
    );
    assert_eq!(user["extra"]["username"][0], "admin", "{seen}");
    let k = direct.clone();
    let pods =
        tokio::task::spawn_blocking(move || k.ok(&["--context", "default-direct", "get", "pods"]))
            .await
            .unwrap();
    assert!(pods.contains("web-1"), "{pods}");

    // A token scoped to another cluster is refused, in the request's version.
    let (code, body) = sidecar.review(&review(&other_token));
    assert_eq!(code, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["apiVersion"], "authentication.k8s.io/v1beta1");
    assert_eq!(answer["status"]["authenticated"], false, "{body}");
    let elsewhere = Kubeconfig::from_yaml(&yaml.replace(&user_token, &other_token));
    let refused = tokio::task::spawn_blocking(move || whoami(&elsewhere))
        .await
        .unwrap();
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("Unauthorized")),
        "{refused:?}"
    );
    // Malformed reviews: 400, not 500.
    assert_eq!(sidecar.review("{\"kind\": 1").0, 400);

    // The center dies: direct access goes on.
    center.kill();
    let k = direct.clone();
    assert!(tokio::task::spawn_blocking(move || whoami(&k))
        .await
        .unwrap()
        .is_ok());
    eventually("lag shows in readyz", Duration::from_secs(30), || {
        let (_, body) = sidecar.get("/readyz");
        body.contains("\"connected\":false")
    })
    .await;

    // The sidecar restarts while the center is still down: from disk.
    let port = sidecar.port();
    sidecar.kill();
    let mut sidecar = Sidecar::start(bin(), &format!("127.0.0.1:{port}"), &sidecar_args, &log);
    let k = direct.clone();
    assert!(
        tokio::task::spawn_blocking(move || whoami(&k))
            .await
            .unwrap()
            .is_ok(),
        "{}",
        sidecar.log()
    );
    assert!(
        sidecar.log().contains("replica feed failed"),
        "{}",
        sidecar.log()
    );
    let (_, metrics) = sidecar.get("/metrics");
    assert!(
        metrics.contains("paddock_sidecar_replica_lag_seconds"),
        "{metrics}"
    );

    // The center is back; a revocation reaches the sidecar.
    center.restart(bin());
    eventually("feed reconnected", Duration::from_secs(30), || {
        sidecar.get("/readyz").1.contains("\"connected\":true")
    })
    .await;
    // A fresh client: the old one's pooled connections died with the center.
    let client = TestClient::new(&center.ca_pem(), Protocol::Http1, None);
    let revoked = client
        .fetch(
            http::Request::delete(url(&format!("/paddock/v1/tokens/{user_token_id}")))
                .header("authorization", format!("Bearer {admin}"))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert_eq!(revoked.status(), 200, "{}", revoked.text());
    let took = eventually("revocation at the sidecar", Duration::from_secs(10), || {
        sidecar
            .review(&review(&user_token))
            .1
            .contains("\"authenticated\":false")
    })
    .await;
    eprintln!("revocation reached the sidecar after {took:?}");
    let k = direct.clone();
    let after = tokio::task::spawn_blocking(move || whoami(&k))
        .await
        .unwrap();
    assert!(
        after.as_ref().is_err_and(|e| e.contains("Unauthorized")),
        "{after:?}"
    );
    sidecar.kill();
}
