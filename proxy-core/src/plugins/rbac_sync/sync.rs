//! The controller: which clusters to synchronise, one pass over one
//! cluster, and the loop that runs passes.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use policy::PolicySet;
use tokio::task::{AbortHandle, JoinSet};

use super::{
    apply, client,
    desired::{self, Desired},
    status::{Board, ClusterStatus, Report},
};
use crate::{
    events::{Event, Events},
    store::{Revision, StoreView, Timestamp},
    upstream::{Cluster, ClusterConfig, Router},
};

/// The compiled policy as it is now (the authorizer's current set).
pub type CurrentPolicy = Arc<dyn Fn() -> Arc<PolicySet> + Send + Sync>;

/// How often the loop looks for a store change or a new cluster.
const TICK: Duration = Duration::from_millis(250);
/// Clusters synchronised at once; a slow or unreachable one (an agent that
/// is not connected waits for it) does not hold the others back.
/// Each of its calls ends within the cluster's request timeout.
const CONCURRENCY: usize = 8;

/// Why a cluster could not be synchronised at all.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// No such cluster in this sync.
    #[error("cluster {0} is not synchronised")]
    UnknownCluster(String),
    /// The cluster's API could not be reached or refused the listing.
    #[error("cluster {cluster}: {message}")]
    Cluster {
        /// The cluster id.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// A client for the cluster could not be built.
    #[error("cluster {cluster}: cannot build a client: {message}")]
    Client {
        /// The cluster id.
        cluster: String,
        /// What failed.
        message: String,
    },
}

/// What a cluster's passes carry from one to the next.
struct Memory {
    /// The upstream cluster the client was made for: a cluster rebuilt by
    /// the router (new server, new CA) gets a new client.
    cluster: Arc<Cluster>,
    client: kube::Client,
    /// What the last pass without error wanted.
    previous: Option<Desired>,
}

/// The RBAC sync over a set of clusters. See the [module](super) docs.
pub struct RbacSync {
    view: Arc<StoreView>,
    policy: CurrentPolicy,
    /// Clusters given one by one ([`cluster`](Self::cluster)).
    fixed: BTreeMap<String, Arc<Cluster>>,
    /// The proxy's routing table, once attached to a proxy.
    router: Option<Arc<Router>>,
    /// Only these of the router's clusters; all when `None`.
    only: Option<BTreeSet<String>>,
    events: Events,
    interval: Duration,
    memory: Mutex<HashMap<String, Memory>>,
    /// Each cluster's status: the only copy, which the endpoints, the
    /// events (hence the metrics and alerts) and [`status`](Self::status)
    /// read. Written under the `memory` lock, so a pass and the cluster's
    /// removal keep their order.
    board: Board,
}

impl std::fmt::Debug for RbacSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacSync")
            .field("clusters", &self.fixed.keys().collect::<Vec<_>>())
            .field("only", &self.only)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl RbacSync {
    /// A sync of the store's bindings under `policy`, with no cluster yet
    /// and a full pass every 60 s. Given to
    /// [`ProxyBuilder::rbac_sync`](crate::ProxyBuilder::rbac_sync), it
    /// synchronises every cluster the proxy routes to.
    pub fn new(view: Arc<StoreView>, policy: CurrentPolicy) -> Self {
        Self {
            view,
            policy,
            fixed: BTreeMap::new(),
            router: None,
            only: None,
            events: Events::default(),
            interval: Duration::from_secs(60),
            memory: Mutex::default(),
            board: Board::default(),
        }
    }

    /// Synchronises the cluster `config` describes, reached with Paddock's
    /// upstream client for it, as a proxy built with it would. For a sync
    /// without a proxy; a proxy's clusters need not be added. Needs a tokio
    /// runtime when the credential is a file (it is watched).
    pub fn cluster(mut self, config: &ClusterConfig) -> Result<Self, SyncError> {
        // Changes of its reachability go nowhere: the sync's events are
        // attached later, and a proxy's clusters are its own.
        let cluster =
            Cluster::new(config, 0, Events::default()).map_err(|e| SyncError::Client {
                cluster: config.id.clone(),
                message: e.to_string(),
            })?;
        self.fixed.insert(config.id.clone(), Arc::new(cluster));
        Ok(self)
    }

    /// Of the proxy's clusters, synchronises only these (default: all of
    /// them, configured or registered at runtime).
    pub fn only(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.only = Some(ids.into_iter().map(Into::into).collect());
        self
    }

    /// Time between full passes when nothing changes (drift repair).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Follows `router`'s clusters and reports to `events`: what
    /// [`ProxyBuilder::build`](crate::ProxyBuilder::build) does.
    pub(crate) fn attach(mut self, router: Arc<Router>, events: Events) -> Self {
        self.router = Some(router);
        self.events = events;
        self
    }

    /// What the endpoints read.
    pub(crate) fn board(&self) -> Board {
        self.board.clone()
    }

    /// Each synchronised cluster's status, by id.
    pub fn status(&self) -> BTreeMap<String, ClusterStatus> {
        self.board
            .all()
            .into_iter()
            .map(|(id, status)| (id, ClusterStatus::clone(&status)))
            .collect()
    }

    /// The clusters to synchronise now, by id.
    fn targets(&self) -> BTreeMap<String, Arc<Cluster>> {
        let mut targets = self.fixed.clone();
        if let Some(router) = &self.router {
            for cluster in router.clusters() {
                let wanted = self.only.as_ref().is_none_or(|o| o.contains(cluster.id()));
                if wanted {
                    targets.entry(cluster.id().to_owned()).or_insert(cluster);
                }
            }
        }
        targets
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Memory>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One pass for `cluster`: computes the desired objects and applies them.
    pub async fn reconcile(&self, cluster: &str) -> Result<Report, SyncError> {
        let target = self
            .targets()
            .remove(cluster)
            .ok_or_else(|| SyncError::UnknownCluster(cluster.to_owned()))?;
        self.pass(target).await
    }

    async fn pass(&self, target: Arc<Cluster>) -> Result<Report, SyncError> {
        let id = target.id().to_owned();
        let (client, previous) = {
            let mut memory = self.memory();
            let entry = memory
                .entry(id.clone())
                .and_modify(|m| {
                    if !Arc::ptr_eq(&m.cluster, &target) {
                        m.client = client::client(target.clone());
                        m.cluster = target.clone();
                        m.previous = None;
                    }
                })
                .or_insert_with(|| {
                    // Shown while the first pass runs (`passes: 0`).
                    self.board.set(Arc::new(ClusterStatus::new(&id)));
                    Memory {
                        cluster: target.clone(),
                        client: client::client(target.clone()),
                        previous: None,
                    }
                });
            (entry.client.clone(), entry.previous.clone())
        };
        let snap = self.view.snapshot();
        let desired = desired::desired(&snap, &(self.policy)(), &id);
        let outcome = apply::apply(&client, &desired, previous.as_ref())
            .await
            .map_err(|e| SyncError::Cluster {
                cluster: id.clone(),
                message: e.to_string(),
            });
        match &outcome {
            Ok(report) => {
                for error in &report.errors {
                    tracing::warn!(cluster.id = %id, %error, "rbac sync: object not written");
                }
                if report.written() > 0 {
                    tracing::info!(cluster.id = %id, created = report.created,
                        updated = report.updated, deleted = report.deleted,
                        drift_repaired = report.drift_repaired, "rbac sync applied");
                }
            }
            Err(error) => tracing::warn!(cluster.id = %id, %error, "rbac sync failed"),
        }
        let status = {
            let mut memory = self.memory();
            // Forgotten meanwhile (the cluster was removed): nothing to record.
            let Some(entry) = memory.get_mut(&id) else {
                return outcome;
            };
            let mut status = self
                .board
                .get(&id)
                .map_or_else(|| ClusterStatus::new(&id), Arc::unwrap_or_clone);
            let error = outcome.as_ref().err().map(ToString::to_string);
            status.record(
                Timestamp::now(),
                snap.revision(),
                outcome.as_ref().map_err(|_| error.as_deref().unwrap_or("")),
            );
            status.skipped = desired.skipped.clone();
            entry.previous = (!status.failing()).then_some(desired);
            let status = Arc::new(status);
            self.board.set(status.clone());
            status
        };
        self.events.emit(&Event::RbacSync {
            cluster: id,
            status: Some(status),
        });
        outcome
    }

    /// Forgets clusters no longer synchronised (removed from the store, or
    /// from the router), so their status, metrics and alerts go too.
    fn forget_others(&self, targets: &BTreeMap<String, Arc<Cluster>>) {
        let gone: Vec<String> = {
            let mut memory = self.memory();
            let gone = memory
                .keys()
                .filter(|id| !targets.contains_key(*id))
                .cloned()
                .collect::<Vec<_>>();
            for id in &gone {
                memory.remove(id);
                self.board.remove(id);
            }
            gone
        };
        for id in gone {
            tracing::info!(cluster.id = %id, "rbac sync: cluster no longer synchronised");
            self.events.emit(&Event::RbacSync {
                cluster: id,
                status: None,
            });
        }
    }

    /// Runs passes until the sync is dropped or the task aborted: every
    /// `interval` for every cluster, within a quarter second of a store
    /// change, and at once for a cluster that appears.
    pub fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(run(Arc::downgrade(self)))
    }
}

/// When a cluster's last pass started, and from which store revision.
struct Schedule {
    revision: Revision,
    started: tokio::time::Instant,
}

/// Each cluster's passes run on their own, as tasks: a cluster whose pass
/// is slow or stalled (until its calls time out) holds back no other
/// cluster's next pass, only takes one of the [`CONCURRENCY`] places.
async fn run(sync: Weak<RbacSync>) {
    let mut schedules: HashMap<String, Schedule> = HashMap::new();
    // Dropped with the loop (the sync gone, or the task aborted): the
    // passes running are aborted with it.
    let mut passes = JoinSet::new();
    let mut running: HashMap<String, AbortHandle> = HashMap::new();
    loop {
        while passes.try_join_next().is_some() {}
        running.retain(|_, pass| !pass.is_finished());
        let Some(this) = sync.upgrade() else {
            return;
        };
        let targets = this.targets();
        this.forget_others(&targets);
        schedules.retain(|id, _| targets.contains_key(id));
        let revision = this.view.snapshot().revision();
        for (id, cluster) in &targets {
            if running.len() >= CONCURRENCY {
                break;
            }
            let due = schedules.get(id).is_none_or(|last| {
                last.revision != revision || last.started.elapsed() >= this.interval
            });
            if !due || running.contains_key(id) {
                continue;
            }
            schedules.insert(
                id.clone(),
                Schedule {
                    revision,
                    started: tokio::time::Instant::now(),
                },
            );
            let (this, cluster) = (this.clone(), cluster.clone());
            let pass = passes.spawn(async move {
                let _ = this.pass(cluster).await;
            });
            running.insert(id.clone(), pass);
        }
        drop(this);
        tokio::time::sleep(TICK).await;
    }
}
