//! Per-request state shared by the layers and the plugins, carried in the
//! request's extensions as an `Arc<RequestContext>`.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Instant,
};

use http::Method;
use policy::RequestAttributes;

pub use policy::Decision;

use crate::{authn::Identity, upstream::Cluster};

/// What Paddock learned about one request as it went down the stack. Each
/// fact is set once, by the layer that owns it, and read by later ones and
/// by the access log when the response body ends.
#[derive(Debug)]
pub struct RequestContext {
    /// Unique id, also returned to the client as `X-Request-Id`.
    pub id: String,
    /// When the request arrived.
    pub started: Instant,
    /// The request method.
    pub method: Method,
    /// The path as the client sent it (no query: queries may carry secrets).
    pub path: String,
    /// The client's address.
    pub client_addr: Option<SocketAddr>,
    identity: OnceLock<Arc<Identity>>,
    impersonated: OnceLock<Arc<Identity>>,
    // Kept here rather than in the request's extensions: each extension is
    // a separate allocation, the context is one.
    cluster: OnceLock<Arc<Cluster>>,
    attributes: OnceLock<RequestAttributes>,
    decision: OnceLock<Decision>,
}

impl RequestContext {
    /// A context for a request that just arrived.
    pub fn new(id: String, method: Method, path: String, client_addr: Option<SocketAddr>) -> Self {
        Self {
            id,
            started: Instant::now(),
            method,
            path,
            client_addr,
            identity: OnceLock::new(),
            impersonated: OnceLock::new(),
            cluster: OnceLock::new(),
            attributes: OnceLock::new(),
            decision: OnceLock::new(),
        }
    }

    /// The authenticated caller, once known.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.get()
    }

    /// Records the authenticated caller.
    pub fn set_identity(&self, identity: Arc<Identity>) {
        let _ = self.identity.set(identity);
    }

    /// The identity the caller acts as through `kubectl --as`, when allowed.
    pub fn impersonated(&self) -> Option<&Arc<Identity>> {
        self.impersonated.get()
    }

    /// Records the identity the caller acts as.
    pub fn set_impersonated(&self, identity: Arc<Identity>) {
        let _ = self.impersonated.set(identity);
    }

    /// The identity presented downstream: the impersonated one if any.
    pub fn effective_identity(&self) -> Option<&Arc<Identity>> {
        self.impersonated().or_else(|| self.identity())
    }

    /// The target cluster's id, once routed.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.get().map(|cluster| cluster.id())
    }

    /// The target cluster, once routed.
    pub fn target(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Records the target cluster.
    pub fn set_target(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// What the request asks for in RBAC terms, once routed to a cluster.
    pub fn attributes(&self) -> Option<&RequestAttributes> {
        self.attributes.get()
    }

    /// Records the request's attributes.
    pub fn set_attributes(&self, attributes: RequestAttributes) {
        let _ = self.attributes.set(attributes);
    }

    /// The authorization decision, once made.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.get()
    }

    /// Records the authorization decision.
    pub fn set_decision(&self, decision: Decision) {
        let _ = self.decision.set(decision);
    }
}

/// Reads the context a request carries. Every request inside the stack has
/// one (the trace layer inserts it); outside the stack a fresh one is made.
pub fn of<B>(request: &http::Request<B>) -> Arc<RequestContext> {
    request
        .extensions()
        .get::<Arc<RequestContext>>()
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(RequestContext::new(
                String::new(),
                request.method().clone(),
                request.uri().path().to_owned(),
                None,
            ))
        })
}

/// Facts about the connection a request arrived on, inserted into every
/// request's extensions by the server.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The verified client certificate, if the client presented one.
    pub client_cert: Option<Arc<crate::authn::client_cert::ClientCertificate>>,
}
