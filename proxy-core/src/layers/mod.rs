//! The middleware of the request path, one job per file. Their order is
//! decided in one place: [`crate::stack`].

pub(crate) mod authenticate;
pub(crate) mod authorize;
pub(crate) mod endpoints;
pub(crate) mod impersonate;
pub(crate) mod rescue;
pub(crate) mod route;
pub(crate) mod sanitize;
pub(crate) mod self_review;
pub(crate) mod trace;
