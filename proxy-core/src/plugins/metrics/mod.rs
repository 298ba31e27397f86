//! Prometheus metrics, as a plugin: requests, their latency, open streams,
//! authentication attempts and authorization decisions, kept in one
//! [`prometheus_client`] [`Registry`] that [`serve`] exposes (or that an
//! embedder serves itself).
//!
//! Names follow Prometheus' conventions (<https://prometheus.io/docs/practices/naming/>):
//! a `paddock_` prefix, base units (seconds), counters ending in `_total`.
//! Every label value is bounded: a fixed set of words, or a set that stops
//! growing at a cap and then says `other` (see `labels`). No user name, no
//! path, no namespace is ever a label.
//!
//! The hot path (`on_log`) takes read locks and bumps atomics; a family
//! takes its write lock only the first time a label set appears.
//!
//! ```
//! use proxy_core::plugins::metrics::Metrics;
//!
//! let metrics = Metrics::new();
//! let proxy = proxy_core::Proxy::builder().plugin(metrics.clone());
//! # drop(proxy);
//! // Serve `metrics.registry()` with `proxy_core::plugins::metrics::serve`,
//! // or encode it in a handler of your own:
//! let text = metrics.encode();
//! assert!(text.contains("# TYPE paddock_long_running_requests gauge"));
//! assert!(text.ends_with("# EOF\n"));
//! ```

mod handles;
mod labels;
mod scraped;
mod serve;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram, info::Info},
    registry::Registry,
};

use self::handles::{Handles, Key, Resolved};
use self::labels::{Bounded, STREAM_KINDS};
use self::scraped::{Scraped, ScrapedCollector};
pub use self::{
    scraped::QueueStats,
    serve::{serve, serve_with, ListenerOptions, CONTENT_TYPE},
};
use crate::{
    accounts::Outcome,
    context::RequestContext,
    events::Event,
    future::ReadyOrBoxed,
    plugin::{AccessRecord, Phases, Plugin},
    status::Status,
    store::StoreView,
};

/// Upper bounds of `paddock_request_duration_seconds`, in seconds: from
/// the millisecond a cache hit costs to kube-apiserver's own 60 s request
/// timeout.
pub const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// At most this many clusters, API groups, resources and providers each
/// get a label value of their own; later ones are counted as `other`.
const MAX_CLUSTERS: usize = 256;
const MAX_GROUPS: usize = 128;
const MAX_RESOURCES: usize = 512;
const MAX_PROVIDERS: usize = 64;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    cluster: Arc<str>,
    verb: &'static str,
    group: Arc<str>,
    resource: Arc<str>,
    code: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    cluster: Arc<str>,
    verb: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthnLabels {
    provider: Arc<str>,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    provider: Arc<str>,
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    cluster: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    cluster: Arc<str>,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    cluster: Arc<str>,
    kind: &'static str,
}

type SecondsGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

type DurationFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Numbers the `Metrics` instances (see [`Inner::id`]).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The metrics plugin: add it with
/// [`ProxyBuilder::plugin`](crate::ProxyBuilder::plugin) and serve its
/// [`registry`](Self::registry). Clones share the same metrics.
///
/// | metric | type | labels |
/// |---|---|---|
/// | `paddock_requests_total` | counter | `cluster`, `verb`, `group`, `resource`, `code` |
/// | `paddock_request_duration_seconds` | histogram | `cluster`, `verb` (long-running requests excluded) |
/// | `paddock_long_running_requests` | gauge | `kind`: `watch`, `exec`, `attach`, `portforward`, `log`, `proxy` |
/// | `paddock_authentication_attempts_total` | counter | `provider`, `result` |
/// | `paddock_authorization_decisions_total` | counter | `decision`: `allow`, `deny` |
/// | `paddock_upstream_errors_total` | counter | `cluster`, `kind`: `unavailable` (503), `failure` (502), `timeout` (504) |
/// | `paddock_refreshes_total` | counter | `provider`, `result`: `refreshed`, `access_lost`, `deferred`, `not_refreshable`, `busy` |
/// | `paddock_provider_degraded` | gauge | `provider`: 1 while its backend fails |
/// | `paddock_cluster_up` | gauge | `cluster`: 1 reachable, 0 not (health checks; at once when an agent's tunnel connects or drops, or requests to a direct cluster fail to connect) |
/// | `paddock_cluster_nodes` | gauge | `cluster`, `state`: `ready`, `not_ready` |
/// | `paddock_cluster_check_latency_seconds` | gauge | `cluster`: `/version`'s time at the last check |
/// | `paddock_rbac_sync_failing` | gauge | `cluster`: 1 while its RBAC sync passes fail (see [`rbac_sync`](super::rbac_sync)) |
/// | `paddock_rbac_sync_last_success_timestamp_seconds` | gauge | `cluster`: when a pass last ended without error (Unix time; absent before the first) |
/// | `paddock_rbac_sync_passes_total` | counter | `cluster`, `result`: `ok`, `error` |
/// | `paddock_rbac_sync_objects_written_total` | counter | `cluster`: RBAC objects created, updated or deleted |
/// | `paddock_rbac_sync_drift_repaired_total` | counter | `cluster`: of those, the writes that repaired drift |
/// | `paddock_queue_depth`, `paddock_queue_dropped_total` | gauge, counter | `queue` (see [`Metrics::queue`]) |
/// | `paddock_store_revision`, `paddock_store_sync_age_seconds` | gauge | (see [`Metrics::store`]) |
/// | `paddock_build_info` | info | `version` |
///
/// `group` and `resource` are the RBAC ones (`""` for the core group and
/// for non-resource requests); they are learnt from requests that were
/// allowed and succeeded, so a caller cannot invent values by asking for
/// resources that do not exist: until then, and past a cap, they read
/// `other`.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    /// Tells this instance's cached handles from another's.
    id: u64,
    registry: Arc<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
    /// One gauge per kind, made up front so each reads 0 before any stream.
    streams: [Gauge; STREAM_KINDS.len()],
    authentication: Family<AuthnLabels, Counter>,
    allowed: Counter,
    denied: Counter,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    refreshes: Family<RefreshLabels, Counter>,
    provider_degraded: Family<ProviderLabels, Gauge>,
    cluster_up: Family<ClusterLabels, Gauge>,
    cluster_nodes: Family<NodeLabels, Gauge>,
    cluster_latency: Family<ClusterLabels, SecondsGauge>,
    scraped: Arc<Scraped>,
    clusters: Bounded,
    groups: Bounded,
    resources: Bounded,
    providers: Bounded,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Paddock's metrics in a registry of their own.
    pub fn new() -> Self {
        Self::with_registry(Registry::default())
    }

    /// Paddock's metrics added to `registry`, which may hold the
    /// embedder's own metrics: one registry, one scrape.
    pub fn with_registry(mut registry: Registry) -> Self {
        let paddock = registry.sub_registry_with_prefix("paddock");
        // Registered (so encoded) before `requests`: a stream is counted
        // among the requests before it stops counting as open, so a scrape
        // that reads it closed reads it counted too. The other way round,
        // a scrape could read the request count just before and the gauge
        // just after.
        let stream_family = Family::<StreamLabels, Gauge>::default();
        paddock.register(
            "long_running_requests",
            "Watches, exec, attach and port-forward sessions, followed logs and proxied streams open now",
            stream_family.clone(),
        );
        let streams =
            STREAM_KINDS.map(|kind| stream_family.get_or_create_owned(&StreamLabels { kind }));
        let requests = Family::<RequestLabels, Counter>::default();
        paddock.register(
            "requests",
            "Requests answered, by cluster, verb, API group, resource and HTTP status code",
            requests.clone(),
        );
        let durations = DurationFamily::new_with_constructor(duration_histogram);
        // The unit is in the name; no `# UNIT` line, which some OpenMetrics
        // parsers refuse on a histogram.
        paddock.register(
            "request_duration_seconds",
            "Time from a request's arrival to the end of its response body, long-running requests excluded",
            durations.clone(),
        );
        let authentication = Family::<AuthnLabels, Counter>::default();
        paddock.register(
            "authentication_attempts",
            "Credentials checked, by provider and result (success, invalid, denied, unavailable, throttled)",
            authentication.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        paddock.register(
            "authorization_decisions",
            "Authorization decisions on proxied requests, by decision",
            decisions.clone(),
        );
        let allowed = decisions.get_or_create_owned(&DecisionLabels { decision: "allow" });
        let denied = decisions.get_or_create_owned(&DecisionLabels { decision: "deny" });
        let upstream_errors = Family::<UpstreamErrorLabels, Counter>::default();
        paddock.register(
            "upstream_errors",
            "Proxied requests a cluster did not answer: unreachable, broken, or too slow",
            upstream_errors.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        paddock.register(
            "refreshes",
            "Background refreshes of users by external providers, by provider and result",
            refreshes.clone(),
        );
        let provider_degraded = Family::<ProviderLabels, Gauge>::default();
        paddock.register(
            "provider_degraded",
            "1 while an identity provider's backend fails when asked",
            provider_degraded.clone(),
        );
        let cluster_up = Family::<ClusterLabels, Gauge>::default();
        paddock.register(
            "cluster_up",
            "Whether the cluster answers, as last found: a health check, an agent's tunnel connecting or dropping, requests to a direct cluster failing to connect or answered again",
            cluster_up.clone(),
        );
        let cluster_nodes = Family::<NodeLabels, Gauge>::default();
        paddock.register(
            "cluster_nodes",
            "Nodes at the last health check, ready or not",
            cluster_nodes.clone(),
        );
        let cluster_latency = Family::<ClusterLabels, SecondsGauge>::default();
        paddock.register(
            "cluster_check_latency_seconds",
            "Time the cluster's /version took at the last health check",
            cluster_latency.clone(),
        );
        let scraped = Arc::new(Scraped::default());
        paddock.register_collector(Box::new(ScrapedCollector(scraped.clone())));
        paddock.register(
            "build",
            "Paddock's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                registry: Arc::new(registry),
                requests,
                durations,
                streams,
                authentication,
                allowed,
                denied,
                upstream_errors,
                refreshes,
                provider_degraded,
                cluster_up,
                cluster_nodes,
                cluster_latency,
                scraped,
                clusters: Bounded::new(MAX_CLUSTERS),
                groups: Bounded::new(MAX_GROUPS),
                resources: Bounded::new(MAX_RESOURCES),
                providers: Bounded::new(MAX_PROVIDERS),
            }),
        }
    }

    /// Reports `stats` as `paddock_queue_depth{queue="<name>"}` and
    /// `paddock_queue_dropped_total{queue="<name>"}`, read at each scrape:
    /// the one way every bounded queue is reported, e.g. the access log's
    /// ([`AccessLog::queue_stats`](super::access_log::AccessLog::queue_stats)),
    /// the audit sinks' ([`Audit::queue_stats`](super::audit::Audit::queue_stats)),
    /// the alert delivery's ([`Alerts::queue_stats`](super::alerts::Alerts::queue_stats)).
    pub fn queue(&self, name: &'static str, stats: impl QueueStats) {
        self.inner.scraped.add_queue(name, Arc::new(stats));
    }

    /// Reports the revision of `view` as `paddock_store_revision`, and the
    /// time since it last read the change feed to its end as
    /// `paddock_store_sync_age_seconds`.
    pub fn store(&self, view: Arc<StoreView>) {
        self.inner.scraped.set_store(view);
    }

    /// The registry, to serve with [`serve`] or any HTTP server.
    pub fn registry(&self) -> Arc<Registry> {
        self.inner.registry.clone()
    }

    /// The registry in the OpenMetrics text format, ending in `# EOF`;
    /// serve it with the content type [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        encode(&self.inner.registry)
    }
}

/// `registry` in the OpenMetrics text format.
pub(crate) fn encode(registry: &Registry) -> String {
    let mut text = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail; an encoder error would be a bug
    // in a metric, which leaves the text cut short rather than a panic.
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, registry) {
        tracing::error!(%error, "cannot encode the metrics");
    }
    text
}

/// An open long-running request: counted while this lives. Kept in the
/// request's state, so it ends with the request's context even if
/// `on_log` never sees it (an upgraded stream's tunnel holds the context
/// until it closes).
#[derive(Clone)]
struct OpenStream {
    _guard: Arc<StreamGuard>,
}

struct StreamGuard(Gauge);

impl StreamGuard {
    fn open(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Counts a long-running request open from when the cluster's answer
    /// starts (a watch's headers, an upgrade's 101) until it ends.
    fn open_stream(&self, context: &RequestContext) {
        let kind = context.attributes().and_then(labels::stream_kind);
        if let Some(index) = kind.and_then(|kind| STREAM_KINDS.iter().position(|k| *k == kind)) {
            let guard = StreamGuard::open(&self.inner.streams[index]);
            context.state().insert(OpenStream {
                _guard: Arc::new(guard),
            });
        }
    }
}

impl Plugin for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn phases(&self) -> Phases {
        // No request phase: a request this plugin alone hooks is never
        // taken apart for it.
        Phases::RESPONSE | Phases::LOG | Phases::EVENT
    }

    fn on_response<'a>(
        &'a self,
        context: &'a RequestContext,
        response: &'a mut http::response::Parts,
    ) -> ReadyOrBoxed<'a, ()> {
        // Past an allowing decision, a response without Paddock's own
        // Status comes from the cluster, and Paddock's own 502/503/504
        // come from forwarding.
        let allowed = context.decision().is_some_and(|d| d.allowed);
        let from_cluster = allowed && response.extensions.get::<Status>().is_none();
        let started = response.status.is_success()
            || response.status == http::StatusCode::SWITCHING_PROTOCOLS;
        if from_cluster && started {
            self.open_stream(context);
        }
        if allowed && !from_cluster {
            let kind = match response.status {
                http::StatusCode::BAD_GATEWAY => Some("failure"),
                http::StatusCode::SERVICE_UNAVAILABLE => Some("unavailable"),
                http::StatusCode::GATEWAY_TIMEOUT => Some("timeout"),
                _ => None,
            };
            if let Some(kind) = kind {
                let cluster = self.inner.clusters.learn(context.cluster().unwrap_or(""));
                self.inner
                    .upstream_errors
                    .get_or_create(&UpstreamErrorLabels { cluster, kind })
                    .inc();
            }
        }
        ReadyOrBoxed::ready(())
    }

    fn on_log(&self, record: &AccessRecord<'_>) {
        self.inner.record(record);
    }

    fn on_event(&self, event: &Event) {
        self.inner.event(event);
    }
}

impl Inner {
    fn event(&self, event: &Event) {
        match event {
            Event::Refresh { provider, outcome } => {
                let result = match outcome {
                    Outcome::Refreshed { .. } => "refreshed",
                    Outcome::AccessLost { .. } => "access_lost",
                    Outcome::Deferred { .. } => "deferred",
                    Outcome::Busy => "busy",
                    _ => "not_refreshable",
                };
                let provider = self.providers.learn(provider);
                self.refreshes
                    .get_or_create(&RefreshLabels { provider, result })
                    .inc();
            }
            Event::ProviderHealth { provider, problem } => {
                let provider = self.providers.learn(provider);
                self.provider_degraded
                    .get_or_create(&ProviderLabels { provider })
                    .set(i64::from(problem.is_some()));
            }
            // A tunnel dropping or a refused connection is news at once,
            // not at the next health check (which may be minutes away).
            Event::ClusterReachability {
                cluster, reachable, ..
            } => {
                let cluster = self.clusters.learn(cluster);
                self.cluster_up
                    .get_or_create(&ClusterLabels { cluster })
                    .set(i64::from(*reachable));
            }
            Event::ClusterChecked(health) => {
                let cluster = self.clusters.learn(&health.cluster);
                let labels = ClusterLabels {
                    cluster: cluster.clone(),
                };
                self.cluster_up
                    .get_or_create(&labels)
                    .set(i64::from(health.reachable));
                if let Some(latency) = health.latency_seconds {
                    self.cluster_latency.get_or_create(&labels).set(latency);
                }
                if let Some(nodes) = health.nodes {
                    let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    for (state, n) in [
                        ("ready", nodes.ready),
                        ("not_ready", nodes.total.saturating_sub(nodes.ready)),
                    ] {
                        self.cluster_nodes
                            .get_or_create(&NodeLabels {
                                cluster: cluster.clone(),
                                state,
                            })
                            .set(count(n));
                    }
                }
            }
            Event::RbacSync { cluster, status } => {
                let label = self.clusters.learn(cluster);
                self.scraped.set_rbac_sync(cluster, label, status.clone());
            }
        }
    }

    fn record(&self, record: &AccessRecord<'_>) {
        let context = record.context;
        let attributes = context.attributes();
        let long_running = attributes.and_then(labels::stream_kind).is_some();
        let verb = labels::verb(attributes, &context.method);
        let allowed = match context.decision() {
            Some(decision) if decision.allowed => {
                self.allowed.inc();
                true
            }
            Some(_) => {
                self.denied.inc();
                false
            }
            None => false,
        };
        let (group, resource) = match attributes {
            Some(a) if a.is_resource_request => (a.api_group.as_str(), a.resource.as_str()),
            _ => ("", ""),
        };
        let key = Key {
            cluster: context.cluster().unwrap_or(""),
            verb,
            group,
            resource,
            code: record.status.as_u16(),
            timed: !long_running && record.status != http::StatusCode::SWITCHING_PROTOCOLS,
            authn: authentication(context),
        };
        // Group and resource values are learnt from allowed, successful
        // requests only.
        let learn = allowed && record.status.is_success();
        handles::with(
            self.id,
            &key,
            || self.resolve(&key, learn),
            |handles| {
                if let Some(duration) = &handles.duration {
                    duration.observe(record.duration.as_secs_f64());
                }
                handles.request.inc();
                if let Some(authn) = &handles.authn {
                    authn.inc();
                }
            },
        );
        if long_running && record.status != http::StatusCode::SWITCHING_PROTOCOLS {
            // The stream is over (an upgraded one ends with its tunnel).
            // Closed only once counted: a scrape that no longer sees it open
            // sees it among the requests.
            context.state().remove::<OpenStream>();
        }
    }

    /// The families' slow path: label values bounded, then each metric
    /// found (or made) under its label set.
    fn resolve(&self, key: &Key<'_>, learn: bool) -> Resolved {
        let cluster = self.clusters.learn(key.cluster);
        let (group, resource) = if learn {
            (
                self.groups.learn(key.group),
                self.resources.learn(key.resource),
            )
        } else {
            (self.groups.get(key.group), self.resources.get(key.resource))
        };
        let duration = key.timed.then(|| {
            self.durations.get_or_create_owned(&DurationLabels {
                cluster: cluster.clone(),
                verb: key.verb,
            })
        });
        let request = self.requests.get_or_create_owned(&RequestLabels {
            cluster: cluster.clone(),
            verb: key.verb,
            group: group.clone(),
            resource: resource.clone(),
            code: key.code,
        });
        let (provider, authn) = match key.authn {
            Some((provider, result)) => {
                let provider = self.providers.learn(provider);
                let counter = self.authentication.get_or_create_owned(&AuthnLabels {
                    provider: provider.clone(),
                    result,
                });
                (Some(provider), Some(counter))
            }
            None => (None, None),
        };
        Resolved {
            cluster,
            group,
            resource,
            provider,
            handles: Handles {
                request,
                duration,
                authn,
            },
        }
    }
}

/// The provider and result of the request's authentication attempt: the
/// recorded attempt, or a success for an authenticated caller; `None` when
/// no credential was presented.
fn authentication(context: &RequestContext) -> Option<(&str, &'static str)> {
    match context.authn_attempt() {
        Some(attempt) => Some((
            attempt.provider.as_deref().unwrap_or(""),
            attempt.outcome.as_str(),
        )),
        None => context
            .identity()
            .map(|identity| (identity.provider.as_str(), "success")),
    }
}
