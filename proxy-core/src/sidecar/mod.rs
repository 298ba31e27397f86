//! `paddock sidecar`: the authorized cluster endpoint. Runs next to one
//! downstream API server and authenticates that cluster's Paddock tokens
//! for it, through kube-apiserver's token webhook, also while the center is
//! unreachable.
//!
//! * It follows the center's replica feed for its cluster ([`crate::replica`]):
//!   a long poll from its revision, so a revocation, a disabled user or a
//!   group change reaches it as soon as the center commits it; a full state
//!   again when it fell too far behind.
//! * The replica ([`Replica`]) is kept in memory for the webhook and on disk
//!   ([`ReplicaDisk`]), so a sidecar restarted while the center is down
//!   still answers.
//! * It verifies with the cluster's verifier key and the tokens' cluster
//!   verifiers, never the center's pepper (see
//!   [`TokenHasher::cluster_key`](crate::authn::tokens::TokenHasher::cluster_key)),
//!   through the same [`TokenVerifier`] as the center: constant-time
//!   comparison, expiry, token and user enabled; and behind the same
//!   [`TokenCache`], whose hits hold only while the replica's content is
//!   the one they were verified against.
//! * Its lag (revision, seconds behind) is in `/readyz`, the log and
//!   `/metrics`; with a maximum staleness set, a replica older than that
//!   fails closed: the webhook answers 503, which kube-apiserver does not
//!   cache and treats as "not authenticated".

mod disk;
mod proxy;
mod replica;
pub mod review;
mod server;
mod sync;

pub use disk::{DiskError, ReplicaDisk, CURRENT_FILE, REPLICA_FILE};
pub use replica::{Replica, ReplicaError};
pub use sync::Lag;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::StatusCode;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::authn::tokens::{token_identity, TokenCache, TokenVerifier};
use crate::authn::{Identity, SYSTEM_AUTHENTICATED};
use crate::net::OutboundProxy;
use crate::store::Timestamp;
use review::ReviewedUser;

/// How long a verified token's identity is served from memory. Changes
/// do not wait for it (every change to the replica voids the cache): it
/// only lets unused entries go.
const CACHE_TTL: Duration = Duration::from_secs(60);
const CACHE_CAPACITY: u64 = 100_000;

/// What the replica says of a presented token.
pub(crate) enum Checked {
    /// The replica cannot say (never received, or past the maximum
    /// staleness): fail closed, with a status nobody caches.
    Unavailable(String),
    /// Valid for this cluster: who it is.
    Authenticated(Arc<Identity>),
    /// Not valid here, and why (for logs).
    Refused(String),
}

/// What a sidecar is started with.
#[non_exhaustive]
pub struct SidecarOptions {
    /// The center's base URL (`https://paddock.example`).
    pub server: String,
    /// The cluster this sidecar serves.
    pub cluster: String,
    /// The cluster's registration token (`<cluster>.<secret>`), which
    /// reads its feed.
    pub token: SecretString,
    /// The file `token` came from, read again after every failed poll, so
    /// a rotated token (a Secret updated in place) is picked up without a
    /// restart.
    pub token_file: Option<PathBuf>,
    /// CA bundle (PEM) for the center's certificate; system roots when `None`.
    pub server_ca_pem: Option<Vec<u8>>,
    /// Where the replica is kept.
    pub data_dir: PathBuf,
    /// Fail closed when the replica is older than this.
    pub max_staleness: Option<Duration>,
    /// The HTTP proxy to reach the center through (none by default; the
    /// binary reads `HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: OutboundProxy,
}

impl SidecarOptions {
    /// Options with no CA (system roots) and no maximum staleness.
    pub fn new(server: &str, cluster: &str, token: SecretString, data_dir: PathBuf) -> Self {
        Self {
            server: server.to_owned(),
            cluster: cluster.to_owned(),
            token,
            token_file: None,
            server_ca_pem: None,
            data_dir,
            max_staleness: None,
            proxy: OutboundProxy::default(),
        }
    }
}

impl std::fmt::Debug for SidecarOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarOptions")
            .field("server", &self.server)
            .field("cluster", &self.cluster)
            .field("token", &"<redacted>")
            .field("data_dir", &self.data_dir)
            .field("max_staleness", &self.max_staleness)
            .field("proxy", &self.proxy)
            .finish_non_exhaustive()
    }
}

/// Why a sidecar cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SidecarError {
    /// The replica file is unusable or unreadable.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// The center's CA bundle or TLS settings are invalid.
    #[error("TLS towards the center: {0}")]
    Tls(String),
    /// The server URL is not `https://`.
    #[error("--server must be an https:// URL, not {0:?}")]
    Server(String),
}

/// A sidecar: the replica, its feed and its webhook.
#[derive(Clone)]
pub struct Sidecar {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Sidecar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sidecar")
            .field("cluster", &self.shared.cluster)
            .field("replica", &self.shared.replica.load())
            .finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    cluster: String,
    server: String,
    token: ArcSwap<SecretString>,
    token_file: Option<PathBuf>,
    client: sync::FeedClient,
    replica: ArcSwap<Replica>,
    lag: Lag,
    max_staleness: Option<Duration>,
    persist: watch::Sender<Option<Arc<Replica>>>,
    disk: ReplicaDisk,
    /// The revision of the replica on disk: the heartbeat vouches for the
    /// file's freshness only while it holds the replica in memory.
    saved: AtomicU64,
    metrics: Metrics,
    /// Verified tokens and their identities, as on the center's request
    /// path; a hit holds only while the replica's content is unchanged.
    tokens: TokenCache<Arc<Identity>>,
    /// Whether the last check found the replica unusable: logged once when
    /// that starts and once when it ends, not for every review.
    refusing: AtomicBool,
}

impl Sidecar {
    /// Opens the replica in `options.data_dir` (refusing a damaged one) and
    /// prepares the feed's client. Nothing runs until [`Sidecar::serve`].
    pub fn open(options: SidecarOptions) -> Result<Self, SidecarError> {
        if !options.server.starts_with("https://") {
            return Err(SidecarError::Server(options.server));
        }
        let disk = ReplicaDisk::new(&options.data_dir)?;
        let (replica, current_at_ms) = disk.load(&options.cluster)?;
        let saved = AtomicU64::new(replica.revision().0);
        let client = sync::client(options.server_ca_pem.as_deref(), options.proxy)
            .map_err(SidecarError::Tls)?;
        tracing::info!(cluster.id = %options.cluster, revision = %replica.revision(),
            tokens = replica.token_count(), file = %disk.path().display(), "replica loaded");
        Ok(Self {
            shared: Arc::new(Shared {
                cluster: options.cluster,
                server: options.server,
                token: ArcSwap::from_pointee(options.token),
                token_file: options.token_file,
                client,
                replica: ArcSwap::from_pointee(replica),
                lag: Lag::from_saved(current_at_ms),
                max_staleness: options.max_staleness,
                persist: watch::channel(None).0,
                disk,
                saved,
                metrics: Metrics::new(),
                tokens: TokenCache::new(CACHE_TTL, CACHE_CAPACITY),
                refusing: AtomicBool::new(false),
            }),
        })
    }

    /// Follows the feed, persists the replica and serves the webhook on
    /// `listener` until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        // Subscribed before the feed runs, so its first answer is saved.
        let changes = self.shared.persist.subscribe();
        let follow = tokio::spawn(sync::follow(self.shared.clone()));
        let persist = tokio::spawn(persist(self.shared.clone(), changes));
        server::serve(listener, self.shared.clone(), shutdown).await;
        follow.abort();
        // Let a write in flight finish: the file is replaced atomically
        // either way, but the newest state is worth keeping.
        persist.abort();
    }

    /// Answers a TokenReview body: the HTTP status and the JSON to send.
    pub fn review(&self, body: &[u8]) -> (StatusCode, serde_json::Value) {
        self.shared.review(body)
    }

    /// The current replica.
    pub fn replica(&self) -> Arc<Replica> {
        self.shared.replica.load_full()
    }

    /// The replica's lag.
    pub fn lag(&self) -> &Lag {
        &self.shared.lag
    }
}

async fn persist(shared: Arc<Shared>, mut changes: watch::Receiver<Option<Arc<Replica>>>) {
    while changes.changed().await.is_ok() {
        let Some(replica) = changes.borrow_and_update().clone() else {
            continue;
        };
        let saving = shared.clone();
        match tokio::task::spawn_blocking(move || saving.save(&replica)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "cannot save the replica"),
            Err(error) => tracing::error!(%error, "replica save task failed"),
        }
    }
}

impl Shared {
    /// Writes `replica` to disk (blocking), noting its revision as saved.
    fn save(&self, replica: &Replica) -> Result<(), DiskError> {
        self.disk.save(replica, self.lag.current_at_ms())?;
        self.saved.store(replica.revision().0, Ordering::Relaxed);
        Ok(())
    }

    /// Records on disk that the saved replica is still current (blocking).
    /// Only while the file holds the replica in memory: a heartbeat beside
    /// an older file (a save that failed, or has not run yet) would make
    /// that file look current after a restart, revocations it lacks and
    /// all. Then the save is asked for again instead.
    fn heartbeat(&self) -> Result<(), DiskError> {
        let current = self.replica.load_full();
        if self.saved.load(Ordering::Relaxed) != current.revision().0 {
            self.persist.send_replace(Some(current));
            return Ok(());
        }
        self.disk.save_heartbeat(self.lag.current_at_ms())
    }

    /// Reads the token file again; a new, non-empty token replaces the
    /// one in use. An unreadable file keeps the current token.
    async fn reload_token(&self) {
        let Some(path) = &self.token_file else { return };
        // Off the runtime's threads: the file may sit on a slow volume.
        let Ok(text) = tokio::fs::read_to_string(path).await else {
            return;
        };
        let text = text.trim();
        if !text.is_empty() && text != self.token.load().expose_secret() {
            tracing::info!(cluster.id = %self.cluster, file = %path.display(), "registration token file changed: using the new token");
            self.token
                .store(Arc::new(SecretString::from(text.to_owned())));
        }
    }

    /// Seconds behind beyond the maximum staleness, if so.
    fn stale(&self) -> Option<String> {
        let max = self.max_staleness?;
        match self.lag.seconds_behind() {
            Some(s) if s <= max.as_secs_f64() => None,
            Some(s) => Some(format!(
                "the replica is {s:.0} s behind the center (maximum {} s)",
                max.as_secs()
            )),
            None => Some("the replica was never synchronised".to_owned()),
        }
    }

    /// Checks a presented token against the replica: the identity it
    /// stands for, exactly as the center presents it downstream
    /// (`StoreTokens`), or why not.
    fn check(&self, presented: &str) -> Checked {
        let replica = self.replica.load_full();
        let hasher = match (self.stale(), replica.hasher()) {
            (None, Some(hasher)) => {
                if self.refusing.swap(false, Ordering::Relaxed) {
                    tracing::info!(cluster.id = %self.cluster, "the replica is usable again: answering token reviews");
                }
                hasher.clone()
            }
            (stale, _) => {
                let why = stale.unwrap_or_else(|| {
                    "the replica has not been received from the center yet".to_owned()
                });
                if !self.refusing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(cluster.id = %self.cluster, "{why}: refusing tokens (503) until the feed catches up");
                }
                return Checked::Unavailable(why);
            }
        };
        let verifier = TokenVerifier::new(hasher, replica.clone());
        let verified = self
            .tokens
            .verify(&verifier, presented, Timestamp::now(), |token| {
                // The replica's records are all scoped to its cluster, so
                // the identity is too.
                let (username, principal_ids, groups) = replica
                    .user(token.user_id())
                    .map(|u| {
                        (
                            u.username.clone(),
                            u.principal_ids.clone(),
                            u.groups.clone(),
                        )
                    })
                    .unwrap_or_default();
                Arc::new(token_identity(token, username, principal_ids, groups))
            });
        match verified {
            Ok((token, identity)) if token.permits_cluster(Some(replica.cluster())) => {
                Checked::Authenticated(identity)
            }
            Ok(_) => Checked::Refused(format!(
                "the token is not valid for cluster {}",
                replica.cluster()
            )),
            Err(error) => Checked::Refused(error.to_string()),
        }
    }

    fn review(&self, body: &[u8]) -> (StatusCode, serde_json::Value) {
        let fail = |code: StatusCode, reason: &'static str, message: String| {
            let status = crate::status::Status::failure(code, reason, message);
            (code, serde_json::to_value(status).unwrap_or_default())
        };
        let request = match review::parse(body) {
            Ok(r) => r,
            Err(error) => {
                self.metrics.review("malformed");
                return fail(StatusCode::BAD_REQUEST, "BadRequest", error.0);
            }
        };
        let outcome = match self.check(request.token.expose_secret()) {
            // Fail closed with a status kube-apiserver neither caches nor
            // mistakes for a verdict on the token.
            Checked::Unavailable(why) => {
                self.metrics.review("stale");
                return fail(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", why);
            }
            Checked::Authenticated(identity) => {
                tracing::debug!(auth.user = %identity.user, token.id = ?identity.token_id, "token review: authenticated");
                let identity = Arc::unwrap_or_clone(identity);
                let mut extra = identity.extra;
                extra.insert(
                    "requesttokenid".to_owned(),
                    identity.token_id.into_iter().collect(),
                );
                // The API server adds `system:authenticated` itself.
                let mut groups = identity.groups;
                groups.retain(|g| g != SYSTEM_AUTHENTICATED);
                Ok(ReviewedUser {
                    uid: identity.user.clone(),
                    username: identity.user,
                    groups,
                    extra,
                })
            }
            Checked::Refused(why) => {
                tracing::debug!(error = %why, "token review: not authenticated");
                Err(why)
            }
        };
        self.metrics.review(if outcome.is_ok() {
            "authenticated"
        } else {
            "unauthenticated"
        });
        (StatusCode::OK, review::answer(request.version, outcome))
    }

    fn readiness(&self) -> (bool, serde_json::Value) {
        let replica = self.replica.load();
        let behind = self.lag.seconds_behind();
        let stale = self.stale();
        let ready = replica.hasher().is_some() && stale.is_none();
        let body = serde_json::json!({
            "status": if ready { "ok" } else { "unavailable" },
            "cluster": self.cluster,
            "revision": replica.revision().0,
            "centerRevision": self.lag.center_revision(),
            "revisionsBehind": self.lag.center_revision().saturating_sub(replica.revision().0),
            "secondsBehind": behind,
            "connected": self.lag.connected(),
            "tokens": replica.token_count(),
            "policy": replica.policy_hash(),
            "reason": stale,
        });
        (ready, body)
    }

    fn metrics_text(&self) -> String {
        let replica = self.replica.load();
        let m = &self.metrics;
        m.revision
            .set(i64::try_from(replica.revision().0).unwrap_or(i64::MAX));
        m.tokens
            .set(i64::try_from(replica.token_count()).unwrap_or(i64::MAX));
        m.lag
            .set(self.lag.seconds_behind().unwrap_or(f64::INFINITY));
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &m.registry);
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

struct Metrics {
    registry: Registry,
    revision: Gauge,
    tokens: Gauge,
    lag: Gauge<f64, AtomicU64>,
    reviews: Family<ResultLabel, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("paddock_sidecar");
        let revision = Gauge::default();
        registry.register(
            "replica_revision",
            "The center's store revision the replica is current at",
            revision.clone(),
        );
        let tokens = Gauge::default();
        registry.register("replica_tokens", "Tokens in the replica", tokens.clone());
        let lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "replica_lag_seconds",
            "Seconds the replica may be missing changes (0 while the feed is connected)",
            lag.clone(),
        );
        let reviews = Family::<ResultLabel, Counter>::default();
        registry.register(
            "token_reviews",
            "TokenReviews answered, by result (authenticated, unauthenticated, malformed, stale)",
            reviews.clone(),
        );
        Self {
            registry,
            revision,
            tokens,
            lag,
            reviews,
        }
    }

    fn review(&self, result: &'static str) {
        self.reviews.get_or_create(&ResultLabel { result }).inc();
    }
}

#[cfg(test)]
mod tests;
