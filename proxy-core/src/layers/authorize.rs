//! Authorize: asks the [`Authorizer`] whether the authenticated caller may
//! make this request to this cluster, and whether it may act as whom it
//! asked to (`kubectl --as`). Deny is a 403 `Status` carrying the reason,
//! worded like the API server's so kubectl users recognise it.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use futures_util::future::Either;
use http::Request;
use tower::{Layer, Service};

use crate::{
    authz::{Authorizer, AuthzRequest, Decision},
    context::{self, RequestContext},
    error::ProxyError,
    impersonation,
    request::{CallerImpersonation, ProxyResponse, ProxyResult, UpgradeRequest},
};

/// Adds [`Authorize`].
#[derive(Clone)]
pub(crate) struct AuthorizeLayer {
    authorizer: Arc<dyn Authorizer>,
}

impl AuthorizeLayer {
    /// Decides with `authorizer`.
    pub(crate) fn new(authorizer: Arc<dyn Authorizer>) -> Self {
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
pub(crate) struct Authorize<S> {
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
        let attributes = context.attributes().ok_or_else(|| ProxyError::Internal {
            message: "request reached authorize without attributes".to_owned(),
        })?;
        let caller = AuthzRequest {
            identity,
            cluster: context.cluster().unwrap_or_default(),
            attributes,
            upgrade: request.extensions().get::<UpgradeRequest>().is_some(),
        };

        let mut acting_as = None;
        if let Some(CallerImpersonation(requested)) = request.extensions().get() {
            let impersonating = requested.validate().map_err(|e| ProxyError::BadRequest {
                message: e.to_string(),
            })?;
            if impersonating {
                let decision = self.authorizer.authorize_impersonation(&caller, requested);
                if !decision.allowed {
                    return Err(deny(&context, &caller, decision));
                }
                acting_as = impersonation::impersonated_identity(requested, &identity.provider)
                    .map(Arc::new);
            }
        }

        let effective = AuthzRequest {
            identity: acting_as.as_deref().unwrap_or(identity),
            ..caller
        };
        authorize(&*self.authorizer, &context, &effective)?;
        if let Some(acting_as) = acting_as {
            context.set_impersonated(acting_as);
        }
        Ok(())
    }
}

/// Decides `request` with `authorizer` and records the decision in
/// `context`: the one authorization step, shared by proxied requests and
/// Paddock's own administration endpoints.
pub(crate) fn authorize(
    authorizer: &dyn Authorizer,
    context: &RequestContext,
    request: &AuthzRequest<'_>,
) -> Result<(), ProxyError> {
    let decision = authorizer.authorize(request);
    if !decision.allowed {
        return Err(deny(context, request, decision));
    }
    tracing::debug!(authz.decision = "allow", authz.reason = %decision.reason, "authorized");
    context.set_decision(decision);
    Ok(())
}

/// A 403 whose message reads like the API server's, with the reason appended.
fn deny(context: &RequestContext, request: &AuthzRequest<'_>, decision: Decision) -> ProxyError {
    tracing::info!(authz.decision = "deny", authz.reason = %decision.reason, "forbidden");
    let reason =
        policy::forbidden_message(&request.identity.user, request.attributes, &decision.reason);
    context.set_decision(decision);
    ProxyError::Forbidden { reason }
}
