//! Internal functions re-exported for the criterion benchmarks in
//! `benches/` and the binary's tests, which link proxy-core as any other
//! crate does. Not part of the API: hidden from the docs, may change
//! without notice.

pub use crate::{
    impersonation::{insert_cached_headers, insert_headers},
    layers::sanitize::strip,
    layers::trace::in_request_scope,
};

/// A request context as the stack leaves it for `on_log`: resolved to
/// `attributes`, authenticated as `identity`, decided `allowed`.
pub fn decided_context(
    attributes: policy::RequestAttributes,
    identity: std::sync::Arc<crate::authn::Identity>,
    allowed: bool,
) -> crate::context::RequestContext {
    decided_context_from(attributes, identity, allowed, None)
}

/// [`decided_context`], from the client address `client`.
pub fn decided_context_from(
    attributes: policy::RequestAttributes,
    identity: std::sync::Arc<crate::authn::Identity>,
    allowed: bool,
    client: Option<std::net::SocketAddr>,
) -> crate::context::RequestContext {
    let context = crate::context::RequestContext::new(
        String::new(),
        http::Method::GET,
        String::new(),
        client,
    );
    context.set_attributes(attributes);
    context.set_identity(identity);
    context.set_decision(policy::Decision {
        allowed,
        reason: "".into(),
    });
    context
}
