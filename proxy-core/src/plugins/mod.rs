//! Built-in plugins.

pub mod access_log;
pub mod alerts;
pub mod audit;
mod json;
pub mod metrics;
mod outbound;
mod queue;
pub mod rbac_sync;
pub mod writer;
