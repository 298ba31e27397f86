//! `GET /paddock/v1/clusters/<id>/replica?since=<revision>&policy=<hash>&timeoutSeconds=<n>`:
//! a cluster's replica feed ([`crate::replica`]) for its sidecar, as a long
//! poll. It answers at once when the store has moved past `since` (or with
//! a reset when `since` is 0 or unknown) or the cluster's policy is not the
//! one the sidecar holds (`policy`, the hash of its copy), otherwise as soon
//! as either changes, or after `timeoutSeconds` (default 20, at most 60)
//! with an empty answer at the same revision, which tells the sidecar it is
//! current.
//!
//! Since every answer says the sidecar is current, this replica answers
//! only while its own snapshot is known to hold every commit (its last
//! refresh succeeded, within [`MAX_SYNC_AGE`]). A replica cut off from etcd
//! answers 503 instead, also to a poll already waiting, rather than let the
//! sidecar keep tokens revoked through other replicas; the sidecar counts
//! itself behind from its last answer and asks again.
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
    accounts::{clusters, Accounts, POLL_INTERVAL},
    body::RequestBody,
    context::ConnectionInfo,
    error::ProxyError,
    replica::{policy_hash, ReplicaFeed},
    request::ProxyResult,
    store::{Revision, StoreView},
    tunnel::presented_token,
};

/// How often a waiting poll looks at the snapshot's revision and the
/// policy (two atomic loads): the bound this endpoint adds to a
/// revocation's propagation.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// How long after this replica's last successful refresh (every
/// [`POLL_INTERVAL`]) its snapshot still counts as current: a few missed
/// polls, about as long as a refresh hanging on an unreachable etcd takes to
/// fail. What a sidecar's lag may be under-counted by.
const MAX_SYNC_AGE: Duration = POLL_INTERVAL.saturating_mul(5);
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
        in_sync(&view)?;
        tokio::time::sleep(POLL_EVERY).await;
        let now = authorizer.policy_set();
        if !same(&now, &set) {
            set = now;
            policy = ClusterPolicyState::of(set.as_deref(), cluster);
        }
    }
    let accounts = accounts.clone();
    let id = cluster.to_owned();
    let mut feed: ReplicaFeed = blocking(move || accounts.replica_feed(&id, since)).await??;
    // Every answer tells the sidecar it is current as of now.
    in_sync(&view)?;
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

/// 503 unless `view` is known to hold every commit (see the module docs).
fn in_sync(view: &StoreView) -> Result<(), ProxyError> {
    match view.out_of_sync(MAX_SYNC_AGE) {
        None => Ok(()),
        Some(why) => Err(ProxyError::StoreUnavailable {
            message: format!("this replica's copy may be missing commits: {why}"),
        }),
    }
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use secrecy::ExposeSecret;
    use tower::ServiceExt;

    use super::*;
    use crate::accounts::AccountsOptions;
    use crate::authn::tokens::Pepper;
    use crate::store::{tests::Flaky, StoreError};
    use crate::tunnel::TOKEN_HEADER;
    use crate::upstream::ClusterConfig;
    use crate::Proxy;

    struct Center {
        _dir: tempfile::TempDir,
        flaky: Arc<Flaky>,
        proxy: Proxy,
        token: String,
        /// A revision before the last change: a poll from it reads the
        /// store's change feed.
        before: Revision,
    }

    impl Center {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let flaky = Arc::new(Flaky::open(&dir.path().join("s.redb")));
            let accounts = Arc::new(
                Accounts::new(
                    flaky.clone(),
                    &Pepper::from_bytes([1; 32]),
                    dir.path(),
                    AccountsOptions::default(),
                )
                .unwrap(),
            );
            let rotate = || {
                clusters::rotate_token(
                    accounts.view(),
                    accounts.token_hasher(),
                    "prod",
                    &["prod".to_owned()],
                )
                .unwrap()
            };
            rotate();
            let before = accounts.view().snapshot().revision();
            let token = rotate();
            let proxy = Proxy::builder()
                .without_plugins()
                .accounts(accounts)
                .cluster(ClusterConfig::new("prod", "https://127.0.0.1:1"), false)
                .build()
                .unwrap();
            Self {
                _dir: dir,
                flaky,
                proxy,
                token: token.expose_secret().to_owned(),
                before,
            }
        }

        /// The feed's answer to a poll from `since`: status and body.
        async fn poll(&self, since: Revision) -> (StatusCode, serde_json::Value) {
            let request = Request::get(format!(
                "/paddock/v1/clusters/prod/replica?since={since}&timeoutSeconds=20"
            ))
            .header(TOKEN_HEADER, &self.token)
            .body(Empty::<Bytes>::new())
            .unwrap();
            let response = self.proxy.service().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, serde_json::from_slice(&body).unwrap())
        }
    }

    fn unavailable() -> StoreError {
        StoreError::Unavailable {
            detail: "etcd: request timed out".into(),
        }
    }

    /// A replica cut off from the store stops the feed with 503, also a
    /// poll already waiting, instead of telling the sidecar it is current;
    /// it answers again once it has caught up.
    #[tokio::test(start_paused = true)]
    async fn a_replica_that_cannot_read_the_store_answers_503_not_current() {
        let center = Center::new();
        let (status, body) = center.poll(Revision(0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let revision = Revision(body["revision"].as_u64().unwrap());

        let center = Arc::new(center);
        let poll = tokio::spawn({
            let center = center.clone();
            async move { center.poll(revision).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!poll.is_finished(), "nothing changed: the poll waits");
        center.flaky.fail_reads(Some(unavailable()));
        let (status, body) = poll.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["kind"], "Status");
        assert_eq!(body["reason"], "ServiceUnavailable");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("request timed out"),
            "{body}"
        );
        // A new poll is refused at once, a reset as much as a delta.
        for since in [revision, Revision(0)] {
            let (status, body) = center.poll(since).await;
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        }

        center.flaky.fail_reads(None);
        tokio::time::sleep(POLL_INTERVAL * 2).await;
        let (status, body) = center.poll(Revision(0)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["reset"], true);
    }

    /// A store that cannot be read while the delta is built is 503 too
    /// (try again), not 500.
    #[tokio::test(start_paused = true)]
    async fn a_store_failing_while_the_delta_is_built_is_503() {
        let center = Center::new();
        center.flaky.fail_reads(Some(unavailable()));
        let (status, body) = center.poll(center.before).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
}
