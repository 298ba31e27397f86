//! Values read at each scrape rather than counted as they happen: the
//! depth and drops of other plugins' bounded queues (audit sinks, alert
//! delivery), and the store's revision. A component exposes them through
//! [`QueueStats`]; the metrics ask it when Prometheus asks.

use std::sync::{Arc, PoisonError, RwLock};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
};

use crate::store::StoreView;

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
}

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
            let age = view.synced_at().elapsed().unwrap_or_default();
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
