//! Paddock's state: users, password hashes, tokens (hashes only), role bindings,
//! projects, clusters (and the registration tokens of configured ones),
//! provider settings, per-user attributes and providers' tokens of users
//! (sealed).
//!
//! Two layers:
//!
//! * [`Store`] is the backend contract, which both the embedded redb file
//!   ([`EmbeddedStore`]) and etcd (`EtcdStore`, cargo feature `etcd`) implement
//!   directly: every
//!   object has a *modification revision*, a commit is one transaction of [`Op`]s
//!   guarded by per-key [`Expect`]ations (etcd `Txn` compares; a redb write
//!   transaction), and a change feed returns what changed after a revision (etcd
//!   watch from a revision; the embedded change log), or says the history was
//!   compacted so the reader reloads.
//! * [`StoreView`] is what the request path reads: an immutable [`Snapshot`] behind
//!   an `Arc`, swapped atomically after every local commit and whenever the change
//!   feed shows a newer revision (another process wrote). Readers never lock and
//!   never touch the disk.

#[cfg(feature = "etcd")]
mod election;
mod embedded;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "etcd")]
mod etcd_claims;
#[cfg(feature = "etcd")]
mod etcd_counters;
mod snapshot;
mod types;
mod view;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use embedded::{
    create_data_dir, EmbeddedOptions, EmbeddedStore, Sharing, CHANGE_LOG_RETAIN, SCHEMA_VERSION,
};
#[cfg(feature = "etcd")]
pub use etcd::{
    ClientIdentity, EtcdOptions, EtcdStore, EtcdTls, ETCD_SCHEMA_VERSION, MAX_COMMIT_OPS,
};
pub use snapshot::{Entry, Snapshot};
pub use types::{
    BindingScope, Cluster, ClusterConnection, ClusterStatus, ClusterToken, DirectEndpointRecord,
    PasswordRecord, Project, ProviderSettings, ProviderToken, RoleBinding, SubjectKind, Timestamp,
    TokenKind, TokenRecord, TokenUsage, User, UserAttributes, UsernameIndex,
};
pub use view::{StoreView, BATCH_OPS};

/// A store-wide, monotonically increasing commit counter (like etcd's revision).
/// Revision 0 is the empty store.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The kinds of object the store holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// [`User`]
    User,
    /// [`UsernameIndex`]
    Username,
    /// [`PasswordRecord`]
    Password,
    /// [`TokenRecord`]
    Token,
    /// [`TokenUsage`]
    TokenUsage,
    /// [`RoleBinding`]
    RoleBinding,
    /// [`Project`]
    Project,
    /// [`Cluster`]
    Cluster,
    /// [`ProviderSettings`]
    Provider,
    /// [`UserAttributes`]
    UserAttributes,
    /// [`ProviderToken`]
    ProviderToken,
    /// [`ClusterToken`]
    ClusterToken,
}

impl Kind {
    /// Every kind, in key order.
    pub const ALL: [Kind; 12] = [
        Kind::User,
        Kind::Username,
        Kind::Password,
        Kind::Token,
        Kind::TokenUsage,
        Kind::RoleBinding,
        Kind::Project,
        Kind::Cluster,
        Kind::Provider,
        Kind::UserAttributes,
        Kind::ProviderToken,
        Kind::ClusterToken,
    ];

    /// The key prefix (also the etcd key segment).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Username => "usernames",
            Kind::Password => "passwords",
            Kind::Token => "tokens",
            Kind::TokenUsage => "tokenusage",
            Kind::RoleBinding => "rolebindings",
            Kind::Project => "projects",
            Kind::Cluster => "clusters",
            Kind::Provider => "providers",
            Kind::UserAttributes => "userattributes",
            Kind::ProviderToken => "providertokens",
            Kind::ClusterToken => "clustertokens",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// Identifies one object: its kind and id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The kind.
    pub kind: Kind,
    /// The id, unique within the kind.
    pub id: String,
}

impl Key {
    /// A key.
    pub fn new(kind: Kind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// `<kind>/<id>`, the encoded form stored in the backend.
    pub fn encode(&self) -> String {
        format!("{}/{}", self.kind.as_str(), self.id)
    }

    /// Parses [`Key::encode`]'s output.
    pub fn decode(s: &str) -> Option<Key> {
        let (kind, id) = s.split_once('/')?;
        Some(Key::new(Kind::parse(kind)?, id))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.id)
    }
}

/// An object of any kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec", rename_all = "lowercase")]
#[non_exhaustive]
#[allow(missing_docs)] // each variant is its type, documented there
pub enum Object {
    User(User),
    Username(UsernameIndex),
    Password(PasswordRecord),
    Token(TokenRecord),
    TokenUsage(TokenUsage),
    RoleBinding(RoleBinding),
    Project(Project),
    Cluster(Box<Cluster>),
    Provider(ProviderSettings),
    UserAttributes(UserAttributes),
    ProviderToken(ProviderToken),
    ClusterToken(ClusterToken),
}

impl Object {
    /// The key this object is stored under.
    pub fn key(&self) -> Key {
        match self {
            Object::User(u) => Key::new(Kind::User, &u.id),
            Object::Username(u) => Key::new(Kind::Username, &u.username),
            Object::Password(p) => Key::new(Kind::Password, &p.user_id),
            Object::Token(t) => Key::new(Kind::Token, &t.id),
            Object::TokenUsage(t) => Key::new(Kind::TokenUsage, &t.token_id),
            Object::RoleBinding(r) => Key::new(Kind::RoleBinding, &r.id),
            Object::Project(p) => Key::new(Kind::Project, &p.id),
            Object::Cluster(c) => Key::new(Kind::Cluster, &c.id),
            Object::Provider(p) => Key::new(Kind::Provider, &p.name),
            Object::UserAttributes(a) => Key::new(Kind::UserAttributes, &a.user_id),
            Object::ProviderToken(t) => Key::new(
                Kind::ProviderToken,
                ProviderToken::id_for(&t.provider, &t.user_id),
            ),
            Object::ClusterToken(t) => Key::new(Kind::ClusterToken, &t.cluster_id),
        }
    }
}

/// A precondition on one key, checked inside the commit's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expect {
    /// No precondition (last writer wins).
    Any,
    /// The key must not exist (create).
    Absent,
    /// The key must exist, at any revision.
    Exists,
    /// The key must exist and have been last modified at exactly this revision
    /// (optimistic concurrency: read, modify, write back).
    Revision(Revision),
}

/// One write in a commit.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Op {
    /// Create or replace the object under [`Object::key`].
    Put {
        /// The new value.
        object: Object,
        /// Precondition on the current value.
        expect: Expect,
    },
    /// Delete a key (deleting an absent key with [`Expect::Any`] is a no-op).
    Delete {
        /// The key.
        key: Key,
        /// Precondition on the current value.
        expect: Expect,
    },
}

impl Op {
    /// `Put` with a precondition.
    pub fn put(object: Object, expect: Expect) -> Self {
        Op::Put { object, expect }
    }

    /// `Delete` with a precondition.
    pub fn delete(key: Key, expect: Expect) -> Self {
        Op::Delete { key, expect }
    }

    /// The key this op writes.
    pub fn key(&self) -> Key {
        match self {
            Op::Put { object, .. } => object.key(),
            Op::Delete { key, .. } => key.clone(),
        }
    }
}

/// An object with the revision of its last modification.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned {
    /// Revision of the commit that last wrote it.
    pub revision: Revision,
    /// The value.
    pub object: Object,
}

/// A change to one key, as reported by the change feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The key.
    pub key: Key,
    /// The value at the feed's revision; `None` when deleted.
    pub value: Option<Versioned>,
}

/// What [`Store::changes_since`] returns.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Changes {
    /// Every key changed after the requested revision, with its value at
    /// `revision` (several changes to one key are folded into one event).
    Events {
        /// The store's revision the events bring a reader up to.
        revision: Revision,
        /// The changed keys.
        events: Vec<Event>,
    },
    /// The history needed was compacted, or is too long to replay in
    /// time; reload with [`Store::load`].
    Compacted,
}

/// Everything in the store at one revision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// The revision the objects are current at.
    pub revision: Revision,
    /// Every object.
    pub objects: Vec<Versioned>,
}

/// Errors from a store backend. None of them carries a dependency's error type.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A precondition failed: someone else changed `key` first. Re-read and retry.
    #[error("conflict on {key}: it was changed concurrently (expected {expected})")]
    Conflict {
        /// The key whose precondition failed.
        key: String,
        /// What was expected.
        expected: String,
    },
    /// The file is damaged or not a Paddock store. Nothing was written to it.
    #[error(
        "the store file {path} is corrupt or not a Paddock store ({detail}); \
         Paddock will not start on it and left it untouched: restore it from a backup \
         or move it aside"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What was wrong.
        detail: String,
    },
    /// The file was written by a newer Paddock (schema or file format).
    #[error(
        "the store file {path} was written by a newer version of Paddock \
         (schema {found}, this version supports up to {supported}); \
         Paddock will not start on it and left it untouched: run a newer Paddock"
    )]
    NewerVersion {
        /// The file.
        path: String,
        /// The version found.
        found: String,
        /// The newest version this build understands.
        supported: String,
    },
    /// Another process holds the file exclusively.
    #[error(
        "the store file {path} is in use by another process (a running `paddock serve`?) \
         that opened it exclusively; stop it, or make the change through the admin API"
    )]
    Locked {
        /// The file.
        path: String,
    },
    /// No etcd member answered when the store was opened.
    #[error("cannot reach etcd at {endpoints}: {detail}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// What failed.
        detail: String,
    },
    /// An I/O or backend failure; the operation may be retried.
    #[error("store unavailable: {detail}")]
    Unavailable {
        /// What failed.
        detail: String,
    },
    /// A stored value could not be decoded (written by a buggy or newer build).
    #[error("cannot decode {key} in the store: {detail}")]
    Decode {
        /// The key.
        key: String,
        /// What was wrong.
        detail: String,
    },
}

/// A backend: transactional writes with per-key preconditions, full loads and a
/// change feed by revision.
///
/// Methods block (disk fsync, or a network round trip for etcd): async callers run
/// them on `tokio::task::spawn_blocking`. The request path never calls them; it
/// reads a [`StoreView`]'s snapshot.
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// The latest committed revision (cheap: one small read).
    fn revision(&self) -> Result<Revision, StoreError>;

    /// Every object, consistent at one revision.
    fn load(&self) -> Result<Loaded, StoreError>;

    /// What changed after `since`, consistent at the returned revision.
    fn changes_since(&self, since: Revision) -> Result<Changes, StoreError>;

    /// Applies `ops` atomically and durably (the write is on stable storage when
    /// this returns `Ok`), or not at all. Every op's [`Expect`] is checked inside
    /// the transaction; the first that fails aborts the commit with
    /// [`StoreError::Conflict`]. Returns the new revision, which every written key
    /// now carries.
    fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError>;

    /// A notification the backend fires when another process may have
    /// committed, so that [`StoreView::spawn_poller`] refreshes at once
    /// instead of at its next tick. `None` (the default): polling only.
    fn change_hint(&self) -> Option<std::sync::Arc<tokio::sync::Notify>> {
        None
    }

    /// Starts (once) this process's bid to run the jobs that must run on one
    /// replica only, and returns its standing. `None` (the default): there is
    /// one server per store, which runs them. Needs a tokio runtime for the
    /// etcd backend's campaign.
    fn leadership(&self) -> Option<std::sync::Arc<dyn Leadership>> {
        None
    }

    /// Counters every replica sees (the login throttle's failures), or `None`
    /// (the default) when there is one server per store and its own memory is
    /// enough.
    fn shared_counters(&self) -> Option<std::sync::Arc<dyn SharedCounters>> {
        None
    }

    /// Claims every replica sees (one refresh of a user at a time), or
    /// `None` (the default) when there is one server per store and its own
    /// memory is enough.
    fn claims(&self) -> Option<std::sync::Arc<dyn Claims>> {
        None
    }
}

/// Named work that one replica at a time may do, each claim held for as
/// long as its holder lives: one that dies (or loses the store) loses its
/// claims within seconds, with no one to release them.
pub trait Claims: Send + Sync + fmt::Debug {
    /// Claims `name` for this replica: `true` if it was free, `false` if
    /// any replica (this one included) holds it. Blocking (a round trip).
    fn claim(&self, name: &str) -> Result<bool, StoreError>;

    /// Lets go of `name`, if this replica still holds it.
    fn release(&self, name: &str) -> Result<(), StoreError>;
}

/// Counters shared by every replica on one store, each with the time of its
/// last increment and forgotten some time after it. Not part of the
/// snapshot: they are read and written only where they are used (a login).
pub trait SharedCounters: Send + Sync + fmt::Debug {
    /// Atomically, across replicas: reads the counters `keys`; asks `wait`,
    /// for each (its index in `keys`, its count, the time since its last
    /// increment), how long the caller must still wait; when one answer is
    /// not zero, returns the longest and changes nothing; otherwise increments
    /// every counter, stamps it now, lets it be forgotten after `forget_after`
    /// without increments, and returns zero. Blocking (one or a few round trips).
    fn check_and_increment(
        &self,
        keys: &[String],
        wait: &dyn Fn(usize, u32, std::time::Duration) -> std::time::Duration,
        forget_after: std::time::Duration,
    ) -> Result<std::time::Duration, StoreError>;

    /// Takes one increment back from `key` (an attempt that did not fail).
    fn decrement(&self, key: &str) -> Result<(), StoreError>;

    /// Forgets `key`.
    fn remove(&self, key: &str) -> Result<(), StoreError>;
}

/// Whether this replica is the one elected to run the singleton jobs now.
pub trait Leadership: Send + Sync + fmt::Debug {
    /// True while elected; checked before each round of a singleton job.
    fn is_leader(&self) -> bool;
}

/// Whether `leadership` (from [`Store::leadership`]) lets this process run a
/// singleton job now.
pub fn may_run_singletons(leadership: Option<&std::sync::Arc<dyn Leadership>>) -> bool {
    leadership.is_none_or(|l| l.is_leader())
}

#[cfg(test)]
pub(crate) mod tests;
