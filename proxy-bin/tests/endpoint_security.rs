//! Regression tests for the holes an outside probe found around Paddock's
//! own endpoints, through the real `paddock` binary: what a cluster-scoped
//! token may do under `/paddock/v1/`, the admin API under
//! `allow-authenticated`, sessions after a password change, login CSRF.

use http::Method;
use paddock_tests::{
    client::{Collected, Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    paddock::Paddock,
};
use serde_json::json;

const ADMIN_PASSWORD: &str = "correct horse battery staple";

struct Setup {
    _fake: FakeApiServer,
    paddock: Paddock,
    client: TestClient,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// Paddock with clusters `prod` and `staging` (the same fake), and
    /// `extra` appended to its config.
    async fn start(extra: &str) -> Self {
        let fake = FakeApiServer::start(FakeApiConfig {
            pods: vec![("default".into(), "web-1".into())],
            ..FakeApiConfig::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = write_file(dir.path(), "upstream-ca.crt", fake.ca_pem());
        let token = write_file(dir.path(), "proxy-token", fake.token());
        let cluster = |id: &str| {
            format!(
                "  - id: {id}\n    server: {}\n    caFile: {}\n    tokenFile: {}\n",
                fake.url(),
                ca.display(),
                token.display()
            )
        };
        let config = write_file(
            dir.path(),
            "paddock.yaml",
            &format!(
                "clusters:\n{}{}{extra}",
                cluster("prod"),
                cluster("staging")
            ),
        );
        let paddock = Paddock::start(
            env!("CARGO_BIN_EXE_paddock").as_ref(),
            &["--config".into(), config.display().to_string()],
        );
        Setup {
            _fake: fake,
            client: TestClient::new(&paddock.ca_pem(), Protocol::Http1, None),
            paddock,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.paddock.url())
    }

    async fn admin_session(&self) -> String {
        self.paddock
            .admin_session(&self.client, ADMIN_PASSWORD)
            .await
    }

    async fn post(&self, path: &str, token: &str, body: serde_json::Value) -> Collected {
        self.client
            .send_json(Method::POST, &self.url(path), Some(token), &body)
            .await
    }

    async fn get(&self, path: &str, token: &str) -> Collected {
        self.client.get(&self.url(path), Some(token)).await
    }

    /// Creates a local user and returns a session token of theirs.
    async fn user_session(&self, admin: &str, username: &str, password: &str) -> String {
        let created = self
            .post(
                "/paddock/v1/users",
                admin,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(created.status(), 201, "{}", created.text());
        let login = self
            .client
            .send_json(
                Method::POST,
                &self.url("/paddock/v1/login"),
                None,
                &json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(login.status(), 200, "{}", login.text());
        login.json()["token"].as_str().unwrap().to_owned()
    }
}

/// A kubeconfig token scoped to `staging`, issued to the admin.
async fn scoped_token(setup: &Setup, admin: &str) -> String {
    let issued = setup
        .post(
            "/paddock/v1/tokens",
            admin,
            json!({"kind": "kubeconfig", "cluster": "staging"}),
        )
        .await;
    assert_eq!(issued.status(), 201, "{}", issued.text());
    issued.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_scoped_token_reaches_only_me_logout_and_its_own_kubeconfig() {
    let setup = Setup::start("").await;
    let admin = setup.admin_session().await;
    let scoped = scoped_token(&setup, &admin).await;

    // The admin's own token may do all of this; the scoped one none of it.
    let users = setup.get("/paddock/v1/users", &scoped).await;
    assert_eq!(users.status(), 403, "{}", users.text());
    assert!(
        users.text().contains("only for cluster staging"),
        "{}",
        users.text()
    );
    let minted = setup
        .post("/paddock/v1/tokens", &scoped, json!({"kind": "api"}))
        .await;
    assert_eq!(minted.status(), 403, "{}", minted.text());
    let created = setup
        .post(
            "/paddock/v1/users",
            &scoped,
            json!({"username": "mallory", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(created.status(), 403, "{}", created.text());
    let tokens = setup.get("/paddock/v1/tokens", &scoped).await;
    assert_eq!(tokens.status(), 403, "{}", tokens.text());
    let other = setup
        .get("/paddock/v1/kubeconfig?cluster=prod", &scoped)
        .await;
    assert_eq!(other.status(), 403, "{}", other.text());

    let me = setup.get("/paddock/v1/me", &scoped).await;
    assert_eq!(me.status(), 200, "{}", me.text());
    assert_eq!(me.json()["token"]["cluster"], "staging", "{}", me.text());
    let own = setup
        .get("/paddock/v1/kubeconfig?cluster=staging", &scoped)
        .await;
    assert_eq!(own.status(), 200, "{}", own.text());
    let logout = setup.post("/paddock/v1/logout", &scoped, json!({})).await;
    assert_eq!(logout.status(), 200, "{}", logout.text());
    let after = setup.get("/paddock/v1/me", &scoped).await;
    assert_eq!(after.status(), 401, "{}", after.text());

    // The unscoped session is not affected.
    let listed = setup.get("/paddock/v1/users", &admin).await;
    assert_eq!(listed.status(), 200, "{}", listed.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn allow_authenticated_decides_kubernetes_requests_not_the_admin_api() {
    let setup = Setup::start("authorization: allow-authenticated\n").await;
    let admin = setup.admin_session().await;
    let bob = setup
        .user_session(&admin, "bob", "bob's long enough password")
        .await;

    // Kubernetes requests: any authenticated caller, as configured.
    let pods = setup
        .get("/k8s/clusters/prod/api/v1/namespaces/default/pods", &bob)
        .await;
    assert_eq!(pods.status(), 200, "{}", pods.text());

    // The admin API still wants a global role.
    let users = setup.get("/paddock/v1/users", &bob).await;
    assert_eq!(users.status(), 403, "{}", users.text());
    let reset = setup
        .post(
            "/paddock/v1/users/admin/password",
            &bob,
            json!({"password": "bob owns the admin now"}),
        )
        .await;
    assert_eq!(reset.status(), 403, "{}", reset.text());
    let all_tokens = setup.get("/paddock/v1/tokens?all=true", &bob).await;
    assert_eq!(all_tokens.status(), 403, "{}", all_tokens.text());

    // The bootstrap admin's global role still works.
    let listed = setup.get("/paddock/v1/users", &admin).await;
    assert_eq!(listed.status(), 200, "{}", listed.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_other_sessions_and_a_reset_or_disable_ends_all() {
    let setup = Setup::start("").await;
    let admin = setup.admin_session().await;
    let login = |username: &'static str, password: &'static str| {
        let setup = &setup;
        async move {
            let login = setup
                .client
                .send_json(
                    Method::POST,
                    &setup.url("/paddock/v1/login"),
                    None,
                    &json!({"username": username, "password": password}),
                )
                .await;
            assert_eq!(login.status(), 200, "{}", login.text());
            login.json()["token"].as_str().unwrap().to_owned()
        }
    };
    let me = |token: String| {
        let setup = &setup;
        async move { setup.get("/paddock/v1/me", &token).await.status() }
    };

    // The admin's own change: the session it was made from and the API
    // token stay, the other session ends.
    let other = login("admin", ADMIN_PASSWORD).await;
    let api = setup
        .post("/paddock/v1/tokens", &admin, json!({"kind": "api"}))
        .await;
    assert_eq!(api.status(), 201, "{}", api.text());
    let api = api.json()["token"].as_str().unwrap().to_owned();
    let changed = setup
        .post(
            "/paddock/v1/password",
            &admin,
            json!({"currentPassword": ADMIN_PASSWORD, "newPassword": "an even better admin password"}),
        )
        .await;
    assert_eq!(changed.status(), 200, "{}", changed.text());
    assert_eq!(me(admin.clone()).await, 200);
    assert_eq!(me(other).await, 401);
    assert_eq!(me(api).await, 200);

    // An admin's reset ends every session of the user.
    let carol = setup
        .user_session(&admin, "carol", "carol's first password")
        .await;
    let carol_too = login("carol", "carol's first password").await;
    let reset = setup
        .post(
            "/paddock/v1/users/carol/password",
            &admin,
            json!({"password": "carol's second password"}),
        )
        .await;
    assert_eq!(reset.status(), 200, "{}", reset.text());
    assert_eq!(me(carol).await, 401);
    assert_eq!(me(carol_too).await, 401);

    // Disabling ends them for good: enabling again does not revive them.
    let carol = login("carol", "carol's second password").await;
    for action in ["disable", "enable"] {
        let done = setup
            .post(
                &format!("/paddock/v1/users/carol/{action}"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(done.status(), 200, "{}", done.text());
    }
    assert_eq!(me(carol).await, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_site_or_non_json_login_sets_no_cookie() {
    let setup = Setup::start("").await;
    let password = setup.paddock.bootstrap_password();
    let body = json!({"username": "admin", "password": password}).to_string();
    let login = |content_type: &'static str, extra: Option<(&'static str, String)>| {
        let (setup, body) = (&setup, body.clone());
        async move {
            let mut request = http::Request::builder()
                .method(Method::POST)
                .uri(setup.url("/paddock/v1/login"))
                .header("content-type", content_type);
            if let Some((name, value)) = extra {
                request = request.header(name, value);
            }
            setup.client.fetch(request.body(body.into()).unwrap()).await
        }
    };
    let ours = setup.paddock.url();

    // What a cross-site HTML form or no-cors fetch can send.
    for (content_type, extra) in [
        ("text/plain", None),
        ("application/x-www-form-urlencoded", None),
        (
            "text/plain",
            Some(("origin", "https://evil.example".to_owned())),
        ),
        (
            "application/json",
            Some(("origin", "https://evil.example".to_owned())),
        ),
        (
            "application/json",
            Some(("sec-fetch-site", "cross-site".to_owned())),
        ),
        (
            "application/json",
            Some(("sec-fetch-site", "same-site".to_owned())),
        ),
    ] {
        let refused = login(content_type, extra.clone()).await;
        assert!(
            refused.status() == 415 || refused.status() == 403,
            "{content_type} {extra:?}: {} {}",
            refused.status(),
            refused.text()
        );
        assert_eq!(refused.json()["kind"], "Status", "{}", refused.text());
        assert!(
            refused.head.headers.get("set-cookie").is_none(),
            "{content_type} {extra:?} set a cookie"
        );
    }

    // A CLI (no Origin) and the same origin still log in.
    for extra in [None, Some(("origin", ours))] {
        let accepted = login("application/json; charset=utf-8", extra).await;
        assert_eq!(accepted.status(), 200, "{}", accepted.text());
        assert!(accepted.head.headers.get("set-cookie").is_some());
    }
}

/// A delegate who may create cluster role template bindings, and nothing
/// else, cannot grant a role they were not given `bind` on: not to
/// themselves, not to anyone.
#[tokio::test(flavor = "multi_thread")]
async fn creating_a_binding_needs_bind_on_the_role_it_grants() {
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("delegate.yaml"),
        "apiVersion: management.cattle.io/v3\nkind: GlobalRole\nmetadata: {name: binding-manager}\nrules:\n  - apiGroups: [management.cattle.io]\n    resources: [clusterroletemplatebindings]\n    verbs: [create, list]\n  - apiGroups: [management.cattle.io]\n    resources: [roletemplates]\n    resourceNames: [cluster-member]\n    verbs: [bind]\n",
    )
    .unwrap();
    let setup = Setup::start(&format!(
        "authorization: {{mode: policy, policyDir: {}}}\n",
        policy.path().display()
    ))
    .await;
    let admin = setup.admin_session().await;
    let delegate = setup
        .user_session(&admin, "dana", "dana's long enough password")
        .await;
    let granted = setup
        .post(
            "/paddock/v1/bindings",
            &admin,
            json!({"user": "dana", "role": "binding-manager"}),
        )
        .await;
    assert_eq!(granted.status(), 201, "{}", granted.text());

    let grant = |role: &'static str| {
        let (setup, delegate) = (&setup, delegate.clone());
        async move {
            let mut last = None;
            // The new global binding reaches the policy within a second.
            for _ in 0..50 {
                let created = setup
                    .post(
                        "/paddock/v1/bindings",
                        &delegate,
                        json!({"user": "dana", "role": role, "cluster": "prod"}),
                    )
                    .await;
                if created.status() != 403 || role != "cluster-member" {
                    return created;
                }
                last = Some(created);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            last.unwrap()
        }
    };
    let allowed = grant("cluster-member").await;
    assert_eq!(allowed.status(), 201, "{}", allowed.text());
    let escalation = grant("cluster-owner").await;
    assert_eq!(escalation.status(), 403, "{}", escalation.text());
    assert!(escalation.text().contains("bind"), "{}", escalation.text());
}
