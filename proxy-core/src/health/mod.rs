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
//! Whether a cluster is reachable is not decided here: it is the one
//! verdict Paddock keeps per cluster, which every request, every call
//! Paddock makes and an agent's tunnel feed (a check's own calls
//! included, and a check that got no answer in time reports that), and
//! which alone emits [`Event::ClusterReachability`]. The view shows that
//! verdict as it is now, not as it was at the last check, so it never
//! disagrees with the events the alert and metrics plugins heard. Each
//! check is an [`Event::ClusterChecked`].
//!
//! The checker reads its clusters from a cluster source at each round,
//! so clusters added while Paddock runs are checked from the next round on.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    time::{Duration, Instant, SystemTime},
};

use arc_swap::ArcSwap;
use futures_util::StreamExt;
use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::{
    events::{Event, Events},
    upstream::{Cluster, Observation, Router},
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
    /// Whether the cluster answers, as Paddock finds now (its checks, its
    /// requests, an agent's tunnel): any answer counts, whatever its status
    /// (a refused `/version` is reachable, with [`last_error`](Self::last_error)).
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
    /// What went wrong at the last check (unreachable, `/version` refused,
    /// or the nodes could not be read), or why the cluster is unreachable
    /// since; `None` when all was read.
    pub last_error: Option<String>,
    /// When reachability last changed (the first verdict included).
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
    results: ArcSwap<HashMap<String, Checked>>,
    /// Where a cluster not checked yet is found, for its verdict.
    source: Arc<dyn ClusterSource>,
}

/// One cluster's last check, and the cluster, whose verdict is read live.
#[derive(Clone)]
struct Checked {
    health: Arc<ClusterHealth>,
    cluster: Arc<Cluster>,
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
            source: source.clone(),
        });
        tokio::spawn(run(Arc::downgrade(&checker), source, options, events));
        checker
    }

    /// The last check of cluster `id` (a "not checked yet" one for a
    /// cluster the checker has not read), with the cluster's verdict as it
    /// is now.
    pub(crate) fn get(&self, id: &str) -> Arc<ClusterHealth> {
        if let Some(checked) = self.results.load().get(id) {
            return live(&checked.health, &checked.cluster);
        }
        let pending = Arc::new(ClusterHealth::pending(id));
        match self.source.clusters().into_iter().find(|c| c.id() == id) {
            Some(cluster) => live(&pending, &cluster),
            None => pending,
        }
    }
}

/// `health` with `cluster`'s verdict now, which may have changed since.
fn live(health: &Arc<ClusterHealth>, cluster: &Cluster) -> Arc<ClusterHealth> {
    let verdict = cluster.reachability().verdict();
    let reachable = verdict.reachable == Some(true);
    if health.reachable == reachable && health.since == verdict.since {
        return health.clone();
    }
    let mut health = ClusterHealth::clone(health);
    health.reachable = reachable;
    health.since = verdict.since;
    if !reachable {
        health.last_error = verdict.reason.or(health.last_error);
    }
    Arc::new(health)
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
        if checker.strong_count() == 0 {
            return;
        }
        let clusters = source.clusters();
        let checks = futures_util::stream::iter(clusters)
            .map(|cluster| async move {
                let health = Arc::new(check(&cluster, options.timeout).await);
                Checked { health, cluster }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        let mut results = HashMap::with_capacity(checks.len());
        for checked in checks {
            events.emit(&Event::ClusterChecked(checked.health.clone()));
            results.insert(checked.health.cluster.clone(), checked);
        }
        let Some(this) = checker.upgrade() else {
            return;
        };
        this.results.store(Arc::new(results));
    }
}

/// Reads one cluster within `timeout`. Its calls tell the cluster's
/// verdict what they find; a `/version` without an answer in time is told
/// here.
async fn check(cluster: &Cluster, timeout: Duration) -> ClusterHealth {
    let mut health = ClusterHealth::pending(cluster.id());
    health.last_error = None;
    let version_read = AtomicBool::new(false);
    let read = tokio::time::timeout(timeout, async {
        let started = Instant::now();
        let version = read_json::<KubernetesVersion>(cluster, "/version").await;
        version_read.store(true, Ordering::Relaxed);
        let latency = started.elapsed();
        let version = version?;
        let nodes = nodes(cluster).await;
        Ok::<_, String>((version, latency, nodes))
    })
    .await;
    match read {
        Ok(Ok((version, latency, nodes))) => {
            health.kubernetes_version = Some(version);
            health.latency_seconds = Some(latency.as_secs_f64());
            match nodes {
                Ok(nodes) => health.nodes = Some(nodes),
                Err(error) => health.last_error = Some(format!("nodes: {error}")),
            }
        }
        Ok(Err(error)) => health.last_error = Some(error),
        Err(_) => {
            let error = format!("no answer within {timeout:?}");
            if version_read.load(Ordering::Relaxed) {
                health.last_error = Some(format!("nodes: {error}"));
            } else {
                cluster
                    .reachability()
                    .observe(Observation::Unreachable(&error));
                health.last_error = Some(error);
            }
        }
    }
    health.checked_at = Some(SystemTime::now());
    let verdict = cluster.reachability().verdict();
    health.reachable = verdict.reachable == Some(true);
    health.since = verdict.since;
    if !health.reachable && health.last_error.is_none() {
        health.last_error = verdict.reason;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::tests::{recorded, Changes},
        upstream::ClusterConfig,
    };

    /// A cluster at `server`, its reachability changes recorded.
    fn cluster(server: String) -> (Arc<Cluster>, impl Fn() -> Changes) {
        let (events, seen) = recorded();
        let cluster = Cluster::new(&ClusterConfig::new("prod", server), 0, events).unwrap();
        (Arc::new(cluster), seen)
    }

    struct Fixed(Arc<Cluster>);

    impl ClusterSource for Fixed {
        fn clusters(&self) -> Vec<Arc<Cluster>> {
            vec![self.0.clone()]
        }
    }

    /// A checker of `cluster` that has not checked it yet.
    fn checker(cluster: &Arc<Cluster>) -> HealthChecker {
        HealthChecker {
            results: ArcSwap::from_pointee(HashMap::new()),
            source: Arc::new(Fixed(cluster.clone())),
        }
    }

    #[tokio::test]
    async fn the_view_and_the_events_follow_the_one_verdict() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let (cluster, seen) = cluster(server);
        let checker = checker(&cluster);
        assert_eq!(
            checker.get("prod"),
            Arc::new(ClusterHealth::pending("prod"))
        );
        // The check's own call is what finds the cluster unreachable.
        let health = Arc::new(check(&cluster, Duration::from_secs(10)).await);
        assert!(!health.reachable);
        assert!(health.since.is_some());
        assert!(health.last_error.is_some());
        let [(false, Some(_))] = seen()[..] else {
            panic!("{:?}", seen());
        };
        let checked = Checked {
            health: health.clone(),
            cluster: cluster.clone(),
        };
        checker
            .results
            .store(Arc::new(HashMap::from([("prod".to_owned(), checked)])));
        assert_eq!(checker.get("prod"), health);
        // A request answered since: the view says so before the next check,
        // as the event did.
        cluster.reachability().observe(Observation::Answers);
        let now = checker.get("prod");
        assert!(now.reachable);
        assert_ne!(now.since, health.since);
        assert_eq!(seen().last(), Some(&(true, None)));
        // A second check finding it refused again: one more change, told once.
        let again = check(&cluster, Duration::from_secs(10)).await;
        assert!(!again.reachable);
        assert_eq!(seen().len(), 3);
    }

    #[tokio::test]
    async fn a_version_without_an_answer_in_time_is_unreachable() {
        // Connections are accepted (the backlog) and never answered.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (cluster, seen) = cluster(format!("http://{}", silent.local_addr().unwrap()));
        // Not checked yet, but a request was answered: so says the view.
        cluster.reachability().observe(Observation::Answers);
        let pending = checker(&cluster).get("prod");
        assert!(pending.reachable && pending.checked_at.is_none());
        let health = check(&cluster, Duration::from_millis(200)).await;
        assert!(!health.reachable);
        assert_eq!(health.last_error.as_deref(), Some("no answer within 200ms"));
        assert_eq!(
            seen(),
            [
                (true, None),
                (false, Some("no answer within 200ms".to_owned()))
            ]
        );
        drop(silent);
    }
}
