//! [`QueueCounters`]: what a plugin's bounded channel holds and has lost,
//! for a channel whose consumer thread takes items out one by one or in
//! batches (the audit webhook's, the alerts' delivery).

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use super::metrics::QueueStats;

/// Items in a bounded channel and items lost, counted by its senders and
/// its consumer.
#[derive(Debug, Default)]
pub(crate) struct QueueCounters {
    /// Items in the queue (or waiting for room in it, for a sender that
    /// blocks).
    queued: AtomicU64,
    /// Items lost: to a full queue, or a delivery that never got through.
    dropped: AtomicU64,
}

impl QueueCounters {
    /// Counts one item through `send`: queued before it is sent (the
    /// consumer may take it at once), dropped if `send` fails. Whether it
    /// was sent.
    pub(crate) fn offer<E>(&self, send: impl FnOnce() -> Result<(), E>) -> bool {
        self.queued.fetch_add(1, Ordering::Relaxed);
        let sent = send().is_ok();
        if !sent {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// The consumer took `n` items out of the queue.
    pub(crate) fn taken(&self, n: u64) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }

    /// `n` items taken out were lost after all (their delivery failed).
    pub(crate) fn lost(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// Items in the queue now.
    pub(crate) fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Items lost since the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What a plugin hands to [`Metrics::queue`](super::metrics::Metrics::queue):
/// the counters, read live.
impl QueueStats for Arc<QueueCounters> {
    fn queued(&self) -> u64 {
        QueueCounters::queued(self)
    }

    fn dropped(&self) -> u64 {
        QueueCounters::dropped(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_what_is_queued_taken_and_lost() {
        let counters = QueueCounters::default();
        assert!(counters.offer(|| Ok::<(), ()>(())));
        assert!(counters.offer(|| Ok::<(), ()>(())));
        assert!(!counters.offer(|| Err(())));
        assert_eq!((counters.queued(), counters.dropped()), (2, 1));
        counters.taken(2);
        counters.lost(2);
        assert_eq!((counters.queued(), counters.dropped()), (0, 3));
    }
}
