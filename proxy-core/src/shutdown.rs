//! Graceful shutdown signals shared by the server and the forwarder.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Two phases: `drain` (stop accepting, end watches cleanly, let ordinary
/// requests finish) and, after the grace period, `abort` (cut whatever is
/// left: exec sessions, port-forwards).
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    drain: CancellationToken,
    abort: CancellationToken,
}

impl Shutdown {
    /// Signals that are not triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts draining now and aborts after `grace`.
    pub fn trigger(&self, grace: Duration) {
        self.drain.cancel();
        let abort = self.abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            abort.cancel();
        });
    }

    /// Cancelled when draining starts.
    pub fn drain(&self) -> &CancellationToken {
        &self.drain
    }

    /// Cancelled when the grace period is over.
    pub fn abort(&self) -> &CancellationToken {
        &self.abort
    }
}
