//! The types every part of the request path shares: the response and result
//! each layer returns, and the facts one layer leaves in a request's
//! extensions for a later one. They live here, beside the layers rather than
//! in them, so that the forwarder in [`crate::upstream`] and Paddock's
//! endpoints depend on these types and not on the layers that produce them.
//!
//! Not [`crate::context`]: the context is the public record plugins read,
//! set once per fact; these are the stack's own plumbing, carried as request
//! extensions (and mostly crate-private).

use http::{HeaderValue, Response};
use policy::ImpersonationRequest;

use crate::{body::ResponseBody, error::ProxyError};

/// The response every layer produces.
pub type ProxyResponse = Response<ResponseBody>;

/// What inner layers return; the rescue layer turns errors into responses.
pub type ProxyResult = Result<ProxyResponse, ProxyError>;

/// What the caller asked to impersonate, read by the sanitize layer before
/// the headers were removed; validated by the authorize layer.
#[derive(Debug, Clone)]
pub(crate) struct CallerImpersonation(pub(crate) ImpersonationRequest);

/// The protocol a caller asked to upgrade to (`Upgrade:` header), kept by
/// the sanitize layer because `Upgrade` and `Connection` are hop-by-hop and
/// removed there; the forwarder asks the cluster for it again.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeRequest(pub(crate) HeaderValue);

/// The `Host` (or HTTP/2 `:authority`) the caller addressed, as it was before
/// sanitizing removed it. Kept for Paddock's own endpoints only (kubeconfig
/// server URLs); never forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHost(pub(crate) String);
