use std::sync::{Arc, Mutex};

use http::Method;

use super::*;
use crate::{authn::Identity, context::Decision};

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A finished request's context.
fn context(path: &str, user: Option<&str>) -> RequestContext {
    let context = RequestContext::new(
        "0000abcd-000000000001".to_owned(),
        Method::GET,
        path.to_owned(),
        None,
    );
    if let Some(user) = user {
        context.set_identity(Arc::new(Identity {
            user: user.to_owned(),
            ..Identity::default()
        }));
        context.set_decision(Decision {
            allowed: true,
            reason: "test".into(),
        });
    }
    context
}

fn line(context: &RequestContext) -> Line<'_> {
    Line {
        context,
        at: SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_601_845_123_456),
        status: StatusCode::OK,
        bytes: 42,
        complete: true,
        duration: Duration::from_micros(1500),
    }
}

#[test]
fn text_lines_have_tracing_s_shape() {
    let mut buf = Vec::new();
    text(&mut buf, &line(&context("/api/v1/pods", Some("alice"))));
    text(
        &mut buf,
        &line(&context("/a b", Some("bob \"the\"\nadmin"))),
    );
    text(&mut buf, &line(&context("/healthz", None)));
    let text = String::from_utf8(buf).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "2025-12-01T15:10:45.123456Z  INFO paddock::access: request kind=\"access\" \
         request.id=0000abcd-000000000001 http.method=GET http.path=/api/v1/pods \
         cluster.id=\"-\" auth.user=\"alice\" auth.acting_as=\"-\" authz.decision=\"allow\" \
         http.status=200 http.bytes=42 http.complete=true duration_ms=1.500"
    );
    // Whatever the caller chose stays inside its quotes, on its line.
    assert!(
        lines[1].contains(r#"http.path="/a b" "#)
            && lines[1].contains(r#"auth.user="bob \"the\"\nadmin""#),
        "{}",
        lines[1]
    );
    assert!(lines[2].contains("auth.user=\"-\" auth.acting_as=\"-\" authz.decision=\"-\""));
    assert_eq!(lines.len(), 3);
}

#[test]
fn json_lines_parse_and_carry_every_field() {
    let mut buf = Vec::new();
    json(
        &mut buf,
        &line(&context("/api/v1/namespaces/x/pods", Some("al\"ice"))),
    );
    let text = String::from_utf8(buf).unwrap();
    assert!(text.ends_with('\n') && text.lines().count() == 1);
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "timestamp": "2025-12-01T15:10:45.123456Z",
            "level": "INFO",
            "fields": {
                "message": "request", "kind": "access",
                "request.id": "0000abcd-000000000001", "http.method": "GET",
                "http.path": "/api/v1/namespaces/x/pods", "cluster.id": "-",
                "auth.user": "al\"ice", "auth.acting_as": "-", "authz.decision": "allow",
                "http.status": 200, "http.bytes": 42, "http.complete": true, "duration_ms": 1.5,
            },
            "target": "paddock::access",
        })
    );
}

/// Lines go through the writer thread and are all out once the log is
/// dropped.
#[test]
fn lines_reach_the_output_through_the_writer() {
    let out = Shared::default();
    let log = AccessLog::with_output(AccessLogFormat::Text, out.clone());
    let context = context("/api", Some("alice"));
    for _ in 0..100 {
        log.writer.send_with(|buf| text(buf, &line(&context)));
    }
    assert_eq!(log.dropped(), 0);
    drop(log);
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.lines().count(), 100);
}

/// The word-at-a-time checks against the byte-by-byte rules they replace,
/// for every length up to three words with one byte of each kind at every
/// position (the padded short word, the overlapping last word).
#[test]
fn quoting_finds_a_special_byte_anywhere() {
    let quote_needed = |b: u8| b < 0x20 || b == 0x7f || b == b'"' || b == b'\\';
    let path_special = |b: u8| !b.is_ascii_graphic() || b == b'"' || b == b'\\';
    for len in 0..24 {
        for special in [b' ', b'"', b'\\', b'\n', 0x01, 0x7f, 0xc3, b'a'] {
            for at in 0..len.max(1) {
                let mut bytes = vec![b'x'; len];
                if len > 0 {
                    bytes[at] = special;
                }
                // 0xc3 alone is not UTF-8: followed by a continuation byte.
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut quoted_out = Vec::new();
                quoted(&mut quoted_out, &text);
                let copied = quoted_out.len() == text.len() + 2;
                assert_eq!(copied, !text.bytes().any(quote_needed), "{text:?}");
                let mut path_out = Vec::new();
                quoted_if_needed(&mut path_out, &text);
                let bare = path_out == text.as_bytes();
                assert_eq!(bare, !text.bytes().any(path_special), "{text:?}");
            }
        }
    }
}
