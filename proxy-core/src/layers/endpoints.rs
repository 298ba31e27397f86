//! Endpoints: answers requests the route layer marked as one of Paddock's
//! own endpoints. It sits below authenticate, so the endpoints read their
//! caller from the request context like every other part of the stack, and
//! the plugins' request phase has seen them; everything else goes on to
//! authorization and the cluster.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::Request;
use tower::{Layer, Service};

use crate::{
    authn::BoxFuture,
    body::RequestBody,
    endpoints::{path::Endpoint, Endpoints},
    error::ProxyError,
    request::{ProxyResponse, ProxyResult},
};

/// Adds [`ServeEndpoints`].
#[derive(Debug, Clone)]
pub(crate) struct EndpointsLayer {
    endpoints: Endpoints,
}

impl EndpointsLayer {
    /// Answers with `endpoints`.
    pub(crate) fn new(endpoints: Endpoints) -> Self {
        Self { endpoints }
    }
}

impl<S> Layer<S> for EndpointsLayer {
    type Service = ServeEndpoints<S>;

    fn layer(&self, inner: S) -> ServeEndpoints<S> {
        ServeEndpoints {
            inner,
            endpoints: self.endpoints.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct ServeEndpoints<S> {
    inner: S,
    endpoints: Endpoints,
}

impl<S> Service<Request<RequestBody>> for ServeEndpoints<S>
where
    S: Service<Request<RequestBody>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = Either<S::Future, BoxFuture<'static, ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> Self::Future {
        match request.extensions_mut().remove::<Endpoint>() {
            Some(endpoint) => Either::Right(self.endpoints.handle(endpoint, request)),
            None => Either::Left(self.inner.call(request)),
        }
    }
}
