//! Login throttling per username, per account and per client address, with
//! exponential backoff.
//!
//! A directory accepts one account under several names (`alice`,
//! `CORP\alice`, `alice@corp.example`), so the name typed is not enough: once
//! the directory resolved the name to an account, the attempt is also counted
//! against the account ([`LoginThrottle::begin_account_attempt`]), and a
//! blocked account refuses every spelling before its password is sent.
//!
//! After `free_attempts` consecutive failures, each further attempt must wait
//! `base_delay * 2^(failures - free_attempts)`, capped at `max_delay`. A blocked
//! attempt is answered 429 with `Retry-After` and is not checked against the
//! password (nor forwarded to a directory), so it cannot lock a real account.
//! A success clears the username's record; the address's record only expires, so
//! one valid account cannot be used to reset an address that is guessing others.
//!
//! The state is in memory, in a `Mutex<HashMap>` held only for a map update,
//! never across an `.await`. With several replicas on one store the counts are
//! also kept in the store's [`SharedCounters`] ([`LoginThrottle::share`]): an
//! attempt is checked and counted there too, atomically across replicas, so an
//! attacker spreading guesses over N replicas gets the budget of one, not N. If
//! the store cannot be asked, the local count still applies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::store::SharedCounters;

/// Backoff parameters for one kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Backoff {
    /// Failures allowed before any delay.
    pub free_attempts: u32,
    /// The first delay.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Backoff {
    /// Custom backoff.
    pub fn new(free_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            free_attempts,
            base_delay,
            max_delay,
        }
    }

    /// The wait imposed after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Duration {
        if failures < self.free_attempts {
            return Duration::ZERO;
        }
        let exp = (failures - self.free_attempts).min(31);
        self.base_delay
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// The most failures an attacker who waits out every delay can make within
    /// `window` (from the first attempt). Compare with a directory's lockout
    /// threshold for its observation window: it should be well below it.
    pub fn max_failures_within(&self, window: Duration) -> u32 {
        if self.base_delay.is_zero() {
            return u32::MAX;
        }
        let mut elapsed = Duration::ZERO;
        let mut failures = 0u32;
        loop {
            let wait = self.delay_after(failures);
            if elapsed + wait > window || failures == u32::MAX {
                return failures;
            }
            elapsed += wait;
            failures += 1;
        }
    }
}

/// Throttle configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThrottleConfig {
    /// Per username (case-insensitive) and per resolved account: 5 free
    /// attempts, then 1 s doubling to 5 min.
    pub per_user: Backoff,
    /// Per client address: 20 free attempts (shared NATs), then 1 s doubling to
    /// 5 min.
    pub per_addr: Backoff,
    /// A record with no failure for this long is forgotten. Default 30 min.
    pub forget_after: Duration,
    /// At most this many records are kept (memory bound). Default 100 000.
    pub max_entries: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            per_user: Backoff::new(5, Duration::from_secs(1), Duration::from_secs(300)),
            per_addr: Backoff::new(20, Duration::from_secs(1), Duration::from_secs(300)),
            forget_after: Duration::from_secs(30 * 60),
            max_entries: 100_000,
        }
    }
}

/// A login attempt that must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many failed logins; retry after {retry_after_secs} s")]
pub struct Throttled {
    /// Seconds until the next attempt is allowed (`Retry-After`), at least 1.
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    /// A resolved account (a provider and its stable id for the user), whatever
    /// name was typed.
    Account(String),
    Addr(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

/// The login throttle.
#[derive(Debug)]
pub struct LoginThrottle {
    cfg: ThrottleConfig,
    records: Mutex<HashMap<Subject, Record>>,
    shared: OnceLock<Arc<dyn SharedCounters>>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

/// A subject's name in the shared counters.
fn shared_name(subject: &Subject) -> String {
    match subject {
        Subject::User(u) => format!("login/user/{u}"),
        Subject::Account(a) => format!("login/account/{a}"),
        Subject::Addr(a) => format!("login/addr/{a}"),
    }
}

fn user_key(username: &str) -> Subject {
    Subject::User(username.trim().to_lowercase())
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Counts one failure against `key`; returns the wait it now imposes.
fn count(
    records: &mut HashMap<Subject, Record>,
    key: Subject,
    backoff: Backoff,
    forget_after: Duration,
    now: Instant,
) -> Duration {
    let r = records.entry(key).or_insert(Record {
        failures: 0,
        last_failure: now,
        blocked_until: now,
    });
    if now.saturating_duration_since(r.last_failure) >= forget_after {
        r.failures = 0;
    }
    r.failures = r.failures.saturating_add(1);
    r.last_failure = now;
    let d = backoff.delay_after(r.failures);
    r.blocked_until = now + d;
    d
}

/// Takes one counted failure back from `key`.
fn take_back(records: &mut HashMap<Subject, Record>, key: Subject, backoff: Backoff) {
    if let Some(r) = records.get_mut(&key) {
        r.failures = r.failures.saturating_sub(1);
        if r.failures == 0 {
            records.remove(&key);
        } else {
            r.blocked_until = r.last_failure + backoff.delay_after(r.failures);
        }
    }
}

impl LoginThrottle {
    /// A throttle with `cfg`.
    pub fn new(cfg: ThrottleConfig) -> Self {
        Self {
            cfg,
            records: Mutex::new(HashMap::new()),
            shared: OnceLock::new(),
        }
    }

    /// Also counts attempts in `counters`, which every replica sees. Once;
    /// later calls are ignored.
    pub fn share(&self, counters: Arc<dyn SharedCounters>) {
        let _ = self.shared.set(counters);
    }

    /// Checks and counts `subjects` in the shared counters. `Err` when one
    /// must wait; a store that cannot be asked leaves the local count alone
    /// in charge.
    fn shared_attempt(&self, subjects: &[(Subject, Backoff)]) -> Result<(), Throttled> {
        let Some(shared) = self.shared.get() else {
            return Ok(());
        };
        let names: Vec<String> = subjects.iter().map(|(s, _)| shared_name(s)).collect();
        let wait = |i: usize, failures: u32, since: Duration| {
            subjects[i].1.delay_after(failures).saturating_sub(since)
        };
        match shared.check_and_increment(&names, &wait, self.cfg.forget_after) {
            Ok(wait) if wait.is_zero() => Ok(()),
            Ok(wait) => Err(Throttled {
                retry_after_secs: ceil_secs(wait).max(1),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "shared login throttle unavailable: counting on this replica only");
                Ok(())
            }
        }
    }

    fn shared_forget(&self, subject: &Subject, take_back_only: bool) {
        let Some(shared) = self.shared.get() else {
            return;
        };
        let name = shared_name(subject);
        let done = if take_back_only {
            shared.decrement(&name)
        } else {
            shared.remove(&name)
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, "shared login throttle unavailable");
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ThrottleConfig {
        &self.cfg
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Subject, Record>> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an attempt for `username` from `addr` may proceed at `now`. Call
    /// before checking the password.
    pub fn check(&self, username: &str, addr: IpAddr, now: Instant) -> Result<(), Throttled> {
        let records = self.lock();
        let wait = [user_key(username), Subject::Addr(addr)]
            .iter()
            .filter_map(|k| records.get(k))
            .map(|r| r.blocked_until.saturating_duration_since(now))
            .max()
            .unwrap_or(Duration::ZERO);
        if wait.is_zero() {
            Ok(())
        } else {
            Err(Throttled {
                retry_after_secs: ceil_secs(wait).max(1),
            })
        }
    }

    /// Records a failed attempt. Returns the wait now imposed on the next one, if
    /// any.
    pub fn record_failure(&self, username: &str, addr: IpAddr, now: Instant) -> Option<Throttled> {
        let mut records = self.lock();
        let wait = self.count_failure(&mut records, username, addr, now);
        (!wait.is_zero()).then(|| Throttled {
            retry_after_secs: ceil_secs(wait).max(1),
        })
    }

    fn count_failure(
        &self,
        records: &mut HashMap<Subject, Record>,
        username: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Duration {
        if records.len() >= self.cfg.max_entries {
            self.prune(records, now);
        }
        let mut wait = Duration::ZERO;
        for (key, backoff) in [
            (user_key(username), self.cfg.per_user),
            (Subject::Addr(addr), self.cfg.per_addr),
        ] {
            wait = wait.max(count(records, key, backoff, self.cfg.forget_after, now));
        }
        wait
    }

    /// Atomically checks and counts an attempt *as a failure* before the password
    /// is checked, so a burst of concurrent guesses cannot all pass
    /// [`LoginThrottle::check`] before any failure is recorded. Call
    /// [`LoginThrottle::attempt_succeeded`] when the password was right; a failed
    /// attempt needs no further call.
    pub fn begin_attempt(
        &self,
        username: &str,
        addr: IpAddr,
        now: Instant,
    ) -> Result<(), Throttled> {
        self.begin(
            &[
                (user_key(username), self.cfg.per_user),
                (Subject::Addr(addr), self.cfg.per_addr),
            ],
            now,
        )
    }

    /// Checks and counts one attempt against every subject: first here, under
    /// one lock, so concurrent guesses see each other's counts; then in the
    /// shared counters, if any. An attempt the shared counters refuse is taken
    /// back here, as it never reaches a password check.
    fn begin(&self, subjects: &[(Subject, Backoff)], now: Instant) -> Result<(), Throttled> {
        {
            let mut records = self.lock();
            let wait = subjects
                .iter()
                .filter_map(|(k, _)| records.get(k))
                .map(|r| r.blocked_until.saturating_duration_since(now))
                .max()
                .unwrap_or(Duration::ZERO);
            if !wait.is_zero() {
                return Err(Throttled {
                    retry_after_secs: ceil_secs(wait).max(1),
                });
            }
            if records.len() >= self.cfg.max_entries {
                self.prune(&mut records, now);
            }
            for (key, backoff) in subjects {
                count(
                    &mut records,
                    key.clone(),
                    *backoff,
                    self.cfg.forget_after,
                    now,
                );
            }
        }
        // Not under the lock: a round trip to the store.
        self.shared_attempt(subjects).inspect_err(|_| {
            let mut records = self.lock();
            for (key, backoff) in subjects {
                take_back(&mut records, key.clone(), *backoff);
            }
        })
    }

    /// Undoes what [`LoginThrottle::begin_attempt`] counted: clears the
    /// username's record and takes the attempt back from the address's.
    pub fn attempt_succeeded(&self, username: &str, addr: IpAddr) {
        {
            let mut records = self.lock();
            records.remove(&user_key(username));
            take_back(&mut records, Subject::Addr(addr), self.cfg.per_addr);
        }
        self.shared_forget(&user_key(username), false);
        self.shared_forget(&Subject::Addr(addr), true);
    }

    /// Checks and counts an attempt *as a failure* against a resolved account
    /// (`<provider>/<stable id>`), once the directory told which account the
    /// login name means and before the password is sent to it. Uses the
    /// per-user backoff. Undo with [`LoginThrottle::account_attempt_succeeded`]
    /// on success, or [`LoginThrottle::account_attempt_void`] when the
    /// attempt never reached a decision (the directory went away).
    pub fn begin_account_attempt(&self, account: &str, now: Instant) -> Result<(), Throttled> {
        self.begin(
            &[(Subject::Account(account.to_owned()), self.cfg.per_user)],
            now,
        )
    }

    /// The password was right: clears the account's record.
    pub fn account_attempt_succeeded(&self, account: &str) {
        let key = Subject::Account(account.to_owned());
        self.lock().remove(&key);
        self.shared_forget(&key, false);
    }

    /// Takes back what [`LoginThrottle::begin_account_attempt`] counted, for an
    /// attempt that was not the caller's failure.
    pub fn account_attempt_void(&self, account: &str) {
        let key = Subject::Account(account.to_owned());
        take_back(&mut self.lock(), key.clone(), self.cfg.per_user);
        self.shared_forget(&key, true);
    }

    /// Records a successful login: clears the username's record.
    pub fn record_success(&self, username: &str) {
        self.lock().remove(&user_key(username));
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn prune(&self, records: &mut HashMap<Subject, Record>, now: Instant) {
        let forget = self.cfg.forget_after;
        records.retain(|_, r| {
            now.saturating_duration_since(r.last_failure) < forget || r.blocked_until > now
        });
        if records.len() >= self.cfg.max_entries {
            // Still full (a flood of distinct keys): drop the oldest half.
            let mut ages: Vec<Instant> = records.values().map(|r| r.last_failure).collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            records.retain(|_, r| r.last_failure > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> LoginThrottle {
        LoginThrottle::new(ThrottleConfig {
            per_user: Backoff::new(3, Duration::from_secs(60), Duration::from_secs(300)),
            ..ThrottleConfig::default()
        })
    }

    #[test]
    fn an_account_has_one_budget_and_blocks_before_the_password_is_sent() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            t.begin_account_attempt("corp/openldap_user://a", now)
                .unwrap();
        }
        assert_eq!(
            t.begin_account_attempt("corp/openldap_user://a", now),
            Err(Throttled {
                retry_after_secs: 60
            })
        );
        // Another account, and the same string as a typed name, are separate.
        t.begin_account_attempt("corp/openldap_user://b", now)
            .unwrap();
        t.begin_attempt("corp/openldap_user://a", "192.0.2.1".parse().unwrap(), now)
            .unwrap();
        // A success clears the account.
        t.account_attempt_succeeded("corp/openldap_user://a");
        t.begin_account_attempt("corp/openldap_user://a", now)
            .unwrap();
    }

    #[test]
    fn a_void_attempt_is_taken_back() {
        let t = throttle();
        let now = Instant::now();
        for _ in 0..3 {
            t.begin_account_attempt("corp/a", now).unwrap();
            t.account_attempt_void("corp/a");
        }
        t.begin_account_attempt("corp/a", now).unwrap();
        t.begin_account_attempt("corp/a", now).unwrap();
        assert!(t.begin_account_attempt("corp/a", now).is_ok());
        assert!(t.begin_account_attempt("corp/a", now).is_err());
    }
}
