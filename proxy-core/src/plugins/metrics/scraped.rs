//! Values read at each scrape rather than counted as they happen: the
//! depth and drops of other plugins' bounded queues (audit sinks, alert
//! delivery), the store's revision, and each cluster's RBAC sync status.
//! A component exposes them through [`QueueStats`]; the metrics ask it
//! when Prometheus asks. The RBAC sync's totals are its status's own (the
//! one the status endpoint shows), never counted again here.

use std::{
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use crate::{plugins::rbac_sync::ClusterStatus, store::StoreView};

/// A bounded queue the metrics report on: how full it is and how much it
/// dropped. The audit and alert plugins implement it.
pub trait QueueStats: Send + Sync + 'static {
    /// Items waiting now.
    fn queued(&self) -> u64;
    /// Items lost since the start (queue full, delivery given up).
    fn dropped(&self) -> u64;
}

/// What is read at scrape time; shared with the registry's collector.
#[derive(Default)]
pub(super) struct Scraped {
    queues: RwLock<Vec<(&'static str, Arc<dyn QueueStats>)>>,
    store: RwLock<Option<Arc<StoreView>>>,
    /// Each synchronised cluster's last RBAC sync status, by id, with its
    /// (bounded) label.
    rbac_sync: RwLock<BTreeMap<String, Labelled>>,
}

/// A cluster's RBAC sync status and the label it is shown under.
type Labelled = (Arc<str>, Arc<ClusterStatus>);

impl std::fmt::Debug for Scraped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraped").finish_non_exhaustive()
    }
}

impl Scraped {
    pub(super) fn add_queue(&self, name: &'static str, stats: Arc<dyn QueueStats>) {
        self.queues
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name, stats));
    }

    pub(super) fn set_store(&self, view: Arc<StoreView>) {
        *self.store.write().unwrap_or_else(PoisonError::into_inner) = Some(view);
    }

    /// Keeps `status` as `cluster`'s RBAC sync status, shown under
    /// `label`; `None`: the cluster is no longer synchronised.
    pub(super) fn set_rbac_sync(
        &self,
        cluster: &str,
        label: Arc<str>,
        status: Option<Arc<ClusterStatus>>,
    ) {
        let mut statuses = self
            .rbac_sync
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match status {
            Some(status) => {
                statuses.insert(cluster.to_owned(), (label, status));
            }
            None => {
                statuses.remove(cluster);
            }
        }
    }
}

/// One label's RBAC sync figures: the sum of its clusters' (more than one
/// once the cluster label says `other`).
#[derive(Default)]
struct RbacSyncFigures {
    failing: bool,
    last_success: Option<i64>,
    ok: u64,
    failed: u64,
    written: u64,
    drift: u64,
}

impl RbacSyncFigures {
    fn add(&mut self, status: &ClusterStatus) {
        self.failing |= status.failing();
        self.last_success = self.last_success.max(status.last_success.map(|at| at.0));
        self.ok += status.passes.saturating_sub(status.failed_passes);
        self.failed += status.failed_passes;
        self.written += status.objects_written;
        self.drift += status.drift_repaired;
    }
}

fn encode_rbac_sync(
    encoder: &mut DescriptorEncoder,
    figures: &BTreeMap<Arc<str>, RbacSyncFigures>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "rbac_sync_failing",
        "1 while a cluster's RBAC sync passes fail",
        None,
        MetricType::Gauge,
    )?;
    for (cluster, f) in figures {
        let labels = [("cluster", &**cluster)];
        ConstGauge::new(i64::from(f.failing)).encode(family.encode_family(&labels)?)?;
    }
    if figures.values().any(|f| f.last_success.is_some()) {
        let mut family = encoder.encode_descriptor(
            "rbac_sync_last_success_timestamp_seconds",
            "When a cluster's RBAC sync pass last ended without error (Unix time)",
            None,
            MetricType::Gauge,
        )?;
        for (cluster, f) in figures {
            if let Some(at) = f.last_success {
                let labels = [("cluster", &**cluster)];
                ConstGauge::new(at).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    let mut family = encoder.encode_descriptor(
        "rbac_sync_passes",
        "RBAC sync passes over a cluster, by result",
        None,
        MetricType::Counter,
    )?;
    for (cluster, f) in figures {
        for (result, n) in [("ok", f.ok), ("error", f.failed)] {
            let labels = [("cluster", &**cluster), ("result", result)];
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
    }
    for (name, help, value) in [
        (
            "rbac_sync_objects_written",
            "RBAC objects the sync created, updated or deleted in a cluster",
            (|f: &RbacSyncFigures| f.written) as fn(&RbacSyncFigures) -> u64,
        ),
        (
            "rbac_sync_drift_repaired",
            "RBAC objects the sync put back after they were changed in the cluster",
            |f: &RbacSyncFigures| f.drift,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (cluster, f) in figures {
            let labels = [("cluster", &**cluster)];
            ConstCounter::new(value(f)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The registry's view of [`Scraped`].
#[derive(Debug)]
pub(super) struct ScrapedCollector(pub(super) Arc<Scraped>);

impl Collector for ScrapedCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let queues = self
            .0
            .queues
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        // A family without samples is not valid OpenMetrics.
        if !queues.is_empty() {
            let mut family = encoder.encode_descriptor(
                "queue_depth",
                "Items waiting in a plugin's bounded queue (audit sinks, alert delivery).",
                None,
                MetricType::Gauge,
            )?;
            for (name, stats) in &queues {
                let labels = [("queue", *name)];
                let value = i64::try_from(stats.queued()).unwrap_or(i64::MAX);
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        if !queues.is_empty() {
            let mut family = encoder.encode_descriptor(
                "queue_dropped",
                "Items a plugin's bounded queue lost: full, or delivery given up.",
                None,
                MetricType::Counter,
            )?;
            for (name, stats) in &queues {
                let labels = [("queue", *name)];
                ConstCounter::new(stats.dropped()).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut rbac_sync = BTreeMap::<Arc<str>, RbacSyncFigures>::new();
        for (label, status) in self
            .0
            .rbac_sync
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            rbac_sync.entry(label.clone()).or_default().add(status);
        }
        // A family without samples is not valid OpenMetrics.
        if !rbac_sync.is_empty() {
            encode_rbac_sync(&mut encoder, &rbac_sync)?;
        }
        let store = self
            .0
            .store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(view) = store {
            let revision = i64::try_from(view.snapshot().revision().0).unwrap_or(i64::MAX);
            let gauge = ConstGauge::new(revision);
            gauge.encode(encoder.encode_descriptor(
                "store_revision",
                "The store revision this process has loaded.",
                None,
                gauge.metric_type(),
            )?)?;
            let age = view.sync_age();
            let gauge = ConstGauge::new(age.as_secs_f64());
            gauge.encode(encoder.encode_descriptor(
                "store_sync_age_seconds",
                "Time since this process last read the store's change feed to its end: how far behind other replicas' commits it may be.",
                None,
                gauge.metric_type(),
            )?)?;
        }
        Ok(())
    }
}
