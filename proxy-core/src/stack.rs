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
        authenticate::AuthenticateLayer, authorize::AuthorizeLayer, endpoints::EndpointsLayer,
        impersonate::ImpersonateLayer, rescue::RescueLayer, route::RouteLayer,
        sanitize::SanitizeLayer, self_review::SelfReviewLayer, trace::TraceLayer,
    },
    plugin::Plugins,
    request::ProxyResponse,
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
    BoxCloneSyncService::new(service)
}
