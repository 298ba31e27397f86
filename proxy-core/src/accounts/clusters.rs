//! Clusters registered at runtime, as the admin API and the `paddock
//! cluster` commands write them, and every cluster's registration token.
//!
//! A registration token is `<cluster id>.<secret>`: the id says which
//! cluster's hash to check, the secret (256 bits) is stored only as its
//! peppered hash ([`TokenHasher`]) and compared in constant time. It is
//! shown once, when issued; rotating issues a new one (the old one stops
//! working, and a tunnel it opened is closed), revoking leaves none.
//!
//! It proves the cluster, and nothing else: an agent opens the cluster's
//! tunnel with it, a sidecar reads the cluster's replica feed with it. A
//! registered cluster (agent or direct) keeps its hash on its [`Cluster`]
//! record; a cluster of the configuration file has no record, so its hash
//! is a [`ClusterToken`] of its own, and it is the configuration that
//! decides which of the two counts: a configured id's `Cluster` record is
//! never read, a registered id's `ClusterToken` never.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};

use crate::{
    authn::tokens::{new_secret, TokenHasher},
    store::{
        Cluster, ClusterConnection, ClusterStatus, ClusterToken, DirectEndpointRecord, Expect, Key,
        Kind, Object, Op, Snapshot, StoreError, StoreView, Timestamp,
    },
};

/// Why a cluster change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No registered cluster has this id.
    #[error("no registered cluster {0:?}")]
    NotFound(String),
    /// The id is taken (by a registered or a configured cluster).
    #[error("cluster {0:?} already exists")]
    Exists(String),
    /// The cluster comes from the configuration file and cannot be changed here.
    #[error("cluster {0:?} is defined in the configuration file: change it there")]
    Configured(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A cluster to register.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewCluster {
    /// Its id in `/k8s/clusters/<id>`.
    pub id: String,
    /// A human-readable name (default: the id).
    pub display_name: String,
    /// How to reach it.
    pub connection: ClusterConnection,
    /// Free labels.
    pub labels: BTreeMap<String, String>,
    /// Its authorized cluster endpoint, if it has one.
    pub direct_endpoint: Option<DirectEndpointRecord>,
}

impl NewCluster {
    /// A cluster reached through an agent.
    pub fn agent(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            display_name: String::new(),
            connection: ClusterConnection::Agent,
            labels: BTreeMap::new(),
            direct_endpoint: None,
        }
    }

    /// Sets how it is reached.
    pub fn connection(mut self, connection: ClusterConnection) -> Self {
        self.connection = connection;
        self
    }

    /// Sets its display name.
    pub fn display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = name.into();
        self
    }

    /// Sets its labels.
    pub fn labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Sets its authorized cluster endpoint.
    pub fn direct_endpoint(mut self, endpoint: Option<DirectEndpointRecord>) -> Self {
        self.direct_endpoint = endpoint;
        self
    }
}

/// Changes to a registered cluster; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ClusterUpdate {
    /// A new display name.
    pub display_name: Option<String>,
    /// New labels (replacing all of them).
    pub labels: Option<BTreeMap<String, String>>,
    /// A new way to reach it.
    pub connection: Option<ClusterConnection>,
    /// A new authorized cluster endpoint (`Some(None)` removes it).
    pub direct_endpoint: Option<Option<DirectEndpointRecord>>,
}

/// A registered cluster and, for an agent cluster, its first registration
/// token (shown once).
#[derive(Debug)]
pub struct Registered {
    /// The stored record.
    pub cluster: Cluster,
    /// The agent's registration token, when one was issued.
    pub token: Option<SecretString>,
}

/// Whether `id` can name a cluster: a DNS label (1–63 lower-case letters,
/// digits and `-`, starting and ending with a letter or digit), so it fits
/// a URL path segment, a kubeconfig name and a Kubernetes object name.
pub fn check_id(id: &str) -> Result<(), ClusterError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Invalid(format!(
            "id: {id:?} must be 1-63 lower-case letters, digits and '-', \
             starting and ending with a letter or digit"
        )))
    }
}

fn check_connection(connection: &ClusterConnection) -> Result<(), ClusterError> {
    if let ClusterConnection::Direct { server, ca_pem, .. } = connection {
        let url = server.to_ascii_lowercase();
        if !url.starts_with("https://") {
            return Err(ClusterError::Invalid(format!(
                "connection.server: {server:?} must be an https:// URL"
            )));
        }
        let mut config = crate::upstream::ClusterConfig::new("new", server.clone());
        config.ca_pem = ca_pem.as_ref().map(|p| p.as_bytes().to_vec());
        config
            .check()
            .map_err(|e| ClusterError::Invalid(format!("connection: {e}")))?;
    }
    Ok(())
}

fn check_direct_endpoint(endpoint: &DirectEndpointRecord) -> Result<(), ClusterError> {
    if !endpoint.server.to_ascii_lowercase().starts_with("https://") {
        return Err(ClusterError::Invalid(format!(
            "directEndpoint.server: {:?} must be an https:// URL",
            endpoint.server
        )));
    }
    let mut config = crate::upstream::ClusterConfig::new("new", endpoint.server.clone());
    config.ca_pem = endpoint.ca_pem.as_ref().map(|p| p.as_bytes().to_vec());
    config
        .check()
        .map_err(|e| ClusterError::Invalid(format!("directEndpoint: {e}")))
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<(), ClusterError> {
    for (key, value) in labels {
        if key.is_empty() || key.len() > 253 || value.len() > 253 || key.contains(char::is_control)
        {
            return Err(ClusterError::Invalid(format!(
                "labels: {key:?} must be a non-empty key and both at most 253 characters"
            )));
        }
    }
    Ok(())
}

fn issue_token(hasher: &TokenHasher, id: &str) -> (SecretString, String) {
    let secret = new_secret();
    let hash = hasher.hash(&secret);
    (SecretString::from(format!("{id}.{secret}")), hash)
}

/// Registers a cluster; an agent cluster gets its first registration
/// token. `configured` are the ids of the configuration file's clusters,
/// which a registered cluster may not shadow. Blocking.
pub fn create(
    view: &StoreView,
    hasher: &TokenHasher,
    new: NewCluster,
    configured: &[String],
) -> Result<Registered, ClusterError> {
    check_id(&new.id)?;
    check_connection(&new.connection)?;
    check_labels(&new.labels)?;
    if let Some(endpoint) = &new.direct_endpoint {
        check_direct_endpoint(endpoint)?;
    }
    if configured.contains(&new.id) {
        return Err(ClusterError::Exists(new.id));
    }
    let (token, hash) = match new.connection {
        ClusterConnection::Agent => {
            let (token, hash) = issue_token(hasher, &new.id);
            (Some(token), Some(hash))
        }
        _ => (None, None),
    };
    let cluster = Cluster {
        display_name: if new.display_name.is_empty() {
            new.id.clone()
        } else {
            new.display_name
        },
        id: new.id,
        connection: new.connection,
        labels: new.labels,
        agent_token_hash: hash,
        direct_endpoint: new.direct_endpoint,
        status: ClusterStatus::default(),
        created_at: Timestamp::now(),
    };
    match view.commit(vec![Op::put(
        Object::Cluster(Box::new(cluster.clone())),
        Expect::Absent,
    )]) {
        Ok(_) => Ok(Registered { cluster, token }),
        Err(StoreError::Conflict { .. }) => Err(ClusterError::Exists(cluster.id)),
        Err(e) => Err(e.into()),
    }
}

/// The registered cluster `id`, as of `snapshot`.
pub fn get(snapshot: &Snapshot, id: &str) -> Option<Cluster> {
    snapshot.cluster(id).map(|e| e.value.clone())
}

/// Every registered cluster, by id.
pub fn list(snapshot: &Snapshot) -> Vec<Cluster> {
    let mut clusters: Vec<Cluster> = snapshot.clusters().map(|e| e.value.clone()).collect();
    clusters.sort_by(|a, b| a.id.cmp(&b.id));
    clusters
}

/// Reads cluster `id`, changes it with `change`, and writes it back if no
/// one else changed it meanwhile (retried a few times). Blocking.
fn modify<T>(
    view: &StoreView,
    id: &str,
    mut change: impl FnMut(&mut Cluster) -> Result<T, ClusterError>,
) -> Result<(Cluster, T), ClusterError> {
    let mut attempts = 0;
    loop {
        let (revision, mut cluster) = view
            .with_snapshot(|s| s.cluster(id).map(|e| (e.revision, e.value.clone())))
            .ok_or_else(|| ClusterError::NotFound(id.to_owned()))?;
        let out = change(&mut cluster)?;
        match view.commit(vec![Op::put(
            Object::Cluster(Box::new(cluster.clone())),
            Expect::Revision(revision),
        )]) {
            Ok(_) => return Ok((cluster, out)),
            Err(StoreError::Conflict { .. }) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Changes a registered cluster's name, labels or connection. Turning it
/// into an agent cluster issues no token: use [`rotate_token`]. Blocking.
pub fn update(view: &StoreView, id: &str, update: ClusterUpdate) -> Result<Cluster, ClusterError> {
    if let Some(connection) = &update.connection {
        check_connection(connection)?;
    }
    if let Some(labels) = &update.labels {
        check_labels(labels)?;
    }
    if let Some(Some(endpoint)) = &update.direct_endpoint {
        check_direct_endpoint(endpoint)?;
    }
    modify(view, id, |cluster| {
        if let Some(name) = &update.display_name {
            cluster.display_name.clone_from(name);
        }
        if let Some(labels) = &update.labels {
            cluster.labels.clone_from(labels);
        }
        if let Some(connection) = &update.connection {
            // The registration token stays: it proves the cluster (to its
            // sidecar too) however Paddock reaches it.
            cluster.connection = connection.clone();
        }
        if let Some(endpoint) = &update.direct_endpoint {
            cluster.direct_endpoint.clone_from(endpoint);
        }
        Ok(())
    })
    .map(|(cluster, ())| cluster)
}

/// Unregisters cluster `id`: it stops being routable, and its agent's
/// tunnel is closed. Blocking.
pub fn delete(view: &StoreView, id: &str) -> Result<Cluster, ClusterError> {
    let cluster = view
        .with_snapshot(|s| get(s, id))
        .ok_or_else(|| ClusterError::NotFound(id.to_owned()))?;
    view.commit(vec![Op::delete(
        Key::new(Kind::Cluster, id),
        Expect::Exists,
    )])
    .map_err(|e| match e {
        StoreError::Conflict { .. } => ClusterError::NotFound(id.to_owned()),
        e => e.into(),
    })?;
    Ok(cluster)
}

/// Issues a new registration token for cluster `id`, replacing the old
/// one: a registered cluster's (agent or direct), or, when `configured`
/// holds `id`, a cluster of the configuration file's. Blocking.
pub fn rotate_token(
    view: &StoreView,
    hasher: &TokenHasher,
    id: &str,
    configured: &[String],
) -> Result<SecretString, ClusterError> {
    if configured.iter().any(|c| c == id) {
        let (token, hash) = issue_token(hasher, id);
        let record = ClusterToken {
            cluster_id: id.to_owned(),
            hash,
            issued_at: Timestamp::now(),
        };
        view.commit(vec![Op::put(Object::ClusterToken(record), Expect::Any)])?;
        return Ok(token);
    }
    let (_, token) = modify(view, id, |cluster| {
        let (token, hash) = issue_token(hasher, id);
        cluster.agent_token_hash = Some(hash);
        Ok(token)
    })?;
    Ok(token)
}

/// Revokes cluster `id`'s registration token (see [`rotate_token`]): no
/// agent can connect and no sidecar read the feed until a new one is
/// issued. Blocking.
pub fn revoke_token(view: &StoreView, id: &str, configured: &[String]) -> Result<(), ClusterError> {
    if configured.iter().any(|c| c == id) {
        view.commit(vec![Op::delete(
            Key::new(Kind::ClusterToken, id),
            Expect::Any,
        )])?;
        return Ok(());
    }
    modify(view, id, |cluster| {
        cluster.agent_token_hash = None;
        Ok(())
    })
    .map(drop)
}

/// The cluster a presented registration token belongs to, and the hash it
/// matched; `None` for a malformed, unknown, revoked or rotated token. The
/// same work is done whether or not the cluster exists. Only agent
/// clusters' tokens open tunnels.
pub fn verify_agent_token(
    snapshot: &Snapshot,
    hasher: &TokenHasher,
    presented: &SecretString,
) -> Option<(String, String)> {
    let (id, secret) = split_token(presented);
    let stored = snapshot
        .cluster(id)
        .filter(|c| matches!(c.value.connection, ClusterConnection::Agent))
        .and_then(|c| c.value.agent_token_hash.as_deref());
    check(hasher, stored, secret).map(|hash| (id.to_owned(), hash))
}

/// Whether `presented` is cluster `cluster`'s current registration token;
/// `configured` says whether `cluster` is one of the configuration file's
/// (see the module docs). A token of another cluster is refused however
/// valid it is there. The same work is done whether or not the cluster
/// has a token.
pub fn verify_cluster_token(
    snapshot: &Snapshot,
    hasher: &TokenHasher,
    cluster: &str,
    configured: bool,
    presented: &SecretString,
) -> bool {
    let (id, secret) = split_token(presented);
    let stored = if id != cluster {
        None
    } else if configured {
        snapshot.cluster_token(id).map(|t| t.value.hash.as_str())
    } else {
        snapshot
            .cluster(id)
            .and_then(|c| c.value.agent_token_hash.as_deref())
    };
    check(hasher, stored, secret).is_some()
}

fn split_token(presented: &SecretString) -> (&str, &str) {
    let presented = presented.expose_secret();
    presented.split_once('.').unwrap_or(("", presented))
}

/// Constant-time check of `secret` against `stored`; a dummy check when
/// there is nothing stored, so both take the same time.
fn check(hasher: &TokenHasher, stored: Option<&str>, secret: &str) -> Option<String> {
    match stored {
        Some(hash) if hasher.verify(hash, secret) => Some(hash.to_owned()),
        Some(_) => None,
        None => {
            hasher.dummy_verify(secret);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{authn::tokens::Pepper, store::EmbeddedStore};

    fn setup() -> (tempfile::TempDir, Arc<StoreView>, TokenHasher) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in_dir(dir.path(), Default::default()).unwrap();
        let view = StoreView::new(Arc::new(store)).unwrap();
        (dir, view, TokenHasher::new(&Pepper::from_bytes([7; 32])))
    }

    #[test]
    fn tokens_are_shown_once_stored_hashed_rotated_and_revoked() {
        let (_dir, view, hasher) = setup();
        let registered = create(&view, &hasher, NewCluster::agent("edge-1"), &[]).unwrap();
        let first = registered.token.unwrap();
        let stored = view.with_snapshot(|s| get(s, "edge-1")).unwrap();
        let hash = stored.agent_token_hash.clone().unwrap();
        assert!(!hash.contains(first.expose_secret().split_once('.').unwrap().1));
        assert!(!format!("{stored:?}").contains(&hash));
        let verify = |t: &SecretString| view.with_snapshot(|s| verify_agent_token(s, &hasher, t));
        assert_eq!(verify(&first).unwrap().0, "edge-1");
        // Another cluster's id with this secret, a wrong secret, no id.
        create(&view, &hasher, NewCluster::agent("edge-2"), &[]).unwrap();
        let secret = first.expose_secret().split_once('.').unwrap().1.to_owned();
        for wrong in [
            format!("edge-2.{secret}"),
            "edge-1.nope".to_owned(),
            secret.clone(),
        ] {
            assert!(
                verify(&SecretString::from(wrong.clone())).is_none(),
                "{wrong}"
            );
        }
        let second = rotate_token(&view, &hasher, "edge-1", &[]).unwrap();
        assert!(verify(&first).is_none());
        assert!(verify(&second).is_some());
        revoke_token(&view, "edge-1", &[]).unwrap();
        assert!(verify(&second).is_none());
    }

    /// The feed's rule: a cluster's own current token, and nothing else,
    /// for registered (agent and direct) and configured clusters alike.
    #[test]
    fn every_cluster_has_a_registration_token_that_proves_it_alone() {
        let (_dir, view, hasher) = setup();
        let configured = vec!["prod".to_owned()];
        let direct = NewCluster::agent("lab").connection(ClusterConnection::Direct {
            server: "https://10.0.0.1:6443".into(),
            ca_pem: None,
            token_file: None,
        });
        create(&view, &hasher, direct, &configured).unwrap();
        let edge = create(&view, &hasher, NewCluster::agent("edge"), &configured)
            .unwrap()
            .token
            .unwrap();
        let lab = rotate_token(&view, &hasher, "lab", &configured).unwrap();
        let prod = rotate_token(&view, &hasher, "prod", &configured).unwrap();
        let proves = |cluster: &str, token: &SecretString| {
            let is_configured = configured.iter().any(|c| c == cluster);
            view.with_snapshot(|s| verify_cluster_token(s, &hasher, cluster, is_configured, token))
        };
        for (cluster, token) in [("edge", &edge), ("lab", &lab), ("prod", &prod)] {
            assert!(proves(cluster, token), "{cluster}'s own token");
            for other in ["edge", "lab", "prod", "nowhere"] {
                if other != cluster {
                    assert!(!proves(other, token), "{cluster}'s token read {other}");
                }
            }
            // The secret under another cluster's id.
            let secret = token.expose_secret().split_once('.').unwrap().1;
            for other in ["edge", "lab", "prod"].iter().filter(|o| **o != cluster) {
                let forged = SecretString::from(format!("{other}.{secret}"));
                assert!(!proves(other, &forged), "{cluster}'s secret as {other}'s");
            }
        }
        // A direct cluster's token opens no tunnel.
        assert!(view
            .with_snapshot(|s| verify_agent_token(s, &hasher, &lab))
            .is_none());
        // Rotated, then revoked.
        let prod2 = rotate_token(&view, &hasher, "prod", &configured).unwrap();
        assert!(!proves("prod", &prod) && proves("prod", &prod2));
        revoke_token(&view, "prod", &configured).unwrap();
        assert!(!proves("prod", &prod2));
        let lab2 = rotate_token(&view, &hasher, "lab", &configured).unwrap();
        assert!(!proves("lab", &lab) && proves("lab", &lab2));
        revoke_token(&view, "lab", &configured).unwrap();
        assert!(!proves("lab", &lab2));
        // A configured id's store record is never read, and the other way
        // round: the configuration decides.
        assert!(!view.with_snapshot(|s| verify_cluster_token(s, &hasher, "edge", true, &edge)));
        let stale = rotate_token(&view, &hasher, "prod", &configured).unwrap();
        assert!(!view.with_snapshot(|s| verify_cluster_token(s, &hasher, "prod", false, &stale)));
        // The stored hash is no token.
        let stored = view.with_snapshot(|s| s.cluster_token("prod").unwrap().value.clone());
        assert!(!format!("{stored:?}").contains(&stored.hash));
        assert!(!stored
            .hash
            .contains(stale.expose_secret().split_once('.').unwrap().1));
    }

    #[test]
    fn ids_are_checked_and_unique() {
        let (_dir, view, hasher) = setup();
        for bad in ["", "A", "a/b", "-a", "a-", "a.b", &"x".repeat(64)] {
            assert!(
                matches!(
                    create(&view, &hasher, NewCluster::agent(bad), &[]),
                    Err(ClusterError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        create(&view, &hasher, NewCluster::agent("a"), &[]).unwrap();
        assert!(matches!(
            create(&view, &hasher, NewCluster::agent("a"), &[]),
            Err(ClusterError::Exists(_))
        ));
        assert!(matches!(
            create(
                &view,
                &hasher,
                NewCluster::agent("prod"),
                &["prod".to_owned()]
            ),
            Err(ClusterError::Exists(_))
        ));
        let direct = NewCluster::agent("d").connection(ClusterConnection::Direct {
            server: "http://10.0.0.1".into(),
            ca_pem: None,
            token_file: None,
        });
        assert!(matches!(
            create(&view, &hasher, direct, &[]),
            Err(ClusterError::Invalid(_))
        ));
        delete(&view, "a").unwrap();
        assert!(matches!(delete(&view, "a"), Err(ClusterError::NotFound(_))));
    }
}
