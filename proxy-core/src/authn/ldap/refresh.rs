//! The background refresh of directory users' groups and enabled state.
//!
//! Never per request: a task looks for users of this directory whose groups
//! are older than the maximum age (plus a per-user jitter) and reads them
//! again with [`LdapProvider::refresh`] (by the stored DN, then by the
//! immutable id if the entry moved). A user who is gone or disabled in the
//! directory loses their groups and every Paddock token. A directory that is
//! down keeps the last known groups for the grace period, then they are
//! dropped; the provider shows as degraded in `/paddock/readyz` meanwhile.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use super::{DirectoryUser, LdapLoginError, LdapProvider, Principal};
use crate::{
    accounts::Accounts,
    authn::external::refresh_jitter,
    store::{Timestamp, User},
};

/// What one refresh of one user did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The directory answered; the new groups are stored.
    Refreshed {
        /// How many groups.
        groups: usize,
    },
    /// The user is gone or disabled in the directory: groups dropped, tokens revoked.
    AccessLost {
        /// How many Paddock tokens were revoked.
        revoked: usize,
    },
    /// The directory could not be asked; the last known groups stay (until
    /// the grace period ends, when they were dropped: `groups_dropped`).
    Deferred {
        /// Whether the grace period had ended.
        groups_dropped: bool,
    },
}

/// The users this directory knows, as stored at their last login or
/// refresh, with the time of that refresh.
fn stored_users(accounts: &Accounts, provider: &str) -> Vec<(User, DirectoryUser, Timestamp)> {
    accounts.view().with_snapshot(|s| {
        s.users()
            .filter(|u| u.value.enabled)
            .filter_map(|u| {
                let attributes = s.user_attributes(&u.value.id)?;
                let a = &attributes.value;
                a.groups.get(provider)?;
                let principal = a.extra.get(provider)?.get("principalid")?.first()?.clone();
                let stored = DirectoryUser {
                    principal: Principal::new(principal, u.value.display_name.clone()),
                    username: u.value.username.clone(),
                    display_name: u.value.display_name.clone(),
                    email: None,
                    dn: a.locators.get(provider).cloned().unwrap_or_default(),
                    groups: Vec::new(),
                };
                Some((
                    u.value.clone(),
                    stored,
                    a.last_refresh.unwrap_or(Timestamp(0)),
                ))
            })
            .collect()
    })
}

/// Refreshes one user of `provider` now (the admin's `POST
/// /paddock/v1/users/<id>/refresh` and the background task).
pub async fn refresh_user(
    accounts: &Arc<Accounts>,
    provider: &LdapProvider,
    user_id: &str,
) -> Option<Outcome> {
    let (user, stored, last) = stored_users(accounts, provider.name())
        .into_iter()
        .find(|(u, _, _)| u.id == user_id)?;
    Some(refresh(accounts, provider, &user, &stored, last).await)
}

async fn refresh(
    accounts: &Arc<Accounts>,
    provider: &LdapProvider,
    user: &User,
    stored: &DirectoryUser,
    last: Timestamp,
) -> Outcome {
    let name = provider.name().to_owned();
    let result = provider.refresh(stored).await;
    let store = accounts.clone();
    let user_id = user.id.clone();
    match result {
        Ok(fresh) => {
            accounts.set_provider_health(&name, None);
            let groups = fresh.groups.len();
            let external = fresh.into_external(&name);
            let stored =
                tokio::task::spawn_blocking(move || store.upsert_external(&external)).await;
            if !matches!(stored, Ok(Ok(_))) {
                tracing::warn!(auth.user = %user.id, "storing refreshed directory groups failed");
            }
            Outcome::Refreshed { groups }
        }
        Err(LdapLoginError::InvalidCredentials { reason }) => {
            accounts.set_provider_health(&name, None);
            let revoked = tokio::task::spawn_blocking(move || {
                let revoked = store.revoke_user_tokens(&user_id).unwrap_or(0);
                let _ = store.clear_provider_groups(&user_id, &name);
                revoked
            })
            .await
            .unwrap_or(0);
            tracing::warn!(auth.user = %user.id, auth.username = %user.username, %reason, revoked,
                "the directory no longer admits the user: groups dropped, tokens revoked");
            Outcome::AccessLost { revoked }
        }
        Err(error) => {
            accounts.set_provider_health(&name, Some(error.to_string()));
            let settings = provider.refresh_settings();
            let expired = Timestamp::now().seconds_since(last)
                >= settings.max_age_seconds + settings.grace_seconds;
            if expired {
                let _ = tokio::task::spawn_blocking(move || {
                    store.clear_provider_groups(&user_id, &name)
                })
                .await;
                tracing::warn!(auth.user = %user.id, %error,
                    "directory down past the grace period: last known groups dropped");
            } else {
                tracing::info!(auth.user = %user.id, %error,
                    "directory refresh failed; keeping the last known groups");
            }
            Outcome::Deferred {
                groups_dropped: expired,
            }
        }
    }
}

/// Starts the background refresh of `provider`'s users; it ends when the
/// accounts are dropped.
pub fn spawn(accounts: Weak<Accounts>, provider: Arc<LdapProvider>) {
    tokio::spawn(async move {
        let settings = provider.refresh_settings();
        let mut tick = tokio::time::interval(Duration::from_secs(settings.interval_seconds.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(accounts) = accounts.upgrade() else {
                return;
            };
            let now = Timestamp::now();
            for (user, stored, last) in stored_users(&accounts, provider.name()) {
                let age =
                    settings.max_age_seconds + refresh_jitter(&user.id, settings.jitter_seconds);
                if now.seconds_since(last) < age {
                    continue;
                }
                let outcome = refresh(&accounts, &provider, &user, &stored, last).await;
                tracing::debug!(auth.user = %user.id, ?outcome, "directory refresh");
                if matches!(outcome, Outcome::Deferred { .. }) {
                    // The directory is down: try the others on the next tick.
                    break;
                }
            }
        }
    });
}
