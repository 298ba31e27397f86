//! `paddock serve`'s own outbound clients honour `HTTPS_PROXY` and
//! `NO_PROXY`: GitHub and OpenID Connect logins, the audit webhook and alert receivers go
//! through a real `CONNECT` proxy on loopback (TLS to GitHub end to end
//! inside the tunnel), a `NO_PROXY` host is reached directly, a refusing
//! proxy is a 503 that shows its credentials nowhere, and a malformed
//! `HTTPS_PROXY` or `NO_PROXY` is a configuration error.

use std::{path::Path, time::Duration};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    connect_proxy::ConnectProxy,
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    github_emulator::stack::{GithubStack, StackOptions},
    kubectl::write_file,
    oidc::{self, OidcStack},
    paddock::{run_to_exit, upstream_args, without_proxy_env, Paddock},
};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

/// Every request, at `Metadata`.
const AUDIT_POLICY: &str =
    "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n";

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

async fn github_stack(proxy: &str, no_proxy: &str) -> GithubStack {
    GithubStack::start(
        bin(),
        StackOptions {
            env: vec![
                ("HTTPS_PROXY", proxy.to_owned()),
                ("NO_PROXY", no_proxy.to_owned()),
            ],
            ..StackOptions::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn github_logins_go_through_https_proxy_with_its_credentials() {
    let proxy = ConnectProxy::start("200 Connection established").await;
    let stack = github_stack(&proxy.url(Some("alice:s3cret")), "").await;
    let login = stack
        .token_login(&stack.github.issue_token("octocat"))
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    assert_eq!(login.json()["user"]["username"], "octocat");
    assert!(
        proxy.connected_to(&stack.github.host()),
        "{:?}",
        proxy.heads()
    );
    assert!(proxy.all_with_basic("alice:s3cret"), "{:?}", proxy.heads());
    let log = stack.paddock.log();
    assert!(!log.contains("s3cret"), "{log}");
}

/// OpenID Connect: discovery and the keys (to verify an ID token sent as
/// the bearer token) and the token endpoint (a password-grant login) are
/// all reached through the proxy, TLS to the provider inside the tunnel.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_discovery_keys_and_logins_go_through_https_proxy() {
    let proxy = ConnectProxy::start("200 Connection established").await;
    let stack = OidcStack::start_with_env(
        bin(),
        "",
        &[("HTTPS_PROXY", &proxy.url(Some("alice:s3cret")))],
    )
    .await;
    let token = stack.idp.id_token("alice").await;
    let pods = stack
        .client
        .get(
            &stack.url("/k8s/clusters/default/api/v1/namespaces/default/pods"),
            Some(&token),
        )
        .await;
    assert_eq!(
        pods.status(),
        200,
        "{}\n{}",
        pods.text(),
        stack.paddock.log()
    );
    let provider = stack.idp.issuer().trim_start_matches("https://").to_owned();
    assert!(proxy.connected_to(&provider), "{:?}", proxy.heads());

    let login = stack
        .client
        .send_json(
            Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"provider": oidc::PROVIDER, "username": "alice", "password": "alice's long password"}),
        )
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    // The login may reuse the tunnel the keys came through: every
    // connection to the provider is one.
    let heads = proxy.heads();
    let to_provider = format!("CONNECT {provider} HTTP/1.1\r\n");
    assert!(
        heads.iter().all(|h| h.starts_with(&to_provider)),
        "{heads:?}"
    );
    assert!(proxy.all_with_basic("alice:s3cret"), "{:?}", proxy.heads());
    let log = stack.paddock.log();
    assert!(!log.contains("s3cret"), "{log}");
}

/// `NO_PROXY` names GitHub's address: logins go there directly, while the
/// audit webhook, at another name, still goes through the proxy.
#[tokio::test(flavor = "multi_thread")]
async fn a_no_proxy_host_is_reached_directly_the_others_through_the_proxy() {
    let (url, mut lists) = paddock_tests::webhook::receiver("/audit").await;
    let receiver = url
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches("/audit")
        .to_owned();
    let proxy = ConnectProxy::start("200 Connection established").await;
    let dir = tempfile::tempdir().unwrap();
    let audit_policy = write_file(dir.path(), "audit-policy.yaml", AUDIT_POLICY);
    let stack = GithubStack::start(
        bin(),
        StackOptions {
            sections: format!(
                "audit:\n  policyFile: {}\n  webhook: {{url: 'http://localhost:{receiver}/audit', batchSize: 1}}\n",
                audit_policy.display()
            ),
            env: vec![
                ("HTTPS_PROXY", proxy.url(None)),
                ("NO_PROXY", "paddock.invalid, 127.0.0.1".to_owned()),
            ],
            ..StackOptions::default()
        },
    )
    .await;
    let login = stack
        .token_login(&stack.github.issue_token("octocat"))
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let list = tokio::time::timeout(Duration::from_secs(60), lists.recv())
        .await
        .expect("no EventList within a minute")
        .unwrap();
    assert_eq!(list["kind"], "EventList");
    let heads = proxy.heads();
    assert!(
        heads
            .iter()
            .all(|h| h.starts_with(&format!("CONNECT localhost:{receiver} HTTP/1.1\r\n"))),
        "{heads:?}"
    );
    assert!(!heads.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusing_proxy_is_a_503_without_its_credentials_anywhere() {
    let closed = ConnectProxy::start("407 Proxy Authentication Required").await;
    let stack = github_stack(&closed.url(Some("alice:s3cret")), "").await;
    let login = stack
        .token_login(&stack.github.issue_token("octocat"))
        .await;
    assert_eq!(login.status(), 503, "{}", login.text());
    assert!(!login.text().contains("s3cret"), "{}", login.text());
    assert!(!closed.heads().is_empty());
    let log = stack.paddock.log();
    assert!(!log.contains("s3cret") && !log.contains("alice:"), "{log}");
    // The operator learns at startup that the proxy is used ...
    let address = closed.url(None).trim_start_matches("http://").to_owned();
    assert!(
        log.lines()
            .any(|line| line.contains("through HTTPS_PROXY") && line.contains(&address)),
        "{log}"
    );
    // ... and why the provider is unavailable.
    assert!(
        log.lines()
            .any(|line| line.contains("GitHub login failed") && line.contains("407")),
        "{log}"
    );
}

/// The first POST `posts` gets, within a minute.
async fn first(posts: &mut UnboundedReceiver<Value>, what: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(60), posts.recv())
        .await
        .unwrap_or_else(|_| panic!("no {what} within a minute"))
        .unwrap()
}

/// `host:port` of a receiver's URL.
fn authority(url: &str) -> &str {
    url.trim_start_matches("http://").split('/').next().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_events_and_alerts_go_through_https_proxy() {
    let (audit_url, mut lists) = paddock_tests::webhook::receiver("/audit").await;
    let (alerts_url, mut alerts) = paddock_tests::webhook::receiver("/alerts").await;
    let proxy = ConnectProxy::start("200 Connection established").await;
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let audit_policy = write_file(dir.path(), "audit-policy.yaml", AUDIT_POLICY);
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            "audit:\n  policyFile: {}\n  webhook: {{url: '{audit_url}', batchSize: 1}}\n\
             alerts:\n  rules: {{failedLogins: {{threshold: 1, windowSeconds: 60}}}}\n  \
             receivers: [{{name: ops, url: '{alerts_url}', format: generic}}]\n",
            audit_policy.display()
        ),
    );
    let mut args = upstream_args(&fake, dir.path());
    args.extend(["--config".to_owned(), config.display().to_string()]);
    let paddock = Paddock::start_with_env(bin(), &args, &[("HTTPS_PROXY", &proxy.url(None))]);
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let login = client
        .send_json(
            Method::POST,
            &format!("{}/paddock/v1/login", paddock.url()),
            None,
            &json!({"username": "admin", "password": "not-the-password"}),
        )
        .await;
    assert_eq!(login.status(), 401, "{}", login.text());
    assert_eq!(first(&mut lists, "EventList").await["kind"], "EventList");
    first(&mut alerts, "alert").await;
    for url in [&audit_url, &alerts_url] {
        assert!(proxy.connected_to(authority(url)), "{:?}", proxy.heads());
    }
}

#[test]
fn a_malformed_https_proxy_or_no_proxy_is_a_configuration_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_to_exit(
        without_proxy_env(&mut std::process::Command::new(bin()))
            .env("HTTPS_PROXY", "https://alice:s3cret@proxy.invalid:3128")
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data")),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("HTTPS_PROXY:"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    // `config check` refuses what `serve` refuses.
    let config = dir.path().join("paddock.yaml");
    std::fs::write(&config, "").unwrap();
    let output = run_to_exit(
        without_proxy_env(&mut std::process::Command::new(bin()))
            .env("HTTPS_PROXY", "https://alice:s3cret@proxy.invalid:3128")
            .args(["config", "check", "--config"])
            .arg(&config),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("HTTPS_PROXY:"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");

    // So is a `NO_PROXY` entry that is no name, address or range.
    let output = run_to_exit(
        without_proxy_env(&mut std::process::Command::new(bin()))
            .env("HTTPS_PROXY", "http://proxy.invalid:3128")
            .env("NO_PROXY", ".svc,10.96.0.0/33")
            .args(["config", "check", "--config"])
            .arg(&config),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(
        stderr.contains("NO_PROXY:") && stderr.contains("10.96.0.0/33"),
        "{stderr}"
    );
}
