//! Downstream API servers: cluster definitions, TLS towards them, routing,
//! and the forwarder that streams requests and upgrades through.

mod cluster;
mod connector;
mod credential;
mod direct_h1;
mod direct_h2;
mod forward;
mod reachability;
mod registered;
mod router;
pub(crate) mod tls;

pub(crate) use cluster::Cluster;
pub use cluster::{ClusterConfig, UpstreamError};
pub use credential::UpstreamCredential;
pub(crate) use direct_h1::H1Body;
pub(crate) use direct_h2::InFlight;
pub(crate) use forward::Forward;
pub use forward::DEFAULT_REQUEST_TIMEOUT;
pub(crate) use reachability::{Observation, Reachability};
pub(crate) use registered::spawn_sync;
pub(crate) use router::Router;
