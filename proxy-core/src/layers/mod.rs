//! The middleware of the request path, one job per file. Their order is
//! decided in one place: [`crate::stack`].

pub mod authenticate;
pub mod authorize;
pub mod endpoints;
pub mod impersonate;
pub mod rescue;
pub mod route;
pub mod sanitize;
pub mod self_review;
pub mod trace;
