//! Built-in plugins.

pub mod access_log;
pub mod alerts;
pub mod audit;
pub mod metrics;
mod outbound;
#[cfg(feature = "kube")]
pub mod rbac_sync;
