//! The `audit.k8s.io/v1` `Event`, as kube-apiserver writes it
//! (`staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`): one JSON
//! object per line, so tools that read kube-apiserver's audit log read
//! Paddock's.
//!
//! What the request path queues is not the event's JSON shape but what it
//! is made from: the request's context (a reference count), what the
//! request phase noted, and a few numbers. The sink's thread serialises it
//! straight from those, borrowing every string: building an event costs the
//! worker no allocation, and writing it costs the sink's thread none but
//! its line buffer.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    fmt,
    io::Cursor,
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::{HeaderValue, Method};
use serde::{ser::SerializeMap, Serialize, Serializer};

use super::policy::{RequestAuditConfig, Stage};
use crate::{
    authn::Identity,
    context::{LoginOutcome, RequestContext},
    plugins::writer::push_timestamp,
    status::Status,
};

/// What the request phase learned, kept for every stage's event.
#[derive(Debug)]
pub(crate) struct Noted {
    pub(crate) decision: RequestAuditConfig,
    /// When the request arrived, by the wall clock: computed once, so every
    /// stage's event carries the same `requestReceivedTimestamp`.
    pub(crate) received: SystemTime,
    /// The `User-Agent` as received (a reference into the request's bytes).
    pub(crate) user_agent: Option<HeaderValue>,
    /// The query, on proxied requests only.
    pub(crate) query: Option<String>,
}

/// One audit event, as queued.
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub(crate) stage: Stage,
    pub(crate) context: Arc<RequestContext>,
    pub(crate) noted: Arc<Noted>,
    /// `None` for `RequestReceived`.
    pub(crate) response: Option<ResponseFacts>,
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

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let context = &*self.context;
        let noted = &*self.noted;
        let target = Target::of(context);
        let user = User::of(context);
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("kind", "Event")?;
        map.serialize_entry("apiVersion", "audit.k8s.io/v1")?;
        map.serialize_entry("level", &noted.decision.level)?;
        map.serialize_entry("auditID", &context.id)?;
        map.serialize_entry("stage", &self.stage)?;
        map.serialize_entry(
            "requestURI",
            &Display(RequestUri(&context.path, noted.query.as_deref())),
        )?;
        map.serialize_entry("verb", &target.verb)?;
        map.serialize_entry("user", &user)?;
        if let Some(identity) = context.impersonated() {
            map.serialize_entry("impersonatedUser", &User::identity(identity))?;
        }
        if let Some(addr) = context.client_addr {
            map.serialize_entry("sourceIPs", &[Display(addr.ip())])?;
        }
        if let Some(agent) = noted.user_agent.as_ref().and_then(|v| v.to_str().ok()) {
            map.serialize_entry("userAgent", &UserAgent(agent))?;
        }
        if target.is_resource {
            map.serialize_entry("objectRef", &ObjectRef(&target))?;
        }
        if let Some(response) = &self.response {
            map.serialize_entry("responseStatus", &ResponseStatus(response))?;
        }
        map.serialize_entry("requestReceivedTimestamp", &Micros(noted.received))?;
        map.serialize_entry("stageTimestamp", &Micros(self.at))?;
        let annotations = Annotations {
            context,
            end: self.response.as_ref().and_then(|r| r.end),
        };
        if annotations.any() {
            map.serialize_entry("annotations", &annotations)?;
        }
        map.end()
    }
}

/// Serialises through `Display`, without an intermediate `String`.
struct Display<T>(T);

impl<T: fmt::Display> Serialize for Display<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// The path and, when kept, the query.
struct RequestUri<'a>(&'a str, Option<&'a str>);

impl fmt::Display for RequestUri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        if let Some(query) = self.1 {
            write!(f, "?{query}")?;
        }
        Ok(())
    }
}

/// The `User-Agent`, cut to 1024 bytes as kube-apiserver cuts it
/// (`maxUserAgentLength` in `staging/src/k8s.io/apiserver/pkg/audit/request.go`):
/// the caller chooses it, and one event should not grow by a header's worth.
pub(crate) struct UserAgent<'a>(pub(crate) &'a str);

impl fmt::Display for UserAgent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 1024;
        let value = self.0;
        if value.len() <= MAX {
            return f.write_str(value);
        }
        let mut end = MAX;
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        write!(f, "{}...TRUNCATED", &value[..end])
    }
}

impl Serialize for UserAgent<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
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

    /// Paddock's own extra keys, in key order.
    fn own(&self) -> [(&'static str, Option<&'a str>); 3] {
        [
            ("paddock.io/principal", self.principal),
            ("paddock.io/provider", self.provider),
            ("paddock.io/token-id", self.token_id),
        ]
    }
}

impl Serialize for User<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if !self.username.is_empty() {
            map.serialize_entry("username", self.username)?;
        }
        if let Some(uid) = self.uid {
            map.serialize_entry("uid", uid)?;
        }
        if !self.groups.is_empty() {
            map.serialize_entry("groups", self.groups)?;
        }
        let has_own = self.own().iter().any(|(_, v)| v.is_some());
        if has_own || self.extra.is_some_and(|e| !e.is_empty()) {
            map.serialize_entry("extra", &Extra(self))?;
        }
        map.end()
    }
}

/// The identity's extra attributes merged with Paddock's own keys (which
/// win), in key order as a Go map is written.
struct Extra<'a, 'b>(&'b User<'a>);

impl Serialize for Extra<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let own = self.0.own();
        let is_own = |key: &str| own.iter().any(|(k, v)| v.is_some() && *k == key);
        let mut theirs = self
            .0
            .extra
            .into_iter()
            .flatten()
            .filter(|(k, _)| !is_own(k))
            .peekable();
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in own {
            let Some(value) = value else { continue };
            while let Some((k, v)) = theirs.next_if(|(k, _)| k.as_str() < key) {
                map.serialize_entry(k, v)?;
            }
            map.serialize_entry(key, &[value])?;
        }
        for (k, v) in theirs {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The object a resource request is about; empty fields left out.
struct ObjectRef<'a, 'b>(&'b Target<'a>);

impl Serialize for ObjectRef<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in [
            ("resource", t.resource),
            ("namespace", t.namespace),
            ("name", t.name),
            ("apiGroup", t.api_group),
            ("apiVersion", t.api_version),
            ("subresource", t.subresource),
        ] {
            if !value.is_empty() {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// The `metav1.Status` of the response: the code alone on success (as
/// kube-apiserver); status, reason and message too on a failure Paddock
/// answered itself.
struct ResponseStatus<'a>(&'a ResponseFacts);

impl Serialize for ResponseStatus<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("metadata", &Empty {})?;
        match &self.0.failure {
            Some(status) => {
                map.serialize_entry("status", "Failure")?;
                map.serialize_entry("message", &status.message)?;
                map.serialize_entry("reason", status.reason)?;
                map.serialize_entry("code", &status.code)?;
            }
            None => map.serialize_entry("code", &self.0.code)?,
        }
        map.end()
    }
}

/// The annotations, in key order: the decision, the cluster, the login,
/// and on `ResponseComplete` bytes and duration.
struct Annotations<'a> {
    context: &'a RequestContext,
    end: Option<End>,
}

impl Annotations<'_> {
    fn any(&self) -> bool {
        let c = self.context;
        self.end.is_some() || c.decision().is_some() || c.cluster().is_some() || c.login().is_some()
    }
}

impl Serialize for Annotations<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let context = self.context;
        let mut map = serializer.serialize_map(None)?;
        if let Some(decision) = context.decision() {
            let verdict = if decision.allowed { "allow" } else { "forbid" };
            map.serialize_entry("authorization.k8s.io/decision", verdict)?;
            map.serialize_entry("authorization.k8s.io/reason", &decision.reason)?;
        }
        if let Some(end) = self.end {
            if let Some(received) = end.bytes_received {
                map.serialize_entry("paddock.io/bytes-received", &Display(received))?;
            }
            map.serialize_entry("paddock.io/bytes-sent", &Display(end.bytes_sent))?;
        }
        if let Some(cluster) = context.cluster() {
            map.serialize_entry("paddock.io/cluster", cluster)?;
        }
        if let Some(end) = self.end {
            if !end.complete {
                map.serialize_entry("paddock.io/complete", "false")?;
            }
            let seconds = Seconds(end.duration);
            map.serialize_entry("paddock.io/duration-seconds", &Display(seconds))?;
        }
        if let Some(login) = context.login() {
            if let LoginOutcome::Failed { reason } = &login.outcome {
                map.serialize_entry("paddock.io/login-failure", reason)?;
            }
            map.serialize_entry("paddock.io/login-provider", &login.provider)?;
            map.serialize_entry("paddock.io/login-username", &login.username)?;
        }
        map.end()
    }
}

/// Seconds with six decimals.
struct Seconds(Duration);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}", self.0.as_secs_f64())
    }
}

/// `{}`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Empty {}

/// RFC 3339 in UTC with microseconds, as kube-apiserver writes
/// `metav1.MicroTime`: `2026-12-01T15:10:45.123456Z`.
struct Micros(SystemTime);

impl Serialize for Micros {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = Cursor::new([0u8; 40]);
        push_timestamp(&mut buf, self.0);
        let len = buf.position() as usize;
        let text = std::str::from_utf8(&buf.get_ref()[..len]).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(text)
    }
}

#[cfg(test)]
pub(crate) mod tests;
