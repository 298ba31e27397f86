//! Built-in plugins.

pub mod access_log;
