//! The audit log end to end: the real kubectl through the `paddock` binary
//! configured with `audit:`, and the file it writes parsed back as
//! `audit.k8s.io/v1` events, field by field.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::{write_file, Kubeconfig},
    paddock::{upstream_args, Paddock},
};
use serde_json::{json, Value};

const POLICY: &str = r#"
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-dev, namespace: default}
spec: {clusterName: default, namespaces: [dev-a]}
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-alice, namespace: p-dev}
projectName: default:p-dev
userPrincipalName: alice
roleTemplateName: project-member
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-bob, namespace: p-dev}
projectName: default:p-dev
userPrincipalName: bob
roleTemplateName: read-only
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-bob}
rules:
- apiGroups: [""]
  resources: [users]
  verbs: [impersonate]
  resourceNames: [bob]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: alice-impersonates-bob}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-bob}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}
"#;

/// Everything at Metadata but the health checks; the watch's start is kept.
const AUDIT_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    nonResourceURLs: ["/paddock/healthz*", "/paddock/readyz*"]
  - level: None
    resources: [{group: "", resources: ["namespaces"]}]
  - level: Metadata
"#;

struct Setup {
    _fake: FakeApiServer,
    paddock: Paddock,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(webhook: Option<&str>) -> Setup {
    setup_with(webhook, AUDIT_POLICY).await
}

async fn setup_with(webhook: Option<&str>, audit_policy: &str) -> Setup {
    let fake = FakeApiServer::start(FakeApiConfig {
        namespaces: vec!["dev-a".into()],
        pods: vec![
            ("dev-a".into(), "api-1".into()),
            ("default".into(), "web-1".into()),
        ],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = upstream_args(&fake, dir.path());
    let (paddock, log) = start_paddock(dir.path(), upstream, webhook, audit_policy);
    Setup {
        _fake: fake,
        paddock,
        log,
        _dir: dir,
    }
}

/// Paddock in `dir` in front of `upstream` (its `--upstream*` flags), with
/// `audit_policy` and the audit file (returned) and maybe a webhook sink.
fn start_paddock(
    dir: &Path,
    upstream: Vec<String>,
    webhook: Option<&str>,
    audit_policy: &str,
) -> (Paddock, PathBuf) {
    let policy = dir.join("policy");
    std::fs::create_dir(&policy).unwrap();
    write_file(&policy, "project.yaml", POLICY);
    let tokens = write_file(dir, "tokens.csv", "alice-token,alice,1001,\"developers\"\n");
    let audit_policy = write_file(dir, "audit-policy.yaml", audit_policy);
    let log = dir.join("audit.log");
    let config = write_file(
        dir,
        "paddock.yaml",
        &format!(
            "audit:\n  policyFile: {}\n  file: {{path: {}, maxSizeMB: 10, maxFiles: 2}}\n{}",
            audit_policy.display(),
            log.display(),
            webhook
                .map(|url| format!("  webhook: {{url: '{url}', batchSize: 1}}\n"))
                .unwrap_or_default(),
        ),
    );
    let mut args = upstream;
    args.extend(
        [
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--policy-dir",
            policy.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]
        .map(str::to_owned),
    );
    let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
    (paddock, log)
}

/// The events of the complete lines, in time order: the writer may be
/// halfway through the last one (a line can span two writes), as a reader
/// tailing the file sees it.
fn events(log: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    let mut events: Vec<Value> = complete
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    // Each worker's events are in order, but two workers' are interleaved
    // only batch by batch: read them in time order, as a log pipeline
    // does (the timestamps have a fixed width, so they sort as text).
    events.sort_by(|a, b| {
        let at = |e: &Value| e["stageTimestamp"].as_str().unwrap_or_default().to_owned();
        at(a).cmp(&at(b))
    });
    events
}

/// Waits for the event `matches` picks (the writer thread is asynchronous);
/// fails after a minute with what the log holds.
fn wait_for(log: &Path, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(event) = events(log).into_iter().find(|e| matches(e)) {
            return event;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} event in the audit log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn uri_is(event: &Value, stage: &str, uri: &str) -> bool {
    event["stage"] == stage && event["requestURI"].as_str().is_some_and(|u| u == uri)
}

/// The fields every event has, in the shape kube-apiserver writes them.
fn assert_well_formed(event: &Value) {
    assert_eq!(event["kind"], "Event", "{event}");
    assert_eq!(event["apiVersion"], "audit.k8s.io/v1", "{event}");
    assert_eq!(event["level"], "Metadata", "{event}");
    assert_eq!(event["sourceIPs"], json!(["127.0.0.1"]), "{event}");
    for key in ["requestReceivedTimestamp", "stageTimestamp"] {
        let at = event[key].as_str().unwrap();
        // 2026-12-01T15:10:45.123456Z
        assert_eq!(at.len(), 27, "{key}: {at}");
        assert!(
            at.ends_with('Z') && at.as_bytes()[19] == b'.',
            "{key}: {at}"
        );
    }
    assert!(!event["auditID"].as_str().unwrap().is_empty(), "{event}");
    // No credential of any kind, anywhere.
    let text = event.to_string();
    for secret in ["alice-token", "Bearer", "paddock_session="] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

fn alice_user() -> Value {
    json!({
        "username": "alice",
        "uid": "1001",
        "groups": ["developers", "system:authenticated"],
        "extra": {"paddock.io/principal": ["alice"], "paddock.io/provider": ["token-file"]},
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_sessions_and_logins_are_audited() {
    let setup = setup(None).await;
    let log = setup.log.clone();
    let kube = Arc::new(Kubeconfig::new(
        &format!("{}/k8s/clusters/default", setup.paddock.url()),
        &setup.paddock.ca_pem(),
        "alice-token",
    ));

    // A get.
    let k = kube.clone();
    let pods = tokio::task::spawn_blocking(move || k.ok(&["get", "pods", "-n", "dev-a"]))
        .await
        .unwrap();
    assert!(pods.contains("api-1"), "{pods}");
    let uri = "/k8s/clusters/default/api/v1/namespaces/dev-a/pods?limit=500";
    let list = wait_for(&log, "list", |e| uri_is(e, "ResponseComplete", uri));
    assert_well_formed(&list);
    assert_eq!(list["verb"], "list");
    assert_eq!(list["user"], alice_user(), "{list}");
    assert!(list.get("impersonatedUser").is_none(), "{list}");
    assert!(
        list["userAgent"].as_str().unwrap().starts_with("kubectl"),
        "{list}"
    );
    assert_eq!(
        list["objectRef"],
        json!({"resource": "pods", "namespace": "dev-a", "apiVersion": "v1"})
    );
    assert_eq!(list["responseStatus"], json!({"metadata": {}, "code": 200}));
    let annotations = &list["annotations"];
    assert_eq!(annotations["authorization.k8s.io/decision"], "allow");
    assert!(
        annotations["authorization.k8s.io/reason"]
            .as_str()
            .unwrap()
            .contains("prtb-alice"),
        "{annotations}"
    );
    assert_eq!(annotations["paddock.io/cluster"], "default");
    assert_ne!(annotations["paddock.io/bytes-sent"], "0");
    // Not a long-running request: no ResponseStarted.
    let id = list["auditID"].clone();
    assert_eq!(
        events(&log).iter().filter(|e| e["auditID"] == id).count(),
        1
    );

    // A watch: ResponseStarted when it starts, ResponseComplete when it ends.
    let mut watch = kube.spawn_lines(&["get", "pods", "-n", "dev-a", "-w"]);
    let watch = tokio::task::spawn_blocking(move || {
        watch.wait_for("api-1", Duration::from_secs(30));
        watch
    })
    .await
    .unwrap();
    let is_watch = |e: &Value| {
        e["verb"] == "watch"
            && e["requestURI"]
                .as_str()
                .is_some_and(|u| u.contains("/namespaces/dev-a/pods?") && u.contains("watch=true"))
    };
    let started = wait_for(&log, "watch ResponseStarted", |e| {
        is_watch(e) && e["stage"] == "ResponseStarted"
    });
    assert_well_formed(&started);
    assert_eq!(started["responseStatus"]["code"], 200);
    assert!(started["annotations"]
        .get("paddock.io/bytes-sent")
        .is_none());
    drop(watch);
    let id = started["auditID"].clone();
    let complete = wait_for(&log, "watch ResponseComplete", |e| {
        e["auditID"] == id && e["stage"] == "ResponseComplete"
    });
    assert_well_formed(&complete);
    assert_eq!(complete["verb"], "watch");
    assert_eq!(complete["user"], alice_user());
    assert!(
        complete["stageTimestamp"].as_str() >= started["stageTimestamp"].as_str(),
        "{started}\n{complete}"
    );
    assert_eq!(
        complete["requestReceivedTimestamp"],
        started["requestReceivedTimestamp"]
    );
    assert!(complete["annotations"]["paddock.io/duration-seconds"].is_string());

    // A denied request: forbid, with the policy's reason, and the Status.
    let k = kube.clone();
    let denied =
        tokio::task::spawn_blocking(move || k.run(&["get", "pods", "-n", "default"], None))
            .await
            .unwrap();
    assert!(!denied.status.success());
    let uri = "/k8s/clusters/default/api/v1/namespaces/default/pods?limit=500";
    let forbidden = wait_for(&log, "denied list", |e| uri_is(e, "ResponseComplete", uri));
    assert_well_formed(&forbidden);
    assert_eq!(forbidden["user"], alice_user());
    assert_eq!(
        forbidden["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    let reason = forbidden["annotations"]["authorization.k8s.io/reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("no binding"), "{reason}");
    let status = &forbidden["responseStatus"];
    assert_eq!(status["code"], 403);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Forbidden");
    assert!(
        status["message"].as_str().unwrap().contains("no binding"),
        "{status}"
    );

    // An exec session: ResponseStarted at the 101, ResponseComplete when
    // the session ends, with the bytes relayed each way.
    let k = kube.clone();
    let exec = tokio::task::spawn_blocking(move || {
        k.run(
            &["exec", "-i", "-n", "dev-a", "api-1", "--", "cat"],
            Some("audited stdin\n"),
        )
    })
    .await
    .unwrap();
    assert!(
        exec.status.success(),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "audited stdin\n");
    let is_exec = |e: &Value| e["objectRef"]["subresource"] == "exec";
    let started = wait_for(&log, "exec ResponseStarted", |e| {
        is_exec(e) && e["stage"] == "ResponseStarted"
    });
    assert_well_formed(&started);
    assert_eq!(
        started["responseStatus"],
        json!({"metadata": {}, "code": 101})
    );
    assert_eq!(
        started["objectRef"],
        json!({"resource": "pods", "namespace": "dev-a", "name": "api-1",
               "apiVersion": "v1", "subresource": "exec"})
    );
    let id = started["auditID"].clone();
    let complete = wait_for(&log, "exec ResponseComplete", |e| {
        e["auditID"] == id && e["stage"] == "ResponseComplete"
    });
    assert_well_formed(&complete);
    assert_eq!(complete["verb"], started["verb"]);
    assert_eq!(complete["user"], alice_user());
    let annotations = &complete["annotations"];
    let count = |key: &str| -> u64 { annotations[key].as_str().unwrap().parse().unwrap() };
    // "audited stdin\n" went both ways, inside the stream protocol's frames.
    assert!(count("paddock.io/bytes-received") >= 14, "{annotations}");
    assert!(count("paddock.io/bytes-sent") >= 14, "{annotations}");
    // Not asserted: paddock.io/complete, which depends on how the peers'
    // sockets happened to close.

    // Acting as someone else: impersonatedUser is who the cluster saw.
    let k = kube.clone();
    let as_bob = tokio::task::spawn_blocking(move || {
        k.ok(&["get", "pods", "-n", "dev-a", "--as", "bob", "-o", "name"])
    })
    .await
    .unwrap();
    assert!(as_bob.contains("api-1"), "{as_bob}");
    let acted = wait_for(&log, "--as", |e| e["impersonatedUser"].is_object());
    assert_well_formed(&acted);
    assert_eq!(acted["user"], alice_user());
    assert_eq!(acted["impersonatedUser"]["username"], "bob", "{acted}");
    assert_eq!(
        acted["annotations"]["authorization.k8s.io/decision"],
        "allow"
    );

    // The policy's None rule: namespaces are never recorded.
    let k = kube.clone();
    tokio::task::spawn_blocking(move || k.run(&["get", "namespace", "dev-a"], None))
        .await
        .unwrap();

    // A failed login, then a successful one.
    let bootstrap = setup.paddock.bootstrap_password();
    let client = TestClient::new(&setup.paddock.ca_pem(), Protocol::Http1, None);
    let login = format!("{}/paddock/v1/login", setup.paddock.url());
    let wrong = client
        .send_json(
            Method::POST,
            &login,
            None,
            &json!({"username": "admin", "password": "wrong-password"}),
        )
        .await;
    assert_eq!(wrong.status(), 401, "{}", wrong.text());
    let right = client
        .send_json(
            Method::POST,
            &login,
            None,
            &json!({"username": "admin", "password": setup.paddock.bootstrap_password()}),
        )
        .await;
    assert_eq!(right.status(), 200, "{}", right.text());
    let token = right.json()["token"].as_str().unwrap().to_owned();

    let logins = || {
        events(&log)
            .into_iter()
            .filter(|e| e["requestURI"] == "/paddock/v1/login")
            .collect::<Vec<_>>()
    };
    wait_for(&log, "second login", |_| logins().len() == 2);
    let (failed, succeeded) = (&logins()[0], &logins()[1]);
    for event in [failed, succeeded] {
        assert_well_formed(event);
        assert_eq!(event["verb"], "create");
        assert_eq!(
            event["objectRef"],
            json!({"resource": "login", "apiGroup": "paddock.io", "apiVersion": "v1"})
        );
        assert_eq!(event["annotations"]["paddock.io/login-provider"], "local");
        assert_eq!(event["annotations"]["paddock.io/login-username"], "admin");
    }
    assert_eq!(failed["user"], json!({}), "{failed}");
    let status = &failed["responseStatus"];
    assert_eq!(status["code"], 401);
    assert_eq!(status["reason"], "Unauthorized");
    assert!(status["message"].is_string(), "{status}");
    assert!(
        failed["annotations"]["paddock.io/login-failure"].is_string(),
        "{failed}"
    );
    assert_eq!(
        succeeded["responseStatus"],
        json!({"metadata": {}, "code": 200})
    );
    assert_eq!(succeeded["user"]["username"], "admin");
    assert!(
        succeeded["user"]["extra"]["paddock.io/principal"][0].is_string(),
        "{succeeded}"
    );
    assert!(succeeded["annotations"]
        .get("paddock.io/login-failure")
        .is_none());
    assert!(!succeeded.to_string().contains(&token));

    // The session token at work: `me`, with its token id.
    let me = client
        .get(
            &format!("{}/paddock/v1/me", setup.paddock.url()),
            Some(&token),
        )
        .await;
    assert_eq!(me.status(), 200, "{}", me.text());
    let me = wait_for(&log, "me", |e| e["requestURI"] == "/paddock/v1/me");
    assert_well_formed(&me);
    assert_eq!(me["verb"], "get");
    assert_eq!(me["user"]["username"], "admin");
    assert!(
        me["user"]["extra"]["paddock.io/token-id"][0].is_string(),
        "{me}"
    );
    assert!(!me.to_string().contains(&token));

    // Administration: the password change, a new user, a token created and
    // revoked, each with its objectRef and the admin as the user; never a
    // password or a token.
    let url = |path: &str| format!("{}{path}", setup.paddock.url());
    let new_password = "a-new-admin-password-1";
    let changed = client
        .send_json(
            Method::POST,
            &url("/paddock/v1/password"),
            Some(&token),
            &json!({"currentPassword": setup.paddock.bootstrap_password(), "newPassword": new_password}),
        )
        .await;
    assert_eq!(changed.status(), 200, "{}", changed.text());
    let carol = client
        .send_json(
            Method::POST,
            &url("/paddock/v1/users"),
            Some(&token),
            &json!({"username": "carol", "password": "carols-password-1"}),
        )
        .await;
    assert!(carol.status() < 300, "{}", carol.text());
    let issued = client
        .send_json(
            Method::POST,
            &url("/paddock/v1/tokens"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(issued.status(), 201, "{}", issued.text());
    let issued = issued.json();
    let (id, secret) = (
        issued["id"].as_str().unwrap(),
        issued["token"].as_str().unwrap(),
    );
    let revoked = client
        .fetch(
            http::Request::delete(url(&format!("/paddock/v1/tokens/{id}")))
                .header("authorization", format!("Bearer {token}"))
                .body(Default::default())
                .unwrap(),
        )
        .await;
    assert!(revoked.status() < 300, "{}", revoked.text());
    let revocation = wait_for(&log, "token revocation", |e| e["verb"] == "delete");
    let admin_events: Vec<Value> = events(&log)
        .into_iter()
        .filter(|e| {
            e["objectRef"]["apiGroup"] == "paddock.io"
                && ["password", "users", "tokens"]
                    .contains(&e["objectRef"]["resource"].as_str().unwrap())
        })
        .collect();
    let summary: Vec<(Value, Value, Value, Value)> = admin_events
        .iter()
        .map(|e| {
            assert_well_formed(e);
            assert_eq!(e["user"]["username"], "admin", "{e}");
            for secret in [new_password, "carols-password-1", &token, secret] {
                assert!(!e.to_string().contains(secret), "{e}");
            }
            (
                e["verb"].clone(),
                e["objectRef"]["resource"].clone(),
                e["objectRef"]["name"].clone(),
                e["responseStatus"]["code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!("create"), json!("password"), Value::Null, json!(200)),
            (
                json!("create"),
                json!("users"),
                Value::Null,
                carol.status().into()
            ),
            (json!("create"), json!("tokens"), Value::Null, json!(201)),
            (
                json!("delete"),
                json!("tokens"),
                json!(id),
                revoked.status().into()
            ),
        ]
    );
    assert_eq!(revocation["requestURI"], format!("/paddock/v1/tokens/{id}"));

    // Nothing else: no namespaces (policy None), no health checks.
    for event in events(&log) {
        assert!(event["objectRef"]["resource"] != "namespaces", "{event}");
        assert_ne!(event["level"], "None");
        assert!(!event.to_string().contains(&bootstrap), "{event}");
    }
}

/// Objects at `RequestResponse` for ConfigMaps, Secrets and pods.
const BODIES_POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: None
    nonResourceURLs: ["/paddock/healthz*", "/paddock/readyz*"]
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps", "secrets", "pods"]}]
  - level: Metadata
"#;

/// `Request` and `RequestResponse` record the objects sent and returned,
/// as kube-apiserver does; a Secret's never, nor a watch's.
#[tokio::test(flavor = "multi_thread")]
async fn objects_are_recorded_but_never_secrets_nor_watches() {
    let setup = setup_with(None, BODIES_POLICY).await;
    let log = setup.log.clone();
    let kube = Arc::new(Kubeconfig::new(
        &format!("{}/k8s/clusters/default", setup.paddock.url()),
        &setup.paddock.ca_pem(),
        "alice-token",
    ));
    let kubectl = |args: &'static [&'static str]| {
        let k = kube.clone();
        tokio::task::spawn_blocking(move || k.ok(args))
    };
    let complete = |verb: &'static str, resource: &'static str| {
        move |e: &Value| {
            e["stage"] == "ResponseComplete"
                && e["verb"] == verb
                && e["objectRef"]["resource"] == resource
        }
    };

    // kubectl sends built-in kinds as protobuf, which Paddock records as
    // `not-json`; `create --raw` sends the JSON as it is.
    let dir = tempfile::tempdir().unwrap();
    let configmap = write_file(
        dir.path(),
        "configmap.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "dev-a"},
            "data": {"color": "blue"}}"#,
    );
    let secret = write_file(
        dir.path(),
        "secret.json",
        r#"{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": "db", "namespace": "dev-a"},
            "stringData": {"password": "hunter2-very-secret"}}"#,
    );
    let create = |path: &'static str, file: &std::path::Path| {
        let (k, file) = (kube.clone(), file.to_str().unwrap().to_owned());
        tokio::task::spawn_blocking(move || k.ok(&["create", "--raw", path, "-f", &file]))
    };

    // A ConfigMap created: what was sent and what the cluster stored.
    let created = create("/api/v1/namespaces/dev-a/configmaps", &configmap)
        .await
        .unwrap();
    assert!(created.contains("settings"), "{created}");
    let event = wait_for(&log, "configmap create", complete("create", "configmaps"));
    assert_eq!(event["level"], "RequestResponse");
    let sent = &event["requestObject"];
    assert_eq!(sent["kind"], "ConfigMap", "{event}");
    assert_eq!(sent["metadata"]["name"], "settings", "{event}");
    assert_eq!(sent["data"], json!({"color": "blue"}), "{event}");
    let stored = &event["responseObject"];
    assert_eq!(stored["data"], json!({"color": "blue"}), "{event}");
    assert!(stored["metadata"]["uid"].is_string(), "{event}");
    assert!(event["annotations"].get("audit.k8s.io/truncated").is_none());

    // Read back: the object returned, nothing sent.
    let got = kubectl(&["get", "configmap", "settings", "-n", "dev-a", "-o", "json"])
        .await
        .unwrap();
    assert!(got.contains("blue"), "{got}");
    let event = wait_for(&log, "configmap get", complete("get", "configmaps"));
    assert!(event.get("requestObject").is_none(), "{event}");
    assert_eq!(event["responseObject"]["kind"], "ConfigMap", "{event}");
    assert_eq!(event["responseObject"]["data"]["color"], "blue", "{event}");

    // A Secret, created and read, at the same level: no object, ever.
    create("/api/v1/namespaces/dev-a/secrets", &secret)
        .await
        .unwrap();
    let got = kubectl(&["get", "secret", "db", "-n", "dev-a", "-o", "json"])
        .await
        .unwrap();
    assert!(got.contains("\"db\""), "{got}");
    for verb in ["create", "get"] {
        let event = wait_for(&log, "secret", complete(verb, "secrets"));
        assert_eq!(event["level"], "RequestResponse", "{event}");
        assert!(event.get("requestObject").is_none(), "{event}");
        assert!(event.get("responseObject").is_none(), "{event}");
    }

    // A watch streams objects for as long as it lasts: none recorded.
    let mut watch = kube.spawn_lines(&["get", "pods", "-n", "dev-a", "-w"]);
    let watch = tokio::task::spawn_blocking(move || {
        watch.wait_for("api-1", Duration::from_secs(30));
        watch
    })
    .await
    .unwrap();
    // kubectl prints the list before it sends the watch: stop it only once
    // the watch is answered (an event is written for the watch only then).
    wait_for(&log, "watch start", |e: &Value| {
        e["stage"] == "ResponseStarted" && e["verb"] == "watch"
    });
    drop(watch);
    let watched = wait_for(&log, "watch", complete("watch", "pods"));
    assert!(watched.get("responseObject").is_none(), "{watched}");
    // The list before it is an ordinary request: its object is there.
    let listed = wait_for(&log, "pod list", complete("list", "pods"));
    assert!(listed["responseObject"].is_object(), "{listed}");

    // The secret's value, plain or base64, is nowhere in the log.
    let text = std::fs::read_to_string(&log).unwrap();
    for secret in ["hunter2-very-secret", "aHVudGVyMi12ZXJ5LXNlY3JldA"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    for event in events(&log) {
        assert!(
            !(event["objectRef"]["resource"] == "secrets"
                && (event.get("requestObject").is_some() || event.get("responseObject").is_some())),
            "{event}"
        );
    }
}

/// The audit webhook's receiver: every `EventList` POSTed to it.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    paddock_tests::webhook::receiver("/audit").await
}

/// With `webhook:` beside `file:`, the receiver gets the events the file
/// gets, as `EventList`s.
#[tokio::test(flavor = "multi_thread")]
async fn the_webhook_receives_the_events_the_file_gets() {
    let (url, mut lists) = receiver().await;
    let setup = setup(Some(&url)).await;
    let kube = Arc::new(Kubeconfig::new(
        &format!("{}/k8s/clusters/default", setup.paddock.url()),
        &setup.paddock.ca_pem(),
        "alice-token",
    ));
    let k = kube.clone();
    let pods = tokio::task::spawn_blocking(move || k.ok(&["get", "pods", "-n", "dev-a"]))
        .await
        .unwrap();
    assert!(pods.contains("api-1"), "{pods}");
    let uri = "/k8s/clusters/default/api/v1/namespaces/dev-a/pods?limit=500";
    let log = setup.log.clone();
    let in_file = tokio::task::spawn_blocking(move || {
        wait_for(&log, "list", |e| uri_is(e, "ResponseComplete", uri))
    })
    .await
    .unwrap();
    let posted = loop {
        let list = tokio::time::timeout(Duration::from_secs(60), lists.recv())
            .await
            .expect("no EventList within a minute")
            .unwrap();
        assert_eq!(list["kind"], "EventList");
        assert_eq!(list["apiVersion"], "audit.k8s.io/v1");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "batchSize: 1");
        if uri_is(&items[0], "ResponseComplete", uri) {
            break items[0].clone();
        }
    };
    assert_eq!(posted, in_file);
}

/// A caller that gives up before the cluster answered (Ctrl-C on a
/// `kubectl delete` that hangs) still leaves its event: the request may
/// have reached the cluster. Its code is 499, as nginx logs it.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_abandoned_before_the_answer_is_audited() {
    // An API server that accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let token = write_file(dir.path(), "proxy-token", "unused");
    let upstream = vec![
        "--upstream".into(),
        url,
        "--upstream-token-file".into(),
        token.display().to_string(),
    ];
    let (paddock, log) = start_paddock(dir.path(), upstream, None, AUDIT_POLICY);
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http2, None);
    let uri = "/k8s/clusters/default/api/v1/namespaces/dev-a/pods/api-1";
    let request = client.send(
        http::Request::delete(format!("{}{uri}", paddock.url()))
            .header("authorization", "Bearer alice-token")
            .body(Default::default())
            .unwrap(),
    );
    assert!(
        tokio::time::timeout(Duration::from_secs(1), request)
            .await
            .is_err(),
        "the silent cluster answered"
    );
    let event = wait_for(&log, "abandoned delete", |e| {
        e["stage"] == "ResponseComplete" && e["verb"] == "delete"
    });
    assert_eq!(event["requestURI"], uri, "{event}");
    assert_eq!(event["responseStatus"]["code"], 499, "{event}");
    assert_eq!(event["user"]["username"], "alice", "{event}");
}
