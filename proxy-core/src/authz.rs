//! Authorization: may this identity do this to this cluster?
//!
//! Deny by default. [`DenyAll`] is what runs when no policy is configured, so
//! an unconfigured Paddock starts but forwards nothing; [`AllowAuthenticated`]
//! must be chosen explicitly; [`policy::PolicyAuthorizer`] evaluates
//! Kubernetes RBAC and Rancher's role model.

pub mod policy;

pub use ::policy::{Decision, ImpersonationRequest, RequestAttributes};

use std::sync::Arc;

use crate::authn::Identity;

/// Everything an authorizer may look at.
#[derive(Debug, Clone, Copy)]
pub struct AuthzRequest<'a> {
    /// The identity the request is made as.
    pub identity: &'a Identity,
    /// The target cluster's id.
    pub cluster: &'a str,
    /// What the request does, as the API server will resolve it.
    pub attributes: &'a RequestAttributes,
    /// True for a connection upgrade (WebSocket or SPDY exec, attach, port-forward).
    pub upgrade: bool,
}

/// A policy decision point. Called on every proxied request, so it must be
/// a memory-only computation.
pub trait Authorizer: Send + Sync + 'static {
    /// Decides a request made as `request.identity`.
    fn authorize(&self, request: &AuthzRequest<'_>) -> Decision;

    /// Where this authorizer's policy comes from, when it is one that
    /// watches a [`policy::PolicySource`]: the admin API checks new role
    /// bindings and projects against it before storing them.
    fn policy_source(&self) -> Option<Arc<policy::PolicySource>> {
        None
    }

    /// The compiled policy this authorizer decides with now, when it is
    /// one: a cluster's sidecar gets that cluster's part of it
    /// ([`::policy::ClusterPolicy`]) with its replica, to decide the same
    /// way without the center. A changed policy is a new `Arc`.
    fn policy_set(&self) -> Option<Arc<::policy::PolicySet>> {
        None
    }

    /// Decides whether `request.identity` may act as `requested`
    /// (`kubectl --as`). Refused unless an authorizer says otherwise.
    fn authorize_impersonation(
        &self,
        request: &AuthzRequest<'_>,
        requested: &ImpersonationRequest,
    ) -> Decision {
        let _ = (request, requested);
        Decision {
            allowed: false,
            reason: "impersonation (kubectl --as, --as-group, --as-uid) is not allowed through \
                     Paddock without a policy that grants it"
                .into(),
        }
    }
}

/// Denies every proxied request: the default until a policy is configured.
#[derive(Debug, Clone, Default)]
pub struct DenyAll;

impl Authorizer for DenyAll {
    fn authorize(&self, _request: &AuthzRequest<'_>) -> Decision {
        Decision {
            allowed: false,
            reason: "no authorization policy is configured: Paddock denies every request \
                     (set `authorization` in the config)"
                .into(),
        }
    }
}

/// Allows any authenticated caller everything. Only by explicit choice
/// (`authorization: allow-authenticated`).
#[derive(Debug, Clone, Default)]
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, _request: &AuthzRequest<'_>) -> Decision {
        Decision {
            allowed: true,
            reason: "authorization is allow-authenticated".into(),
        }
    }
}
