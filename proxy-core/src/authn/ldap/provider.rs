//! The provider: login (search-then-bind), refresh, principal search.

use std::sync::Arc;

use ldap3::{Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};

use crate::authn::external::AccountGate;

use super::{
    config::{ConfigError, DirectoryKind, EnabledCheck, LdapConfig, Settings},
    escape::{filter_bytes, filter_value},
    groups::{attr, first, id_attribute, principal_id, user_attributes, Resolver},
    guid::guid_from_string,
    pool::{Conn, OpError, Pool, PoolError},
    DirectoryUser, InvalidReason, LdapLoginError, Principal,
};

/// Login names longer than this are refused without a search.
const MAX_LOGIN_NAME: usize = 256;
/// [`LdapProvider::search_principals`] returns at most this many.
pub const MAX_SEARCH_RESULTS: usize = 100;
/// Queries longer than this are refused.
const MAX_QUERY: usize = 128;

/// AD `userAccountControl` ACCOUNTDISABLE.
const UAC_ACCOUNTDISABLE: u32 = 0x2;

/// An Active Directory or OpenLDAP directory, with a connection pool per
/// server.
pub struct LdapProvider {
    settings: Arc<Settings>,
    pool: Pool,
}

impl std::fmt::Debug for LdapProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Where a step failed, to decide whether a retry on a fresh connection is
/// safe (never once the user's password was sent: it could count twice
/// towards a lockout).
enum Failure {
    BeforeUserBind(OpError),
    Final(LdapLoginError),
}

impl LdapProvider {
    /// Validates `config` and builds the provider. No connection is opened
    /// until the first login.
    pub fn new(config: &LdapConfig) -> Result<Self, ConfigError> {
        Ok(Self::from_settings(config.validate()?))
    }

    /// A provider over already validated settings.
    pub fn from_settings(settings: Settings) -> Self {
        let settings = Arc::new(settings);
        Self {
            pool: Pool::new(settings.clone()),
            settings,
        }
    }

    /// The provider's name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// How often and how long users' groups are refreshed.
    pub fn refresh_settings(&self) -> super::RefreshConfig {
        self.settings.refresh
    }

    /// Active Directory or OpenLDAP.
    pub fn kind(&self) -> DirectoryKind {
        self.settings.kind
    }

    /// Checks `username` / `password` against the directory and returns the
    /// user with their groups.
    ///
    /// An empty password is refused before any I/O. Every credential problem
    /// is [`LdapLoginError::InvalidCredentials`] (the reason is for logs);
    /// a directory that cannot be reached is [`LdapLoginError::Unavailable`].
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<DirectoryUser, LdapLoginError> {
        self.login_gated(username, password, &|_| Ok(())).await
    }

    /// [`LdapProvider::login`], asking `gate` with the principal id of the
    /// entry the login name found before the user bind: a refusal is
    /// [`LdapLoginError::Throttled`] and no bind happens. `alice`,
    /// `CORP\alice` and `alice@corp.example` reach the gate with one id.
    pub async fn login_gated(
        &self,
        username: &str,
        password: &SecretString,
        gate: AccountGate<'_>,
    ) -> Result<DirectoryUser, LdapLoginError> {
        let result = self.login_inner(username, password, gate).await;
        match &result {
            Ok(user) => tracing::info!(
                auth.provider = %self.settings.name,
                auth.user = %user.principal.id,
                groups = user.groups.len(),
                "directory login succeeded"
            ),
            Err(LdapLoginError::InvalidCredentials { reason }) => tracing::info!(
                auth.provider = %self.settings.name,
                auth.reason = %reason,
                "directory login refused"
            ),
            Err(LdapLoginError::Throttled { .. }) => tracing::info!(
                auth.provider = %self.settings.name,
                auth.reason = "throttled",
                "directory login refused before the bind"
            ),
            Err(e) => tracing::warn!(
                auth.provider = %self.settings.name,
                error = %e,
                "directory login failed"
            ),
        }
        result
    }

    async fn login_inner(
        &self,
        username: &str,
        password: &SecretString,
        gate: AccountGate<'_>,
    ) -> Result<DirectoryUser, LdapLoginError> {
        // RFC 4513 §5.1.2: a DN with an empty password is an unauthenticated
        // bind that many servers answer with success. Decided here, first.
        if password.expose_secret().is_empty() {
            return Err(LdapLoginError::invalid(InvalidReason::EmptyPassword));
        }
        let username = username.trim();
        if username.is_empty() || username.len() > MAX_LOGIN_NAME {
            return Err(LdapLoginError::invalid(InvalidReason::InvalidLoginName));
        }
        let filter = self.user_filter(username);
        let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        match self.login_on(&mut conn, &filter, password, gate).await {
            Ok(user) => {
                conn.release();
                Ok(user)
            }
            Err(Failure::BeforeUserBind(OpError::Transport(m))) if conn.reused() => {
                // The pooled connection may have been closed by the server
                // while idle: one more try on a new one.
                tracing::debug!(ldap.server = conn.server(), error = %m, "retrying on a new connection");
                drop(conn);
                let mut conn = self
                    .pool
                    .get_fresh()
                    .await
                    .map_err(|e| self.pool_error(e))?;
                match self.login_on(&mut conn, &filter, password, gate).await {
                    Ok(user) => {
                        conn.release();
                        Ok(user)
                    }
                    Err(f) => Err(self.failure(f, conn)),
                }
            }
            Err(f) => Err(self.failure(f, conn)),
        }
    }

    fn failure(&self, failure: Failure, conn: Conn) -> LdapLoginError {
        match failure {
            Failure::BeforeUserBind(e) => {
                conn.release();
                self.op_error(e)
            }
            Failure::Final(e) => {
                // `release` keeps the connection only if it is bound as the
                // service account again.
                conn.release();
                e
            }
        }
    }

    async fn login_on(
        &self,
        conn: &mut Conn,
        filter: &str,
        password: &SecretString,
        gate: AccountGate<'_>,
    ) -> Result<DirectoryUser, Failure> {
        let attrs = self.user_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let (mut entries, truncated) = conn
            .search_small(
                &self.settings.user_search_base,
                Scope::Subtree,
                filter,
                &attrs,
                2,
            )
            .await
            .map_err(Failure::BeforeUserBind)?;
        let found = match entries.pop() {
            Some(entry) if entries.is_empty() && !truncated => Ok(entry),
            Some(_) => {
                tracing::warn!(
                    auth.provider = %self.settings.name,
                    "the user filter matched several entries; refusing the login"
                );
                Err(InvalidReason::AmbiguousUser)
            }
            None => Err(InvalidReason::UnknownUser),
        };
        let entry = match found {
            Ok(entry) => entry,
            Err(reason) => {
                // Bind anyway, as a DN that cannot exist and with a random
                // password: a name the directory does not know then costs the
                // same round trips as a wrong password, so the answer time does
                // not tell which names exist.
                let dn = format!(
                    "cn=paddock-no-such-user-{:032x},{}",
                    rand::random::<u128>(),
                    self.settings.user_search_base
                );
                let password = SecretString::from(format!("{:032x}", rand::random::<u128>()));
                if let Ok(()) = self.bind_as(conn, &dn, &password).await? {
                    tracing::warn!(
                        auth.provider = %self.settings.name,
                        "the directory accepted a bind as a DN that does not exist"
                    );
                }
                return Err(Failure::Final(LdapLoginError::invalid(reason)));
            }
        };
        let account = principal_id(self.settings.kind, self.settings.kind.user_scheme(), &entry);
        if let Err(throttled) = gate(&account) {
            return Err(Failure::Final(LdapLoginError::Throttled {
                retry_after_secs: throttled.retry_after_secs,
            }));
        }
        if let Err((rc, text)) = self.bind_as(conn, &entry.dn, password).await? {
            return Err(Failure::Final(LdapLoginError::invalid(bind_reason(
                rc, &text,
            ))));
        }
        if !self.enabled(&entry) {
            return Err(Failure::Final(LdapLoginError::invalid(
                InvalidReason::AccountDisabled,
            )));
        }
        self.user_from_entry(conn, entry)
            .await
            .map_err(|e| Failure::Final(self.op_error(e)))
    }

    /// Binds `conn` as `dn`, then as the service account again whatever the
    /// outcome: the connection goes back to the pool as the service account
    /// or not at all. `Ok(Err((code, text)))` is a refused bind.
    async fn bind_as(
        &self,
        conn: &mut Conn,
        dn: &str,
        password: &SecretString,
    ) -> Result<Result<(), (u32, String)>, Failure> {
        let bound = conn.bind(dn, password).await;
        let rebound = match &bound {
            Err(OpError::Transport(_)) => Ok(()),
            _ => self.pool.rebind_service(conn).await,
        };
        match bound {
            Ok(()) => rebound
                .map(Ok)
                .map_err(|e| Failure::Final(self.op_error(e))),
            Err(OpError::Result { rc, text }) => Ok(Err((rc, text))),
            Err(e @ OpError::Transport(_)) => Err(Failure::Final(self.op_error(e))),
        }
    }

    /// Reads `user` again (by DN, then by its stable id if the entry moved):
    /// the enabled state and the groups. A user who disappeared or was
    /// disabled is [`LdapLoginError::InvalidCredentials`].
    pub async fn refresh(&self, user: &DirectoryUser) -> Result<DirectoryUser, LdapLoginError> {
        let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        let result = self.refresh_on(&mut conn, user).await;
        conn.release();
        result
    }

    async fn refresh_on(
        &self,
        conn: &mut Conn,
        user: &DirectoryUser,
    ) -> Result<DirectoryUser, LdapLoginError> {
        let attrs = self.user_attrs();
        let attrs: Vec<&str> = attrs.iter().map(String::as_str).collect();
        let by_dn = conn
            .search_small(&user.dn, Scope::Base, "(objectClass=*)", &attrs, 1)
            .await;
        let mut entry = match by_dn {
            Ok((mut entries, _)) => entries.pop(),
            // 32 = noSuchObject: renamed or moved.
            Err(OpError::Result { rc: 32, .. }) => None,
            Err(e) => return Err(self.op_error(e)),
        };
        let expected_id = &user.principal.id;
        let user_scheme = self.settings.kind.user_scheme();
        if let Some(e) = &entry {
            if principal_id(self.settings.kind, user_scheme, e) != *expected_id {
                // Another object now has this DN.
                entry = None;
            }
        }
        if entry.is_none() {
            if let Some(filter) = self.id_filter(expected_id) {
                let (mut entries, _) = conn
                    .search_small(
                        &self.settings.user_search_base,
                        Scope::Subtree,
                        &filter,
                        &attrs,
                        2,
                    )
                    .await
                    .map_err(|e| self.op_error(e))?;
                if entries.len() == 1 {
                    entry = entries.pop();
                }
            }
        }
        let Some(entry) = entry else {
            return Err(LdapLoginError::invalid(InvalidReason::UnknownUser));
        };
        if !self.enabled(&entry) {
            return Err(LdapLoginError::invalid(InvalidReason::AccountDisabled));
        }
        self.user_from_entry(conn, entry)
            .await
            .map_err(|e| self.op_error(e))
    }

    /// Users and groups whose names contain `query` (escaped; `*` is a
    /// literal), at most `limit` (capped at [`MAX_SEARCH_RESULTS`]). An empty
    /// query, or one longer than 128 bytes, finds nothing.
    pub async fn search_principals(
        &self,
        query: &str,
        limit: usize,
    ) -> Result<Vec<Principal>, LdapLoginError> {
        let query = query.trim();
        let limit = limit.min(MAX_SEARCH_RESULTS);
        if query.is_empty() || query.len() > MAX_QUERY || limit == 0 {
            return Ok(Vec::new());
        }
        let s = &self.settings;
        let q = filter_value(query);
        let mut user_terms = String::new();
        let mut names: Vec<&str> = s.login_attributes.iter().map(String::as_str).collect();
        names.push(&s.display_name_attribute);
        for a in &names {
            user_terms.push_str(&format!("({a}=*{q}*)"));
        }
        let user_filter = format!(
            "(&(objectClass={}){}(|{user_terms}))",
            filter_value(&s.user_object_class),
            s.user_search_filter.as_deref().unwrap_or("")
        );
        let group_filter = format!(
            "(&(objectClass={})({}=*{q}*))",
            filter_value(&s.group_object_class),
            s.group_name_attribute
        );
        let mut conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        let size = i32::try_from(limit).unwrap_or(i32::MAX);
        let user_attrs = self.user_attrs();
        let user_attrs: Vec<&str> = user_attrs.iter().map(String::as_str).collect();
        let users = conn
            .search_small(
                &s.user_search_base,
                Scope::Subtree,
                &user_filter,
                &user_attrs,
                size,
            )
            .await
            .map_err(|e| self.op_error(e))?
            .0;
        let group_attrs = [id_attribute(s.kind), s.group_name_attribute.as_str()];
        let groups = conn
            .search_small(
                &s.group_search_base,
                Scope::Subtree,
                &group_filter,
                &group_attrs,
                size,
            )
            .await
            .map_err(|e| self.op_error(e))?
            .0;
        conn.release();
        let mut out: Vec<Principal> = users
            .iter()
            .map(|e| Principal {
                id: principal_id(s.kind, s.kind.user_scheme(), e),
                display_name: self.display_name(e),
            })
            .chain(groups.iter().map(|e| {
                Principal {
                    id: principal_id(s.kind, s.kind.group_scheme(), e),
                    display_name: first(e, &s.group_name_attribute)
                        .map(str::to_owned)
                        .unwrap_or_else(|| e.dn.clone()),
                }
            }))
            .collect();
        out.truncate(limit);
        Ok(out)
    }

    /// Opens (or reuses) a connection and binds the service account: for
    /// readiness checks.
    pub async fn check(&self) -> Result<(), LdapLoginError> {
        let conn = self.pool.get().await.map_err(|e| self.pool_error(e))?;
        conn.release();
        Ok(())
    }

    /// Logs in like [`LdapProvider::login`] but on a connection opened for
    /// this login alone and closed afterwards (benchmarks compare it with
    /// the pool).
    #[doc(hidden)]
    pub async fn login_unpooled(
        &self,
        username: &str,
        password: &SecretString,
    ) -> Result<DirectoryUser, LdapLoginError> {
        if password.expose_secret().is_empty() {
            return Err(LdapLoginError::invalid(InvalidReason::EmptyPassword));
        }
        let filter = self.user_filter(username.trim());
        let mut conn = self
            .pool
            .get_fresh()
            .await
            .map_err(|e| self.pool_error(e))?;
        self.login_on(&mut conn, &filter, password, &|_| Ok(()))
            .await
            .map_err(|f| match f {
                Failure::BeforeUserBind(e) => self.op_error(e),
                Failure::Final(e) => e,
            })
    }

    async fn user_from_entry(
        &self,
        conn: &mut Conn,
        entry: SearchEntry,
    ) -> Result<DirectoryUser, OpError> {
        let s = &self.settings;
        let groups = Resolver::new(s).resolve(conn, &entry).await?;
        let username = s
            .login_attributes
            .iter()
            .find_map(|a| first(&entry, a))
            .unwrap_or_default()
            .to_owned();
        let display_name = self.display_name(&entry);
        let email = first(&entry, &s.email_attribute).map(str::to_owned);
        Ok(DirectoryUser {
            principal: Principal {
                id: principal_id(s.kind, s.kind.user_scheme(), &entry),
                display_name: display_name.clone(),
            },
            username,
            display_name,
            email,
            dn: entry.dn,
            groups,
        })
    }

    fn display_name(&self, entry: &SearchEntry) -> String {
        let s = &self.settings;
        first(entry, &s.display_name_attribute)
            .or_else(|| s.login_attributes.iter().find_map(|a| first(entry, a)))
            .map(str::to_owned)
            .unwrap_or_else(|| entry.dn.clone())
    }

    fn user_attrs(&self) -> Vec<String> {
        let s = &self.settings;
        let mut attrs = vec![
            id_attribute(s.kind).to_owned(),
            s.display_name_attribute.clone(),
            s.email_attribute.clone(),
        ];
        attrs.extend(s.login_attributes.iter().cloned());
        match &s.enabled_check {
            EnabledCheck::UserAccountControl => attrs.push("userAccountControl".into()),
            EnabledCheck::Attribute { attribute, .. } => attrs.push(attribute.clone()),
            _ => {}
        }
        attrs.extend(user_attributes(s));
        attrs.sort_by_key(|a| a.to_ascii_lowercase());
        attrs.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        attrs
    }

    /// `(&(objectClass=<class>)<extra>(|(attr=value)…))`, every value escaped
    /// once. AD names: `DOMAIN\user` matches `sAMAccountName=user`;
    /// `user@realm` matches `userPrincipalName` and, when the realm is the
    /// default login domain, `sAMAccountName=user`; a bare name also matches
    /// `userPrincipalName=user@<defaultLoginDomain>`.
    fn user_filter(&self, username: &str) -> String {
        let s = &self.settings;
        let mut terms: Vec<(String, String)> = Vec::new();
        if s.kind == DirectoryKind::ActiveDirectory {
            let (sam, upn) = ad_names(username, s.default_login_domain.as_deref());
            for a in &s.login_attributes {
                if a.eq_ignore_ascii_case("sAMAccountName") {
                    terms.extend(sam.clone().map(|v| (a.clone(), v)));
                } else if a.eq_ignore_ascii_case("userPrincipalName") {
                    terms.extend(upn.clone().map(|v| (a.clone(), v)));
                } else {
                    terms.push((a.clone(), username.to_owned()));
                }
            }
        } else {
            for a in &s.login_attributes {
                terms.push((a.clone(), username.to_owned()));
            }
        }
        let mut filter = format!("(&(objectClass={})", filter_value(&s.user_object_class));
        if let Some(extra) = &s.user_search_filter {
            filter.push_str(extra);
        }
        filter.push_str("(|");
        for (a, v) in terms {
            filter.push_str(&format!("({a}={})", filter_value(&v)));
        }
        filter.push_str("))");
        filter
    }

    /// A filter finding a user by the id inside its principal id.
    fn id_filter(&self, principal_id: &str) -> Option<String> {
        let s = &self.settings;
        let id = principal_id
            .strip_prefix(s.kind.user_scheme())?
            .strip_prefix("://")?;
        match s.kind {
            DirectoryKind::ActiveDirectory => {
                let bytes = guid_from_string(id)?;
                Some(format!("(objectGUID={})", filter_bytes(&bytes)))
            }
            DirectoryKind::OpenLdap => {
                // entryUUID values are plain UUIDs; a DN fallback id is not one.
                if id.len() != 36 || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                    return None;
                }
                Some(format!("(entryUUID={})", filter_value(id)))
            }
        }
    }

    fn enabled(&self, entry: &SearchEntry) -> bool {
        match &self.settings.enabled_check {
            EnabledCheck::UserAccountControl => first(entry, "userAccountControl")
                .and_then(|v| v.trim().parse::<i64>().ok())
                // Stored as a signed 32-bit integer.
                .map(|v| (v as u32) & UAC_ACCOUNTDISABLE == 0)
                // Unreadable flags: not proven enabled.
                .unwrap_or(false),
            EnabledCheck::Attribute {
                attribute,
                disabled_values,
            } => {
                let values = attr(entry, attribute);
                if disabled_values.is_empty() {
                    values.is_empty()
                } else {
                    !values
                        .iter()
                        .any(|v| disabled_values.iter().any(|d| d.eq_ignore_ascii_case(v)))
                }
            }
            _ => true,
        }
    }

    fn op_error(&self, e: OpError) -> LdapLoginError {
        let provider = self.settings.name.clone();
        match e {
            OpError::Transport(message) => LdapLoginError::Unavailable { provider, message },
            // busy, unavailable, timeLimitExceeded, unwillingToPerform (e.g. a DC
            // shutting down), other (AD under load)
            OpError::Result { rc, text } if matches!(rc, 3 | 51 | 52 | 80) => {
                LdapLoginError::Unavailable {
                    provider,
                    message: format!("result code {rc}: {text}"),
                }
            }
            OpError::Result { rc, text } => LdapLoginError::Misconfigured {
                provider,
                message: format!("result code {rc}: {text}"),
            },
        }
    }

    fn pool_error(&self, e: PoolError) -> LdapLoginError {
        let provider = self.settings.name.clone();
        match e {
            PoolError::Unavailable(message) => LdapLoginError::Unavailable { provider, message },
            PoolError::ServiceBindRefused(message) => {
                LdapLoginError::Misconfigured { provider, message }
            }
        }
    }
}

/// The reason for a refused user bind. AD puts a sub-code in the
/// diagnostic message.
fn bind_reason(rc: u32, text: &str) -> InvalidReason {
    if let Some(reason) = InvalidReason::from_ad_diagnostic(text) {
        return reason;
    }
    match rc {
        49 => InvalidReason::WrongPassword,
        code => InvalidReason::BindRefused { code },
    }
}

/// The `sAMAccountName` and `userPrincipalName` values to look for.
fn ad_names(login: &str, default_domain: Option<&str>) -> (Option<String>, Option<String>) {
    if let Some((_domain, user)) = login.split_once('\\') {
        return (Some(user.to_owned()), None);
    }
    if let Some((user, realm)) = login.rsplit_once('@') {
        let sam = default_domain
            .filter(|d| d.eq_ignore_ascii_case(realm))
            .map(|_| user.to_owned());
        return (sam, Some(login.to_owned()));
    }
    let upn = default_domain.map(|d| format!("{login}@{d}"));
    (Some(login.to_owned()), upn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::ldap::config::LdapConfig;

    fn provider(kind: DirectoryKind, domain: Option<&str>) -> LdapProvider {
        let mut c = LdapConfig::new(
            "t",
            kind,
            vec!["ldap://127.0.0.1:1".into()],
            "cn=svc",
            SecretString::from("pw"),
            "dc=x",
        );
        c.dangerous.allow_plaintext = true;
        c.default_login_domain = domain.map(str::to_owned);
        LdapProvider::new(&c).unwrap()
    }

    #[test]
    fn openldap_filter_escapes_the_login() {
        let p = provider(DirectoryKind::OpenLdap, None);
        assert_eq!(
            p.user_filter("*)(uid=*"),
            r"(&(objectClass=inetOrgPerson)(|(uid=\2a\29\28uid=\2a)))"
        );
    }

    #[test]
    fn ad_name_forms() {
        let p = provider(DirectoryKind::ActiveDirectory, Some("corp.example"));
        assert_eq!(
            p.user_filter("alice"),
            "(&(objectClass=user)(|(sAMAccountName=alice)(userPrincipalName=alice@corp.example)))"
        );
        assert_eq!(
            p.user_filter(r"CORP\alice"),
            "(&(objectClass=user)(|(sAMAccountName=alice)))"
        );
        assert_eq!(
            p.user_filter("alice@CORP.example"),
            "(&(objectClass=user)(|(sAMAccountName=alice)(userPrincipalName=alice@CORP.example)))"
        );
        assert_eq!(
            p.user_filter("alice@other.example"),
            "(&(objectClass=user)(|(userPrincipalName=alice@other.example)))"
        );
        assert_eq!(
            p.user_filter("jdoe(qa)"),
            r"(&(objectClass=user)(|(sAMAccountName=jdoe\28qa\29)(userPrincipalName=jdoe\28qa\29@corp.example)))"
        );
    }

    #[test]
    fn ad_sub_codes_are_distinct_reasons() {
        let diag = |code: &str| {
            format!("80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data {code}, v4563")
        };
        let cases = [
            ("52e", InvalidReason::WrongPassword),
            ("525", InvalidReason::UnknownUser),
            ("530", InvalidReason::LogonHoursRestricted),
            ("531", InvalidReason::WorkstationRestricted),
            ("532", InvalidReason::PasswordExpired),
            ("533", InvalidReason::AccountDisabled),
            ("701", InvalidReason::AccountExpired),
            ("773", InvalidReason::PasswordMustChange),
            ("775", InvalidReason::AccountLockedOut),
        ];
        for (code, reason) in cases {
            assert_eq!(bind_reason(49, &diag(code)), reason, "{code}");
        }
        assert_eq!(bind_reason(49, ""), InvalidReason::WrongPassword);
        assert_eq!(
            bind_reason(53, "unauthenticated bind"),
            InvalidReason::BindRefused { code: 53 }
        );
    }

    #[test]
    fn user_account_control() {
        let p = provider(DirectoryKind::ActiveDirectory, None);
        let entry = |uac: &str| SearchEntry {
            dn: "CN=a".into(),
            attrs: [("userAccountControl".to_owned(), vec![uac.to_owned()])].into(),
            bin_attrs: Default::default(),
        };
        assert!(p.enabled(&entry("512")));
        assert!(!p.enabled(&entry("514")));
        assert!(!p.enabled(&entry("-2147483646")));
        assert!(!p.enabled(&entry("garbage")));
    }

    #[test]
    fn id_filters() {
        let p = provider(DirectoryKind::ActiveDirectory, None);
        assert_eq!(
            p.id_filter("activedirectory_user://499a00d4-9b03-4226-804e-2467dc7610af")
                .unwrap(),
            r"(objectGUID=\d4\00\9a\49\03\9b\26\42\80\4e\24\67\dc\76\10\af)"
        );
        assert_eq!(p.id_filter("openldap_user://x"), None);
        let p = provider(DirectoryKind::OpenLdap, None);
        assert_eq!(p.id_filter("openldap_user://cn=a*,dc=x"), None);
    }

    #[tokio::test]
    async fn empty_password_is_refused_without_io() {
        // Port 1 on loopback: nothing listens; any I/O would be Unavailable.
        let p = provider(DirectoryKind::OpenLdap, None);
        let e = p.login("alice", &SecretString::from("")).await.unwrap_err();
        assert_eq!(e, LdapLoginError::invalid(InvalidReason::EmptyPassword));
        let e = p
            .login("alice", &SecretString::from("pw"))
            .await
            .unwrap_err();
        assert!(matches!(e, LdapLoginError::Unavailable { .. }), "{e:?}");
        assert!(matches!(
            crate::authn::AuthnError::from(e),
            crate::authn::AuthnError::Unavailable { .. }
        ));
    }
}
