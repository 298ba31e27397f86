//! Configuration of one directory (one provider entry), validated once into
//! the [`Settings`] the provider runs on.
//!
//! YAML keys are camelCase like the rest of the configuration file:
//!
//! ```yaml
//! name: corp
//! kind: activedirectory          # or openldap
//! servers: [ldaps://dc1.corp.example:636, ldap://dc2.corp.example]  # ldap:// = StartTLS
//! caFile: /etc/paddock/corp-ca.pem
//! bindDn: CN=paddock,OU=Service,DC=corp,DC=example
//! bindPassword: "..."
//! userSearchBase: OU=People,DC=corp,DC=example
//! defaultLoginDomain: corp.example
//! groupSearchBase: OU=Groups,DC=corp,DC=example
//! membership: { strategy: inChain }
//! nestedGroups: { enabled: true, maxDepth: 8, maxGroups: 5000 }
//! ```

use std::{path::PathBuf, sync::Arc, time::Duration};

use rustls::ClientConfig;
use secrecy::SecretString;
use serde::Deserialize;

/// Which kind of directory a provider talks to: decides the defaults and the
/// principal id scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DirectoryKind {
    /// Microsoft Active Directory (or Samba AD DC): principals
    /// `activedirectory_user://<objectGUID>`.
    #[serde(rename = "activedirectory")]
    ActiveDirectory,
    /// OpenLDAP (or another RFC 4511 server): principals
    /// `openldap_user://<entryUUID>`.
    #[serde(rename = "openldap")]
    OpenLdap,
}

impl DirectoryKind {
    /// The prefix of user principal ids, e.g. `activedirectory_user`.
    pub fn user_scheme(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "activedirectory_user",
            Self::OpenLdap => "openldap_user",
        }
    }

    /// The prefix of group principal ids, e.g. `openldap_group`.
    pub fn group_scheme(self) -> &'static str {
        match self {
            Self::ActiveDirectory => "activedirectory_group",
            Self::OpenLdap => "openldap_group",
        }
    }
}

/// How a user's groups are found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "strategy", rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Membership {
    /// Read the group DNs from an attribute of the user entry (default
    /// `memberOf`).
    MemberOf {
        /// The attribute, default `memberOf`.
        #[serde(default = "member_of")]
        attribute: String,
    },
    /// Search groups whose attribute (default `member`) holds the user's DN.
    Member {
        /// The attribute, default `member`.
        #[serde(default = "member")]
        attribute: String,
    },
    /// posixGroup: search groups whose `memberUid` holds the user's uid.
    MemberUid {
        /// The group attribute, default `memberUid`.
        #[serde(default = "member_uid")]
        attribute: String,
        /// The user attribute whose value is matched, default `uid`.
        #[serde(default = "uid")]
        user_attribute: String,
    },
    /// Active Directory: `member:1.2.840.113556.1.4.1941:=<DN>`, which the
    /// server expands transitively. Always nested.
    InChain,
    /// Active Directory: the user's constructed `tokenGroups` SIDs (nested,
    /// security groups only), looked up by `objectSid`.
    TokenGroups,
}

fn member_of() -> String {
    "memberOf".into()
}
fn member() -> String {
    "member".into()
}
fn member_uid() -> String {
    "memberUid".into()
}
fn uid() -> String {
    "uid".into()
}

/// Nested groups: opt-in, with caps.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NestedGroups {
    /// Walk groups of groups (for `memberOf` and `member`: a bounded
    /// recursive walk with cycle detection). Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Levels above the direct groups, default 8.
    #[serde(default = "default_depth")]
    pub max_depth: u32,
    /// At most this many groups per user, default 5000; more are dropped
    /// with a warning.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
}

fn default_depth() -> u32 {
    8
}
fn default_max_groups() -> usize {
    5000
}

impl Default for NestedGroups {
    fn default() -> Self {
        Self {
            enabled: false,
            max_depth: default_depth(),
            max_groups: default_max_groups(),
        }
    }
}

/// How a disabled account is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub enum EnabledCheck {
    /// No check (OpenLDAP default): every found user is enabled.
    None,
    /// Active Directory (default there): `userAccountControl` bit 0x2
    /// (ACCOUNTDISABLE) set means disabled.
    UserAccountControl,
    /// Disabled when `attribute` has one of `disabledValues` (compared
    /// case-insensitively), or, with no values listed, when it is present at
    /// all (e.g. `pwdAccountLockedTime`).
    #[serde(rename_all = "camelCase")]
    Attribute {
        /// The attribute.
        attribute: String,
        /// Values meaning disabled.
        #[serde(default)]
        disabled_values: Vec<String>,
    },
}

/// Connection pool limits (per server).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PoolConfig {
    /// Connections open at once per server, default 8; more callers wait.
    #[serde(default = "default_pool_size")]
    pub max_size: usize,
    /// Idle connections kept per server, default 4.
    #[serde(default = "default_max_idle")]
    pub max_idle: usize,
    /// An idle connection older than this is closed, default 60 s.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// An idle connection unused this long is probed (a root DSE read) before
    /// it is handed out, default 10 s.
    #[serde(default = "default_health_check")]
    pub health_check_after_seconds: u64,
}

fn default_pool_size() -> usize {
    8
}
fn default_max_idle() -> usize {
    4
}
fn default_idle_timeout() -> u64 {
    60
}
fn default_health_check() -> u64 {
    10
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_size: default_pool_size(),
            max_idle: default_max_idle(),
            idle_timeout_seconds: default_idle_timeout(),
            health_check_after_seconds: default_health_check(),
        }
    }
}

/// Insecure settings, grouped so they show up in a grep.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Dangerous {
    /// Talk plain LDAP on `ldap://` servers (no StartTLS): passwords cross
    /// the network in clear text.
    #[serde(default)]
    pub allow_plaintext: bool,
}

/// The background refresh of a directory's users (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshConfig {
    /// Groups older than this are read again, default 3600.
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u64,
    /// Up to this much is added per user, so refreshes spread out, default 300.
    #[serde(default = "default_jitter")]
    pub jitter_seconds: u64,
    /// While the directory is down, the last known groups stay this long past
    /// their maximum age, default 86400; then they are dropped.
    #[serde(default = "default_grace")]
    pub grace_seconds: u64,
    /// How often due users are looked for, default 60.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            max_age_seconds: default_max_age(),
            jitter_seconds: default_jitter(),
            grace_seconds: default_grace(),
            interval_seconds: default_interval(),
        }
    }
}

fn default_max_age() -> u64 {
    3600
}
fn default_jitter() -> u64 {
    300
}
fn default_grace() -> u64 {
    86_400
}
fn default_interval() -> u64 {
    60
}

/// One directory, as written in the configuration file.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct LdapConfig {
    /// The provider's name, for logs, errors and `Unavailable { provider }`.
    pub name: String,
    /// Active Directory or OpenLDAP.
    pub kind: DirectoryKind,
    /// Servers in failover order: `ldaps://host[:port]`, or `ldap://host[:port]`
    /// which always upgrades with StartTLS (unless
    /// [`Dangerous::allow_plaintext`]).
    pub servers: Vec<String>,
    /// CA bundle (PEM) to verify servers with; default the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// CA bundle given inline (PEM); wins over `caFile`.
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// TCP + TLS connect timeout, default 5 s.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_seconds: u64,
    /// Timeout of each LDAP operation, default 10 s.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_seconds: u64,
    /// The service account's DN (AD also accepts a UPN here).
    pub bind_dn: String,
    /// The service account's password (or use `bindPasswordFile`).
    #[serde(default = "empty_secret")]
    pub bind_password: SecretString,
    /// A file holding the service account's password (a mounted secret);
    /// read at load, trailing newline removed.
    #[serde(default)]
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched (subtree).
    pub user_search_base: String,
    /// Extra filter ANDed to the user search, e.g. `(memberOf=CN=k8s,...)`.
    #[serde(default)]
    pub user_search_filter: Option<String>,
    /// The users' object class; default `user` (AD) or `inetOrgPerson`.
    #[serde(default)]
    pub user_object_class: Option<String>,
    /// Attributes a login name is matched against (any of them); default
    /// `sAMAccountName` and `userPrincipalName` (AD) or `uid`.
    #[serde(default)]
    pub login_attributes: Vec<String>,
    /// AD: the domain appended to bare names for `userPrincipalName`
    /// matching (`alice` → `alice@corp.example`); `DOMAIN\alice` and
    /// `alice@realm` are understood either way.
    #[serde(default)]
    pub default_login_domain: Option<String>,
    /// Display name attribute; default `displayName` (AD) or `cn`.
    #[serde(default)]
    pub display_name_attribute: Option<String>,
    /// Email attribute, default `mail`.
    #[serde(default)]
    pub email_attribute: Option<String>,
    /// How disabled accounts are recognised; default `userAccountControl`
    /// (AD) or none.
    #[serde(default)]
    pub enabled_check: Option<EnabledCheck>,
    /// Where groups are searched; default the user search base.
    #[serde(default)]
    pub group_search_base: Option<String>,
    /// The groups' object class; default `group` (AD) or `groupOfNames`
    /// (`posixGroup` with the `memberUid` strategy).
    #[serde(default)]
    pub group_object_class: Option<String>,
    /// Group display name attribute, default `cn`.
    #[serde(default)]
    pub group_name_attribute: Option<String>,
    /// How groups are resolved; default `memberOf`.
    #[serde(default = "default_membership")]
    pub membership: Membership,
    /// Nested groups (opt-in).
    #[serde(default)]
    pub nested_groups: NestedGroups,
    /// Connection pool limits.
    #[serde(default)]
    pub pool: PoolConfig,
    /// Background refresh of groups and enabled state.
    #[serde(default)]
    pub refresh: RefreshConfig,
    /// Insecure settings.
    #[serde(default)]
    pub dangerous: Dangerous,
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn default_connect_timeout() -> u64 {
    5
}
fn default_operation_timeout() -> u64 {
    10
}
fn default_membership() -> Membership {
    Membership::MemberOf {
        attribute: member_of(),
    }
}

impl std::fmt::Debug for LdapConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("servers", &self.servers)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .field("user_search_base", &self.user_search_base)
            .field("membership", &self.membership)
            .field("nested_groups", &self.nested_groups)
            .finish_non_exhaustive()
    }
}

impl LdapConfig {
    /// A configuration with every optional setting at its default.
    pub fn new(
        name: impl Into<String>,
        kind: DirectoryKind,
        servers: Vec<String>,
        bind_dn: impl Into<String>,
        bind_password: SecretString,
        user_search_base: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            kind,
            servers,
            ca_file: None,
            ca_pem: None,
            connect_timeout_seconds: default_connect_timeout(),
            operation_timeout_seconds: default_operation_timeout(),
            bind_dn: bind_dn.into(),
            bind_password,
            bind_password_file: None,
            user_search_base: user_search_base.into(),
            user_search_filter: None,
            user_object_class: None,
            login_attributes: Vec::new(),
            default_login_domain: None,
            display_name_attribute: None,
            email_attribute: None,
            enabled_check: None,
            group_search_base: None,
            group_object_class: None,
            group_name_attribute: None,
            membership: default_membership(),
            nested_groups: NestedGroups::default(),
            pool: PoolConfig::default(),
            refresh: RefreshConfig::default(),
            dangerous: Dangerous::default(),
        }
    }

    /// Checks the configuration and resolves defaults. Errors name the key.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            key: key.to_owned(),
            message,
        };
        let ad = self.kind == DirectoryKind::ActiveDirectory;
        if self.name.trim().is_empty() {
            return Err(err("name", "must not be empty".into()));
        }
        if self.servers.is_empty() {
            return Err(err("servers", "list at least one server".into()));
        }
        let mut servers = Vec::new();
        for (i, url) in self.servers.iter().enumerate() {
            let key = format!("servers[{i}]");
            let (scheme, rest) = url
                .split_once("://")
                .ok_or_else(|| err(&key, format!("{url:?} is not an ldap:// or ldaps:// URL")))?;
            let hostport = rest.trim_end_matches('/');
            if hostport.is_empty() || hostport.contains(['/', '?', '@']) {
                return Err(err(
                    &key,
                    format!("{url:?}: give scheme://host[:port] only"),
                ));
            }
            let transport = match scheme.to_ascii_lowercase().as_str() {
                "ldaps" => Transport::Ldaps,
                "ldap" if self.dangerous.allow_plaintext => Transport::Plain,
                "ldap" => Transport::StartTls,
                other => {
                    return Err(err(
                        &key,
                        format!("scheme {other:?}: use ldaps:// or ldap:// (StartTLS)"),
                    ))
                }
            };
            let default_port = if transport == Transport::Ldaps {
                636
            } else {
                389
            };
            let with_port = if hostport.starts_with('[') {
                if hostport.ends_with(']') {
                    format!("{hostport}:{default_port}")
                } else {
                    hostport.to_owned()
                }
            } else if hostport.contains(':') {
                hostport.to_owned()
            } else {
                format!("{hostport}:{default_port}")
            };
            let scheme = if transport == Transport::Ldaps {
                "ldaps"
            } else {
                "ldap"
            };
            servers.push(Server {
                url: format!("{scheme}://{with_port}"),
                transport,
            });
        }
        if self.bind_dn.trim().is_empty() {
            return Err(err("bindDn", "a service account is required".into()));
        }
        let mut bind_password = self.bind_password.clone();
        if let Some(file) = &self.bind_password_file {
            let text = std::fs::read_to_string(file).map_err(|e| {
                err(
                    "bindPasswordFile",
                    format!("cannot read {}: {e}", file.display()),
                )
            })?;
            bind_password = SecretString::from(text.trim_end_matches(['\r', '\n']));
        }
        {
            use secrecy::ExposeSecret;
            if bind_password.expose_secret().is_empty() {
                return Err(err(
                    "bindPassword",
                    "must not be empty (an empty password is an unauthenticated bind)".into(),
                ));
            }
        }
        if self.user_search_base.trim().is_empty() {
            return Err(err("userSearchBase", "must not be empty".into()));
        }
        if let Some(f) = &self.user_search_filter {
            if !one_balanced_filter(f) || ldap3::parse_filter(f).is_err() {
                return Err(err(
                    "userSearchFilter",
                    format!("{f:?} is not one valid parenthesised LDAP filter"),
                ));
            }
        }
        for (key, v) in [
            ("connectTimeoutSeconds", self.connect_timeout_seconds),
            ("operationTimeoutSeconds", self.operation_timeout_seconds),
        ] {
            if v == 0 {
                return Err(err(key, "must be at least 1".into()));
            }
        }
        if self.pool.max_size == 0 {
            return Err(err("pool.maxSize", "must be at least 1".into()));
        }
        match (&self.membership, self.kind) {
            (Membership::InChain | Membership::TokenGroups, DirectoryKind::OpenLdap) => {
                return Err(err(
                    "membership.strategy",
                    "inChain and tokenGroups are Active Directory features".into(),
                ));
            }
            (Membership::MemberUid { .. }, _) if self.nested_groups.enabled => {
                return Err(err(
                    "nestedGroups.enabled",
                    "posixGroup (memberUid) groups do not nest".into(),
                ));
            }
            _ => {}
        }
        if self.nested_groups.max_groups == 0 {
            return Err(err("nestedGroups.maxGroups", "must be at least 1".into()));
        }
        let tls = if servers.iter().any(|s| s.transport != Transport::Plain) {
            Some(self.tls_config().map_err(|m| {
                err(
                    if self.ca_pem.is_some() {
                        "caPem"
                    } else {
                        "caFile"
                    },
                    m,
                )
            })?)
        } else {
            None
        };
        let login_attributes = if self.login_attributes.is_empty() {
            if ad {
                vec!["sAMAccountName".to_owned(), "userPrincipalName".to_owned()]
            } else {
                vec!["uid".to_owned()]
            }
        } else {
            self.login_attributes.clone()
        };
        for (i, a) in login_attributes.iter().enumerate() {
            if !is_attribute_name(a) {
                return Err(err(
                    &format!("loginAttributes[{i}]"),
                    format!("{a:?} is not an attribute name"),
                ));
            }
        }
        let pick = |v: &Option<String>, ad_default: &str, ldap_default: &str| {
            v.clone()
                .unwrap_or_else(|| if ad { ad_default } else { ldap_default }.to_owned())
        };
        let group_object_class = self.group_object_class.clone().unwrap_or_else(|| {
            match (&self.membership, ad) {
                (_, true) => "group",
                (Membership::MemberUid { .. }, false) => "posixGroup",
                _ => "groupOfNames",
            }
            .to_owned()
        });
        let settings = Settings {
            name: self.name.clone(),
            kind: self.kind,
            servers,
            tls,
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds),
            operation_timeout: Duration::from_secs(self.operation_timeout_seconds),
            bind_dn: self.bind_dn.clone(),
            bind_password,
            user_search_base: self.user_search_base.clone(),
            user_search_filter: self.user_search_filter.clone(),
            user_object_class: pick(&self.user_object_class, "user", "inetOrgPerson"),
            login_attributes,
            default_login_domain: self.default_login_domain.clone(),
            display_name_attribute: pick(&self.display_name_attribute, "displayName", "cn"),
            email_attribute: pick(&self.email_attribute, "mail", "mail"),
            enabled_check: self.enabled_check.clone().unwrap_or(if ad {
                EnabledCheck::UserAccountControl
            } else {
                EnabledCheck::None
            }),
            group_search_base: self
                .group_search_base
                .clone()
                .unwrap_or_else(|| self.user_search_base.clone()),
            group_object_class,
            group_name_attribute: pick(&self.group_name_attribute, "cn", "cn"),
            membership: self.membership.clone(),
            nested_groups: self.nested_groups.clone(),
            pool: self.pool.clone(),
            refresh: self.refresh,
        };
        if self.refresh.max_age_seconds < 60 || self.refresh.interval_seconds == 0 {
            return Err(err(
                "refresh",
                "maxAgeSeconds must be at least 60 and intervalSeconds at least 1".into(),
            ));
        }
        for (key, a) in [
            ("userObjectClass", &settings.user_object_class),
            ("displayNameAttribute", &settings.display_name_attribute),
            ("emailAttribute", &settings.email_attribute),
            ("groupObjectClass", &settings.group_object_class),
            ("groupNameAttribute", &settings.group_name_attribute),
        ] {
            if !is_attribute_name(a) {
                return Err(err(key, format!("{a:?} is not an attribute name")));
            }
        }
        Ok(settings)
    }

    fn tls_config(&self) -> Result<Arc<ClientConfig>, String> {
        let pem = match (&self.ca_pem, &self.ca_file) {
            (Some(pem), _) => Some(pem.clone().into_bytes()),
            (None, Some(path)) => {
                Some(std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?)
            }
            (None, None) => None,
        };
        let roots = crate::net::tls::roots(pem.as_deref())?;
        let config = ClientConfig::builder_with_provider(crate::net::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

/// `true` when `f` is one parenthesised filter: parentheses balance and
/// close only at the end (literal parentheses in values are `\28`/`\29`).
fn one_balanced_filter(f: &str) -> bool {
    let mut depth = 0usize;
    for (i, c) in f.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                let Some(d) = depth.checked_sub(1) else {
                    return false;
                };
                depth = d;
                if depth == 0 && i + 1 != f.len() {
                    return false;
                }
            }
            _ if depth == 0 => return false,
            _ => {}
        }
    }
    depth == 0 && f.starts_with('(')
}

/// `true` for an attribute description (RFC 4512 `descr` or a numeric OID).
fn is_attribute_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    /// The key path inside the provider entry, e.g. `servers[1]`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// How a server is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// `ldaps://`: TLS from the first byte.
    Ldaps,
    /// `ldap://` upgraded with StartTLS before anything else is sent.
    StartTls,
    /// `ldap://` in clear text (only under `dangerous.allowPlaintext`).
    Plain,
}

/// One server of the failover list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// How it is reached.
    pub transport: Transport,
}

/// A validated configuration with every default resolved.
#[derive(Clone)]
#[non_exhaustive]
pub struct Settings {
    /// Provider name.
    pub name: String,
    /// Directory kind.
    pub kind: DirectoryKind,
    /// Servers in failover order.
    pub servers: Vec<Server>,
    /// TLS client configuration (absent when every server is plaintext).
    pub tls: Option<Arc<ClientConfig>>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Per-operation timeout.
    pub operation_timeout: Duration,
    /// Service account DN.
    pub bind_dn: String,
    /// Service account password.
    pub bind_password: SecretString,
    /// User search base.
    pub user_search_base: String,
    /// Extra user filter.
    pub user_search_filter: Option<String>,
    /// User object class.
    pub user_object_class: String,
    /// Login attributes.
    pub login_attributes: Vec<String>,
    /// AD default login domain.
    pub default_login_domain: Option<String>,
    /// Display name attribute.
    pub display_name_attribute: String,
    /// Email attribute.
    pub email_attribute: String,
    /// Enabled check.
    pub enabled_check: EnabledCheck,
    /// Group search base.
    pub group_search_base: String,
    /// Group object class.
    pub group_object_class: String,
    /// Group display name attribute.
    pub group_name_attribute: String,
    /// Membership strategy.
    pub membership: Membership,
    /// Nested group caps.
    pub nested_groups: NestedGroups,
    /// Pool limits.
    pub pool: PoolConfig,
    /// Background refresh.
    pub refresh: RefreshConfig,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("servers", &self.servers)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(kind: DirectoryKind, servers: &[&str]) -> LdapConfig {
        LdapConfig::new(
            "corp",
            kind,
            servers.iter().map(|s| (*s).to_owned()).collect(),
            "cn=svc,dc=example,dc=org",
            SecretString::from("pw"),
            "ou=people,dc=example,dc=org",
        )
    }

    #[test]
    fn transports_and_default_ports() {
        let s = base(
            DirectoryKind::OpenLdap,
            &[
                "ldaps://a.example",
                "ldap://b.example:1389/",
                "ldap://[::1]",
            ],
        )
        .validate()
        .unwrap();
        assert_eq!(s.servers[0].url, "ldaps://a.example:636");
        assert_eq!(s.servers[0].transport, Transport::Ldaps);
        assert_eq!(s.servers[1].url, "ldap://b.example:1389");
        assert_eq!(s.servers[1].transport, Transport::StartTls);
        assert_eq!(s.servers[2].url, "ldap://[::1]:389");
        assert!(s.tls.is_some());
    }

    #[test]
    fn plaintext_only_under_dangerous() {
        let mut c = base(DirectoryKind::OpenLdap, &["ldap://a.example"]);
        c.dangerous.allow_plaintext = true;
        let s = c.validate().unwrap();
        assert_eq!(s.servers[0].transport, Transport::Plain);
        assert!(s.tls.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let e = base(DirectoryKind::OpenLdap, &["ldaps://a", "http://b"])
            .validate()
            .unwrap_err();
        assert_eq!(e.key, "servers[1]");
        let e = base(DirectoryKind::OpenLdap, &[]).validate().unwrap_err();
        assert_eq!(e.key, "servers");
        let mut c = base(DirectoryKind::OpenLdap, &["ldaps://a"]);
        c.bind_password = SecretString::from("");
        assert_eq!(c.validate().unwrap_err().key, "bindPassword");
        let mut c = base(DirectoryKind::OpenLdap, &["ldaps://a"]);
        c.membership = Membership::InChain;
        assert_eq!(c.validate().unwrap_err().key, "membership.strategy");
        let mut c = base(DirectoryKind::OpenLdap, &["ldaps://a"]);
        c.login_attributes = vec!["uid)(x".into()];
        assert_eq!(c.validate().unwrap_err().key, "loginAttributes[0]");
        let mut c = base(DirectoryKind::OpenLdap, &["ldaps://a"]);
        c.ca_pem = Some("not a pem".into());
        assert_eq!(c.validate().unwrap_err().key, "caPem");
        let mut c = base(DirectoryKind::OpenLdap, &["ldaps://a"]);
        c.user_search_filter = Some("(memberOf=cn=k8s".into());
        assert_eq!(c.validate().unwrap_err().key, "userSearchFilter");
        c.user_search_filter = Some("(&(a=b)(c=d)".into());
        assert_eq!(c.validate().unwrap_err().key, "userSearchFilter");
        c.user_search_filter = Some("(a=b)(c=d)".into());
        assert_eq!(c.validate().unwrap_err().key, "userSearchFilter");
        c.user_search_filter = Some("(&(a=b)(c=d))".into());
        assert!(c.validate().is_ok());
    }

    #[test]
    fn kind_defaults() {
        let ad = base(DirectoryKind::ActiveDirectory, &["ldaps://dc"])
            .validate()
            .unwrap();
        assert_eq!(ad.login_attributes, ["sAMAccountName", "userPrincipalName"]);
        assert_eq!(ad.enabled_check, EnabledCheck::UserAccountControl);
        assert_eq!(ad.user_object_class, "user");
        assert_eq!(ad.group_object_class, "group");
        let ol = base(DirectoryKind::OpenLdap, &["ldaps://ol"])
            .validate()
            .unwrap();
        assert_eq!(ol.login_attributes, ["uid"]);
        assert_eq!(ol.enabled_check, EnabledCheck::None);
        assert_eq!(ol.group_search_base, "ou=people,dc=example,dc=org");
    }

    #[test]
    fn yaml_camel_case_and_redacted_debug() {
        let c: LdapConfig = serde_json::from_value(serde_json::json!({
            "name": "ol",
            "kind": "openldap",
            "servers": ["ldaps://ol"],
            "bindDn": "cn=svc",
            "bindPassword": "s3cret-value",
            "userSearchBase": "dc=x",
            "membership": {"strategy": "memberUid"},
            "enabledCheck": {"type": "attribute", "attribute": "employeeType", "disabledValues": ["disabled"]},
            "nestedGroups": {"enabled": false},
        }))
        .unwrap();
        assert!(
            matches!(c.membership, Membership::MemberUid { ref attribute, .. } if attribute == "memberUid")
        );
        assert!(!format!("{c:?}").contains("s3cret-value"));
        let s = c.validate().unwrap();
        assert_eq!(s.group_object_class, "posixGroup");
        assert!(!format!("{s:?}").contains("s3cret-value"));
        let unknown = serde_json::from_value::<LdapConfig>(serde_json::json!({
            "name": "ol", "kind": "openldap", "servers": [], "bindDn": "x",
            "bindPassword": "y", "userSearchBase": "z", "bindPasword": "typo",
        }));
        assert!(unknown.is_err());
    }
}
