//! The sidecar's second face: Paddock's own request path in front of the
//! local API server, for clusters whose API server flags (the token
//! webhook) cannot be changed.
//!
//! It is the same [`Proxy`] `paddock serve` runs (sanitize, authenticate,
//! authorize, impersonate, forward, the access log), built with two
//! replica-backed parts instead of the center's:
//!
//! * [`ReplicaTokens`], the authenticator: the cluster's Paddock tokens,
//!   checked against the replica exactly as the webhook checks them, giving
//!   the identity the center would present (user id, groups, `principalid`,
//!   `username`); a replica past `--max-staleness` or never received makes
//!   it unavailable (503), not "invalid" (401);
//! * [`ReplicaPolicy`], the authorizer: the cluster's part of the center's
//!   policy, as the feed brought it ([`::policy::ClusterPolicy`]), deciding
//!   with the same code as the center, so a request is allowed or refused,
//!   with the same reason, whichever way it came. Without one (the center's
//!   authorization is `allow-authenticated` or `deny-all`, which are not
//!   replicated) it refuses everything.
//!
//! The one cluster is the local API server, under the sidecar's cluster id
//! (the id the policy and the tokens' scope name), served at `/` and at
//! `/k8s/clusters/<id>/`.

use std::sync::Arc;

use secrecy::ExposeSecret;

use super::{Checked, Shared, Sidecar};
use crate::authn::{Authenticator, AuthnError, Credential, Identity, ReadyOrBoxed};
use crate::authz::{
    policy::{decide, decide_impersonation},
    Authorizer, AuthzRequest, Decision, ImpersonationRequest,
};
use crate::upstream::ClusterConfig;
use crate::{BuildError, Proxy};

impl Sidecar {
    /// Paddock's request path in front of `upstream` (the local API
    /// server, with the sidecar's own credential for it), authenticating
    /// and authorizing from this sidecar's replica. The cluster's id is the
    /// sidecar's, whatever `upstream` says. Serve it with [`Proxy::serve`]
    /// beside [`Sidecar::serve`], which keeps the replica current. Must run
    /// inside a tokio runtime.
    pub fn proxy(&self, mut upstream: ClusterConfig) -> Result<Proxy, BuildError> {
        upstream.id.clone_from(&self.shared.cluster);
        Proxy::builder()
            .authenticator(ReplicaTokens {
                shared: self.shared.clone(),
            })
            .authorizer(Arc::new(ReplicaPolicy {
                shared: self.shared.clone(),
            }))
            .cluster(upstream, true)
            .build()
    }
}

/// The cluster's Paddock tokens, checked against the replica.
struct ReplicaTokens {
    shared: Arc<Shared>,
}

impl Authenticator for ReplicaTokens {
    fn name(&self) -> &str {
        "sidecar-replica"
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let Credential::Bearer(token) = credential else {
            return ReadyOrBoxed::ready(Ok(None));
        };
        let result = match self.shared.check(token.expose_secret()) {
            Checked::Authenticated(identity) => Ok(Some(identity)),
            Checked::Refused(why) => {
                tracing::debug!(error = %why, "sidecar proxy: token refused");
                Err(AuthnError::Invalid)
            }
            Checked::Unavailable(why) => {
                tracing::debug!(error = %why, "sidecar proxy: replica unusable");
                Err(AuthnError::Unavailable {
                    provider: self.name().to_owned(),
                })
            }
        };
        ReadyOrBoxed::ready(result)
    }
}

/// The cluster's part of the center's policy, as the replica holds it.
struct ReplicaPolicy {
    shared: Arc<Shared>,
}

impl ReplicaPolicy {
    fn none(&self) -> Decision {
        Decision {
            allowed: false,
            reason: format!(
                "the sidecar holds no policy for cluster {}: the center's authorization is not \
                 `policy` (allow-authenticated and deny-all are not replicated), or it has not \
                 been received yet",
                self.shared.cluster
            )
            .into(),
        }
    }
}

impl Authorizer for ReplicaPolicy {
    fn authorize(&self, request: &AuthzRequest<'_>) -> Decision {
        match self.shared.replica.load().policy() {
            Some(set) => decide(set, request),
            None => self.none(),
        }
    }

    fn authorize_impersonation(
        &self,
        request: &AuthzRequest<'_>,
        requested: &ImpersonationRequest,
    ) -> Decision {
        match self.shared.replica.load().policy() {
            Some(set) => decide_impersonation(set, request, requested),
            None => self.none(),
        }
    }

    fn policy_set(&self) -> Option<Arc<::policy::PolicySet>> {
        self.shared.replica.load().policy().cloned()
    }
}
