//! The metrics plugin's per-request cost: `on_log` for a finished request
//! whose label set already exists (the steady state) — read locks and
//! atomic increments, no allocation.
//!
//! Run: `cargo bench -p paddock-benches --bench metrics`

use std::{sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use http::StatusCode;
use policy::RequestAttributes;
use proxy_core::{
    authn::Identity,
    bench::decided_context,
    plugin::{AccessRecord, Plugin},
    plugins::metrics::Metrics,
};

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let identity = Arc::new(Identity {
        provider: "token-file".into(),
        ..Identity::default()
    });
    let context = Arc::new(decided_context(
        RequestAttributes::resource_request("list", "apps", "deployments").with_namespace("dev"),
        identity,
        true,
    ));
    let record = AccessRecord {
        context: &context,
        status: StatusCode::OK,
        bytes: 2048,
        bytes_received: 0,
        complete: true,
        duration: Duration::from_micros(1800),
    };
    c.bench_function("metrics_on_log", |b| b.iter(|| metrics.on_log(&record)));
}

criterion_group!(benches, bench);
criterion_main!(benches);
