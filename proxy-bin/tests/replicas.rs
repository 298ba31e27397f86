//! Several `paddock serve` replicas on one real etcd (Debian `etcd-server`,
//! started by the test): what one replica writes, the others enforce; a
//! kubeconfig from one works on the others; a lost etcd degrades a replica
//! (reads go on, writes get 503) until it returns; an unreachable etcd at
//! start is exit 69 naming the endpoints; the background refresh runs on the
//! elected replica only, for users who logged in on any replica (their
//! provider tokens are in etcd), and moves to the other when it is killed.

use std::{path::Path, sync::Arc, time::Duration};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    etcd::EtcdCluster,
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    github_emulator::{
        stack::{config_yaml, StackOptions},
        Directory, GithubEmulator,
    },
    kubectl::{write_file, Kubeconfig},
    metrics::scrape,
    paddock::{output_with_stdin, run_to_exit, upstream_args, Paddock},
    tls::TestCa,
};
use serde_json::json;

const NEW_ADMIN_PASSWORD: &str = "replicas-admin-password-1";

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

/// The shared files every replica mounts: serving certificate, its CA, the
/// token pepper; and the config naming etcd, followed by `extra`.
fn shared_config(dir: &Path, etcd: &EtcdCluster, extra: &str) -> (std::path::PathBuf, TestCa) {
    let ca = TestCa::new();
    let (cert, key) = ca
        .issue_server(&["127.0.0.1", "localhost"])
        .write(dir, "serving");
    let ca_file = write_file(dir, "serving-ca.crt", ca.pem());
    let pepper = write_file(
        dir,
        "token-pepper",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    );
    let endpoints = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let config = write_file(
        dir,
        "paddock.yaml",
        &format!(
            "store:\n  backend: etcd\n  endpoints: [{endpoints}]\n  tokenPepperFile: {}\n\
             tls:\n  certFile: {}\n  keyFile: {}\n  caFile: {}\n{extra}",
            pepper.display(),
            cert.display(),
            key.display(),
            ca_file.display()
        ),
    );
    (config, ca)
}

/// `POST /paddock/v1/logout` on `server`: the write a test makes.
async fn logout(
    client: &TestClient,
    server: &Paddock,
    session: &str,
) -> paddock_tests::client::Collected {
    client
        .send_json(
            Method::POST,
            &format!("{}/paddock/v1/logout", server.url()),
            Some(session),
            &json!({}),
        )
        .await
}

/// `/paddock/readyz` on `server` until its status is `status` (10 s at most).
async fn readyz_until(client: &TestClient, server: &Paddock, status: &str) -> serde_json::Value {
    let url = format!("{}/paddock/readyz", server.url());
    for _ in 0..100 {
        let r = client.get(&url, None).await.json();
        if r["status"] == status {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("readyz never said {status}:\n{}", server.log());
}

async fn kubectl_until(kube: &Arc<Kubeconfig>, success: bool) -> std::process::Output {
    let mut last = None;
    for _ in 0..50 {
        let k = kube.clone();
        let out = tokio::task::spawn_blocking(move || k.run(&["get", "pods"], None))
            .await
            .unwrap();
        if out.status.success() == success {
            return out;
        }
        last = Some(out);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = last.unwrap();
    panic!(
        "kubectl never {}: {}",
        if success { "succeeded" } else { "failed" },
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_etcd_behave_as_one() {
    let mut etcd = EtcdCluster::start(1);
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (config, ca) = shared_config(dir.path(), &etcd, "");
    let mut args = upstream_args(&fake, dir.path());
    args.extend(["--config".into(), config.display().to_string()]);
    let a = Paddock::start(bin(), &args);
    let b = Paddock::start(bin(), &args);
    let client = TestClient::new(ca.pem().as_bytes(), Protocol::Http1, None);

    // The admin bootstrapped by A changes its password on A and, once B has
    // followed (within a second), logs in on B with it.
    let session = a.admin_session(&client, NEW_ADMIN_PASSWORD).await;
    let mut login_b = None;
    for _ in 0..50 {
        let r = client
            .send_json(
                Method::POST,
                &format!("{}/paddock/v1/login", b.url()),
                None,
                &json!({"username": "admin", "password": NEW_ADMIN_PASSWORD}),
            )
            .await;
        if r.status() == 200 {
            login_b = Some(r);
            break;
        }
        // Refused with the old password, or throttled after a few refusals.
        assert!(matches!(r.status(), 401 | 429), "{}", r.text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(login_b.is_some(), "B never accepted the password set on A");

    // A kubeconfig downloaded from A works on B (same CA, same pepper).
    let download = client
        .get(
            &format!("{}/paddock/v1/kubeconfig?cluster=default", a.url()),
            Some(&session),
        )
        .await;
    assert_eq!(download.status(), 200, "{}", download.text());
    let yaml = download.text().replace(&a.url(), &b.url());
    assert!(yaml.contains(&b.url()), "{yaml}");
    let on_b = Arc::new(Kubeconfig::from_yaml(&yaml));
    let pods = kubectl_until(&on_b, true).await;
    assert!(String::from_utf8_lossy(&pods.stdout).contains("web-1"));

    // Revoked on A: refused on B.
    let tokens = client
        .get(&format!("{}/paddock/v1/tokens", a.url()), Some(&session))
        .await
        .json();
    let id = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "kubeconfig")
        .unwrap_or_else(|| panic!("no kubeconfig token in {tokens}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = client
        .send_json(
            Method::DELETE,
            &format!("{}/paddock/v1/tokens/{id}", a.url()),
            Some(&session),
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status(), 200, "{}", revoked.text());
    let refused = kubectl_until(&on_b, false).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("must be logged in"),
        "{stderr}"
    );

    // etcd lost: B keeps serving reads from its snapshot, refuses writes with
    // a Kubernetes Status 503, and says it is degraded; then catches up.
    etcd.kill(0);
    let degraded = readyz_until(&client, &b, "degraded").await;
    assert!(degraded["store"]["error"].is_string(), "{degraded}");
    let me = client
        .get(&format!("{}/paddock/v1/me", b.url()), Some(&session))
        .await;
    assert_eq!(me.status(), 200, "{}", me.text());
    let write = logout(&client, &b, &session).await;
    assert_eq!(write.status(), 503, "{}", write.text());
    assert_eq!(write.json()["kind"], "Status");
    assert_eq!(write.json()["reason"], "ServiceUnavailable");
    etcd.restart(0);
    readyz_until(&client, &b, "ok").await;
    let write = logout(&client, &b, &session).await;
    assert_eq!(write.status(), 200, "{}", write.text());
    // The session ended on B is refused on A.
    let mut refused = false;
    for _ in 0..50 {
        let me = client
            .get(&format!("{}/paddock/v1/me", a.url()), Some(&session))
            .await;
        if me.status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused, "A still accepts the session B ended");
}

/// What the elected replica logs when it wins the job election.
const ELECTED: &str = "elected to run the singleton jobs";

/// What a replica logs when it stops leading (its lease or key lost).
const NO_LONGER_ELECTED: &str = "no longer the elected replica";

/// The address of `server`'s metrics listener, from its log.
fn metrics_addr(server: &Paddock) -> String {
    let log = server.log();
    log.lines()
        .find(|l| l.contains("metrics listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"))
        .to_owned()
}

/// How many background refreshes of GitHub users `server` made, by
/// result (`refreshed`, `not_refreshable`, ...).
async fn refreshes(server: &Paddock, results: &[&str]) -> f64 {
    let scrape = scrape(&metrics_addr(server)).await;
    results
        .iter()
        .filter_map(|result| {
            scrape.value(
                "paddock_refreshes",
                &[("provider", "github"), ("result", result)],
            )
        })
        .sum()
}

/// Every result a refresh can have.
const ANY: &[&str] = &[
    "refreshed",
    "access_lost",
    "deferred",
    "not_refreshable",
    "busy",
];

/// Polls `check` every 200 ms until it holds; fails naming `what` after
/// `limit` (generous: this is no timing assertion).
async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) {
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The GitHub teams `session` has on `server`.
async fn teams(client: &TestClient, server: &Paddock, session: &str) -> Vec<String> {
    let me = client
        .get(&format!("{}/paddock/v1/me", server.url()), Some(session))
        .await
        .json();
    me["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("no groups in {me}"))
        .iter()
        .filter_map(|g| g.as_str())
        .filter(|g| g.starts_with("github_team://"))
        .map(str::to_owned)
        .collect()
}

/// kubectl with `kubeconfig` (downloaded from one replica) against
/// `server`: `get pods`, which GitHub team 5001 grants (the stack's policy).
fn kubeconfig_on(kubeconfig: &str, from: &Paddock, server: &Paddock) -> Arc<Kubeconfig> {
    Arc::new(Kubeconfig::from_yaml(
        &kubeconfig.replace(&from.url(), &server.url()),
    ))
}

/// Team 5001 grants `get pods`; whether octocat is in it at GitHub.
fn set_team_5001(github: &GithubEmulator, member: bool) {
    github.edit(|d| {
        let user = d.users.iter_mut().find(|u| u.login == "octocat").unwrap();
        user.teams.retain(|t| *t != 5001);
        if member {
            user.teams.push(5001);
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn the_elected_replica_refreshes_users_of_every_replica_and_the_other_takes_over_when_it_is_killed(
) {
    let etcd = EtcdCluster::start(1);
    let github = GithubEmulator::start(Directory::fixture()).await.unwrap();
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let options = StackOptions {
        extra: "    refresh: {maxAgeSeconds: 1, jitterSeconds: 0, intervalSeconds: 1}\n".into(),
        ..StackOptions::default()
    };
    let extra = format!(
        "metrics:\n  listen: '127.0.0.1:0'\n{}",
        config_yaml(dir.path(), &github, &options)
    );
    let (config, ca) = shared_config(dir.path(), &etcd, &extra);
    let mut args = upstream_args(&fake, dir.path());
    args.extend(["--config".into(), config.display().to_string()]);
    let mut replicas = [Paddock::start(bin(), &args), Paddock::start(bin(), &args)];
    let client = TestClient::new(ca.pem().as_bytes(), Protocol::Http1, None);

    // Exactly one replica wins the election.
    eventually(
        "a replica to be elected",
        Duration::from_secs(20),
        || async { replicas.iter().any(|r| r.log().contains(ELECTED)) },
    )
    .await;
    let elected = replicas
        .iter()
        .position(|r| r.log().contains(ELECTED))
        .unwrap();
    let other = 1 - elected;

    // octocat logs in through GitHub on the replica that was NOT elected:
    // their GitHub token goes, sealed, into etcd, where the elected
    // replica's refresh reads it. Their kubeconfig lists pods (team 5001)
    // through either replica.
    let login = client
        .send_json(
            Method::POST,
            &format!("{}/paddock/v1/login", replicas[other].url()),
            None,
            &json!({"provider": "github", "token": github.issue_token("octocat")}),
        )
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let session = login.json()["token"].as_str().unwrap().to_owned();
    let download = client
        .get(
            &format!(
                "{}/paddock/v1/kubeconfig?cluster=default",
                replicas[other].url()
            ),
            Some(&session),
        )
        .await;
    assert_eq!(download.status(), 200, "{}", download.text());
    let kubeconfig = download.text();
    let kube: Vec<Arc<Kubeconfig>> = replicas
        .iter()
        .map(|r| kubeconfig_on(&kubeconfig, &replicas[other], r))
        .collect();
    for k in &kube {
        kubectl_until(k, true).await;
    }

    // GitHub drops octocat from team 5001. The elected replica's refresh
    // sees it (the other never refreshes), and on both replicas the team
    // leaves the user's groups and kubectl is refused.
    set_team_5001(&github, false);
    let team = "github_team://5001".to_owned();
    for replica in &replicas {
        eventually(
            "team 5001 to leave the user's groups on every replica",
            Duration::from_secs(20),
            || async { !teams(&client, replica, &session).await.contains(&team) },
        )
        .await;
    }
    // Counted once the refresh has let go of its claim in etcd, a round
    // trip after its answer reached the store.
    eventually(
        "the elected replica to count its refresh",
        Duration::from_secs(10),
        || async { refreshes(&replicas[elected], &["refreshed"]).await >= 1.0 },
    )
    .await;
    for k in &kube {
        let refused = kubectl_until(k, false).await;
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.to_lowercase().contains("forbidden"), "{stderr}");
    }
    assert_eq!(refreshes(&replicas[other], ANY).await, 0.0);
    assert!(
        !replicas[other].log().contains(ELECTED),
        "both replicas were elected:\n{}",
        replicas[other].log()
    );

    // The elected replica dies without a word; once its lease expires the
    // other is elected and refreshes the same user with the token in etcd:
    // back in team 5001 at GitHub, back in the groups without a new login.
    replicas[elected].kill();
    set_team_5001(&github, true);
    let survivor = &replicas[other];
    // A replica killed mid-refresh keeps its claim on the user until its
    // lease expires (10 s): the survivor's refreshes are `busy` until then.
    eventually(
        "the survivor to be elected and refresh",
        Duration::from_secs(40),
        || async {
            survivor.log().contains(ELECTED) && refreshes(survivor, &["refreshed"]).await >= 1.0
        },
    )
    .await;
    eventually(
        "team 5001 to return to the user's groups",
        Duration::from_secs(20),
        || async { teams(&client, survivor, &session).await.contains(&team) },
    )
    .await;
    kubectl_until(&kube[other], true).await;
    // Neither replica lost the lead while it lived.
    for replica in &replicas {
        assert!(
            !replica.log().contains(NO_LONGER_ELECTED),
            "{}",
            replica.log()
        );
    }
}

#[test]
fn an_unreachable_etcd_at_start_exits_69_naming_the_endpoints() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(
        paddock_tests::paddock::without_proxy_env(&mut std::process::Command::new(bin()))
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--store", "etcd", "--etcd-endpoints", &endpoint]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(69), "{stderr}");
    assert!(stderr.contains(&endpoint), "{stderr}");
    assert!(stderr.contains("etcd"), "{stderr}");
}

#[test]
fn an_etcd_store_without_endpoints_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        "store:\n  backend: etcd\n  prefix: paddock\n",
    );
    let out = run_to_exit(
        std::process::Command::new(bin())
            .args(["config", "check", "--config"])
            .arg(&config),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("store.endpoints"), "{stderr}");
    assert!(stderr.contains("store.prefix"), "{stderr}");
}

fn cli(args: &[&str], stdin: &str) -> std::process::Output {
    output_with_stdin(std::process::Command::new(bin()).args(args), stdin)
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn store_migrate_copies_into_etcd_and_back_idempotently() {
    let etcd = EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.display().to_string();
    ok(&cli(
        &["user", "add", "alice", "--data-dir", &data_s],
        "alice-password-0123456789\n",
    ));
    ok(&cli(
        &["user", "add", "bob", "--data-dir", &data_s],
        "bob-password-0123456789\n",
    ));
    // A GitHub user's kept token (sealed) travels like every object.
    let store = proxy_core::store::EmbeddedStore::open_in_dir(
        &data,
        proxy_core::store::EmbeddedOptions::default(),
    )
    .unwrap();
    proxy_core::store::Store::commit(
        &store,
        vec![proxy_core::store::Op::put(
            proxy_core::store::Object::ProviderToken(proxy_core::store::ProviderToken {
                provider: "github".into(),
                user_id: "u-octocat".into(),
                sealed: "c2VhbGVk".into(),
                updated_at: proxy_core::store::Timestamp(1_700_000_000),
            }),
            proxy_core::store::Expect::Absent,
        )],
    )
    .unwrap();
    drop(store);
    let url = format!(
        "etcd://{}/migrated/",
        etcd.endpoints()[0].trim_start_matches("http://")
    );
    let first = ok(&cli(
        &["store", "migrate", "--from", &data_s, "--to", &url],
        "",
    ));
    assert!(first.contains("verified"), "{first}");
    assert!(first.contains("users: 2 (2 written)"), "{first}");
    assert!(first.contains("providertokens: 1 (1 written)"), "{first}");
    // Again: nothing to write.
    let second = ok(&cli(
        &["store", "migrate", "--from", &data_s, "--to", &url],
        "",
    ));
    assert!(second.contains(" 0 written"), "{second}");
    // And back into a new data directory.
    let back = dir.path().join("back");
    let back_s = back.display().to_string();
    let third = ok(&cli(
        &["store", "migrate", "--from", &url, "--to", &back_s],
        "",
    ));
    assert!(third.contains("users: 2 (2 written)"), "{third}");
    assert!(third.contains("providertokens: 1 (1 written)"), "{third}");
    let users = ok(&cli(&["user", "list", "--data-dir", &back_s], ""));
    assert!(users.contains("alice") && users.contains("bob"), "{users}");
    // A missing source is an error, not an empty copy.
    let missing = cli(
        &[
            "store",
            "migrate",
            "--from",
            &dir.path().join("nothing").display().to_string(),
            "--to",
            &url,
        ],
        "",
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no Paddock store"));
}
