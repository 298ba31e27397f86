//! Which worker thread a task runs on, and the deadlines a worker keeps.
//! The server's workers (see `server::workers`) set it when each thread
//! starts; the upstream clients read it to pick the worker's own
//! connections to a cluster, and both keep their deadlines in the worker's
//! list ([`deadline`]). Here, apart from both, so that neither imports the
//! other.

pub(crate) mod deadline;

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the worker this thread is, `None` outside the workers.
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Marks this thread as worker `index`.
pub(crate) fn enter(index: usize) {
    WORKER.with(|worker| worker.set(Some(index)));
}
