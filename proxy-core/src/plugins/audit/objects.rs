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
///
/// Everything else is copied as sent, never decoded and encoded again:
/// members keep their order and numbers their digits, as kube-apiserver
/// records them.
pub(crate) fn push_compact(out: &mut Vec<u8>, json: &[u8], omit_managed_fields: bool) -> bool {
    if serde_json::from_slice::<serde::de::IgnoredAny>(json).is_err() {
        return false;
    }
    out.reserve(json.len());
    if omit_managed_fields {
        Strip { json, pos: 0, out }.value(Role::Object);
    } else {
        copy_compact(out, json);
    }
    true
}

/// Appends valid JSON without its whitespace outside strings: it is
/// insignificant there, and inside strings newlines are escaped, so
/// dropping it keeps one event a line.
fn copy_compact(out: &mut Vec<u8>, json: &[u8]) {
    let mut in_string = false;
    let mut escaped = false;
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
        } else if is_whitespace(b) {
            continue;
        }
        out.push(b);
    }
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Where a value sits, for [`Strip`]: only these places hold a
/// `managedFields` to remove.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The body, or an item of a list: its `metadata` and `items` matter.
    Object,
    /// An object's `metadata`: its `managedFields` goes.
    Metadata,
    /// A list's `items`: each is an object.
    Items,
    /// Anything else: copied.
    Other,
}

/// One pass over JSON already checked valid, copying it compacted except
/// the `managedFields` member of the body's `metadata` and of each item's
/// (for lists). Values that cannot hold one are copied in one piece.
struct Strip<'a> {
    json: &'a [u8],
    pos: usize,
    out: &'a mut Vec<u8>,
}

impl Strip<'_> {
    fn skip_whitespace(&mut self) {
        while self.json.get(self.pos).copied().is_some_and(is_whitespace) {
            self.pos += 1;
        }
    }

    fn value(&mut self, role: Role) {
        self.skip_whitespace();
        match (self.json.get(self.pos), role) {
            (Some(b'{'), Role::Object | Role::Metadata) => self.object(role),
            (Some(b'['), Role::Items) => self.items(),
            _ => {
                let end = end_of_value(self.json, self.pos);
                copy_compact(self.out, &self.json[self.pos..end]);
                self.pos = end;
            }
        }
    }

    fn object(&mut self, role: Role) {
        self.pos += 1;
        self.out.push(b'{');
        let mut first = true;
        loop {
            self.skip_whitespace();
            match self.json[self.pos] {
                b'}' => break,
                b',' => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                _ => {}
            }
            let key_start = self.pos;
            self.pos = end_of_string(self.json, key_start);
            let key = &self.json[key_start..self.pos];
            self.skip_whitespace();
            // The colon.
            self.pos += 1;
            let child = match role {
                Role::Object if key_is(key, "metadata") => Role::Metadata,
                Role::Object if key_is(key, "items") => Role::Items,
                Role::Metadata if key_is(key, "managedFields") => {
                    self.skip_whitespace();
                    self.pos = end_of_value(self.json, self.pos);
                    continue;
                }
                _ => Role::Other,
            };
            if !first {
                self.out.push(b',');
            }
            first = false;
            self.out.extend_from_slice(key);
            self.out.push(b':');
            self.value(child);
        }
        self.pos += 1;
        self.out.push(b'}');
    }

    fn items(&mut self) {
        self.pos += 1;
        self.out.push(b'[');
        loop {
            self.skip_whitespace();
            match self.json[self.pos] {
                b']' => break,
                b',' => {
                    self.pos += 1;
                    self.out.push(b',');
                }
                _ => {}
            }
            self.value(Role::Object);
        }
        self.pos += 1;
        self.out.push(b']');
    }
}

/// Whether the member name `key` (with its quotes, maybe escaped) is `name`.
fn key_is(key: &[u8], name: &str) -> bool {
    if key.contains(&b'\\') {
        serde_json::from_slice::<String>(key).is_ok_and(|k| k == name)
    } else {
        key.len() == name.len() + 2 && &key[1..key.len() - 1] == name.as_bytes()
    }
}

/// The end of the string starting at `start` (its opening quote), past
/// its closing quote.
fn end_of_string(json: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    loop {
        match json[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
}

/// The end of the value starting at `start` (not whitespace) in valid JSON.
fn end_of_value(json: &[u8], start: usize) -> usize {
    match json[start] {
        b'"' => end_of_string(json, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match json[i] {
                    b'"' => {
                        i = end_of_string(json, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while i < json.len()
                && !matches!(json[i], b',' | b'}' | b']')
                && !is_whitespace(json[i])
            {
                i += 1;
            }
            i
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_tokens_are_never_recorded() {
        let request = |verb: &str, group: &str, resource: &str, sub: &str| {
            RequestAttributes::resource_request(verb, group, resource).with_subresource(sub)
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

    #[test]
    fn managed_fields_go_and_the_rest_stays_as_sent() {
        let strip = |text: &str| {
            let mut out = Vec::new();
            assert!(push_compact(&mut out, text.as_bytes(), true), "{text}");
            String::from_utf8(out).unwrap()
        };
        // Members out of alphabetical order, a number beyond u64 and f64's
        // digits, escapes left as sent; managedFields first, last, alone.
        assert_eq!(
            strip(
                r#"{"kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [{"manager": "m"}], "uid": "u"},
                    "data": {"z": 123456789012345678901234567890, "a": 0.1000000000000000055511151231257827, "e": "\u00e9\/"}}"#
            ),
            r#"{"kind":"ConfigMap","metadata":{"name":"c","uid":"u"},"data":{"z":123456789012345678901234567890,"a":0.1000000000000000055511151231257827,"e":"\u00e9\/"}}"#
        );
        assert_eq!(
            strip(r#"{"metadata":{"managedFields":[],"name":"c"},"kind":"Pod"}"#),
            r#"{"metadata":{"name":"c"},"kind":"Pod"}"#
        );
        assert_eq!(
            strip(r#"{"metadata":{"name":"c","managedFields":[{"f":{"}":"]"}}]}}"#),
            r#"{"metadata":{"name":"c"}}"#
        );
        assert_eq!(
            strip(r#"{"metadata":{"managed\u0046ields":null}}"#),
            r#"{"metadata":{}}"#
        );
        // A list: each item's, not deeper ones nor other members'.
        assert_eq!(
            strip(
                r#"{"kind":"List","metadata":{"resourceVersion":"9"},"items":[
                    {"metadata":{"name":"a","managedFields":[1]},"spec":{"metadata":{"managedFields":[2]}}},
                    {"metadata":{"managedFields":[3],"name":"b"}}, 7]}"#
            ),
            r#"{"kind":"List","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a"},"spec":{"metadata":{"managedFields":[2]}}},{"metadata":{"name":"b"}},7]}"#
        );
        // Not an object, or no metadata: only compacted.
        assert_eq!(strip(" [1, {\"metadata\": 2}] "), r#"[1,{"metadata":2}]"#);
        assert_eq!(strip("\"x\""), "\"x\"");
        assert_eq!(strip(r#"{"metadata": "m"}"#), r#"{"metadata":"m"}"#);
        // Not JSON: nothing written, as without stripping.
        for text in [
            &b"{\"metadata\": {\"managedFields\": "[..],
            b"kind: Pod\n",
            b"k8s\0\n",
        ] {
            let mut out = Vec::new();
            assert!(!push_compact(&mut out, text, true));
            assert!(out.is_empty());
        }
    }

    mod properties {
        use proptest::prelude::*;
        use serde_json::Value;

        use super::push_compact;

        /// What stripping means, on the decoded object.
        fn strip(value: &mut Value) {
            if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("managedFields");
            }
            if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
                items.iter_mut().for_each(strip);
            }
        }

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                "[a-z\"\\\\ \n{}\\[\\],:]{0,4}".prop_map(Value::from),
            ];
            leaf.prop_recursive(5, 48, 4, |inner| {
                let key = prop::sample::select(vec![
                    "metadata",
                    "managedFields",
                    "items",
                    "name",
                    "a\"b",
                ])
                .prop_map(str::to_owned);
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map(key, inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// The text pass removes exactly what removing the member from
            /// the decoded object does, and leaves one line.
            #[test]
            fn stripping_the_text_is_stripping_the_object(value in json(), pretty in any::<bool>()) {
                let text = if pretty {
                    serde_json::to_vec_pretty(&value).unwrap()
                } else {
                    serde_json::to_vec(&value).unwrap()
                };
                let mut out = Vec::new();
                prop_assert!(push_compact(&mut out, &text, true));
                prop_assert!(!out.contains(&b'\n'));
                let mut expected = value;
                strip(&mut expected);
                prop_assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), expected);
            }
        }
    }
}
