//! A `kube` client over the proxy's own upstream client for a cluster:
//! the same connector (TCP and TLS, or a stream through the agent's
//! tunnel), the same pooled connections and Paddock's credential, so the
//! sync reaches every cluster the proxy reaches, the way it reaches it.
//! Each call, headers and body, ends within the cluster's request timeout:
//! a listing whose body stalls fails the pass instead of hanging it.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::{
    body::{BoxError, RequestBody},
    upstream::Cluster,
};

/// The `tower` service `kube::Client` sends its requests through.
#[derive(Clone)]
struct Upstream(Arc<Cluster>);

impl tower::Service<Request<kube::client::Body>> for Upstream {
    type Response = Response<Bounded>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bounded>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let cluster = self.0.clone();
        Box::pin(async move {
            // The call bounds the wait for the headers; the same deadline,
            // from the start, then bounds the body.
            let timeout = cluster.request_timeout();
            let deadline = Instant::now() + timeout;
            let response = cluster
                .call(request.map(RequestBody::new))
                .await
                .map_err(BoxError::from)?;
            Ok(response.map(|body| Bounded {
                body,
                deadline: tokio::time::sleep_until(deadline),
                timeout,
            }))
        })
    }
}

pin_project! {
    /// A response body that fails once its request's deadline has passed.
    struct Bounded {
        #[pin]
        body: Incoming,
        #[pin]
        deadline: Sleep,
        timeout: Duration,
    }
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Poll::Ready(frame) = this.body.poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BoxError::from)));
        }
        match this.deadline.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(format!(
                "the answer did not end within {}s",
                this.timeout.as_secs_f64()
            )
            .into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A client for `cluster`. Needs a tokio runtime (the client's request
/// buffer runs as a task).
pub(super) fn client(cluster: Arc<Cluster>) -> kube::Client {
    kube::Client::new(Upstream(cluster), "default")
}
