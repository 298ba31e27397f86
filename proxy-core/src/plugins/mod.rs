//! Built-in plugins.

pub mod access_log;
pub mod audit;
mod json;
pub mod metrics;
pub mod writer;
