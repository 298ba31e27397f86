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
//!   watch closes; for a request whose caller hung up before the response
//!   was ready, at once, with code 499 (the request may have reached the
//!   cluster: an interrupted `kubectl delete` is recorded all the same).
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
//! **Objects.** At `Request`, the `ResponseComplete` event of a create,
//! update or patch carries the object sent (`requestObject`); at
//! `RequestResponse` also the object returned (`responseObject`), as
//! kube-apiserver writes them. Bodies are copied as they stream, up to
//! [`MAX_OBJECT_BYTES`] each, JSON only; watches and other long-running
//! requests are never copied; a policy without a `Request` or
//! `RequestResponse` rule costs nothing for them. **Secrets' bodies are
//! never written, at any level**: not for `secrets` in any API group, nor
//! token reviews and token requests, nor Paddock's own endpoints (logins,
//! passwords, issued tokens). See `objects` for the rules. Nothing else
//! secret is written either: no header values but `User-Agent`, no query
//! on Paddock's own endpoints (the GitHub callback's code).
//!
//! The worker writes each event's JSON line into its sinks' bounded
//! queues; the writing happens off the request path, each sink on its own
//! thread: see [`AuditSink`] (a file rotated by size, [`FileSink`];
//! batches POSTed to a webhook, [`WebhookSink`]).
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
//! // Later: events lost to a full queue, a failed write or delivery.
//! let _dropped: u64 = audit.dropped();
//! # Ok(()) }
//! ```

mod event;
mod objects;
mod policy;
mod sink;
mod webhook;

use std::{sync::Arc, time::SystemTime};

use http::{request, response, StatusCode};

use self::event::{End, Event, EventWriter, Noted, Received, ResponseFacts, Target};
use self::objects::{Copies, Side};
pub use self::{
    objects::MAX_OBJECT_BYTES,
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
    plugin::{AccessRecord, Flow, Phases, Plugin},
    plugins::metrics::QueueStats,
    status::Status,
};

/// The audit plugin: add it with [`ProxyBuilder::plugin`](crate::ProxyBuilder::plugin).
/// Cheap to clone; clones share the sinks (and their counts).
#[derive(Debug, Clone)]
pub struct Audit {
    policy: Arc<Policy>,
    sinks: Vec<AuditSink>,
    /// Some rule records at `Request` or above: bodies may be copied.
    objects: bool,
}

impl Audit {
    /// Records what `policy` selects into `sink`.
    pub fn new(policy: Policy, sink: AuditSink) -> Self {
        Self {
            objects: policy.max_level() >= Level::Request,
            policy: Arc::new(policy),
            sinks: vec![sink],
        }
    }

    /// Records every event into `sink` too (a file and a webhook, say).
    pub fn sink(mut self, sink: AuditSink) -> Self {
        self.sinks.push(sink);
        self
    }

    /// Events lost by the sinks: to a full queue, a failed write, or a
    /// webhook batch that never got through.
    pub fn dropped(&self) -> u64 {
        self.sinks.iter().map(AuditSink::dropped).sum()
    }

    /// The sinks' events waiting and dropped, read live without keeping
    /// the sinks open: for [`Metrics::queue`](super::metrics::Metrics::queue).
    pub fn queue_stats(&self) -> impl QueueStats {
        SinksStats(self.sinks.iter().map(AuditSink::stats).collect())
    }

    /// Events waiting in the sinks' queues.
    pub fn queued(&self) -> u64 {
        self.sinks.iter().map(AuditSink::queued).sum()
    }

    /// Writes `event` into every sink's queue, on this thread.
    fn send(&self, event: &Event<'_>) {
        let write = |writer: &mut EventWriter, buf: &mut Vec<u8>| {
            writer.write(event, buf);
            buf.push(b'\n');
        };
        EventWriter::with(|writer| match &self.sinks[..] {
            [sink] => sink.send_with(|buf| write(writer, buf)),
            sinks => {
                let mut line = Vec::with_capacity(1024);
                write(writer, &mut line);
                for sink in sinks {
                    sink.send_with(|buf| buf.extend_from_slice(&line));
                }
            }
        });
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

    fn phases(&self) -> Phases {
        let phases = Phases::REQUEST | Phases::RESPONSE | Phases::LOG;
        if self.objects {
            // Request bodies are copied from here.
            phases | Phases::UPSTREAM_REQUEST
        } else {
            phases
        }
    }

    // Events are queued, never awaited: the request goes on in place.
    fn request_phases_are_immediate(&self) -> bool {
        true
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
            let at = SystemTime::now();
            noted.arrived(at, context.started.elapsed());
            self.send(&Event {
                stage: Stage::RequestReceived,
                context,
                noted,
                response: None,
                objects: None,
                at,
            });
        }
        context.state().insert(State(noted));
        ReadyOrBoxed::ready(Ok(Flow::Continue))
    }

    fn on_upstream_request<'a>(
        &'a self,
        context: &'a RequestContext,
        request: &'a mut request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        if self.objects {
            self.start_copies(context, request);
        }
        ReadyOrBoxed::ready(Ok(Flow::Continue))
    }

    fn on_response<'a>(
        &'a self,
        context: &'a RequestContext,
        response: &'a mut response::Parts,
    ) -> ReadyOrBoxed<'a, ()> {
        let state = context.state();
        if self.objects {
            if let Some(mut copies) = state.remove::<Copies>() {
                if copies.wants_response && response.status != StatusCode::SWITCHING_PROTOCOLS {
                    let (side, copy) = Side::start(&response.headers);
                    if let Some(copy) = copy {
                        response.extensions.insert(copy);
                    }
                    copies.response = Some(side);
                }
                state.insert(copies);
            }
        }
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
            let at = SystemTime::now();
            noted.arrived(at, context.started.elapsed());
            self.send(&Event {
                stage: Stage::ResponseStarted,
                context,
                noted: &noted,
                response: Some(ResponseFacts {
                    code: response.status.as_u16(),
                    failure: status.clone(),
                    end: None,
                }),
                objects: None,
                at,
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
        let objects = if self.objects {
            state.remove::<Copies>().and_then(Copies::finish)
        } else {
            None
        };
        let at = SystemTime::now();
        noted.arrived(at, record.duration);
        self.send(&Event {
            stage: Stage::ResponseComplete,
            context: record.context,
            noted: &noted,
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
            objects,
            at,
        });
    }
}

impl Audit {
    /// Starts copying the request body when the level records it, and
    /// notes whether the response is wanted: for resource requests that
    /// may be recorded at all (see `objects`).
    fn start_copies(&self, context: &RequestContext, request: &mut request::Parts) {
        let state = context.state();
        let Some(State(Some(noted))) = state.get::<State>() else {
            return;
        };
        if noted.decision.level < Level::Request {
            return;
        }
        let Some(attributes) = context.attributes().filter(|a| objects::may_record(a)) else {
            return;
        };
        let mut copies = Copies {
            wants_response: noted.decision.level == Level::RequestResponse,
            ..Copies::default()
        };
        if objects::sends_object(&attributes.verb) {
            let (side, copy) = Side::start(&request.headers);
            if let Some(copy) = copy {
                request.extensions.insert(copy);
            }
            copies.request = Some(side);
        }
        state.insert(copies);
    }

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
        Some(Arc::new(Noted {
            decision,
            received: Received::default(),
            user_agent,
            query,
        }))
    }
}

/// What [`Audit::queue_stats`] hands out: every sink's counts, summed.
struct SinksStats(Vec<Box<dyn QueueStats>>);

impl QueueStats for SinksStats {
    fn queued(&self) -> u64 {
        self.0.iter().map(|s| s.queued()).sum()
    }

    fn dropped(&self) -> u64 {
        self.0.iter().map(|s| s.dropped()).sum()
    }
}

#[cfg(test)]
mod tests;
