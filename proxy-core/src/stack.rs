//! THE layer order of the request path, in one function.

use std::{
    convert::Infallible,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use tower::{util::BoxCloneSyncService, Service, ServiceBuilder};

use crate::{
    accounts::Accounts,
    authn::AuthenticatorChain,
    authz::Authorizer,
    body::{BoxError, RequestBody},
    endpoints::{Endpoints, EndpointsConfig},
    future::BoxFuture,
    layers::{
        authenticate::AuthenticateLayer, authorize::AuthorizeLayer, endpoints::EndpointsLayer,
        impersonate::ImpersonateLayer, rescue::RescueLayer, route::RouteLayer,
        sanitize::SanitizeLayer, self_review::SelfReviewLayer, trace::TraceLayer,
    },
    plugin::Plugins,
    request::ProxyResponse,
    shutdown::Shutdown,
    upstream::{Forward, Router},
};

/// The complete request path as one cloneable service, taking requests
/// with a body of type `B`: hyper's [`Incoming`] (what Paddock's own server
/// passes) or any other body with [`Bytes`] data, which is turned into a
/// [`RequestBody`] on the way in. Never fails: errors are already Kubernetes
/// `Status` responses.
pub struct ProxyService<B = Incoming> {
    inner: BoxCloneSyncService<Request<RequestBody>, ProxyResponse, Infallible>,
    // `fn(B)`: the service takes `B`s and holds none, so it is Send, Sync
    // and Clone whatever `B` is.
    body: PhantomData<fn(B)>,
}

impl<B> ProxyService<B> {
    /// The same service, taking requests with a body of type `C`.
    pub(crate) fn with_body<C>(&self) -> ProxyService<C> {
        ProxyService {
            inner: self.inner.clone(),
            body: PhantomData,
        }
    }
}

impl<B> Clone for ProxyService<B> {
    fn clone(&self) -> Self {
        self.with_body()
    }
}

impl<B> std::fmt::Debug for ProxyService<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyService").finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for ProxyService<B>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<ProxyResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.inner.call(request.map(RequestBody::new))
    }
}

/// Everything the stack is built from.
#[derive(Clone)]
pub struct StackParts {
    /// Identity providers, asked in order.
    pub authenticators: AuthenticatorChain,
    /// The policy decision point.
    pub authorizer: Arc<dyn Authorizer>,
    /// Decides the admin API (always a policy, see [`EndpointsConfig`]).
    pub admin_authorizer: Arc<dyn Authorizer>,
    /// Downstream clusters.
    pub router: Arc<Router>,
    /// Plugins, run at each phase in order.
    pub plugins: Plugins,
    /// Shutdown signals: watches end on drain, tunnels on abort.
    pub shutdown: Shutdown,
    /// Users and tokens for the `/paddock/v1/` endpoints, if any.
    pub accounts: Option<Arc<Accounts>>,
    /// Paddock's serving CA, handed out in kubeconfigs.
    pub ca_pem: Option<Vec<u8>>,
    /// Where administration is authorized (global roles' own rules).
    pub management_cluster: String,
}

/// Builds the stack, outermost layer first.
pub fn build(parts: StackParts) -> ProxyService {
    let endpoints = Endpoints::new(
        parts.router.clone(),
        EndpointsConfig {
            accounts: parts.accounts,
            authorizer: parts.authorizer.clone(),
            admin_authorizer: parts.admin_authorizer,
            ca_pem: parts.ca_pem,
            management_cluster: parts.management_cluster,
        },
    );
    let service = ServiceBuilder::new()
        // Id, span and context first, so everything below (errors included) is traced and logged.
        .layer(TraceLayer::new(parts.plugins.clone()))
        // Every typed error becomes a Kubernetes Status here, and only here.
        .layer(RescueLayer)
        // Caller-sent identity and hop-by-hop headers go before anything can read them.
        .layer(SanitizeLayer)
        // Parse the target once: one of Paddock's endpoints, or a cluster
        // with its relative path and request attributes.
        .layer(RouteLayer::new(parts.router))
        // Credentials become an Identity; Authorization and Cookie are removed;
        // a token's cluster scope is enforced. Paddock's endpoints pass here
        // too: one way to find out who is calling. Then the plugins'
        // on_request: they see who is calling before policy decides (audit,
        // rate limits), logins and administration included.
        .layer(AuthenticateLayer::new(
            parts.authenticators,
            parts.plugins.clone(),
        ))
        // Paddock's own endpoints answer here; they authorize administration
        // with the same authorization step as below.
        .layer(EndpointsLayer::new(endpoints))
        // Policy: may this identity (and its --as target) do this on this cluster?
        .layer(AuthorizeLayer::new(parts.authorizer.clone()))
        // `kubectl auth can-i` is answered by the same authorizer, not the downstream's RBAC.
        .layer(SelfReviewLayer::new(parts.authorizer))
        // Only an authorized identity is presented downstream.
        .layer(ImpersonateLayer)
        // The plugins' on_upstream_request (a last look at the exact request
        // that leaves Paddock), then stream to the cluster with Paddock's own
        // credential.
        .service(Forward::new(parts.shutdown, parts.plugins));
    ProxyService {
        inner: BoxCloneSyncService::new(service),
        body: PhantomData,
    }
}
