//! The sidecar's local replica: one cluster's tokens (verifiers only),
//! their users and the cluster's part of the policy, at one revision of the
//! center's store, swapped atomically as the feed brings changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::authn::tokens::{Pepper, TokenHasher, TokenSource, TokenState};
use crate::replica::{policy_hash, ClusterPolicy, ReplicaFeed, ReplicaToken, ReplicaUser};
use crate::store::{Entry, Revision, Timestamp, TokenKind, TokenRecord};

/// Why a feed answer or a replica file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The answer is for another cluster.
    #[error("the feed is for cluster {found}, this sidecar serves {expected}")]
    WrongCluster {
        /// The sidecar's cluster.
        expected: String,
        /// The feed's.
        found: String,
    },
    /// A reset without the verifier key, or a key that is not 64 hex characters.
    #[error("the feed's verifier key is missing or malformed")]
    BadKey,
    /// A delta arrived before any reset.
    #[error("a delta arrived before a full state")]
    DeltaWithoutBase,
    /// The cluster's policy is missing, does not match its hash, or does
    /// not compile.
    #[error("the feed's policy cannot be used: {0}")]
    BadPolicy(String),
}

/// The cluster's part of the center's policy, compiled once per change.
#[derive(Clone)]
pub(crate) struct HeldPolicy {
    pub(crate) hash: String,
    pub(crate) policy: Arc<ClusterPolicy>,
    pub(crate) set: Arc<::policy::PolicySet>,
}

impl HeldPolicy {
    fn new(policy: ClusterPolicy, cluster: &str) -> Result<Self, ReplicaError> {
        if policy.cluster() != cluster {
            return Err(ReplicaError::BadPolicy(format!(
                "it is cluster {}'s",
                policy.cluster()
            )));
        }
        let set = ::policy::PolicySet::from_cluster_policy(&policy)
            .map_err(|e| ReplicaError::BadPolicy(e.to_string()))?;
        Ok(Self {
            hash: policy_hash(&policy),
            policy: Arc::new(policy),
            set: Arc::new(set),
        })
    }
}

/// One cluster's replica at one revision. Immutable; [`Replica::apply`]
/// makes the next.
#[derive(Clone)]
pub struct Replica {
    cluster: String,
    revision: Revision,
    /// Which content this is, unique in the process ([`next_content`]):
    /// what the sidecar's token cache checks a hit against, so every change
    /// the feed brings (a revocation, a disabled user, new groups, a new
    /// key) voids every entry at once, and a store revision that moved on
    /// with nothing for this cluster voids none.
    content: u64,
    key_hex: Option<String>,
    hasher: Option<Arc<TokenHasher>>,
    tokens: Arc<HashMap<String, Arc<ReplicaToken>>>,
    users: Arc<HashMap<String, Arc<ReplicaUser>>>,
    policy: Option<HeldPolicy>,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("cluster", &self.cluster)
            .field("revision", &self.revision)
            .field("tokens", &self.tokens.len())
            .field("users", &self.users.len())
            .field("policy", &self.policy.as_ref().map(|p| &p.hash))
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// An empty replica for `cluster` (revision 0: the first feed answer
    /// will be a reset).
    pub fn empty(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            revision: Revision(0),
            content: next_content(),
            key_hex: None,
            hasher: None,
            tokens: Arc::default(),
            users: Arc::default(),
            policy: None,
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The center's revision it is current at.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// Number of tokens held.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// The hasher for this cluster's verifiers; `None` before the first reset.
    pub fn hasher(&self) -> Option<&Arc<TokenHasher>> {
        self.hasher.as_ref()
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<&Arc<ReplicaUser>> {
        self.users.get(id)
    }

    /// The cluster's policy, compiled; `None` when the center sent none.
    pub fn policy(&self) -> Option<&Arc<::policy::PolicySet>> {
        self.policy.as_ref().map(|p| &p.set)
    }

    /// The hash of the policy held (`""`: none), as the feed asks for it.
    pub fn policy_hash(&self) -> &str {
        self.policy.as_ref().map_or("", |p| p.hash.as_str())
    }

    /// `policy` as the feed sent it: `hash` `None` keeps the current one.
    fn next_policy(
        &self,
        hash: Option<String>,
        policy: Option<ClusterPolicy>,
    ) -> Result<Option<HeldPolicy>, ReplicaError> {
        match (hash, policy) {
            (None, _) => Ok(self.policy.clone()),
            (Some(h), _) if h.is_empty() => Ok(None),
            (Some(h), Some(policy)) => {
                let held = HeldPolicy::new(policy, &self.cluster)?;
                if held.hash != h {
                    return Err(ReplicaError::BadPolicy(
                        "it does not match its hash".to_owned(),
                    ));
                }
                Ok(Some(held))
            }
            (Some(_), None) => Err(ReplicaError::BadPolicy(
                "a hash came without the policy".to_owned(),
            )),
        }
    }

    /// The replica with `feed` applied.
    pub fn apply(&self, feed: ReplicaFeed) -> Result<Replica, ReplicaError> {
        if feed.cluster != self.cluster {
            return Err(ReplicaError::WrongCluster {
                expected: self.cluster.clone(),
                found: feed.cluster,
            });
        }
        let policy = self.next_policy(feed.policy_hash, feed.policy)?;
        if feed.reset {
            let key_hex = feed.verifier_key.ok_or(ReplicaError::BadKey)?;
            let key = Pepper::from_hex(&key_hex).ok_or(ReplicaError::BadKey)?;
            return Ok(Replica {
                policy,
                cluster: self.cluster.clone(),
                revision: feed.revision,
                content: next_content(),
                key_hex: Some(key_hex),
                hasher: Some(Arc::new(TokenHasher::new(&key))),
                tokens: Arc::new(
                    feed.tokens
                        .into_iter()
                        .map(|t| (t.id.clone(), Arc::new(t)))
                        .collect(),
                ),
                users: Arc::new(
                    feed.users
                        .into_iter()
                        .map(|u| (u.id.clone(), Arc::new(u)))
                        .collect(),
                ),
            });
        }
        if self.hasher.is_none() {
            return Err(ReplicaError::DeltaWithoutBase);
        }
        let mut next = self.clone();
        next.content = next_content();
        next.policy = policy;
        next.revision = feed.revision.max(self.revision);
        if !feed.tokens.is_empty() || !feed.deleted_tokens.is_empty() {
            let tokens = Arc::make_mut(&mut next.tokens);
            for id in &feed.deleted_tokens {
                tokens.remove(id);
            }
            for t in feed.tokens {
                tokens.insert(t.id.clone(), Arc::new(t));
            }
        }
        if !feed.users.is_empty() || !feed.deleted_users.is_empty() {
            let users = Arc::make_mut(&mut next.users);
            for id in &feed.deleted_users {
                users.remove(id);
            }
            for u in feed.users {
                users.insert(u.id.clone(), Arc::new(u));
            }
        }
        Ok(next)
    }

    /// The same content, current at `revision` (the store moved on with
    /// nothing for this cluster).
    pub(super) fn at_revision(mut self, revision: u64) -> Replica {
        self.revision = Revision(revision).max(self.revision);
        self
    }

    /// The on-disk form.
    pub(super) fn to_file(&self, current_at_ms: u64) -> ReplicaFile {
        let mut tokens: Vec<ReplicaToken> = self.tokens.values().map(|t| (**t).clone()).collect();
        tokens.sort_by(|a, b| a.id.cmp(&b.id));
        let mut users: Vec<ReplicaUser> = self.users.values().map(|u| (**u).clone()).collect();
        users.sort_by(|a, b| a.id.cmp(&b.id));
        ReplicaFile {
            format: FILE_FORMAT,
            cluster: self.cluster.clone(),
            revision: self.revision,
            current_at_ms,
            verifier_key: self.key_hex.clone(),
            tokens,
            users,
            policy: self.policy.as_ref().map(|p| (*p.policy).clone()),
        }
    }

    /// Back from the on-disk form.
    pub(super) fn from_file(file: ReplicaFile) -> Result<Replica, ReplicaError> {
        let empty = Replica::empty(&file.cluster);
        let Some(key) = file.verifier_key else {
            return Ok(empty);
        };
        let policy_hash = file.policy.as_ref().map(policy_hash);
        empty.apply(ReplicaFeed {
            cluster: file.cluster.clone(),
            revision: file.revision,
            reset: true,
            verifier_key: Some(key),
            tokens: file.tokens,
            users: file.users,
            policy_hash,
            policy: file.policy,
            ..ReplicaFeed::default()
        })
    }
}

/// A content id no replica in this process had before.
fn next_content() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Version of [`ReplicaFile`]'s layout: 2 added the policy.
pub(super) const FILE_FORMAT: u32 = 2;
/// Older layouts still read (a format-1 file holds no policy).
pub(super) const FILE_FORMATS_READ: [u32; 2] = [1, 2];

/// The replica as persisted (JSON, mode 0600: it holds the verifier key).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ReplicaFile {
    pub(super) format: u32,
    pub(super) cluster: String,
    pub(super) revision: Revision,
    /// Unix milliseconds when it was last known current.
    #[serde(default)]
    pub(super) current_at_ms: u64,
    #[serde(default)]
    pub(super) verifier_key: Option<String>,
    pub(super) tokens: Vec<ReplicaToken>,
    pub(super) users: Vec<ReplicaUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) policy: Option<ClusterPolicy>,
}

impl TokenSource for Replica {
    fn token_state(&self, id: &str) -> Option<TokenState> {
        let token = self.tokens.get(id)?;
        let user = self.users.get(&token.user_id);
        let record = TokenRecord {
            id: token.id.clone(),
            user_id: token.user_id.clone(),
            kind: TokenKind::Kubeconfig,
            hash: token.verifier.clone(),
            cluster: Some(self.cluster.clone()),
            cluster_verifier: None,
            provider: token.provider.clone(),
            description: String::new(),
            created_at: Timestamp(0),
            expires_at: token.expires_at,
            idle_timeout_secs: None,
            enabled: token.enabled,
        };
        // The content id as both revisions: a cached verification holds
        // only while the replica's content is the one it was made from.
        Some(TokenState {
            record: Arc::new(Entry {
                revision: Revision(self.content),
                value: record,
            }),
            user_enabled: user.is_some_and(|u| u.enabled),
            user_revision: Revision(self.content),
            last_used: None,
        })
    }
}
