//! The tunnel as a connector for hyper-util's pooled client: every
//! "connection" is one stream to the agent.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper::upgrade::Upgraded;

use super::registry::Slot;
use crate::body::{BoxError, RequestBody};

/// Opens connections to one agent cluster's API server through its tunnel.
#[derive(Clone)]
pub struct TunnelConnector {
    slot: Arc<Slot>,
    wait: Duration,
}

impl std::fmt::Debug for TunnelConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelConnector").finish_non_exhaustive()
    }
}

impl TunnelConnector {
    /// A connector for `cluster`'s tunnel in `tunnels`.
    pub fn new(tunnels: &super::Tunnels, cluster: &str) -> Self {
        Self {
            slot: tunnels.slot(cluster),
            wait: tunnels.wait(),
        }
    }
}

impl TunnelConnector {
    /// Sends `request` (no upgrade) through the tunnel as an HTTP/2
    /// request of its own, waiting for a disconnected agent as
    /// [`call`](tower::Service::call) does.
    pub(crate) async fn send(&self, request: http::Request<RequestBody>) -> super::Sent {
        self.slot.send(self.wait, request).await
    }
}

impl tower::Service<Uri> for TunnelConnector {
    type Response = Upgraded;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Upgraded, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _destination: Uri) -> Self::Future {
        // The destination is ignored: the agent only ever connects to its
        // own API server.
        let slot = self.slot.clone();
        let wait = self.wait;
        Box::pin(async move { slot.open(wait).await.map_err(BoxError::from) })
    }
}
