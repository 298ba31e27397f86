//! Rescue: turns every typed [`ProxyError`] into a Kubernetes `Status`
//! response, so nothing below it decides status codes or error formats.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use futures_util::{future::Map, FutureExt};
use http::Request;
use tower::{Layer, Service};

use crate::{
    error::ProxyError,
    request::{ProxyResponse, ProxyResult},
};

/// Adds [`Rescue`].
#[derive(Debug, Clone, Default)]
pub(crate) struct RescueLayer;

impl<S> Layer<S> for RescueLayer {
    type Service = Rescue<S>;

    fn layer(&self, inner: S) -> Rescue<S> {
        Rescue { inner }
    }
}

/// Maps `Err(ProxyError)` to its `Status` response.
#[derive(Debug, Clone)]
pub(crate) struct Rescue<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Rescue<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = Map<S::Future, fn(ProxyResult) -> Result<ProxyResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        match self.inner.poll_ready(cx) {
            Poll::Ready(Err(error)) => {
                tracing::error!(%error, "service not ready");
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.inner.call(request).map(rescue)
    }
}

fn rescue(result: ProxyResult) -> Result<ProxyResponse, Infallible> {
    Ok(result.unwrap_or_else(|error| {
        let (code, _) = error.code_and_reason();
        if code.is_server_error() {
            tracing::warn!(%error, "request failed");
        } else {
            tracing::debug!(%error, "request refused");
        }
        error.into_response()
    }))
}
