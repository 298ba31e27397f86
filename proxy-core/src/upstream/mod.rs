//! Downstream API servers: cluster definitions, TLS towards them, routing,
//! and the forwarder that streams requests and upgrades through.

mod cluster;
mod credential;
mod direct_h2;
mod forward;
mod router;
mod tls;

pub use cluster::{Cluster, ClusterConfig, UpstreamError};
pub use credential::UpstreamCredential;
pub(crate) use direct_h2::InFlight;
pub use forward::{Forward, DEFAULT_REQUEST_TIMEOUT};
pub use router::Router;

/// `error: cause: cause`, how upstream failures are reported in Status
/// messages.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}
