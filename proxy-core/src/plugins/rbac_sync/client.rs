//! A `kube` client over the proxy's own upstream client for a cluster:
//! the same connector (TCP and TLS, or a stream through the agent's
//! tunnel), the same pooled connections and Paddock's credential, so the
//! sync reaches every cluster the proxy reaches, the way it reaches it.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::{
    body::{BoxError, RequestBody},
    upstream::Cluster,
};

/// The `tower` service `kube::Client` sends its requests through.
#[derive(Clone)]
struct Upstream(Arc<Cluster>);

impl tower::Service<Request<kube::client::Body>> for Upstream {
    type Response = Response<Incoming>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let cluster = self.0.clone();
        Box::pin(async move {
            cluster
                .call(request.map(RequestBody::new))
                .await
                .map_err(BoxError::from)
        })
    }
}

/// A client for `cluster`. Needs a tokio runtime (the client's request
/// buffer runs as a task).
pub(super) fn client(cluster: Arc<Cluster>) -> kube::Client {
    kube::Client::new(Upstream(cluster), "default")
}
