//! Built-in plugins.

pub mod access_log;
pub mod audit;
pub mod metrics;
#[cfg(feature = "kube")]
pub mod rbac_sync;
