//! The one refresh driver for every external provider: never per request,
//! a task per provider looks for users whose groups are older than the
//! provider's maximum age (plus a per-user jitter) and reads them again
//! through [`ExternalProvider::refresh`].
//!
//! - The provider answers: the new groups are stored, if its access rules
//!   still admit the user.
//! - Access lost (gone, disabled, no longer admitted): the provider's groups
//!   are dropped and every Paddock token of the user is revoked.
//! - The provider is down: the last known groups stay for the provider's
//!   grace period, then they are dropped; the user is retried with
//!   exponential backoff, a rate limit pauses the provider until it lifts,
//!   and `/paddock/readyz` shows the provider as degraded meanwhile.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use super::Accounts;
use crate::{
    authn::external::{ExternalProvider, KnownUser, RefreshError},
    store::Timestamp,
};

/// What one refresh of one user did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The provider answered; the new groups are stored.
    Refreshed {
        /// How many groups.
        groups: usize,
    },
    /// The user is gone, disabled or no longer admitted: groups dropped,
    /// tokens revoked.
    AccessLost {
        /// How many Paddock tokens were revoked.
        revoked: usize,
    },
    /// The provider could not be asked; the last known groups stay (until
    /// the grace period ends: then `groups_dropped`).
    Deferred {
        /// Whether the grace period had ended.
        groups_dropped: bool,
        /// Retry no earlier than this many seconds from now (a rate limit).
        retry_after_secs: u64,
    },
    /// The provider keeps nothing to read this user with; groups stay until
    /// the next login.
    NotRefreshable,
    /// Another refresh of this user by this provider was running (the
    /// background job and an admin's refresh, on this replica or another);
    /// nothing was done.
    Busy,
}

/// The name of the claim on `provider`'s refresh of `user_id`.
fn claim_name(provider: &str, user_id: &str) -> String {
    format!("refresh\0{provider}\0{user_id}")
}

impl Accounts {
    /// Claims `provider`'s refresh of `user_id`, so that no other refresh of
    /// the same user runs meanwhile: on this replica (a set in memory) and,
    /// with several replicas, on any (a claim in the store, which lapses
    /// within seconds if its holder dies). `false`: one is running, or the
    /// store cannot tell.
    async fn claim_refresh(self: &Arc<Self>, provider: &str, user_id: &str) -> bool {
        let name = claim_name(provider, user_id);
        if !self.refreshing_mut().insert(name.clone()) {
            return false;
        }
        let Some(claims) = self.view.store().claims() else {
            return true;
        };
        let shared = name.clone();
        let claimed = tokio::task::spawn_blocking(move || claims.claim(&shared)).await;
        match claimed {
            Ok(Ok(true)) => true,
            _ => {
                self.refreshing_mut().remove(&name);
                false
            }
        }
    }

    /// Lets go of a claim [`claim_refresh`](Self::claim_refresh) took.
    async fn release_refresh(self: &Arc<Self>, provider: &str, user_id: &str) {
        let name = claim_name(provider, user_id);
        if let Some(claims) = self.view.store().claims() {
            let shared = name.clone();
            let released = tokio::task::spawn_blocking(move || claims.release(&shared)).await;
            if !matches!(released, Ok(Ok(()))) {
                tracing::warn!(auth.provider = %provider, auth.user = %user_id, "releasing a refresh claim failed; it lapses by itself");
            }
        }
        self.refreshing_mut().remove(&name);
    }

    fn refreshing_mut(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.refreshing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The enabled users `provider` reported before, with their last refresh.
fn known_users(accounts: &Accounts, provider: &str) -> Vec<(KnownUser, Timestamp)> {
    accounts.view().with_snapshot(|s| {
        s.users()
            .filter(|u| u.value.enabled)
            .filter_map(|u| {
                let attributes = s.user_attributes(&u.value.id)?;
                let a = &attributes.value;
                a.groups.get(provider)?;
                let principal = a.extra.get(provider)?.get("principalid")?.first()?.clone();
                let known = KnownUser {
                    user_id: u.value.id.clone(),
                    username: u.value.username.clone(),
                    display_name: u.value.display_name.clone(),
                    principal,
                    locator: a.locators.get(provider).cloned(),
                };
                Some((known, a.last_refresh.unwrap_or(Timestamp(0))))
            })
            .collect()
    })
}

impl Accounts {
    /// Reads `user_id` again from every provider that knows them, now (the
    /// admin's `POST /paddock/v1/users/<id>/refresh`). Empty when no
    /// provider knows the user.
    pub async fn refresh_user(self: &Arc<Self>, user_id: &str) -> Vec<(String, Outcome)> {
        let mut outcomes = Vec::new();
        for provider in self.providers.clone() {
            let known = known_users(self, provider.name())
                .into_iter()
                .find(|(known, _)| known.user_id == user_id);
            if let Some((known, last)) = known {
                let outcome = refresh(self, &*provider, &known, last, None).await;
                outcomes.push((provider.name().to_owned(), outcome));
            }
        }
        outcomes
    }
}

/// Refreshes one user. `leadership` is the background job's standing: its
/// answer is applied only if this replica still leads once the provider
/// answered.
///
/// Two replicas never refresh the same user at once (which matters most for
/// OpenID Connect providers that rotate refresh tokens and take a reused
/// one for theft):
/// - only the elected replica runs the background job, checked before each
///   user; a leader stops leading as soon as it cannot renew its lease or
///   its key goes, before etcd could elect another (`store::election`), and
///   an answer that arrives after the lead was lost is dropped unapplied;
/// - every refresh, the admin's "refresh now" on any replica included,
///   first claims the user ([`Accounts::claim_refresh`]: a key in etcd
///   created only if absent, on a lease its replica renews), and a user
///   already claimed is left alone ([`Outcome::Busy`]).
async fn refresh(
    accounts: &Arc<Accounts>,
    provider: &dyn ExternalProvider,
    known: &KnownUser,
    last: Timestamp,
    leadership: Option<&Arc<dyn crate::store::Leadership>>,
) -> Outcome {
    let name = provider.name().to_owned();
    if !accounts.claim_refresh(&name, &known.user_id).await {
        return Outcome::Busy;
    }
    let outcome = refresh_claimed(accounts, provider, known, last, leadership).await;
    accounts.release_refresh(&name, &known.user_id).await;
    outcome
}

async fn refresh_claimed(
    accounts: &Arc<Accounts>,
    provider: &dyn ExternalProvider,
    known: &KnownUser,
    last: Timestamp,
    leadership: Option<&Arc<dyn crate::store::Leadership>>,
) -> Outcome {
    let name = provider.name().to_owned();
    let answer = provider.refresh(known).await;
    if !crate::store::may_run_singletons(leadership) {
        tracing::info!(auth.user = %known.user_id, auth.provider = %name,
            "lost the election during a refresh: its answer is left to the new leader");
        return Outcome::Deferred {
            groups_dropped: false,
            retry_after_secs: 0,
        };
    }
    let result = match answer {
        Ok(fresh) => match provider.admit(&fresh, &|s| accounts.has_binding(s)) {
            Ok(()) => Ok(fresh),
            Err(error) => Err(RefreshError::AccessLost {
                reason: error.to_string(),
            }),
        },
        Err(error) => Err(error),
    };
    let store = accounts.clone();
    let user_id = known.user_id.clone();
    match result {
        Ok(fresh) => {
            accounts.set_provider_health(&name, None);
            let groups = fresh.groups.len();
            let stored = tokio::task::spawn_blocking(move || store.upsert_external(&fresh)).await;
            if !matches!(stored, Ok(Ok(_))) {
                tracing::warn!(auth.user = %known.user_id, auth.provider = %name, "storing refreshed groups failed");
            }
            Outcome::Refreshed { groups }
        }
        Err(RefreshError::AccessLost { reason }) => {
            accounts.set_provider_health(&name, None);
            let provider_name = name.clone();
            let revoked = tokio::task::spawn_blocking(move || {
                let revoked = store.revoke_user_tokens(&user_id).unwrap_or(0);
                let _ = store.clear_provider_groups(&user_id, &provider_name);
                if let Some(provider) = store.provider(&provider_name) {
                    provider.forget(&user_id);
                }
                revoked
            })
            .await
            .unwrap_or(0);
            tracing::warn!(auth.user = %known.user_id, auth.username = %known.username, auth.provider = %name, %reason, revoked,
                "the provider no longer admits the user: groups dropped, tokens revoked");
            Outcome::AccessLost { revoked }
        }
        Err(RefreshError::Unavailable {
            reason,
            retry_after_secs,
        }) => {
            accounts.set_provider_health(&name, Some(reason.clone()));
            let schedule = provider.refresh_schedule();
            let expired = schedule.grace.is_some_and(|grace| {
                Timestamp::now().seconds_since(last) >= (schedule.max_age + grace).as_secs()
            });
            if expired {
                let provider_name = name.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    store.clear_provider_groups(&user_id, &provider_name)
                })
                .await;
                tracing::warn!(auth.user = %known.user_id, auth.provider = %name, %reason,
                    "provider down past the grace period: last known groups dropped");
            } else {
                tracing::info!(auth.user = %known.user_id, auth.provider = %name, %reason,
                    "refresh failed; keeping the last known groups");
            }
            Outcome::Deferred {
                groups_dropped: expired,
                retry_after_secs,
            }
        }
        Err(RefreshError::NotRefreshable) => Outcome::NotRefreshable,
    }
}

/// The per-user delay, in `0..jitter`, added to a refresh's maximum age:
/// derived from the user id (FNV-1a), so it is stable and spreads users
/// evenly.
fn jitter(user_id: &str, jitter: Duration) -> u64 {
    let jitter_secs = jitter.as_secs();
    if jitter_secs == 0 {
        return 0;
    }
    let hash = user_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % jitter_secs
}

/// Starts the background refresh of `provider`'s users; it ends when the
/// accounts are dropped.
pub(super) fn spawn(
    accounts: Weak<Accounts>,
    provider: Arc<dyn ExternalProvider>,
    leadership: Option<Arc<dyn crate::store::Leadership>>,
) {
    tokio::spawn(async move {
        let schedule = provider.refresh_schedule();
        let mut tick = tokio::time::interval(schedule.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Per user: failures in a row and the earliest next attempt.
        let mut backoff: HashMap<String, (u32, Timestamp)> = HashMap::new();
        // The whole provider: a rate limit pauses it until its reset.
        let mut paused_until = Timestamp(0);
        loop {
            tick.tick().await;
            let Some(accounts) = accounts.upgrade() else {
                return;
            };
            let now = Timestamp::now();
            // With several replicas only the elected one refreshes, so two
            // never refresh the same user at once.
            if now < paused_until || !crate::store::may_run_singletons(leadership.as_ref()) {
                continue;
            }
            for (known, last) in known_users(&accounts, provider.name()) {
                // Lost the election mid-pass (lease revoked or etcd gone):
                // stop now, the next leader takes over the rest.
                if !crate::store::may_run_singletons(leadership.as_ref()) {
                    break;
                }
                let age = schedule.max_age.as_secs() + jitter(&known.user_id, schedule.jitter);
                if now.seconds_since(last) < age
                    || backoff
                        .get(&known.user_id)
                        .is_some_and(|(_, next)| now < *next)
                {
                    continue;
                }
                let outcome =
                    refresh(&accounts, &*provider, &known, last, leadership.as_ref()).await;
                accounts.emit(&crate::events::Event::Refresh {
                    provider: provider.name().to_owned(),
                    outcome: outcome.clone(),
                });
                tracing::debug!(auth.user = %known.user_id, auth.provider = %provider.name(), ?outcome, "refresh");
                match outcome {
                    Outcome::Deferred {
                        retry_after_secs, ..
                    } => {
                        if retry_after_secs > 0 {
                            tracing::info!(auth.provider = %provider.name(), retry_after_secs, "rate limited: refresh paused");
                            paused_until =
                                Timestamp::now().plus(Duration::from_secs(retry_after_secs));
                        }
                        let failures = backoff.get(&known.user_id).map_or(0, |(f, _)| *f) + 1;
                        let delay = schedule
                            .interval
                            .saturating_mul(1 << failures.min(10))
                            .min(schedule.max_age.max(schedule.interval));
                        backoff.insert(
                            known.user_id.clone(),
                            (failures, Timestamp::now().plus(delay)),
                        );
                        // The provider is down or limiting us: the others wait
                        // for the next tick.
                        break;
                    }
                    _ => {
                        backoff.remove(&known.user_id);
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests;
