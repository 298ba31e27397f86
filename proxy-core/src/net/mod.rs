//! Paddock's own outbound connections (identity providers, webhook and
//! alert receivers, a sidecar's feed, an agent's dial): through an HTTP
//! proxy when [`OutboundProxy`] names one, with TLS end to end inside its
//! tunnel.

mod http_proxy;
pub(crate) mod tls;

pub use http_proxy::OutboundProxy;
pub(crate) use http_proxy::{through_proxy, ProxyConnector};

/// A `CONNECT` proxy on loopback for tests of the clients built on it.
#[cfg(test)]
pub(crate) use http_proxy::tests::proxy as test_proxy;
