//! Policy micro-benchmarks: one decision, and compiling a large policy set.
//!
//! The synthetic set has 10,000 bindings (4,000 ProjectRoleTemplateBindings, 2,000
//! ClusterRoleTemplateBindings, 2,500 RoleBindings, 1,000 ClusterRoleBindings, 500
//! GlobalRoleBindings), 1,000 ClusterRoles (plus 70 RoleTemplates and the built-ins),
//! 100 projects of 5 namespaces over 10 clusters, and 5,000 users in 200 groups.
//!
//! Run: `cargo bench -p paddock-benches --bench policy`
//! (median per decision: `target/criterion/policy_decide/*/new/estimates.json`).

#![allow(missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use policy::{PolicySet, RequestAttributes, Subject};

const USERS: usize = 5_000;
const GROUPS: usize = 200;
const CLUSTERS: usize = 10;
const PROJECTS: usize = 100;
const NAMESPACES_PER_PROJECT: usize = 5;
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

fn namespace(project: usize, i: usize) -> String {
    format!("ns-p{project}-{i}")
}

fn cluster_of(project: usize) -> String {
    format!("c{}", project % CLUSTERS)
}

/// The synthetic policy as YAML documents.
fn synthetic_yaml() -> String {
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

fn subject(i: usize) -> Subject {
    Subject::new(
        format!("local://u-{}", i % USERS),
        [
            "system:authenticated".to_owned(),
            format!("github_team://{}", i % GROUPS),
            format!("github_team://{}", (i * 7 + 3) % GROUPS),
        ],
    )
}

/// A fixed mix of requests: namespaced reads and writes in project namespaces,
/// cluster-scoped reads, discovery, and requests nobody may make.
fn workload() -> Vec<(Subject, String, RequestAttributes)> {
    let mut out = Vec::new();
    for i in 0..1_024 {
        let project = (i * 7) % PROJECTS;
        let ns = namespace(project, i % NAMESPACES_PER_PROJECT);
        let (method, path) = match i % 8 {
            0 => ("GET", format!("/api/v1/namespaces/{ns}/pods")),
            1 => ("GET", format!("/api/v1/namespaces/{ns}/pods/web-{i}/log")),
            2 => ("POST", format!("/apis/apps/v1/namespaces/{ns}/deployments")),
            3 => ("GET", "/api/v1/nodes".to_owned()),
            4 => ("GET", "/apis/apps/v1".to_owned()),
            5 => ("DELETE", format!("/api/v1/namespaces/{ns}/secrets/s")),
            6 => (
                "GET",
                format!("/apis/example.io/v1/namespaces/{ns}/widgets?watch=1"),
            ),
            _ => ("GET", "/api/v1/namespaces/kube-system/secrets".to_owned()),
        };
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (path, None),
        };
        let attrs =
            RequestAttributes::from_request(method, &p, q.as_deref()).expect("valid request");
        out.push((subject(i), cluster_of(project), attrs));
    }
    out
}

fn bench_policy(c: &mut Criterion) {
    let yaml = synthetic_yaml();
    let set = PolicySet::from_documents([("synthetic.yaml", yaml.as_str())]).expect("compiles");
    let work = workload();
    let allowed = work
        .iter()
        .filter(|(s, c, a)| set.decide(s, c, a).allowed)
        .count();
    eprintln!(
        "policy set: {:?}; workload: {} requests, {allowed} allowed",
        set.stats(),
        work.len()
    );

    let mut group = c.benchmark_group("policy_decide");
    let mut i = 0;
    group.bench_function("mixed", |b| {
        b.iter(|| {
            let (s, cluster, attrs) = &work[i % work.len()];
            i += 1;
            black_box(set.decide(black_box(s), cluster, black_box(attrs)))
        });
    });
    let denied: Vec<_> = work
        .iter()
        .filter(|(s, c, a)| !set.decide(s, c, a).allowed)
        .collect();
    let mut i = 0;
    group.bench_function("denied", |b| {
        b.iter(|| {
            let (s, cluster, attrs) = denied[i % denied.len()];
            i += 1;
            black_box(set.decide(black_box(s), cluster, black_box(attrs)))
        });
    });
    group.bench_function("from_request", |b| {
        b.iter(|| {
            RequestAttributes::from_request(
                black_box("GET"),
                black_box("/k8s/clusters/c1/api/v1/namespaces/ns-p1-0/pods"),
                black_box(Some("watch=1&fieldSelector=metadata.name%3Dweb")),
            )
        });
    });
    group.finish();

    let mut group = c.benchmark_group("policy_compile");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("yaml_10k_bindings", |b| {
        b.iter(|| {
            PolicySet::from_documents([("synthetic.yaml", black_box(yaml.as_str()))])
                .expect("compiles")
        });
    });
    let mut parsed = PolicySet::builder();
    parsed.add_yaml("synthetic.yaml", &yaml).expect("parses");
    group.bench_function("build_only", |b| {
        b.iter(|| parsed.build().expect("compiles"));
    });
    group.finish();
}

criterion_group!(benches, bench_policy);
criterion_main!(benches);
