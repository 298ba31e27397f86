//! Policy micro-benchmarks: one decision, and compiling a large policy set.
//!
//! The policy is [`paddock_benches::synthetic_policy`] (10,000 bindings).
//!
//! Run: `cargo bench -p paddock-benches --bench policy`
//! (median per decision: `target/criterion/policy_decide/*/new/estimates.json`).

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_benches::synthetic_policy::{
    self, cluster_of, namespace, GROUPS, NAMESPACES_PER_PROJECT, PROJECTS, USERS,
};
use policy::{PolicySet, RequestAttributes, Subject};

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
    let yaml = synthetic_policy::yaml();
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
