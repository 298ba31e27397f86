//! THE layer order of the request path, in one function.

use std::{convert::Infallible, sync::Arc};

use http::Request;
use hyper::body::Incoming;
use tower::{util::BoxCloneSyncService, ServiceBuilder};

use crate::{
    accounts::Accounts,
    authn::AuthenticatorChain,
    authz::Authorizer,
    endpoints::{Endpoints, EndpointsConfig},
    layers::{
        authenticate::AuthenticateLayer, authorize::AuthorizeLayer, impersonate::ImpersonateLayer,
        rescue::RescueLayer, route::RouteLayer, sanitize::SanitizeLayer,
        self_review::SelfReviewLayer, trace::TraceLayer, ProxyResponse,
    },
    plugin::Plugins,
    shutdown::Shutdown,
    upstream::{Forward, Router},
};

/// The complete request path as one cloneable service.
pub type ProxyService = BoxCloneSyncService<Request<Incoming>, ProxyResponse, Infallible>;

/// Everything the stack is built from.
#[derive(Clone)]
pub struct StackParts {
    /// Identity providers, asked in order.
    pub authenticators: AuthenticatorChain,
    /// The policy decision point.
    pub authorizer: Arc<dyn Authorizer>,
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
            authenticators: parts.authenticators.clone(),
            authorizer: parts.authorizer.clone(),
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
        // /paddock/ endpoints branch off; cluster requests get their target and relative path.
        .layer(RouteLayer::new(parts.router, endpoints))
        // Credentials become an Identity; Authorization and Cookie are removed.
        // Then the plugins' on_request: they see who is calling before policy
        // decides (audit, rate limits).
        .layer(AuthenticateLayer::new(
            parts.authenticators,
            parts.plugins.clone(),
        ))
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
    BoxCloneSyncService::new(service)
}
