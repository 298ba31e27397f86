//! The immutable, typed, in-memory view of the store at one revision.

use std::collections::HashMap;
use std::sync::Arc;

use super::{
    Cluster, ClusterToken, Event, Kind, Loaded, Object, PasswordRecord, Project, ProviderSettings,
    ProviderToken, Revision, RoleBinding, TokenRecord, TokenUsage, User, UserAttributes,
    UsernameIndex, Versioned,
};

/// A value with the revision that last modified it.
#[derive(Debug, PartialEq)]
pub struct Entry<T> {
    /// Modification revision.
    pub revision: Revision,
    /// The value.
    pub value: T,
}

type Table<T> = Arc<HashMap<String, Arc<Entry<T>>>>;

/// Everything in the store at one revision, indexed for the request path.
///
/// Cloning is cheap (one `Arc` per table); applying a change copies only the
/// tables it touches.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    revision: Revision,
    users: Table<User>,
    usernames: Table<UsernameIndex>,
    passwords: Table<PasswordRecord>,
    tokens: Table<TokenRecord>,
    token_usage: Table<TokenUsage>,
    role_bindings: Table<RoleBinding>,
    projects: Table<Project>,
    clusters: Table<Cluster>,
    providers: Table<ProviderSettings>,
    user_attributes: Table<UserAttributes>,
    provider_tokens: Table<ProviderToken>,
    cluster_tokens: Table<ClusterToken>,
}

fn put<T>(table: &mut Table<T>, id: String, revision: Revision, value: T) {
    Arc::make_mut(table).insert(id, Arc::new(Entry { revision, value }));
}

fn remove<T>(table: &mut Table<T>, id: &str) {
    if table.contains_key(id) {
        Arc::make_mut(table).remove(id);
    }
}

impl Snapshot {
    /// Builds a snapshot from a full load.
    pub fn from_loaded(loaded: Loaded) -> Self {
        let mut s = Snapshot {
            revision: loaded.revision,
            ..Snapshot::default()
        };
        for v in loaded.objects {
            s.insert(v);
        }
        s
    }

    /// A new snapshot with `events` applied, at `revision`.
    pub fn apply(&self, revision: Revision, events: Vec<Event>) -> Self {
        let mut s = self.clone();
        for e in events {
            match e.value {
                Some(v) => s.insert(v),
                None => s.remove(e.key.kind, &e.key.id),
            }
        }
        s.revision = s.revision.max(revision);
        s
    }

    fn insert(&mut self, v: Versioned) {
        let rev = v.revision;
        match v.object {
            Object::User(x) => put(&mut self.users, x.id.clone(), rev, x),
            Object::Username(x) => put(&mut self.usernames, x.username.clone(), rev, x),
            Object::Password(x) => put(&mut self.passwords, x.user_id.clone(), rev, x),
            Object::Token(x) => put(&mut self.tokens, x.id.clone(), rev, x),
            Object::TokenUsage(x) => put(&mut self.token_usage, x.token_id.clone(), rev, x),
            Object::RoleBinding(x) => put(&mut self.role_bindings, x.id.clone(), rev, x),
            Object::Project(x) => put(&mut self.projects, x.id.clone(), rev, x),
            Object::Cluster(x) => put(&mut self.clusters, x.id.clone(), rev, *x),
            Object::Provider(x) => put(&mut self.providers, x.name.clone(), rev, x),
            Object::UserAttributes(x) => put(&mut self.user_attributes, x.user_id.clone(), rev, x),
            Object::ProviderToken(x) => {
                let id = ProviderToken::id_for(&x.provider, &x.user_id);
                put(&mut self.provider_tokens, id, rev, x);
            }
            Object::ClusterToken(x) => put(&mut self.cluster_tokens, x.cluster_id.clone(), rev, x),
        }
    }

    fn remove(&mut self, kind: Kind, id: &str) {
        match kind {
            Kind::User => remove(&mut self.users, id),
            Kind::Username => remove(&mut self.usernames, id),
            Kind::Password => remove(&mut self.passwords, id),
            Kind::Token => remove(&mut self.tokens, id),
            Kind::TokenUsage => remove(&mut self.token_usage, id),
            Kind::RoleBinding => remove(&mut self.role_bindings, id),
            Kind::Project => remove(&mut self.projects, id),
            Kind::Cluster => remove(&mut self.clusters, id),
            Kind::Provider => remove(&mut self.providers, id),
            Kind::UserAttributes => remove(&mut self.user_attributes, id),
            Kind::ProviderToken => remove(&mut self.provider_tokens, id),
            Kind::ClusterToken => remove(&mut self.cluster_tokens, id),
        }
    }

    /// The revision this snapshot is current at.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// A user by id.
    pub fn user(&self, id: &str) -> Option<&Arc<Entry<User>>> {
        self.users.get(id)
    }

    /// A user by login name (case-insensitive).
    pub fn user_by_name(&self, username: &str) -> Option<&Arc<Entry<User>>> {
        let idx = self.usernames.get(&username.to_lowercase())?;
        self.users.get(&idx.value.user_id)
    }

    /// Every user.
    pub fn users(&self) -> impl Iterator<Item = &Arc<Entry<User>>> {
        self.users.values()
    }

    /// Number of users.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// A user's password hash.
    pub fn password(&self, user_id: &str) -> Option<&Arc<Entry<PasswordRecord>>> {
        self.passwords.get(user_id)
    }

    /// A token by id.
    pub fn token(&self, id: &str) -> Option<&Arc<Entry<TokenRecord>>> {
        self.tokens.get(id)
    }

    /// Every token.
    pub fn tokens(&self) -> impl Iterator<Item = &Arc<Entry<TokenRecord>>> {
        self.tokens.values()
    }

    /// A token's last flushed use.
    pub fn token_usage(&self, token_id: &str) -> Option<&Arc<Entry<TokenUsage>>> {
        self.token_usage.get(token_id)
    }

    /// A role binding by id.
    pub fn role_binding(&self, id: &str) -> Option<&Arc<Entry<RoleBinding>>> {
        self.role_bindings.get(id)
    }

    /// Every role binding.
    pub fn role_bindings(&self) -> impl Iterator<Item = &Arc<Entry<RoleBinding>>> {
        self.role_bindings.values()
    }

    /// A project by id.
    pub fn project(&self, id: &str) -> Option<&Arc<Entry<Project>>> {
        self.projects.get(id)
    }

    /// Every project.
    pub fn projects(&self) -> impl Iterator<Item = &Arc<Entry<Project>>> {
        self.projects.values()
    }

    /// A cluster by id.
    pub fn cluster(&self, id: &str) -> Option<&Arc<Entry<Cluster>>> {
        self.clusters.get(id)
    }

    /// Every cluster.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Entry<Cluster>>> {
        self.clusters.values()
    }

    /// A provider's settings by name.
    pub fn provider(&self, name: &str) -> Option<&Arc<Entry<ProviderSettings>>> {
        self.providers.get(name)
    }

    /// A user's provider attributes.
    pub fn user_attributes(&self, user_id: &str) -> Option<&Arc<Entry<UserAttributes>>> {
        self.user_attributes.get(user_id)
    }

    /// `provider`'s sealed token of `user_id`.
    pub fn provider_token(
        &self,
        provider: &str,
        user_id: &str,
    ) -> Option<&Arc<Entry<ProviderToken>>> {
        self.provider_tokens
            .get(&ProviderToken::id_for(provider, user_id))
    }

    /// Every provider's sealed token of every user.
    pub fn provider_tokens(&self) -> impl Iterator<Item = &Arc<Entry<ProviderToken>>> {
        self.provider_tokens.values()
    }

    /// The registration token of a cluster defined in the configuration
    /// file (registered clusters keep theirs on their [`Cluster`] record).
    pub fn cluster_token(&self, cluster_id: &str) -> Option<&Arc<Entry<ClusterToken>>> {
        self.cluster_tokens.get(cluster_id)
    }
}
