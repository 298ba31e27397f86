//! The alert plugin's per-request cost: `on_log` for a request made with a
//! Paddock token from an address already seen (a read lock and a lookup),
//! and for one without a token (nothing to do), every rule on.
//!
//! Run: `cargo bench -p paddock-benches --bench alerts`

use std::{sync::Arc, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use http::StatusCode;
use policy::RequestAttributes;
use proxy_core::{
    authn::Identity,
    bench::decided_context_from,
    plugin::{AccessRecord, Plugin},
    plugins::alerts::{AlertRules, Alerts, AlertsOptions, Burst},
};

fn bench(c: &mut Criterion) {
    let rules = AlertRules {
        failed_logins: Some(Burst {
            threshold: 10,
            window: Duration::from_secs(60),
        }),
        token_new_address: true,
        provider_degraded: true,
        refresh_failing: Some(Duration::from_secs(900)),
        cluster_unreachable: true,
        rbac_sync_failing: Some(Duration::from_secs(600)),
    };
    let alerts = Alerts::new(rules, Vec::new(), AlertsOptions::default()).unwrap();
    let attributes = || RequestAttributes::resource_request("list", "", "pods");
    let from = Some("192.0.2.7:40000".parse().unwrap());
    for (name, token) in [("with_token", Some("t-abc")), ("without_token", None)] {
        let identity = Arc::new(Identity {
            provider: "local".into(),
            token_id: token.map(str::to_owned),
            ..Identity::default()
        });
        let context = std::sync::Arc::new(decided_context_from(attributes(), identity, true, from));
        let record = AccessRecord {
            context: &context,
            status: StatusCode::OK,
            bytes: 2048,
            bytes_received: 0,
            complete: true,
            duration: Duration::from_micros(1800),
        };
        // The first use teaches the address; the rest is the steady state.
        alerts.on_log(&record);
        c.bench_function(&format!("alerts_on_log_{name}"), |b| {
            b.iter(|| alerts.on_log(&record));
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
