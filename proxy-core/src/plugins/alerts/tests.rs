//! The plugin against real HTTP receivers on loopback: what each format
//! POSTs, deduplication through the plugin, retries and drops.

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicUsize, Ordering},
};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;

use super::*;
use crate::{
    authn::{AuthnAttempt, Identity},
    context::Login,
};

/// A receiver on loopback: each POST's JSON body goes to the channel; the
/// first `failures` POSTs are answered 500.
async fn receiver(failures: usize) -> (String, mpsc::UnboundedReceiver<(String, Value)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook/secret-path", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let failures = Arc::new(AtomicUsize::new(failures));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tx, failures) = (tx.clone(), failures.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let (tx, failures) = (tx.clone(), failures.clone());
                    async move {
                        let path = request.uri().path().to_owned();
                        let body = request.into_body().collect().await?.to_bytes();
                        let mut response = http::Response::new(Full::new(Bytes::new()));
                        let failing = failures
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok();
                        if failing {
                            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                        } else {
                            let _ = tx.send((path, serde_json::from_slice(&body).unwrap()));
                        }
                        Ok::<_, hyper::Error>(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<(String, Value)>) -> Value {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("no POST within 20 s")
        .unwrap()
        .1
}

/// Waits (up to 20 s) for `done`: counters move just after the receiver
/// answered.
async fn eventually(done: impl Fn() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn receiver_for(url: &str, format: Format) -> AlertReceiver {
    let mut receiver = AlertReceiver::new("ops", url, format).unwrap();
    receiver.initial_backoff = Duration::from_millis(10);
    receiver
}

fn down(cluster: &str) -> Event {
    Event::ClusterReachability {
        cluster: cluster.to_owned(),
        reachable: false,
        reason: Some("connection refused".to_owned()),
    }
}

fn up(cluster: &str) -> Event {
    Event::ClusterReachability {
        cluster: cluster.to_owned(),
        reachable: true,
        reason: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_format_gets_its_shape() {
    let (url, mut posts) = receiver(0).await;
    let receivers = [
        Format::Generic,
        Format::Slack,
        Format::Alertmanager,
        Format::AlertmanagerWebhook,
    ]
    .map(|format| receiver_for(&url, format));
    let rules = AlertRules {
        cluster_unreachable: true,
        ..AlertRules::default()
    };
    let options = AlertsOptions {
        external_url: "https://paddock.example".to_owned(),
        ..AlertsOptions::default()
    };
    let alerts = Alerts::new(rules, receivers.to_vec(), options).unwrap();
    alerts.on_event(&down("prod"));
    let mut firing = Vec::new();
    for _ in 0..4 {
        firing.push(next(&mut posts).await);
    }
    let find = |posts: &[Value], pick: fn(&Value) -> bool| {
        posts.iter().find(|p| pick(p)).cloned().unwrap()
    };
    let generic = find(&firing, |p| p["source"] == "paddock");
    assert_eq!(generic["status"], "firing");
    assert_eq!(generic["alert"]["name"], "PaddockClusterUnreachable");
    assert_eq!(generic["alert"]["labels"]["cluster"], "prod");
    assert_eq!(generic["alert"]["severity"], "critical");
    assert!(generic["alert"]["endsAt"].is_null());
    let slack = find(&firing, |p| p.get("text").is_some());
    assert_eq!(
        slack["text"],
        "[FIRING] PaddockClusterUnreachable: cluster prod is unreachable: connection refused"
    );
    let api = find(&firing, Value::is_array);
    let api = &api[0];
    assert_eq!(api["labels"]["alertname"], "PaddockClusterUnreachable");
    assert_eq!(api["labels"]["cluster"], "prod");
    assert_eq!(api["generatorURL"], "https://paddock.example");
    assert!(api.get("endsAt").is_none(), "{api}");
    time::OffsetDateTime::parse(
        api["startsAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let webhook = find(&firing, |p| p["version"] == "4");
    assert_eq!(webhook["status"], "firing");
    assert_eq!(webhook["receiver"], "ops");
    assert_eq!(
        webhook["groupKey"],
        "{}:{alertname=\"PaddockClusterUnreachable\"}"
    );
    assert_eq!(webhook["externalURL"], "https://paddock.example");
    assert_eq!(webhook["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        webhook["alerts"][0]["fingerprint"].as_str().unwrap().len(),
        16
    );

    // Said again: nothing. Resolved: once more each.
    alerts.on_event(&down("prod"));
    alerts.on_event(&up("prod"));
    let mut resolved = Vec::new();
    for _ in 0..4 {
        resolved.push(next(&mut posts).await);
    }
    let generic = find(&resolved, |p| p["source"] == "paddock");
    assert_eq!(generic["status"], "resolved");
    assert!(generic["alert"]["endsAt"].is_string());
    let api = find(&resolved, Value::is_array);
    assert!(api[0]["endsAt"].is_string());
    let webhook = find(&resolved, |p| p["version"] == "4");
    assert_eq!(webhook["alerts"][0]["status"], "resolved");
    eventually(|| alerts.delivered() == 8).await;
    assert_eq!(alerts.delivered(), 8);
    assert_eq!(alerts.dropped(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_receiver_is_retried_then_the_alert_dropped() {
    let (url, mut posts) = receiver(2).await;
    let rules = AlertRules {
        provider_degraded: true,
        ..AlertRules::default()
    };
    let mut flaky = receiver_for(&url, Format::Generic);
    flaky.retries = 2;
    let alerts = Alerts::new(rules, vec![flaky], AlertsOptions::default()).unwrap();
    alerts.on_event(&Event::ProviderHealth {
        provider: "ldap".to_owned(),
        problem: Some("connection refused".to_owned()),
    });
    // Two failures, then the third attempt gets through.
    let post = next(&mut posts).await;
    assert_eq!(post["alert"]["labels"]["provider"], "ldap");
    eventually(|| alerts.delivered() == 1).await;
    assert_eq!(alerts.delivered(), 1);

    let (url, _posts) = receiver(usize::MAX).await;
    let mut broken = receiver_for(&url, Format::Generic);
    broken.retries = 1;
    let alerts = Alerts::new(rules, vec![broken], AlertsOptions::default()).unwrap();
    alerts.on_event(&Event::ProviderHealth {
        provider: "ldap".to_owned(),
        problem: Some("down".to_owned()),
    });
    eventually(|| alerts.dropped() == 1).await;
    assert_eq!(alerts.dropped(), 1);
    assert_eq!(alerts.delivered(), 0);
}

/// A receiver that accepts connections and never answers: each POST
/// takes its whole timeout.
async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    url
}

/// Receivers are independent: one that never answers delays neither the
/// healthy one nor the time-driven work (Alertmanager's resends).
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_receiver_does_not_hold_back_a_healthy_one() {
    let (url, mut posts) = receiver(0).await;
    let rules = AlertRules {
        cluster_unreachable: true,
        ..AlertRules::default()
    };
    // Its retries of one notification would take four hours.
    let mut dead = receiver_for(&black_hole().await, Format::Generic);
    dead.timeout = Duration::from_secs(3600);
    let options = AlertsOptions {
        resend: Duration::from_millis(200),
        ..AlertsOptions::default()
    };
    let alerts = Alerts::new(
        rules,
        vec![dead, receiver_for(&url, Format::Alertmanager)],
        options,
    )
    .unwrap();
    alerts.on_event(&down("prod"));
    alerts.on_event(&down("staging"));
    let mut clusters = Vec::new();
    for _ in 0..2 {
        let post = next(&mut posts).await;
        clusters.push(post[0]["labels"]["cluster"].clone());
    }
    clusters.sort_by_key(Value::to_string);
    assert_eq!(clusters, ["prod", "staging"]);
    // The engine's ticks go on: the firing alerts are sent again.
    let resent = next(&mut posts).await;
    assert!(resent[0].get("endsAt").is_none(), "{resent}");
    // The second notification still waits for the dead receiver.
    eventually(|| alerts.queued() == 1).await;
    assert_eq!(alerts.queued(), 1);
    assert_eq!(alerts.dropped(), 0);
}

fn failed_login(user: &str, from: SocketAddr) -> RequestContext {
    let context = RequestContext::new(
        "1".into(),
        http::Method::POST,
        "/paddock/v1/login".into(),
        Some(from),
    );
    context.set_login(Login::new(
        "local",
        user,
        LoginOutcome::Failed {
            reason: "invalid credentials".to_owned(),
        },
    ));
    context.set_authn_attempt(AuthnAttempt {
        provider: Some("local".to_owned()),
        outcome: AuthnOutcome::Invalid,
    });
    context
}

fn log(alerts: &Alerts, context: RequestContext) {
    let context = Arc::new(context);
    alerts.on_log(&AccessRecord {
        context: &context,
        status: StatusCode::UNAUTHORIZED,
        bytes: 0,
        bytes_received: 0,
        complete: true,
        duration: Duration::ZERO,
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn login_bursts_fire_per_user_and_per_address_once() {
    let (url, mut posts) = receiver(0).await;
    let rules = AlertRules {
        failed_logins: Some(Burst {
            threshold: 3,
            window: Duration::from_secs(60),
        }),
        ..AlertRules::default()
    };
    let alerts = Alerts::new(
        rules,
        vec![receiver_for(&url, Format::Generic)],
        AlertsOptions::default(),
    )
    .unwrap();
    let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    for _ in 0..6 {
        log(&alerts, failed_login("alice", from));
    }
    let mut subjects = Vec::new();
    for _ in 0..2 {
        let post = next(&mut posts).await;
        subjects.push(post["alert"]["labels"].clone());
    }
    subjects.sort_by_key(Value::to_string);
    assert_eq!(
        subjects,
        [
            serde_json::json!({"address": "192.0.2.7"}),
            serde_json::json!({"user": "local/alice"}),
        ]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(posts.try_recv().is_err(), "more than one call per subject");
    assert_eq!(alerts.firing(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_from_a_second_address_fires_its_first_does_not() {
    let (url, mut posts) = receiver(0).await;
    let rules = AlertRules {
        token_new_address: true,
        ..AlertRules::default()
    };
    let alerts = Alerts::new(
        rules,
        vec![receiver_for(&url, Format::Generic)],
        AlertsOptions::default(),
    )
    .unwrap();
    let used = |address: &str| {
        let context = RequestContext::new(
            "1".into(),
            http::Method::GET,
            "/api".into(),
            Some(address.parse().unwrap()),
        );
        let identity = Identity {
            user: "local://u-1".to_owned(),
            username: "alice".to_owned(),
            provider: "local".to_owned(),
            token_id: Some("t-abc".to_owned()),
            ..Identity::default()
        };
        context.set_identity(Arc::new(identity));
        log(&alerts, context);
    };
    used("10.0.0.1:1000");
    used("10.0.0.1:1001");
    used("10.0.0.2:1000");
    used("10.0.0.2:1002");
    let post = next(&mut posts).await;
    assert_eq!(post["alert"]["name"], "PaddockTokenNewAddress");
    assert_eq!(post["alert"]["labels"]["address"], "10.0.0.2");
    assert_eq!(post["alert"]["labels"]["token"], "t-abc");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(posts.try_recv().is_err());
}

/// A failing RBAC sync pass (as the sync hands it to the plugins) fires
/// once it has lasted the rule's duration (none here), and resolves when
/// the cluster is no longer synchronised.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_rbac_sync_fires_and_resolves_when_its_cluster_goes() {
    use crate::{
        plugins::rbac_sync::ClusterStatus,
        store::{Revision, Timestamp},
    };

    let (url, mut posts) = receiver(0).await;
    let rules = AlertRules {
        rbac_sync_failing: Some(Duration::ZERO),
        ..AlertRules::default()
    };
    let alerts = Alerts::new(
        rules,
        vec![receiver_for(&url, Format::Generic)],
        AlertsOptions::default(),
    )
    .unwrap();
    let mut status = ClusterStatus::new("prod");
    status.record(Timestamp::now(), Revision(1), Ok(&Default::default()));
    let pass = |status: &ClusterStatus| Event::RbacSync {
        cluster: "prod".into(),
        status: Some(Arc::new(status.clone())),
    };
    // A pass without error: nothing to say.
    alerts.on_event(&pass(&status));
    status.record(
        Timestamp::now(),
        Revision(1),
        Err("clusterroles is forbidden"),
    );
    alerts.on_event(&pass(&status));
    alerts.on_event(&pass(&status));
    let firing = next(&mut posts).await;
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["alert"]["name"], "PaddockRbacSyncFailing");
    assert_eq!(firing["alert"]["labels"]["cluster"], "prod");
    assert!(
        firing["alert"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("clusterroles is forbidden")),
        "{firing}"
    );
    alerts.on_event(&Event::RbacSync {
        cluster: "prod".into(),
        status: None,
    });
    let resolved = next(&mut posts).await;
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alert"]["name"], "PaddockRbacSyncFailing");
    // Deduplicated: the second failing pass sent nothing of its own.
    assert_eq!(alerts.firing(), 0);
    assert!(posts.try_recv().is_err());
}
