//! A cluster's replica feed: what a sidecar next to one downstream API
//! server (`paddock sidecar`) needs to authenticate that cluster's tokens
//! without the center, and nothing more.
//!
//! The center serves it at `GET /paddock/v1/clusters/<id>/replica?since=<revision>`
//! (a long poll: it answers as soon as the store moves past `since`, or
//! after `timeoutSeconds` with an empty delta). A reader starts at revision 0
//! and gets a full [`ReplicaFeed::reset`]; afterwards it gets deltas, and a
//! reset again whenever the store's change history no longer reaches back to
//! its revision (compacted) or its revision is not one the store knows.
//!
//! What is replicated, and why only that:
//!
//! * tokens scoped to this cluster that carry a cluster verifier
//!   ([`TokenRecord::cluster_verifier`]), as `{id, user, verifier, expiry,
//!   enabled}`. **Unscoped tokens are not replicated**: their verifier
//!   could only be made from the secret, which the center never keeps, and
//!   an unscoped token also opens Paddock's own API, which a downstream
//!   cluster has no business checking. Tokens with an idle timeout (login
//!   sessions) are left out as well: the sidecar cannot see their last use.
//!   This is Rancher's rule too: its authorized cluster endpoint accepts
//!   cluster-scoped tokens only.
//! * the users those tokens belong to: id, login name, enabled, principal
//!   ids and groups (as the center presents them downstream);
//! * the cluster's verifier key ([`TokenHasher::cluster_key`]), with every
//!   reset. The global pepper never leaves the center.
//! * the cluster's part of the center's policy ([`ClusterPolicy`]: the
//!   grants that can apply in this cluster, their roles' rules, the
//!   bindings' descriptions), for the sidecar's own request path, whenever
//!   it differs from what the reader holds (the reader sends the
//!   [`policy_hash`] of its copy). Absent when the center's authorizer is
//!   not a policy (`allow-authenticated`, `deny-all`).
//!
//! Deleted token ids are sent as ids only; an id without its secret
//! authenticates nothing.

mod feed;

pub use feed::build;

use serde::{Deserialize, Serialize};

use crate::store::{Revision, Timestamp, TokenRecord, User, UserAttributes};
pub use ::policy::ClusterPolicy;

#[cfg(doc)]
use crate::authn::tokens::TokenHasher;

/// `apiVersion` of [`ReplicaFeed`].
pub const API_VERSION: &str = "paddock.io/v1";
/// `kind` of [`ReplicaFeed`].
pub const KIND: &str = "ClusterReplicaFeed";

/// One answer of the feed: a full state (`reset`) or the changes after the
/// reader's revision.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaFeed {
    /// [`API_VERSION`].
    pub api_version: String,
    /// [`KIND`].
    pub kind: String,
    /// The cluster it is for.
    pub cluster: String,
    /// The center's store revision this answer brings the reader to.
    pub revision: Revision,
    /// Replace everything held with this answer's content.
    #[serde(default)]
    pub reset: bool,
    /// The cluster's verifier key, 64 hex characters (with every reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_key: Option<String>,
    /// Tokens added or changed.
    #[serde(default)]
    pub tokens: Vec<ReplicaToken>,
    /// Token ids to forget.
    #[serde(default)]
    pub deleted_tokens: Vec<String>,
    /// Users added or changed.
    #[serde(default)]
    pub users: Vec<ReplicaUser>,
    /// User ids to forget.
    #[serde(default)]
    pub deleted_users: Vec<String>,
    /// Set when the cluster's policy differs from the reader's: the new
    /// one's [`policy_hash`], `""` when there is none any more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// The cluster's policy, with a non-empty [`ReplicaFeed::policy_hash`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ClusterPolicy>,
}

/// A short, stable digest of a cluster's policy (SHA-256 of its JSON, hex):
/// what a reader sends back to say which one it holds.
pub fn policy_hash(policy: &ClusterPolicy) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(policy).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

impl std::fmt::Debug for ReplicaFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFeed")
            .field("cluster", &self.cluster)
            .field("revision", &self.revision)
            .field("reset", &self.reset)
            .field(
                "verifier_key",
                &self.verifier_key.as_ref().map(|_| "<redacted>"),
            )
            .field("tokens", &self.tokens.len())
            .field("deleted_tokens", &self.deleted_tokens.len())
            .field("users", &self.users.len())
            .field("deleted_users", &self.deleted_users.len())
            .field("policy_hash", &self.policy_hash)
            .finish()
    }
}

impl ReplicaFeed {
    /// An empty answer for `cluster` at `revision`.
    pub fn empty(cluster: &str, revision: Revision) -> Self {
        Self {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            cluster: cluster.to_owned(),
            revision,
            ..Self::default()
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        !self.reset
            && self.tokens.is_empty()
            && self.deleted_tokens.is_empty()
            && self.users.is_empty()
            && self.deleted_users.is_empty()
            && self.policy_hash.is_none()
    }
}

/// A replicated token: what is needed to verify it, no more.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaToken {
    /// Token id (the part before `:`).
    pub id: String,
    /// The user it authenticates.
    pub user_id: String,
    /// `v1$<salt>$<hmac(cluster key, salt || secret)>`.
    pub verifier: String,
    /// Absolute expiry.
    #[serde(default)]
    pub expires_at: Option<Timestamp>,
    /// Disabled tokens are refused.
    pub enabled: bool,
    /// The provider the user logged in with.
    #[serde(default)]
    pub provider: String,
}

impl std::fmt::Debug for ReplicaToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaToken")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("verifier", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl ReplicaToken {
    /// The replicated part of `record` for its cluster, when it is one the
    /// sidecar can verify (see the module docs).
    pub fn from_record(record: &TokenRecord, cluster: &str) -> Option<Self> {
        if record.cluster.as_deref() != Some(cluster) || record.idle_timeout_secs.is_some() {
            return None;
        }
        Some(Self {
            id: record.id.clone(),
            user_id: record.user_id.clone(),
            verifier: record.cluster_verifier.clone()?,
            expires_at: record.expires_at,
            enabled: record.enabled,
            provider: record.provider.clone(),
        })
    }
}

/// A replicated user: whether they may authenticate, and who they are
/// downstream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaUser {
    /// User id (the Kubernetes user name downstream, as on the proxy path).
    pub id: String,
    /// Login name.
    pub username: String,
    /// Disabled users' tokens are refused (so are those of a user who must
    /// change their password first: through the center they may do
    /// nothing else either).
    pub enabled: bool,
    /// Principal ids (`local://u-…`, `github_user://…`).
    #[serde(default)]
    pub principal_ids: Vec<String>,
    /// Group principal ids, as the center presents them downstream.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl ReplicaUser {
    /// The replicated part of a user and their provider attributes.
    pub fn new(user: &User, attributes: Option<&UserAttributes>) -> Self {
        Self {
            id: user.id.clone(),
            username: user.username.clone(),
            enabled: user.enabled && !user.must_change_password,
            principal_ids: user.principal_ids.clone(),
            groups: attributes
                .map(UserAttributes::all_groups)
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests;
