//! RBAC sync against the fake apiserver's RBAC storage (the real
//! `kube` client, the real store and policy): project bindings become
//! RoleBindings in every namespace of the project, cluster bindings
//! ClusterRoleBindings; moves, hand deletions and hand edits are repaired;
//! objects without Paddock's label are never touched.

use std::{sync::Arc, time::Duration};

use paddock_tests::fake_apiserver::{FakeApiConfig, FakeApiServer};
use proxy_core::{
    authz::policy::PolicySource,
    plugins::rbac_sync::{ClusterStatus, RbacSync, MANAGED_BY_LABEL},
    store::{
        BindingScope, EmbeddedOptions, EmbeddedStore, Expect, Object, Op, Project, RoleBinding,
        StoreView, SubjectKind, Timestamp, User,
    },
    upstream::{ClusterConfig, UpstreamCredential},
};
use serde_json::{json, Value};

struct Setup {
    fake: FakeApiServer,
    view: Arc<StoreView>,
    sync: Arc<RbacSync>,
    _dir: tempfile::TempDir,
}

fn project(namespaces: &[&str]) -> Project {
    Project {
        id: "p-web".into(),
        cluster_id: "prod".into(),
        display_name: "web".into(),
        namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
    }
}

async fn setup() -> Setup {
    let fake = FakeApiServer::start(FakeApiConfig {
        namespaces: vec!["web".into(), "api".into(), "db".into()],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_in_dir(dir.path(), EmbeddedOptions::default()).unwrap();
    let view = StoreView::new(Arc::new(store)).unwrap();
    let now = Timestamp::now();
    let alice = User {
        id: "u-alice".into(),
        username: "alice".into(),
        display_name: String::new(),
        enabled: true,
        must_change_password: false,
        principal_ids: vec!["local://u-alice".into()],
        created_at: now,
    };
    let binding = |id: &str, subject: &str, kind, role: &str, scope| RoleBinding {
        id: id.into(),
        subject: subject.into(),
        subject_kind: kind,
        role: role.into(),
        scope,
        created_at: now,
    };
    view.commit(vec![
        Op::put(Object::User(alice), Expect::Absent),
        Op::put(Object::Project(project(&["web", "api"])), Expect::Absent),
        Op::put(
            Object::RoleBinding(binding(
                "b-alice",
                "u-alice",
                SubjectKind::User,
                "project-member",
                BindingScope::Project("p-web".into()),
            )),
            Expect::Absent,
        ),
        Op::put(
            Object::RoleBinding(binding(
                "b-ops",
                "openldap_group://cn=ops,dc=example",
                SubjectKind::Group,
                "cluster-member",
                BindingScope::Cluster("prod".into()),
            )),
            Expect::Absent,
        ),
        // Another cluster's binding: nothing of it reaches prod.
        Op::put(
            Object::RoleBinding(binding(
                "b-other",
                "u-alice",
                SubjectKind::User,
                "cluster-owner",
                BindingScope::Cluster("staging".into()),
            )),
            Expect::Absent,
        ),
    ])
    .unwrap();
    let source = PolicySource {
        store: Some(view.clone()),
        ..PolicySource::default()
    };
    let policy = Arc::new(move || Arc::new(source.load().expect("policy compiles")));
    let mut cluster = ClusterConfig::new("prod", fake.url());
    cluster.ca_pem = Some(fake.ca_pem().as_bytes().to_vec());
    cluster.credential = UpstreamCredential::BearerToken(fake.token().to_owned().into());
    let sync = RbacSync::new(view.clone(), policy)
        .cluster(&cluster)
        .unwrap()
        .interval(Duration::from_millis(500));
    Setup {
        fake,
        view,
        sync: Arc::new(sync),
        _dir: dir,
    }
}

fn names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            match m["namespace"].as_str() {
                Some(ns) => format!("{ns}/{}", m["name"].as_str().unwrap()),
                None => m["name"].as_str().unwrap().to_owned(),
            }
        })
        .collect()
}

fn ours(objects: Vec<Value>) -> Vec<Value> {
    objects
        .into_iter()
        .filter(|o| o["metadata"]["labels"][MANAGED_BY_LABEL] == "paddock")
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn project_bindings_follow_the_projects_namespaces_and_drift_is_repaired() {
    let s = setup().await;
    // Someone else's RoleBinding in a project namespace: never touched.
    let foreign = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "someone-elses", "namespace": "web"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "bob"}],
    });
    s.fake.put_rbac_object("rolebindings", foreign.clone());

    let report = s.sync.reconcile("prod").await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    let rbs = ours(s.fake.rbac_objects("rolebindings"));
    let rb_names = names(&rbs);
    assert_eq!(rb_names.len(), 2, "{rb_names:?}");
    assert!(rb_names[0].starts_with("api/paddock-rb-"), "{rb_names:?}");
    assert!(rb_names[1].starts_with("web/paddock-rb-"), "{rb_names:?}");
    for rb in &rbs {
        assert_eq!(rb["roleRef"]["name"], "paddock-rt-project-member", "{rb}");
        assert_eq!(rb["subjects"][0]["kind"], "User");
        assert_eq!(rb["subjects"][0]["name"], "u-alice");
        assert_eq!(rb["metadata"]["labels"]["paddock.io/binding"], "b-alice");
    }
    let crbs = ours(s.fake.rbac_objects("clusterrolebindings"));
    assert_eq!(crbs.len(), 1, "{crbs:?}");
    assert_eq!(crbs[0]["roleRef"]["name"], "paddock-rt-cluster-member");
    assert_eq!(crbs[0]["subjects"][0]["kind"], "Group");
    assert_eq!(
        crbs[0]["subjects"][0]["name"],
        "openldap_group://cn=ops,dc=example"
    );
    let roles = names(&ours(s.fake.rbac_objects("clusterroles")));
    assert_eq!(
        roles,
        ["paddock-rt-cluster-member", "paddock-rt-project-member"]
    );
    // The template's rules, inheritance resolved: project-member inherits edit.
    let member = s
        .fake
        .rbac_objects("clusterroles")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "paddock-rt-project-member")
        .unwrap();
    assert!(
        member["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["resources"]
                .as_array()
                .is_some_and(|v| v.contains(&json!("pods")))
                && r["verbs"]
                    .as_array()
                    .is_some_and(|v| v.contains(&json!("create")))),
        "{member}"
    );
    // A second pass changes nothing.
    let again = s.sync.reconcile("prod").await.unwrap();
    assert_eq!(
        (again.created, again.updated, again.deleted),
        (0, 0, 0),
        "{again:?}"
    );

    // The namespace moves out of the project: its RoleBinding goes.
    s.view
        .commit(vec![Op::put(
            Object::Project(project(&["web"])),
            Expect::Any,
        )])
        .unwrap();
    let report = s.sync.reconcile("prod").await.unwrap();
    assert_eq!(report.deleted, 1, "{report:?}");
    let rb_names = names(&ours(s.fake.rbac_objects("rolebindings")));
    assert_eq!(rb_names.len(), 1);
    assert!(rb_names[0].starts_with("web/"), "{rb_names:?}");

    // Deleted by hand: the running sync puts it back without any store change.
    let task = s.sync.spawn();
    let (ns, name) = rb_names[0].split_once('/').unwrap();
    assert!(s.fake.delete_rbac_object("rolebindings", ns, name));
    // Edited by hand: the subjects are put back.
    let mut crb = crbs[0].clone();
    crb["subjects"][0]["name"] = "mallory".into();
    s.fake.put_rbac_object("clusterrolebindings", crb);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let restored = names(&ours(s.fake.rbac_objects("rolebindings"))) == rb_names;
        let repaired = ours(s.fake.rbac_objects("clusterrolebindings"))[0]["subjects"][0]["name"]
            == "openldap_group://cn=ops,dc=example";
        if restored && repaired {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "drift not repaired: {:?}",
            s.sync.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    task.abort();
    let status = s.sync.status();
    assert!(status["prod"].last_error.is_none(), "{status:?}");
    assert!(status["prod"].last_success.is_some(), "{status:?}");
    // The hand deletion and the hand edit, each repaired once.
    assert_eq!(status["prod"].drift_repaired, 2, "{status:?}");

    // The foreign object was never touched.
    let still = s
        .fake
        .rbac_objects("rolebindings")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "someone-elses")
        .expect("left alone");
    assert_eq!(still["subjects"], foreign["subjects"]);
    assert!(still["metadata"]["labels"].is_null());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_name_taken_by_an_unlabelled_object_is_reported_not_overwritten() {
    let s = setup().await;
    let theirs = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "paddock-rt-cluster-member"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
    });
    s.fake.put_rbac_object("clusterroles", theirs.clone());
    let report = s.sync.reconcile("prod").await.unwrap();
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.contains("paddock-rt-cluster-member")
                && e.contains("without Paddock's label")),
        "{report:?}"
    );
    let kept = s
        .fake
        .rbac_objects("clusterroles")
        .into_iter()
        .find(|o| o["metadata"]["name"] == "paddock-rt-cluster-member")
        .unwrap();
    assert_eq!(kept["rules"], theirs["rules"]);
    let status = s.sync.status();
    assert!(status["prod"].last_success.is_none(), "{status:?}");
    assert_eq!(status["prod"].last_pass.errors, report.errors);
    assert!(status["prod"].failing(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_cluster_is_an_error_in_the_status() {
    let s = setup().await;
    let mut gone = ClusterConfig::new("gone", "https://127.0.0.1:1");
    gone.ca_pem = Some(s.fake.ca_pem().as_bytes().to_vec());
    let source = PolicySource::default();
    let sync = RbacSync::new(
        s.view.clone(),
        Arc::new(move || Arc::new(source.load().unwrap())),
    )
    .cluster(&gone)
    .unwrap();
    assert!(sync.reconcile("gone").await.is_err());
    let status = sync.status();
    assert!(status["gone"].last_error.is_some(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_the_api_server_refuses_keep_the_cluster_failing_until_they_pass() {
    let s = setup().await;
    s.fake.forbid_rbac_writes(true);
    let report = s.sync.reconcile("prod").await.unwrap();
    assert_eq!(report.written(), 0, "{report:?}");
    // Two ClusterRoles, one ClusterRoleBinding, two RoleBindings.
    assert_eq!(report.errors.len(), 5, "{report:?}");
    let status = s.sync.status()["prod"].clone();
    assert!(status.failing(), "{status:?}");
    let error = status.last_error.as_deref().unwrap();
    assert!(
        error.contains("is forbidden") && error.contains("(and 4 more)"),
        "{error}"
    );
    assert_eq!(status.last_success, None);
    assert!(ours(s.fake.rbac_objects("rolebindings")).is_empty());

    s.fake.forbid_rbac_writes(false);
    let report = s.sync.reconcile("prod").await.unwrap();
    assert_eq!(
        (report.written(), report.errors.len()),
        (5, 0),
        "{report:?}"
    );
    let status = s.sync.status()["prod"].clone();
    assert!(!status.failing(), "{status:?}");
    assert_eq!(status.last_error, None);
    assert_eq!((status.passes, status.failed_passes), (2, 1));
    assert_eq!(status.objects_written, 5);
    // Nothing had been written before: no drift.
    assert_eq!(status.drift_repaired, 0);
}

/// A cluster whose listing stalls mid-body fails its pass once the
/// cluster's request timeout has passed, and holds back no other cluster:
/// the healthy one passes again and again meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_whose_listing_stalls_fails_and_holds_back_no_other() {
    let s = setup().await;
    let stalled = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    stalled.stall_rbac_lists(true);
    let config = |id: &str, fake: &FakeApiServer| {
        let mut cluster = ClusterConfig::new(id, fake.url());
        cluster.ca_pem = Some(fake.ca_pem().as_bytes().to_vec());
        cluster.credential = UpstreamCredential::BearerToken(fake.token().to_owned().into());
        cluster.request_timeout = Duration::from_secs(3);
        cluster
    };
    let source = PolicySource::default();
    let sync = Arc::new(
        RbacSync::new(
            s.view.clone(),
            Arc::new(move || Arc::new(source.load().unwrap())),
        )
        .cluster(&config("prod", &s.fake))
        .unwrap()
        .cluster(&config("stalled", &stalled))
        .unwrap()
        .interval(Duration::from_millis(100)),
    );
    let task = sync.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = sync.status();
        if status.get("stalled").is_some_and(ClusterStatus::failing) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled cluster is not reported failing: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    task.abort();
    let error = status["stalled"].last_error.as_deref().unwrap_or_default();
    assert!(error.contains("did not end within 3s"), "{error}");
    let prod = &status["prod"];
    assert!(!prod.failing(), "{prod:?}");
    // A pass every quarter second or so while the other waited 3 s.
    assert!(prod.passes >= 3, "{prod:?}");
}
