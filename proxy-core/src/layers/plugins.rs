//! The plugins' request phases, placed in the stack where DESIGN.md puts
//! them: `on_request` after authenticate, `on_upstream_request` just
//! before forward. (`on_response` and `on_log` run in the trace layer.)

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

use super::{ProxyResponse, ProxyResult};
use crate::{
    authn::BoxFuture,
    context,
    error::ProxyError,
    plugin::{Flow, Plugins, RequestPhase},
};

/// Adds [`RunPlugins`] for one request phase.
#[derive(Debug, Clone)]
pub struct PluginsLayer {
    plugins: Plugins,
    phase: RequestPhase,
}

impl PluginsLayer {
    /// Runs [`crate::plugin::Plugin::on_request`].
    pub fn on_request(plugins: Plugins) -> Self {
        Self {
            plugins,
            phase: RequestPhase::Request,
        }
    }

    /// Runs [`crate::plugin::Plugin::on_upstream_request`].
    pub fn on_upstream_request(plugins: Plugins) -> Self {
        Self {
            plugins,
            phase: RequestPhase::UpstreamRequest,
        }
    }
}

impl<S> Layer<S> for PluginsLayer {
    type Service = RunPlugins<S>;

    fn layer(&self, inner: S) -> RunPlugins<S> {
        RunPlugins {
            inner,
            plugins: self.plugins.clone(),
            phase: self.phase,
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct RunPlugins<S> {
    inner: S,
    plugins: Plugins,
    phase: RequestPhase,
}

impl<S, B> Service<Request<B>> for RunPlugins<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = futures_util::future::Either<S::Future, BoxFuture<'static, ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        use futures_util::future::Either;
        if self.plugins.is_empty() {
            return Either::Left(self.inner.call(request));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let plugins = self.plugins.clone();
        let phase = self.phase;
        Either::Right(Box::pin(async move {
            let context = context::of(&request);
            let (mut parts, body) = request.into_parts();
            if let Flow::Respond(response) =
                plugins.run_request(phase, &context, &mut parts).await?
            {
                return Ok(response);
            }
            inner.call(Request::from_parts(parts, body)).await
        }))
    }
}
