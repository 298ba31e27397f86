use std::collections::BTreeMap;

use super::*;
use crate::{context::Decision, plugins::audit::Level};

/// `value` for as long as the test runs (tests' events borrow their
/// context as the plugin's do, from a request that outlives them).
pub(crate) fn kept<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// A small event with the given id: a `ResponseComplete` of a `GET
/// /api/v1/pods` nobody was authenticated for.
pub(crate) fn sample(id: &str) -> Event<'static> {
    Event {
        stage: Stage::ResponseComplete,
        context: kept(RequestContext::new(
            id.to_owned(),
            Method::GET,
            "/api/v1/pods".to_owned(),
            None,
        )),
        noted: kept(Noted {
            decision: RequestAuditConfig::at(Level::Metadata),
            received: SystemTime::UNIX_EPOCH.into(),
            user_agent: None,
            query: None,
        }),
        response: None,
        objects: None,
        at: SystemTime::UNIX_EPOCH,
    }
}

/// The JSON line (with its newline) of `sample(id)`.
pub(crate) fn sample_line(id: &str) -> Vec<u8> {
    let mut line = Vec::new();
    EventWriter::default().write(&sample(id), &mut line);
    line.push(b'\n');
    line
}

/// Queues `sample(id)` in `sink`.
pub(crate) fn send_sample(sink: &crate::plugins::audit::AuditSink, id: &str) {
    sink.send_with(|buf| buf.extend_from_slice(&sample_line(id)));
}

#[test]
fn serializes_like_kube_apiserver() {
    let mut event = sample("a-1");
    event.noted = kept(Noted {
        decision: RequestAuditConfig::at(Level::Metadata),
        received: (SystemTime::UNIX_EPOCH + Duration::from_nanos(1_764_601_845_123_456_789)).into(),
        user_agent: Some(HeaderValue::from_static("kubectl/v1.32")),
        query: Some("limit=1".to_owned()),
    });
    event.at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_601_846);
    let status = Status::failure(http::StatusCode::FORBIDDEN, "Forbidden", "no");
    event.response = Some(ResponseFacts {
        code: 403,
        failure: Some(Arc::new(status)),
        end: Some(End {
            bytes_sent: 120,
            bytes_received: None,
            duration: Duration::from_micros(1500),
            complete: true,
        }),
    });
    event.context.set_decision(Decision {
        allowed: false,
        reason: "no binding".into(),
    });
    let json = event.to_value();
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": "a-1", "stage": "ResponseComplete", "requestURI": "/api/v1/pods?limit=1",
            "verb": "get", "user": {}, "userAgent": "kubectl/v1.32",
            "responseStatus": {"metadata": {}, "status": "Failure", "message": "no",
                               "reason": "Forbidden", "code": 403},
            "requestReceivedTimestamp": "2025-12-01T15:10:45.123456Z",
            "stageTimestamp": "2025-12-01T15:10:46.000000Z",
            "annotations": {
                "authorization.k8s.io/decision": "forbid",
                "authorization.k8s.io/reason": "no binding",
                "paddock.io/bytes-sent": "120",
                "paddock.io/duration-seconds": "0.001500",
            },
        })
    );
}

/// The identity's own extra attributes and Paddock's keys, merged in key
/// order, Paddock's winning; the serialised object is valid JSON with its
/// keys sorted, as Go writes a map.
#[test]
fn user_extra_merges_in_key_order() {
    let mut extra = BTreeMap::new();
    for key in ["a/first", "paddock.io/provider", "paddock.io/q", "z/last"] {
        extra.insert(key.to_owned(), vec![format!("{key}-value")]);
    }
    let identity = Identity {
        user: "u-1".to_owned(),
        username: "alice".to_owned(),
        groups: vec!["devs".to_owned()],
        extra,
        provider: "ldap".to_owned(),
        ..Identity::default()
    };
    let mut text = Vec::new();
    User::identity(&identity).write_json(&mut text);
    let text = String::from_utf8(text).unwrap();
    assert_eq!(
        text,
        r#"{"username":"alice","groups":["devs"],"extra":{"a/first":["a/first-value"],"paddock.io/principal":["u-1"],"paddock.io/provider":["ldap"],"paddock.io/q":["paddock.io/q-value"],"z/last":["z/last-value"]}}"#
    );
}

#[test]
fn long_user_agents_are_cut() {
    assert_eq!(user_agent("kubectl/v1.32"), "kubectl/v1.32");
    let long = "é".repeat(600);
    let cut = user_agent(&long);
    assert!(cut.ends_with("...TRUNCATED"));
    assert_eq!(cut.len(), 1024 + "...TRUNCATED".len());
}

/// The writer keeps users' objects by identity: each event still names its
/// own caller and impersonated user, past the cache's size, and an identity
/// dropped and replaced by another at the same address is not mistaken
/// for it.
#[test]
fn cached_users_name_each_events_own_identities() {
    let identity = |name: &str| {
        Arc::new(Identity {
            user: format!("u-{name}"),
            username: name.to_owned(),
            groups: vec![format!("{name}-group")],
            provider: "token-file".to_owned(),
            ..Identity::default()
        })
    };
    let names = |value: &serde_json::Value| {
        (
            value["user"]["username"].as_str().map(str::to_owned),
            value["impersonatedUser"]["username"]
                .as_str()
                .map(str::to_owned),
        )
    };
    // Each event's context (and so its identities' last references) is
    // dropped once it is written.
    let mut writer = EventWriter::default();
    let mut written = |caller: &Arc<Identity>, as_user: Option<&Arc<Identity>>| {
        let context =
            RequestContext::new("1".to_owned(), Method::GET, "/api/v1/pods".to_owned(), None);
        context.set_identity(caller.clone());
        if let Some(as_user) = as_user {
            context.set_impersonated(as_user.clone());
        }
        let event = Event {
            context: &context,
            ..sample("1")
        };
        let mut out = Vec::new();
        writer.write(&event, &mut out);
        serde_json::from_slice::<serde_json::Value>(&out).unwrap()
    };
    let people: Vec<_> = (0..CACHED_USERS * 2)
        .map(|i| identity(&format!("p{i}")))
        .collect();
    for round in 0..3 {
        for (i, person) in people.iter().enumerate() {
            let other = &people[(i + round + 1) % people.len()];
            let value = written(person, Some(other));
            assert_eq!(
                names(&value),
                (Some(person.username.clone()), Some(other.username.clone()))
            );
            assert_eq!(
                value["user"]["groups"][0],
                format!("{}-group", person.username)
            );
        }
    }
    // A fresh identity, perhaps where a dropped one lived.
    for i in 0..CACHED_USERS * 2 {
        let fresh = identity(&format!("fresh{i}"));
        let value = written(&fresh, None);
        assert_eq!(names(&value), (Some(format!("fresh{i}")), None));
    }
    let cached = written(&people[0], None);
    let uncached = sample("1");
    uncached.context.set_identity(people[0].clone());
    assert_eq!(cached, uncached.to_value());
}
