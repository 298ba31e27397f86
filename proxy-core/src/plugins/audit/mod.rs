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

use std::{sync::Arc, time::SystemTime};

use http::{request, response, StatusCode};

use self::event::{End, Event, Noted, ResponseFacts, Target};
pub use self::{
    policy::{
        Attributes, GroupResources, Level, Policy, PolicyError, PolicyRule, RequestAuditConfig,
        Stage,
    },
    sink::{AuditSink, FileSink, OnFull, QueueOptions},
    webhook::{WebhookError, WebhookSink},
};
use crate::{
    context::RequestContext,
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

    /// Reads [`dropped`](Self::dropped) without keeping the sinks open:
    /// for [`Metrics::count_drops`](super::metrics::Metrics::count_drops).
    pub fn drops(&self) -> impl Fn() -> u64 + Send + Sync + 'static {
        let counts: Vec<_> = self.sinks.iter().map(AuditSink::drop_count).collect();
        move || {
            counts
                .iter()
                .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
                .sum()
        }
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
            let shared = request.extensions.get::<Arc<RequestContext>>().cloned();
            let context = shared.unwrap_or_else(|| Arc::new(context.snapshot()));
            self.send(Event {
                stage: Stage::RequestReceived,
                context,
                noted: noted.clone(),
                response: None,
                at: SystemTime::now(),
            });
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
            // Long-running requests only, a few per second at most: a copy
            // of the context's facts is cheap enough here.
            self.send(Event {
                stage: Stage::ResponseStarted,
                context: Arc::new(context.snapshot()),
                noted,
                response: Some(ResponseFacts {
                    code: response.status.as_u16(),
                    failure: status.clone(),
                    end: None,
                }),
                at: SystemTime::now(),
            });
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
        let upgraded = record.status == StatusCode::SWITCHING_PROTOCOLS;
        self.send(Event {
            stage: Stage::ResponseComplete,
            context: record.context.clone(),
            noted,
            response: Some(ResponseFacts {
                code: record.status.as_u16(),
                failure: state.get::<Failure>().map(|Failure(status)| status),
                end: Some(End {
                    bytes_sent: record.bytes,
                    bytes_received: upgraded.then_some(record.bytes_received),
                    duration: record.duration,
                    complete: record.complete,
                }),
            }),
            at: SystemTime::now(),
        });
    }
}

impl Audit {
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
            subresource: target.subresource,
            namespace: target.namespace,
            name: target.name,
            path: target.path,
        });
        if decision.level == Level::None {
            return None;
        }
        // Paddock's own endpoints keep their query out of the log: the
        // GitHub callback's carries an authorization code.
        let query = request
            .and_then(|r| r.uri.query())
            .filter(|_| context.attributes().is_some())
            .map(str::to_owned);
        let user_agent = request.and_then(|r| r.headers.get(http::header::USER_AGENT).cloned());
        let now = SystemTime::now();
        Some(Arc::new(Noted {
            decision,
            received: now.checked_sub(context.started.elapsed()).unwrap_or(now),
            user_agent,
            query,
        }))
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
