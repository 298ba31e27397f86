//! Authentication: local users and Paddock-issued API tokens.
pub mod local;
pub mod tokens;
