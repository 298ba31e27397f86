//! Local users: argon2id password hashes in the store, login with throttling,
//! user administration for the CLI and admin API, and the bootstrap admin.
//!
//! * [`password`]: hashing, constant-time verification with a dummy hash for
//!   unknown users, the password policy.
//! * [`throttle`]: per-user and per-address exponential backoff (429 +
//!   `Retry-After`).
//! * [`LocalProvider::login`]: the login flow tying them together.
//! * [`add_user`], [`set_password`], [`set_enabled`], [`list_users`]: what
//!   `paddock user add|passwd|disable|enable|list` call.
//! * [`bootstrap_admin`]: the first-start admin with a one-time password.

mod bootstrap;
pub mod password;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use secrecy::SecretString;

pub use bootstrap::{bootstrap_admin, BootstrapAdmin, BootstrapError, BOOTSTRAP_PASSWORD_FILE};
pub use password::{PasswordError, PasswordHasher, PasswordParams, PasswordPolicy, Verification};
pub use throttle::{Backoff, LoginThrottle, ThrottleConfig, Throttled};

use crate::accounts::tokens;
use crate::authn::tokens::{os_random_string, ID_ALPHABET};
use crate::store::{
    Expect, Object, Op, PasswordRecord, Snapshot, StoreError, StoreView, Timestamp, User,
    UsernameIndex,
};

/// The provider name on tokens and principals.
pub const PROVIDER: &str = "local";

/// Why a login failed. Every credential problem is the same
/// [`LoginError::InvalidCredentials`], whether the user is unknown, disabled or
/// the password wrong, so responses do not reveal who exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// Wrong username or password (or a disabled user).
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failures: answer 429 with `Retry-After`.
    #[error(transparent)]
    Throttled(#[from] Throttled),
}

impl From<LoginError> for crate::authn::AuthnError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::InvalidCredentials => Self::Invalid,
            LoginError::Throttled(t) => Self::Throttled {
                retry_after_secs: t.retry_after_secs,
            },
        }
    }
}

/// A successful local login.
#[derive(Debug, Clone)]
pub struct LocalLogin {
    /// The user.
    pub user: User,
    /// The password must be changed before anything else (the bootstrap admin's
    /// first login): issue a session that only allows changing it.
    pub must_change_password: bool,
}

/// Errors of user administration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// No such user.
    #[error("no user {0}")]
    NotFound(String),
    /// The username is taken.
    #[error("username {0} is already taken")]
    Exists(String),
    /// The username is not acceptable.
    #[error("invalid username {0:?}: use 1-64 characters of letters, digits, '.', '-', '_', '@'")]
    InvalidUsername(String),
    /// The password breaks the policy (or hashing failed).
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The store failed, or a concurrent change conflicted.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Local login: user lookup in the snapshot, throttle, argon2id verification on the
/// blocking pool.
#[derive(Debug)]
pub struct LocalProvider {
    view: Arc<StoreView>,
    hasher: Arc<PasswordHasher>,
    throttle: Arc<LoginThrottle>,
}

impl LocalProvider {
    /// A provider over `view`.
    pub fn new(
        view: Arc<StoreView>,
        hasher: Arc<PasswordHasher>,
        throttle: Arc<LoginThrottle>,
    ) -> Self {
        Self {
            view,
            hasher,
            throttle,
        }
    }

    /// The throttle (shared with other password providers, e.g. LDAP).
    pub fn throttle(&self) -> &Arc<LoginThrottle> {
        &self.throttle
    }

    /// Checks `username`/`password` from `client` at `now`.
    ///
    /// Order: throttle (a blocked attempt never reaches the hash), then the hash
    /// (always computed, against a dummy for unknown users), then the enabled
    /// flag. A stored hash with outdated parameters is upgraded on success (best
    /// effort).
    pub async fn login(
        &self,
        username: &str,
        password: &SecretString,
        client: IpAddr,
        now: Instant,
    ) -> Result<LocalLogin, LoginError> {
        // Counted as a failure up front: concurrent guesses cannot overtake it.
        self.throttle.begin_attempt(username, client, now)?;
        let (user, phc) = self.view.with_snapshot(|s| {
            let user = s.user_by_name(username).map(|u| u.value.clone());
            let phc = user
                .as_ref()
                .and_then(|u| s.password(&u.id))
                .map(|p| p.value.phc.clone());
            (user, phc)
        });
        use secrecy::ExposeSecret;
        let empty = password.expose_secret().is_empty();
        let verdict = self.hasher.verify_async(phc, password.clone()).await;
        match (user, verdict) {
            (Some(user), Verification::Match { needs_rehash }) if user.enabled && !empty => {
                self.throttle.attempt_succeeded(username, client);
                if needs_rehash {
                    self.rehash(&user.id, password.clone()).await;
                }
                Ok(LocalLogin {
                    must_change_password: user.must_change_password,
                    user,
                })
            }
            // Already counted by `begin_attempt`.
            _ => Err(LoginError::InvalidCredentials),
        }
    }

    async fn rehash(&self, user_id: &str, password: SecretString) {
        let Ok(phc) = self.hasher.hash_async(password).await else {
            return;
        };
        let view = self.view.clone();
        let user_id = user_id.to_string();
        let r = tokio::task::spawn_blocking(move || {
            let rev = view.with_snapshot(|s| s.password(&user_id).map(|p| p.revision));
            let Some(rev) = rev else { return Ok(()) };
            let rec = PasswordRecord {
                user_id,
                phc,
                changed_at: Timestamp::now(),
            };
            view.commit(vec![Op::put(Object::Password(rec), Expect::Revision(rev))])
                .map(|_| ())
        })
        .await;
        if let Ok(Err(e)) = r {
            tracing::warn!(error = %e, "upgrading a password hash failed");
        }
    }

    /// Changes a user's own password after checking the current one (also the
    /// forced change after the bootstrap login). Clears `must_change_password`
    /// and ends the user's other sessions: all but `session`, the one the
    /// change was made from.
    #[allow(clippy::too_many_arguments)]
    pub async fn change_password(
        &self,
        user_id: &str,
        current: &SecretString,
        new: SecretString,
        policy: &PasswordPolicy,
        session: Option<&str>,
        client: IpAddr,
        now: Instant,
    ) -> Result<(), ChangePasswordError> {
        let user = self
            .view
            .with_snapshot(|s| s.user(user_id).map(|u| u.value.clone()))
            .ok_or(ChangePasswordError::Login(LoginError::InvalidCredentials))?;
        self.login(&user.username, current, client, now).await?;
        let view = self.view.clone();
        let hasher = self.hasher.clone();
        let policy = policy.clone();
        let user_id = user_id.to_string();
        let session = session.map(str::to_owned);
        tokio::task::spawn_blocking(move || {
            set_password(
                &view,
                &hasher,
                &policy,
                &user_id,
                &new,
                session.as_deref(),
                Timestamp::now(),
            )
        })
        .await
        .map_err(|e| {
            ChangePasswordError::User(UserError::Password(PasswordError::Hash(e.to_string())))
        })?
        .map_err(ChangePasswordError::User)
    }
}

/// Errors of [`LocalProvider::change_password`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangePasswordError {
    /// The current password was wrong, or throttled.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The new password was refused, or the store failed.
    #[error(transparent)]
    User(UserError),
}

fn valid_username(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'))
}

/// A new user id, `u-` and 12 random characters.
pub(crate) fn new_user_id() -> String {
    format!("u-{}", os_random_string(ID_ALPHABET, 12))
}

/// Finds a user by id or username.
pub fn find_user(snap: &Snapshot, name_or_id: &str) -> Option<User> {
    snap.user(name_or_id)
        .or_else(|| snap.user_by_name(name_or_id))
        .map(|u| u.value.clone())
}

/// Creates a local user with a password (`paddock user add`). Usernames are unique
/// case-insensitively, enforced by the store (two concurrent adds: one wins, the
/// other gets [`UserError::Exists`]). Blocking (argon2 + one commit).
pub fn add_user(
    view: &StoreView,
    hasher: &PasswordHasher,
    policy: &PasswordPolicy,
    username: &str,
    display_name: &str,
    password: &SecretString,
    now: Timestamp,
) -> Result<User, UserError> {
    if !valid_username(username) {
        return Err(UserError::InvalidUsername(username.to_string()));
    }
    policy.check(username, password)?;
    if view.with_snapshot(|s| s.user_by_name(username).is_some()) {
        return Err(UserError::Exists(username.to_string()));
    }
    let phc = hasher.hash(password)?;
    let user = User {
        id: new_user_id(),
        username: username.to_string(),
        display_name: display_name.to_string(),
        enabled: true,
        must_change_password: false,
        principal_ids: Vec::new(),
        created_at: now,
    };
    let user = User {
        principal_ids: vec![format!("local://{}", user.id)],
        ..user
    };
    let ops = new_user_ops(&user, phc, now);
    match view.commit(ops) {
        Ok(_) => Ok(user),
        Err(StoreError::Conflict { key, .. }) if key.starts_with("usernames/") => {
            Err(UserError::Exists(username.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn new_user_ops(user: &User, phc: String, now: Timestamp) -> Vec<Op> {
    vec![
        Op::put(
            Object::Username(UsernameIndex {
                username: user.username.to_lowercase(),
                user_id: user.id.clone(),
            }),
            Expect::Absent,
        ),
        Op::put(Object::User(user.clone()), Expect::Absent),
        Op::put(
            Object::Password(PasswordRecord {
                user_id: user.id.clone(),
                phc,
                changed_at: now,
            }),
            Expect::Any,
        ),
    ]
}

/// Sets a user's password (`paddock user passwd`, an admin's reset, or the
/// user's own change) and clears `must_change_password`. Every login session
/// of the user ends in the same commit, except `keep` (the session of a user
/// changing their own password). Blocking.
pub fn set_password(
    view: &StoreView,
    hasher: &PasswordHasher,
    policy: &PasswordPolicy,
    name_or_id: &str,
    password: &SecretString,
    keep: Option<&str>,
    now: Timestamp,
) -> Result<(), UserError> {
    let (user, rev) = view
        .with_snapshot(|s| {
            let u = find_user(s, name_or_id)?;
            let rev = s.user(&u.id)?.revision;
            Some((u, rev))
        })
        .ok_or_else(|| UserError::NotFound(name_or_id.to_string()))?;
    policy.check(&user.username, password)?;
    let phc = hasher.hash(password)?;
    let mut ops = vec![Op::put(
        Object::Password(PasswordRecord {
            user_id: user.id.clone(),
            phc,
            changed_at: now,
        }),
        Expect::Any,
    )];
    ops.extend(view.with_snapshot(|s| tokens::end_sessions(s, &user.id, keep)));
    if user.must_change_password {
        let updated = User {
            must_change_password: false,
            ..user
        };
        ops.push(Op::put(Object::User(updated), Expect::Revision(rev)));
    }
    view.commit(ops)?;
    Ok(())
}

/// Enables or disables a user (`paddock user enable|disable`). A disabled user
/// cannot log in, every token of theirs is rejected from the next request on
/// (the verifier checks the user), and their login sessions end for good (a
/// later enable does not bring them back). Returns the updated user. Blocking.
pub fn set_enabled(view: &StoreView, name_or_id: &str, enabled: bool) -> Result<User, UserError> {
    let (user, rev, sessions) = view
        .with_snapshot(|s| {
            let u = find_user(s, name_or_id)?;
            let rev = s.user(&u.id)?.revision;
            let sessions = if enabled {
                Vec::new()
            } else {
                tokens::end_sessions(s, &u.id, None)
            };
            Some((u, rev, sessions))
        })
        .ok_or_else(|| UserError::NotFound(name_or_id.to_string()))?;
    let updated = User { enabled, ..user };
    let mut ops = vec![Op::put(
        Object::User(updated.clone()),
        Expect::Revision(rev),
    )];
    ops.extend(sessions);
    view.commit(ops)?;
    Ok(updated)
}

/// Deletes a user with everything that belongs to them: password, tokens,
/// role bindings, provider attributes and the provider tokens kept for them. Their tokens fail from the next
/// request on. Returns the deleted user. Blocking.
pub fn delete_user(view: &StoreView, name_or_id: &str) -> Result<User, UserError> {
    use crate::store::{Key, Kind};
    let (user, ops) = view
        .with_snapshot(|s| {
            let user = find_user(s, name_or_id)?;
            let rev = s.user(&user.id)?.revision;
            let mut ops = vec![
                Op::delete(Key::new(Kind::User, &user.id), Expect::Revision(rev)),
                Op::delete(
                    Key::new(Kind::Username, user.username.to_lowercase()),
                    Expect::Any,
                ),
                Op::delete(Key::new(Kind::Password, &user.id), Expect::Any),
                Op::delete(Key::new(Kind::UserAttributes, &user.id), Expect::Any),
            ];
            for token in s.tokens().filter(|t| t.value.user_id == user.id) {
                ops.push(Op::delete(
                    Key::new(Kind::Token, &token.value.id),
                    Expect::Any,
                ));
                ops.push(Op::delete(
                    Key::new(Kind::TokenUsage, &token.value.id),
                    Expect::Any,
                ));
            }
            for token in s.provider_tokens().filter(|t| t.value.user_id == user.id) {
                ops.push(Op::delete(
                    Key::new(
                        Kind::ProviderToken,
                        crate::store::ProviderToken::id_for(&token.value.provider, &user.id),
                    ),
                    Expect::Any,
                ));
            }
            for binding in s.role_bindings().filter(|b| b.value.subject == user.id) {
                ops.push(Op::delete(
                    Key::new(Kind::RoleBinding, &binding.value.id),
                    Expect::Any,
                ));
            }
            Some((user, ops))
        })
        .ok_or_else(|| UserError::NotFound(name_or_id.to_string()))?;
    view.commit(ops)?;
    Ok(user)
}

/// Every user, by username (`paddock user list`).
pub fn list_users(view: &StoreView) -> Vec<User> {
    let mut v: Vec<User> = view.with_snapshot(|s| s.users().map(|u| u.value.clone()).collect());
    v.sort_by(|a, b| a.username.cmp(&b.username));
    v
}

#[cfg(test)]
mod tests;
