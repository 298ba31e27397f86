//! THE layer order of the request path, in one function: `build`.
//!
//! Every request meets the layers below in this order, and the plugins'
//! phases ([`Plugin`](crate::plugin::Plugin)) at the marked places. A layer
//! that answers (an error, an endpoint, a plugin's `Flow::Respond`) sends
//! its response back up through the layers above it; nothing below runs.
//!
//! ```text
//!  request (any body: ProxyService turns it into a RequestBody)
//!     │
//!  1  Trace          request id, span, RequestContext (and the plugins' state)
//!  2  Rescue         from here down, a ProxyError becomes a Kubernetes Status
//!  3  Sanitize       caller-sent identity and hop-by-hop headers removed
//!  4  Route          /paddock/… → its Endpoint; else cluster, path, attributes
//!  5  Authenticate   credentials → Identity, token scope enforced
//!       ▸ on_request            every request that got this far, /paddock/ too
//!  6  Endpoints      /paddock/… branches off here and is answered ──────┐
//!  7  Authorize      policy decides the request (and its --as)          │
//!  8  SelfReview     `kubectl auth can-i` answered here ────────────────┤
//!  9  Impersonate    Impersonate-* headers for the authorized identity  │
//! 10  Forward                                                           │
//!       ▸ on_upstream_request   only requests that leave Paddock        │
//!                    streamed to the cluster with Paddock's credential  │
//!     │                                                                 │
//!  response ◄───────────────────────────────────────────────────────────┘
//!  1  Trace
//!       ▸ on_response           every response: Paddock's errors and
//!                               endpoints included
//!       ▸ on_log                once, when the response body has ended
//!                               (or was dropped)
//! ```
//!
//! So a plugin sees a refused login in `on_request`, `on_response` and
//! `on_log`; a request refused before authentication (a malformed path, an
//! unknown cluster) in `on_response` and `on_log` only.

use std::{
    convert::Infallible,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use tower::{Service, ServiceBuilder};

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
    inner: Box<dyn Stack>,
    // `fn(B)`: the service takes `B`s and holds none, so it is Send, Sync
    // and Clone whatever `B` is.
    body: PhantomData<fn(B)>,
}

impl<B> ProxyService<B> {
    /// The same service, taking requests with a body of type `C`.
    pub(crate) fn with_body<C>(&self) -> ProxyService<C> {
        ProxyService {
            inner: self.inner.clone_box(),
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

/// The stack as a trait object whose `call` hands out the outermost
/// layer's own boxed future: tower's `BoxCloneSyncService` would box that
/// box once more on every request.
trait Stack: Send + Sync {
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>>;
    fn call(
        &mut self,
        request: Request<RequestBody>,
    ) -> BoxFuture<'static, Result<ProxyResponse, Infallible>>;
    fn clone_box(&self) -> Box<dyn Stack>;
}

impl<S> Stack for S
where
    S: Service<
            Request<RequestBody>,
            Response = ProxyResponse,
            Error = Infallible,
            Future = BoxFuture<'static, Result<ProxyResponse, Infallible>>,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::poll_ready(self, cx)
    }

    fn call(
        &mut self,
        request: Request<RequestBody>,
    ) -> BoxFuture<'static, Result<ProxyResponse, Infallible>> {
        Service::call(self, request)
    }

    fn clone_box(&self) -> Box<dyn Stack> {
        Box::new(self.clone())
    }
}

/// Everything the stack is built from.
#[derive(Clone)]
pub(crate) struct StackParts {
    /// Identity providers, asked in order.
    pub authenticators: AuthenticatorChain,
    /// The policy decision point.
    pub authorizer: Arc<dyn Authorizer>,
    /// Decides the admin API (always a policy, see [`EndpointsConfig`]).
    pub admin_authorizer: Arc<dyn Authorizer>,
    /// Downstream clusters.
    pub router: Arc<Router>,
    /// Agents' tunnels.
    pub tunnels: Arc<crate::tunnel::Tunnels>,
    /// The image agent manifests run.
    pub agent_image: String,
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
    /// The clusters' last health checks, when they are checked.
    pub health: Option<Arc<crate::health::HealthChecker>>,
    /// The RBAC sync, when it runs.
    pub rbac_sync: Option<crate::plugins::rbac_sync::Running>,
}

/// Builds the stack, outermost layer first.
pub(crate) fn build(parts: StackParts) -> ProxyService {
    let endpoints = Endpoints::new(
        parts.router.clone(),
        EndpointsConfig {
            accounts: parts.accounts,
            authorizer: parts.authorizer.clone(),
            admin_authorizer: parts.admin_authorizer,
            ca_pem: parts.ca_pem,
            management_cluster: parts.management_cluster,
            health: parts.health,
            rbac_sync: parts.rbac_sync,
            tunnels: parts.tunnels,
            agent_image: parts.agent_image,
        },
    );
    let service = ServiceBuilder::new()
        // 1. Id, span and context first, so everything below (errors
        // included) is traced and logged; on the way out the plugins'
        // on_response, and their on_log when the body ends.
        .layer(TraceLayer::new(parts.plugins.clone()))
        // 2. Every typed error becomes a Kubernetes Status here, and only
        // here: inside Trace, so the plugins see the Status too.
        .layer(RescueLayer)
        // 3. Caller-sent identity and hop-by-hop headers go before anything can read them.
        .layer(SanitizeLayer)
        // 4. Parse the target once: one of Paddock's endpoints, or a cluster
        // with its relative path and request attributes.
        .layer(RouteLayer::new(parts.router))
        // 5. Credentials become an Identity; Authorization and Cookie are removed;
        // a token's cluster scope is enforced. Paddock's endpoints pass here
        // too: one way to find out who is calling. Then the plugins'
        // on_request: they see who is calling before policy decides (audit,
        // rate limits), logins and administration included.
        .layer(AuthenticateLayer::new(
            parts.authenticators,
            parts.plugins.clone(),
        ))
        // 6. Paddock's own endpoints branch off and answer here, after the
        // plugins' on_request; they authorize administration with the same
        // authorization step as below.
        .layer(EndpointsLayer::new(endpoints))
        // 7. Policy: may this identity (and its --as target) do this on this cluster?
        .layer(AuthorizeLayer::new(parts.authorizer.clone()))
        // 8. `kubectl auth can-i` is answered by the same authorizer, not the downstream's RBAC.
        .layer(SelfReviewLayer::new(parts.authorizer))
        // 9. Only an authorized identity is presented downstream.
        .layer(ImpersonateLayer)
        // 10. The plugins' on_upstream_request (a last look at the exact request
        // that leaves Paddock), then stream to the cluster with Paddock's own
        // credential.
        .service(Forward::new(parts.shutdown, parts.plugins));
    ProxyService {
        inner: Box::new(service),
        body: PhantomData,
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{BodyExt, Empty, Full};
    use tower::ServiceExt;

    use super::*;

    /// What an embedder mounts takes any body with `Bytes` data, not only
    /// hyper's, and is answered by the whole stack.
    #[tokio::test]
    async fn the_service_takes_any_body() {
        let proxy = crate::Proxy::builder().build().unwrap();
        let empty = Request::get("/paddock/healthz").body(Empty::<Bytes>::new());
        let full = Request::get("/paddock/healthz").body(Full::new(Bytes::from_static(b"x")));
        for response in [
            proxy.service().oneshot(empty.unwrap()).await.unwrap(),
            proxy.service().oneshot(full.unwrap()).await.unwrap(),
        ] {
            assert_eq!(response.status(), http::StatusCode::OK);
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, "ok\n");
        }
    }
}
