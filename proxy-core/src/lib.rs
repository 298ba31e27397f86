//! proxy-core
pub mod authn;
pub mod store;
