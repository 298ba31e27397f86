//! Authorize: asks the [`Authorizer`] whether the authenticated caller may
//! make this request to this cluster, and whether it may act as whom it
//! asked to (`kubectl --as`). Deny is a 403 `Status` carrying the reason.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::Either;
use http::Request;
use tower::{Layer, Service};

use super::{sanitize::CallerImpersonation, sanitize::UpgradeRequest, ProxyResponse, ProxyResult};
use crate::{
    authz::{Authorizer, AuthzRequest},
    context::{self, Decision},
    error::ProxyError,
};

/// Adds [`Authorize`].
#[derive(Clone)]
pub struct AuthorizeLayer {
    authorizer: Arc<dyn Authorizer>,
}

impl AuthorizeLayer {
    /// Decides with `authorizer`.
    pub fn new(authorizer: Arc<dyn Authorizer>) -> Self {
        Self { authorizer }
    }
}

impl std::fmt::Debug for AuthorizeLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizeLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for AuthorizeLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            authorizer: self.authorizer.clone(),
        }
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct Authorize<S> {
    inner: S,
    authorizer: Arc<dyn Authorizer>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Authorize<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorize")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for Authorize<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = ProxyError>,
{
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = Either<S::Future, std::future::Ready<ProxyResult>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.decide(&request) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(error) => Either::Right(std::future::ready(Err(error))),
        }
    }
}

impl<S> Authorize<S> {
    fn decide<B>(&self, request: &Request<B>) -> Result<(), ProxyError> {
        let context = context::of(request);
        let identity = context.identity().ok_or(ProxyError::MissingCredentials)?;
        let authz = AuthzRequest {
            identity,
            cluster: context.cluster().unwrap_or_default(),
            method: request.method(),
            path: request.uri().path(),
            query: request.uri().query(),
            upgrade: request.extensions().get::<UpgradeRequest>().is_some(),
        };
        let requested = request
            .extensions()
            .get::<CallerImpersonation>()
            .map(|c| c.0.clone())
            .unwrap_or(Ok(None))?;
        let mut acting_as = None;
        if let Some(requested) = requested {
            let decision = self.authorizer.authorize_impersonation(&authz, &requested);
            if !decision.allowed {
                return Err(deny(&context, decision));
            }
            acting_as = Some(Arc::new(requested.into_identity(&identity.provider)));
        }
        let decision = match &acting_as {
            Some(acting_as) => self.authorizer.authorize(&AuthzRequest {
                identity: acting_as,
                ..authz
            }),
            None => self.authorizer.authorize(&authz),
        };
        if !decision.allowed {
            return Err(deny(&context, decision));
        }
        tracing::debug!(authz.decision = "allow", authz.reason = %decision.reason, "authorized");
        if let Some(acting_as) = acting_as {
            context.set_impersonated(acting_as);
        }
        context.set_decision(decision);
        Ok(())
    }
}

fn deny(context: &context::RequestContext, decision: Decision) -> ProxyError {
    tracing::info!(authz.decision = "deny", authz.reason = %decision.reason, "forbidden");
    let reason = decision.reason.clone();
    context.set_decision(decision);
    ProxyError::Forbidden { reason }
}
