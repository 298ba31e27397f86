use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use secrecy::ExposeSecret;

use super::*;
use crate::authn::tokens::*;
use crate::store::{tests::Flaky, EmbeddedOptions, EmbeddedStore, User};

const T0: Timestamp = Timestamp(1_800_000_000);

struct Fixture {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    flaky: Arc<Flaky>,
    view: Arc<StoreView>,
    hasher: Arc<TokenHasher>,
    activity: Arc<LastUsed>,
    verifier: TokenVerifier,
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        username: id.into(),
        display_name: String::new(),
        enabled: true,
        must_change_password: false,
        principal_ids: vec![],
        created_at: T0,
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let flaky = Arc::new(Flaky::open(&path));
    let view = StoreView::new(flaky.clone()).unwrap();
    view.commit(vec![
        Op::put(Object::User(user("u-alice")), Expect::Absent),
        Op::put(Object::User(user("u-bob")), Expect::Absent),
    ])
    .unwrap();
    let hasher = Arc::new(TokenHasher::new(&Pepper::from_bytes([7; 32])));
    let activity = Arc::new(LastUsed::new(Duration::from_secs(60)));
    let verifier = TokenVerifier::new(hasher.clone(), view.clone()).with_activity(activity.clone());
    Fixture {
        _dir: dir,
        path,
        flaky,
        view,
        hasher,
        activity,
        verifier,
    }
}

impl Fixture {
    fn issue(&self, req: NewToken) -> IssuedToken {
        issue(&self.view, &self.hasher, &TokenPolicy::default(), req, T0).unwrap()
    }
}

fn text(t: &IssuedToken) -> &str {
    t.token.expose_secret()
}

#[test]
fn hash_format_is_versioned_salted_and_verifies() {
    let h = TokenHasher::new(&Pepper::from_bytes([1; 32]));
    let a = h.hash("s3cret");
    let b = h.hash("s3cret");
    assert!(a.starts_with("v1$"), "{a}");
    assert_eq!(a.split('$').count(), 3);
    assert_ne!(a, b, "salted");
    assert!(h.verify(&a, "s3cret"));
    assert!(!h.verify(&a, "s3cret!"));
    assert!(!h.verify(&a, ""));
    // Another pepper: a stolen store alone cannot check guesses.
    let other = TokenHasher::new(&Pepper::from_bytes([2; 32]));
    assert!(!other.verify(&a, "s3cret"));
    // Unknown versions and garbage never match.
    assert!(!h.verify(&a.replacen("v1", "v9", 1), "s3cret"));
    for bad in ["", "v1", "v1$zz$zz", "v1$$", "plain-secret"] {
        assert!(!h.verify(bad, "s3cret"), "{bad}");
    }
}

#[test]
fn secrets_are_256_bits_and_ids_are_distinct() {
    let s = new_secret();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(&s)
        .unwrap();
    assert_eq!(raw.len(), SECRET_BYTES);
    assert_eq!(SECRET_BYTES * 8, 256);
    assert_ne!(s, new_secret());
    let ids: std::collections::HashSet<_> = (0..1000).map(|_| new_token_id()).collect();
    assert_eq!(ids.len(), 1000);
}

#[test]
fn presented_token_parsing() {
    assert_eq!(split_presented("t-abc:xyz"), Ok(("t-abc", "xyz")));
    for bad in [
        "",
        ":",
        "t-abc",
        "t-abc:",
        ":xyz",
        "t abc:xyz",
        "a:b:c",
        "t/x:y",
    ] {
        assert_eq!(split_presented(bad), Err(TokenError::Malformed), "{bad:?}");
    }
    let long = format!("t-a:{}", "x".repeat(257));
    assert_eq!(split_presented(&long), Err(TokenError::Malformed));
}

#[test]
fn issued_token_verifies_and_only_its_hash_is_stored() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api).description("ci"));
    let v = f
        .verifier
        .verify(text(&t), T0.plus(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(v.user_id(), "u-alice");
    assert_eq!(v.kind(), TokenKind::Api);
    let (_, secret) = split_presented(text(&t)).unwrap();
    let bytes = std::fs::read(&f.path).unwrap();
    assert!(
        !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
        "the secret reached the store file"
    );
    assert!(!format!("{t:?}").contains(secret), "Debug leaks the secret");
}

#[test]
fn wrong_secret_unknown_id_and_malformed_are_rejected() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let (id, _) = split_presented(text(&t)).unwrap();
    assert_eq!(
        f.verifier.verify(&format!("{id}:wrong"), T0).unwrap_err(),
        TokenError::Mismatch
    );
    assert_eq!(
        f.verifier.verify("t-nosuchtoken:abc", T0).unwrap_err(),
        TokenError::Unknown
    );
    assert_eq!(
        f.verifier.verify("garbage", T0).unwrap_err(),
        TokenError::Malformed
    );
}

#[test]
fn policy_defaults_and_clamping() {
    let p = TokenPolicy::default();
    let day = Duration::from_secs(86_400);
    assert_eq!(
        p.ttl_for(TokenKind::Session, Some(day * 365)),
        Duration::from_secs(16 * 3600)
    );
    assert_eq!(
        p.idle_for(TokenKind::Session),
        Some(Duration::from_secs(16 * 3600))
    );
    assert_eq!(p.ttl_for(TokenKind::Api, None), day * 90);
    assert_eq!(p.ttl_for(TokenKind::Api, Some(day * 1000)), day * 90);
    assert_eq!(p.ttl_for(TokenKind::Api, Some(day)), day);
    assert_eq!(p.ttl_for(TokenKind::Kubeconfig, None), day * 30);
    assert_eq!(p.ttl_for(TokenKind::Kubeconfig, Some(day * 1000)), day * 90);
    assert_eq!(p.idle_for(TokenKind::Api), None);
    let uncapped = TokenPolicy {
        api_max_ttl: None,
        ..TokenPolicy::default()
    };
    assert_eq!(
        uncapped.ttl_for(TokenKind::Api, Some(day * 1000)),
        day * 1000
    );
}

#[test]
fn expiry_is_enforced() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api).ttl(Duration::from_secs(100)));
    assert!(f
        .verifier
        .verify(text(&t), T0.plus(Duration::from_secs(99)))
        .is_ok());
    assert_eq!(
        f.verifier
            .verify(text(&t), T0.plus(Duration::from_secs(100)))
            .unwrap_err(),
        TokenError::Expired {
            at: T0.plus(Duration::from_secs(100))
        }
    );
}

#[test]
fn idle_timeout_is_enforced_and_extended_by_use() {
    let f = fixture();
    let policy = TokenPolicy {
        session_idle: Some(Duration::from_secs(3600)),
        ..TokenPolicy::default()
    };
    let t = issue(
        &f.view,
        &f.hasher,
        &policy,
        NewToken::new("u-alice", TokenKind::Session),
        T0,
    )
    .unwrap();
    let at = |mins: u64| T0.plus(Duration::from_secs(mins * 60));
    assert!(f.verifier.verify(text(&t), at(30)).is_ok());
    assert!(
        f.verifier.verify(text(&t), at(80)).is_ok(),
        "used 50 min ago"
    );
    assert_eq!(
        f.verifier.verify(text(&t), at(141)).unwrap_err(),
        TokenError::IdleExpired
    );
    // A fresh verifier (another replica) relies on the flushed time.
    f.activity.flush(&f.view, at(80)).unwrap();
    let other = TokenVerifier::new(f.hasher.clone(), f.view.clone());
    assert!(other.verify(text(&t), at(130)).is_ok());
    assert_eq!(
        other.verify(text(&t), at(140)).unwrap_err(),
        TokenError::IdleExpired
    );
}

#[test]
fn revocation_takes_effect_on_the_next_request_even_when_cached() {
    let f = fixture();
    let cache: TokenCache<String> = TokenCache::new(Duration::from_secs(10), 1000);
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let (v, name) = cache
        .verify(&f.verifier, text(&t), T0, |v| v.user_id().to_uppercase())
        .unwrap();
    assert_eq!(name, "U-ALICE");
    // Hit: `build` is not called again.
    let (_, name) = cache
        .verify(&f.verifier, text(&t), T0, |_| {
            unreachable!("cache hit expected")
        })
        .unwrap();
    assert_eq!(name, "U-ALICE");
    assert!(revoke(&f.view, Some(&f.activity), v.token_id()).unwrap());
    assert_eq!(
        cache
            .verify(&f.verifier, text(&t), T0, |_| String::new())
            .unwrap_err(),
        TokenError::Unknown
    );
    assert_eq!(
        f.verifier.verify(text(&t), T0).unwrap_err(),
        TokenError::Unknown
    );
    assert!(!revoke(&f.view, None, v.token_id()).unwrap());
}

#[test]
fn cached_token_with_another_secret_is_rejected_and_keeps_the_entry() {
    let f = fixture();
    let cache: TokenCache<String> = TokenCache::new(Duration::from_secs(10), 1000);
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    cache
        .verify(&f.verifier, text(&t), T0, |v| v.user_id().to_owned())
        .unwrap();
    // Same id, the last secret character changed: the cached digest does
    // not match, the full verification refuses it.
    let good = text(&t);
    let last = if good.ends_with('A') { "B" } else { "A" };
    let wrong = format!("{}{last}", &good[..good.len() - 1]);
    for _ in 0..2 {
        assert_eq!(
            cache
                .verify(&f.verifier, &wrong, T0, |_| unreachable!("not valid"))
                .unwrap_err(),
            TokenError::Mismatch
        );
    }
    // Knowing the id did not evict the real token's entry.
    let (_, user) = cache
        .verify(&f.verifier, good, T0, |_| {
            unreachable!("cache hit expected")
        })
        .unwrap();
    assert_eq!(user, "u-alice");
    assert_eq!(
        cache
            .verify(&f.verifier, "no-colon", T0, |_| String::new())
            .unwrap_err(),
        TokenError::Malformed
    );
}

#[test]
fn cache_entries_expire_after_the_ttl_and_capacity_is_bounded() {
    let f = fixture();
    let cache: TokenCache<u32> = TokenCache::new(Duration::from_secs(10), 3);
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    cache.verify(&f.verifier, text(&t), T0, |_| 1).unwrap();
    let at = |secs: u64| T0.plus(Duration::from_secs(secs));
    let (_, v) = cache.verify(&f.verifier, text(&t), at(9), |_| 2).unwrap();
    assert_eq!(v, 1, "within the TTL: the cached value");
    let (_, v) = cache.verify(&f.verifier, text(&t), at(10), |_| 3).unwrap();
    assert_eq!(v, 3, "after the TTL: rebuilt");
    // A clock set back does not make an entry live longer.
    let (_, v) = cache.verify(&f.verifier, text(&t), T0, |_| 4).unwrap();
    assert_eq!(v, 4);
    let more: Vec<_> = (0..20)
        .map(|_| f.issue(NewToken::new("u-bob", TokenKind::Api)))
        .collect();
    for t in &more {
        cache.verify(&f.verifier, text(t), T0, |_| 0).unwrap();
    }
    // Capacity is kept per shard: 3 rounds up to one entry in each of 16.
    let n = cache.len();
    assert!((1..=16).contains(&n), "{n} entries");
}

#[test]
fn idle_timeout_is_enforced_on_cache_hits() {
    let f = fixture();
    let policy = TokenPolicy {
        session_idle: Some(Duration::from_secs(60)),
        ..TokenPolicy::default()
    };
    let t = issue(
        &f.view,
        &f.hasher,
        &policy,
        NewToken::new("u-alice", TokenKind::Session),
        T0,
    )
    .unwrap();
    let cache: TokenCache = TokenCache::new(Duration::from_secs(600), 1000);
    let at = |secs: u64| T0.plus(Duration::from_secs(secs));
    for secs in [0, 50, 100, 150] {
        assert!(
            cache
                .verify(&f.verifier, text(&t), at(secs), |_| ())
                .is_ok(),
            "used {secs} s after issue"
        );
    }
    assert_eq!(f.activity.last_seen(&t.record.id), Some(at(150)));
    // A use through the verifier alone (another path) extends it too.
    assert!(f.verifier.verify(text(&t), at(200)).is_ok());
    assert!(cache.verify(&f.verifier, text(&t), at(259), |_| ()).is_ok());
    assert_eq!(
        cache
            .verify(&f.verifier, text(&t), at(319), |_| ())
            .unwrap_err(),
        TokenError::IdleExpired
    );
}

#[test]
fn disabling_a_user_stops_all_their_tokens_on_the_next_request() {
    let f = fixture();
    let cache: TokenCache = TokenCache::new(Duration::from_secs(10), 1000);
    let a = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let k = f.issue(NewToken::new("u-alice", TokenKind::Kubeconfig).cluster("c-1"));
    let b = f.issue(NewToken::new("u-bob", TokenKind::Api));
    for t in [&a, &k, &b] {
        cache.verify(&f.verifier, text(t), T0, |_| ()).unwrap();
    }
    let mut alice = f.view.snapshot().user("u-alice").unwrap().value.clone();
    let rev = f.view.snapshot().user("u-alice").unwrap().revision;
    alice.enabled = false;
    f.view
        .commit(vec![Op::put(Object::User(alice), Expect::Revision(rev))])
        .unwrap();
    for t in [&a, &k] {
        assert_eq!(
            cache.verify(&f.verifier, text(t), T0, |_| ()).unwrap_err(),
            TokenError::UserDisabled
        );
    }
    assert!(cache.verify(&f.verifier, text(&b), T0, |_| ()).is_ok());
    // And no new token for a disabled user.
    assert!(matches!(
        issue(
            &f.view,
            &f.hasher,
            &TokenPolicy::default(),
            NewToken::new("u-alice", TokenKind::Api),
            T0
        ),
        Err(IssueError::UserDisabled(_))
    ));
}

#[test]
fn disabled_token_is_rejected() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let e = f.view.snapshot().token(&t.record.id).unwrap().clone();
    let mut rec = e.value.clone();
    rec.enabled = false;
    f.view
        .commit(vec![Op::put(
            Object::Token(rec),
            Expect::Revision(e.revision),
        )])
        .unwrap();
    assert_eq!(
        f.verifier.verify(text(&t), T0).unwrap_err(),
        TokenError::Disabled
    );
}

#[test]
fn revocation_by_another_process_is_seen_after_refresh() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let cli = StoreView::new(Arc::new(
        EmbeddedStore::open(&f.path, EmbeddedOptions::default()).unwrap(),
    ))
    .unwrap();
    assert_eq!(revoke_user_tokens(&cli, "u-alice").unwrap(), 1);
    assert!(f.verifier.verify(text(&t), T0).is_ok(), "not polled yet");
    f.view.refresh().unwrap();
    assert_eq!(
        f.verifier.verify(text(&t), T0).unwrap_err(),
        TokenError::Unknown
    );
}

#[test]
fn cluster_scope() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Kubeconfig).cluster("c-1"));
    let v = f.verifier.verify(text(&t), T0).unwrap();
    assert_eq!(v.cluster(), Some("c-1"));
    assert!(v.permits_cluster(Some("c-1")));
    assert!(!v.permits_cluster(Some("c-2")));
    assert!(!v.permits_cluster(None));
    let g = f.issue(NewToken::new("u-alice", TokenKind::Api));
    assert!(f
        .verifier
        .verify(text(&g), T0)
        .unwrap()
        .permits_cluster(Some("c-2")));
}

#[test]
fn last_used_is_coalesced_to_one_write_per_interval() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let rev0 = f.view.snapshot().revision();
    for s in 0..1000 {
        f.verifier
            .verify(text(&t), T0.plus(Duration::from_millis(s * 10)))
            .unwrap();
    }
    assert_eq!(f.view.snapshot().revision(), rev0, "no write per request");
    assert_eq!(
        f.activity
            .flush(&f.view, T0.plus(Duration::from_secs(10)))
            .unwrap(),
        1
    );
    let stored = f
        .view
        .snapshot()
        .token_usage(&t.record.id)
        .unwrap()
        .value
        .last_used_at;
    assert_eq!(stored, T0.plus(Duration::from_secs(9)));
    // Used again, but flushed less than a minute ago: nothing written.
    f.verifier
        .verify(text(&t), T0.plus(Duration::from_secs(30)))
        .unwrap();
    assert_eq!(
        f.activity
            .flush(&f.view, T0.plus(Duration::from_secs(40)))
            .unwrap(),
        0
    );
    assert_eq!(
        f.activity
            .flush(&f.view, T0.plus(Duration::from_secs(70)))
            .unwrap(),
        1
    );
    // Nothing new: nothing written.
    assert_eq!(
        f.activity
            .flush(&f.view, T0.plus(Duration::from_secs(200)))
            .unwrap(),
        0
    );
}

#[test]
fn a_failed_flush_never_fails_a_request_and_is_retried() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    f.verifier
        .verify(text(&t), T0.plus(Duration::from_secs(1)))
        .unwrap();
    f.flaky.fail_commits(true);
    assert!(f
        .activity
        .flush(&f.view, T0.plus(Duration::from_secs(2)))
        .is_err());
    assert!(f
        .verifier
        .verify(text(&t), T0.plus(Duration::from_secs(3)))
        .is_ok());
    f.flaky.fail_commits(false);
    assert_eq!(
        f.activity
            .flush(&f.view, T0.plus(Duration::from_secs(4)))
            .unwrap(),
        1
    );
    let stored = f
        .view
        .snapshot()
        .token_usage(&t.record.id)
        .unwrap()
        .value
        .last_used_at;
    assert_eq!(stored, T0.plus(Duration::from_secs(3)));
}

#[test]
fn flush_never_moves_a_newer_stored_time_backwards() {
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    // Another replica flushed a later use.
    f.view
        .commit(vec![Op::put(
            Object::TokenUsage(crate::store::TokenUsage {
                token_id: t.record.id.clone(),
                last_used_at: T0.plus(Duration::from_secs(500)),
            }),
            Expect::Absent,
        )])
        .unwrap();
    f.verifier
        .verify(text(&t), T0.plus(Duration::from_secs(100)))
        .unwrap();
    assert_eq!(
        f.activity
            .flush(&f.view, T0.plus(Duration::from_secs(101)))
            .unwrap(),
        0
    );
    let stored = f
        .view
        .snapshot()
        .token_usage(&t.record.id)
        .unwrap()
        .value
        .last_used_at;
    assert_eq!(stored, T0.plus(Duration::from_secs(500)));
}

#[test]
fn purge_and_list() {
    let f = fixture();
    let short = f.issue(NewToken::new("u-alice", TokenKind::Api).ttl(Duration::from_secs(10)));
    let long = f.issue(NewToken::new("u-bob", TokenKind::Api));
    assert_eq!(list(&f.view, None).len(), 2);
    assert_eq!(list(&f.view, Some("u-bob")).len(), 1);
    assert_eq!(
        purge_expired(&f.view, T0.plus(Duration::from_secs(11))).unwrap(),
        1
    );
    assert!(f.view.snapshot().token(&short.record.id).is_none());
    assert!(f.view.snapshot().token(&long.record.id).is_some());
}

#[test]
fn pepper_file_is_created_0600_and_reloaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pepper");
    let a = TokenHasher::new(&Pepper::load_or_create(&path).unwrap());
    let h = a.hash("x");
    let b = TokenHasher::new(&Pepper::load_or_create(&path).unwrap());
    assert!(b.verify(&h, "x"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    assert!(!format!("{:?}", Pepper::load_or_create(&path).unwrap())
        .contains(&std::fs::read_to_string(&path).unwrap()));
}

/// A token's identity is cached with `system:authenticated` in it, so the
/// chain hands every request the same shared identity, not a copy made to
/// add the group.
#[tokio::test]
async fn the_chain_shares_a_cached_token_identity() {
    use crate::authn::{AuthenticatorChain, Credential, SYSTEM_AUTHENTICATED};
    let f = fixture();
    let t = f.issue(NewToken::new("u-alice", TokenKind::Api));
    let tokens = StoreTokens::new(f.view.clone(), f.hasher.clone(), f.activity.clone());
    let chain = AuthenticatorChain::new().with(tokens);
    let bearer = [Credential::Bearer(t.token.clone())];
    let first = chain.authenticate(&bearer).await.unwrap();
    let second = chain.authenticate(&bearer).await.unwrap();
    assert_eq!(first.user, "u-alice");
    assert_eq!(
        first
            .groups
            .iter()
            .filter(|g| *g == SYSTEM_AUTHENTICATED)
            .count(),
        1
    );
    assert!(Arc::ptr_eq(&first, &second));
}
