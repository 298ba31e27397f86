//! Thread-per-core serving: one single-threaded tokio runtime per worker
//! thread, each connection pinned to one worker for its whole life.
//!
//! Why not one work-stealing runtime: a proxied request wakes the client
//! connection's task, the upstream connection's task and back again. When
//! those tasks sit on different threads every hop is a cross-thread wakeup
//! (a futex call and a cache miss); measured on 2 cores, a bare hyper
//! passthrough serves about 1.25x the requests per second pinned this way
//! (`benches/RESULTS.md`). So a worker owns its connections *and* its
//! upstream connections ([`current`] picks the upstream client of the
//! worker a request runs on), like nginx's worker processes.
//!
//! The caller's runtime keeps accepting and dispatches each connection to
//! the worker with the fewest open connections, so long-lived watches
//! spread out instead of piling onto whichever worker a hash picked.

use std::{
    future::Future,
    io,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
};

use tokio::{runtime, sync::oneshot};

pub use crate::worker::current;

/// The default number of workers: one per available core.
pub fn default_count() -> usize {
    thread::available_parallelism().map_or(1, usize::from)
}

/// A set of worker threads, each running its own single-threaded runtime
/// until the set is dropped or [`Workers::stop`]ped.
#[derive(Debug)]
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Worker {
    handle: runtime::Handle,
    connections: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Workers {
    /// Starts `count` (at least one) worker threads named `{name}-{i}`.
    pub fn start(name: &str, count: usize) -> io::Result<Self> {
        let workers = (0..count.max(1))
            .map(|index| {
                let runtime = runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                let handle = runtime.handle().clone();
                let (stop, stopped) = oneshot::channel::<()>();
                let thread = thread::Builder::new()
                    .name(format!("{name}-{index}"))
                    .spawn(move || {
                        crate::worker::enter(index);
                        // Returns when stopped (or the set is dropped); dropping
                        // the runtime then cancels whatever is still running.
                        let _ = runtime.block_on(stopped);
                    })?;
                Ok(Worker {
                    handle,
                    connections: Arc::default(),
                    stop: Some(stop),
                    thread: Some(thread),
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Runs `connection` on the worker with the fewest connections (ties
    /// go round-robin); it counts as open until its future completes.
    pub fn spawn_connection<F>(&self, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.workers.len();
        let worker = (0..n)
            .map(|offset| &self.workers[(start + offset) % n])
            .min_by_key(|worker| worker.connections.load(Ordering::Relaxed))
            .expect("at least one worker");
        let open = OpenConnection::new(worker.connections.clone());
        worker.handle.spawn(async move {
            let _open = open;
            connection.await;
        });
    }

    /// Stops every worker, cancelling what still runs on them, and waits
    /// for their threads to end.
    pub fn stop(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        for worker in &mut self.workers {
            if let Some(stop) = worker.stop.take() {
                let _ = stop.send(());
            }
        }
        for worker in &mut self.workers {
            if let Some(thread) = worker.thread.take() {
                // A worker thread never panics: connection tasks' panics are caught by tokio.
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Counts a connection as open on its worker until dropped.
struct OpenConnection(Arc<AtomicUsize>);

impl OpenConnection {
    fn new(count: Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_run_on_worker_threads_and_spread_over_them() {
        let workers = Workers::start("test-worker", 3).expect("workers start");
        let (seen, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
        let (release, released) = tokio::sync::watch::channel(false);
        for _ in 0..6 {
            let (seen, mut released) = (seen.clone(), released.clone());
            workers.spawn_connection(async move {
                let _ = seen.send(current());
                let _ = released.wait_for(|r| *r).await;
            });
        }
        let mut per_worker = [0; 3];
        for _ in 0..6 {
            let index = seen_rx.blocking_recv().expect("a connection ran");
            per_worker[index.expect("ran on a worker")] += 1;
        }
        // Every connection is still open: least-loaded dispatch gave each worker two.
        assert_eq!(per_worker, [2, 2, 2]);
        assert_eq!(current(), None, "the test thread is not a worker");
        let _ = release.send(true);
        workers.stop();
    }

    #[test]
    fn stop_cancels_what_still_runs() {
        let workers = Workers::start("test-worker", 1).expect("workers start");
        let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
        struct Flag(std::sync::mpsc::Sender<()>);
        impl Drop for Flag {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let flag = Flag(dropped_tx);
        workers.spawn_connection(async move {
            let _flag = flag;
            std::future::pending::<()>().await;
        });
        workers.stop();
        dropped_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("the pending connection was dropped when the workers stopped");
    }
}
