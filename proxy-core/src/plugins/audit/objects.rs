//! The objects the `Request` and `RequestResponse` levels record: the
//! request body as `requestObject`, the response body as `responseObject`,
//! as kube-apiserver records them
//! (`staging/src/k8s.io/apiserver/pkg/audit/request.go`, `LogRequestObject`
//! and `LogResponseObject`).
//!
//! Bodies are copied as they stream past ([`BodyCopy`]): the client gets
//! each frame when it would without the audit log, and the copy stops (and
//! frees what it held) at [`MAX_OBJECT_BYTES`]. An object is written only
//! when its body was JSON (whatever its `Content-Type` claimed; none of
//! `Content-Encoding`), complete and within the limit; otherwise the event
//! says why in an annotation (`paddock.io/request-object`,
//! `paddock.io/response-object`: `too-large`, `protobuf`, `not-json`,
//! `incomplete`, `encoded`) and a body over the limit adds
//! kube-apiserver's `audit.k8s.io/truncated: "true"`. Paddock does not
//! decode Kubernetes' protobuf encoding, which kubectl and client-go use
//! for built-in kinds when they send them: such objects read `protobuf`
//! (kube-apiserver decodes them; a client asking for JSON is recorded).
//!
//! Never recorded, at any level ([`may_record`]): Secrets (any API group,
//! any subresource), `tokenreviews`, `tokenrequests` and
//! `serviceaccounts/token` (they carry tokens), and everything Paddock
//! answers itself (logins, passwords, the tokens it issues): its endpoints
//! never reach the upstream phase where copies start. Watches and other
//! long-running requests stream without end and are never copied either.

use bytes::Bytes;
use http::{header, HeaderMap};
use policy::RequestAttributes;

use crate::body::{BodyCopy, Copied};

/// The most bytes of one body an event records: kube-apiserver's
/// truncating backend allows 100 KB per event (`--audit-log-truncate-max-event-size`),
/// which two objects at this size and the metadata fit.
pub const MAX_OBJECT_BYTES: usize = 48 * 1024;

/// Whether a request's objects may be recorded at all: a resource request
/// that is not long-running and touches nothing that carries a secret.
pub(crate) fn may_record(attributes: &RequestAttributes) -> bool {
    let carries_secrets = matches!(
        attributes.resource.as_str(),
        "secrets" | "tokenreviews" | "tokenrequests"
    ) || (attributes.resource == "serviceaccounts"
        && attributes.subresource == "token");
    attributes.is_resource_request && !attributes.is_long_running() && !carries_secrets
}

/// Whether the verb sends an object worth recording (kube-apiserver
/// records the decoded body of creates, updates and patches).
pub(crate) fn sends_object(verb: &str) -> bool {
    matches!(verb, "create" | "update" | "patch")
}

/// Why a body is not copied, read from its headers: `None` when it may be.
/// What it holds is told from its bytes when it is written (a client may
/// send JSON under another content type).
pub(crate) fn unrecordable(headers: &HeaderMap) -> Option<&'static str> {
    headers
        .contains_key(header::CONTENT_ENCODING)
        .then_some("encoded")
}

/// Why `body` cannot be written as an object: `None` when it is JSON.
pub(crate) fn not_json(body: &[u8]) -> &'static str {
    // Kubernetes' protobuf envelope starts with "k8s\0"
    // (`staging/src/k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`).
    if body.starts_with(b"k8s\0") {
        "protobuf"
    } else {
        "not-json"
    }
}

/// One side's object: being copied, or why it is not.
#[derive(Debug, Clone)]
pub(crate) enum Side {
    Copying(BodyCopy),
    Skipped(&'static str),
}

impl Side {
    /// A copy of a body with `headers`, or why there is none.
    pub(crate) fn start(headers: &HeaderMap) -> (Self, Option<BodyCopy>) {
        match unrecordable(headers) {
            Some(why) => (Self::Skipped(why), None),
            None => {
                let copy = BodyCopy::new(MAX_OBJECT_BYTES);
                (Self::Copying(copy.clone()), Some(copy))
            }
        }
    }

    fn finish(self) -> Recorded {
        match self {
            Self::Copying(copy) => match copy.take() {
                Copied::Complete(bytes) => Recorded::Json(bytes),
                Copied::TooLarge => Recorded::Omitted("too-large"),
                _ => Recorded::Omitted("incomplete"),
            },
            Self::Skipped(why) => Recorded::Omitted(why),
        }
    }
}

/// What the audit plugin keeps in a request's state while its bodies are
/// copied: set in the upstream phase, read when the response ends.
#[derive(Debug, Clone, Default)]
pub(crate) struct Copies {
    pub(crate) request: Option<Side>,
    pub(crate) response: Option<Side>,
    /// The level asks for the response too.
    pub(crate) wants_response: bool,
}

impl Copies {
    /// The objects, once the response has ended; `None` when there is
    /// nothing to say.
    pub(crate) fn finish(self) -> Option<Box<Objects>> {
        let objects = Objects {
            request: self.request.map(Side::finish),
            response: self.response.map(Side::finish),
        };
        (objects.request.is_some() || objects.response.is_some()).then(|| Box::new(objects))
    }
}

/// A body as an event records it.
#[derive(Clone)]
pub(crate) enum Recorded {
    /// Its bytes, as sent (checked and compacted when written).
    Json(Bytes),
    /// Left out, and why.
    Omitted(&'static str),
}

// By hand: the object's bytes go to the audit sinks, never to a Debug print.
impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Json(bytes) => write!(f, "Json({} bytes)", bytes.len()),
            Self::Omitted(why) => f.debug_tuple("Omitted").field(why).finish(),
        }
    }
}

/// The objects of one `ResponseComplete` event.
#[derive(Debug, Clone, Default)]
pub(crate) struct Objects {
    pub(crate) request: Option<Recorded>,
    pub(crate) response: Option<Recorded>,
}

/// Appends `json` as one line's worth of JSON (no whitespace outside
/// strings), without `metadata.managedFields` when `omit_managed_fields`;
/// false (nothing appended) when it is not valid JSON.
pub(crate) fn push_compact(out: &mut Vec<u8>, json: &[u8], omit_managed_fields: bool) -> bool {
    if omit_managed_fields {
        let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(json) else {
            return false;
        };
        strip_managed_fields(&mut value);
        return serde_json::to_writer(out, &value).is_ok();
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
        return false;
    }
    // Valid JSON: whitespace outside strings is insignificant, and inside
    // strings newlines are escaped, so dropping it keeps one event a line.
    let mut in_string = false;
    let mut escaped = false;
    out.reserve(json.len());
    for &b in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        out.push(b);
    }
    true
}

/// Removes `metadata.managedFields` from an object and from a list's items.
fn strip_managed_fields(value: &mut serde_json::Value) {
    if let Some(metadata) = value
        .get_mut("metadata")
        .and_then(serde_json::Value::as_object_mut)
    {
        metadata.remove("managedFields");
    }
    if let Some(items) = value
        .get_mut("items")
        .and_then(serde_json::Value::as_array_mut)
    {
        items.iter_mut().for_each(strip_managed_fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_are_never_recorded() {
        let request = |verb: &str, group: &str, resource: &str, sub: &str| {
            let mut a = RequestAttributes::resource_request(verb, group, resource);
            a.subresource = sub.to_owned();
            a
        };
        for (attributes, expected) in [
            (request("create", "", "configmaps", ""), true),
            (request("get", "apps", "deployments", "scale"), true),
            (request("create", "", "secrets", ""), false),
            (request("get", "", "secrets", ""), false),
            // A CRD named secrets in any group.
            (request("list", "example.com", "secrets", ""), false),
            (request("patch", "", "secrets", "status"), false),
            (request("create", "", "serviceaccounts", "token"), false),
            (
                request("create", "authentication.k8s.io", "tokenreviews", ""),
                false,
            ),
            (request("watch", "", "configmaps", ""), false),
            (request("get", "", "pods", "exec"), false),
        ] {
            assert_eq!(may_record(&attributes), expected, "{attributes:?}");
        }
        assert!(!may_record(&RequestAttributes::default()));
    }

    #[test]
    fn encoded_bodies_are_not_copied_and_protobuf_is_named() {
        let headers = |pairs: &[(header::HeaderName, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(name, http::HeaderValue::from_static(value));
            }
            map
        };
        let json = (header::CONTENT_TYPE, "application/json");
        assert_eq!(unrecordable(&headers(std::slice::from_ref(&json))), None);
        assert_eq!(unrecordable(&headers(&[])), None);
        assert_eq!(
            unrecordable(&headers(&[json, (header::CONTENT_ENCODING, "gzip")])),
            Some("encoded")
        );
        assert_eq!(not_json(b"k8s\0\n\x0f\n\x02v1"), "protobuf");
        assert_eq!(not_json(b"kind: ConfigMap\n"), "not-json");
    }

    #[test]
    fn objects_are_compacted_checked_and_stripped() {
        let text = b"{\n  \"kind\": \"ConfigMap\",\n  \"data\": {\"a b\": \"x\\\"\\n y\"},\n  \"metadata\": {\"name\": \"c\", \"managedFields\": [{\"manager\": \"kubectl\"}]}\n}\n";
        let mut out = Vec::new();
        assert!(push_compact(&mut out, text, false));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"kind":"ConfigMap","data":{"a b":"x\"\n y"},"metadata":{"name":"c","managedFields":[{"manager":"kubectl"}]}}"#
        );
        let mut out = Vec::new();
        assert!(push_compact(&mut out, text, true));
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["metadata"], serde_json::json!({"name": "c"}));
        let mut out = Vec::new();
        assert!(!push_compact(&mut out, b"{\"cut\": ", false));
        assert!(out.is_empty());
    }
}
