//! Local users and Paddock tokens end to end through the real `paddock`
//! binary: the bootstrap admin's first login and forced password change, a
//! kubeconfig downloaded from `/paddock/v1/kubeconfig` working with real
//! kubectl until it is revoked, the admin API and its authorization,
//! disabling, throttling, and the CLI writing beside a running server.

use std::{sync::Arc, time::Duration};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::Kubeconfig,
    paddock::{upstream_args, Paddock},
};
use serde_json::json;

const NEW_ADMIN_PASSWORD: &str = "correct horse battery staple";

struct Setup {
    _fake: FakeApiServer,
    paddock: Paddock,
    client: TestClient,
    _dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Self {
        let fake = FakeApiServer::start(FakeApiConfig {
            pods: vec![("default".into(), "web-1".into())],
            ..FakeApiConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let args = upstream_args(&fake, dir.path());
        let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
        let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
        Setup {
            _fake: fake,
            paddock,
            client,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.paddock.url())
    }

    async fn login(&self, username: &str, password: &str) -> paddock_tests::client::Collected {
        self.client
            .send_json(
                Method::POST,
                &self.url("/paddock/v1/login"),
                None,
                &json!({"provider": "local", "username": username, "password": password}),
            )
            .await
    }

    /// Logs the bootstrap admin in, sets its password, and returns a session token.
    async fn admin_session(&self) -> String {
        self.paddock
            .admin_session(&self.client, NEW_ADMIN_PASSWORD)
            .await
    }
}

fn kubectl(kube: &Arc<Kubeconfig>, args: &'static [&'static str]) -> std::process::Output {
    kube.run(args, None)
}

/// `kubectl get pods`, retried for up to 5 s until it succeeds (or, with
/// `success` false, fails): the server sees a CLI's commit within a second.
async fn get_pods_until(kube: &Arc<Kubeconfig>, success: bool) -> std::process::Output {
    let mut out = None;
    for _ in 0..50 {
        let k = kube.clone();
        let o = tokio::task::spawn_blocking(move || kubectl(&k, &["get", "pods"]))
            .await
            .unwrap();
        if o.status.success() == success {
            return o;
        }
        out = Some(o);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.expect("at least one attempt")
}

#[tokio::test(flavor = "multi_thread")]
async fn bootstrap_admin_changes_password_then_a_downloaded_kubeconfig_works_until_revoked() {
    let setup = Setup::start().await;
    assert!(
        setup.paddock.log().contains("one-time password"),
        "the bootstrap password was not printed:\n{}",
        setup.paddock.log()
    );
    let wrong = setup.login("admin", "not the password").await;
    assert_eq!(wrong.status(), 401, "{}", wrong.text());
    assert_eq!(wrong.json()["kind"], "Status");

    let login = setup
        .login("admin", &setup.paddock.bootstrap_password())
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let body = login.json();
    assert_eq!(body["mustChangePassword"], true, "{body}");
    assert_eq!(body["user"]["username"], "admin");
    let cookie = login.head.headers["set-cookie"].to_str().unwrap();
    for attribute in ["paddock_session=", "HttpOnly", "Secure", "SameSite=Lax"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let session = body["token"].as_str().unwrap().to_owned();

    // Until the password is changed, the session does nothing else.
    let kubeconfig_url = setup.url("/paddock/v1/kubeconfig?cluster=default");
    let blocked = setup.client.get(&kubeconfig_url, Some(&session)).await;
    assert_eq!(blocked.status(), 403, "{}", blocked.text());
    assert!(blocked.text().contains("password"), "{}", blocked.text());
    let proxied = setup
        .client
        .get(
            &setup.url("/api/v1/namespaces/default/pods"),
            Some(&session),
        )
        .await;
    assert_eq!(proxied.status(), 403, "{}", proxied.text());

    let weak = setup
        .client
        .send_json(
            Method::POST,
            &setup.url("/paddock/v1/password"),
            Some(&session),
            &json!({"currentPassword": setup.paddock.bootstrap_password(), "newPassword": "short"}),
        )
        .await;
    assert_eq!(weak.status(), 400, "{}", weak.text());
    assert!(weak.text().contains("newPassword"), "{}", weak.text());
    let changed = setup
        .client
        .send_json(
            Method::POST,
            &setup.url("/paddock/v1/password"),
            Some(&session),
            &json!({"currentPassword": setup.paddock.bootstrap_password(), "newPassword": NEW_ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(changed.status(), 200, "{}", changed.text());
    // The old password no longer works, the new one does.
    let old = setup
        .login("admin", &setup.paddock.bootstrap_password())
        .await;
    assert_eq!(old.status(), 401);
    assert_eq!(setup.login("admin", NEW_ADMIN_PASSWORD).await.status(), 200);

    let download = setup.client.get(&kubeconfig_url, Some(&session)).await;
    assert_eq!(download.status(), 200, "{}", download.text());
    let yaml = download.text();
    assert!(
        yaml.contains(&format!("{}/k8s/clusters/default", setup.paddock.url())),
        "{yaml}"
    );
    assert!(yaml.contains("certificate-authority-data"), "{yaml}");
    let kube = Arc::new(Kubeconfig::from_yaml(&yaml));

    let k = kube.clone();
    let pods = tokio::task::spawn_blocking(move || k.ok(&["get", "pods", "-n", "default"]))
        .await
        .unwrap();
    assert!(pods.contains("web-1"), "{pods}");
    let k = kube.clone();
    let whoami = tokio::task::spawn_blocking(move || k.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    let me = setup
        .client
        .get(&setup.url("/paddock/v1/me"), Some(&session))
        .await
        .json();
    let user_id = me["user"].as_str().unwrap().to_owned();
    assert!(user_id.starts_with("u-"), "{me}");
    assert!(whoami.contains(&user_id), "{whoami}");
    assert!(whoami.contains("system:authenticated"), "{whoami}");

    // The kubeconfig token is scoped to its cluster and listed; revoking it
    // makes the very next kubectl call fail.
    let tokens = setup
        .client
        .get(&setup.url("/paddock/v1/tokens"), Some(&session))
        .await
        .json();
    let kubeconfig_token = tokens["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "kubeconfig")
        .unwrap_or_else(|| panic!("no kubeconfig token in {tokens}"));
    assert_eq!(kubeconfig_token["cluster"], "default");
    assert!(
        !tokens
            .to_string()
            .contains(yaml.split("token: ").nth(1).unwrap().trim()),
        "a token listing must not contain secrets"
    );
    let id = kubeconfig_token["id"].as_str().unwrap();
    let revoked = setup
        .client
        .send_json(
            Method::DELETE,
            &setup.url(&format!("/paddock/v1/tokens/{id}")),
            Some(&session),
            &json!({}),
        )
        .await;
    assert_eq!(revoked.status(), 200, "{}", revoked.text());
    let k = kube.clone();
    let after = tokio::task::spawn_blocking(move || kubectl(&k, &["get", "pods"]))
        .await
        .unwrap();
    assert!(!after.status.success());
    let stderr = String::from_utf8_lossy(&after.stderr);
    assert!(
        stderr.contains("Unauthorized") || stderr.contains("must be logged in"),
        "{stderr}"
    );

    // Logout ends the session.
    let out = setup
        .client
        .send_json(
            Method::POST,
            &setup.url("/paddock/v1/logout"),
            Some(&session),
            &json!({}),
        )
        .await;
    assert_eq!(out.status(), 200, "{}", out.text());
    let me = setup
        .client
        .get(&setup.url("/paddock/v1/me"), Some(&session))
        .await;
    assert_eq!(me.status(), 401, "{}", me.text());
}

/// A browser sends the session cookie with every navigation. On a cluster
/// path it must not authenticate: a page served through the API server's
/// service or pod proxy would otherwise run on Paddock's origin as the
/// signed-in user, and could call Paddock's API (mint a token) as them.
#[tokio::test(flavor = "multi_thread")]
async fn the_session_cookie_authenticates_paddock_s_own_endpoints_only() {
    let setup = Setup::start().await;
    let session = setup.admin_session().await;
    let with_cookie = |path: &str| {
        http::Request::get(setup.url(path))
            .header(http::header::COOKIE, format!("paddock_session={session}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let me = setup.client.fetch(with_cookie("/paddock/v1/me")).await;
    assert_eq!(me.status(), 200, "{}", me.text());
    assert_eq!(me.json()["username"], "admin", "{}", me.text());

    let pods = "/api/v1/namespaces/default/pods";
    let before = setup._fake.requests().len();
    for path in [pods.to_owned(), format!("/k8s/clusters/default{pods}")] {
        let refused = setup.client.fetch(with_cookie(&path)).await;
        assert_eq!(refused.status(), 401, "{path}: {}", refused.text());
        assert_eq!(refused.json()["kind"], "Status", "{path}");
        // The same token as a bearer credential is accepted.
        let bearer = setup.client.get(&setup.url(&path), Some(&session)).await;
        assert_eq!(bearer.status(), 200, "{path}: {}", bearer.text());
    }
    let reached = setup._fake.requests();
    assert_eq!(
        reached.len(),
        before + 2,
        "only the bearer requests reach the API server"
    );
    assert!(reached.iter().all(|r| !r.headers.contains_key("cookie")));
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_is_for_admins_and_disabling_a_user_ends_their_session() {
    let setup = Setup::start().await;
    let admin = setup.admin_session().await;
    let users_url = setup.url("/paddock/v1/users");

    let invalid = setup
        .client
        .send_json(
            Method::POST,
            &users_url,
            Some(&admin),
            &json!({"username": "alice"}),
        )
        .await;
    assert_eq!(invalid.status(), 400, "{}", invalid.text());
    assert!(invalid.text().contains("password"), "{}", invalid.text());
    let created = setup
        .client
        .send_json(
            Method::POST,
            &users_url,
            Some(&admin),
            &json!({"username": "alice", "password": "alice's long password", "displayName": "Alice"}),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    let alice_id = created.json()["id"].as_str().unwrap().to_owned();
    let taken = setup
        .client
        .send_json(
            Method::POST,
            &users_url,
            Some(&admin),
            &json!({"username": "Alice", "password": "another long password"}),
        )
        .await;
    assert_eq!(taken.status(), 400, "{}", taken.text());

    let login = setup.login("alice", "alice's long password").await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let alice = login.json()["token"].as_str().unwrap().to_owned();

    // alice has no global role: the admin API refuses her, with the reason.
    let forbidden = setup.client.get(&users_url, Some(&alice)).await;
    assert_eq!(forbidden.status(), 403, "{}", forbidden.text());
    assert!(forbidden.text().contains("users"), "{}", forbidden.text());
    let listed = setup.client.get(&users_url, Some(&admin)).await;
    assert_eq!(listed.status(), 200);
    let names: Vec<String> = listed.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["admin", "alice"]);
    // Nor may she proxy: no binding grants her anything in the cluster.
    let pods = setup
        .client
        .get(&setup.url("/api/v1/namespaces/default/pods"), Some(&alice))
        .await;
    assert_eq!(pods.status(), 403, "{}", pods.text());

    let me = setup
        .client
        .get(&setup.url("/paddock/v1/me"), Some(&alice))
        .await;
    assert_eq!(me.status(), 200);
    let disabled = setup
        .client
        .send_json(
            Method::POST,
            &format!("{users_url}/{alice_id}/disable"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(disabled.status(), 200, "{}", disabled.text());
    let me = setup
        .client
        .get(&setup.url("/paddock/v1/me"), Some(&alice))
        .await;
    assert_eq!(me.status(), 401, "disabled user's session still works");
    assert_eq!(
        setup.login("alice", "alice's long password").await.status(),
        401
    );

    let deleted = setup
        .client
        .send_json(
            Method::DELETE,
            &format!("{users_url}/{alice_id}"),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(deleted.status(), 200, "{}", deleted.text());
    let gone = setup
        .client
        .get(&format!("{users_url}/{alice_id}"), Some(&admin))
        .await;
    assert_eq!(gone.status(), 404, "{}", gone.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_logins_are_throttled_with_retry_after() {
    let setup = Setup::start().await;
    let mut last = None;
    for _ in 0..8 {
        let attempt = setup.login("admin", "wrong password, again").await;
        if attempt.status() == 429 {
            last = Some(attempt);
            break;
        }
        assert_eq!(attempt.status(), 401, "{}", attempt.text());
    }
    let throttled = last.expect("8 failed logins were never throttled");
    let retry_after: u64 = throttled.head.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1, "{retry_after}");
    assert_eq!(throttled.json()["reason"], "TooManyRequests");
    // Even the right password waits.
    let right = setup
        .login("admin", &setup.paddock.bootstrap_password())
        .await;
    assert_eq!(right.status(), 429, "{}", right.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_adds_users_and_tokens_beside_a_running_server() {
    let setup = Setup::start().await;
    let bin: &std::path::Path = env!("CARGO_BIN_EXE_paddock").as_ref();
    let added = setup.paddock.cli(
        bin,
        &["user", "add", "bob", "--global-role", "admin"],
        "bob's long password\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    // The server sees the CLI's commit.
    let mut status = 0;
    for _ in 0..50 {
        status = setup.login("bob", "bob's long password").await.status();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the server never saw the CLI's user");

    let created = setup.paddock.cli(
        bin,
        &["token", "create", "--user", "bob", "--description", "ci"],
        "",
    );
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let kube = Arc::new(Kubeconfig::new(
        &setup.paddock.url(),
        &setup.paddock.ca_pem(),
        &token,
    ));
    let listed = String::from_utf8_lossy(&get_pods_until(&kube, true).await.stdout).into_owned();
    assert!(
        listed.contains("web-1"),
        "bob's CLI token never worked: {listed}"
    );

    let id = token.split(':').next().unwrap();
    let revoked = setup.paddock.cli(bin, &["token", "revoke", id], "");
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let denied = get_pods_until(&kube, false).await;
    assert!(!denied.status.success(), "the revoked token kept working");

    // `paddock kubeconfig` hands out a working kubeconfig too.
    let printed = setup.paddock.cli(
        bin,
        &[
            "kubeconfig",
            "--user",
            "bob",
            "--cluster",
            "default",
            "--server",
            &setup.paddock.url(),
        ],
        "",
    );
    assert!(
        printed.status.success(),
        "{}",
        String::from_utf8_lossy(&printed.stderr)
    );
    let kube = Arc::new(Kubeconfig::from_yaml(&String::from_utf8_lossy(
        &printed.stdout,
    )));
    let listed = String::from_utf8_lossy(&get_pods_until(&kube, true).await.stdout).into_owned();
    assert!(
        listed.contains("web-1"),
        "the CLI's kubeconfig never worked"
    );

    let list = setup.paddock.cli(bin, &["user", "list"], "");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(list.contains("admin") && list.contains("bob"), "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubeconfig_token_works_only_for_its_cluster() {
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = paddock_tests::kubectl::write_file(dir.path(), "upstream-ca.crt", fake.ca_pem());
    let token = paddock_tests::kubectl::write_file(dir.path(), "proxy-token", fake.token());
    let cluster = |id: &str| {
        format!(
            "  - id: {id}\n    server: {}\n    caFile: {}\n    tokenFile: {}\n",
            fake.url(),
            ca.display(),
            token.display()
        )
    };
    let config = paddock_tests::kubectl::write_file(
        dir.path(),
        "paddock.yaml",
        &format!("clusters:\n{}{}", cluster("prod"), cluster("staging")),
    );
    let paddock = Paddock::start(
        env!("CARGO_BIN_EXE_paddock").as_ref(),
        &["--config".into(), config.display().to_string()],
    );
    let setup = Setup {
        _fake: fake,
        client: TestClient::new(&paddock.ca_pem(), Protocol::Http1, None),
        paddock,
        _dir: dir,
    };
    let admin = setup.admin_session().await;
    let download = setup
        .client
        .get(
            &setup.url("/paddock/v1/kubeconfig?cluster=staging"),
            Some(&admin),
        )
        .await;
    assert_eq!(download.status(), 200, "{}", download.text());
    let yaml = download.text();
    let token = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_owned();
    let pods = "/api/v1/namespaces/default/pods";
    let at_staging = setup
        .client
        .get(
            &setup.url(&format!("/k8s/clusters/staging{pods}")),
            Some(&token),
        )
        .await;
    assert_eq!(at_staging.status(), 200, "{}", at_staging.text());
    let at_prod = setup
        .client
        .get(
            &setup.url(&format!("/k8s/clusters/prod{pods}")),
            Some(&token),
        )
        .await;
    assert_eq!(at_prod.status(), 403, "{}", at_prod.text());
    assert!(
        at_prod.text().contains("only for cluster staging"),
        "{}",
        at_prod.text()
    );
}
