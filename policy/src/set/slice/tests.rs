//! A slice decides its cluster's requests exactly as the whole set, and
//! holds nothing of other clusters.

use super::*;
use crate::{ImpersonationRequest, RequestAttributes, Subject};

const FIXTURE: &str = r#"
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-dev, namespace: prod}
spec: {clusterName: prod, namespaces: [dev-a, dev-b]}
---
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-other, namespace: test}
spec: {clusterName: test, namespaces: [dev-a]}
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-member, namespace: p-dev}
projectName: prod:p-dev
userName: u-member
roleTemplateName: project-member
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-test, namespace: p-other}
projectName: test:p-other
userName: u-tester
roleTemplateName: project-owner
---
apiVersion: management.cattle.io/v3
kind: ClusterRoleTemplateBinding
metadata: {name: crtb-ro, namespace: prod}
clusterName: prod
groupPrincipalName: github_team://12
roleTemplateName: cluster-member
---
apiVersion: management.cattle.io/v3
kind: ClusterRoleTemplateBinding
metadata: {name: crtb-test, namespace: test}
clusterName: test
userName: u-tester
roleTemplateName: cluster-owner
---
apiVersion: management.cattle.io/v3
kind: GlobalRoleBinding
metadata: {name: grb-admin}
userName: u-admin
globalRoleName: admin
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
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ops-edit, namespace: ops}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: u-ops}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: test-only-view
  annotations: {paddock.io/cluster: test}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, apiGroup: rbac.authorization.k8s.io, name: u-viewer}
"#;

fn set() -> PolicySet {
    PolicySet::from_documents([("test.yaml", FIXTURE)]).unwrap_or_else(|e| panic!("{e}"))
}

fn subjects() -> Vec<Subject> {
    let authenticated = "system:authenticated";
    [
        ("u-member", vec![authenticated]),
        ("u-tester", vec![authenticated]),
        ("u-admin", vec![authenticated]),
        ("u-ops", vec![authenticated]),
        ("u-viewer", vec![authenticated]),
        ("u-nobody", vec![authenticated, "github_team://12"]),
        ("u-org", vec![authenticated, "github_org://7"]),
        ("u-none", vec![]),
    ]
    .into_iter()
    .map(|(user, groups)| Subject::new(user, groups))
    .collect()
}

const REQUESTS: [(&str, &str); 12] = [
    ("GET", "/api/v1/namespaces/dev-a/pods"),
    ("POST", "/api/v1/namespaces/dev-a/pods"),
    ("DELETE", "/api/v1/namespaces/dev-b/pods/web"),
    ("GET", "/api/v1/namespaces/ops/configmaps"),
    ("PUT", "/api/v1/namespaces/ops/configmaps/x"),
    ("GET", "/api/v1/nodes"),
    ("GET", "/api/v1/pods"),
    ("DELETE", "/api/v1/namespaces/kube-system/secrets/s"),
    ("GET", "/apis/management.cattle.io/v3/clusters/prod"),
    ("GET", "/healthz"),
    ("GET", "/api"),
    (
        "POST",
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    ),
];

fn attrs(method: &str, path: &str) -> RequestAttributes {
    RequestAttributes::from_request(method, path, None).unwrap()
}

#[test]
fn a_slice_decides_its_cluster_as_the_whole_set() {
    let whole = set();
    for cluster in ["prod", "test", "local", "unknown"] {
        let slice = whole.for_cluster(cluster);
        // Through JSON, as the feed carries it.
        let json = serde_json::to_string(&slice).unwrap();
        let back: ClusterPolicy = serde_json::from_str(&json).unwrap();
        assert_eq!(back, slice);
        let part = PolicySet::from_cluster_policy(&back).unwrap();
        for subject in subjects() {
            for (method, path) in REQUESTS {
                let a = attrs(method, path);
                let expected = whole.decide(&subject, cluster, &a);
                let got = part.decide(&subject, cluster, &a);
                assert_eq!(got, expected, "{cluster} {subject:?} {method} {path}");
            }
            let imp = ImpersonationRequest {
                user: Some("u-other".into()),
                ..ImpersonationRequest::default()
            };
            assert_eq!(
                part.can_impersonate(&subject, cluster, &imp).unwrap(),
                whole.can_impersonate(&subject, cluster, &imp).unwrap(),
                "{cluster} {subject:?} impersonation"
            );
        }
    }
}

#[test]
fn a_slice_holds_nothing_of_other_clusters_and_is_deterministic() {
    let whole = set();
    let prod = whole.for_cluster("prod");
    let json = serde_json::to_string(&prod).unwrap();
    // u-tester's grants are all in cluster test; u-viewer's binding is
    // annotated for test.
    for absent in ["u-tester", "u-viewer", "crtb-test", "prtb-test", "p-other"] {
        assert!(!json.contains(absent), "{absent} in {json}");
    }
    for present in [
        "u-member",
        "u-admin",
        "u-ops",
        "github_team://12",
        "github_org://7",
    ] {
        assert!(json.contains(present), "{present} missing from {json}");
    }
    // Another compile of the same objects gives the same slice, byte for byte.
    assert_eq!(
        serde_json::to_string(&set().for_cluster("prod")).unwrap(),
        json
    );
    // Another cluster's requests are denied by the slice.
    let part = PolicySet::from_cluster_policy(&prod).unwrap();
    let admin = Subject::new("u-admin", ["system:authenticated"]);
    assert!(
        part.decide(&admin, "prod", &attrs("DELETE", "/api/v1/nodes/n"))
            .allowed
    );
    assert!(
        !part
            .decide(&admin, "test", &attrs("GET", "/api/v1/nodes"))
            .allowed
    );
}

#[test]
fn a_slice_with_dangling_indices_is_refused() {
    let mut prod = set().for_cluster("prod");
    prod.roles.clear();
    let error = PolicySet::from_cluster_policy(&prod).unwrap_err();
    assert!(error.to_string().contains("refers past 0 roles"), "{error}");
    let unknown_field = serde_json::from_str::<ClusterPolicy>(
        r#"{"cluster":"prod","roles":[],"sources":[],"secret":"x"}"#,
    );
    assert!(unknown_field.is_err());
}
