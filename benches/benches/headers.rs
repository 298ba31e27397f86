//! Per-request header work: stripping caller-sent identity and hop-by-hop
//! headers, then building impersonation headers: encoded afresh, and from
//! the per-thread cache a request hits when its identity is an `Arc` the
//! authenticator handed out before (a cached token, a connection's client
//! certificate).
//!
//! Run: `cargo bench -p paddock-benches --bench headers`

use std::collections::BTreeMap;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::{HeaderMap, HeaderName, HeaderValue};
// Internal plumbing, re-exported (hidden) for benchmarks only.
use proxy_core::{
    authn::Identity,
    bench::{insert_cached_headers, insert_headers, strip},
};

/// What kubectl typically sends, plus a few headers a hostile caller adds.
fn incoming_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        ),
        (
            "user-agent",
            "kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd",
        ),
        ("kubectl-command", "kubectl get"),
        ("kubectl-session", "8b7b8a8e-7c4f-4b8c-9b7a-6f1f0b5e6d8c"),
        ("accept-encoding", "gzip"),
        ("impersonate-user", "caller-poison"),
        ("impersonate_group", "caller-poison"),
        ("x-remote-user", "caller-poison"),
        ("connection", "keep-alive"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn identity(groups: usize) -> Identity {
    Identity {
        user: "u-7x9k2".into(),
        username: "alice".into(),
        uid: Some("7x9k2".into()),
        groups: (0..groups).map(|i| format!("github_team://{i}")).collect(),
        extra: BTreeMap::from([(
            "principalid".to_owned(),
            vec!["github_user://583231".to_owned()],
        )]),
        provider: "github".into(),
        ..Identity::default()
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("request_headers");
    for groups in [3, 50] {
        let identity = identity(groups);
        group.bench_function(format!("sanitize+impersonate/{groups}_groups"), |b| {
            b.iter_batched_ref(
                incoming_headers,
                |headers| {
                    strip(headers);
                    insert_headers(headers, &identity).unwrap();
                },
                BatchSize::SmallInput,
            );
        });
    }
    let identity = std::sync::Arc::new(identity(3));
    group.bench_function("sanitize+impersonate/3_groups_cached", |b| {
        b.iter_batched_ref(
            incoming_headers,
            |headers| {
                strip(headers);
                insert_cached_headers(headers, &identity).unwrap();
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("sanitize_only", |b| {
        b.iter_batched_ref(incoming_headers, strip, BatchSize::SmallInput);
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
