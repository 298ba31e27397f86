//! Role bindings and projects end to end through the real `paddock`
//! binary: a directory group found with the principals search and bound
//! through the admin API, a project made with the API and a directory user
//! bound to it with `paddock user bind corp/jdoe`, real kubectl on two
//! clusters, and the refusals of the bindings API.
//!
//! Needs kubectl and `apt-get install slapd ldap-utils` (tests/run.sh
//! installs them).

use std::{path::Path, sync::Arc, time::Duration};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::{write_file, Kubeconfig},
    paddock::Paddock,
    slapd::{Slapd, BASE_LDIF, SERVICE_DN},
};
use serde_json::{json, Value};

/// Added to the directory after [`BASE_LDIF`].
const DATA: &str = r#"dn: uid=jdoe,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: jdoe
cn: Jane Doe
sn: Doe
userPassword: jdoe-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
userPassword: bob-pw

dn: cn=developers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: developers
member: uid=jdoe,ou=people,dc=example,dc=org
"#;

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

/// Two clusters, `prod` (default) and `dev`, each with pods in `apps` and
/// `other`; `ldap` is the `authentication.ldap` list, if any.
struct Setup {
    _fakes: Vec<FakeApiServer>,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    paddock: Paddock,
    client: TestClient,
}

impl Setup {
    async fn start(ldap: Option<&Slapd>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut fakes = Vec::new();
        let mut clusters = String::from("clusters:\n");
        for (i, id) in ["prod", "dev"].into_iter().enumerate() {
            let fake = FakeApiServer::start(FakeApiConfig {
                namespaces: vec!["default".into(), "apps".into(), "other".into()],
                pods: vec![
                    ("apps".into(), format!("{id}-app")),
                    ("other".into(), format!("{id}-other")),
                ],
                ..FakeApiConfig::default()
            })
            .await
            .unwrap();
            let ca = write_file(dir.path(), &format!("{id}-ca.crt"), fake.ca_pem());
            let token = write_file(dir.path(), &format!("{id}-token"), fake.token());
            clusters.push_str(&format!(
                "  - id: {id}\n    default: {}\n    server: {}\n    caFile: {}\n    tokenFile: {}\n",
                i == 0,
                fake.url(),
                ca.display(),
                token.display()
            ));
            fakes.push(fake);
        }
        let authentication = match ldap {
            Some(slapd) => {
                let ldap_ca = write_file(dir.path(), "ldap-ca.crt", slapd.ca_pem());
                let password = write_file(dir.path(), "ldap-password", "service-pw\n");
                format!(
                    r#"authentication:
  ldap:
    - name: corp
      kind: openldap
      servers: ["{}"]
      caFile: {}
      bindDn: "{SERVICE_DN}"
      bindPasswordFile: {}
      userSearchBase: ou=people,dc=example,dc=org
      groupSearchBase: ou=groups,dc=example,dc=org
      membership: {{strategy: member}}
"#,
                    slapd.ldap_url(),
                    ldap_ca.display(),
                    password.display()
                )
            }
            None => String::new(),
        };
        let config = write_file(
            dir.path(),
            "paddock.yaml",
            &format!("{authentication}{clusters}"),
        );
        let paddock = Paddock::start(bin(), &["--config".into(), config.display().to_string()]);
        let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
        Self {
            _fakes: fakes,
            _dir: dir,
            config,
            paddock,
            client,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.paddock.url())
    }

    /// Logs in; retried while the server has not yet read a user the CLI
    /// just wrote (it looks for other processes' commits every second).
    async fn login(&self, provider: &str, username: &str, password: &str) -> Value {
        let mut response = None;
        for _ in 0..30 {
            let answer = self
                .client
                .send_json(
                    Method::POST,
                    &self.url("/paddock/v1/login"),
                    None,
                    &json!({"provider": provider, "username": username, "password": password}),
                )
                .await;
            if answer.status() == 200 {
                return answer.json();
            }
            response = Some(answer);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let response = response.unwrap();
        panic!("login failed: {} {}", response.status(), response.text());
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        let response = self
            .client
            .send_json(Method::POST, &self.url(path), Some(token), body)
            .await;
        (response.status(), response.json())
    }

    async fn delete(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self
            .client
            .send_json(Method::DELETE, &self.url(path), Some(token), &json!({}))
            .await;
        (response.status(), response.json())
    }

    /// Polls `path` with `token` until it answers `expected`; the last
    /// status otherwise. A change reaches the authorizer within a second.
    async fn eventually(&self, path: &str, token: &str, expected: u16) -> u16 {
        let mut status = 0;
        for _ in 0..100 {
            status = self.client.get(&self.url(path), Some(token)).await.status();
            if status == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        status
    }

    /// `paddock <args> --config <the config>` beside the running server.
    fn cli(&self, args: &[&str]) -> (bool, String) {
        let mut args: Vec<&str> = args.to_vec();
        let config = self.config.display().to_string();
        args.extend(["--config", &config]);
        let output = self.paddock.cli(bin(), &args, "");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    async fn kubeconfig(&self, token: &str, cluster: &str) -> Arc<Kubeconfig> {
        let yaml = self
            .client
            .get(
                &self.url(&format!("/paddock/v1/kubeconfig?cluster={cluster}")),
                Some(token),
            )
            .await;
        assert_eq!(yaml.status(), 200, "{}", yaml.text());
        Arc::new(Kubeconfig::from_yaml(&yaml.text()))
    }
}

/// Whether `kubectl get pods -n <namespace>` succeeds, and what it printed.
async fn kubectl_get_pods(kube: &Arc<Kubeconfig>, namespace: &str) -> (bool, String) {
    let kube = kube.clone();
    let namespace = namespace.to_owned();
    tokio::task::spawn_blocking(move || {
        let output = kube.run(&["get", "pods", "-n", &namespace], None);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    })
    .await
    .unwrap()
}

const PODS_PROD: &str = "/k8s/clusters/prod/api/v1/namespaces/apps/pods";

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_group_and_a_directory_user_are_bound_at_cluster_and_project_scope() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let s = Setup::start(Some(&slapd)).await;
    let admin = s
        .paddock
        .admin_session(&s.client, "a new admin password")
        .await;

    // jdoe logs in once (so corp/jdoe is known); bob is not in the group.
    let jdoe = s.login("corp", "jdoe", "jdoe-pw").await;
    let jdoe_token = jdoe["token"].as_str().unwrap().to_owned();
    let bob = s.login("corp", "bob", "bob-pw").await;
    let bob_token = bob["token"].as_str().unwrap().to_owned();

    // The admin API names a directory user the same way (the slash escaped).
    let user = s
        .client
        .get(&s.url("/paddock/v1/users/corp%2Fjdoe"), Some(&admin))
        .await;
    assert_eq!(user.status(), 200, "{}", user.text());
    assert_eq!(user.json()["id"], jdoe["user"]["id"], "{}", user.text());

    // The group as the principals search finds it is bound as it is.
    let found = s
        .client
        .get(
            &s.url("/paddock/v1/principals?provider=corp&q=developers"),
            Some(&admin),
        )
        .await
        .json();
    let group = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|p| {
            p["id"]
                .as_str()
                .filter(|id| id.starts_with("openldap_group://"))
        })
        .unwrap_or_else(|| panic!("no group in {found}"))
        .to_owned();
    let (status, binding) = s
        .post(
            "/paddock/v1/bindings",
            &admin,
            &json!({"group": group, "role": "cluster-owner", "cluster": "prod"}),
        )
        .await;
    assert_eq!(status, 201, "{binding}");
    assert_eq!(binding["subjectKind"], "group", "{binding}");
    assert_eq!(binding["subjectName"], "developers", "{binding}");
    let group_binding = binding["id"].as_str().unwrap().to_owned();

    // A member may on prod, not on dev; bob, outside the group, nowhere.
    let prod = s.kubeconfig(&jdoe_token, "prod").await;
    let dev = s.kubeconfig(&jdoe_token, "dev").await;
    assert_eq!(s.eventually(PODS_PROD, &jdoe_token, 200).await, 200);
    let (ok, listed) = kubectl_get_pods(&prod, "apps").await;
    assert!(ok && listed.contains("prod-app"), "{listed}");
    let (ok, refused) = kubectl_get_pods(&dev, "apps").await;
    assert!(!ok && refused.contains("Forbidden"), "{refused}");
    let bob_prod = s.kubeconfig(&bob_token, "prod").await;
    let (ok, refused) = kubectl_get_pods(&bob_prod, "apps").await;
    assert!(!ok && refused.contains("Forbidden"), "{refused}");

    // A project on dev holding `apps`; jdoe bound to it by provider/login.
    let (status, project) = s
        .post(
            "/paddock/v1/projects",
            &admin,
            &json!({"cluster": "dev", "name": "team-a", "namespaces": ["apps"]}),
        )
        .await;
    assert_eq!(status, 201, "{project}");
    let project_id = project["id"].as_str().unwrap().to_owned();
    let (ok, out) = s.cli(&[
        "user",
        "bind",
        "corp/jdoe",
        "project-member",
        "--project",
        "dev:team-a",
    ]);
    assert!(ok, "{out}");
    let project_binding = out
        .split("(binding ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no binding id in {out:?}"))
        .to_owned();
    let mut allowed = false;
    for _ in 0..100 {
        if kubectl_get_pods(&dev, "apps").await.0 {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allowed, "the project binding never took effect");
    let (ok, listed) = kubectl_get_pods(&dev, "apps").await;
    assert!(ok && listed.contains("dev-app"), "{listed}");
    let (ok, refused) = kubectl_get_pods(&dev, "other").await;
    assert!(!ok && refused.contains("Forbidden"), "{refused}");

    // The bindings list shows both, with names people read.
    let list = s
        .client
        .get(&s.url("/paddock/v1/bindings"), Some(&admin))
        .await
        .json();
    let listed = list.to_string();
    assert!(listed.contains(&group_binding), "{listed}");
    assert!(listed.contains(&project_binding), "{listed}");
    assert!(listed.contains(&format!("dev:{project_id}")), "{listed}");

    // A project in use is not deleted; namespaces come and go.
    let (status, body) = s
        .delete(&format!("/paddock/v1/projects/{project_id}"), &admin)
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .post(
            &format!("/paddock/v1/projects/{project_id}/namespaces"),
            &admin,
            &json!({"namespace": "other"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let dev_other = "/k8s/clusters/dev/api/v1/namespaces/other/pods";
    assert_eq!(s.eventually(dev_other, &jdoe_token, 200).await, 200);
    let (status, body) = s
        .delete(
            &format!("/paddock/v1/projects/{project_id}/namespaces/other"),
            &admin,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.eventually(dev_other, &jdoe_token, 403).await, 403);

    // Deleting the group's binding ends the members' access.
    let (status, body) = s
        .delete(&format!("/paddock/v1/bindings/{group_binding}"), &admin)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.eventually(PODS_PROD, &jdoe_token, 403).await, 403);
    let (status, body) = s
        .delete(&format!("/paddock/v1/bindings/{group_binding}"), &admin)
        .await;
    assert_eq!(status, 404, "{body}");

    // The CLI deletes the project binding, then the project.
    let (ok, out) = s.cli(&["binding", "delete", &project_binding]);
    assert!(ok, "{out}");
    let (ok, out) = s.cli(&["project", "delete", "dev:team-a"]);
    assert!(ok, "{out}");
    let (ok, out) = s.cli(&["project", "list"]);
    assert!(ok && !out.contains("team-a"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bindings_api_refuses_non_admins_unknown_roles_clusters_and_duplicates() {
    let s = Setup::start(None).await;
    let admin = s
        .paddock
        .admin_session(&s.client, "a new admin password")
        .await;
    let created = s
        .paddock
        .cli(bin(), &["user", "add", "alice"], "alice password 1\n");
    assert!(created.status.success(), "{created:?}");
    // The user commands take provider/login too.
    let changed = s.paddock.cli(
        bin(),
        &["user", "passwd", "local/alice"],
        "alice password 2\n",
    );
    assert!(changed.status.success(), "{changed:?}");
    let alice = s.login("local", "alice", "alice password 2").await;
    let alice_token = alice["token"].as_str().unwrap().to_owned();
    let group = "openldap_group://9f3c2a51-0c7e-4c44-8f39-1e5c6f3b2d10";

    // alice, without a global role, may neither list nor create nor delete.
    let denied = s
        .client
        .get(&s.url("/paddock/v1/bindings"), Some(&alice_token))
        .await;
    assert_eq!(denied.status(), 403, "{}", denied.text());
    for (path, body) in [
        (
            "/paddock/v1/bindings",
            json!({"user": "local/alice", "role": "admin"}),
        ),
        (
            "/paddock/v1/bindings",
            json!({"group": group, "role": "cluster-owner", "cluster": "prod"}),
        ),
        (
            "/paddock/v1/projects",
            json!({"cluster": "prod", "name": "mine"}),
        ),
    ] {
        let (status, body) = s.post(path, &alice_token, &body).await;
        assert_eq!(status, 403, "{path}: {body}");
    }
    let (status, body) = s
        .delete("/paddock/v1/bindings/grb-anything", &alice_token)
        .await;
    assert_eq!(status, 403, "{body}");
    let projects = s
        .client
        .get(&s.url("/paddock/v1/projects"), Some(&alice_token))
        .await;
    assert_eq!(projects.status(), 403, "{}", projects.text());

    // An unknown role, or one of the wrong scope, is 400 naming it.
    for (body, role) in [
        (
            json!({"group": group, "role": "cluster-ownr", "cluster": "prod"}),
            "cluster-ownr",
        ),
        (
            json!({"user": "local/alice", "role": "project-member", "cluster": "prod"}),
            "project-member",
        ),
        (json!({"user": "alice", "role": "superuser"}), "superuser"),
    ] {
        let (status, answer) = s.post("/paddock/v1/bindings", &admin, &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["kind"], "Status", "{answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(&format!("\"{role}\"")), "{message}");
    }
    // An unknown cluster, a user who is not there, a group that is not a
    // group principal: 400, saying which.
    for (body, needle) in [
        (
            json!({"group": group, "role": "cluster-owner", "cluster": "staging"}),
            "staging",
        ),
        (
            json!({"user": "corp/nobody", "role": "user"}),
            "corp/nobody",
        ),
        (
            json!({"group": "developers", "role": "cluster-owner", "cluster": "prod"}),
            "developers",
        ),
        (
            json!({"user": "alice", "group": group, "role": "user"}),
            "exactly one",
        ),
    ] {
        let (status, answer) = s.post("/paddock/v1/bindings", &admin, &body).await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(needle),
            "{answer}"
        );
    }

    // A good binding, then the same again: refused as a duplicate, from
    // the API and the CLI alike.
    let body = json!({"group": group, "role": "cluster-owner", "cluster": "prod"});
    let (status, answer) = s.post("/paddock/v1/bindings", &admin, &body).await;
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = s.post("/paddock/v1/bindings", &admin, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"].as_str().unwrap().contains("already"),
        "{answer}"
    );
    let group_flag = format!("--group={group}");
    for (args, needle) in [
        (
            [
                group_flag.as_str(),
                "--role=cluster-owner",
                "--cluster=prod",
            ],
            "already",
        ),
        (
            ["--user=alice", "--role=nope", "--cluster=prod"],
            "\"nope\"",
        ),
        (
            ["--user=alice", "--role=cluster-owner", "--cluster=staging"],
            "staging",
        ),
    ] {
        let (ok, out) = s.cli(&[&["binding", "create"][..], &args[..]].concat());
        assert!(!ok && out.contains(needle), "{args:?}: {out}");
    }

    // alice bound through the CLI with a global role reaches the API.
    let (ok, out) = s.cli(&[
        "binding",
        "create",
        "--user",
        "local/alice",
        "--role",
        "admin",
    ]);
    assert!(ok, "{out}");
    assert_eq!(
        s.eventually("/paddock/v1/bindings", &alice_token, 200)
            .await,
        200
    );
    let (ok, out) = s.cli(&["binding", "list"]);
    assert!(ok && out.contains("alice") && out.contains(group), "{out}");
}
