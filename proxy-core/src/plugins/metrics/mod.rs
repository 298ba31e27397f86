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

mod labels;
mod serve;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::Gauge,
        histogram::Histogram,
        info::Info,
        MetricType,
    },
    registry::Registry,
};

use self::labels::{Bounded, STREAM_KINDS};
pub use self::serve::{serve, CONTENT_TYPE};
use crate::{
    context::RequestContext,
    error::ProxyError,
    future::ReadyOrBoxed,
    plugin::{AccessRecord, Flow, Plugin},
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

type DurationFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

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
/// | `paddock_log_dropped_total` | counter | `log`: as given to [`count_drops`](Self::count_drops) (`access`, `audit`) |
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
    registry: Arc<Registry>,
    drops: Arc<LogDrops>,
    requests: Family<RequestLabels, Counter>,
    durations: DurationFamily,
    /// One gauge per kind, made up front so each reads 0 before any stream.
    streams: [Gauge; STREAM_KINDS.len()],
    authentication: Family<AuthnLabels, Counter>,
    allowed: Counter,
    denied: Counter,
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
        let stream_family = Family::<StreamLabels, Gauge>::default();
        paddock.register(
            "long_running_requests",
            "Watches, exec, attach and port-forward sessions, followed logs and proxied streams open now",
            stream_family.clone(),
        );
        let streams =
            STREAM_KINDS.map(|kind| stream_family.get_or_create_owned(&StreamLabels { kind }));
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
        let drops = Arc::new(LogDrops::default());
        paddock.register_collector(Box::new(drops.clone()));
        paddock.register(
            "build",
            "Paddock's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        Self {
            inner: Arc::new(Inner {
                registry: Arc::new(registry),
                drops,
                requests,
                durations,
                streams,
                authentication,
                allowed,
                denied,
                clusters: Bounded::new(MAX_CLUSTERS),
                groups: Bounded::new(MAX_GROUPS),
                resources: Bounded::new(MAX_RESOURCES),
                providers: Bounded::new(MAX_PROVIDERS),
            }),
        }
    }

    /// Reports `dropped` (read at each scrape) as
    /// `paddock_log_dropped_total{log="<log>"}`: lines or events a log's
    /// writer dropped because it could not keep up, e.g.
    /// [`AccessLog::drops`](super::access_log::AccessLog::drops).
    pub fn count_drops(
        &self,
        log: &'static str,
        dropped: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.inner
            .drops
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((log, Box::new(dropped)));
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

/// The logs' drop counts, read at each scrape.
#[derive(Default)]
struct LogDrops(std::sync::Mutex<Vec<(&'static str, DropSource)>>);

type DropSource = Box<dyn Fn() -> u64 + Send + Sync>;

impl std::fmt::Debug for LogDrops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogDrops").finish_non_exhaustive()
    }
}

impl Collector for LogDrops {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let sources = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut family = encoder.encode_descriptor(
            "log_dropped",
            "Log lines and audit events dropped because their writer could not keep up, by log",
            None,
            MetricType::Counter,
        )?;
        for (log, dropped) in sources.iter() {
            let labels = [("log", *log)];
            ConstCounter::new(dropped()).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
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

impl Plugin for Metrics {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn on_upstream_request<'a>(
        &'a self,
        context: &'a RequestContext,
        _request: &'a mut http::request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        let kind = context.attributes().and_then(labels::stream_kind);
        if let Some(index) = kind.and_then(|kind| STREAM_KINDS.iter().position(|k| *k == kind)) {
            let guard = StreamGuard::open(&self.inner.streams[index]);
            context.state().insert(OpenStream {
                _guard: Arc::new(guard),
            });
        }
        ReadyOrBoxed::ready(Ok(Flow::Continue))
    }

    fn on_log(&self, record: &AccessRecord<'_>) {
        self.inner.record(record);
    }
}

impl Inner {
    fn record(&self, record: &AccessRecord<'_>) {
        let context = record.context;
        let attributes = context.attributes();
        let long_running = attributes.and_then(labels::stream_kind).is_some();
        if long_running && record.status != http::StatusCode::SWITCHING_PROTOCOLS {
            // The stream is over; an upgraded one ends with its tunnel.
            context.state().remove::<OpenStream>();
        }
        let verb = labels::verb(attributes, &context.method);
        let cluster = self.clusters.learn(context.cluster().unwrap_or(""));
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
            Some(attributes) if attributes.is_resource_request => {
                if allowed && record.status.is_success() {
                    (
                        self.groups.learn(&attributes.api_group),
                        self.resources.learn(&attributes.resource),
                    )
                } else {
                    (
                        self.groups.get(&attributes.api_group),
                        self.resources.get(&attributes.resource),
                    )
                }
            }
            _ => (self.groups.get(""), self.resources.get("")),
        };
        if !long_running && record.status != http::StatusCode::SWITCHING_PROTOCOLS {
            self.durations
                .get_or_create(&DurationLabels {
                    cluster: cluster.clone(),
                    verb,
                })
                .observe(record.duration.as_secs_f64());
        }
        self.requests
            .get_or_create(&RequestLabels {
                cluster,
                verb,
                group,
                resource,
                code: record.status.as_u16(),
            })
            .inc();
        self.record_authentication(context);
    }

    fn record_authentication(&self, context: &RequestContext) {
        let (provider, result) = match context.authn_attempt() {
            Some(attempt) => (
                self.providers
                    .learn(attempt.provider.as_deref().unwrap_or("")),
                attempt.outcome.as_str(),
            ),
            None => match context.identity() {
                Some(identity) => (self.providers.learn(&identity.provider), "success"),
                // No credential was presented: no attempt.
                None => return,
            },
        };
        self.authentication
            .get_or_create(&AuthnLabels { provider, result })
            .inc();
    }
}
