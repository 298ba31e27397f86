//! Cluster health: Paddock reads each downstream cluster with its own
//! credential on a schedule (every [`HealthOptions::interval`], each read
//! bounded by [`HealthOptions::timeout`]) and keeps the last answer, which
//! `GET /paddock/v1/clusters/<id>/health` and the admins' landing page
//! show. Never on a caller's request path: a request only reads the cache.
//!
//! What is read, as kube-apiserver serves it:
//! - `GET /version` (`version.Info`: `gitVersion`, `major`, `minor`,
//!   `platform`): whether the cluster answers, its Kubernetes version, and
//!   the API latency (the time this read took);
//! - `GET /api/v1/nodes?limit=100`, following `metadata.continue`: the node
//!   count, and how many have the condition `Ready` at `True`. Paddock's
//!   credential needs `list nodes` for this part; without it the cluster is
//!   still reported, with the nodes' error.
//!
//! A change of reachability is an
//! [`Event::ClusterReachability`], and each check an [`Event::ClusterChecked`]
//! (the alert and metrics plugins listen).
//!
//! The checker reads its clusters from a cluster source at each round,
//! so clusters added while Paddock runs are checked from the next round on.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{
    events::{Event, Events},
    upstream::{Cluster, Router},
};

/// How often and how long the clusters are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthOptions {
    /// Time between two rounds of checks (default 30 s).
    pub interval: Duration,
    /// Time one cluster's check may take, nodes included (default 10 s).
    pub timeout: Duration,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
        }
    }
}

impl HealthOptions {
    /// Checks every `interval`, each cluster within `timeout`.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        Self { interval, timeout }
    }
}

/// Clusters checked at once; the others wait for a free slot.
const CONCURRENCY: usize = 8;
/// Nodes per page, and pages read at most (a cluster of 10 000 nodes).
const NODES_PAGE: usize = 100;
const MAX_NODE_PAGES: usize = 100;
/// Largest answer read: a node is tens of kilobytes at most (its images
/// list), so a page fits; with [`CONCURRENCY`] checks at once the checker
/// holds 64 MiB at worst.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// The last check of one cluster, as `GET /paddock/v1/clusters/<id>/health`
/// returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterHealth {
    /// The cluster's id.
    pub cluster: String,
    /// Whether `/version` answered at the last check.
    pub reachable: bool,
    /// When the last check ended; `None` before the first.
    #[serde(serialize_with = "rfc3339_opt")]
    pub checked_at: Option<SystemTime>,
    /// Time `/version` took to answer, in seconds.
    pub latency_seconds: Option<f64>,
    /// The cluster's `/version`.
    pub kubernetes_version: Option<KubernetesVersion>,
    /// The nodes, when Paddock may list them.
    pub nodes: Option<NodeCount>,
    /// What went wrong at the last check (unreachable, or the nodes could
    /// not be read); `None` when all was read.
    pub last_error: Option<String>,
    /// When reachability last changed (or the first check).
    #[serde(serialize_with = "rfc3339_opt")]
    pub since: Option<SystemTime>,
}

/// The fields of kube-apiserver's `version.Info` Paddock shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct KubernetesVersion {
    /// e.g. `v1.31.2`.
    #[serde(default)]
    pub git_version: String,
    /// e.g. `1`.
    #[serde(default)]
    pub major: String,
    /// e.g. `31`.
    #[serde(default)]
    pub minor: String,
    /// e.g. `linux/amd64`.
    #[serde(default)]
    pub platform: String,
}

/// How many nodes a cluster has, and how many are ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct NodeCount {
    /// All nodes.
    pub total: u64,
    /// Nodes whose `Ready` condition is `True`.
    pub ready: u64,
}

impl ClusterHealth {
    /// A cluster not checked yet.
    fn pending(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            reachable: false,
            checked_at: None,
            latency_seconds: None,
            kubernetes_version: None,
            nodes: None,
            last_error: Some("not checked yet".to_owned()),
            since: None,
        }
    }
}

#[cfg(test)]
impl ClusterHealth {
    /// A reachable cluster with `total` nodes, `ready` of them ready, read
    /// in 0.25 s.
    pub(crate) fn for_tests(cluster: &str, total: u64, ready: u64) -> Self {
        Self {
            reachable: true,
            checked_at: Some(SystemTime::now()),
            latency_seconds: Some(0.25),
            nodes: Some(NodeCount { total, ready }),
            last_error: None,
            ..Self::pending(cluster)
        }
    }
}

/// Where the checker finds the clusters to check, at each round: the
/// configured clusters today; any registry of clusters (runtime ones) can
/// implement it.
pub(crate) trait ClusterSource: Send + Sync + 'static {
    /// The clusters to check now.
    fn clusters(&self) -> Vec<Arc<Cluster>>;
}

impl ClusterSource for Router {
    fn clusters(&self) -> Vec<Arc<Cluster>> {
        Router::clusters(self)
    }
}

/// The cache of checks, and the task that fills it.
pub(crate) struct HealthChecker {
    results: ArcSwap<HashMap<String, Arc<ClusterHealth>>>,
}

impl std::fmt::Debug for HealthChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthChecker").finish_non_exhaustive()
    }
}

impl HealthChecker {
    /// Starts checking `source`'s clusters; the task ends when the checker
    /// is dropped. Needs a tokio runtime.
    pub(crate) fn spawn(
        source: Arc<dyn ClusterSource>,
        options: HealthOptions,
        events: Events,
    ) -> Arc<Self> {
        let checker = Arc::new(Self {
            results: ArcSwap::from_pointee(HashMap::new()),
        });
        tokio::spawn(run(Arc::downgrade(&checker), source, options, events));
        checker
    }

    /// The last check of cluster `id`; a "not checked yet" one for a
    /// cluster the checker has not read.
    pub(crate) fn get(&self, id: &str) -> Arc<ClusterHealth> {
        self.results
            .load()
            .get(id)
            .cloned()
            .unwrap_or_else(|| Arc::new(ClusterHealth::pending(id)))
    }
}

async fn run(
    checker: Weak<HealthChecker>,
    source: Arc<dyn ClusterSource>,
    options: HealthOptions,
    events: Events,
) {
    let mut tick = tokio::time::interval(options.interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(this) = checker.upgrade() else {
            return;
        };
        let previous = this.results.load_full();
        drop(this);
        let clusters = source.clusters();
        let checks = futures_util::stream::iter(clusters)
            .map(|cluster| {
                let before = previous.get(cluster.id()).cloned();
                async move { check(&cluster, options.timeout, before.as_deref()).await }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut results = HashMap::with_capacity(checks.len());
        for health in checks {
            let health = Arc::new(health);
            let changed = previous
                .get(&health.cluster)
                .is_none_or(|before| before.reachable != health.reachable);
            if changed {
                if health.reachable {
                    tracing::info!(cluster.id = %health.cluster, "cluster reachable");
                } else {
                    tracing::warn!(cluster.id = %health.cluster, error = health.last_error.as_deref().unwrap_or(""), "cluster unreachable");
                }
                // The first check of a reachable cluster is no news.
                if previous.contains_key(&health.cluster) || !health.reachable {
                    events.emit(&Event::ClusterReachability {
                        cluster: health.cluster.clone(),
                        reachable: health.reachable,
                        reason: health.last_error.clone(),
                    });
                }
            }
            events.emit(&Event::ClusterChecked(health.clone()));
            results.insert(health.cluster.clone(), health);
        }
        let Some(this) = checker.upgrade() else {
            return;
        };
        this.results.store(Arc::new(results));
    }
}

/// Reads one cluster within `timeout`.
async fn check(
    cluster: &Cluster,
    timeout: Duration,
    before: Option<&ClusterHealth>,
) -> ClusterHealth {
    let mut health = ClusterHealth::pending(cluster.id());
    health.last_error = None;
    let read = tokio::time::timeout(timeout, async {
        let started = Instant::now();
        let version = read_json::<KubernetesVersion>(cluster, "/version").await;
        let latency = started.elapsed();
        let version = version?;
        let nodes = nodes(cluster).await;
        Ok::<_, String>((version, latency, nodes))
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
    match read {
        Ok((version, latency, nodes)) => {
            health.reachable = true;
            health.kubernetes_version = Some(version);
            health.latency_seconds = Some(latency.as_secs_f64());
            match nodes {
                Ok(nodes) => health.nodes = Some(nodes),
                Err(error) => health.last_error = Some(format!("nodes: {error}")),
            }
        }
        Err(error) => health.last_error = Some(error),
    }
    let now = SystemTime::now();
    health.checked_at = Some(now);
    health.since = match before {
        Some(before) if before.reachable == health.reachable && before.since.is_some() => {
            before.since
        }
        _ => Some(now),
    };
    health
}

/// The nodes, page by page.
async fn nodes(cluster: &Cluster) -> Result<NodeCount, String> {
    #[derive(Deserialize)]
    struct NodeList {
        #[serde(default)]
        metadata: ListMeta,
        #[serde(default)]
        items: Vec<Node>,
    }
    #[derive(Deserialize, Default)]
    struct ListMeta {
        #[serde(default, rename = "continue")]
        continue_: String,
    }
    #[derive(Deserialize)]
    struct Node {
        #[serde(default)]
        status: NodeStatus,
    }
    #[derive(Deserialize, Default)]
    struct NodeStatus {
        #[serde(default)]
        conditions: Vec<Condition>,
    }
    #[derive(Deserialize)]
    struct Condition {
        #[serde(rename = "type")]
        type_: String,
        status: String,
    }

    let mut count = NodeCount { total: 0, ready: 0 };
    let mut next = String::new();
    for _ in 0..MAX_NODE_PAGES {
        let mut path = format!("/api/v1/nodes?limit={NODES_PAGE}");
        if !next.is_empty() {
            path.push_str("&continue=");
            path.extend(percent_encoding::utf8_percent_encode(
                &next,
                percent_encoding::NON_ALPHANUMERIC,
            ));
        }
        let page: NodeList = read_json(cluster, &path).await?;
        for node in &page.items {
            count.total += 1;
            if node
                .status
                .conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
            {
                count.ready += 1;
            }
        }
        if page.metadata.continue_.is_empty() {
            return Ok(count);
        }
        next = page.metadata.continue_;
    }
    Ok(count)
}

/// A GET with Paddock's credential, parsed as `T`; a failure is a short
/// message (the status and the Status' message, or the transport error).
async fn read_json<T: serde::de::DeserializeOwned>(
    cluster: &Cluster,
    path: &str,
) -> Result<T, String> {
    let (status, body) = cluster
        .read(path, MAX_BODY)
        .await
        .map_err(|e| e.to_string())?;
    if status != StatusCode::OK {
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            message: String,
        }
        let message = serde_json::from_slice::<Status>(&body)
            .map(|s| s.message)
            .unwrap_or_default();
        let path = path.split('?').next().unwrap_or(path);
        return Err(format!("GET {path}: {status} {message}")
            .trim_end()
            .to_owned());
    }
    serde_json::from_slice(&body).map_err(|e| format!("GET {path}: unexpected answer: {e}"))
}

/// `at` as RFC 3339 in UTC, seconds precision.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn rfc3339_opt<S: serde::Serializer>(
    at: &Option<SystemTime>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.serialize_str(&rfc3339(*at)),
        None => serializer.serialize_none(),
    }
}
