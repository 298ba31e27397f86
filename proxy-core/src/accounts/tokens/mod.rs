//! Issuing, listing and revoking Paddock tokens (`<token-id>:<secret>`);
//! verifying them is the request path's ([`crate::authn::tokens`]).
//!
//! Kinds and lifetimes follow Rancher's settings (`docs/facts.md` §4), in
//! [`TokenPolicy`]: session 16 h with a 16 h idle timeout, API 90 days
//! (capped), kubeconfig 30 days (capped). Tokens may be scoped to one
//! cluster.

use std::time::Duration;

use secrecy::SecretString;

use crate::authn::tokens::{new_secret, new_token_id, LastUsed, TokenHasher};
use crate::store::{
    Expect, Key, Kind, Object, Op, StoreError, StoreView, Timestamp, TokenKind, TokenRecord,
};

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// No such user.
    #[error("no user {0}")]
    UnknownUser(String),
    /// The user is disabled.
    #[error("user {0} is disabled")]
    UserDisabled(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Lifetimes per kind. `None` for a maximum means no cap.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenPolicy {
    /// Session token lifetime (forced; a requested TTL is ignored). 16 h.
    pub session_ttl: Duration,
    /// Session idle timeout. 16 h. `None` disables it.
    pub session_idle: Option<Duration>,
    /// API token default lifetime. 90 days.
    pub api_default_ttl: Duration,
    /// API token maximum lifetime. 90 days.
    pub api_max_ttl: Option<Duration>,
    /// Kubeconfig token default lifetime. 30 days.
    pub kubeconfig_default_ttl: Duration,
    /// Kubeconfig token maximum lifetime. 90 days.
    pub kubeconfig_max_ttl: Option<Duration>,
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(16 * HOUR),
            session_idle: Some(Duration::from_secs(16 * HOUR)),
            api_default_ttl: Duration::from_secs(90 * DAY),
            api_max_ttl: Some(Duration::from_secs(90 * DAY)),
            kubeconfig_default_ttl: Duration::from_secs(30 * DAY),
            kubeconfig_max_ttl: Some(Duration::from_secs(90 * DAY)),
        }
    }
}

impl TokenPolicy {
    /// The lifetime a new token of `kind` gets when `requested` was asked for:
    /// sessions always get the session TTL; others the default, clamped to the
    /// maximum.
    pub fn ttl_for(&self, kind: TokenKind, requested: Option<Duration>) -> Duration {
        let (default, max) = match kind {
            TokenKind::Session => return self.session_ttl,
            TokenKind::Api => (self.api_default_ttl, self.api_max_ttl),
            TokenKind::Kubeconfig => (self.kubeconfig_default_ttl, self.kubeconfig_max_ttl),
        };
        let ttl = requested.unwrap_or(default);
        max.map_or(ttl, |m| ttl.min(m))
    }

    /// The idle timeout a new token of `kind` gets.
    pub fn idle_for(&self, kind: TokenKind) -> Option<Duration> {
        match kind {
            TokenKind::Session => self.session_idle,
            _ => None,
        }
    }
}

/// A request for a new token.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NewToken {
    /// Whom it authenticates.
    pub user_id: String,
    /// Its kind.
    pub kind: TokenKind,
    /// Requested lifetime (clamped by [`TokenPolicy`]; ignored for sessions).
    pub ttl: Option<Duration>,
    /// Restrict it to one cluster.
    pub cluster: Option<String>,
    /// Shown in listings.
    pub description: String,
    /// The provider the user authenticated with.
    pub provider: String,
}

impl NewToken {
    /// A token of `kind` for `user_id`, with defaults for the rest.
    pub fn new(user_id: impl Into<String>, kind: TokenKind) -> Self {
        Self {
            user_id: user_id.into(),
            kind,
            ttl: None,
            cluster: None,
            description: String::new(),
            provider: "local".into(),
        }
    }

    /// Sets the requested lifetime.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Scopes the token to one cluster.
    pub fn cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster = Some(cluster.into());
        self
    }

    /// Sets the description.
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }

    /// Sets the provider.
    pub fn provider(mut self, p: impl Into<String>) -> Self {
        self.provider = p.into();
        self
    }
}

/// A freshly issued token: the only time its secret exists outside the client.
pub struct IssuedToken {
    /// The stored record (hash only).
    pub record: TokenRecord,
    /// `<token-id>:<secret>`, to hand to the client once.
    pub token: SecretString,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("record", &self.record)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Creates a token for an existing, enabled user. Blocking (one commit).
pub fn issue(
    view: &StoreView,
    hasher: &TokenHasher,
    policy: &TokenPolicy,
    req: NewToken,
    now: Timestamp,
) -> Result<IssuedToken, IssueError> {
    let snap = view.snapshot();
    let user = snap
        .user(&req.user_id)
        .ok_or_else(|| IssueError::UnknownUser(req.user_id.clone()))?;
    if !user.value.enabled {
        return Err(IssueError::UserDisabled(req.user_id));
    }
    // Ids are random; a collision is a conflict, retried with a new id.
    let mut attempts = 0;
    loop {
        let id = new_token_id();
        let secret = new_secret();
        let ttl = policy.ttl_for(req.kind, req.ttl);
        let record = TokenRecord {
            id: id.clone(),
            user_id: req.user_id.clone(),
            kind: req.kind,
            hash: hasher.hash(&secret),
            cluster_verifier: req
                .cluster
                .as_deref()
                .map(|c| TokenHasher::new(&hasher.cluster_key(c)).hash(&secret)),
            cluster: req.cluster.clone(),
            provider: req.provider.clone(),
            description: req.description.clone(),
            created_at: now,
            expires_at: Some(now.plus(ttl)),
            idle_timeout_secs: policy.idle_for(req.kind).map(|d| d.as_secs()),
            enabled: true,
        };
        let op = Op::put(Object::Token(record.clone()), Expect::Absent);
        match view.commit(vec![op]) {
            Ok(_) => {
                return Ok(IssuedToken {
                    record,
                    token: SecretString::from(format!("{id}:{secret}")),
                })
            }
            Err(StoreError::Conflict { .. }) if attempts < 3 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Deletes a token (and its usage record); effective for the next request as soon
/// as this returns. Returns whether it existed. Blocking.
pub fn revoke(
    view: &StoreView,
    last_used: Option<&LastUsed>,
    id: &str,
) -> Result<bool, StoreError> {
    let existed = view.snapshot().token(id).is_some();
    let usage = match last_used {
        Some(l) => l.forget(id),
        None => Op::delete(Key::new(Kind::TokenUsage, id), Expect::Any),
    };
    view.commit(vec![
        Op::delete(Key::new(Kind::Token, id), Expect::Any),
        usage,
    ])?;
    Ok(existed)
}

/// Deletes every token of `user_id`. Returns how many. Blocking.
pub fn revoke_user_tokens(view: &StoreView, user_id: &str) -> Result<usize, StoreError> {
    let ids: Vec<String> = view
        .snapshot()
        .tokens()
        .filter(|t| t.value.user_id == user_id)
        .map(|t| t.value.id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let mut ops = Vec::with_capacity(ids.len() * 2);
    for id in &ids {
        ops.push(Op::delete(Key::new(Kind::Token, id), Expect::Any));
        ops.push(Op::delete(Key::new(Kind::TokenUsage, id), Expect::Any));
    }
    view.commit_batches(ops)?;
    Ok(ids.len())
}

/// The operations that end `user_id`'s login sessions, all but `keep` (the
/// caller's own session when they change their own password). API and
/// kubeconfig tokens are separate credentials the user manages and stay.
pub(crate) fn end_sessions(
    snap: &crate::store::Snapshot,
    user_id: &str,
    keep: Option<&str>,
) -> Vec<Op> {
    snap.tokens()
        .filter(|t| {
            t.value.user_id == user_id
                && t.value.kind == TokenKind::Session
                && Some(t.value.id.as_str()) != keep
        })
        .flat_map(|t| {
            [
                Op::delete(Key::new(Kind::Token, &t.value.id), Expect::Any),
                Op::delete(Key::new(Kind::TokenUsage, &t.value.id), Expect::Any),
            ]
        })
        .collect()
}

/// Deletes tokens that expired before `now` (the purge daemon's job). Blocking.
pub fn purge_expired(view: &StoreView, now: Timestamp) -> Result<usize, StoreError> {
    let ids: Vec<String> = view
        .snapshot()
        .tokens()
        .filter(|t| t.value.expires_at.is_some_and(|at| at <= now))
        .map(|t| t.value.id.clone())
        .collect();
    let mut ops = Vec::with_capacity(ids.len() * 2);
    for id in &ids {
        ops.push(Op::delete(Key::new(Kind::Token, id), Expect::Any));
        ops.push(Op::delete(Key::new(Kind::TokenUsage, id), Expect::Any));
    }
    view.commit_batches(ops)?;
    Ok(ids.len())
}

/// Tokens, optionally of one user, oldest first.
pub fn list(view: &StoreView, user_id: Option<&str>) -> Vec<TokenRecord> {
    let mut v: Vec<TokenRecord> = view
        .snapshot()
        .tokens()
        .filter(|t| user_id.is_none_or(|u| t.value.user_id == u))
        .map(|t| t.value.clone())
        .collect();
    v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    v
}

#[cfg(test)]
mod tests;
