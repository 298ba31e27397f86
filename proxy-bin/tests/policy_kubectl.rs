//! Policy end to end: the real kubectl through the `paddock` binary with a
//! Rancher-style project, `kubectl auth can-i` agreeing with `paddock policy
//! can-i`, and `kubectl --as` working only when the policy grants it.

use std::{process::Command, sync::Arc};

use paddock_tests::{
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::{write_file, Kubeconfig},
    paddock::Paddock,
};

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
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-alice}
rules:
- apiGroups: [""]
  resources: [users]
  verbs: [impersonate]
  resourceNames: [alice]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: ivan-impersonates-alice}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: impersonate-alice}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: ivan}
"#;

struct Setup {
    fake: FakeApiServer,
    paddock: Paddock,
    dir: tempfile::TempDir,
}

async fn setup() -> Setup {
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
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    write_file(&policy, "project.yaml", POLICY);
    let ca = write_file(dir.path(), "ca.crt", fake.ca_pem());
    let token = write_file(dir.path(), "token", fake.token());
    let tokens = write_file(
        dir.path(),
        "tokens.csv",
        "alice-token,alice,1,\"developers\"\nivan-token,ivan,2,\nbob-token,bob,3,\n",
    );
    let args: Vec<String> = [
        "--upstream",
        &fake.url(),
        "--upstream-ca",
        ca.to_str().unwrap(),
        "--upstream-token-file",
        token.to_str().unwrap(),
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--policy-dir",
        policy.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
    Setup { fake, paddock, dir }
}

fn kube(setup: &Setup, token: &str) -> Arc<Kubeconfig> {
    Arc::new(Kubeconfig::new(
        &format!("{}/k8s/clusters/default", setup.paddock.url()),
        &setup.paddock.ca_pem(),
        token,
    ))
}

async fn run(kube: &Arc<Kubeconfig>, args: &'static [&'static str]) -> std::process::Output {
    let kube = kube.clone();
    tokio::task::spawn_blocking(move || kube.run(args, None))
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_member_sees_the_projects_namespaces_and_nothing_else() {
    let setup = setup().await;
    let alice = kube(&setup, "alice-token");
    let allowed = run(&alice, &["get", "pods", "-n", "dev-a"]).await;
    assert!(allowed.status.success(), "{}", text(&allowed.stderr));
    assert!(text(&allowed.stdout).contains("api-1"));

    let denied = run(&alice, &["get", "pods", "-n", "default"]).await;
    let stderr = text(&denied.stderr);
    assert!(!denied.status.success());
    assert!(stderr.contains("Forbidden"), "{stderr}");
    assert!(stderr.contains("cannot list resource \"pods\""), "{stderr}");
    assert!(
        stderr.contains("no binding for user alice"),
        "the reason is missing: {stderr}"
    );
    // The denied request never reached the cluster.
    assert!(setup
        .fake
        .last_request("/api/v1/namespaces/default/pods")
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_auth_can_i_agrees_with_paddock_policy_can_i() {
    let setup = setup().await;
    let alice = kube(&setup, "alice-token");
    let policy_dir = setup.dir.path().join("policy");
    let questions: [&'static [&'static str]; 4] = [
        &["list", "pods", "-n", "dev-a"],
        &["list", "pods", "-n", "default"],
        &["delete", "pods", "-n", "dev-a"],
        &["create", "secrets", "-n", "dev-a"],
    ];
    let mut answers = Vec::new();
    for question in questions {
        let mut args = vec!["auth", "can-i"];
        args.extend_from_slice(question);
        let args: &'static [&'static str] = Box::leak(args.into_boxed_slice());
        let kubectl = run(&alice, args).await;
        let paddock = Command::new(env!("CARGO_BIN_EXE_paddock"))
            .args(["policy", "can-i", "--policy-dir"])
            .arg(&policy_dir)
            .args([
                "--user",
                "alice",
                "--group",
                "developers",
                "--cluster",
                "default",
            ])
            .args(question)
            .output()
            .unwrap();
        let (k, p) = (text(&kubectl.stdout), text(&paddock.stdout));
        // kubectl prints "no - <reason>" when the review carries one.
        let k_answer = k.split_whitespace().next().unwrap_or_default();
        assert_eq!(
            k_answer,
            p.trim(),
            "{question:?}: kubectl {k:?} {} vs paddock {p:?}",
            text(&kubectl.stderr)
        );
        if k_answer == "no" {
            assert!(k.contains("no binding for user alice"), "{k}");
        }
        assert_eq!(kubectl.status.code(), paddock.status.code(), "{question:?}");
        answers.push(p.trim().to_owned());
    }
    // The table is not trivially all-yes or all-no.
    assert_eq!(answers, ["yes", "no", "yes", "yes"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_as_works_only_when_granted() {
    let setup = setup().await;
    let bob = kube(&setup, "bob-token");
    // (--raw: kubectl's discovery client prints any 403 on discovery as "unknown".)
    let refused = run(
        &bob,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/dev-a/pods",
            "--as",
            "alice",
        ],
    )
    .await;
    let stderr = text(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("impersonate"), "{stderr}");

    let ivan = kube(&setup, "ivan-token");
    let as_alice = run(&ivan, &["get", "pods", "-n", "dev-a", "--as", "alice"]).await;
    assert!(as_alice.status.success(), "{}", text(&as_alice.stderr));
    assert!(text(&as_alice.stdout).contains("api-1"));
    let seen = setup
        .fake
        .last_request("/api/v1/namespaces/dev-a/pods")
        .unwrap();
    assert_eq!(seen.user.unwrap().username, "alice");

    // Only alice: not anyone else, and not groups.
    let as_carol = run(&ivan, &["get", "pods", "-n", "dev-a", "--as", "carol"]).await;
    assert!(!as_carol.status.success());
    let with_group = run(
        &ivan,
        &[
            "get",
            "--raw",
            "/api/v1/namespaces/dev-a/pods",
            "--as",
            "alice",
            "--as-group",
            "system:masters",
        ],
    )
    .await;
    assert!(!with_group.status.success());
    assert!(
        text(&with_group.stderr).contains("impersonate"),
        "{}",
        text(&with_group.stderr)
    );
    // As alice, ivan has alice's rights, not more.
    let outside = run(&ivan, &["get", "pods", "-n", "default", "--as", "alice"]).await;
    assert!(!outside.status.success());
    setup.fake.assert_clean();
}
