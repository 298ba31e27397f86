use std::sync::Arc;

use super::*;
use crate::accounts::tokens::{issue, revoke, NewToken, TokenPolicy};
use crate::authn::tokens::{Pepper, TokenHasher};
use crate::store::{
    EmbeddedOptions, EmbeddedStore, Expect, Object, Op, StoreView, TokenKind, User,
};

const T0: Timestamp = Timestamp(1_800_000_000);

struct Fixture {
    _dir: tempfile::TempDir,
    view: Arc<StoreView>,
    hasher: TokenHasher,
}

fn fixture(retain: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_in_dir(
        dir.path(),
        EmbeddedOptions::default().change_log_retain(retain),
    )
    .unwrap();
    let view = StoreView::new(Arc::new(store)).unwrap();
    for id in ["u-a", "u-b"] {
        let user = User {
            id: id.into(),
            username: format!("name-{id}"),
            display_name: String::new(),
            enabled: true,
            must_change_password: false,
            principal_ids: vec![format!("local://{id}")],
            created_at: T0,
        };
        view.commit(vec![Op::put(Object::User(user), Expect::Absent)])
            .unwrap();
    }
    Fixture {
        _dir: dir,
        view,
        hasher: TokenHasher::new(&Pepper::from_bytes([7; 32])),
    }
}

impl Fixture {
    fn issue(&self, user: &str, cluster: Option<&str>) -> crate::accounts::tokens::IssuedToken {
        let mut req = NewToken::new(user, TokenKind::Kubeconfig);
        if let Some(c) = cluster {
            req = req.cluster(c);
        }
        issue(&self.view, &self.hasher, &TokenPolicy::default(), req, T0).unwrap()
    }

    fn feed(&self, since: Revision) -> ReplicaFeed {
        build(&self.view, &self.hasher, "prod", since).unwrap()
    }
}

#[test]
fn a_reset_carries_only_the_clusters_scoped_tokens_and_their_users() {
    let f = fixture(1000);
    let prod = f.issue("u-a", Some("prod"));
    f.issue("u-b", Some("staging"));
    f.issue("u-b", None);
    let feed = f.feed(Revision(0));
    assert!(feed.reset);
    assert_eq!(feed.revision, f.view.snapshot().revision());
    let ids: Vec<&str> = feed.tokens.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [prod.record.id.as_str()]);
    let users: Vec<&str> = feed.users.iter().map(|u| u.id.as_str()).collect();
    assert_eq!(users, ["u-a"]);
    // The verifier checks the secret with the cluster key, and the key is
    // not the pepper's hash of anything the center verifies with.
    let key = Pepper::from_hex(feed.verifier_key.as_deref().unwrap()).unwrap();
    let sidecar = TokenHasher::new(&key);
    let presented = secrecy::ExposeSecret::expose_secret(&prod.token).to_owned();
    let secret = presented.split_once(':').unwrap().1;
    assert!(sidecar.verify(&feed.tokens[0].verifier, secret));
    assert!(!sidecar.verify(&prod.record.hash, secret));
    assert!(!f.hasher.verify(&feed.tokens[0].verifier, secret));
    // Another cluster's key does not verify it.
    let other = TokenHasher::new(&f.hasher.cluster_key("staging"));
    assert!(!other.verify(&feed.tokens[0].verifier, secret));
}

#[test]
fn deltas_carry_new_tokens_revocations_and_user_changes() {
    let f = fixture(1000);
    let first = f.issue("u-a", Some("prod"));
    let start = f.feed(Revision(0)).revision;
    assert!(f.feed(start).is_empty());

    let second = f.issue("u-b", Some("prod"));
    let delta = f.feed(start);
    assert!(!delta.reset);
    assert_eq!(delta.tokens.len(), 1);
    assert_eq!(delta.tokens[0].id, second.record.id);
    assert_eq!(delta.users.len(), 1);
    assert_eq!(delta.users[0].id, "u-b");
    assert!(delta.verifier_key.is_none());

    let at = delta.revision;
    revoke(&f.view, None, &first.record.id).unwrap();
    let mut user = f.view.snapshot().user("u-b").unwrap().value.clone();
    user.enabled = false;
    f.view
        .commit(vec![Op::put(Object::User(user), Expect::Any)])
        .unwrap();
    let delta = f.feed(at);
    assert_eq!(delta.deleted_tokens, std::slice::from_ref(&first.record.id));
    assert_eq!(delta.users.len(), 1);
    assert!(!delta.users[0].enabled);
}

#[test]
fn a_compacted_history_or_an_unknown_revision_gets_a_reset() {
    let f = fixture(2);
    f.issue("u-a", Some("prod"));
    let start = f.feed(Revision(0)).revision;
    for _ in 0..5 {
        f.issue("u-b", Some("prod"));
    }
    let feed = f.feed(start);
    assert!(feed.reset, "compacted history must reset");
    assert_eq!(feed.tokens.len(), 6);
    let ahead = f.feed(Revision(feed.revision.0 + 100));
    assert!(ahead.reset);
}

#[test]
fn debug_output_holds_no_verifier_or_key() {
    let f = fixture(1000);
    f.issue("u-a", Some("prod"));
    let feed = f.feed(Revision(0));
    let shown = format!("{feed:?} {:?}", feed.tokens[0]);
    assert!(!shown.contains(feed.verifier_key.as_deref().unwrap()));
    assert!(!shown.contains(&feed.tokens[0].verifier));
}

#[test]
fn a_user_who_must_change_their_password_is_replicated_disabled() {
    let f = fixture(1000);
    f.issue("u-a", Some("prod"));
    let mut user = f.view.snapshot().user("u-a").unwrap().value.clone();
    user.must_change_password = true;
    f.view
        .commit(vec![Op::put(Object::User(user), Expect::Any)])
        .unwrap();
    let feed = f.feed(Revision(0));
    assert!(!feed.users[0].enabled);
}
