//! The request path's read side: an immutable snapshot swapped atomically.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc, Mutex, Weak,
};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::{Changes, Op, Revision, Snapshot, Store, StoreError};

/// The most ops [`StoreView::commit_batches`] puts in one commit: every
/// backend takes it (etcd's default limit is 128 per transaction, and the etcd
/// backend adds one of its own).
pub const BATCH_OPS: usize = 100;

/// A [`Store`] plus the in-memory [`Snapshot`] the request path reads.
///
/// Reads ([`StoreView::snapshot`]) are an atomic pointer load: no lock, no I/O.
/// Writes go through [`StoreView::commit`], which commits to the backend and then
/// brings the snapshot up to date, so a write is visible to this process's next
/// request as soon as `commit` returns. Writes by other processes (the CLI, other
/// replicas) are picked up by [`StoreView::refresh`], which a server runs
/// periodically ([`StoreView::spawn_poller`]).
pub struct StoreView {
    store: Arc<dyn Store>,
    current: ArcSwap<Snapshot>,
    // Serialises refreshes so the snapshot's revision never goes backwards, and
    // their outcomes are recorded in the order they ran. Never held across an
    // `.await` (refresh is synchronous).
    refreshing: Mutex<()>,
    // Why the last refresh failed, or the backend refused the last commit as
    // unreachable; `None` once a refresh succeeds.
    problem: Mutex<Option<String>>,
    // Monotonic (a wall-clock step neither hides nor invents lag), and tokio's
    // so that tests can pause it.
    epoch: tokio::time::Instant,
    // When the snapshot was last known to hold every commit: milliseconds
    // since `epoch`.
    synced: AtomicU64,
}

impl std::fmt::Debug for StoreView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreView")
            .field("store", &self.store)
            .field("revision", &self.current.load().revision())
            .finish()
    }
}

impl StoreView {
    /// Loads everything from `store` into a first snapshot.
    pub fn new(store: Arc<dyn Store>) -> Result<Arc<Self>, StoreError> {
        let snap = Snapshot::from_loaded(store.load()?);
        Ok(Arc::new(Self {
            store,
            current: ArcSwap::from_pointee(snap),
            refreshing: Mutex::new(()),
            problem: Mutex::new(None),
            epoch: tokio::time::Instant::now(),
            synced: AtomicU64::new(0),
        }))
    }

    /// How long since the snapshot was last known to hold every commit:
    /// since the start of the last refresh that read the change feed to its
    /// end (or the load). With several replicas on etcd, this is how far
    /// behind the others' writes this one may be.
    pub fn sync_age(&self) -> Duration {
        self.epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(self.synced.load(Ordering::Relaxed)))
    }

    /// Why the snapshot may be missing commits: the last refresh failed (the
    /// backend is unreachable, or holds something this build cannot decode),
    /// or the backend refused the last commit as unreachable; `None` once a
    /// refresh succeeds. Meanwhile reads go on from the last snapshot;
    /// `/paddock/readyz` reports the store as degraded.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Why the snapshot cannot be taken to hold every commit: a
    /// [`StoreView::problem`], or no successful refresh for longer than
    /// `max_age` (one may be hanging on an unreachable backend). `None` when
    /// it is in sync.
    pub fn out_of_sync(&self, max_age: Duration) -> Option<String> {
        if let Some(problem) = self.problem() {
            return Some(problem);
        }
        let age = self.sync_age();
        (age > max_age).then(|| {
            format!(
                "the store was last read {:.1} s ago (at most {} s allowed)",
                age.as_secs_f64(),
                max_age.as_secs()
            )
        })
    }

    fn set_problem(&self, problem: Option<String>) {
        *self
            .problem
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = problem;
    }

    /// Milliseconds since `epoch`.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Runs `f` on the current snapshot without taking a reference count.
    pub fn with_snapshot<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        f(&self.current.load())
    }

    /// The backend.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Commits `ops` (see [`Store::commit`]) and refreshes the snapshot, so the
    /// change is visible to readers when this returns. On a conflict the snapshot
    /// is refreshed too, so a caller's retry works from the winning write.
    /// Blocking.
    pub fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let committed = self.store.commit(ops);
        // Only an unreachable backend is a problem here, and only a refresh
        // clears one: a commit that goes through says nothing of the feed.
        if let Err(e @ (StoreError::Unavailable { .. } | StoreError::Unreachable { .. })) =
            &committed
        {
            self.set_problem(Some(e.to_string()));
        }
        let rev = match committed {
            Ok(rev) => rev,
            Err(e @ StoreError::Conflict { .. }) => {
                // Our snapshot is stale; catch up so a retry sees the winner.
                let _ = self.refresh();
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        // The write is durable; failing to refresh only delays its visibility to
        // the next poll, so report the commit as done.
        if let Err(e) = self.refresh() {
            tracing::warn!(error = %e, "store committed but snapshot refresh failed");
        }
        Ok(rev)
    }

    /// Commits `ops` in batches of at most [`BATCH_OPS`] (etcd refuses
    /// transactions of more than 128 operations): each batch is atomic, the
    /// whole is not. For bulk work whose ops are independent of one another
    /// (purging, flushing last-used times). Returns the last revision, or
    /// `None` when `ops` is empty. Blocking.
    pub fn commit_batches(&self, mut ops: Vec<Op>) -> Result<Option<Revision>, StoreError> {
        let mut last = None;
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(BATCH_OPS));
            last = Some(self.commit(std::mem::replace(&mut ops, rest))?);
        }
        Ok(last)
    }

    /// Applies whatever the change feed reports after the snapshot's revision;
    /// reloads everything when the feed was compacted. Returns whether the
    /// snapshot changed. A failure of any kind leaves the snapshot behind,
    /// so it is the [`StoreView::problem`] until a refresh succeeds. Blocking.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let _guard = self
            .refreshing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let started = self.now_ms();
        let refreshed = self.refresh_locked();
        self.set_problem(refreshed.as_ref().err().map(ToString::to_string));
        if refreshed.is_ok() {
            self.synced.fetch_max(started, Ordering::Relaxed);
        }
        refreshed
    }

    fn refresh_locked(&self) -> Result<bool, StoreError> {
        let cur = self.current.load_full();
        let next = match self.store.changes_since(cur.revision())? {
            Changes::Events { revision, events } => {
                if revision == cur.revision() && events.is_empty() {
                    return Ok(false);
                }
                cur.apply(revision, events)
            }
            Changes::Compacted => Snapshot::from_loaded(self.store.load()?),
        };
        self.current.store(Arc::new(next));
        Ok(true)
    }

    /// Spawns a task that calls [`StoreView::refresh`] every `every` (on the
    /// blocking pool), and at once when the backend's [`Store::change_hint`]
    /// fires, until the view is dropped. Errors are logged and retried on the
    /// next tick; they never reach a request.
    pub fn spawn_poller(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let hint = self.store.change_hint();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                match &hint {
                    Some(hint) => {
                        tokio::select! {
                            _ = tick.tick() => {}
                            () = hint.notified() => {}
                        }
                    }
                    None => {
                        tick.tick().await;
                    }
                }
                let Some(view) = weak.upgrade() else { return };
                match tokio::task::spawn_blocking(move || view.refresh()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "store poll failed"),
                    Err(e) => tracing::warn!(error = %e, "store poll task failed"),
                }
            }
        })
    }
}
