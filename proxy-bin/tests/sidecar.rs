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
    connect_proxy::ConnectProxy,
    fake_apiserver::{FakeApiConfig, FakeApiServer, TokenWebhook},
    kubectl::{write_file, Kubeconfig},
    paddock::{upstream_args, Paddock},
    sidecar::{feed_args, Sidecar},
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

/// A fake API server holding `pods` and a center whose configuration file
/// has it as cluster `default`.
struct Center {
    _fake: FakeApiServer,
    dir: tempfile::TempDir,
    /// `upstream_args`: `[3]` the fake's CA file, `[5]` the token file.
    upstream: Vec<String>,
    config: std::path::PathBuf,
    center: Paddock,
}

impl Center {
    async fn start(pods: Vec<(String, String)>) -> Self {
        let fake = FakeApiServer::start(FakeApiConfig {
            pods,
            ..FakeApiConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let upstream = upstream_args(&fake, dir.path());
        let config = write_file(
            dir.path(),
            "paddock.yaml",
            &format!(
                "clusters:\n- id: default\n  default: true\n  server: {}\n  caFile: {}\n  tokenFile: {}\n",
                fake.url(),
                upstream[3],
                upstream[5],
            ),
        );
        let center = Paddock::start(
            bin(),
            &["--config".to_owned(), config.display().to_string()],
        );
        Self {
            _fake: fake,
            dir,
            upstream,
            config,
            center,
        }
    }
}

/// `paddock cluster token <id> --config <config>` on the center's store:
/// the token it printed.
fn registration_token(center: &Paddock, config: &Path, id: &str) -> String {
    let config = config.display().to_string();
    let out = center.cli(bin(), &["cluster", "token", id, "--config", &config], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{id}.")))
        .unwrap_or_else(|| panic!("no token in {stdout}"))
        .to_owned()
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
    // The sidecar's credential: the cluster's registration token, issued
    // for a cluster of the configuration file with the CLI.
    let feed_token = registration_token(&center, &config, "default");
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
    let sidecar_args = feed_args(&center, "default", &feed_file, &dir.path().join("sidecar"));
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

/// The replica feed takes the cluster's own registration token and nothing
/// else: not another cluster's, not a rotated or revoked one, not a user's
/// token, whether the cluster is configured or registered.
#[tokio::test(flavor = "multi_thread")]
async fn the_feed_takes_only_the_clusters_own_current_registration_token() {
    let Center {
        _fake,
        dir: _dir,
        config,
        center,
        ..
    } = Center::start(Vec::new()).await;
    let client = TestClient::new(&center.ca_pem(), Protocol::Http1, None);
    let admin = center
        .admin_session(&client, "sidecar-test-password-2")
        .await;
    // A registered (agent) cluster beside the configured one.
    let added = center.cli(bin(), &["cluster", "add", "edge"], "");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let default_token = registration_token(&center, &config, "default");
    let edge_token = registration_token(&center, &config, "edge");
    let feed = |cluster: &str, token: Option<&str>| {
        let mut request = http::Request::get(format!(
            "{}/paddock/v1/clusters/{cluster}/replica?timeoutSeconds=0",
            center.url()
        ));
        if let Some(token) = token {
            request = request.header("x-paddock-agent-token", token);
        }
        let request = request.body(Default::default()).unwrap();
        let client = &client;
        async move {
            let response = client.fetch(request).await;
            (response.status(), response.text())
        }
    };
    for (cluster, token) in [("default", &default_token), ("edge", &edge_token)] {
        eventually_status(&feed, cluster, token, 200).await;
        let (code, body) = feed(cluster, Some(token)).await;
        assert_eq!(code, 200, "{cluster}: {body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["cluster"], cluster);
        assert_eq!(answer["reset"], true);
        // The cluster's policy comes along: the admin's global binding
        // applies in every cluster.
        assert!(answer["policy"]["users"].is_object(), "{body}");
    }
    // Another cluster's token, its secret under this cluster's id, a
    // user's token as the header or as a bearer token, nothing: 401.
    let edge_secret = edge_token.split_once('.').unwrap().1;
    for (what, token) in [
        ("edge's token", Some(edge_token.clone())),
        ("edge's secret", Some(format!("default.{edge_secret}"))),
        ("a user's token", Some(admin.clone())),
        ("nothing", None),
    ] {
        let (code, body) = feed("default", token.as_deref()).await;
        assert_eq!(code, 401, "{what}: {body}");
        assert!(body.contains("\"kind\":\"Status\""), "{what}: {body}");
    }
    let bearer = client
        .get(
            &format!(
                "{}/paddock/v1/clusters/default/replica?timeoutSeconds=0",
                center.url()
            ),
            Some(&admin),
        )
        .await;
    assert_eq!(
        bearer.status(),
        401,
        "an admin's bearer token: {}",
        bearer.text()
    );
    // Rotated: the old one is refused, the new one read.
    let rotated = registration_token(&center, &config, "default");
    eventually_status(&feed, "default", &default_token, 401).await;
    eventually_status(&feed, "default", &rotated, 200).await;
    // Revoked, for a configured and a registered cluster.
    for id in ["default", "edge"] {
        let config = config.display().to_string();
        let out = center.cli(
            bin(),
            &["cluster", "token", id, "--revoke", "--config", &config],
            "",
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    eventually_status(&feed, "default", &rotated, 401).await;
    eventually_status(&feed, "edge", &edge_token, 401).await;
}

/// `HTTPS_PROXY`: the sidecar follows the feed through a `CONNECT` tunnel
/// (TLS to the center end to end), goes direct for a `NO_PROXY` host, and
/// says clearly when the proxy refuses; the credentials never reach its log.
#[tokio::test(flavor = "multi_thread")]
async fn the_feed_goes_through_https_proxy_unless_no_proxy_exempts_the_center() {
    let Center {
        _fake,
        dir,
        config,
        center,
        ..
    } = Center::start(Vec::new()).await;
    let token = registration_token(&center, &config, "default");
    let feed_file = write_file(dir.path(), "feed-token", &token);
    let center_authority = center.url().trim_start_matches("https://").to_owned();
    let center_host = center_authority.rsplit_once(':').unwrap().0.to_owned();
    let start = |name: &str, proxy: &str, no_proxy: &str| {
        let args = feed_args(&center, "default", &feed_file, &dir.path().join(name));
        Sidecar::start_with_env(
            bin(),
            "127.0.0.1:0",
            &args,
            &[
                ("HTTPS_PROXY", proxy),
                ("https_proxy", proxy),
                ("NO_PROXY", no_proxy),
                ("no_proxy", no_proxy),
            ],
            &dir.path().join(format!("{name}.log")),
        )
    };
    let synced = |sidecar: &Sidecar| sidecar.get("/readyz").1.contains("\"connected\":true");

    let open = ConnectProxy::start("200 Connection established").await;
    let through = start("through", &open.url(Some("alice:s3cret")), "");
    eventually("synced through the proxy", Duration::from_secs(30), || {
        synced(&through)
    })
    .await;
    assert!(open.connected_to(&center_authority), "{:?}", open.heads());
    assert!(open.all_with_basic("alice:s3cret"), "{:?}", open.heads());
    assert!(!through.log().contains("s3cret"), "{}", through.log());
    drop(through);

    let unused = ConnectProxy::start("200 Connection established").await;
    let direct = start(
        "direct",
        &unused.url(None),
        &format!("paddock.invalid,{center_host}"),
    );
    eventually("synced directly", Duration::from_secs(30), || {
        synced(&direct)
    })
    .await;
    assert!(unused.heads().is_empty(), "{:?}", unused.heads());
    drop(direct);

    let closed = ConnectProxy::start("407 Proxy Authentication Required").await;
    let refused = start("refused", &closed.url(Some("alice:s3cret")), "");
    eventually("the refusal is logged", Duration::from_secs(30), || {
        refused
            .log()
            .contains("CONNECT refused: HTTP/1.1 407 Proxy Authentication Required")
    })
    .await;
    let log = refused.log();
    assert!(
        log.contains(&format!(
            "proxy 127.0.0.1:{}",
            closed.url(None).rsplit_once(':').unwrap().1
        )),
        "{log}"
    );
    assert!(!log.contains("s3cret") && !log.contains("alice"), "{log}");
    assert!(!synced(&refused));
}

/// The CLI writes the store; the server sees it within its poll interval.
async fn eventually_status<F, Fut>(feed: &F, cluster: &str, token: &str, want: u16)
where
    F: Fn(&str, Option<&str>) -> Fut,
    Fut: std::future::Future<Output = (u16, String)>,
{
    let start = Instant::now();
    loop {
        let (code, body) = feed(cluster, Some(token)).await;
        if code == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{cluster}: {code} instead of {want}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `paddock <args>` on the center's store and returns its stdout.
fn cli_ok(center: &Paddock, args: &[&str], stdin: &str) -> String {
    let out = center.cli(bin(), args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "paddock {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn kubectl(kube: &Arc<Kubeconfig>, args: &'static [&'static str]) -> (bool, String) {
    let k = kube.clone();
    tokio::task::spawn_blocking(move || {
        let out = k.run(args, None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

/// The sidecar's own request path, for API servers whose flags cannot be
/// changed: real kubectl talks to the sidecar, which authenticates from its
/// replica, decides with the cluster's replicated policy, impersonates and
/// forwards to the (fake) API server with its own credential; it goes on
/// without the center, from disk after a restart, and a revocation ends it.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_through_the_sidecars_request_path_with_the_replicated_policy() {
    let Center {
        _fake: fake,
        dir,
        upstream,
        config,
        center,
    } = Center::start(vec![("default".into(), "web-1".into())]).await;
    let mut center = center;
    // Bob may read the project's namespace, no more.
    cli_ok(&center, &["user", "add", "bob"], "bob-password-123456\n");
    cli_ok(
        &center,
        &[
            "project",
            "create",
            "--cluster",
            "default",
            "dev",
            "--namespace",
            "default",
        ],
        "",
    );
    cli_ok(
        &center,
        &[
            "binding",
            "create",
            "--user",
            "bob",
            "--role",
            "read-only",
            "--project",
            "default:dev",
        ],
        "",
    );
    let issued = cli_ok(
        &center,
        &[
            "token",
            "create",
            "--user",
            "bob",
            "--kind",
            "kubeconfig",
            "--cluster",
            "default",
        ],
        "",
    );
    let bob_token = issued
        .split_whitespace()
        .find(|w| w.starts_with("t-") && w.contains(':'))
        .expect("the CLI prints the token")
        .to_owned();
    let bob_token_id = bob_token.split_once(':').unwrap().0.to_owned();
    let registration = registration_token(&center, &config, "default");
    let token_file = write_file(dir.path(), "registration-token", &registration);
    let data_dir = dir.path().join("sidecar");
    let mut sidecar_args = feed_args(&center, "default", &token_file, &data_dir);
    sidecar_args.extend(
        [
            "--proxy-listen",
            "127.0.0.1:0",
            "--upstream",
            &fake.url(),
            "--upstream-ca",
            &upstream[3],
            "--upstream-token-file",
            &upstream[5],
        ]
        .map(str::to_owned),
    );
    let log = dir.path().join("sidecar.log");
    let mut sidecar = Sidecar::start(bin(), "127.0.0.1:0", &sidecar_args, &log);
    // Ready, with the policy that holds bob's binding.
    eventually(
        "sidecar ready with bob's grant",
        Duration::from_secs(30),
        || {
            let (code, body) = sidecar.get("/readyz");
            code == 200 && !body.contains("\"policy\":\"\"")
        },
    )
    .await;
    let ca = std::fs::read(data_dir.join("tls/ca.crt")).expect("the sidecar's generated CA");
    let kube = |port: u16| {
        Arc::new(Kubeconfig::new(
            &format!("https://127.0.0.1:{port}"),
            &ca,
            &bob_token,
        ))
    };
    let bob = kube(sidecar.proxy_port());

    // Allowed: it reaches the API server as bob, impersonated. The center
    // rebuilds its policy from the store a moment after it loads the
    // binding, and the feed follows: the first policy may predate it.
    let start = Instant::now();
    loop {
        let (ok, text) = kubectl(&bob, &["get", "pods", "-n", "default"]).await;
        if ok && text.contains("web-1") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30) && text.contains("Forbidden"),
            "{text}\n{}",
            sidecar.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (ok, text) = kubectl(&bob, &["auth", "whoami", "-o", "json"]).await;
    assert!(ok, "{text}");
    let seen: serde_json::Value = serde_json::from_str(&text).unwrap();
    let bob_id = seen["status"]["userInfo"]["username"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(bob_id.starts_with("u-"), "{seen}");
    assert_eq!(
        seen["status"]["userInfo"]["extra"]["username"][0], "bob",
        "{seen}"
    );
    // A verb the policy does not grant: 403 Status, from the sidecar.
    let (ok, text) = kubectl(&bob, &["delete", "pod", "web-1", "-n", "default"]).await;
    assert!(!ok && text.contains("(Forbidden)"), "{text}");
    assert!(text.contains(&bob_id), "the refusal names the user: {text}");
    let (ok, text) = kubectl(&bob, &["get", "pods", "-n", "kube-system"]).await;
    assert!(
        !ok && text.contains("(Forbidden)"),
        "another namespace: {text}"
    );
    // Acting as someone else needs a grant bob does not have.
    let (ok, text) = kubectl(&bob, &["get", "pods", "-n", "default", "--as", "admin"]).await;
    assert!(!ok && text.contains("(Forbidden)"), "--as: {text}");

    // The center dies; the sidecar restarts without it: from disk, policy
    // included.
    center.kill();
    let (ok, text) = kubectl(&bob, &["get", "pods", "-n", "default"]).await;
    assert!(ok && text.contains("web-1"), "without the center: {text}");
    sidecar.kill();
    let mut sidecar = Sidecar::start(bin(), "127.0.0.1:0", &sidecar_args, &log);
    let bob = kube(sidecar.proxy_port());
    let (ok, text) = kubectl(&bob, &["get", "pods", "-n", "default"]).await;
    assert!(
        ok && text.contains("web-1"),
        "restarted from disk: {text}\n{}",
        sidecar.log()
    );
    let (ok, text) = kubectl(&bob, &["delete", "pod", "web-1", "-n", "default"]).await;
    assert!(
        !ok && text.contains("(Forbidden)"),
        "restarted from disk: {text}"
    );

    // The center is back; a revocation reaches the sidecar's request path.
    center.restart(bin());
    eventually("feed reconnected", Duration::from_secs(30), || {
        sidecar.get("/readyz").1.contains("\"connected\":true")
    })
    .await;
    cli_ok(&center, &["token", "revoke", &bob_token_id], "");
    let start = Instant::now();
    loop {
        let (ok, text) = kubectl(&bob, &["get", "pods", "-n", "default"]).await;
        if !ok && text.contains("Unauthorized") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "still allowed after revocation: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sidecar.kill();
}

/// A cluster registered at runtime (through the API or the CLI) can have an
/// authorized cluster endpoint too: downloaded kubeconfigs gain its
/// `<id>-direct` context, with its CA, until it is removed.
#[tokio::test(flavor = "multi_thread")]
async fn registered_clusters_direct_endpoints_reach_downloaded_kubeconfigs() {
    let Center {
        _fake: fake,
        dir,
        center,
        ..
    } = Center::start(Vec::new()).await;
    let client = TestClient::new(&center.ca_pem(), Protocol::Http1, None);
    let admin = center
        .admin_session(&client, "sidecar-test-password-4")
        .await;
    let url = |path: &str| format!("{}{path}", center.url());
    let ca_b64 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        fake.ca_pem().as_bytes(),
    );
    let call = |method: http::Method, path: &str, body: serde_json::Value| {
        let client = &client;
        let admin = &admin;
        let url = url(path);
        async move {
            let response = client.send_json(method, &url, Some(admin), &body).await;
            (response.status(), response.json())
        }
    };
    // Not https: refused, naming the field.
    let (code, body) = call(
        http::Method::POST,
        "/paddock/v1/clusters",
        serde_json::json!({"id": "edge", "directEndpoint": {"server": "http://edge:6443"}}),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("directEndpoint.server"),
        "{body}"
    );
    let (code, body) = call(
        http::Method::POST,
        "/paddock/v1/clusters",
        serde_json::json!({"id": "edge", "directEndpoint": {
            "server": "https://edge-api.example:6443", "caPem": fake.ca_pem(),
        }}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        body["directEndpoint"]["server"],
        "https://edge-api.example:6443"
    );
    assert_eq!(body["directEndpoint"]["caPem"], true);
    let kubeconfig = |id: &'static str| {
        let client = &client;
        let admin = &admin;
        let url = url(&format!("/paddock/v1/kubeconfig?cluster={id}"));
        async move {
            let start = Instant::now();
            loop {
                let response = client.get(&url, Some(admin)).await;
                if response.status() == 200 {
                    return response.text();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(10),
                    "{id}: {} {}",
                    response.status(),
                    response.text()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let yaml = kubeconfig("edge").await;
    let config: serde_json::Value = serde_norway::from_str(&yaml).unwrap();
    let direct = config["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "edge-direct")
        .unwrap_or_else(|| panic!("no edge-direct in {yaml}"));
    assert_eq!(direct["cluster"]["server"], "https://edge-api.example:6443");
    assert_eq!(
        direct["cluster"]["certificate-authority-data"],
        ca_b64.as_str()
    );
    assert_eq!(
        config["current-context"], "edge",
        "through Paddock by default"
    );

    // A PATCH that leaves it out keeps it; `null` removes it.
    let (code, body) = call(
        http::Method::PATCH,
        "/paddock/v1/clusters/edge",
        serde_json::json!({"displayName": "Edge"}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["directEndpoint"]["server"],
        "https://edge-api.example:6443"
    );
    let (code, body) = call(
        http::Method::PATCH,
        "/paddock/v1/clusters/edge",
        serde_json::json!({"directEndpoint": null}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body["directEndpoint"].is_null(), "{body}");
    let start = Instant::now();
    while kubeconfig("edge").await.contains("edge-direct") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "edge-direct stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The CLI registers one as well.
    let ca_file = write_file(dir.path(), "lab-direct-ca.crt", fake.ca_pem());
    cli_ok(
        &center,
        &[
            "cluster",
            "add",
            "lab",
            "--direct-endpoint",
            "https://lab-api.example:6443",
            "--direct-endpoint-ca-file",
            &ca_file.display().to_string(),
        ],
        "",
    );
    let yaml = kubeconfig("lab").await;
    assert!(yaml.contains("name: lab-direct"), "{yaml}");
    assert!(
        yaml.contains("server: https://lab-api.example:6443"),
        "{yaml}"
    );
}
