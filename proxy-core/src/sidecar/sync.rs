//! Following the center's replica feed: long polls from the replica's
//! revision, applied as they come, with backoff while the center is away.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use secrecy::{ExposeSecret, SecretString};

use super::{replica::Replica, Shared};
use crate::net::{tls::OutboundClient, OutboundProxy};
use crate::replica::ReplicaFeed;
use crate::tunnel::TOKEN_HEADER;

/// How long the center may hold a poll open.
pub(super) const POLL_TIMEOUT: Duration = Duration::from_secs(20);
/// Extra time for the answer's head to arrive before the poll counts as lost.
const POLL_GRACE: Duration = Duration::from_secs(10);
/// Longest wait for the next piece of an answer's body. A reset of 100,000
/// tokens is about 25 MB, longer than any whole-answer limit on a slow
/// link, so the body is timed by its progress.
const BODY_STALL: Duration = Duration::from_secs(30);
/// How often a quiet, current replica records that it is current.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);
/// How often a failing feed logs how far behind the replica is.
const LAG_LOG_EVERY: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Largest feed answer read (a reset of 100,000 tokens is about 25 MB).
const MAX_FEED: usize = 512 * 1024 * 1024;

pub(super) type FeedClient = OutboundClient<Empty<Bytes>>;

/// An HTTPS-only client trusting `ca_pem` (or the system roots), through
/// `proxy` when it applies to the center.
pub(super) fn client(ca_pem: Option<&[u8]>, proxy: OutboundProxy) -> Result<FeedClient, String> {
    crate::net::tls::https_client(ca_pem, Duration::from_secs(10), proxy, false)
}

/// How far behind the center the replica is.
#[derive(Debug, Default)]
pub struct Lag {
    /// Unix milliseconds when the replica was last known current (0: never).
    current_at_ms: AtomicU64,
    /// A poll is open and the one before it succeeded: the center answers
    /// it the moment anything changes, so the replica is current.
    connected: AtomicBool,
    /// The center's revision at the last answer.
    center_revision: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Lag {
    /// Starts from a replica file saved when it was current at `saved_ms`.
    pub(super) fn from_saved(saved_ms: u64) -> Self {
        Self {
            current_at_ms: AtomicU64::new(saved_ms),
            ..Self::default()
        }
    }

    pub(super) fn current(&self, center_revision: u64) {
        self.current_at_ms.store(now_ms(), Ordering::Relaxed);
        self.center_revision
            .store(center_revision, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
    }

    pub(super) fn lost(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// Whether the feed is connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Seconds the replica may be missing changes: 0 while connected,
    /// otherwise since it was last known current; `None` if it never was.
    pub fn seconds_behind(&self) -> Option<f64> {
        if self.connected() {
            return Some(0.0);
        }
        match self.current_at_ms.load(Ordering::Relaxed) {
            0 => None,
            at => Some(now_ms().saturating_sub(at) as f64 / 1000.0),
        }
    }

    /// Unix milliseconds when it was last known current.
    pub(super) fn current_at_ms(&self) -> u64 {
        self.current_at_ms.load(Ordering::Relaxed)
    }

    /// The center's revision at the last answer.
    pub fn center_revision(&self) -> u64 {
        self.center_revision.load(Ordering::Relaxed)
    }
}

/// The feed's long poll from `since`. While polls fail, each asks the
/// center to close its connection after answering: a replica cut off from
/// etcd answers 503, and behind a load balancer that picks a replica per
/// connection, only a new connection may reach a healthy one.
pub(super) fn feed_request(
    shared: &Shared,
    since: crate::store::Revision,
    failing: bool,
) -> Result<Request<Empty<Bytes>>, String> {
    let cluster =
        percent_encoding::utf8_percent_encode(&shared.cluster, percent_encoding::NON_ALPHANUMERIC);
    let policy = shared.replica.load().policy_hash().to_owned();
    let uri = format!(
        "{}/paddock/v1/clusters/{cluster}/replica?since={since}&policy={policy}&timeoutSeconds={}",
        shared.server.trim_end_matches('/'),
        POLL_TIMEOUT.as_secs()
    );
    let mut request = Request::get(&uri)
        .body(Empty::new())
        .map_err(|e| format!("bad server URL: {e}"))?;
    let headers = request.headers_mut();
    headers.insert(TOKEN_HEADER, registration_token(&shared.token.load())?);
    if failing {
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    Ok(request)
}

/// Reads a feed answer's body (at most [`MAX_FEED`]) for as long as it
/// keeps coming: no more than `stall` between two pieces.
pub(super) async fn read_body<B>(body: B, stall: Duration) -> Result<Bytes, String>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut reading = std::pin::pin!(Limited::new(body, MAX_FEED));
    let mut read = bytes::BytesMut::new();
    loop {
        let frame = tokio::time::timeout(stall, reading.frame())
            .await
            .map_err(|_| format!("the feed answer stalled for {stall:?}"))?;
        let Some(frame) = frame else {
            return Ok(read.freeze());
        };
        let frame = frame.map_err(|e| format!("reading the feed: {e}"))?;
        if let Ok(data) = frame.into_data() {
            read.put(data);
        }
    }
}

/// Polls the feed until the process ends.
pub(super) async fn follow(shared: Arc<Shared>) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    let mut heartbeat_at = tokio::time::Instant::now();
    let mut lag_logged_at = tokio::time::Instant::now();
    loop {
        let since = shared.replica.load().revision();
        match poll(&shared, since, failing).await {
            Ok(feed) => {
                backoff = BACKOFF_MIN;
                if failing {
                    tracing::info!(cluster.id = %shared.cluster, revision = %since,
                        center_revision = feed.revision.0,
                        seconds_behind = shared.lag.seconds_behind().unwrap_or(f64::INFINITY),
                        "replica feed reconnected");
                    failing = false;
                }
                apply(&shared, feed);
                if heartbeat_at.elapsed() >= HEARTBEAT_EVERY {
                    heartbeat_at = tokio::time::Instant::now();
                    let beating = shared.clone();
                    if let Ok(Err(error)) =
                        tokio::task::spawn_blocking(move || beating.heartbeat()).await
                    {
                        tracing::warn!(%error, "cannot record the replica's freshness");
                    }
                }
            }
            Err(error) => {
                shared.lag.lost();
                shared.reload_token().await;
                if !failing {
                    tracing::warn!(cluster.id = %shared.cluster, %error,
                        revision = %since, "replica feed failed; answering from the local replica");
                    lag_logged_at = tokio::time::Instant::now();
                } else if lag_logged_at.elapsed() >= LAG_LOG_EVERY {
                    log_lag(&shared, &error);
                    lag_logged_at = tokio::time::Instant::now();
                } else {
                    tracing::debug!(%error, "replica feed still failing");
                }
                failing = true;
                tokio::time::sleep(jitter(backoff)).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// The replica's lag, while the feed keeps failing: what `/readyz` says.
fn log_lag(shared: &Shared, error: &str) {
    let replica = shared.replica.load();
    tracing::warn!(cluster.id = %shared.cluster, %error,
        revision = %replica.revision(),
        center_revision = shared.lag.center_revision(),
        seconds_behind = shared.lag.seconds_behind().unwrap_or(f64::INFINITY),
        stale = shared.stale().is_some(),
        "replica feed still failing; answering from the local replica");
}

fn apply(shared: &Shared, feed: ReplicaFeed) {
    let revision = feed.revision.0;
    let reset = feed.reset;
    let changed = !feed.is_empty();
    let current = shared.replica.load_full();
    if changed {
        match current.apply(feed) {
            Ok(next) => {
                let next = Arc::new(next);
                shared.replica.store(next.clone());
                shared.persist.send_replace(Some(next.clone()));
                let log = if reset {
                    tracing::Level::INFO
                } else {
                    tracing::Level::DEBUG
                };
                if log == tracing::Level::INFO {
                    tracing::info!(cluster.id = %shared.cluster, revision, tokens = next.token_count(), "replica reset from the center");
                } else {
                    tracing::debug!(cluster.id = %shared.cluster, revision, tokens = next.token_count(), "replica updated");
                }
            }
            Err(error) => {
                shared.lag.lost();
                tracing::error!(cluster.id = %shared.cluster, %error, "replica feed answer refused");
                return;
            }
        }
    } else if revision != current.revision().0 {
        // Nothing for this cluster changed, but the store moved on.
        let next = Arc::new(Replica::clone(&current).at_revision(revision));
        shared.replica.store(next);
    }
    shared.lag.current(revision);
}

async fn poll(
    shared: &Shared,
    since: crate::store::Revision,
    failing: bool,
) -> Result<ReplicaFeed, String> {
    let request = feed_request(shared, since, failing)?;
    let head_within = POLL_TIMEOUT + POLL_GRACE;
    let response = tokio::time::timeout(head_within, shared.client.request(request))
        .await
        .map_err(|_| format!("no answer from {} within {head_within:?}", shared.server))?
        .map_err(|e| format!("cannot reach {}: {}", shared.server, error_chain(&e)))?;
    let status = response.status();
    let body = read_body(response.into_body(), BODY_STALL).await?;
    if status == StatusCode::UNAUTHORIZED {
        return Err(format!(
            "the center refused the registration token of cluster {} (401): it is wrong, \
             rotated or revoked (`paddock cluster token {}` issues a new one)",
            shared.cluster, shared.cluster
        ));
    }
    if status != StatusCode::OK {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_default();
        return Err(format!("the center answered {status}: {message}"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("the feed answer is not valid: {e}"))
}

fn registration_token(token: &SecretString) -> Result<HeaderValue, String> {
    let mut value = HeaderValue::from_str(token.expose_secret())
        .map_err(|_| "the token holds characters a header cannot carry".to_owned())?;
    value.set_sensitive(true);
    Ok(value)
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// `d` ± 20 %, so sidecars restarted together do not retry together.
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    crate::authn::tokens::os_random(&mut b);
    let factor = 0.8 + 0.4 * f64::from(b[0]) / 255.0;
    d.mul_f64(factor)
}
