//! The records the store holds: plain data, serialised as JSON inside the backend.
//!
//! Nothing here holds a secret in clear: passwords are stored as PHC strings,
//! tokens as salted, peppered hashes (see [`crate::authn::tokens`]), and the
//! provider tokens the background refresh needs only sealed ([`ProviderToken`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time, in whole seconds since the Unix epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Converts a [`SystemTime`], saturating before the epoch to 0.
    pub fn from_system_time(t: SystemTime) -> Self {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Self(i64::try_from(secs).unwrap_or(i64::MAX))
    }

    /// This time plus `d` (saturating).
    pub fn plus(self, d: Duration) -> Self {
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(secs))
    }

    /// Seconds from `earlier` to `self`, 0 when `earlier` is later.
    pub fn seconds_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match time::OffsetDateTime::from_unix_timestamp(self.0) {
            Ok(t) => {
                let fmt = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
                );
                match t.format(&fmt) {
                    Ok(s) => f.write_str(&s),
                    Err(_) => write!(f, "@{}", self.0),
                }
            }
            Err(_) => write!(f, "@{}", self.0),
        }
    }
}

/// A user known to Paddock: local users, and external users on first login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Stable id, e.g. `u-3k9x2m4q7p1z`. Never reused.
    pub id: String,
    /// Login name, unique (case-insensitively) among local users.
    pub username: String,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: String,
    /// A disabled user cannot log in and none of their tokens work.
    pub enabled: bool,
    /// The next login must set a new password before anything else.
    #[serde(default)]
    pub must_change_password: bool,
    /// Principal ids, e.g. `local://u-3k9x2m4q7p1z`, `github_user://583231`.
    #[serde(default)]
    pub principal_ids: Vec<String>,
    /// When the user was created.
    pub created_at: Timestamp,
}

/// A local user's password hash (argon2id PHC string), kept apart from [`User`] so
/// that listing users never touches it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordRecord {
    /// The [`User::id`] it belongs to.
    pub user_id: String,
    /// PHC string, `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
    pub phc: String,
    /// When it was last set.
    pub changed_at: Timestamp,
}

impl fmt::Debug for PasswordRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordRecord")
            .field("user_id", &self.user_id)
            .field("phc", &"<redacted>")
            .field("changed_at", &self.changed_at)
            .finish()
    }
}

/// What a token is for; decides its default lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TokenKind {
    /// Created by a login; TTL and idle timeout are fixed by policy.
    Session,
    /// An API key derived by a logged-in user.
    Api,
    /// Embedded in a generated kubeconfig.
    Kubeconfig,
}

impl TokenKind {
    /// Lower-case name, as stored and shown by the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Session => "session",
            TokenKind::Api => "api",
            TokenKind::Kubeconfig => "kubeconfig",
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token as stored: its id and the hash of its secret, never the secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Lookup key, the part before `:` in the presented token.
    pub id: String,
    /// The [`User::id`] it authenticates as.
    pub user_id: String,
    /// Session, API or kubeconfig.
    pub kind: TokenKind,
    /// `v1$<salt hex>$<hmac-sha256(pepper, salt || secret) hex>`.
    pub hash: String,
    /// When set, the token is only valid for requests to this cluster.
    #[serde(default)]
    pub cluster: Option<String>,
    /// For a cluster-scoped token: the same `v1` hash of the secret under
    /// the cluster's own key ([`crate::authn::tokens::TokenHasher::cluster_key`]),
    /// what that cluster's sidecar verifies with, so the global pepper never
    /// leaves the center. `None` for unscoped tokens and for tokens issued
    /// before it existed (those work through the center only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_verifier: Option<String>,
    /// The provider the user logged in with (`local`, `github`, ...).
    #[serde(default)]
    pub provider: String,
    /// Free text shown in listings.
    #[serde(default)]
    pub description: String,
    /// Creation time.
    pub created_at: Timestamp,
    /// Absolute expiry; `None` never expires.
    pub expires_at: Option<Timestamp>,
    /// Idle timeout in seconds, measured from the last use; `None` disables it.
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    /// Disabled tokens are rejected (kept for audit).
    pub enabled: bool,
}

impl fmt::Debug for TokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("kind", &self.kind)
            .field("hash", &"<redacted>")
            .field("cluster", &self.cluster)
            .field(
                "cluster_verifier",
                &self.cluster_verifier.as_ref().map(|_| "<redacted>"),
            )
            .field("provider", &self.provider)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// When a token was last used, as flushed (at most once a minute) by the
/// last-used coalescer. Kept apart from [`TokenRecord`] so that flushing it does not
/// change the token's revision or race with an admin editing the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// The [`TokenRecord::id`].
    pub token_id: String,
    /// Last use seen by any replica at flush time.
    pub last_used_at: Timestamp,
}

/// Where a role binding applies.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "type", content = "id")]
#[non_exhaustive]
pub enum BindingScope {
    /// A global role (`admin`, `user`, ...).
    Global,
    /// A cluster role template in one cluster.
    Cluster(String),
    /// A project role template in one project.
    Project(String),
}

/// What a [`RoleBinding`]'s subject names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SubjectKind {
    /// A user: a user id (`u-...`) or a user principal id. Bindings written
    /// before the kind was recorded read as this, except a subject with a
    /// `_group://` principal id, which was always a group.
    #[default]
    User,
    /// A group principal id (`openldap_group://…`, `github_team://1234`),
    /// matched against the groups providers report for a user.
    Group,
}

/// A role bound to a subject (a user id or a principal id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBinding {
    /// Stable id.
    pub id: String,
    /// User id (`u-...`) or principal id (`github_team://1234`).
    pub subject: String,
    /// Whether `subject` is a user or a group.
    #[serde(default)]
    pub subject_kind: SubjectKind,
    /// Role or role template name.
    pub role: String,
    /// Global, cluster or project.
    pub scope: BindingScope,
    /// Creation time.
    pub created_at: Timestamp,
}

impl RoleBinding {
    /// Whether the subject is a group: recorded as one, or (data written
    /// before the kind was recorded) a `_group://` principal id.
    pub fn subject_is_group(&self) -> bool {
        self.subject_kind == SubjectKind::Group || self.subject.contains("_group://")
    }
}

/// A project created through the API: a named group of namespaces in one cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// Stable id.
    pub id: String,
    /// The cluster the namespaces live in.
    pub cluster_id: String,
    /// Human-readable name.
    pub display_name: String,
    /// Member namespaces.
    #[serde(default)]
    pub namespaces: Vec<String>,
}

/// A downstream cluster registered at runtime (through the admin API or the
/// CLI). Clusters in the configuration file are not stored: they are listed
/// beside these, read-only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    /// Stable id, as in `/k8s/clusters/<id>`: lower-case letters, digits
    /// and `-`.
    pub id: String,
    /// Human-readable name.
    #[serde(default)]
    pub display_name: String,
    /// How Paddock reaches the cluster's API server.
    #[serde(default)]
    pub connection: ClusterConnection,
    /// Free labels (`env: prod`), for people and tools.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The hash of the cluster's registration token (see
    /// [`crate::authn::tokens::TokenHasher`]), which its agent opens the
    /// tunnel with and its sidecar reads its replica feed with; `None` when
    /// none is valid (never issued, or revoked). The field keeps its
    /// first name: direct clusters carry one too since sidecars use it.
    #[serde(default)]
    pub agent_token_hash: Option<String>,
    /// Its authorized cluster endpoint: where users reach the API server
    /// directly, authenticated by `paddock sidecar`; downloaded kubeconfigs
    /// gain a `<id>-direct` context for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_endpoint: Option<DirectEndpointRecord>,
    /// What the last agent that connected reported.
    #[serde(default)]
    pub status: ClusterStatus,
    /// When the cluster was registered.
    #[serde(default = "epoch")]
    pub created_at: Timestamp,
}

fn epoch() -> Timestamp {
    Timestamp(0)
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("connection", &self.connection)
            .field("labels", &self.labels)
            .field(
                "agent_token_hash",
                &self.agent_token_hash.as_ref().map(|_| "<redacted>"),
            )
            .field("direct_endpoint", &self.direct_endpoint)
            .field("status", &self.status)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A registered cluster's authorized cluster endpoint (see
/// [`Cluster::direct_endpoint`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DirectEndpointRecord {
    /// The API server's (or the sidecar's request path's) `https://` URL.
    pub server: String,
    /// The CA bundle (PEM) users' kubectl trusts for it; the system roots
    /// when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

impl DirectEndpointRecord {
    /// As kubeconfigs render it.
    pub fn to_endpoint(&self) -> crate::kubeconfig::DirectEndpoint {
        crate::kubeconfig::DirectEndpoint {
            server: self.server.clone(),
            ca_pem: self.ca_pem.as_ref().map(|p| p.as_bytes().to_vec()),
        }
    }
}

/// The registration token of a cluster defined in the configuration file,
/// which has no [`Cluster`] record to hold it: what its sidecar proves the
/// cluster with (`paddock cluster token <id>` issues it). Revoking deletes
/// the record.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterToken {
    /// The configured cluster's id.
    pub cluster_id: String,
    /// The token's hash (see [`crate::authn::tokens::TokenHasher`]).
    pub hash: String,
    /// When it was issued.
    pub issued_at: Timestamp,
}

impl fmt::Debug for ClusterToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterToken")
            .field("cluster_id", &self.cluster_id)
            .field("hash", &"<redacted>")
            .field("issued_at", &self.issued_at)
            .finish()
    }
}

/// How Paddock reaches a cluster's API server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "type"
)]
#[non_exhaustive]
pub enum ClusterConnection {
    /// Paddock opens connections to the API server itself.
    Direct {
        /// The API server's base URL, `https://10.0.0.1:6443`.
        server: String,
        /// The CA bundle (PEM) that verifies it; the system roots when absent.
        #[serde(default)]
        ca_pem: Option<String>,
        /// A file holding Paddock's bearer token for the cluster (re-read
        /// when it changes): a reference, never the token itself.
        #[serde(default)]
        token_file: Option<std::path::PathBuf>,
    },
    /// An agent inside the cluster dials out to Paddock; requests travel
    /// through its tunnel and the agent adds its own credential.
    #[default]
    Agent,
}

impl ClusterConnection {
    /// `direct` or `agent`, as the API and CLI show it.
    pub fn kind(&self) -> &'static str {
        match self {
            ClusterConnection::Direct { .. } => "direct",
            ClusterConnection::Agent => "agent",
        }
    }
}

/// What is known of a cluster's state, as written when an agent connects or
/// disconnects. Whether an agent is connected *now* is the tunnel
/// registry's live answer; this is what survives a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// Whether an agent was connected at the last write.
    #[serde(default)]
    pub connected: bool,
    /// The API server's version (`gitVersion` of `/version`).
    #[serde(default)]
    pub kubernetes_version: Option<String>,
    /// The last time an agent was seen.
    #[serde(default)]
    pub last_heartbeat: Option<Timestamp>,
    /// The version of `paddock agent` that connected last.
    #[serde(default)]
    pub agent_version: Option<String>,
}

/// One authentication provider's settings as edited through the API (no secrets:
/// those are referenced, e.g. by file path).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSettings {
    /// Provider name: `local`, `github`, `activedirectory`, `openldap`.
    pub name: String,
    /// Whether logins through it are accepted.
    pub enabled: bool,
    /// Provider-specific settings.
    #[serde(default)]
    pub settings: serde_json::Value,
}

/// What providers said about a user at the last refresh.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAttributes {
    /// The [`User::id`].
    pub user_id: String,
    /// Group principal ids, per provider.
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<String>>,
    /// The display names of those groups (`developers`, `CN=Ops,…`), per
    /// provider then group id, for pages people read. Data written before
    /// this field existed has none: readers fall back to the id.
    #[serde(default)]
    pub group_names: BTreeMap<String, BTreeMap<String, String>>,
    /// Extra attributes (`principalid`, `username`), per provider.
    #[serde(default)]
    pub extra: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// Last successful refresh.
    #[serde(default)]
    pub last_refresh: Option<Timestamp>,
    /// Where each provider finds the user again at refresh (an LDAP DN).
    #[serde(default)]
    pub locators: BTreeMap<String, String>,
}

impl UserAttributes {
    /// Every provider's groups: what the user is presented downstream with,
    /// on the proxy path and by the sidecar alike.
    pub fn all_groups(&self) -> Vec<String> {
        self.groups.values().flatten().cloned().collect()
    }
}

/// Username → user id; makes usernames unique through the store's conflict
/// detection (written with [`crate::store::Expect::Absent`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsernameIndex {
    /// Lower-cased username (the key).
    pub username: String,
    /// The user it names.
    pub user_id: String,
}

/// A provider's token of one user (a GitHub access token, an OpenID Connect
/// refresh token), kept for the background refresh of their groups. Only the
/// sealed form is stored: ChaCha20-Poly1305 under a key derived from the token
/// pepper, bound to the provider and the user (see [`crate::authn::seal`]), so
/// the store alone (a backup, `etcdctl get`) never yields the token, and every
/// replica that shares the pepper can open it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderToken {
    /// The provider's name (`github`, an OIDC provider's name).
    pub provider: String,
    /// The [`User::id`] it belongs to.
    pub user_id: String,
    /// base64url `nonce || ciphertext || tag`.
    pub sealed: String,
    /// When it was last written (a login, a rotated refresh token).
    pub updated_at: Timestamp,
}

impl ProviderToken {
    /// The store id of `provider`'s token of `user_id`: `<provider>/<user id>`.
    pub fn id_for(provider: &str, user_id: &str) -> String {
        format!("{provider}/{user_id}")
    }
}

impl fmt::Debug for ProviderToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderToken")
            .field("provider", &self.provider)
            .field("user_id", &self.user_id)
            .field("sealed", &"<redacted>")
            .field("updated_at", &self.updated_at)
            .finish()
    }
}
