//! The synthetic RBAC policy the policy benchmarks decide with: 10,000
//! bindings (4,000 ProjectRoleTemplateBindings, 2,000
//! ClusterRoleTemplateBindings, 2,500 RoleBindings, 1,000
//! ClusterRoleBindings, 500 GlobalRoleBindings), 1,000 ClusterRoles (plus 70
//! RoleTemplates and the built-ins), 100 projects of 5 namespaces over 10
//! clusters (`c0`..`c9`), and 5,000 users (`local://u-<n>`) in 200 groups
//! (`github_team://<n>`).

use std::fmt::Write as _;

/// Users, `local://u-0` to `local://u-4999`.
pub const USERS: usize = 5_000;
/// Groups, `github_team://0` to `github_team://199`.
pub const GROUPS: usize = 200;
const CLUSTERS: usize = 10;
/// Projects, `p-0` to `p-99`, spread over the clusters.
pub const PROJECTS: usize = 100;
/// Namespaces per project ([`namespace`]).
pub const NAMESPACES_PER_PROJECT: usize = 5;
const ROLES: usize = 1_000;

const RESOURCES: [&str; 12] = [
    "pods",
    "pods/log",
    "services",
    "configmaps",
    "secrets",
    "deployments",
    "replicasets",
    "jobs",
    "cronjobs",
    "ingresses",
    "widgets",
    "gadgets",
];
const GROUP_NAMES: [&str; 5] = ["", "apps", "batch", "networking.k8s.io", "example.io"];
const VERB_SETS: [&str; 4] = [
    "[get, list, watch]",
    "[\"*\"]",
    "[create, update, patch]",
    "[get]",
];

/// The `i`th namespace of `project`.
pub fn namespace(project: usize, i: usize) -> String {
    format!("ns-p{project}-{i}")
}

/// The cluster `project` belongs to.
pub fn cluster_of(project: usize) -> String {
    format!("c{}", project % CLUSTERS)
}

/// The synthetic policy as YAML documents.
pub fn yaml() -> String {
    let mut y = String::with_capacity(8 << 20);
    for r in 0..ROLES {
        let _ = write!(y, "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: role-{r}}}\nrules:\n");
        let _ = writeln!(
            y,
            "- {{verbs: [get], apiGroups: [example.io], resources: [thing-{r}]}}"
        );
        for k in 0..8 {
            let n = r * 8 + k;
            let _ = writeln!(
                y,
                "- {{verbs: {}, apiGroups: [\"{}\"], resources: [{}, {}]}}",
                VERB_SETS[n % VERB_SETS.len()],
                GROUP_NAMES[n % GROUP_NAMES.len()],
                RESOURCES[n % RESOURCES.len()],
                RESOURCES[(n / 3) % RESOURCES.len()],
            );
        }
    }
    for t in 0..50 {
        let inherit = ["view", "edit", "admin"][t % 3];
        let _ = write!(
            y,
            "---\napiVersion: management.cattle.io/v3\nkind: RoleTemplate\nmetadata: {{name: prt-{t}}}\ncontext: project\nroleTemplateNames: [{inherit}]\nrules:\n- {{verbs: [get, list], apiGroups: [example.io], resources: [{}]}}\n",
            RESOURCES[t % RESOURCES.len()]
        );
    }
    for t in 0..20 {
        let _ = write!(
            y,
            "---\napiVersion: management.cattle.io/v3\nkind: RoleTemplate\nmetadata: {{name: crt-{t}}}\ncontext: cluster\nroleTemplateNames: [cluster-member]\nrules:\n- {{verbs: [get, list], apiGroups: [\"\"], resources: [nodes, persistentvolumes]}}\n"
        );
    }
    for p in 0..PROJECTS {
        let namespaces: Vec<String> = (0..NAMESPACES_PER_PROJECT)
            .map(|i| namespace(p, i))
            .collect();
        let _ = write!(
            y,
            "---\napiVersion: management.cattle.io/v3\nkind: Project\nmetadata: {{name: p-{p}, namespace: {c}}}\nspec: {{clusterName: {c}, namespaces: [{}]}}\n",
            namespaces.join(", "),
            c = cluster_of(p)
        );
    }
    let mut b = 0;
    for i in 0..4_000 {
        let project = (i * 7) % PROJECTS;
        let rt = match i % 4 {
            0 => "project-member".to_owned(),
            1 => "read-only".to_owned(),
            2 => "project-owner".to_owned(),
            _ => format!("prt-{}", i % 50),
        };
        let _ = write!(
            y,
            "---\napiVersion: management.cattle.io/v3\nkind: ProjectRoleTemplateBinding\nmetadata: {{name: prtb-{b}, namespace: p-{project}}}\nprojectName: \"{}:p-{project}\"\nuserPrincipalName: local://u-{}\nroleTemplateName: {rt}\n",
            cluster_of(project),
            i % USERS
        );
        b += 1;
    }
    for i in 0..2_000 {
        let cluster = format!("c{}", i % CLUSTERS);
        let subject = if i % 5 == 0 {
            format!("groupPrincipalName: github_team://{}", i % GROUPS)
        } else {
            format!("userPrincipalName: local://u-{}", (i * 13) % USERS)
        };
        let rt = if i % 2 == 0 {
            "cluster-member".to_owned()
        } else {
            format!("crt-{}", i % 20)
        };
        let _ = write!(
            y,
            "---\napiVersion: management.cattle.io/v3\nkind: ClusterRoleTemplateBinding\nmetadata: {{name: crtb-{b}, namespace: {cluster}}}\nclusterName: {cluster}\n{subject}\nroleTemplateName: {rt}\n"
        );
        b += 1;
    }
    for i in 0..2_500 {
        let project = (i * 11) % PROJECTS;
        let _ = write!(
            y,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: rb-{b}, namespace: {}, annotations: {{paddock.io/cluster: {}}}}}\nroleRef: {{kind: ClusterRole, name: role-{}}}\nsubjects: [{{kind: User, name: \"local://u-{}\"}}]\n",
            namespace(project, i % NAMESPACES_PER_PROJECT),
            cluster_of(project),
            i % ROLES,
            (i * 17) % USERS
        );
        b += 1;
    }
    for i in 0..1_000 {
        let _ = write!(
            y,
            "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: crb-{b}, annotations: {{paddock.io/cluster: c{}}}}}\nroleRef: {{kind: ClusterRole, name: role-{}}}\nsubjects: [{{kind: Group, name: \"github_team://{}\"}}]\n",
            i % CLUSTERS,
            (i * 3) % ROLES,
            i % GROUPS
        );
        b += 1;
    }
    for i in 0..500 {
        let _ = write!(
            y,
            "---\napiVersion: management.cattle.io/v3\nkind: GlobalRoleBinding\nmetadata: {{name: grb-{b}}}\nuserPrincipalName: local://u-{}\nglobalRoleName: {}\n",
            (i * 10) % USERS,
            if i == 0 { "admin" } else { "user" }
        );
        b += 1;
    }
    assert_eq!(b, 10_000);
    y
}
