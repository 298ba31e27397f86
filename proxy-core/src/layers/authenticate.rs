//! Authenticate: turns the caller's credentials into an [`Identity`], then
//! removes `Authorization` and `Cookie` so no caller credential can reach
//! the upstream. The plugins' `on_request` phase runs at its end: the caller
//! is known, policy has not spoken yet.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, Request};
use tower::{Layer, Service};

use super::{ProxyResponse, ProxyResult};
use crate::{
    authn::{AuthenticatorChain, BoxFuture, Credential},
    context::{self, ConnectionInfo},
    error::ProxyError,
    plugin::{Plugins, RequestPhase},
};

/// Adds [`Authenticate`].
#[derive(Debug, Clone)]
pub struct AuthenticateLayer {
    chain: AuthenticatorChain,
    plugins: Plugins,
}

impl AuthenticateLayer {
    /// Authenticates with `chain`, then runs `plugins`' `on_request`.
    pub fn new(chain: AuthenticatorChain, plugins: Plugins) -> Self {
        Self { chain, plugins }
    }
}

impl<S> Layer<S> for AuthenticateLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Authenticate<S> {
        Authenticate {
            inner,
            chain: self.chain.clone(),
            plugins: self.plugins.clone(),
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct Authenticate<S> {
    inner: S,
    chain: AuthenticatorChain,
    plugins: Plugins,
}

impl<S, B> Service<Request<B>> for Authenticate<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<'static, ProxyResult>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // Take the ready inner service, leave a fresh clone behind (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let chain = self.chain.clone();
        let plugins = self.plugins.clone();
        Box::pin(async move {
            let client_cert = request
                .extensions()
                .get::<Arc<ConnectionInfo>>()
                .and_then(|c| c.client_cert.clone());
            let credentials = Credential::from_request(request.headers(), client_cert.as_ref());
            let headers = request.headers_mut();
            headers.remove(header::AUTHORIZATION);
            headers.remove(header::COOKIE);
            let identity = chain.authenticate(&credentials?).await?;
            let context = context::of(&request);
            if let Some(scope) = &identity.cluster_scope {
                if context.cluster() != Some(scope.as_str()) {
                    return Err(ProxyError::Forbidden {
                        reason: format!(
                            "this token is valid only for cluster {scope}, not for {}",
                            context.cluster().unwrap_or("this endpoint")
                        ),
                    });
                }
            }
            tracing::debug!(auth.user = %identity.user, auth.provider = %identity.provider, "authenticated");
            context.set_identity(identity);
            match plugins
                .run_request_phase(RequestPhase::Request, &context, request)
                .await?
            {
                Ok(request) => inner.call(request).await,
                Err(response) => Ok(response),
            }
        })
    }
}
