//! The background refresh of GitHub users' organisations and teams, and
//! the encrypted store of the GitHub tokens it uses.
//!
//! Never per request: a task looks for GitHub users whose groups are older
//! than the maximum age (plus a per-user jitter), re-reads their
//! organisations and teams with their stored token, re-applies the access
//! mode, and stores the new groups. 401/404 from GitHub (token revoked,
//! user gone) or losing access revokes all the user's Paddock tokens;
//! 5xx, timeouts and rate limits keep the last known groups and retry
//! with backoff (until the rate limit's reset at the earliest).

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Weak},
    time::Duration,
};

use super::{
    api::{ApiError, ApiUser, Profile},
    external_user, GithubProvider, PROVIDER,
};
use crate::{
    accounts::Accounts,
    authn::external::ExternalUser,
    store::{Timestamp, User},
};

/// GitHub tokens sealed by [`super::GithubProvider::seal_token`], one file
/// per user (mode 0600) under `<data dir>/github-tokens/`.
#[derive(Debug, Clone)]
pub struct TokenVault {
    dir: PathBuf,
}

impl TokenVault {
    /// The vault of the data directory `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("github-tokens"),
        }
    }

    fn path(&self, user_id: &str) -> Option<PathBuf> {
        // User ids are `u-` and base32; anything else never names a file.
        user_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            .then(|| self.dir.join(user_id))
    }

    /// Stores the sealed token of `user_id`, replacing any. Blocking.
    pub fn put(&self, user_id: &str, sealed: &str) -> std::io::Result<()> {
        let path = self
            .path(user_id)
            .ok_or_else(|| std::io::Error::other("invalid user id"))?;
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(sealed.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// The sealed token of `user_id`, if stored. Blocking.
    pub fn get(&self, user_id: &str) -> Option<String> {
        std::fs::read_to_string(self.path(user_id)?).ok()
    }

    /// Forgets the token of `user_id`. Blocking.
    pub fn remove(&self, user_id: &str) {
        if let Some(path) = self.path(user_id) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What one refresh of one user did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// New groups stored.
    Refreshed {
        /// How many groups.
        groups: usize,
    },
    /// GitHub said the token or user is gone, or the access mode no longer
    /// admits them: their tokens were revoked.
    AccessLost {
        /// How many Paddock tokens were revoked.
        revoked: usize,
    },
    /// No stored GitHub token (logged in before tokens were kept): groups
    /// stay until the next login.
    NoToken,
    /// GitHub failed or limited us; the last known groups stay.
    Deferred {
        /// Retry no earlier than this many seconds from now.
        retry_after_secs: u64,
    },
}

/// GitHub users due for a refresh at `now`.
fn due(accounts: &Accounts, provider: &GithubProvider, now: Timestamp) -> Vec<User> {
    let settings = provider.config().refresh;
    accounts.view().with_snapshot(|s| {
        s.users()
            .filter(|u| {
                u.value.enabled
                    && u.value
                        .principal_ids
                        .iter()
                        .any(|p| p.starts_with("github_user://"))
            })
            .filter(|u| {
                let last = s
                    .user_attributes(&u.value.id)
                    .and_then(|a| a.value.last_refresh)
                    .unwrap_or(Timestamp(0));
                let age = settings.max_age.as_secs()
                    + crate::authn::external::refresh_jitter(
                        &u.value.id,
                        settings.jitter.as_secs(),
                    );
                now.seconds_since(last) >= age
            })
            .map(|u| u.value.clone())
            .collect()
    })
}

/// Refreshes one user now: re-reads their organisations and teams with
/// their stored token and re-applies the access mode.
pub async fn refresh_user(
    accounts: &Arc<Accounts>,
    provider: &GithubProvider,
    user: &User,
) -> Outcome {
    let vault = TokenVault::new(accounts.data_dir());
    let sealed = {
        let (vault, id) = (vault.clone(), user.id.clone());
        tokio::task::spawn_blocking(move || vault.get(&id))
            .await
            .ok()
            .flatten()
    };
    let Some(token) = sealed.and_then(|s| provider.open_token(&s)) else {
        return Outcome::NoToken;
    };
    let Some(github_id) = user
        .principal_ids
        .iter()
        .find_map(|p| p.strip_prefix("github_user://"))
        .and_then(|id| id.parse::<u64>().ok())
    else {
        return Outcome::NoToken;
    };
    let groups = provider.api().groups(&token).await;
    let profile = match groups {
        Ok((orgs, teams)) => Profile {
            user: ApiUser {
                id: github_id,
                login: user.username.clone(),
                name: Some(user.display_name.clone()),
            },
            email: None,
            orgs,
            teams,
        },
        Err(error) if error.is_permanent() => {
            tracing::warn!(auth.user = %user.id, auth.username = %user.username, %error, "GitHub says the user lost access");
            return lose_access(accounts, &vault, user, github_id).await;
        }
        Err(ApiError::RateLimited { retry_after_secs }) => {
            return Outcome::Deferred { retry_after_secs }
        }
        Err(error) => {
            tracing::info!(auth.user = %user.id, %error, "GitHub refresh failed; keeping the last known groups");
            return Outcome::Deferred {
                retry_after_secs: 0,
            };
        }
    };
    let external = external_user(&profile);
    let view = accounts.view().clone();
    if let Err(error) = provider.check_access(&external, &|subject| {
        view.with_snapshot(|s| s.role_bindings().any(|b| b.value.subject == subject))
    }) {
        tracing::warn!(auth.user = %user.id, %error, "the user no longer passes the access mode");
        return lose_access(accounts, &vault, user, github_id).await;
    }
    let count = external.groups.len();
    let store = accounts.clone();
    match tokio::task::spawn_blocking(move || store.upsert_external(&external)).await {
        Ok(Ok(_)) => Outcome::Refreshed { groups: count },
        Ok(Err(error)) => {
            tracing::warn!(auth.user = %user.id, %error, "storing refreshed groups failed");
            Outcome::Deferred {
                retry_after_secs: 0,
            }
        }
        Err(_) => Outcome::Deferred {
            retry_after_secs: 0,
        },
    }
}

/// Revokes every token of the user, forgets their GitHub token and clears
/// their GitHub groups.
async fn lose_access(
    accounts: &Arc<Accounts>,
    vault: &TokenVault,
    user: &User,
    github_id: u64,
) -> Outcome {
    let cleared = ExternalUser {
        provider: PROVIDER.to_owned(),
        principal: crate::authn::external::Principal::new(
            format!("github_user://{github_id}"),
            user.username.clone(),
        ),
        username: user.username.clone(),
        display_name: user.display_name.clone(),
        email: None,
        groups: Vec::new(),
        locator: None,
    };
    let (store, vault, id) = (accounts.clone(), vault.clone(), user.id.clone());
    let revoked = tokio::task::spawn_blocking(move || {
        let revoked = store.revoke_user_tokens(&id).unwrap_or(0);
        vault.remove(&id);
        let _ = store.upsert_external(&cleared);
        revoked
    })
    .await
    .unwrap_or(0);
    tracing::warn!(auth.user = %user.id, revoked, "GitHub access lost: tokens revoked");
    Outcome::AccessLost { revoked }
}

/// Starts the background refresh; it ends when the accounts are dropped.
pub fn spawn(accounts: Weak<Accounts>, provider: Arc<GithubProvider>) {
    tokio::spawn(async move {
        let settings = provider.config().refresh;
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Per user: failures in a row and the earliest next attempt.
        let mut backoff: HashMap<String, (u32, Timestamp)> = HashMap::new();
        // All users: a rate limit pauses everything until its reset.
        let mut paused_until = Timestamp(0);
        loop {
            tick.tick().await;
            let Some(accounts) = accounts.upgrade() else {
                return;
            };
            let now = Timestamp::now();
            if now < paused_until {
                continue;
            }
            for user in due(&accounts, &provider, now) {
                if backoff.get(&user.id).is_some_and(|(_, next)| now < *next) {
                    continue;
                }
                match refresh_user(&accounts, &provider, &user).await {
                    Outcome::Deferred { retry_after_secs } if retry_after_secs > 0 => {
                        tracing::info!(retry_after_secs, "GitHub rate limit: refresh paused");
                        paused_until = Timestamp::now().plus(Duration::from_secs(retry_after_secs));
                        break;
                    }
                    Outcome::Deferred { .. } => {
                        let failures = backoff.get(&user.id).map_or(0, |(f, _)| *f) + 1;
                        let delay = settings
                            .interval
                            .saturating_mul(1 << failures.min(10))
                            .min(settings.max_age.max(settings.interval));
                        backoff.insert(user.id.clone(), (failures, Timestamp::now().plus(delay)));
                    }
                    Outcome::Refreshed { groups } => {
                        tracing::debug!(auth.user = %user.id, groups, "GitHub groups refreshed");
                        backoff.remove(&user.id);
                    }
                    Outcome::AccessLost { .. } | Outcome::NoToken => {
                        backoff.remove(&user.id);
                    }
                }
            }
        }
    });
}
