//! `GET /paddock/v1/clusters/<id>/replica?since=<revision>&policy=<hash>&timeoutSeconds=<n>`:
//! a cluster's replica feed ([`crate::replica`]) for its sidecar, as a long
//! poll. It answers at once when the store has moved past `since` (or with
//! a reset when `since` is 0 or unknown) or the cluster's policy is not the
//! one the sidecar holds (`policy`, the hash of its copy), otherwise as soon
//! as either changes, or after `timeoutSeconds` (default 20, at most 60)
//! with an empty answer at the same revision, which tells the sidecar it is
//! current.
//!
//! The caller is the cluster itself, not a user: the sidecar presents the
//! cluster's registration token (`<id>.<secret>`, see
//! [`clusters`](crate::accounts::clusters)) in [`TOKEN_HEADER`](crate::tunnel::TOKEN_HEADER), and only
//! that cluster's token reads that cluster's feed. The authenticate layer
//! reads no credential here; a refusal is 401 and is logged with the
//! cluster asked for, never the token.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};

use super::{blocking, json, Endpoints};
use crate::{
    accounts::{clusters, Accounts},
    body::RequestBody,
    context::ConnectionInfo,
    error::ProxyError,
    replica::{policy_hash, ReplicaFeed},
    request::ProxyResult,
    store::Revision,
    tunnel::presented_token,
};

/// How often a waiting poll looks at the snapshot's revision and the
/// policy (two atomic loads): the bound this endpoint adds to a
/// revocation's propagation.
const POLL_EVERY: Duration = Duration::from_millis(20);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn feed(
    endpoints: &Endpoints,
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
    cluster: &str,
) -> ProxyResult {
    authorize_feed(endpoints, accounts, &request, cluster)?;
    // A sidecar started with a wrong --cluster hears so at once.
    endpoints.router().resolve(Some(cluster))?;
    let query = policy::parse_query(request.uri().query().unwrap_or(""));
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v);
    let since = match param("since") {
        None => Revision(0),
        Some(v) => Revision(v.parse().map_err(|_| ProxyError::BadRequest {
            message: format!("since must be a revision (a whole number), not {v:?}"),
        })?),
    };
    let timeout = match param("timeoutSeconds") {
        None => DEFAULT_TIMEOUT,
        Some(v) => Duration::from_secs(v.parse().map_err(|_| ProxyError::BadRequest {
            message: format!("timeoutSeconds must be a whole number, not {v:?}"),
        })?)
        .min(MAX_TIMEOUT),
    };
    let held_policy = param("policy").map_or("", String::as_str);
    let authorizer = endpoints.config().authorizer.clone();
    let view = accounts.view().clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut set = authorizer.policy_set();
    let mut policy = ClusterPolicyState::of(set.as_deref(), cluster);
    while view.snapshot().revision() == since
        && policy.hash == held_policy
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(POLL_EVERY).await;
        let now = authorizer.policy_set();
        if !same(&now, &set) {
            set = now;
            policy = ClusterPolicyState::of(set.as_deref(), cluster);
        }
    }
    let accounts = accounts.clone();
    let id = cluster.to_owned();
    let mut feed: ReplicaFeed = blocking(move || accounts.replica_feed(&id, since))
        .await?
        .map_err(|e| ProxyError::Internal {
            message: format!("cannot read the store for the replica feed: {e}"),
        })?;
    if feed.reset || policy.hash != held_policy {
        feed.policy_hash = Some(policy.hash);
        feed.policy = policy.policy;
    }
    if !feed.is_empty() {
        tracing::debug!(cluster.id = %cluster, since = %since, revision = %feed.revision,
            reset = feed.reset, tokens = feed.tokens.len(), policy = feed.policy.is_some(),
            "replica feed sent");
    }
    Ok(json(StatusCode::OK, &feed))
}

/// The cluster's part of the policy in force and its hash (`""`: none).
struct ClusterPolicyState {
    hash: String,
    policy: Option<::policy::ClusterPolicy>,
}

impl ClusterPolicyState {
    fn of(set: Option<&::policy::PolicySet>, cluster: &str) -> Self {
        match set.map(|set| set.for_cluster(cluster)) {
            Some(policy) => Self {
                hash: policy_hash(&policy),
                policy: Some(policy),
            },
            None => Self {
                hash: String::new(),
                policy: None,
            },
        }
    }
}

fn same(a: &Option<Arc<::policy::PolicySet>>, b: &Option<Arc<::policy::PolicySet>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Who may read a cluster's feed: whoever presents that cluster's current
/// registration token. The token of another cluster, a rotated or revoked
/// one, a user's token: 401.
fn authorize_feed(
    endpoints: &Endpoints,
    accounts: &Accounts,
    request: &Request<RequestBody>,
    cluster: &str,
) -> Result<(), ProxyError> {
    let peer = request
        .extensions()
        .get::<Arc<ConnectionInfo>>()
        .and_then(|c| c.remote_addr);
    let Some(presented) = presented_token(request.headers()) else {
        tracing::warn!(client.addr = ?peer, cluster.id = %cluster, "replica feed refused: no registration token");
        return Err(ProxyError::MissingCredentials);
    };
    let configured = endpoints.router().is_configured(cluster);
    let valid = accounts.view().with_snapshot(|snapshot| {
        clusters::verify_cluster_token(
            snapshot,
            accounts.token_hasher(),
            cluster,
            configured,
            &presented,
        )
    });
    if !valid {
        tracing::warn!(client.addr = ?peer, cluster.id = %cluster, "replica feed refused: not the cluster's current registration token");
        return Err(ProxyError::InvalidCredentials);
    }
    Ok(())
}
