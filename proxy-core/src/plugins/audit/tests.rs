use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use tower::ServiceExt;

use super::*;

/// A queued event's JSON.
fn parse(event: &[u8]) -> serde_json::Value {
    serde_json::from_slice(event).expect("an event is valid JSON")
}

/// Requests through the whole stack to an audit plugin whose queue nobody
/// drains: the first event waits in the queue, every later one is dropped
/// and counted, and the requests are served all the same.
#[tokio::test]
async fn a_sink_that_cannot_keep_up_drops_and_counts() {
    let (sink, receiver) = AuditSink::channel(QueueOptions {
        capacity: 1,
        on_full: OnFull::Drop,
    });
    let audit = Audit::new(Policy::default(), sink);
    let proxy = crate::Proxy::builder()
        .without_plugins()
        .plugin(audit.clone())
        .build()
        .unwrap();
    for _ in 0..5 {
        let request = http::Request::get("/paddock/healthz?probe=1")
            .header(http::header::USER_AGENT, "probe/1.0")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.service().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body().collect().await.unwrap();
    }
    assert_eq!(audit.dropped(), 4);
    let queued: Vec<Bytes> = receiver.try_iter().collect();
    assert_eq!(queued.len(), 1);
    let event = parse(&queued[0]);
    assert_eq!(event["stage"], "ResponseComplete");
    assert_eq!(event["level"], "Metadata");
    assert_eq!(event["verb"], "get");
    // No query on Paddock's own endpoints.
    assert_eq!(event["requestURI"], "/paddock/healthz");
    assert_eq!(event["userAgent"], "probe/1.0");
    assert_eq!(event["user"], serde_json::json!({}));
    assert!(event.get("objectRef").is_none(), "{event}");
    assert_eq!(event["responseStatus"]["code"], 200);
    assert_eq!(event["annotations"]["paddock.io/bytes-sent"], "3");
}

/// A request refused before authentication (no `on_request`) is still
/// recorded, with Paddock's Status; a policy's `None` records nothing.
#[tokio::test]
async fn refusals_before_authentication_and_the_none_level() {
    let (sink, receiver) = AuditSink::channel(QueueOptions::default());
    let policy = Policy::from_yaml(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/paddock/healthz]\n- level: Request\n",
    )
    .unwrap();
    let proxy = crate::Proxy::builder()
        .without_plugins()
        .plugin(Audit::new(policy, sink))
        .build()
        .unwrap();
    for path in ["/paddock/healthz", "/paddock/nowhere", "/api/v1/pods"] {
        let request = http::Request::get(path)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.service().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let events: Vec<serde_json::Value> = receiver.try_iter().map(|e| parse(&e)).collect();
    let uris: Vec<&str> = events
        .iter()
        .map(|e| e["requestURI"].as_str().unwrap())
        .collect();
    assert_eq!(uris, ["/paddock/nowhere", "/api/v1/pods"]);
    for event in &events {
        assert_eq!(event["level"], "Request");
        assert_eq!(event["responseStatus"]["status"], "Failure", "{event}");
        assert!(event["responseStatus"]["message"].is_string(), "{event}");
    }
    assert_eq!(events[0]["responseStatus"]["code"], 404);
}

/// A policy that does not omit `RequestReceived` gets it, before the
/// complete event, without a response status; the default policy omits it.
#[tokio::test]
async fn request_received_unless_omitted() {
    for (policy, expected) in [
        (
            Policy::with_level(Level::Metadata),
            &["RequestReceived", "ResponseComplete"][..],
        ),
        (Policy::default(), &["ResponseComplete"][..]),
    ] {
        let (sink, receiver) = AuditSink::channel(QueueOptions::default());
        let proxy = crate::Proxy::builder()
            .without_plugins()
            .plugin(Audit::new(policy, sink))
            .build()
            .unwrap();
        let request = http::Request::get("/paddock/healthz")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = proxy.service().oneshot(request).await.unwrap();
        response.into_body().collect().await.unwrap();
        let events: Vec<serde_json::Value> = receiver.try_iter().map(|e| parse(&e)).collect();
        let stages: Vec<&str> = events
            .iter()
            .map(|e| e["stage"].as_str().unwrap())
            .collect();
        assert_eq!(stages, expected);
        let last = &events[events.len() - 1];
        assert_eq!(
            events[0]["requestReceivedTimestamp"],
            last["requestReceivedTimestamp"]
        );
        if expected.len() == 2 {
            assert!(events[0].get("responseStatus").is_none(), "{}", events[0]);
        }
    }
}
