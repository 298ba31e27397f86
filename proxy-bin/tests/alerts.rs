//! Alert hooks and cluster health end to end, through the real `paddock`
//! binary and a webhook receiver started here: a burst of failed logins,
//! and a cluster that goes away and comes back, each produce one
//! deduplicated call per alert; the health endpoint reports what the
//! checker read, to administrators only.

use std::time::{Duration, Instant};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    paddock::{upstream_args, Paddock},
    webhook,
};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

/// The next POST the receiver gets, within 20 s.
async fn next(posts: &mut UnboundedReceiver<Value>, what: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(20), posts.recv())
        .await
        .unwrap_or_else(|_| panic!("no webhook call for {what} within 20 s"))
        .unwrap()
}

/// Nothing more arrives for `quiet`.
async fn no_more(posts: &mut UnboundedReceiver<Value>, quiet: Duration) {
    tokio::time::sleep(quiet).await;
    if let Ok(extra) = posts.try_recv() {
        panic!("one more webhook call than expected: {extra}");
    }
}

fn start(fake: &FakeApiServer, dir: &std::path::Path, config: &str) -> Paddock {
    let config = write_file(dir, "paddock.yaml", config);
    let tokens = write_file(dir, "tokens.csv", "bob-token,bob,2,\n");
    let mut args = upstream_args(fake, dir);
    for arg in [
        "--config",
        config.to_str().unwrap(),
        "--token-auth-file",
        tokens.to_str().unwrap(),
    ] {
        args.push(arg.to_owned());
    }
    if fake.url().starts_with("http://") {
        args.push("--dangerous-upstream-allow-plaintext".to_owned());
    }
    Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_burst_is_one_call_per_user_and_per_address() {
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, mut posts) = webhook::receiver("/alerts").await;
    let paddock = start(
        &fake,
        dir.path(),
        &format!(
            "alerts:\n  rules: {{failedLogins: {{threshold: 3, windowSeconds: 60}}}}\n  \
             receivers: [{{name: ops, url: '{url}', format: generic}}]\n"
        ),
    );
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let login = format!("{}/paddock/v1/login", paddock.url());
    for _ in 0..6 {
        let answer = client
            .send_json(
                Method::POST,
                &login,
                None,
                &json!({"username": "admin", "password": "not-the-password"}),
            )
            .await;
        // Wrong, then throttled: both are failed logins.
        assert!([401, 429].contains(&answer.status()), "{}", answer.text());
    }
    let mut subjects = Vec::new();
    for _ in 0..2 {
        let post = next(&mut posts, "the login burst").await;
        assert_eq!(post["source"], "paddock");
        assert_eq!(post["status"], "firing");
        assert_eq!(post["alert"]["name"], "PaddockFailedLoginBurst");
        assert_eq!(post["alert"]["severity"], "warning");
        subjects.push(post["alert"]["labels"].clone());
    }
    subjects.sort_by_key(Value::to_string);
    assert_eq!(
        subjects,
        [
            json!({"address": "127.0.0.1"}),
            json!({"user": "local/admin"})
        ]
    );
    // More failures within the window: the same alerts, no new call.
    for _ in 0..3 {
        client
            .send_json(
                Method::POST,
                &login,
                None,
                &json!({"username": "admin", "password": "still-wrong"}),
            )
            .await;
    }
    no_more(&mut posts, Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_going_away_and_back_is_one_alert_and_its_resolution() {
    let config = FakeApiConfig {
        plain_http: true,
        // More than a page of nodes (the checker reads 100 at a time).
        nodes: (0..230).map(|i| (format!("node-{i}"), i != 7)).collect(),
        ..FakeApiConfig::default()
    };
    let fake = FakeApiServer::start(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, mut posts) = webhook::receiver("/alertmanager").await;
    let paddock = start(
        &fake,
        dir.path(),
        &format!(
            "clusterHealth: {{intervalSeconds: 1, timeoutSeconds: 2}}\n\
             alerts:\n  rules: {{clusterUnreachable: true}}\n  \
             receivers: [{{name: am, url: '{url}', format: alertmanagerWebhook}}]\n  \
             externalURL: https://paddock.example\n"
        ),
    );
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let admin = paddock
        .admin_session(&client, "a-long-new-admin-password")
        .await;
    let health_url = format!("{}/paddock/v1/clusters/default/health", paddock.url());
    let health = |want: fn(&Value) -> bool, what: &'static str| {
        let (client, url, admin) = (&client, &health_url, &admin);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let answer = client.get(url, Some(admin)).await;
                assert_eq!(answer.status(), 200, "{}", answer.text());
                let health = answer.json();
                if want(&health) {
                    return health;
                }
                assert!(Instant::now() < deadline, "{what}: {health}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };

    let up = health(|h| h["reachable"] == true, "reachable").await;
    assert_eq!(up["cluster"], "default");
    assert_eq!(up["kubernetesVersion"]["gitVersion"], "v1.32.4-fake");
    assert_eq!(up["nodes"], json!({"total": 230, "ready": 229}));
    assert!(up["latencySeconds"].as_f64().unwrap() >= 0.0, "{up}");
    assert!(up["lastError"].is_null(), "{up}");
    // Administrators only; an unknown cluster is not found.
    let bob = client.get(&health_url, Some("bob-token")).await;
    assert_eq!(bob.status(), 403, "{}", bob.text());
    let unknown = client
        .get(
            &format!("{}/paddock/v1/clusters/nope/health", paddock.url()),
            Some(&admin),
        )
        .await;
    assert_eq!(unknown.status(), 404, "{}", unknown.text());
    // The landing page shows the same to the administrator.
    let page = client
        .get(&format!("{}/paddock/", paddock.url()), Some(&admin))
        .await;
    assert!(
        page.text().contains("id=\"health-default\""),
        "{}",
        page.text()
    );

    // The cluster goes away: one alert, however many checks fail.
    let addr = fake.addr();
    fake.drop_connections();
    drop(fake);
    let fired = next(&mut posts, "the unreachable cluster").await;
    assert_eq!(fired["version"], "4");
    assert_eq!(fired["status"], "firing");
    assert_eq!(fired["receiver"], "am");
    assert_eq!(fired["externalURL"], "https://paddock.example");
    let alert = &fired["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "PaddockClusterUnreachable");
    assert_eq!(alert["labels"]["cluster"], "default");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    let down = health(|h| h["reachable"] == false, "unreachable").await;
    assert!(
        down["lastError"].as_str().unwrap().contains("default"),
        "{down}"
    );
    no_more(&mut posts, Duration::from_secs(3)).await;

    // Back on the same address: resolved, once.
    let back = FakeApiServer::start(FakeApiConfig {
        listen: addr,
        ..config
    })
    .await
    .unwrap();
    let resolved = next(&mut posts, "the cluster back").await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"], alert["fingerprint"],
        "the same alert"
    );
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    health(|h| h["reachable"] == true, "reachable again").await;
    no_more(&mut posts, Duration::from_secs(2)).await;
    drop(back);
}

/// Without the health checker, the requests themselves find a direct
/// cluster gone: the first that cannot connect fires the alert once, the
/// first answered after it resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_reach_a_direct_cluster_alert_without_health_checks() {
    let config = FakeApiConfig {
        plain_http: true,
        ..FakeApiConfig::default()
    };
    let fake = FakeApiServer::start(config.clone()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, mut posts) = webhook::receiver("/alerts").await;
    let paddock = start(
        &fake,
        dir.path(),
        &format!(
            "alerts:\n  rules: {{clusterUnreachable: true}}\n  \
             receivers: [{{name: ops, url: '{url}', format: generic}}]\n"
        ),
    );
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let admin = paddock
        .admin_session(&client, "a-long-new-admin-password")
        .await;
    let pods = format!(
        "{}/k8s/clusters/default/api/v1/namespaces/default/pods",
        paddock.url()
    );
    // Answers from the start: nothing to say.
    let answer = client.get(&pods, Some(&admin)).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());

    let addr = fake.addr();
    fake.drop_connections();
    drop(fake);
    // Until the server is gone for good, a request may still be answered
    // or break on a connection it closed (502); then connections are
    // refused (503), several times.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut refused = 0;
    while refused < 3 {
        let answer = client.get(&pods, Some(&admin)).await;
        refused += usize::from(answer.status() == 503);
        assert!(
            Instant::now() < deadline,
            "still {}: {}",
            answer.status(),
            answer.text()
        );
    }
    let fired = next(&mut posts, "the unreachable cluster").await;
    assert_eq!(fired["status"], "firing", "{fired}");
    assert_eq!(fired["alert"]["name"], "PaddockClusterUnreachable");
    assert_eq!(fired["alert"]["labels"], json!({"cluster": "default"}));
    no_more(&mut posts, Duration::from_secs(2)).await;

    let back = FakeApiServer::start(FakeApiConfig {
        listen: addr,
        ..config
    })
    .await
    .unwrap();
    let answer = client.get(&pods, Some(&admin)).await;
    assert_eq!(answer.status(), 200, "{}", answer.text());
    let resolved = next(&mut posts, "the cluster back").await;
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["alert"]["name"], "PaddockClusterUnreachable");
    no_more(&mut posts, Duration::from_secs(2)).await;
    drop(back);
}
