use std::sync::Arc;

use secrecy::ExposeSecret;

use super::*;
use crate::accounts::tokens::{issue, revoke, IssuedToken, NewToken, TokenPolicy};
use crate::authn::tokens::{Pepper, TokenHasher};
use crate::store::{
    EmbeddedOptions, EmbeddedStore, Expect, Object, Op, Revision, StoreView, TokenKind, User,
    UserAttributes,
};

const T0: Timestamp = Timestamp(1_800_000_000);

struct Center {
    _dir: tempfile::TempDir,
    view: Arc<StoreView>,
    hasher: TokenHasher,
}

impl Center {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in_dir(dir.path(), EmbeddedOptions::default()).unwrap();
        let view = StoreView::new(Arc::new(store)).unwrap();
        let user = User {
            id: "u-alice".into(),
            username: "alice".into(),
            display_name: String::new(),
            enabled: true,
            must_change_password: false,
            principal_ids: vec!["local://u-alice".into()],
            created_at: T0,
        };
        let mut attributes = UserAttributes {
            user_id: "u-alice".into(),
            ..UserAttributes::default()
        };
        attributes
            .groups
            .insert("openldap".into(), vec!["openldap_group://cn=ops".into()]);
        view.commit(vec![
            Op::put(Object::User(user), Expect::Absent),
            Op::put(Object::UserAttributes(attributes), Expect::Absent),
        ])
        .unwrap();
        Self {
            _dir: dir,
            view,
            hasher: TokenHasher::new(&Pepper::from_bytes([9; 32])),
        }
    }

    fn issue(&self, cluster: Option<&str>) -> IssuedToken {
        let mut req = NewToken::new("u-alice", TokenKind::Kubeconfig);
        if let Some(c) = cluster {
            req = req.cluster(c);
        }
        issue(
            &self.view,
            &self.hasher,
            &TokenPolicy::default(),
            req,
            Timestamp::now(),
        )
        .unwrap()
    }

    /// Brings `sidecar` up to date, as one feed answer would.
    fn sync(&self, sidecar: &Sidecar) {
        let since = sidecar.replica().revision();
        let feed = crate::replica::build(&self.view, &self.hasher, "prod", since).unwrap();
        let next = sidecar.replica().apply(feed).unwrap();
        sidecar.shared.replica.store(Arc::new(next));
    }
}

fn sidecar(dir: &std::path::Path, max_staleness: Option<Duration>) -> Sidecar {
    let mut options = SidecarOptions::new(
        "https://127.0.0.1:1",
        "prod",
        SecretString::from("unused"),
        dir.to_owned(),
    );
    options.max_staleness = max_staleness;
    Sidecar::open(options).unwrap()
}

fn review_body(version: &str, token: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": version, "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": {"token": token}, "status": {},
    }))
    .unwrap()
}

#[test]
fn answers_in_the_requests_version_with_who_it_was() {
    let center = Center::new();
    let token = center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    center.sync(&sidecar);
    for version in ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"] {
        let (code, answer) = sidecar.review(&review_body(version, token.token.expose_secret()));
        assert_eq!(code, StatusCode::OK, "{answer}");
        assert_eq!(answer["apiVersion"], version);
        assert_eq!(answer["kind"], "TokenReview");
        let status = &answer["status"];
        assert_eq!(status["authenticated"], true, "{answer}");
        assert_eq!(status["user"]["username"], "u-alice");
        assert_eq!(status["user"]["uid"], "u-alice");
        assert_eq!(
            status["user"]["groups"],
            serde_json::json!(["openldap_group://cn=ops"])
        );
        assert_eq!(
            status["user"]["extra"]["principalid"],
            serde_json::json!(["local://u-alice"])
        );
        assert_eq!(
            status["user"]["extra"]["requesttokenid"],
            serde_json::json!([token.record.id])
        );
        assert_eq!(
            status["user"]["extra"]["username"],
            serde_json::json!(["alice"])
        );
    }
}

#[test]
fn refuses_revoked_disabled_foreign_and_wrong_tokens_with_200_false() {
    let center = Center::new();
    let prod = center.issue(Some("prod"));
    let staging = center.issue(Some("staging"));
    let unscoped = center.issue(None);
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    center.sync(&sidecar);
    let v1 = "authentication.k8s.io/v1";
    let authenticated = |token: &str| {
        let (code, answer) = sidecar.review(&review_body(v1, token));
        assert_eq!(code, StatusCode::OK, "{answer}");
        answer["status"]["authenticated"] == true
    };
    assert!(authenticated(prod.token.expose_secret()));
    assert!(
        !authenticated(staging.token.expose_secret()),
        "another cluster's token"
    );
    assert!(
        !authenticated(unscoped.token.expose_secret()),
        "an unscoped token"
    );
    let (id, _) = prod.token.expose_secret().split_once(':').unwrap();
    assert!(!authenticated(&format!("{id}:wrong-secret")));
    assert!(!authenticated("not a token"));

    let mut user = center
        .view
        .snapshot()
        .user("u-alice")
        .unwrap()
        .value
        .clone();
    user.enabled = false;
    center
        .view
        .commit(vec![Op::put(Object::User(user.clone()), Expect::Any)])
        .unwrap();
    center.sync(&sidecar);
    assert!(!authenticated(prod.token.expose_secret()), "user disabled");
    user.enabled = true;
    center
        .view
        .commit(vec![Op::put(Object::User(user), Expect::Any)])
        .unwrap();
    center.sync(&sidecar);
    assert!(
        authenticated(prod.token.expose_secret()),
        "user enabled again"
    );

    revoke(&center.view, None, &prod.record.id).unwrap();
    center.sync(&sidecar);
    assert!(!authenticated(prod.token.expose_secret()), "revoked");
}

/// A directory refresh that changes the user's groups changes the next
/// answer: the groups come from the replica, not from the token.
#[test]
fn a_group_change_reaches_the_answer() {
    let center = Center::new();
    let token = center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    center.sync(&sidecar);
    let groups = |sidecar: &Sidecar| {
        let body = review_body("authentication.k8s.io/v1", token.token.expose_secret());
        let (code, answer) = sidecar.review(&body);
        assert_eq!(code, StatusCode::OK, "{answer}");
        answer["status"]["user"]["groups"].clone()
    };
    assert_eq!(
        groups(&sidecar),
        serde_json::json!(["openldap_group://cn=ops"])
    );
    let mut attributes = center
        .view
        .snapshot()
        .user_attributes("u-alice")
        .unwrap()
        .value
        .clone();
    attributes.groups.insert(
        "openldap".into(),
        vec![
            "openldap_group://cn=dev".into(),
            "openldap_group://cn=sre".into(),
        ],
    );
    center
        .view
        .commit(vec![Op::put(
            Object::UserAttributes(attributes),
            Expect::Any,
        )])
        .unwrap();
    center.sync(&sidecar);
    assert_eq!(
        groups(&sidecar),
        serde_json::json!(["openldap_group://cn=dev", "openldap_group://cn=sre"])
    );
}

#[test]
fn malformed_reviews_get_400_status_and_no_replica_gets_503() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    let (code, answer) = sidecar.review(b"{\"kind\":");
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(answer["kind"], "Status");
    assert_eq!(answer["code"], 400);
    let (code, _) = sidecar.review(&review_body("authentication.k8s.io/v1", "t-1:x"));
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn a_stale_replica_fails_closed_when_asked_to() {
    let center = Center::new();
    let token = center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let strict = sidecar(dir.path(), Some(Duration::from_secs(5)));
    center.sync(&strict);
    // Never confirmed current by the feed: refused, with a reason.
    let (code, answer) = strict.review(&review_body(
        "authentication.k8s.io/v1",
        token.token.expose_secret(),
    ));
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{answer}");
    let (ready, body) = strict.shared.readiness();
    assert!(!ready, "{body}");
    strict.shared.lag.current(strict.replica().revision().0);
    let (code, answer) = strict.review(&review_body(
        "authentication.k8s.io/v1",
        token.token.expose_secret(),
    ));
    assert_eq!(code, StatusCode::OK);
    assert_eq!(answer["status"]["authenticated"], true);
    assert!(strict.shared.readiness().0);
    let metrics = strict.shared.metrics_text();
    assert!(
        metrics.contains("paddock_sidecar_replica_lag_seconds 0"),
        "{metrics}"
    );
    assert!(metrics.contains("result=\"stale\""), "{metrics}");
}

#[test]
fn the_replica_survives_a_restart_and_a_damaged_file_is_refused_untouched() {
    let center = Center::new();
    let token = center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let first = sidecar(dir.path(), None);
    center.sync(&first);
    first.shared.disk.save(&first.replica(), 1234).unwrap();

    let second = sidecar(dir.path(), None);
    assert_eq!(second.replica().revision(), first.replica().revision());
    assert_eq!(second.lag().current_at_ms(), 1234);
    // A quiet feed records freshness apart from the replica.
    second.shared.disk.save_heartbeat(5678).unwrap();
    let third = sidecar(dir.path(), None);
    assert_eq!(third.lag().current_at_ms(), 5678);
    let (_, answer) = second.review(&review_body(
        "authentication.k8s.io/v1",
        token.token.expose_secret(),
    ));
    assert_eq!(answer["status"]["authenticated"], true);

    let path = dir.path().join(REPLICA_FILE);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the file holds the verifier key");
    }
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).unwrap();
    let mut options = SidecarOptions::new(
        "https://127.0.0.1:1",
        "prod",
        SecretString::from("unused"),
        dir.path().to_owned(),
    );
    options.max_staleness = None;
    let error = Sidecar::open(options).unwrap_err();
    assert!(error.to_string().contains("replica.json"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "left untouched");

    // Another cluster's file is refused too.
    first.shared.disk.save(&first.replica(), 1).unwrap();
    let other = Sidecar::open(SidecarOptions::new(
        "https://127.0.0.1:1",
        "staging",
        SecretString::from("unused"),
        dir.path().to_owned(),
    ))
    .unwrap_err();
    assert!(other.to_string().contains("holds cluster prod"), "{other}");
    let _ = Revision(0);
}

/// The request path presents the caller exactly as the center would: the
/// same identity from the replica as from the center's own token check.
/// The heartbeat vouches for the file only while the file holds the
/// replica in memory. After a change that was not saved (a full disk, a
/// save cut short by shutdown), a restart must not take the older file,
/// which lacks that change, for current as of the latest heartbeat.
#[test]
fn the_heartbeat_never_vouches_for_an_unsaved_replica() {
    let center = Center::new();
    center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let running = sidecar(dir.path(), None);
    center.sync(&running);
    let saved_revision = running.replica().revision();
    running.shared.lag.current(saved_revision.0);
    running.shared.save(&running.replica()).unwrap();
    running.shared.heartbeat().unwrap();
    let vouched = sidecar(dir.path(), None).lag().current_at_ms();
    assert_eq!(vouched, running.lag().current_at_ms());

    // Alice is disabled: current in memory, never saved.
    let mut alice = center
        .view
        .snapshot()
        .user("u-alice")
        .unwrap()
        .value
        .clone();
    alice.enabled = false;
    center
        .view
        .commit(vec![Op::put(Object::User(alice), Expect::Any)])
        .unwrap();
    center.sync(&running);
    std::thread::sleep(Duration::from_millis(5));
    running.shared.lag.current(running.replica().revision().0);
    running.shared.heartbeat().unwrap();

    let restarted = sidecar(dir.path(), None);
    assert_eq!(restarted.replica().revision(), saved_revision);
    assert_eq!(
        restarted.lag().current_at_ms(),
        vouched,
        "a heartbeat vouched for a file without the latest change"
    );
    // The heartbeat asked for the save again.
    let requested = running.shared.persist.borrow().clone();
    assert_eq!(
        requested.map(|r| r.revision()),
        Some(running.replica().revision())
    );
}

#[test]
fn the_replica_gives_the_identity_the_center_gives() {
    let center = Center::new();
    let token = center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    center.sync(&sidecar);
    let store_tokens = crate::authn::tokens::StoreTokens::new(
        center.view.clone(),
        Arc::new(TokenHasher::new(&Pepper::from_bytes([9; 32]))),
        Arc::new(crate::authn::tokens::LastUsed::new(Duration::from_secs(60))),
    );
    let (_, expected) = store_tokens.verify(token.token.expose_secret()).unwrap();
    match sidecar.shared.check(token.token.expose_secret()) {
        Checked::Authenticated(identity) => assert_eq!(*identity, *expected),
        _ => panic!("the replica refused a valid token"),
    }
}

/// The request path's failures: a wrong token 401, a stale replica 503
/// (not 401: the caller should retry), no replicated policy 403 saying why.
#[tokio::test]
async fn the_request_path_refuses_as_the_center_would() {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let center = Center::new();
    let token = center.issue(Some("prod"));
    let call = |sidecar: &Sidecar, bearer: String| {
        let proxy = sidecar
            .proxy(crate::upstream::ClusterConfig::new(
                "ignored",
                "https://127.0.0.1:1",
            ))
            .unwrap();
        async move {
            let request = http::Request::get("/api/v1/namespaces/default/pods")
                .header("authorization", format!("Bearer {bearer}"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = proxy.service().oneshot(request).await.unwrap();
            let code = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (code, String::from_utf8_lossy(&body).into_owned())
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let stale = sidecar(dir.path(), Some(Duration::from_secs(60)));
    let (code, body) = call(&stale, token.token.expose_secret().to_owned()).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    let dir = tempfile::tempdir().unwrap();
    let current = sidecar(dir.path(), None);
    center.sync(&current);
    let (code, body) = call(&current, format!("{}x", token.token.expose_secret())).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    // The feed built here carries no policy (the center's authorizer
    // adds it): nothing is allowed, and the answer says why.
    let (code, body) = call(&current, token.token.expose_secret().to_owned()).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("holds no policy for cluster prod"), "{body}");
}

/// A rotated registration token written to the token file is used from
/// the next poll on; an empty or unreadable file changes nothing.
#[tokio::test]
async fn a_rotated_token_in_the_token_file_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("registration-token");
    std::fs::write(&file, "prod.old\n").unwrap();
    let mut options = SidecarOptions::new(
        "https://127.0.0.1:1",
        "prod",
        SecretString::from("prod.old"),
        dir.path().join("data"),
    );
    options.token_file = Some(file.clone());
    let sidecar = Sidecar::open(options).unwrap();
    let current = || sidecar.shared.token.load().expose_secret().to_owned();
    sidecar.shared.reload_token().await;
    assert_eq!(current(), "prod.old");
    std::fs::write(&file, "prod.new\n").unwrap();
    sidecar.shared.reload_token().await;
    assert_eq!(current(), "prod.new");
    std::fs::write(&file, "\n").unwrap();
    sidecar.shared.reload_token().await;
    assert_eq!(current(), "prod.new");
    std::fs::remove_file(&file).unwrap();
    sidecar.shared.reload_token().await;
    assert_eq!(current(), "prod.new");
}

/// A verified token's identity is served from the cache while the
/// replica's content is unchanged, also when the center's revision moves
/// on with nothing for this cluster; a revocation voids it at once.
#[test]
fn verified_tokens_are_cached_until_the_replica_changes() {
    let center = Center::new();
    let prod = center.issue(Some("prod"));
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    center.sync(&sidecar);
    let identity = || match sidecar.shared.check(prod.token.expose_secret()) {
        Checked::Authenticated(identity) => Some(identity),
        Checked::Refused(_) | Checked::Unavailable(_) => None,
    };
    let first = identity().unwrap();
    assert!(Arc::ptr_eq(&first, &identity().unwrap()), "a cache hit");
    // Another cluster's token: the feed says only that the store moved on.
    center.issue(Some("staging"));
    let revision = center.view.snapshot().revision().0;
    let moved_on = Replica::clone(&sidecar.replica()).at_revision(revision);
    assert_eq!(moved_on.revision().0, revision);
    sidecar.shared.replica.store(Arc::new(moved_on));
    assert!(Arc::ptr_eq(&first, &identity().unwrap()), "still a hit");

    revoke(&center.view, None, &prod.record.id).unwrap();
    center.sync(&sidecar);
    assert!(identity().is_none(), "revoked");
}

/// A center cut off from etcd answers 503; behind a load balancer that
/// picks a replica per connection, only a new connection may reach a
/// healthy one. So while polls fail, each asks to close its connection.
#[test]
fn polls_after_a_failure_ask_for_a_new_connection() {
    let dir = tempfile::tempdir().unwrap();
    let sidecar = sidecar(dir.path(), None);
    let since = sidecar.replica().revision();
    let steady = super::sync::feed_request(&sidecar.shared, since, false).unwrap();
    assert!(!steady.headers().contains_key(http::header::CONNECTION));
    let retry = super::sync::feed_request(&sidecar.shared, since, true).unwrap();
    assert_eq!(retry.headers()[http::header::CONNECTION], "close");
}

/// A large reset over a slow link takes longer than any whole-answer
/// limit: the body is read for as long as it keeps coming, and only a
/// stall ends it (the poll then fails and is retried after a backoff).
#[tokio::test(start_paused = true)]
async fn a_feed_answer_is_read_while_it_keeps_coming() {
    use http_body_util::StreamBody;
    let stall = Duration::from_secs(30);
    let trickled = |pause: Duration, pieces: usize| {
        let (send, receive) =
            tokio::sync::mpsc::channel::<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>(1);
        tokio::spawn(async move {
            for _ in 0..pieces {
                tokio::time::sleep(pause).await;
                let piece = http_body::Frame::data(bytes::Bytes::from_static(b"0123456789"));
                if send.send(Ok(piece)).await.is_err() {
                    return;
                }
            }
        });
        StreamBody::new(futures_util::stream::unfold(receive, |mut r| async move {
            r.recv().await.map(|item| (item, r))
        }))
    };
    // Ten pieces 20 s apart: 200 s in all, never 30 s without progress.
    let slow = super::sync::read_body(trickled(Duration::from_secs(20), 10), stall).await;
    assert_eq!(slow.unwrap().len(), 100);
    // Nothing for longer than the stall limit.
    let stalled = super::sync::read_body(trickled(Duration::from_secs(31), 2), stall).await;
    assert!(stalled.unwrap_err().contains("stalled"));
}
