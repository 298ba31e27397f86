//! Built-in plugins.

pub mod access_log;
pub mod audit;
pub mod metrics;
pub mod writer;
