use std::collections::BTreeMap;

/// The group Kubernetes gives every authenticated user.
pub const SYSTEM_AUTHENTICATED: &str = "system:authenticated";

/// Who the caller is, as presented downstream through impersonation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// Stable user id, sent as `Impersonate-User` (e.g. `u-abc123`, or the
    /// user name for a static token file, as Kubernetes does).
    pub user: String,
    /// Human-readable login name.
    pub username: String,
    /// Optional UID, sent as `Impersonate-Uid` when set.
    pub uid: Option<String>,
    /// Group principal ids; always contains `system:authenticated` once the
    /// chain returns it.
    pub groups: Vec<String>,
    /// Extra attributes, sent as `Impersonate-Extra-<key>`.
    pub extra: BTreeMap<String, Vec<String>>,
    /// The provider that authenticated the caller, e.g. `token-file`.
    pub provider: String,
    /// The only cluster this credential may be used for (a cluster-scoped
    /// token); `None` for every cluster.
    pub cluster_scope: Option<String>,
    /// The id of the Paddock-issued token the caller presented, if any: what
    /// `logout` revokes and what audit records name.
    pub token_id: Option<String>,
    /// The user must change their password before anything else (the
    /// bootstrap admin's first login): only the password, `me` and logout
    /// endpoints admit them.
    pub password_change_required: bool,
}

impl Identity {
    /// Adds `system:authenticated` unless already present.
    pub fn with_authenticated_group(mut self) -> Self {
        if !self.groups.iter().any(|g| g == SYSTEM_AUTHENTICATED) {
            self.groups.push(SYSTEM_AUTHENTICATED.to_owned());
        }
        self
    }
}
