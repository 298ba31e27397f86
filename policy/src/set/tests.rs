//! Decisions over the built-in roles, native RBAC and Rancher's model, and every
//! compile error.

use super::*;
use crate::{ImpersonationError, ImpersonationRequest, Subject};

const RANCHER_FIXTURE: &str = r#"
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-dev, namespace: prod}
spec: {clusterName: prod, namespaces: [dev-a]}
---
apiVersion: v1
kind: Namespace
metadata:
  name: dev-b
  annotations: {field.cattle.io/projectId: "prod:p-dev"}
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-abc, namespace: p-dev}
projectName: prod:p-dev
userPrincipalName: local://u-member
roleTemplateName: project-member
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-ro, namespace: p-dev}
projectName: prod:p-dev
groupPrincipalName: github_team://12
roleTemplateName: read-only
---
apiVersion: management.cattle.io/v3
kind: ClusterRoleTemplateBinding
metadata: {name: crtb-1, namespace: prod}
clusterName: prod
userPrincipalName: local://u-cm
roleTemplateName: cluster-member
---
apiVersion: management.cattle.io/v3
kind: GlobalRoleBinding
metadata: {name: grb-admin}
userPrincipalName: local://u-admin
globalRoleName: admin
---
apiVersion: management.cattle.io/v3
kind: GlobalRoleBinding
metadata: {name: grb-user}
userPrincipalName: local://u-plain
globalRoleName: user
---
apiVersion: management.cattle.io/v3
kind: GlobalRole
metadata: {name: everywhere-member}
inheritedClusterRoles: [cluster-member]
---
apiVersion: management.cattle.io/v3
kind: GlobalRoleBinding
metadata: {name: grb-inherit}
groupPrincipalName: github_org://7
globalRoleName: everywhere-member
"#;

fn set(yaml: &str) -> PolicySet {
    PolicySet::from_documents([("test.yaml", yaml)]).unwrap_or_else(|e| panic!("{e}"))
}

fn err(yaml: &str) -> PolicyError {
    PolicySet::from_documents([("bad.yaml", yaml)]).expect_err("should not compile")
}

fn req(method: &str, url: &str) -> RequestAttributes {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (url, None),
    };
    RequestAttributes::from_request(method, path, query).unwrap()
}

fn user(name: &str) -> Subject {
    Subject::new(name, ["system:authenticated"])
}

fn allowed(set: &PolicySet, who: &Subject, cluster: &str, method: &str, url: &str) -> bool {
    set.decide(who, cluster, &req(method, url)).allowed
}

#[test]
fn builtins_compile_and_grant_discovery_only() {
    let set = PolicySet::builtin();
    let stats = set.stats();
    assert_eq!(stats.bindings, 3, "the three discovery ClusterRoleBindings");
    let anyone = user("local://u-x");
    assert!(allowed(&set, &anyone, "prod", "GET", "/api"));
    assert!(allowed(&set, &anyone, "prod", "GET", "/apis/apps/v1"));
    assert!(allowed(
        &set,
        &anyone,
        "prod",
        "GET",
        "/openapi/v3/apis/apps/v1"
    ));
    assert!(allowed(
        &set,
        &anyone,
        "prod",
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
    ));
    assert!(!allowed(
        &set,
        &anyone,
        "prod",
        "GET",
        "/api/v1/namespaces/default/pods"
    ));
    assert!(!allowed(&set, &anyone, "prod", "GET", "/metrics"));
    let nobody = Subject::new("system:anonymous", ["system:unauthenticated"]);
    assert!(allowed(&set, &nobody, "prod", "GET", "/healthz"));
    assert!(!allowed(&set, &nobody, "prod", "GET", "/api"));
}

#[test]
fn aggregated_builtin_roles() {
    let y = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: v, namespace: ns}
roleRef: {kind: ClusterRole, name: view}
subjects: [{kind: User, name: viewer}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: e, namespace: ns}
roleRef: {kind: ClusterRole, name: edit}
subjects: [{kind: User, name: editor}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: a, namespace: ns}
roleRef: {kind: ClusterRole, name: admin}
subjects: [{kind: User, name: admin}]
"#;
    let set = set(y);
    let (viewer, editor, admin) = (user("viewer"), user("editor"), user("admin"));
    let get_pods = "/api/v1/namespaces/ns/pods/p";
    // view ⊂ edit ⊂ admin through nested aggregation
    for who in [&viewer, &editor, &admin] {
        assert!(allowed(&set, who, "c", "GET", get_pods));
    }
    assert!(!allowed(&set, &viewer, "c", "DELETE", get_pods));
    assert!(!allowed(
        &set,
        &viewer,
        "c",
        "GET",
        "/api/v1/namespaces/ns/secrets/s"
    ));
    assert!(allowed(&set, &editor, "c", "DELETE", get_pods));
    assert!(allowed(
        &set,
        &editor,
        "c",
        "GET",
        "/api/v1/namespaces/ns/secrets/s"
    ));
    assert!(!allowed(
        &set,
        &editor,
        "c",
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles"
    ));
    assert!(allowed(
        &set,
        &admin,
        "c",
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ns/roles"
    ));
    // the namespace object itself has namespace `ns`, so a RoleBinding there grants it
    assert!(allowed(&set, &viewer, "c", "GET", "/api/v1/namespaces/ns"));
    assert!(!allowed(
        &set,
        &viewer,
        "c",
        "GET",
        "/api/v1/namespaces/other"
    ));
    // RoleBindings never grant cluster-scoped or all-namespace requests
    assert!(!allowed(&set, &viewer, "c", "GET", "/api/v1/namespaces"));
    assert!(!allowed(&set, &viewer, "c", "GET", "/api/v1/pods"));
}

#[test]
fn custom_aggregation_and_selectors() {
    let y = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: widgets-view
  labels: {rbac.authorization.k8s.io/aggregate-to-view: "true"}
rules: [{verbs: [get], apiGroups: [example.io], resources: [widgets]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tiered, labels: {tier: gold}}
rules: [{verbs: [list], apiGroups: [example.io], resources: [gadgets]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: by-expression}
rules: [{verbs: ["*"], apiGroups: ["*"], resources: ["*"]}]
aggregationRule:
  clusterRoleSelectors:
  - matchExpressions: [{key: tier, operator: In, values: [gold, silver]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: admins}
roleRef: {kind: ClusterRole, name: admin}
subjects: [{kind: User, name: a}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: expr}
roleRef: {kind: ClusterRole, name: by-expression}
subjects: [{kind: User, name: e}]
"#;
    let set = set(y);
    // a role labelled aggregate-to-view reaches admin through view and edit
    assert!(allowed(
        &set,
        &user("a"),
        "c",
        "GET",
        "/apis/example.io/v1/namespaces/n/widgets/w"
    ));
    assert!(!allowed(
        &set,
        &user("a"),
        "c",
        "DELETE",
        "/apis/example.io/v1/namespaces/n/widgets/w"
    ));
    // an aggregated role's own rules are replaced by the union, like the controller does
    assert!(allowed(
        &set,
        &user("e"),
        "c",
        "GET",
        "/apis/example.io/v1/gadgets"
    ));
    assert!(!allowed(&set, &user("e"), "c", "GET", "/api/v1/pods"));
}

#[test]
fn rancher_project_binding() {
    let set = set(RANCHER_FIXTURE);
    let member = user("local://u-member");
    // project namespaces, from spec.namespaces and from the namespace annotation
    for ns in ["dev-a", "dev-b"] {
        assert!(allowed(
            &set,
            &member,
            "prod",
            "POST",
            &format!("/apis/apps/v1/namespaces/{ns}/deployments")
        ));
        assert!(allowed(
            &set,
            &member,
            "prod",
            "GET",
            &format!("/api/v1/namespaces/{ns}/secrets/s")
        ));
    }
    assert!(!allowed(
        &set,
        &member,
        "prod",
        "GET",
        "/api/v1/namespaces/default/pods"
    ));
    assert!(!allowed(
        &set,
        &member,
        "staging",
        "GET",
        "/api/v1/namespaces/dev-a/pods"
    ));
    assert!(
        !allowed(&set, &member, "prod", "GET", "/api/v1/pods"),
        "all namespaces"
    );
    // project-member cannot manage RBAC (edit, not admin)
    assert!(!allowed(
        &set,
        &member,
        "prod",
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/dev-a/rolebindings"
    ));
    // promoted cluster-scoped rules apply cluster-wide in the project's cluster only
    assert!(allowed(
        &set,
        &member,
        "prod",
        "GET",
        "/api/v1/persistentvolumes"
    ));
    assert!(allowed(
        &set,
        &member,
        "prod",
        "GET",
        "/apis/storage.k8s.io/v1/storageclasses/fast"
    ));
    assert!(!allowed(
        &set,
        &member,
        "staging",
        "GET",
        "/api/v1/persistentvolumes"
    ));
    assert!(
        !allowed(&set, &member, "prod", "GET", "/api/v1/nodes"),
        "project-member has no nodes rule"
    );
    let d = set.decide(
        &member,
        "prod",
        &req("GET", "/api/v1/namespaces/dev-a/pods"),
    );
    assert_eq!(
        d.reason,
        "allowed by ProjectRoleTemplateBinding p-dev/prtb-abc (role project-member) in cluster prod"
    );
    let d = set.decide(
        &member,
        "prod",
        &req("GET", "/api/v1/namespaces/default/pods"),
    );
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "no binding for user local://u-member (groups: system:authenticated) grants list pods in namespace default of cluster prod"
    );
}

#[test]
fn rancher_group_read_only() {
    let set = set(RANCHER_FIXTURE);
    let reader = Subject::new(
        "github_user://1",
        ["github_team://12", "system:authenticated"],
    );
    assert!(allowed(
        &set,
        &reader,
        "prod",
        "GET",
        "/api/v1/namespaces/dev-a/pods/p/log"
    ));
    assert!(!allowed(
        &set,
        &reader,
        "prod",
        "DELETE",
        "/api/v1/namespaces/dev-a/pods/p"
    ));
    assert!(!allowed(
        &set,
        &reader,
        "prod",
        "GET",
        "/api/v1/namespaces/dev-a/secrets"
    ));
    let stranger = Subject::new("github_user://1", ["github_team://13"]);
    assert!(!allowed(
        &set,
        &stranger,
        "prod",
        "GET",
        "/api/v1/namespaces/dev-a/pods"
    ));
}

#[test]
fn rancher_cluster_and_global_bindings() {
    let set = set(RANCHER_FIXTURE);
    let cm = user("local://u-cm");
    assert!(allowed(&set, &cm, "prod", "GET", "/api/v1/nodes"));
    assert!(allowed(
        &set,
        &cm,
        "prod",
        "GET",
        "/apis/management.cattle.io/v3/clusters/local"
    ));
    assert!(!allowed(
        &set,
        &cm,
        "prod",
        "GET",
        "/apis/management.cattle.io/v3/clusters/other"
    ));
    assert!(!allowed(&set, &cm, "staging", "GET", "/api/v1/nodes"));
    assert!(!allowed(
        &set,
        &cm,
        "prod",
        "GET",
        "/api/v1/namespaces/dev-a/pods"
    ));

    let admin = user("local://u-admin");
    for cluster in ["prod", "local", "anything"] {
        assert!(allowed(
            &set,
            &admin,
            cluster,
            "DELETE",
            "/api/v1/namespaces/x/pods/p"
        ));
        assert!(allowed(&set, &admin, cluster, "GET", "/metrics"));
    }
    let d = set.decide(&admin, "prod", &req("GET", "/api/v1/nodes"));
    assert_eq!(
        d.reason,
        "allowed by GlobalRoleBinding grb-admin (global role admin: cluster-admin in every cluster) in cluster prod"
    );

    // GlobalRole rules apply in the management cluster only
    let plain = user("local://u-plain");
    assert!(allowed(
        &set,
        &plain,
        "local",
        "GET",
        "/apis/management.cattle.io/v3/settings"
    ));
    assert!(allowed(
        &set,
        &plain,
        "local",
        "POST",
        "/api/v1/namespaces/cattle-global-data/secrets"
    ));
    assert!(!allowed(
        &set,
        &plain,
        "local",
        "POST",
        "/api/v1/namespaces/default/secrets"
    ));
    assert!(!allowed(
        &set,
        &plain,
        "prod",
        "GET",
        "/apis/management.cattle.io/v3/settings"
    ));

    // inheritedClusterRoles apply in every cluster but the management one
    let org = Subject::new("github_user://9", ["github_org://7"]);
    assert!(allowed(&set, &org, "prod", "GET", "/api/v1/nodes"));
    assert!(allowed(&set, &org, "staging", "GET", "/api/v1/nodes"));
    assert!(!allowed(&set, &org, "local", "GET", "/api/v1/nodes"));
}

#[test]
fn management_cluster_is_configurable() {
    let mut builder = PolicySet::builder();
    builder
        .management_cluster(Some("mgmt"))
        .add_yaml("f", RANCHER_FIXTURE)
        .unwrap();
    let set = builder.build().unwrap();
    let plain = user("local://u-plain");
    assert!(allowed(
        &set,
        &plain,
        "mgmt",
        "GET",
        "/apis/management.cattle.io/v3/settings"
    ));
    assert!(!allowed(
        &set,
        &plain,
        "local",
        "GET",
        "/apis/management.cattle.io/v3/settings"
    ));
    builder.management_cluster(None);
    let set = builder.build().unwrap();
    assert!(!allowed(
        &set,
        &plain,
        "mgmt",
        "GET",
        "/apis/management.cattle.io/v3/settings"
    ));
    let org = Subject::new("u", ["github_org://7"]);
    assert!(allowed(&set, &org, "local", "GET", "/api/v1/nodes"));
}

#[test]
fn native_subjects_and_scopes() {
    let y = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- {verbs: [get, list], apiGroups: [""], resources: [pods]}
- {verbs: [get], nonResourceURLs: ["*"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: readers, namespace: team}
roleRef: {kind: Role, name: pod-reader}
subjects:
- {kind: User, name: alice}
- {kind: Group, name: readers}
- {kind: ServiceAccount, name: bot}
- {kind: Robot, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: sa-without-namespace}
roleRef: {kind: ClusterRole, name: cluster-admin}
subjects: [{kind: ServiceAccount, name: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: prod-only
  annotations: {paddock.io/cluster: prod}
roleRef: {kind: ClusterRole, name: view}
subjects: [{kind: User, name: "*"}]
"#;
    let set = set(y);
    let pods = "/api/v1/namespaces/team/pods";
    assert!(allowed(
        &set,
        &Subject::new("alice", Vec::<String>::new()),
        "c",
        "GET",
        pods
    ));
    assert!(allowed(
        &set,
        &Subject::new("bob", ["readers"]),
        "c",
        "GET",
        pods
    ));
    assert!(
        !allowed(&set, &Subject::new("bob", ["Readers"]), "c", "GET", pods),
        "groups are case-sensitive"
    );
    // ServiceAccount subjects default to the RoleBinding's namespace
    assert!(allowed(
        &set,
        &Subject::new("system:serviceaccount:team:bot", ["x"]),
        "c",
        "GET",
        pods
    ));
    assert!(!allowed(
        &set,
        &Subject::new("system:serviceaccount:other:bot", ["x"]),
        "c",
        "GET",
        pods
    ));
    // non-resource URLs granted through a RoleBinding are dead
    assert!(!allowed(
        &set,
        &Subject::new("alice", Vec::<String>::new()),
        "c",
        "GET",
        "/metrics"
    ));
    // a ServiceAccount without namespace in a ClusterRoleBinding matches nothing
    for who in [
        "system:serviceaccount::default",
        "system:serviceaccount:default:default",
        "default",
    ] {
        assert!(!allowed(
            &set,
            &Subject::new(who, Vec::<String>::new()),
            "c",
            "GET",
            "/api/v1/nodes"
        ));
    }
    // a User named `*` is a literal, and the cluster annotation limits the binding
    assert!(allowed(
        &set,
        &Subject::new("*", Vec::<String>::new()),
        "prod",
        "GET",
        pods
    ));
    assert!(!allowed(
        &set,
        &Subject::new("*", Vec::<String>::new()),
        "dev",
        "GET",
        pods
    ));
    assert!(!allowed(
        &set,
        &Subject::new("carol", Vec::<String>::new()),
        "prod",
        "GET",
        pods
    ));
}

#[test]
fn websocket_exec_needs_get_and_create() {
    let y = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: exec-get-only}
rules: [{verbs: [get], apiGroups: [""], resources: [pods/exec]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: getter, namespace: ns}
roleRef: {kind: ClusterRole, name: exec-get-only}
subjects: [{kind: User, name: getter}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: editor, namespace: ns}
roleRef: {kind: ClusterRole, name: edit}
subjects: [{kind: User, name: editor}]
"#;
    let set = set(y);
    let exec = req(
        "GET",
        "/api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true",
    );
    let checks = exec.authorization_checks(true);
    let getter = user("getter");
    assert!(
        set.decide(&getter, "c", &exec).allowed,
        "a plain get passes"
    );
    let d = set.decide_all(&getter, "c", &checks);
    assert!(!d.allowed);
    assert!(
        d.reason.contains("grants create pods/exec \"p\""),
        "{}",
        d.reason
    );
    let d = set.decide_all(&user("editor"), "c", &checks);
    assert!(d.allowed);
    assert_eq!(
        d.reason.matches("allowed by RoleBinding ns/editor").count(),
        2
    );
    assert!(!set.decide_all(&user("editor"), "c", &[]).allowed);
}

#[test]
fn user_may_replace_kubernetes_builtin_roles_but_not_rancher_ones() {
    let y = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: view}
rules: [{verbs: [get], apiGroups: [""], resources: [configmaps]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: v}
roleRef: {kind: ClusterRole, name: view}
subjects: [{kind: User, name: v}]
"#;
    let set = set(y);
    assert!(allowed(
        &set,
        &user("v"),
        "c",
        "GET",
        "/api/v1/namespaces/n/configmaps/x"
    ));
    assert!(!allowed(
        &set,
        &user("v"),
        "c",
        "GET",
        "/api/v1/namespaces/n/pods/x"
    ));
    let e = err("apiVersion: management.cattle.io/v3\nkind: GlobalRole\nmetadata: {name: admin}\n");
    assert!(matches!(e, PolicyError::Duplicate { .. }), "{e}");
    assert!(e.to_string().starts_with("file bad.yaml, document 1: GlobalRole admin is defined twice (first at <built-in>, document"), "{e}");
}

#[test]
fn list_documents_and_locations() {
    let y = r#"
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: List
items:
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: ok}
  roleRef: {kind: ClusterRole, name: view}
  subjects: [{kind: User, name: u}]
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRoleBinding
  metadata: {name: broken}
  roleRef: {kind: ClusterRole, name: nope}
  subjects: [{kind: User, name: u}]
"#;
    assert_eq!(
        err(y).to_string(),
        "file bad.yaml, document 2, item 2: ClusterRoleBinding broken: ClusterRole \"nope\" does not exist"
    );
}

#[test]
fn compile_errors() {
    let yaml_error =
        err("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\nfoo: [unclosed\n");
    assert!(
        matches!(yaml_error, PolicyError::Yaml { ref at, .. } if at.document == 2),
        "{yaml_error}"
    );
    let kind = err("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a}\n");
    assert!(
        kind.to_string()
            .contains("unsupported object apiVersion \"apps/v1\" kind \"Deployment\""),
        "{kind}"
    );
    let shape = err(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: a}\n",
    );
    assert!(shape.to_string().contains("roleRef"), "{shape}");

    let cycle = err(r#"
apiVersion: management.cattle.io/v3
kind: RoleTemplate
metadata: {name: a}
context: cluster
roleTemplateNames: [b]
---
apiVersion: management.cattle.io/v3
kind: RoleTemplate
metadata: {name: b}
context: cluster
roleTemplateNames: [a]
"#);
    match &cycle {
        PolicyError::TemplateCycle { cycle, .. } => assert_eq!(cycle, &["a", "b", "a"]),
        other => panic!("{other}"),
    }
    let self_cycle = err("apiVersion: management.cattle.io/v3\nkind: RoleTemplate\nmetadata: {name: s}\ncontext: project\nroleTemplateNames: [s]\n");
    assert!(matches!(self_cycle, PolicyError::TemplateCycle { .. }));

    let locked = err(r#"
apiVersion: management.cattle.io/v3
kind: RoleTemplate
metadata: {name: old}
context: cluster
locked: true
---
apiVersion: management.cattle.io/v3
kind: ClusterRoleTemplateBinding
metadata: {name: crtb, namespace: c1}
clusterName: c1
userName: u-1
roleTemplateName: old
"#);
    assert!(
        matches!(locked, PolicyError::LockedTemplate { ref template, .. } if template == "old"),
        "{locked}"
    );

    let context = err("apiVersion: management.cattle.io/v3\nkind: ClusterRoleTemplateBinding\nmetadata: {name: x, namespace: c1}\nuserName: u\nroleTemplateName: project-member\n");
    assert!(
        matches!(
            context,
            PolicyError::WrongContext {
                expected: "cluster",
                ..
            }
        ),
        "{context}"
    );
    let inherited = err("apiVersion: management.cattle.io/v3\nkind: GlobalRole\nmetadata: {name: g}\ninheritedClusterRoles: [read-only]\n");
    assert!(
        matches!(inherited, PolicyError::WrongContext { .. }),
        "{inherited}"
    );

    let unknown_rt = err("apiVersion: management.cattle.io/v3\nkind: RoleTemplate\nmetadata: {name: t}\ncontext: cluster\nroleTemplateNames: [missing]\n");
    assert!(
        matches!(
            unknown_rt,
            PolicyError::UnknownReference {
                what: "RoleTemplate",
                ..
            }
        ),
        "{unknown_rt}"
    );
    let unknown_project = err("apiVersion: management.cattle.io/v3\nkind: ProjectRoleTemplateBinding\nmetadata: {name: x, namespace: p}\nprojectName: c:p\nuserName: u\nroleTemplateName: read-only\n");
    assert!(
        matches!(
            unknown_project,
            PolicyError::UnknownReference {
                what: "Project",
                ..
            }
        ),
        "{unknown_project}"
    );
    let unknown_ns_project = err("apiVersion: v1\nkind: Namespace\nmetadata: {name: n, annotations: {field.cattle.io/projectId: 'c:p'}}\n");
    assert!(matches!(
        unknown_ns_project,
        PolicyError::UnknownReference {
            what: "Project",
            ..
        }
    ));
    let unknown_role = err("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x, namespace: n}\nroleRef: {kind: Role, name: r}\nsubjects: []\n");
    assert!(matches!(
        unknown_role,
        PolicyError::UnknownReference { what: "Role", .. }
    ));
    let unknown_gr = err("apiVersion: management.cattle.io/v3\nkind: GlobalRoleBinding\nmetadata: {name: x}\nuserName: u\nglobalRoleName: nope\n");
    assert!(matches!(
        unknown_gr,
        PolicyError::UnknownReference {
            what: "GlobalRole",
            ..
        }
    ));

    let two_subjects = err("apiVersion: management.cattle.io/v3\nkind: ClusterRoleTemplateBinding\nmetadata: {name: x, namespace: c}\nuserName: u\ngroupPrincipalName: g\nroleTemplateName: cluster-member\n");
    assert!(
        two_subjects
            .to_string()
            .contains("exactly one subject kind"),
        "{two_subjects}"
    );
    let no_subject = err("apiVersion: management.cattle.io/v3\nkind: GlobalRoleBinding\nmetadata: {name: x}\nglobalRoleName: user\n");
    assert!(no_subject.to_string().contains("found 0"), "{no_subject}");
    let mismatch = err("apiVersion: management.cattle.io/v3\nkind: ClusterRoleTemplateBinding\nmetadata: {name: x, namespace: a}\nclusterName: b\nuserName: u\nroleTemplateName: cluster-member\n");
    assert!(
        mismatch
            .to_string()
            .contains("must equal metadata.namespace"),
        "{mismatch}"
    );
    let bad_sa = err("apiVersion: management.cattle.io/v3\nkind: Project\nmetadata: {name: p, namespace: c}\n---\napiVersion: management.cattle.io/v3\nkind: ProjectRoleTemplateBinding\nmetadata: {name: x, namespace: p}\nprojectName: c:p\nserviceAccount: justname\nroleTemplateName: read-only\n");
    assert!(
        bad_sa.to_string().contains("<namespace>:<name>"),
        "{bad_sa}"
    );
    let dup = err("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: n}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: n}\n");
    assert!(matches!(dup, PolicyError::Duplicate { ref first, .. } if first.document == 1));
    let rb_no_ns = err("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: x}\nroleRef: {kind: ClusterRole, name: view}\n");
    assert!(rb_no_ns.to_string().contains("needs metadata.namespace"));
    let crb_role = err("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: x}\nroleRef: {kind: Role, name: view}\n");
    assert!(crb_role.to_string().contains("must be ClusterRole"));
    let op = err("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: x}\naggregationRule: {clusterRoleSelectors: [{matchExpressions: [{key: a, operator: Like}]}]}\n");
    assert!(op.to_string().contains("\"Like\""));
}

#[test]
fn service_account_prtb() {
    let y = r#"
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-1, namespace: c}
spec: {namespaces: [apps]}
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-sa, namespace: p-1}
projectName: c:p-1
serviceAccount: ci:deployer
roleTemplateName: project-owner
"#;
    let set = set(y);
    let sa = Subject::new(
        "system:serviceaccount:ci:deployer",
        ["system:serviceaccounts"],
    );
    assert!(allowed(
        &set,
        &sa,
        "c",
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/apps/rolebindings"
    ));
    assert!(
        allowed(&set, &sa, "c", "GET", "/api/v1/nodes"),
        "project-owner's nodes rule is promoted"
    );
    assert!(!allowed(
        &set,
        &sa,
        "c",
        "GET",
        "/api/v1/namespaces/kube-system/pods"
    ));
}

#[test]
fn rules_for_lists_applicable_grants() {
    let set = set(RANCHER_FIXTURE);
    let member = user("local://u-member");
    let in_ns = set.rules_for(&member, "prod", "dev-a");
    assert!(in_ns
        .iter()
        .any(|(src, _)| src.contains("prtb-abc (role project-member)")));
    let cluster = set.rules_for(&member, "prod", "");
    assert!(cluster
        .iter()
        .all(|(src, _)| !src.ends_with("(role project-member)")));
    assert!(cluster.iter().any(|(src, _)| src.contains("promotes")));
}

const IMPERSONATORS: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: impersonate-bob}
rules:
- {verbs: [impersonate], apiGroups: [""], resources: [users], resourceNames: [bob]}
- {verbs: [impersonate], apiGroups: [""], resources: [groups], resourceNames: [devs, system:authenticated]}
- {verbs: [impersonate], apiGroups: [authentication.k8s.io], resources: [userextras/scopes], resourceNames: [read]}
- {verbs: [impersonate], apiGroups: [authentication.k8s.io], resources: [uids], resourceNames: ["1234"]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: imp}
roleRef: {kind: ClusterRole, name: impersonate-bob}
subjects: [{kind: User, name: alice}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: sa-imp, namespace: ci}
roleRef: {kind: ClusterRole, name: edit}
subjects: [{kind: User, name: alice}]
"#;

fn imp(
    user: Option<&str>,
    groups: &[&str],
    extra: &[(&str, &[&str])],
    uid: Option<&str>,
) -> ImpersonationRequest {
    ImpersonationRequest {
        user: user.map(str::to_owned),
        uid: uid.map(str::to_owned),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        extra: extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
            .collect(),
    }
}

#[test]
fn impersonation_decisions() {
    let set = set(IMPERSONATORS);
    let alice = user("alice");
    let ok = |r: &ImpersonationRequest| set.can_impersonate(&alice, "c", r).unwrap();
    assert!(ok(&imp(Some("bob"), &[], &[], None)).allowed);
    assert!(
        ok(&imp(
            Some("bob"),
            &["devs"],
            &[("scopes", &["read"])],
            Some("1234")
        ))
        .allowed
    );
    assert!(!ok(&imp(Some("carol"), &[], &[], None)).allowed);
    let d = ok(&imp(Some("bob"), &["devs", "admins"], &[], None));
    assert!(!d.allowed);
    assert!(
        d.reason.contains("impersonate groups \"admins\""),
        "{}",
        d.reason
    );
    assert!(
        !ok(&imp(
            Some("bob"),
            &[],
            &[("scopes", &["read", "write"])],
            None
        ))
        .allowed
    );
    assert!(!ok(&imp(Some("bob"), &[], &[("other", &["read"])], None)).allowed);
    assert!(!ok(&imp(Some("bob"), &[], &[], Some("999"))).allowed);
    // service accounts are checked as `serviceaccounts` in their namespace; edit grants
    // impersonate serviceaccounts in ci only
    assert!(
        ok(&imp(
            Some("system:serviceaccount:ci:builder"),
            &[],
            &[],
            None
        ))
        .allowed
    );
    assert!(
        !ok(&imp(
            Some("system:serviceaccount:prod:builder"),
            &[],
            &[],
            None
        ))
        .allowed
    );
    // an upper-case namespace makes it a plain user, checked as `users`
    let d = ok(&imp(
        Some("system:serviceaccount:CI:builder"),
        &[],
        &[],
        None,
    ));
    assert!(!d.allowed);
    assert!(
        d.reason
            .contains("impersonate users \"system:serviceaccount:CI:builder\""),
        "{}",
        d.reason
    );
    // nothing requested, or an empty user alone: not impersonating
    assert!(ok(&imp(None, &[], &[], None)).allowed);
    assert!(ok(&imp(Some(""), &[], &[], None)).allowed);
    // 400s
    let e = |r: ImpersonationRequest| set.can_impersonate(&alice, "c", &r).unwrap_err();
    assert_eq!(
        e(imp(None, &["g"], &[], None)),
        ImpersonationError::GroupsWithoutUser
    );
    assert_eq!(
        e(imp(Some(""), &[], &[("k", &["v"])], None)),
        ImpersonationError::ExtraWithoutUser
    );
    assert_eq!(
        e(imp(None, &[], &[], Some("u"))),
        ImpersonationError::UidWithoutUser
    );
    // bob himself may not impersonate anyone
    assert!(
        !set.can_impersonate(&user("bob"), "c", &imp(Some("bob"), &[], &[], None))
            .unwrap()
            .allowed
    );
}
