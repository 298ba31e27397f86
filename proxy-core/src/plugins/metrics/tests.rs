use std::{sync::Arc, time::Duration};

use futures_util::FutureExt;
use http::{Method, StatusCode};
use policy::{Decision, RequestAttributes};

use super::{labels::Bounded, Metrics};
use crate::{
    authn::{AuthnAttempt, AuthnOutcome, Identity},
    context::RequestContext,
    plugin::{AccessRecord, Plugin},
};

fn context(attributes: Option<RequestAttributes>, allowed: Option<bool>) -> Arc<RequestContext> {
    let context = RequestContext::new("1".into(), Method::GET, "/api/v1/pods".into(), None);
    if let Some(attributes) = attributes {
        context.set_attributes(attributes);
    }
    if let Some(allowed) = allowed {
        context.set_decision(Decision {
            allowed,
            reason: "".into(),
        });
    }
    Arc::new(context)
}

fn log(metrics: &Metrics, context: &Arc<RequestContext>, status: StatusCode) {
    metrics.on_log(&AccessRecord {
        context,
        status,
        bytes: 10,
        bytes_received: 0,
        complete: true,
        duration: Duration::from_millis(3),
    });
}

/// The cluster's response headers, `status`, on their way to the client.
fn answered(metrics: &Metrics, context: &RequestContext, status: StatusCode) {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = status;
    metrics
        .on_response(context, &mut parts)
        .now_or_never()
        .expect("ready");
}

/// The line of `metric` whose labels are exactly `labels`, its value.
fn value(text: &str, metric: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{metric}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn counts_requests_decisions_and_latency_with_bounded_labels() {
    let metrics = Metrics::new();
    let pods = || RequestAttributes::resource_request("get", "", "pods");
    for _ in 0..3 {
        log(&metrics, &context(Some(pods()), Some(true)), StatusCode::OK);
    }
    // A resource nobody was allowed to see yet: `other`, not a new series.
    let made_up = RequestAttributes::resource_request("get", "evil.example", "x-123");
    log(
        &metrics,
        &context(Some(made_up.clone()), Some(false)),
        StatusCode::FORBIDDEN,
    );
    // Allowed but not found: still not learnt.
    log(
        &metrics,
        &context(Some(made_up), Some(true)),
        StatusCode::NOT_FOUND,
    );
    // An unknown method on a path that resolved to nothing.
    let odd = Arc::new(RequestContext::new(
        "2".into(),
        Method::from_bytes(b"BREW").unwrap(),
        "/x".into(),
        None,
    ));
    log(&metrics, &odd, StatusCode::NOT_FOUND);

    let text = metrics.encode();
    for (labels, count) in [
        (r#"verb="get",group="",resource="pods",code="200""#, 3.0),
        (
            r#"verb="get",group="other",resource="other",code="403""#,
            1.0,
        ),
        (
            r#"verb="get",group="other",resource="other",code="404""#,
            1.0,
        ),
        (r#"verb="other",group="",resource="",code="404""#, 1.0),
    ] {
        let labels = format!(r#"cluster="",{labels}"#);
        assert_eq!(
            value(&text, "paddock_requests_total", &labels),
            Some(count),
            "{labels}: {text}"
        );
    }
    assert!(
        !text.contains("evil.example") && !text.contains("x-123"),
        "{text}"
    );
    let decisions = "paddock_authorization_decisions_total";
    assert_eq!(value(&text, decisions, r#"decision="allow""#), Some(4.0));
    assert_eq!(value(&text, decisions, r#"decision="deny""#), Some(1.0));
    let count = "paddock_request_duration_seconds_count";
    assert_eq!(
        value(&text, count, r#"cluster="",verb="get""#),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "paddock_request_duration_seconds_bucket",
            r#"le="0.0025",cluster="",verb="get""#
        ),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "paddock_request_duration_seconds_bucket",
            r#"le="0.005",cluster="",verb="get""#
        ),
        Some(5.0),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn open_streams_are_counted_until_they_end() {
    let metrics = Metrics::new();
    let gauge = |kind: &str| {
        value(
            &metrics.encode(),
            "paddock_long_running_requests",
            &format!(r#"kind="{kind}""#),
        )
    };
    assert_eq!(
        gauge("watch"),
        Some(0.0),
        "every kind reads 0 from the start"
    );

    let watch = context(
        Some(RequestAttributes::resource_request("watch", "", "pods")),
        Some(true),
    );
    answered(&metrics, &watch, StatusCode::OK);
    assert_eq!(gauge("watch"), Some(1.0));
    log(&metrics, &watch, StatusCode::OK);
    assert_eq!(gauge("watch"), Some(0.0));

    // A watch the cluster refuses never opened, nor one Paddock refused.
    let watch_of = |allowed| {
        context(
            Some(RequestAttributes::resource_request("watch", "", "pods")),
            Some(allowed),
        )
    };
    answered(&metrics, &watch_of(true), StatusCode::GONE);
    answered(&metrics, &watch_of(false), StatusCode::OK);
    assert_eq!(gauge("watch"), Some(0.0));

    // An exec session outlives its 101 response: it ends with the context,
    // which the tunnel holds.
    let exec = context(
        Some(RequestAttributes::resource_request("create", "", "pods").with_subresource("exec")),
        Some(true),
    );
    answered(&metrics, &exec, StatusCode::SWITCHING_PROTOCOLS);
    log(&metrics, &exec, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(gauge("exec"), Some(1.0));
    drop(exec);
    assert_eq!(gauge("exec"), Some(0.0));

    // Neither is in the latency histogram; both are in the request count.
    let text = metrics.encode();
    assert!(
        !text.contains("paddock_request_duration_seconds_count{"),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "paddock_requests_total",
            r#"cluster="",verb="watch",group="",resource="pods",code="200""#
        ),
        Some(1.0)
    );
}

#[test]
fn counts_authentication_attempts_by_provider_and_result() {
    let metrics = Metrics::new();
    let authenticated = context(None, None);
    authenticated.set_identity(Arc::new(Identity {
        provider: "token-file".into(),
        ..Identity::default()
    }));
    log(&metrics, &authenticated, StatusCode::OK);
    let refused = context(None, None);
    refused.set_authn_attempt(AuthnAttempt {
        provider: None,
        outcome: AuthnOutcome::Invalid,
    });
    log(&metrics, &refused, StatusCode::UNAUTHORIZED);
    let throttled = context(None, None);
    throttled.set_authn_attempt(AuthnAttempt {
        provider: Some("local".into()),
        outcome: AuthnOutcome::Throttled,
    });
    log(&metrics, &throttled, StatusCode::TOO_MANY_REQUESTS);
    // No credential, no attempt.
    log(&metrics, &context(None, None), StatusCode::UNAUTHORIZED);

    let text = metrics.encode();
    let attempts = "paddock_authentication_attempts_total";
    assert_eq!(
        value(&text, attempts, r#"provider="token-file",result="success""#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, attempts, r#"provider="",result="invalid""#),
        Some(1.0)
    );
    assert_eq!(
        value(&text, attempts, r#"provider="local",result="throttled""#),
        Some(1.0)
    );
    let total: usize = text.lines().filter(|l| l.starts_with(attempts)).count();
    assert_eq!(total, 3, "{text}");
}

#[test]
fn bounded_labels_stop_growing_at_their_cap() {
    let set = Bounded::new(4); // "" and "other" take two places
    assert_eq!(&*set.get("pods"), "other");
    assert_eq!(&*set.learn("pods"), "pods");
    assert_eq!(&*set.learn("nodes"), "nodes");
    assert_eq!(&*set.learn("secrets"), "other");
    assert_eq!(&*set.get("pods"), "pods");
    assert_eq!(&*set.get(""), "");
}

#[test]
fn an_embedders_registry_keeps_its_own_metrics() {
    use prometheus_client::{metrics::counter::Counter, registry::Registry};
    let mut registry = Registry::default();
    let mine = Counter::<u64>::default();
    registry.register("my_app_things", "Things", mine.clone());
    mine.inc();
    let metrics = Metrics::with_registry(registry);
    let text = metrics.encode();
    assert!(text.contains("my_app_things_total 1"), "{text}");
    assert!(
        text.contains("# TYPE paddock_long_running_requests gauge"),
        "{text}"
    );
    assert!(text.contains("paddock_build_info{version="), "{text}");
}

#[test]
fn background_events_set_refresh_provider_and_cluster_metrics() {
    use crate::{accounts::Outcome, events::Event, health::ClusterHealth};

    let metrics = Metrics::new();
    let refreshed = Event::Refresh {
        provider: "ldap".into(),
        outcome: Outcome::Refreshed { groups: 2 },
    };
    metrics.on_event(&refreshed);
    metrics.on_event(&refreshed);
    metrics.on_event(&Event::Refresh {
        provider: "ldap".into(),
        outcome: Outcome::Deferred {
            groups_dropped: false,
            retry_after_secs: 0,
        },
    });
    metrics.on_event(&Event::ProviderHealth {
        provider: "ldap".into(),
        problem: Some("connection refused".into()),
    });
    let health = ClusterHealth::for_tests("prod", 3, 2);
    metrics.on_event(&Event::ClusterChecked(Arc::new(health)));
    let text = metrics.encode();
    let refreshes = |result| {
        value(
            &text,
            "paddock_refreshes_total",
            &format!("provider=\"ldap\",result=\"{result}\""),
        )
    };
    assert_eq!(refreshes("refreshed"), Some(2.0), "{text}");
    assert_eq!(refreshes("deferred"), Some(1.0), "{text}");
    assert_eq!(
        value(&text, "paddock_provider_degraded", "provider=\"ldap\""),
        Some(1.0)
    );
    assert_eq!(
        value(&text, "paddock_cluster_up", "cluster=\"prod\""),
        Some(1.0)
    );
    let nodes = |state| {
        value(
            &text,
            "paddock_cluster_nodes",
            &format!("cluster=\"prod\",state=\"{state}\""),
        )
    };
    assert_eq!(nodes("ready"), Some(2.0), "{text}");
    assert_eq!(nodes("not_ready"), Some(1.0), "{text}");
    // An agent's tunnel dropping and coming back flips the gauge at once.
    for reachable in [false, true] {
        metrics.on_event(&Event::ClusterReachability {
            cluster: "edge".into(),
            reachable,
            reason: None,
        });
        let text = metrics.encode();
        assert_eq!(
            value(&text, "paddock_cluster_up", "cluster=\"edge\""),
            Some(f64::from(u8::from(reachable))),
            "{text}"
        );
    }
    assert_eq!(
        value(
            &text,
            "paddock_cluster_check_latency_seconds",
            "cluster=\"prod\""
        ),
        Some(0.25)
    );
}

#[test]
fn rbac_sync_passes_set_failing_counts_and_go_with_their_cluster() {
    use crate::{
        events::Event,
        plugins::rbac_sync::{ClusterStatus, Report},
        store::{Revision, Timestamp},
    };

    let metrics = Metrics::new();
    let pass = |status: &ClusterStatus| {
        metrics.on_event(&Event::RbacSync {
            cluster: "prod".into(),
            status: Some(Arc::new(status.clone())),
        });
    };
    let mut status = ClusterStatus::new("prod");
    status.record(
        Timestamp(1_700_000_000),
        Revision(3),
        Ok(&Report {
            created: 3,
            updated: 1,
            drift_repaired: 1,
            ..Report::default()
        }),
    );
    pass(&status);
    status.record(Timestamp(1_700_000_060), Revision(3), Err("forbidden"));
    pass(&status);
    let text = metrics.encode();
    let prod = "cluster=\"prod\"";
    assert_eq!(
        value(&text, "paddock_rbac_sync_failing", prod),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "paddock_rbac_sync_last_success_timestamp_seconds",
            prod
        ),
        Some(1_700_000_000.0)
    );
    assert_eq!(
        value(&text, "paddock_rbac_sync_objects_written_total", prod),
        Some(4.0)
    );
    assert_eq!(
        value(&text, "paddock_rbac_sync_drift_repaired_total", prod),
        Some(1.0)
    );
    for result in ["ok", "error"] {
        let labels = format!("cluster=\"prod\",result=\"{result}\"");
        assert_eq!(
            value(&text, "paddock_rbac_sync_passes_total", &labels),
            Some(1.0),
            "{text}"
        );
    }
    // The totals are the status's, as the status endpoint shows them: a
    // status told again, or one whose earlier passes this instance never
    // saw, is not counted twice nor short.
    pass(&status);
    let late = Metrics::new();
    late.on_event(&Event::RbacSync {
        cluster: "prod".into(),
        status: Some(Arc::new(status.clone())),
    });
    for text in [metrics.encode(), late.encode()] {
        assert_eq!(
            value(&text, "paddock_rbac_sync_objects_written_total", prod),
            Some(4.0),
            "{text}"
        );
        for result in ["ok", "error"] {
            let labels = format!("cluster=\"prod\",result=\"{result}\"");
            assert_eq!(
                value(&text, "paddock_rbac_sync_passes_total", &labels),
                Some(1.0),
                "{text}"
            );
        }
    }
    // The cluster is removed: its series go.
    metrics.on_event(&Event::RbacSync {
        cluster: "prod".into(),
        status: None,
    });
    let text = metrics.encode();
    assert!(!text.contains("cluster=\"prod\""), "{text}");
}

#[test]
fn queues_are_read_at_scrape_time() {
    struct Fixed;
    impl super::QueueStats for Fixed {
        fn queued(&self) -> u64 {
            7
        }
        fn dropped(&self) -> u64 {
            3
        }
    }
    let metrics = Metrics::new();
    metrics.queue("audit", Fixed);
    let text = metrics.encode();
    assert_eq!(
        value(&text, "paddock_queue_depth", "queue=\"audit\""),
        Some(7.0)
    );
    assert_eq!(
        value(&text, "paddock_queue_dropped_total", "queue=\"audit\""),
        Some(3.0),
        "{text}"
    );
}

#[test]
fn upstream_errors_are_counted_past_an_allowing_decision_only() {
    let metrics = Metrics::new();
    let respond = |allowed: bool, code: StatusCode| {
        let context = context(None, Some(allowed));
        let (mut parts, ()) = http::Response::new(()).into_parts();
        parts.status = code;
        parts
            .extensions
            .insert(crate::status::Status::failure(code, "Failure", "upstream"));
        metrics
            .on_response(&context, &mut parts)
            .now_or_never()
            .unwrap();
    };
    respond(true, StatusCode::SERVICE_UNAVAILABLE);
    respond(true, StatusCode::GATEWAY_TIMEOUT);
    respond(true, StatusCode::NOT_FOUND);
    respond(false, StatusCode::SERVICE_UNAVAILABLE);
    let text = metrics.encode();
    let errors = |kind| {
        value(
            &text,
            "paddock_upstream_errors_total",
            &format!("cluster=\"\",kind=\"{kind}\""),
        )
    };
    assert_eq!(errors("unavailable"), Some(1.0), "{text}");
    assert_eq!(errors("timeout"), Some(1.0), "{text}");
}

/// A log writer's queue (the access log's, the audit file's) is reported
/// the one way every queue is, read live at each scrape.
#[test]
fn a_log_writers_queue_is_read_at_each_scrape() {
    use crate::plugins::writer::{LogWriter, OnFull};

    let writer = LogWriter::unstarted(1, OnFull::Drop);
    let metrics = Metrics::new();
    metrics.queue("access", writer.stats());
    let read = |metric: &str| value(&metrics.encode(), metric, r#"queue="access""#);
    assert_eq!(read("paddock_queue_depth"), Some(0.0));
    for line in ["0\n", "1\n", "2\n"] {
        writer.send(line.as_bytes());
    }
    assert_eq!(read("paddock_queue_depth"), Some(1.0));
    assert_eq!(read("paddock_queue_dropped_total"), Some(2.0));
    assert_eq!(writer.drain(), "0\n");
    assert_eq!(read("paddock_queue_depth"), Some(0.0));
    assert!(!metrics.encode().contains("paddock_log_dropped"));
}
