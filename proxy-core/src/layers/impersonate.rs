//! Impersonate: presents the caller downstream as `Impersonate-*` headers.
//! Runs after authorize, so only an authorized identity is ever presented,
//! and after sanitize, so these are the only identity headers left.

use std::task::{Context, Poll};

use futures_util::future::Either;
use http::Request;
use tower::{Layer, Service};

use crate::{
    context,
    error::ProxyError,
    impersonation,
    request::{ProxyResponse, ProxyResult},
};

/// Adds [`Impersonate`].
#[derive(Debug, Clone, Default)]
pub(crate) struct ImpersonateLayer;

impl<S> Layer<S> for ImpersonateLayer {
    type Service = Impersonate<S>;

    fn layer(&self, inner: S) -> Impersonate<S> {
        Impersonate { inner }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Impersonate<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Impersonate<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = Either<S::Future, std::future::Ready<ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let context = context::of(&request);
        let Some(identity) = context.effective_identity() else {
            return Either::Right(std::future::ready(Err(ProxyError::MissingCredentials)));
        };
        match impersonation::insert_cached_headers(request.headers_mut(), identity) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(error) => Either::Right(std::future::ready(Err(error))),
        }
    }
}
