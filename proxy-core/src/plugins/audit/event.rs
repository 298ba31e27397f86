//! The `audit.k8s.io/v1` `Event`, as kube-apiserver writes it
//! (`staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`): one JSON
//! object per line, so tools that read kube-apiserver's audit log read
//! Paddock's.
//!
//! An [`Event`] borrows what it is made from: the request's context, what
//! the request phase noted, and a few numbers. The worker writes its JSON
//! straight from those (see `plugins::json`) into the sink's buffer, at
//! no allocation (but a query, an IPv6 source address).

use std::{
    borrow::Cow,
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Weak,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use http::{HeaderValue, Method};

use super::{
    objects::{not_json, push_compact, Objects, Recorded},
    policy::{RequestAuditConfig, Stage},
};
use crate::{
    authn::Identity,
    context::{LoginOutcome, RequestContext},
    plugins::{
        json::{push_seconds, push_str, push_str_array, push_str_contents, push_u64, Object},
        writer::push_timestamp,
    },
    status::Status,
};

/// What the request phase learned, kept for every stage's event.
#[derive(Debug)]
pub(crate) struct Noted {
    pub(crate) decision: RequestAuditConfig,
    /// When the request arrived, by the wall clock: set by the first event
    /// (from its own timestamp, without reading the clock again), so every
    /// stage's event carries the same `requestReceivedTimestamp`.
    pub(crate) received: Received,
    /// The `User-Agent` as received (a reference into the request's bytes).
    pub(crate) user_agent: Option<HeaderValue>,
    /// The query, on proxied requests only.
    pub(crate) query: Option<String>,
}

/// One audit event, to be written.
#[derive(Debug)]
pub(crate) struct Event<'a> {
    pub(crate) stage: Stage,
    pub(crate) context: &'a RequestContext,
    pub(crate) noted: &'a Noted,
    /// `None` for `RequestReceived`.
    pub(crate) response: Option<ResponseFacts>,
    /// The objects recorded at `Request` and `RequestResponse`, on
    /// `ResponseComplete`.
    pub(crate) objects: Option<Box<Objects>>,
    pub(crate) at: SystemTime,
}

/// The response as far as an event records it.
#[derive(Debug, Clone)]
pub(crate) struct ResponseFacts {
    pub(crate) code: u16,
    /// The Status Paddock answered with itself, if it did.
    pub(crate) failure: Option<Arc<Status>>,
    /// On `ResponseComplete`: how the body ended.
    pub(crate) end: Option<End>,
}

/// How a response body (or an upgraded session) ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct End {
    pub(crate) bytes_sent: u64,
    /// Bytes from the client, for an upgraded session only.
    pub(crate) bytes_received: Option<u64>,
    pub(crate) duration: Duration,
    pub(crate) complete: bool,
}

/// What Kubernetes would call the request: verb, and the resource when it
/// is one. Borrowed from the context; the policy matches on it and the
/// event names it.
pub(crate) struct Target<'a> {
    pub(crate) verb: Cow<'a, str>,
    pub(crate) is_resource: bool,
    pub(crate) api_group: &'a str,
    pub(crate) api_version: &'a str,
    pub(crate) resource: &'a str,
    pub(crate) subresource: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    /// The path non-resource rules match.
    pub(crate) path: &'a str,
}

impl<'a> Target<'a> {
    pub(crate) fn of(context: &'a RequestContext) -> Self {
        if let Some(a) = context.attributes() {
            return Self {
                verb: if a.verb.is_empty() {
                    method_verb(&context.method)
                } else {
                    Cow::Borrowed(&a.verb)
                },
                is_resource: a.is_resource_request,
                api_group: &a.api_group,
                api_version: &a.api_version,
                resource: &a.resource,
                subresource: &a.subresource,
                namespace: &a.namespace,
                name: &a.name,
                path: &a.path,
            };
        }
        let non_resource = Self {
            verb: method_verb(&context.method),
            is_resource: false,
            api_group: "",
            api_version: "",
            resource: "",
            subresource: "",
            namespace: "",
            name: "",
            path: &context.path,
        };
        // Paddock's own API: /paddock/v1/<resource>[/<name>[/<sub>...]].
        let Some(rest) = context.path.strip_prefix("/paddock/v1/") else {
            return non_resource;
        };
        let mut segments = rest.trim_end_matches('/').splitn(3, '/');
        let resource = segments.next().unwrap_or_default();
        if resource.is_empty() {
            return non_resource;
        }
        let name = segments.next().unwrap_or_default();
        let subresource = segments.next().unwrap_or_default();
        let collection = matches!(
            resource,
            "users" | "tokens" | "bindings" | "projects" | "principals"
        );
        let verb = match context.method {
            Method::GET | Method::HEAD if collection && name.is_empty() => "list".into(),
            Method::GET | Method::HEAD => "get".into(),
            Method::POST => "create".into(),
            Method::PUT => "update".into(),
            Method::PATCH => "patch".into(),
            Method::DELETE => "delete".into(),
            ref other => other.as_str().to_ascii_lowercase().into(),
        };
        Self {
            verb,
            is_resource: true,
            api_group: "paddock.io",
            api_version: "v1",
            resource,
            subresource,
            namespace: "",
            name,
            path: &context.path,
        }
    }
}

/// The verb of a non-resource request: the lower-case method.
fn method_verb(method: &Method) -> Cow<'static, str> {
    match *method {
        Method::GET => "get".into(),
        Method::HEAD => "head".into(),
        Method::POST => "post".into(),
        Method::PUT => "put".into(),
        Method::PATCH => "patch".into(),
        Method::DELETE => "delete".into(),
        Method::OPTIONS => "options".into(),
        ref other => other.as_str().to_ascii_lowercase().into(),
    }
}

impl Noted {
    /// Sets when the request arrived, from an event written `since_arrival`
    /// after it at `at`, unless an earlier event did.
    pub(crate) fn arrived(&self, at: SystemTime, since_arrival: Duration) {
        self.received
            .set_once(at.checked_sub(since_arrival).unwrap_or(at));
    }
}

/// A wall-clock time set once, by whichever event comes first: nanoseconds
/// since the Unix epoch, plus one (0 is "not yet"). A `OnceLock` did the
/// same for about 100 instructions a request; this is one exchange.
#[derive(Debug, Default)]
pub(crate) struct Received(AtomicU64);

impl Received {
    fn set_once(&self, at: SystemTime) {
        let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let nanos = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX - 1) + 1;
        let _ = self
            .0
            .compare_exchange(0, nanos, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn get(&self) -> Option<SystemTime> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(UNIX_EPOCH + Duration::from_nanos(nanos - 1)),
        }
    }
}

impl From<SystemTime> for Received {
    fn from(at: SystemTime) -> Self {
        let received = Self::default();
        received.set_once(at);
        received
    }
}

/// How many identities' `user` objects an [`EventWriter`] keeps.
const CACHED_USERS: usize = 16;

/// Writes events' JSON, keeping the `user` object of the last few
/// identities seen: an authenticator hands out the same `Arc` for a
/// credential while it caches it, an identity never changes, and its
/// object was a quarter of the cost of an event. One per thread (see
/// [`EventWriter::with`]).
#[derive(Debug, Default)]
pub(crate) struct EventWriter {
    /// By identity; the `Weak` keeps the allocation (not the identity)
    /// alive, so no other identity can take its address while it is here.
    users: Vec<(Weak<Identity>, Box<[u8]>)>,
    /// The entry to replace next once full.
    next: usize,
}

impl EventWriter {
    /// Runs `f` with this thread's writer.
    pub(crate) fn with<R>(f: impl FnOnce(&mut Self) -> R) -> R {
        thread_local! {
            static WRITER: std::cell::RefCell<EventWriter> = std::cell::RefCell::default();
        }
        WRITER.with_borrow_mut(f)
    }

    /// Appends `event` as one JSON object (no newline).
    pub(crate) fn write(&mut self, event: &Event<'_>, out: &mut Vec<u8>) {
        event.write_json(out, self);
    }

    /// Appends the `user` object of `identity`.
    fn user(&mut self, identity: &Arc<Identity>, out: &mut Vec<u8>) {
        let known = self
            .users
            .iter()
            .find(|(known, _)| std::ptr::eq(known.as_ptr(), Arc::as_ptr(identity)));
        if let Some((_, json)) = known {
            out.extend_from_slice(json);
            return;
        }
        let start = out.len();
        User::identity(identity).write_json(out);
        let entry = (Arc::downgrade(identity), out[start..].into());
        if self.users.len() < CACHED_USERS {
            self.users.push(entry);
        } else {
            self.users[self.next] = entry;
            self.next = (self.next + 1) % CACHED_USERS;
        }
    }
}

impl Event<'_> {
    /// Appends the event as one JSON object (no newline); see
    /// [`EventWriter::write`].
    fn write_json(&self, out: &mut Vec<u8>, writer: &mut EventWriter) {
        let context = self.context;
        let noted = self.noted;
        let target = Target::of(context);
        let mut event = Object::open(out);
        event.literal(r#""kind":"Event","apiVersion":"audit.k8s.io/v1""#);
        event.literal_str("level", noted.decision.level.as_str());
        event.str("auditID", &context.id);
        event.literal_str("stage", self.stage.as_str());
        let uri = event.key("requestURI");
        uri.push(b'"');
        push_str_contents(uri, &context.path);
        if let Some(query) = &noted.query {
            uri.push(b'?');
            push_str_contents(uri, query);
        }
        uri.push(b'"');
        event.str("verb", &target.verb);
        match context.identity() {
            Some(identity) => writer.user(identity, event.key("user")),
            None => User::of(context).write_json(event.key("user")),
        }
        if let Some(identity) = context.impersonated() {
            writer.user(identity, event.key("impersonatedUser"));
        }
        if let Some(addr) = context.client_addr {
            push_ip_array(event.key("sourceIPs"), addr.ip());
        }
        if let Some(agent) = noted.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            push_str(event.key("userAgent"), &user_agent(agent));
        }
        if target.is_resource {
            let mut object = Object::open(event.key("objectRef"));
            for (key, value) in [
                ("resource", target.resource),
                ("namespace", target.namespace),
                ("name", target.name),
                ("apiGroup", target.api_group),
                ("apiVersion", target.api_version),
                ("subresource", target.subresource),
            ] {
                if !value.is_empty() {
                    object.str(key, value);
                }
            }
            object.close();
        }
        if let Some(response) = &self.response {
            let mut status = Object::open(event.key("responseStatus"));
            status.key("metadata").extend_from_slice(b"{}");
            match &response.failure {
                // The code alone on success (as kube-apiserver); status,
                // reason and message when Paddock answered with a failure.
                Some(failure) => {
                    status.str("status", "Failure");
                    status.str("message", &failure.message);
                    status.str("reason", failure.reason);
                    status.u64("code", failure.code.into());
                }
                None => status.u64("code", response.code.into()),
            }
            status.close();
        }
        // Written before the annotations, which say why one is missing.
        let mut omitted = [None, None];
        if let Some(objects) = &self.objects {
            for ((key, object), why) in [
                ("requestObject", &objects.request),
                ("responseObject", &objects.response),
            ]
            .into_iter()
            .zip(&mut omitted)
            {
                *why = match object {
                    Some(Recorded::Json(json)) => {
                        let omit = noted.decision.omit_managed_fields;
                        let written = event.try_member(key, |out| push_compact(out, json, omit));
                        (!written).then(|| not_json(json))
                    }
                    Some(Recorded::Omitted(why)) => Some(*why),
                    None => None,
                };
            }
        }
        let received = noted.received.get().unwrap_or(self.at);
        push_timestamp_str(event.key("requestReceivedTimestamp"), received);
        push_timestamp_str(event.key("stageTimestamp"), self.at);
        let end = self.response.as_ref().and_then(|r| r.end);
        if end.is_some()
            || context.decision().is_some()
            || context.cluster().is_some()
            || context.login().is_some()
            || omitted.iter().any(Option::is_some)
        {
            write_annotations(event.key("annotations"), context, end, omitted);
        }
        event.close();
    }

    /// The event as a JSON value, for tests.
    #[cfg(test)]
    pub(crate) fn to_value(&self) -> serde_json::Value {
        let mut out = Vec::new();
        EventWriter::default().write(self, &mut out);
        serde_json::from_slice(&out).expect("an event is valid JSON")
    }
}

/// `["<ip>"]`; an IPv4 address written by hand (its `Display` cost more
/// than the rest of the array).
fn push_ip_array(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            out.extend_from_slice(b"[\"");
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                push_u64(out, octet.into());
            }
            out.extend_from_slice(b"\"]");
        }
        std::net::IpAddr::V6(_) => push_str_array(out, [ip.to_string().as_str()]),
    }
}

/// `"2026-12-01T15:10:45.123456Z"`: RFC 3339 in UTC with microseconds, as
/// kube-apiserver writes `metav1.MicroTime`.
fn push_timestamp_str(out: &mut Vec<u8>, at: SystemTime) {
    out.push(b'"');
    push_timestamp(out, at);
    out.push(b'"');
}

/// The `User-Agent`, cut to 1024 bytes as kube-apiserver cuts it
/// (`maxUserAgentLength` in `staging/src/k8s.io/apiserver/pkg/audit/request.go`):
/// the caller chooses it, and one event should not grow by a header's worth.
pub(crate) fn user_agent(value: &str) -> Cow<'_, str> {
    const MAX: usize = 1024;
    if value.len() <= MAX {
        return Cow::Borrowed(value);
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}...TRUNCATED", &value[..end]))
}

/// `authentication.k8s.io/v1` `UserInfo`: the identity's fields, and
/// Paddock's principal, provider and token id under `extra`.
struct User<'a> {
    username: &'a str,
    uid: Option<&'a str>,
    groups: &'a [String],
    extra: Option<&'a BTreeMap<String, Vec<String>>>,
    principal: Option<&'a str>,
    provider: Option<&'a str>,
    token_id: Option<&'a str>,
}

impl<'a> User<'a> {
    /// The caller; for a login that authenticated them, the login's user.
    fn of(context: &'a RequestContext) -> Self {
        if let Some(identity) = context.identity() {
            return Self::identity(identity);
        }
        let mut user = Self {
            username: "",
            uid: None,
            groups: &[],
            extra: None,
            principal: None,
            provider: None,
            token_id: None,
        };
        if let Some(login) = context.login() {
            if let LoginOutcome::Succeeded { user: id } = &login.outcome {
                user.username = &login.username;
                user.principal = Some(id);
                user.provider = Some(&login.provider);
            }
        }
        user
    }

    fn identity(identity: &'a Identity) -> Self {
        Self {
            username: &identity.username,
            uid: identity.uid.as_deref(),
            groups: &identity.groups,
            extra: Some(&identity.extra),
            principal: Some(&identity.user),
            provider: Some(&identity.provider),
            token_id: identity.token_id.as_deref(),
        }
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let mut user = Object::open(out);
        if !self.username.is_empty() {
            user.str("username", self.username);
        }
        if let Some(uid) = self.uid {
            user.str("uid", uid);
        }
        if !self.groups.is_empty() {
            push_str_array(user.key("groups"), self.groups.iter().map(String::as_str));
        }
        // The identity's extra attributes merged with Paddock's own keys
        // (which win), in key order as a Go map is written.
        let own = [
            ("paddock.io/principal", self.principal),
            ("paddock.io/provider", self.provider),
            ("paddock.io/token-id", self.token_id),
        ];
        let is_own = |key: &str| own.iter().any(|(k, v)| v.is_some() && *k == key);
        let mut theirs = self
            .extra
            .into_iter()
            .flatten()
            .filter(|(k, _)| !is_own(k))
            .peekable();
        if own.iter().any(|(_, v)| v.is_some()) || theirs.peek().is_some() {
            let mut extra = Object::open(user.key("extra"));
            for (key, value) in own {
                let Some(value) = value else { continue };
                while let Some((k, v)) = theirs.next_if(|(k, _)| k.as_str() < key) {
                    push_str_array(extra.escaped_key(k), v.iter().map(String::as_str));
                }
                push_str_array(extra.key(key), [value]);
            }
            for (k, v) in theirs {
                push_str_array(extra.escaped_key(k), v.iter().map(String::as_str));
            }
            extra.close();
        }
        user.close();
    }
}

/// The annotations, in key order: truncation, the decision, bytes, the
/// cluster, duration, the login, objects left out.
fn write_annotations(
    out: &mut Vec<u8>,
    context: &RequestContext,
    end: Option<End>,
    [request_omitted, response_omitted]: [Option<&'static str>; 2],
) {
    let mut annotations = Object::open(out);
    if request_omitted == Some("too-large") || response_omitted == Some("too-large") {
        annotations.str("audit.k8s.io/truncated", "true");
    }
    if let Some(decision) = context.decision() {
        let verdict = if decision.allowed { "allow" } else { "forbid" };
        annotations.literal_str("authorization.k8s.io/decision", verdict);
        annotations.str("authorization.k8s.io/reason", &decision.reason);
    }
    let quoted_u64 = |out: &mut Vec<u8>, n: u64| {
        out.push(b'"');
        push_u64(out, n);
        out.push(b'"');
    };
    if let Some(end) = end {
        if let Some(received) = end.bytes_received {
            quoted_u64(annotations.key("paddock.io/bytes-received"), received);
        }
        quoted_u64(annotations.key("paddock.io/bytes-sent"), end.bytes_sent);
    }
    if let Some(cluster) = context.cluster() {
        annotations.str("paddock.io/cluster", cluster);
    }
    if let Some(end) = end {
        if !end.complete {
            annotations.str("paddock.io/complete", "false");
        }
        let out = annotations.key("paddock.io/duration-seconds");
        out.push(b'"');
        push_seconds(out, end.duration);
        out.push(b'"');
    }
    if let Some(login) = context.login() {
        if let LoginOutcome::Failed { reason } = &login.outcome {
            annotations.str("paddock.io/login-failure", reason);
        }
        annotations.str("paddock.io/login-provider", &login.provider);
        annotations.str("paddock.io/login-username", &login.username);
    }
    if let Some(why) = request_omitted {
        annotations.str("paddock.io/request-object", why);
    }
    if let Some(why) = response_omitted {
        annotations.str("paddock.io/response-object", why);
    }
    annotations.close();
}

#[cfg(test)]
pub(crate) mod tests;
