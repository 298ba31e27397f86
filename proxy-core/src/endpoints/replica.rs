//! `GET /paddock/v1/clusters/<id>/replica?since=<revision>&timeoutSeconds=<n>`:
//! a cluster's replica feed ([`crate::replica`]) for its sidecar, as a long
//! poll. It answers at once when the store has moved past `since` (or with
//! a reset when `since` is 0 or unknown), otherwise as soon as it moves, or
//! after `timeoutSeconds` (default 20, at most 60) with an empty answer at
//! the same revision, which tells the sidecar it is current.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, StatusCode};

use super::{blocking, caller, json, Endpoints};
use crate::{
    accounts::Accounts, authn::Identity, body::RequestBody, context::RequestContext,
    error::ProxyError, request::ProxyResult, store::Revision,
};

/// How often a waiting poll looks at the snapshot's revision (an atomic
/// load): the bound this endpoint adds to a revocation's propagation.
const POLL_EVERY: Duration = Duration::from_millis(20);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
const MAX_TIMEOUT: Duration = Duration::from_secs(60);

pub(super) async fn feed(
    endpoints: &Endpoints,
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
    cluster: &str,
) -> ProxyResult {
    let caller = caller(&request)?;
    let context = crate::context::of(&request);
    authorize_feed(endpoints, &context, &caller, cluster)?;
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
    let view = accounts.view().clone();
    let deadline = tokio::time::Instant::now() + timeout;
    while view.snapshot().revision() == since && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL_EVERY).await;
    }
    let accounts = accounts.clone();
    let id = cluster.to_owned();
    let feed = blocking(move || accounts.replica_feed(&id, since))
        .await?
        .map_err(|e| ProxyError::Internal {
            message: format!("cannot read the store for the replica feed: {e}"),
        })?;
    if !feed.is_empty() {
        tracing::debug!(cluster.id = %cluster, since = %since, revision = %feed.revision,
            reset = feed.reset, tokens = feed.tokens.len(), "replica feed sent");
    }
    Ok(json(StatusCode::OK, &feed))
}

/// Who may read a cluster's feed: today, a caller the admin policy allows
/// `get` on `clusterreplicas` named `<cluster>` in `management.cattle.io`
/// (the global role `admin`, or a role written for sidecars), presenting
/// an unscoped credential. This is the one function to switch to the
/// cluster's own registration token once clusters carry one.
fn authorize_feed(
    endpoints: &Endpoints,
    context: &RequestContext,
    caller: &Identity,
    cluster: &str,
) -> Result<(), ProxyError> {
    endpoints.authorize_admin(context, caller, "get", "clusterreplicas", Some(cluster))
}
