//! Property tests for the matcher and the policy set: the indexed evaluation agrees
//! with a plain scan of `RuleAllows`, the order of rules and bindings never changes a
//! decision, adding a binding never removes access, and request-attribute
//! resolution never panics.

use policy::{PolicyRule, PolicySet, RequestAttributes, Subject};
use proptest::prelude::*;

const VERBS: &[&str] = &["get", "list", "watch", "create", "delete", "*", ""];
const GROUPS: &[&str] = &["", "apps", "*", "example.io"];
const RESOURCES: &[&str] = &[
    "pods",
    "pods/log",
    "pods/*",
    "*/log",
    "*/scale",
    "*",
    "deployments",
    "deployments/scale",
    "",
];
const NAMES: &[&str] = &["a", "b", "*", ""];
const URLS: &[&str] = &["/healthz", "/healthz/*", "/api*", "*", "/api", "/apis/*"];
const NAMESPACES: &[&str] = &["", "ns1", "ns2"];
const SUBJECTS: &[&str] = &["alice", "bob", "devs", "ops"];
const CLUSTERS: &[&str] = &["c1", "c2"];

fn pick(from: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(prop::sample::select(from), 0..=max)
        .prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn rule() -> impl Strategy<Value = PolicyRule> {
    (
        pick(VERBS, 3),
        pick(GROUPS, 2),
        pick(RESOURCES, 3),
        pick(NAMES, 2),
        pick(URLS, 2),
    )
        .prop_map(
            |(verbs, api_groups, resources, resource_names, non_resource_urls)| PolicyRule {
                verbs,
                api_groups,
                resources,
                resource_names,
                non_resource_urls,
            },
        )
}

fn request() -> impl Strategy<Value = RequestAttributes> {
    let s = |from: &'static [&'static str]| prop::sample::select(from);
    prop_oneof![
        (
            s(VERBS),
            s(&["", "apps", "example.io"]),
            s(&["pods", "deployments", "nodes"]),
            s(&["", "log", "scale", "*", "status"]),
            s(&["", "a", "b", "*"]),
            s(NAMESPACES),
        )
            .prop_map(|(verb, group, resource, sub, name, ns)| {
                RequestAttributes::resource_request(verb, group, resource)
                    .with_subresource(sub)
                    .with_name(name)
                    .with_namespace(ns)
            }),
        (
            s(VERBS),
            s(&[
                "/healthz",
                "/healthz/etcd",
                "/api",
                "/apis",
                "/apis/apps",
                "/metrics"
            ])
        )
            .prop_map(|(verb, path)| RequestAttributes::non_resource_request(verb, path)),
    ]
}

/// A binding: (cluster-wide?, subject is a group?, subject, namespace, cluster
/// annotation, rule indices).
#[derive(Debug, Clone)]
struct BindingSpec {
    cluster_wide: bool,
    group: bool,
    subject: &'static str,
    namespace: &'static str,
    cluster: Option<&'static str>,
    role: usize,
}

fn binding(roles: usize) -> impl Strategy<Value = BindingSpec> {
    (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(SUBJECTS),
        prop::sample::select(&["ns1", "ns2"][..]),
        prop::option::of(prop::sample::select(CLUSTERS)),
        0..roles,
    )
        .prop_map(
            |(cluster_wide, group, subject, namespace, cluster, role)| BindingSpec {
                cluster_wide,
                group,
                subject,
                namespace,
                cluster,
                role,
            },
        )
}

fn role_yaml(i: usize, rules: &[PolicyRule]) -> String {
    let rules = serde_json::to_string(rules).unwrap();
    format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: r{i}}}\nrules: {rules}\n")
}

fn binding_yaml(i: usize, b: &BindingSpec) -> String {
    let kind = if b.cluster_wide {
        "ClusterRoleBinding"
    } else {
        "RoleBinding"
    };
    let ns = if b.cluster_wide {
        String::new()
    } else {
        format!(", namespace: {}", b.namespace)
    };
    let annotations = b
        .cluster
        .map(|c| format!(", annotations: {{paddock.io/cluster: {c}}}"))
        .unwrap_or_default();
    let subject_kind = if b.group { "Group" } else { "User" };
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\nmetadata: {{name: b{i}{ns}{annotations}}}\n\
         roleRef: {{kind: ClusterRole, name: r{}}}\nsubjects: [{{kind: {subject_kind}, name: {}}}]\n",
        b.role, b.subject
    )
}

fn build(roles: &[Vec<PolicyRule>], bindings: &[(usize, BindingSpec)]) -> PolicySet {
    let mut docs: Vec<String> = roles
        .iter()
        .enumerate()
        .map(|(i, r)| role_yaml(i, r))
        .collect();
    docs.extend(bindings.iter().map(|(i, b)| binding_yaml(*i, b)));
    let text = docs.join("---\n");
    PolicySet::from_documents([("prop.yaml", text.as_str())]).unwrap()
}

fn subjects() -> Vec<Subject> {
    vec![
        Subject::new("alice", ["devs"]),
        Subject::new("bob", Vec::<String>::new()),
        Subject::new("carol", ["ops", "devs"]),
        Subject::new("nobody", ["nogroup"]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The role index finds exactly what a scan of `RuleAllows` finds, whatever the
    /// rule order.
    #[test]
    fn index_matches_scan_and_rule_order_is_irrelevant(
        rules in prop::collection::vec(rule(), 0..8),
        requests in prop::collection::vec(request(), 1..16),
    ) {
        let mut reversed = rules.clone();
        reversed.reverse();
        let spec = BindingSpec { cluster_wide: true, group: false, subject: "alice", namespace: "ns1", cluster: None, role: 0 };
        let forward = build(std::slice::from_ref(&rules), &[(0, spec.clone())]);
        let backward = build(&[reversed], &[(0, spec)]);
        let alice = Subject::new("alice", Vec::<String>::new());
        for req in &requests {
            let scan = rules.iter().any(|r| r.allows(req));
            prop_assert_eq!(forward.decide(&alice, "c1", req).allowed, scan, "{:?}", req);
            prop_assert_eq!(backward.decide(&alice, "c1", req).allowed, scan);
        }
    }

    /// Permuting bindings changes neither decisions nor reasons.
    #[test]
    fn binding_order_is_irrelevant(
        roles in prop::collection::vec(prop::collection::vec(rule(), 0..4), 1..4),
        specs in prop::collection::vec(binding(3), 0..10),
        requests in prop::collection::vec(request(), 1..12),
        seed in any::<u64>(),
    ) {
        let specs: Vec<_> = specs.into_iter().map(|mut b| { b.role %= roles.len(); b }).enumerate().collect();
        let mut shuffled = specs.clone();
        // a deterministic shuffle from the seed
        let mut state = seed | 1;
        for i in (1..shuffled.len()).rev() {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            shuffled.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let a = build(&roles, &specs);
        let b = build(&roles, &shuffled);
        for req in &requests {
            for who in subjects() {
                for cluster in CLUSTERS {
                    prop_assert_eq!(a.decide(&who, cluster, req), b.decide(&who, cluster, req));
                }
            }
        }
    }

    /// Adding a binding never removes access.
    #[test]
    fn adding_a_binding_is_monotonic(
        roles in prop::collection::vec(prop::collection::vec(rule(), 0..4), 1..4),
        specs in prop::collection::vec(binding(3), 0..8),
        extra in binding(3),
        requests in prop::collection::vec(request(), 1..12),
    ) {
        let mut specs: Vec<_> = specs.into_iter().map(|mut b| { b.role %= roles.len(); b }).enumerate().collect();
        let before = build(&roles, &specs);
        let mut extra = extra;
        extra.role %= roles.len();
        specs.push((specs.len(), extra));
        let after = build(&roles, &specs);
        for req in &requests {
            for who in subjects() {
                for cluster in CLUSTERS {
                    if before.decide(&who, cluster, req).allowed {
                        prop_assert!(after.decide(&who, cluster, req).allowed);
                    }
                }
            }
        }
    }

    /// Arbitrary bytes never make request-attribute resolution panic, and whatever it
    /// resolves is consistent.
    #[test]
    fn from_request_never_panics(
        method in prop_oneof![Just("GET".to_owned()), Just("DELETE".to_owned()), ".{0,8}"],
        path in prop::collection::vec(any::<u8>(), 0..64),
        segments in prop::collection::vec(prop::sample::select(&["api", "apis", "v1", "namespaces", "ns", "pods", "watch", "proxy", "status", "", "%2F", "%zz", "log", "exec"][..]), 0..8),
        query in proptest::option::of(".{0,40}"),
    ) {
        let raw = String::from_utf8_lossy(&path).into_owned();
        for p in [raw, format!("/{}", segments.join("/"))] {
            if let Ok(a) = RequestAttributes::from_request(&method, &p, query.as_deref()) {
                if !a.is_resource_request {
                    prop_assert!(a.resource.is_empty() && a.namespace.is_empty() && a.name.is_empty());
                }
                if a.verb == "deletecollection" {
                    prop_assert!(a.name.is_empty());
                }
                let _ = a.is_long_running();
                let _ = a.authorization_checks(true);
            }
        }
    }
}
