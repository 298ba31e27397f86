//! The audit log: Kubernetes `audit.k8s.io/v1` `Event`s, one JSON object
//! per line, for every request a [`Policy`] selects — proxied requests and
//! Paddock's own endpoints (logins, tokens, users, bindings) alike.
//!
//! Events and stages follow kube-apiserver
//! (`staging/src/k8s.io/apiserver/pkg/endpoints/filters/audit.go`):
//! - `RequestReceived` once the caller is known, unless the policy omits
//!   it (the default policy does: the complete event says all it would,
//!   at half the volume); a request refused before authentication has none;
//! - `ResponseStarted` when the response headers go out, for long-running
//!   requests only (watch, exec, attach, port-forward, `logs -f`, proxy);
//! - `ResponseComplete` when the response body ends: for a watch, when the
//!   watch closes.
//!
//! Each event names the caller (`user`, with Paddock's principal, provider
//! and token id under `extra` as `paddock.io/principal`,
//! `paddock.io/provider`, `paddock.io/token-id`), the identity sent
//! downstream when the caller used `--as` (`impersonatedUser`), the peer
//! address (`sourceIPs`: Paddock removes caller-sent `X-Forwarded-For`, so
//! only the connection's address is known), `userAgent`, `verb`,
//! `objectRef`, `responseStatus` (with reason and message when Paddock
//! refused the request itself) and the annotations
//! `authorization.k8s.io/decision` (`allow`/`forbid`),
//! `authorization.k8s.io/reason`, `paddock.io/cluster`, and on
//! `ResponseComplete` `paddock.io/bytes-sent` (response body bytes) and
//! `paddock.io/duration-seconds`. An exec, attach or port-forward session
//! gets its `ResponseComplete` when the connection closes, with the bytes
//! relayed each way (`paddock.io/bytes-sent` to the client,
//! `paddock.io/bytes-received` from it). A login adds `paddock.io/login-provider`,
//! `paddock.io/login-username` and, on failure, `paddock.io/login-failure`.
//!
//! Paddock's `/paddock/v1/<resource>[/<name>[/<subresource>]]` endpoints are
//! resource requests in the `paddock.io` group, `v1`: a token revocation is
//! `delete` on `tokens` named by its id, a login `create` on `login`.
//!
//! **No bodies.** The `Request` and `RequestResponse` levels are matched and
//! written as the event's `level`, but request and response bodies are not
//! captured yet: every event carries what `Metadata` carries. Nothing
//! secret is ever written: no header values but `User-Agent`, no query on
//! Paddock's own endpoints (the GitHub callback's code), no bodies.
//!
//! Writing happens off the request path, each sink on its own thread
//! behind a bounded queue: see [`AuditSink`] (a file rotated by size,
//! [`FileSink`]; batches POSTed to a webhook, [`WebhookSink`]).
//!
//! ```no_run
//! use proxy_core::{
//!     plugins::audit::{Audit, AuditSink, FileSink, Policy, QueueOptions, WebhookSink},
//!     Proxy,
//! };
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = Policy::from_yaml(&std::fs::read_to_string("audit-policy.yaml")?)?;
//! let file = AuditSink::file(FileSink::new("/var/log/paddock/audit.log"), QueueOptions::default())?;
//! let webhook = AuditSink::webhook(WebhookSink::new("https://audit.example.com/events")?, QueueOptions::default())?;
//! let audit = Audit::new(policy, file).sink(webhook);
//! let proxy = Proxy::builder().plugin(audit.clone()).build()?;
//! // Later: events dropped because the disk could not keep up.
//! let _dropped: u64 = audit.dropped();
//! # Ok(()) }
//! ```

mod event;
mod policy;
mod sink;
mod webhook;

use std::{collections::BTreeMap, sync::Arc, time::SystemTime};

use http::{request, response, Method, StatusCode};

use self::event::{Event, ObjectReference, ResponseStatus, UserInfo};
pub use self::{
    policy::{
        Attributes, GroupResources, Level, Policy, PolicyError, PolicyRule, RequestAuditConfig,
        Stage,
    },
    sink::{AuditSink, FileSink, OnFull, QueueOptions},
    webhook::{WebhookError, WebhookSink},
};
use crate::{
    authn::Identity,
    context::{LoginOutcome, RequestContext},
    error::ProxyError,
    future::ReadyOrBoxed,
    plugin::{AccessRecord, Flow, Plugin},
    status::Status,
};

/// The audit plugin: add it with [`ProxyBuilder::plugin`](crate::ProxyBuilder::plugin).
/// Cheap to clone; clones share the sinks (and their counts).
#[derive(Debug, Clone)]
pub struct Audit {
    policy: Arc<Policy>,
    sinks: Vec<AuditSink>,
}

impl Audit {
    /// Records what `policy` selects into `sink`.
    pub fn new(policy: Policy, sink: AuditSink) -> Self {
        Self {
            policy: Arc::new(policy),
            sinks: vec![sink],
        }
    }

    /// Records every event into `sink` too (a file and a webhook, say).
    pub fn sink(mut self, sink: AuditSink) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Events lost by the sinks: to a full queue, or a webhook batch that
    /// never got through.
    pub fn dropped(&self) -> u64 {
        self.sinks.iter().map(AuditSink::dropped).sum()
    }

    /// Events waiting in the sinks' queues.
    pub fn queued(&self) -> u64 {
        self.sinks.iter().map(AuditSink::queued).sum()
    }

    fn send(&self, event: Event) {
        if let Some((last, others)) = self.sinks.split_last() {
            for sink in others {
                sink.send(event.clone());
            }
            last.send(event);
        }
    }
}

/// What the request phase learned, kept for the response phases.
#[derive(Debug)]
struct Noted {
    decision: RequestAuditConfig,
    /// When the request arrived, by the wall clock: computed once, so every
    /// stage's event carries the same `requestReceivedTimestamp`.
    received: SystemTime,
    user_agent: Option<String>,
    request_uri: String,
}

/// The plugin's per-request state: `None` when the policy records nothing.
#[derive(Debug, Clone)]
struct State(Option<Arc<Noted>>);

/// A failure Status Paddock answered with, kept from `on_response` for
/// `on_log`.
#[derive(Debug, Clone)]
struct Failure(Arc<Status>);

impl Plugin for Audit {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn on_request<'a>(
        &'a self,
        context: &'a RequestContext,
        request: &'a mut request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        let noted = self.note(context, Some(request));
        if let Some(noted) = noted
            .as_ref()
            .filter(|n| n.decision.records(Stage::RequestReceived))
        {
            let mut event =
                self.event(context, noted, Stage::RequestReceived, StatusCode::OK, None);
            event.response_status = None;
            self.send(event);
        }
        context.state().insert(State(noted));
        ReadyOrBoxed::ready(Ok(Flow::Continue))
    }

    fn on_response<'a>(
        &'a self,
        context: &'a RequestContext,
        response: &'a mut response::Parts,
    ) -> ReadyOrBoxed<'a, ()> {
        let state = context.state();
        // Refused before authentication: on_request never ran.
        let noted = match state.get::<State>() {
            Some(State(noted)) => noted,
            None => {
                let noted = self.note(context, None);
                state.insert(State(noted.clone()));
                noted
            }
        };
        let Some(noted) = noted else {
            return ReadyOrBoxed::ready(());
        };
        let status = response.extensions.get::<Status>().cloned().map(Arc::new);
        let long_running = response.status == StatusCode::SWITCHING_PROTOCOLS
            || context.attributes().is_some_and(|a| a.is_long_running());
        if long_running && noted.decision.records(Stage::ResponseStarted) {
            let event = self.event(
                context,
                &noted,
                Stage::ResponseStarted,
                response.status,
                status.as_deref(),
            );
            self.send(event);
        }
        if let Some(status) = status {
            state.insert(Failure(status));
        }
        ReadyOrBoxed::ready(())
    }

    fn on_log(&self, record: &AccessRecord<'_>) {
        let state = record.context.state();
        let Some(State(Some(noted))) = state.get::<State>() else {
            return;
        };
        if !noted.decision.records(Stage::ResponseComplete) {
            return;
        }
        let failure = state.get::<Failure>();
        let mut event = self.event(
            record.context,
            &noted,
            Stage::ResponseComplete,
            record.status,
            failure.as_ref().map(|Failure(status)| &**status),
        );
        event
            .annotations
            .insert("paddock.io/bytes-sent", record.bytes.to_string());
        if record.status == StatusCode::SWITCHING_PROTOCOLS {
            event.annotations.insert(
                "paddock.io/bytes-received",
                record.bytes_received.to_string(),
            );
        }
        event.annotations.insert(
            "paddock.io/duration-seconds",
            format!("{:.6}", record.duration.as_secs_f64()),
        );
        if !record.complete {
            event
                .annotations
                .insert("paddock.io/complete", "false".to_owned());
        }
        self.send(event);
    }
}

/// What Kubernetes would call the request: verb, and the resource when it
/// is one.
struct Target<'a> {
    verb: String,
    is_resource: bool,
    api_group: &'a str,
    api_version: &'a str,
    resource: &'a str,
    subresource: String,
    namespace: &'a str,
    name: &'a str,
    /// The path non-resource rules match.
    path: &'a str,
}

impl<'a> Target<'a> {
    fn of(context: &'a RequestContext) -> Self {
        if let Some(a) = context.attributes() {
            return Self {
                verb: if a.verb.is_empty() {
                    method_verb(&context.method)
                } else {
                    a.verb.clone()
                },
                is_resource: a.is_resource_request,
                api_group: &a.api_group,
                api_version: &a.api_version,
                resource: &a.resource,
                subresource: a.subresource.clone(),
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
            subresource: String::new(),
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
        let subresource = segments.next().unwrap_or_default().to_owned();
        let collection = matches!(
            resource,
            "users" | "tokens" | "bindings" | "projects" | "principals"
        );
        let verb = match context.method {
            Method::GET | Method::HEAD if collection && name.is_empty() => "list".to_owned(),
            Method::GET | Method::HEAD => "get".to_owned(),
            Method::POST => "create".to_owned(),
            Method::PUT => "update".to_owned(),
            Method::PATCH => "patch".to_owned(),
            Method::DELETE => "delete".to_owned(),
            ref other => other.as_str().to_ascii_lowercase(),
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

    fn object_ref(&self) -> Option<ObjectReference> {
        self.is_resource.then(|| ObjectReference {
            resource: self.resource.to_owned(),
            namespace: self.namespace.to_owned(),
            name: self.name.to_owned(),
            api_group: self.api_group.to_owned(),
            api_version: self.api_version.to_owned(),
            subresource: self.subresource.clone(),
        })
    }
}

/// The verb of a non-resource request: the lower-case method.
fn method_verb(method: &Method) -> String {
    method.as_str().to_ascii_lowercase()
}

impl Audit {
    /// The policy's decision, and what of the request is still at hand.
    /// The policy's verdict and, unless it is `None`, what the events will
    /// need of the request; `None` costs no allocation.
    fn note(
        &self,
        context: &RequestContext,
        request: Option<&request::Parts>,
    ) -> Option<Arc<Noted>> {
        let target = Target::of(context);
        let identity = context.identity();
        let names = identity.map(|i| [i.user.as_str(), i.username.as_str()]);
        let decision = self.policy.decide(&Attributes {
            user_names: names.as_ref().map_or(&[], |n| &n[..]),
            groups: identity.map_or(&[], |i| &i.groups[..]),
            verb: &target.verb,
            is_resource_request: target.is_resource,
            api_group: target.api_group,
            resource: target.resource,
            subresource: &target.subresource,
            namespace: target.namespace,
            name: target.name,
            path: target.path,
        });
        if decision.level == Level::None {
            return None;
        }
        let mut request_uri = context.path.clone();
        let mut user_agent = None;
        if let Some(request) = request {
            // Paddock's own endpoints keep their query out of the log: the
            // GitHub callback's carries an authorization code.
            if let Some(query) = request.uri.query() {
                if context.attributes().is_some() {
                    request_uri.push('?');
                    request_uri.push_str(query);
                }
            }
            user_agent = request
                .headers
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(user_agent_of);
        }
        let now = SystemTime::now();
        Some(Arc::new(Noted {
            decision,
            received: now.checked_sub(context.started.elapsed()).unwrap_or(now),
            user_agent,
            request_uri,
        }))
    }

    fn event(
        &self,
        context: &RequestContext,
        noted: &Noted,
        stage: Stage,
        code: StatusCode,
        failure: Option<&Status>,
    ) -> Event {
        let now = SystemTime::now();
        let target = Target::of(context);
        let mut annotations = BTreeMap::new();
        if let Some(decision) = context.decision() {
            let verdict = if decision.allowed { "allow" } else { "forbid" };
            annotations.insert("authorization.k8s.io/decision", verdict.to_owned());
            annotations.insert("authorization.k8s.io/reason", decision.reason.clone());
        }
        if let Some(cluster) = context.cluster() {
            annotations.insert("paddock.io/cluster", cluster.to_owned());
        }
        let mut user = context.identity().map(|i| user_info(i)).unwrap_or_default();
        if let Some(login) = context.login() {
            annotations.insert("paddock.io/login-provider", login.provider.clone());
            annotations.insert("paddock.io/login-username", login.username.clone());
            match &login.outcome {
                LoginOutcome::Succeeded { user: id } if user.username.is_empty() => {
                    // The login itself authenticated the caller.
                    user.username = login.username.clone();
                    user.extra
                        .insert("paddock.io/principal".to_owned(), vec![id.clone()]);
                    user.extra.insert(
                        "paddock.io/provider".to_owned(),
                        vec![login.provider.clone()],
                    );
                }
                LoginOutcome::Failed { reason } => {
                    annotations.insert("paddock.io/login-failure", reason.clone());
                }
                _ => {}
            }
        }
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: noted.decision.level,
            audit_id: context.id.clone(),
            stage,
            request_uri: noted.request_uri.clone(),
            verb: target.verb.clone(),
            user,
            impersonated_user: context.impersonated().map(|i| user_info(i)),
            source_ips: context
                .client_addr
                .map(|a| vec![a.ip().to_string()])
                .unwrap_or_default(),
            user_agent: noted.user_agent.clone(),
            object_ref: target.object_ref(),
            response_status: Some(response_status(code, failure)),
            request_received_timestamp: noted.received,
            stage_timestamp: now,
            annotations,
        }
    }
}

/// The `User-Agent`, cut to 1024 bytes as kube-apiserver cuts it
/// (`maxUserAgentLength` in `staging/src/k8s.io/apiserver/pkg/audit/request.go`):
/// the caller chooses it, and one event should not grow by a header's worth.
fn user_agent_of(value: &str) -> String {
    const MAX: usize = 1024;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...TRUNCATED", &value[..end])
}

fn user_info(identity: &Identity) -> UserInfo {
    let mut extra = identity.extra.clone();
    extra.insert(
        "paddock.io/principal".to_owned(),
        vec![identity.user.clone()],
    );
    extra.insert(
        "paddock.io/provider".to_owned(),
        vec![identity.provider.clone()],
    );
    if let Some(token) = &identity.token_id {
        extra.insert("paddock.io/token-id".to_owned(), vec![token.clone()]);
    }
    UserInfo {
        username: identity.username.clone(),
        uid: identity.uid.clone(),
        groups: identity.groups.clone(),
        extra,
    }
}

/// The code alone on success (as kube-apiserver); status, reason and message
/// when Paddock answered with a failure `Status`.
fn response_status(code: StatusCode, failure: Option<&Status>) -> ResponseStatus {
    match failure {
        Some(status) => ResponseStatus {
            status: Some("Failure"),
            message: Some(status.message.clone()),
            reason: Some(status.reason.to_owned()),
            code: status.code,
            ..ResponseStatus::default()
        },
        None => ResponseStatus {
            code: code.as_u16(),
            ..ResponseStatus::default()
        },
    }
}

impl crate::plugins::metrics::QueueStats for Audit {
    fn queued(&self) -> u64 {
        Audit::queued(self)
    }

    fn dropped(&self) -> u64 {
        Audit::dropped(self)
    }
}

#[cfg(test)]
mod tests;
