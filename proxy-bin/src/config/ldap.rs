//! `authentication.ldap[]`: one Active Directory or OpenLDAP directory per
//! entry, converted into the provider's [`LdapConfig`], which validates it
//! and resolves the per-kind defaults.
//!
//! ```yaml
//! name: corp
//! kind: activedirectory          # or openldap
//! servers: [ldaps://dc1.corp.example:636, ldap://dc2.corp.example]  # ldap:// = StartTLS
//! caFile: /etc/paddock/corp-ca.pem
//! bindDn: CN=paddock,OU=Service,DC=corp,DC=example
//! bindPasswordFile: /etc/paddock/ldap-password
//! userSearchBase: OU=People,DC=corp,DC=example
//! defaultLoginDomain: corp.example
//! membership: { strategy: inChain }
//! nestedGroups: { enabled: true, maxDepth: 8, maxGroups: 5000 }
//! ```

use std::path::PathBuf;

use proxy_core::authn::ldap::{
    config::{Dangerous, EnabledCheck, Membership, NestedGroups, PoolConfig},
    DirectoryKind, LdapConfig, RefreshConfig,
};
use secrecy::SecretString;
use serde::Deserialize;

/// One entry of `authentication.ldap:`. Settings left out take the
/// provider's defaults for the directory's kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LdapSection {
    /// The provider's name, used in logins (`{"provider": "<name>"}`).
    pub(crate) name: String,
    /// Active Directory or OpenLDAP.
    kind: DirectoryKind,
    /// Servers in failover order (`ldaps://` or StartTLS `ldap://`).
    servers: Vec<String>,
    /// CA bundle (PEM) to verify the servers with.
    ca_file: Option<PathBuf>,
    /// CA bundle given inline (PEM); wins over `caFile`.
    ca_pem: Option<String>,
    /// TCP + TLS connect timeout (default 5).
    connect_timeout_seconds: Option<u64>,
    /// Timeout of each LDAP operation (default 10).
    operation_timeout_seconds: Option<u64>,
    /// The service account's DN.
    bind_dn: String,
    /// The service account's password (or `bindPasswordFile`).
    bind_password: Option<SecretString>,
    /// A file holding the service account's password.
    bind_password_file: Option<PathBuf>,
    /// Where users are searched.
    user_search_base: String,
    /// Extra filter ANDed to the user search.
    user_search_filter: Option<String>,
    /// The users' object class.
    user_object_class: Option<String>,
    /// Attributes a login name is matched against.
    #[serde(default)]
    login_attributes: Vec<String>,
    /// AD: the domain appended to bare login names.
    default_login_domain: Option<String>,
    /// Display name attribute.
    display_name_attribute: Option<String>,
    /// Email attribute.
    email_attribute: Option<String>,
    /// How disabled accounts are recognised.
    enabled_check: Option<EnabledCheck>,
    /// Where groups are searched.
    group_search_base: Option<String>,
    /// The groups' object class.
    group_object_class: Option<String>,
    /// Group display name attribute.
    group_name_attribute: Option<String>,
    /// How groups are resolved (default `memberOf`).
    membership: Option<Membership>,
    /// Nested groups (opt-in).
    #[serde(default)]
    nested_groups: NestedGroups,
    /// Connection pool limits.
    #[serde(default)]
    pool: PoolConfig,
    /// Background refresh of groups and enabled state.
    #[serde(default)]
    refresh: RefreshConfig,
    /// Insecure settings.
    #[serde(default)]
    dangerous: Dangerous,
}

impl LdapSection {
    /// The provider's configuration (not yet validated).
    pub(crate) fn to_config(&self) -> LdapConfig {
        let mut config = LdapConfig::new(
            self.name.clone(),
            self.kind,
            self.servers.clone(),
            self.bind_dn.clone(),
            self.bind_password
                .clone()
                .unwrap_or_else(|| SecretString::from("")),
            self.user_search_base.clone(),
        );
        config.ca_file.clone_from(&self.ca_file);
        config.ca_pem.clone_from(&self.ca_pem);
        if let Some(secs) = self.connect_timeout_seconds {
            config.connect_timeout_seconds = secs;
        }
        if let Some(secs) = self.operation_timeout_seconds {
            config.operation_timeout_seconds = secs;
        }
        config
            .bind_password_file
            .clone_from(&self.bind_password_file);
        config
            .user_search_filter
            .clone_from(&self.user_search_filter);
        config.user_object_class.clone_from(&self.user_object_class);
        config.login_attributes.clone_from(&self.login_attributes);
        config
            .default_login_domain
            .clone_from(&self.default_login_domain);
        config
            .display_name_attribute
            .clone_from(&self.display_name_attribute);
        config.email_attribute.clone_from(&self.email_attribute);
        config.enabled_check.clone_from(&self.enabled_check);
        config.group_search_base.clone_from(&self.group_search_base);
        config
            .group_object_class
            .clone_from(&self.group_object_class);
        config
            .group_name_attribute
            .clone_from(&self.group_name_attribute);
        if let Some(membership) = &self.membership {
            config.membership = membership.clone();
        }
        config.nested_groups = self.nested_groups.clone();
        config.pool = self.pool.clone();
        config.refresh = self.refresh;
        config.dangerous = self.dangerous.clone();
        config
    }
}
