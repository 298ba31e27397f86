//! Building one answer of a cluster's feed from the center's store.

use std::collections::{BTreeSet, HashSet};

use super::{ReplicaFeed, ReplicaToken, ReplicaUser};
use crate::authn::tokens::TokenHasher;
use crate::store::{Changes, Kind, Revision, Snapshot, StoreError, StoreView};

/// What changed for `cluster` after `since`, or everything (a reset) when
/// `since` is 0, compacted away, or ahead of the store. Blocking (reads the
/// change feed).
///
/// The change feed only says *which* keys changed; their values come from
/// the view's snapshot, and the answer's revision is the snapshot's. A key
/// changed after the snapshot is therefore sent again, with its newer value,
/// in the next answer: the reader never holds a revision it has not seen
/// all of.
pub fn build(
    view: &StoreView,
    hasher: &TokenHasher,
    cluster: &str,
    since: Revision,
) -> Result<ReplicaFeed, StoreError> {
    let snap = view.snapshot();
    if since == Revision(0) || since > snap.revision() {
        return Ok(reset(&snap, hasher, cluster));
    }
    if since == snap.revision() {
        return Ok(ReplicaFeed::empty(cluster, since));
    }
    let events = match view.store().changes_since(since)? {
        Changes::Events { events, .. } => events,
        Changes::Compacted => return Ok(reset(&snap, hasher, cluster)),
    };
    let mut feed = ReplicaFeed::empty(cluster, snap.revision());
    let mut touched_users = BTreeSet::new();
    for event in events {
        let id = event.key.id;
        match event.key.kind {
            Kind::Token => match snap.token(&id) {
                Some(entry) => match ReplicaToken::from_record(&entry.value, cluster) {
                    Some(token) => {
                        touched_users.insert(token.user_id.clone());
                        feed.tokens.push(token);
                    }
                    // No longer one this cluster can verify (its scope
                    // never changes, so it was this cluster's or never sent).
                    None if entry.value.cluster.as_deref() == Some(cluster) => {
                        feed.deleted_tokens.push(id);
                    }
                    None => {}
                },
                None => feed.deleted_tokens.push(id),
            },
            Kind::User | Kind::UserAttributes => {
                touched_users.insert(id);
            }
            _ => {}
        }
    }
    if !touched_users.is_empty() {
        let holders = token_holders(&snap, cluster);
        for id in touched_users {
            match snap.user(&id) {
                Some(user) if holders.contains(id.as_str()) => {
                    let attributes = snap.user_attributes(&id).map(|a| &a.value);
                    feed.users.push(ReplicaUser::new(&user.value, attributes));
                }
                Some(_) => {}
                None => feed.deleted_users.push(id),
            }
        }
    }
    Ok(feed)
}

/// Everything the cluster needs, at the snapshot's revision.
fn reset(snap: &Snapshot, hasher: &TokenHasher, cluster: &str) -> ReplicaFeed {
    let mut feed = ReplicaFeed::empty(cluster, snap.revision());
    feed.reset = true;
    feed.verifier_key = Some(hasher.cluster_key(cluster).expose_hex());
    feed.tokens = snap
        .tokens()
        .filter_map(|t| ReplicaToken::from_record(&t.value, cluster))
        .collect();
    let holders: BTreeSet<&str> = feed.tokens.iter().map(|t| t.user_id.as_str()).collect();
    feed.users = holders
        .into_iter()
        .filter_map(|id| {
            let user = snap.user(id)?;
            let attributes = snap.user_attributes(id).map(|a| &a.value);
            Some(ReplicaUser::new(&user.value, attributes))
        })
        .collect();
    feed
}

/// Users holding at least one token the cluster can verify.
fn token_holders<'a>(snap: &'a Snapshot, cluster: &str) -> HashSet<&'a str> {
    snap.tokens()
        .filter(|t| t.value.cluster.as_deref() == Some(cluster))
        .map(|t| t.value.user_id.as_str())
        .collect()
}
