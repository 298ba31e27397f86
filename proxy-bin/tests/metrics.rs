//! Metrics end to end, through the real `paddock` binary: known traffic
//! (allowed and denied requests, a failed login, a bad token, a watch held
//! open), then a scrape of the metrics listener read back with an
//! OpenMetrics parser; and the listener's own answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    metrics::{request, scrape, Scrape},
    paddock::{upstream_args, Paddock},
};
use serde_json::json;

/// alice may read pods and exec into them; bob may do nothing.
const POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: pod-reader}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods/exec]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-reads-pods}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: pod-reader}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
"#;

struct Setup {
    _fake: FakeApiServer,
    paddock: Paddock,
    client: TestClient,
    metrics: String,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with("").await
}

/// Paddock with the metrics listener and `extra` configuration.
async fn setup_with(extra: &str) -> Setup {
    let fake = FakeApiServer::start(FakeApiConfig {
        namespaces: vec!["dev-a".into()],
        pods: vec![("dev-a".into(), "api-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    write_file(&policy, "rbac.yaml", POLICY);
    let tokens = write_file(
        dir.path(),
        "tokens.csv",
        "alice-token,alice,1,\nbob-token,bob,2,\n",
    );
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!("metrics:\n  listen: '127.0.0.1:0'\n{extra}"),
    );
    let mut args = upstream_args(&fake, dir.path());
    for arg in [
        "--config",
        config.to_str().unwrap(),
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--policy-dir",
        policy.to_str().unwrap(),
    ] {
        args.push(arg.to_owned());
    }
    let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
    let log = paddock.log();
    let metrics = log
        .lines()
        .find(|l| l.contains("metrics listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"))
        .to_owned();
    Setup {
        _fake: fake,
        client: TestClient::new(&paddock.ca_pem(), Protocol::Http1, None),
        paddock,
        metrics,
        _dir: dir,
    }
}

impl Setup {
    async fn get(&self, path: &str, token: &str) -> u16 {
        let url = format!("{}{path}", self.paddock.url());
        self.client.get(&url, Some(token)).await.status()
    }

    /// Scrapes until `done` holds (the access log runs when a body ends,
    /// which may be just after the client saw it), at most 15 s.
    async fn scrape_until(&self, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let scrape = scrape(&self.metrics).await;
            if done(&scrape) {
                return scrape;
            }
            assert!(Instant::now() < deadline, "{what}:\n{}", scrape.text);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

const PODS: &str = "/api/v1/namespaces/dev-a/pods";

fn requests(scrape: &Scrape, code: &str) -> Option<f64> {
    scrape.value(
        "paddock_requests",
        &[
            ("cluster", "default"),
            ("verb", "list"),
            ("group", ""),
            ("resource", "pods"),
            ("code", code),
        ],
    )
}

fn open_watches(scrape: &Scrape) -> Option<f64> {
    scrape.value("paddock_long_running_requests", &[("kind", "watch")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_traffic_reads_back_from_the_metrics_listener() {
    // Health checks and an audit queue too, so that every metric the
    // documentation names is served.
    let audit_dir = tempfile::tempdir().unwrap();
    let setup = setup_with(&format!(
        "clusterHealth: {{intervalSeconds: 1}}\naudit: {{file: {{path: {}}}}}\n",
        audit_dir.path().join("audit.log").display()
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(setup.get(PODS, "alice-token").await, 200);
    }
    for _ in 0..2 {
        assert_eq!(setup.get(PODS, "bob-token").await, 403);
    }
    assert_eq!(setup.get(PODS, "no-such-token").await, 401);
    let login = setup
        .client
        .send_json(
            Method::POST,
            &format!("{}/paddock/v1/login", setup.paddock.url()),
            None,
            &json!({"username": "admin", "password": "wrong password"}),
        )
        .await;
    assert_eq!(login.status(), 401, "{}", login.text());

    let scrape = setup
        .scrape_until("the login is counted, the cluster checked", |s| {
            s.value(
                "paddock_authentication_attempts",
                &[("provider", "local"), ("result", "invalid")],
            ) == Some(1.0)
                && s.value("paddock_cluster_up", &[("cluster", "default")]) == Some(1.0)
        })
        .await;
    assert_eq!(requests(&scrape, "200"), Some(3.0), "{}", scrape.text);
    assert_eq!(requests(&scrape, "403"), Some(2.0), "{}", scrape.text);
    let decisions =
        |decision| scrape.value("paddock_authorization_decisions", &[("decision", decision)]);
    assert_eq!(decisions("allow"), Some(3.0), "{}", scrape.text);
    assert_eq!(decisions("deny"), Some(2.0), "{}", scrape.text);
    let attempts = |provider, result| {
        scrape.value(
            "paddock_authentication_attempts",
            &[("provider", provider), ("result", result)],
        )
    };
    assert_eq!(
        attempts("token-file", "success"),
        Some(5.0),
        "{}",
        scrape.text
    );
    assert_eq!(attempts("", "invalid"), Some(1.0), "{}", scrape.text);
    assert_eq!(
        scrape.value(
            "paddock_request_duration_seconds",
            &[("cluster", "default"), ("verb", "list")],
        ),
        // The refused token too: it is a request like the others.
        Some(6.0),
        "{}",
        scrape.text
    );
    assert_eq!(open_watches(&scrape), Some(0.0), "{}", scrape.text);
    // Bounded labels: no user, token or namespace anywhere.
    for secret in ["alice", "bob", "no-such-token", "dev-a", "admin"] {
        assert!(
            !scrape.text.contains(secret),
            "{secret} in\n{}",
            scrape.text
        );
    }

    // A watch held open is counted while it is open, and only then.
    let watch = setup
        .client
        .send(
            Request::get(format!("{}{PODS}?watch=true", setup.paddock.url()))
                .header("authorization", "Bearer alice-token")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    setup
        .scrape_until("the watch is counted", |s| open_watches(s) == Some(1.0))
        .await;
    drop(watch);
    let scrape = setup
        .scrape_until("the watch is no longer counted", |s| {
            open_watches(s) == Some(0.0)
        })
        .await;
    assert_eq!(
        scrape.value(
            "paddock_requests",
            &[("verb", "watch"), ("resource", "pods")]
        ),
        Some(1.0),
        "{}",
        scrape.text
    );
    // Not in the latency histogram.
    assert_eq!(
        scrape.value("paddock_request_duration_seconds", &[("verb", "watch")]),
        None,
        "{}",
        scrape.text
    );

    // The documentation and the dashboard name only metrics that exist:
    // a family, one of its samples, or a counter family's `_total` (served
    // before its first sample).
    let served: Vec<String> = scrape
        .text
        .lines()
        .flat_map(|line| match line.strip_prefix("# TYPE ") {
            Some(family) => match family.split_once(' ') {
                Some((name, "counter")) => vec![name.to_owned(), format!("{name}_total")],
                Some((name, _)) => vec![name.to_owned()],
                None => vec![],
            },
            None if line.starts_with('#') => vec![],
            None => line
                .split(['{', ' '])
                .next()
                .map(str::to_owned)
                .into_iter()
                .collect(),
        })
        .collect();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for doc in ["docs/metrics.md", "docs/grafana/paddock.json", "README.md"] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap();
        // The sidecar's own metrics are checked against its listener
        // (tests/sidecar.rs).
        for name in metric_names(&text)
            .into_iter()
            .filter(|n| !n.starts_with("paddock_sidecar_"))
        {
            if EVENT_ONLY.contains(&name) {
                continue;
            }
            assert!(
                served.iter().any(|served| served == name),
                "{doc} names {name}, which is not served"
            );
        }
    }
}

/// Counters and gauges served from their first event on (an upstream
/// error, a directory refresh, an RBAC sync pass), which this traffic does
/// not cause; the plugin's unit tests in proxy-core read each of them back
/// (the RBAC sync's also `tests/rbac_sync.rs`).
const EVENT_ONLY: [&str; 8] = [
    "paddock_upstream_errors_total",
    "paddock_refreshes_total",
    "paddock_provider_degraded",
    "paddock_rbac_sync_failing",
    "paddock_rbac_sync_last_success_timestamp_seconds",
    "paddock_rbac_sync_passes_total",
    "paddock_rbac_sync_objects_written_total",
    "paddock_rbac_sync_drift_repaired_total",
];

/// Every `paddock_<name>` in `text`.
fn metric_names(text: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("paddock_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        if end > "paddock_".len() {
            names.push(&tail[..end]);
        }
        rest = &tail[end..];
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_logins_are_counted_apart_from_wrong_passwords() {
    let setup = setup().await;
    let mut statuses = Vec::new();
    while !statuses.contains(&429) {
        assert!(statuses.len() < 20, "never throttled: {statuses:?}");
        let login = setup
            .client
            .send_json(
                Method::POST,
                &format!("{}/paddock/v1/login", setup.paddock.url()),
                None,
                &json!({"username": "mallory", "password": "guess"}),
            )
            .await;
        statuses.push(login.status());
    }
    let invalid = statuses.iter().filter(|s| **s == 401).count() as f64;
    let throttled = statuses.iter().filter(|s| **s == 429).count() as f64;
    let attempts = |s: &Scrape, result| {
        s.value(
            "paddock_authentication_attempts",
            &[("provider", "local"), ("result", result)],
        )
    };
    let scrape = setup
        .scrape_until("every login is counted", |s| {
            attempts(s, "throttled") == Some(throttled)
        })
        .await;
    assert_eq!(
        attempts(&scrape, "invalid"),
        Some(invalid),
        "{}",
        scrape.text
    );
    assert!(!scrape.text.contains("mallory"), "{}", scrape.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_session_is_counted_until_its_connection_closes() {
    let setup = setup().await;
    let exec_sessions = |s: &Scrape| s.value("paddock_long_running_requests", &[("kind", "exec")]);
    let mut session = paddock_tests::exec::open(
        &setup.paddock.url(),
        &setup.paddock.ca_pem(),
        "alice-token",
        "/api/v1/namespaces/dev-a/pods/api-1/exec?command=cat&stdin=true&stdout=true",
    )
    .await;
    // Past the 101 (whose body ended at once), the session is still open.
    assert_eq!(session.echo(b"hello").await, b"hello");
    setup
        .scrape_until("the session is counted", |s| exec_sessions(s) == Some(1.0))
        .await;
    assert_eq!(session.echo(b"still here").await, b"still here");
    let scrape = scrape(&setup.metrics).await;
    assert_eq!(exec_sessions(&scrape), Some(1.0), "{}", scrape.text);
    drop(session);
    setup
        .scrape_until("the session is no longer counted", |s| {
            exec_sessions(s) == Some(0.0)
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_serves_only_get_metrics() {
    let setup = setup().await;
    let send = |method: Method, path: &'static str| request(&setup.metrics, method, path);
    assert_eq!(send(Method::GET, "/").await.0, 404);
    assert_eq!(send(Method::GET, "/metrics/x").await.0, 404);
    let (status, headers) = send(Method::POST, "/metrics").await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
    assert_eq!(send(Method::HEAD, "/metrics").await.0, 200);
    let families = scrape(&setup.metrics).await;
    assert!(
        families.families().contains(&"paddock_build"),
        "{}",
        families.text
    );
}

#[test]
fn a_public_metrics_address_is_refused_without_the_dangerous_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        "metrics: {listen: '0.0.0.0:9090'}\n",
    );
    let output = paddock_tests::paddock::run_to_exit(
        paddock_tests::paddock::without_proxy_env(&mut std::process::Command::new(env!(
            "CARGO_BIN_EXE_paddock"
        )))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data")),
    );
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("metrics.listen") && stderr.contains("allowPublicMetrics"),
        "{stderr}"
    );
}

/// The health checker's gauges, the audit queue read at scrape time, and
/// the store's revision, as a Prometheus parser reads them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_queues_and_the_store_revision_are_scraped() {
    let audit_dir = tempfile::tempdir().unwrap();
    let setup = setup_with(&format!(
        "clusterHealth: {{intervalSeconds: 1}}\naudit: {{file: {{path: {}}}}}\n",
        audit_dir.path().join("audit.log").display()
    ))
    .await;
    let scrape = setup
        // The verdict (cluster_up) is told as soon as the check's call is
        // answered, the check's findings a moment later.
        .scrape_until("the cluster is checked", |s| {
            s.value("paddock_cluster_up", &[("cluster", "default")]) == Some(1.0)
                && s.value(
                    "paddock_cluster_nodes",
                    &[("cluster", "default"), ("state", "ready")],
                )
                .is_some()
        })
        .await;
    assert_eq!(
        scrape.value(
            "paddock_cluster_nodes",
            &[("cluster", "default"), ("state", "ready")]
        ),
        Some(1.0),
        "{}",
        scrape.text
    );
    assert!(
        scrape
            .value(
                "paddock_cluster_check_latency_seconds",
                &[("cluster", "default")]
            )
            .is_some(),
        "{}",
        scrape.text
    );
    assert_eq!(
        scrape.value("paddock_queue_dropped", &[("queue", "audit")]),
        Some(0.0),
        "{}",
        scrape.text
    );
    assert!(
        scrape
            .value("paddock_queue_depth", &[("queue", "audit")])
            .is_some(),
        "{}",
        scrape.text
    );
    // The bootstrap admin was written: the store is past revision 0.
    let revision = scrape.value("paddock_store_revision", &[]).unwrap();
    assert!(revision >= 1.0, "{}", scrape.text);
}

/// Off loopback, the listener can be TLS with a bearer token: no token,
/// or the wrong one, is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_can_require_tls_and_a_bearer_token() {
    let dir = tempfile::tempdir().unwrap();
    let ca = paddock_tests::tls::TestCa::new();
    let (cert, key) = ca.issue_server(&["127.0.0.1"]).write(dir.path(), "metrics");
    let token = write_file(dir.path(), "metrics-token", "scrape-secret\n");
    let setup = setup_with(&format!(
        "  tls: {{certFile: {}, keyFile: {}}}\n  bearerTokenFile: {}\n",
        cert.display(),
        key.display(),
        token.display()
    ))
    .await;
    let client = TestClient::new(ca.pem().as_bytes(), Protocol::Http1, None);
    let url = format!("https://{}/metrics", setup.metrics);
    let scraped = client.get(&url, Some("scrape-secret")).await;
    assert_eq!(scraped.status(), 200, "{}", scraped.text());
    assert!(scraped.text().ends_with("# EOF\n"));
    for wrong in [None, Some("scrape-secreT"), Some("")] {
        let refused = client.get(&url, wrong).await;
        assert_eq!(refused.status(), 401, "{wrong:?}");
        assert!(!refused.text().contains("paddock_"));
    }
}
