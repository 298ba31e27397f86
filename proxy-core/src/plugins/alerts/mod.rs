//! Alert hooks, as a plugin: rules over what Paddock sees (requests through
//! [`Plugin::on_log`], background [`Event`]s through [`Plugin::on_event`])
//! that POST alerts to webhooks: generic JSON, Slack's `{"text"}`,
//! Alertmanager's `/api/v2/alerts` or its `webhook_config` payload.
//!
//! | rule | alert (`alertname`) | labels | fires | resolves |
//! |---|---|---|---|---|
//! | [`failed_logins`](AlertRules::failed_logins) | `PaddockFailedLoginBurst` | `user` (`provider/name`) or `address` | `threshold` failures within `window` (wrong password or token, throttled) | after a `window` without failure |
//! | [`token_new_address`](AlertRules::token_new_address) | `PaddockTokenNewAddress` | `token`, `user`, `address` | a Paddock token used from an address it was not used from since Paddock started (its first address is not news) | expires after [`expire`](AlertsOptions::expire), silently |
//! | [`provider_degraded`](AlertRules::provider_degraded) | `PaddockProviderDegraded` | `provider` | a login or refresh found the provider down (503) | the provider answers |
//! | [`refresh_failing`](AlertRules::refresh_failing) | `PaddockRefreshFailing` | `provider` | a provider's background refreshes failed for this long | a refresh succeeds |
//! | [`cluster_unreachable`](AlertRules::cluster_unreachable) | `PaddockClusterUnreachable` | `cluster` | Paddock's verdict on the cluster turns to unreachable: an agent's tunnel drops, a request or Paddock's own call cannot connect, a health check gets no answer in time (any [`Event::ClusterReachability`]) | it is reachable again |
//! | [`rbac_sync_failing`](AlertRules::rbac_sync_failing) | `PaddockRbacSyncFailing` | `cluster` | a cluster's RBAC sync passes ([`rbac_sync`](super::rbac_sync)) failed for this long | a pass succeeds, or the cluster is no longer synchronised |
//!
//! **Deduplicated**: an alert (its name and labels) fires once and stays
//! firing, silent, until it resolves or expires. **Rate limited**: at most
//! [`max_per_minute`](AlertsOptions::max_per_minute) firing alerts per
//! minute; one held back is counted ([`Alerts::rate_limited`]) and its
//! resolution is not sent either.
//!
//! **Off the request path**: a request costs a map lookup when it carried
//! a Paddock token, nothing otherwise; what fires goes into a bounded queue
//! (full: dropped and counted) that one thread drains into a bounded queue
//! per receiver; each receiver's POSTs run on their own, retried with a
//! doubling backoff before the notification is dropped and counted, so a
//! slow or dead receiver holds up neither the others nor the time-driven
//! work (resolutions, Alertmanager's resends).
//!
//! ```no_run
//! use std::time::Duration;
//! use proxy_core::{plugins::alerts::{AlertReceiver, AlertRules, Alerts, AlertsOptions, Burst, Format}, Proxy};
//!
//! # fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let rules = AlertRules {
//!     failed_logins: Some(Burst { threshold: 10, window: Duration::from_secs(60) }),
//!     cluster_unreachable: true,
//!     ..AlertRules::default()
//! };
//! let slack = AlertReceiver::new("ops", "https://hooks.slack.com/services/T0/B0/XXXX", Format::Slack)?;
//! let alerts = Alerts::new(rules, vec![slack], AlertsOptions::default())?;
//! let proxy = Proxy::builder()
//!     .plugin(alerts.clone())
//!     .cluster_health(proxy_core::health::HealthOptions::default())
//!     .build()?;
//! # Ok(()) }
//! ```

mod deliver;
mod engine;
#[cfg(test)]
mod tests;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{atomic::Ordering, Arc, Mutex, PoisonError, RwLock},
    time::{Duration, Instant, SystemTime},
};

pub use self::deliver::{AlertReceiver, Format};
use self::{
    deliver::Counters,
    engine::{Engine, Notification},
};
use crate::{
    accounts::Outcome,
    authn::AuthnOutcome,
    context::{LoginOutcome, RequestContext},
    events::Event,
    plugin::{AccessRecord, Phases, Plugin},
};

/// Which rules are on. All off by default; write
/// `AlertRules { rule: …, ..AlertRules::default() }`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertRules {
    /// A burst of failed logins for one user, or from one address.
    pub failed_logins: Option<Burst>,
    /// A Paddock token used from a new address.
    pub token_new_address: bool,
    /// An identity provider became unreachable.
    pub provider_degraded: bool,
    /// A provider's background refreshes failed for this long.
    pub refresh_failing: Option<Duration>,
    /// A cluster became unreachable (resolved when it is reachable again).
    pub cluster_unreachable: bool,
    /// A cluster's RBAC sync passes failed for this long.
    pub rbac_sync_failing: Option<Duration>,
}

/// `threshold` events within `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// How many (at least 1).
    pub threshold: u32,
    /// Within how long.
    pub window: Duration,
}

/// How alerts are queued, limited and repeated.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AlertsOptions {
    /// Notifications waiting for delivery at most (default 1000), in the
    /// shared queue and in each receiver's; more are dropped and counted.
    pub queue_size: usize,
    /// Firing alerts sent per minute at most (default 30).
    pub max_per_minute: u32,
    /// How long a one-off alert (a token from a new address) stays firing,
    /// deduplicated (default 1 h).
    pub expire: Duration,
    /// How often Alertmanager receivers are told again about a firing
    /// alert (default 1 min, Prometheus' `--rules.alert.resend-delay`).
    pub resend: Duration,
    /// Where alerts link to (`generatorURL`, `externalURL`): Paddock's
    /// address (default empty).
    pub external_url: String,
}

impl Default for AlertsOptions {
    fn default() -> Self {
        Self {
            queue_size: 1000,
            max_per_minute: 30,
            expire: Duration::from_secs(3600),
            resend: Duration::from_secs(60),
            external_url: String::new(),
        }
    }
}

/// Why the alert plugin could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertsError {
    /// A receiver's URL is not usable.
    #[error("{0}")]
    Url(String),
    /// A receiver's CA bundle or TLS setup failed.
    #[error("{0}")]
    Tls(String),
    /// The delivery thread or its event loop could not start.
    #[error("cannot start the alert sender: {0}")]
    Start(#[from] std::io::Error),
}

/// Addresses a token is remembered with at most; tokens remembered at most.
const MAX_ADDRESSES_PER_TOKEN: usize = 16;
const MAX_TOKENS: usize = 100_000;

/// The alert plugin: add it with [`ProxyBuilder::plugin`](crate::ProxyBuilder::plugin).
/// Clones share the rules, the queue and the counts; the delivery thread
/// ends when the last clone is dropped.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    rules: AlertRules,
    engine: Arc<Mutex<Engine>>,
    queue: tokio::sync::mpsc::Sender<Notification>,
    counters: Arc<Counters>,
    /// The addresses each Paddock token was used from.
    addresses: RwLock<HashMap<String, Vec<IpAddr>>>,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("rules", &self.inner.rules)
            .finish_non_exhaustive()
    }
}

impl Alerts {
    /// Evaluates `rules` and sends what fires to `receivers`; starts the
    /// delivery thread.
    pub fn new(
        rules: AlertRules,
        receivers: Vec<AlertReceiver>,
        options: AlertsOptions,
    ) -> Result<Self, AlertsError> {
        let clients = receivers
            .into_iter()
            .map(|receiver| receiver.client().map(|client| (receiver, client)))
            .collect::<Result<Vec<_>, _>>()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let engine = Arc::new(Mutex::new(Engine::new(
            rules,
            options.clone(),
            Instant::now(),
        )));
        let counters = Arc::new(Counters::default());
        let size = options.queue_size.max(1);
        let (queue, taken) = tokio::sync::mpsc::channel(size);
        {
            let (engine, counters) = (engine.clone(), counters.clone());
            let external_url = options.external_url.clone();
            std::thread::Builder::new()
                .name("paddock-alerts".to_owned())
                .spawn(move || {
                    runtime.block_on(deliver::run(
                        taken,
                        clients,
                        engine,
                        counters,
                        external_url,
                        size,
                    ));
                })?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                rules,
                engine,
                queue,
                counters,
                addresses: RwLock::new(HashMap::new()),
            }),
        })
    }

    /// Notifications lost: the queue or a receiver's was full, or a
    /// receiver never took it (counted once per receiver).
    pub fn dropped(&self) -> u64 {
        self.inner.counters.queue.dropped()
    }

    /// Notifications waiting for delivery: in the queue, or in a
    /// receiver's (once per receiver it goes to).
    pub fn queued(&self) -> u64 {
        self.inner.counters.queue.queued()
    }

    /// [`queued`](Self::queued) and [`dropped`](Self::dropped), read live:
    /// for [`Metrics::queue`](crate::plugins::metrics::Metrics::queue).
    pub fn queue_stats(&self) -> impl crate::plugins::metrics::QueueStats {
        self.inner.counters.queue.clone()
    }

    /// POSTs the receivers accepted.
    pub fn delivered(&self) -> u64 {
        self.inner.counters.delivered.load(Ordering::Relaxed)
    }

    /// Firing alerts held back by the rate limit.
    pub fn rate_limited(&self) -> u64 {
        self.inner.engine().rate_limited
    }

    /// Alerts firing now.
    pub fn firing(&self) -> usize {
        self.inner.engine().firing()
    }
}

impl Inner {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, notifications: impl IntoIterator<Item = Notification>) {
        for notification in notifications {
            // Full, or the delivery thread is gone: dropped either way.
            self.counters
                .queue
                .offer(|| self.queue.try_send(notification));
        }
    }

    /// Whether `token` is seen from `address` for the first time, though it
    /// was used before from elsewhere. Read lock only for a known pair.
    fn new_address(&self, token: &str, address: IpAddr) -> bool {
        {
            let known = self
                .addresses
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if known.get(token).is_some_and(|seen| seen.contains(&address)) {
                return false;
            }
        }
        let mut known = self
            .addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_TOKENS && !known.contains_key(token) {
            // Forget them all rather than grow: their next use is a first.
            known.clear();
        }
        let seen = known.entry(token.to_owned()).or_default();
        if seen.contains(&address) {
            return false;
        }
        let first = seen.is_empty();
        if seen.len() < MAX_ADDRESSES_PER_TOKEN {
            seen.push(address);
        }
        !first
    }

    fn record(&self, context: &RequestContext) {
        let address = context.client_addr.map(|a| a.ip());
        if self.rules.failed_logins.is_some() {
            let failed = context.authn_attempt().is_some_and(|a| {
                matches!(a.outcome, AuthnOutcome::Invalid | AuthnOutcome::Throttled)
            });
            if failed {
                let user = context.login().and_then(|login| match login.outcome {
                    LoginOutcome::Failed { .. } if !login.username.is_empty() => {
                        Some(format!("{}/{}", login.provider, login.username))
                    }
                    _ => None,
                });
                let address = address.map(|a| a.to_string());
                let fired = self.engine().failed_login(
                    user.as_deref(),
                    address.as_deref(),
                    Instant::now(),
                    SystemTime::now(),
                );
                self.send(fired);
            }
        }
        if self.rules.token_new_address {
            let identity = context.identity();
            if let (Some(identity), Some(address)) = (identity, address) {
                if let Some(token) = &identity.token_id {
                    if self.new_address(token, address) {
                        let fired = self.engine().new_token_address(
                            token,
                            &identity.username,
                            &address.to_string(),
                            Instant::now(),
                            SystemTime::now(),
                        );
                        self.send(fired);
                    }
                }
            }
        }
    }
}

impl Plugin for Alerts {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn phases(&self) -> Phases {
        Phases::LOG | Phases::EVENT
    }

    fn on_log(&self, record: &AccessRecord<'_>) {
        self.inner.record(record.context);
    }

    fn on_event(&self, event: &Event) {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let inner = &self.inner;
        match event {
            Event::ClusterReachability {
                cluster,
                reachable,
                reason,
            } => {
                let fired =
                    inner
                        .engine()
                        .cluster(cluster, *reachable, reason.as_deref(), now, wall);
                inner.send(fired);
            }
            Event::ProviderHealth { provider, problem } => {
                let fired = inner
                    .engine()
                    .provider_health(provider, problem.as_deref(), now, wall);
                inner.send(fired);
            }
            Event::Refresh { provider, outcome } => {
                let failure = match outcome {
                    Outcome::Deferred { .. } => Some("the provider could not be asked"),
                    _ => None,
                };
                let fired = inner.engine().refresh(provider, failure, now, wall);
                inner.send(fired);
            }
            Event::RbacSync { cluster, status } => {
                let failure = status
                    .as_ref()
                    .filter(|s| s.failing())
                    .map(|s| s.last_error.as_deref().unwrap_or("unknown error"));
                let fired = inner.engine().rbac_sync(cluster, failure, now, wall);
                inner.send(fired);
            }
            _ => {}
        }
    }
}
