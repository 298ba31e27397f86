//! The rules' state: which alerts fire, deduplication (one key fires once
//! until it is resolved or expires), the rate limit, and the windows the
//! rules count in. Pure: every method takes the time, so the tests drive it.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use super::{AlertRules, AlertsOptions};

/// Keys a window or a map tracks at most; past it the oldest are forgotten.
const MAX_TRACKED: usize = 10_000;

/// Whether an alert is firing or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One alert, as the receivers are told about it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Alert {
    /// `alertname`, e.g. `PaddockClusterUnreachable`.
    pub(super) name: &'static str,
    /// `critical`, `warning` or `info`.
    pub(super) severity: &'static str,
    /// One line for humans.
    pub(super) summary: String,
    /// What the alert is about: `cluster`, `provider`, `user`, `address`,
    /// `token` (besides `alertname` and `severity`).
    pub(super) labels: BTreeMap<&'static str, String>,
    pub(super) status: Status,
    pub(super) starts_at: SystemTime,
    /// When it was resolved; for a firing alert, when it will end unless
    /// said again (Alertmanager's `endsAt`).
    pub(super) ends_at: Option<SystemTime>,
}

impl Alert {
    /// The deduplication key: the name and the labels.
    fn key(&self) -> String {
        let mut key = self.name.to_owned();
        for (name, value) in &self.labels {
            key.push_str(&format!("|{name}={value}"));
        }
        key
    }
}

/// A message for the receivers.
#[derive(Debug, Clone)]
pub(super) struct Notification {
    pub(super) alert: Arc<Alert>,
    /// Said again to Alertmanager receivers only, which expect a firing
    /// alert to be repeated until it resolves.
    pub(super) resend: bool,
}

/// How a firing alert ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// When its condition is over (a cluster answers again): resolved.
    Condition,
    /// After this long without a new signal (a burst ends): resolved.
    Quiet(Duration),
    /// After this long, silently (a one-off: a token from a new address).
    Expire(Duration),
}

#[derive(Debug)]
struct Active {
    alert: Arc<Alert>,
    ending: Ending,
    fired: Instant,
    last_signal: Instant,
    last_sent: Instant,
    /// False when the rate limit held it back: its resolution and resends
    /// are not sent either.
    sent: bool,
}

/// Failures per key within a window.
#[derive(Debug, Default)]
struct Windows {
    seen: HashMap<String, VecDeque<Instant>>,
}

impl Windows {
    /// Records a failure for `key` and returns how many fell within
    /// `window` (at most `cap` are kept).
    fn record(&mut self, key: &str, now: Instant, window: Duration, cap: usize) -> usize {
        if self.seen.len() >= MAX_TRACKED && !self.seen.contains_key(key) {
            self.prune(now, window);
            if self.seen.len() >= MAX_TRACKED {
                return 0;
            }
        }
        let times = self.seen.entry(key.to_owned()).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            times.pop_front();
        }
        times.push_back(now);
        if times.len() > cap {
            times.pop_front();
        }
        times.len()
    }

    fn prune(&mut self, now: Instant, window: Duration) {
        self.seen.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.duration_since(*t) <= window)
        });
    }
}

/// Firing notifications allowed per minute: a token bucket.
#[derive(Debug)]
struct Limiter {
    per_minute: f64,
    tokens: f64,
    at: Instant,
}

impl Limiter {
    fn new(per_minute: u32, now: Instant) -> Self {
        Self {
            per_minute: f64::from(per_minute),
            tokens: f64::from(per_minute),
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_minute / 60.0;
        self.tokens = (self.tokens + refill).min(self.per_minute);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Everything the rules remember.
#[derive(Debug)]
pub(super) struct Engine {
    rules: AlertRules,
    options: AlertsOptions,
    active: HashMap<String, Active>,
    login_failures: Windows,
    /// Per rule and subject: since when it fails (both clocks), and why.
    failing: HashMap<(Lasting, String), (Instant, SystemTime, String)>,
    limiter: Limiter,
    /// Firing alerts held back by the rate limit.
    pub(super) rate_limited: u64,
}

impl Engine {
    pub(super) fn new(rules: AlertRules, options: AlertsOptions, now: Instant) -> Self {
        Self {
            limiter: Limiter::new(options.max_per_minute, now),
            rules,
            options,
            active: HashMap::new(),
            login_failures: Windows::default(),
            failing: HashMap::new(),
            rate_limited: 0,
        }
    }

    /// A failed login or refused credential: for `user` (`provider/name`,
    /// when one was typed) and from `address`.
    pub(super) fn failed_login(
        &mut self,
        user: Option<&str>,
        address: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Notification> {
        let Some(burst) = self.rules.failed_logins else {
            return Vec::new();
        };
        let cap = burst.threshold as usize;
        let mut out = Vec::new();
        let subjects = [("user", user), ("address", address)];
        for (label, value) in subjects {
            let Some(value) = value.filter(|v| !v.is_empty()) else {
                continue;
            };
            let count =
                self.login_failures
                    .record(&format!("{label}={value}"), now, burst.window, cap);
            let key_alert = Alert {
                name: "PaddockFailedLoginBurst",
                severity: "warning",
                summary: if label == "user" {
                    format!(
                        "{} failed logins for {value} within {}s",
                        burst.threshold,
                        burst.window.as_secs()
                    )
                } else {
                    format!(
                        "{} failed logins or refused credentials from {value} within {}s",
                        burst.threshold,
                        burst.window.as_secs()
                    )
                },
                labels: BTreeMap::from([(label, value.to_owned())]),
                status: Status::Firing,
                starts_at: wall,
                ends_at: None,
            };
            if count >= cap {
                out.extend(self.fire(key_alert, Ending::Quiet(burst.window), now));
            } else if let Some(active) = self.active.get_mut(&key_alert.key()) {
                // Still failing: the burst goes on.
                active.last_signal = now;
            }
        }
        out
    }

    /// A token was used from an address it was not used from before.
    pub(super) fn new_token_address(
        &mut self,
        token: &str,
        user: &str,
        address: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Notification> {
        let alert = Alert {
            name: "PaddockTokenNewAddress",
            severity: "info",
            summary: format!("token {token} of {user} used from a new address {address}"),
            labels: BTreeMap::from([
                ("token", token.to_owned()),
                ("user", user.to_owned()),
                ("address", address.to_owned()),
            ]),
            status: Status::Firing,
            starts_at: wall,
            ends_at: Some(wall + self.options.expire),
        };
        self.fire(alert, Ending::Expire(self.options.expire), now)
    }

    /// A provider's backend failed (`problem`) or answers again.
    pub(super) fn provider_health(
        &mut self,
        provider: &str,
        problem: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Notification> {
        if !self.rules.provider_degraded {
            return None;
        }
        let alert = Alert {
            name: "PaddockProviderDegraded",
            severity: "critical",
            summary: format!(
                "identity provider {provider} does not answer: {}",
                problem.unwrap_or("")
            ),
            labels: BTreeMap::from([("provider", provider.to_owned())]),
            status: Status::Firing,
            starts_at: wall,
            ends_at: None,
        };
        match problem {
            Some(_) => self.fire(alert, Ending::Condition, now),
            None => self.resolve(&alert.key(), wall),
        }
    }

    /// A refresh by `provider` ended; `failure` says why it failed.
    pub(super) fn refresh(
        &mut self,
        provider: &str,
        failure: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Notification> {
        self.lasting(Lasting::Refresh, provider, failure, now, wall)
    }

    /// An RBAC sync pass over `cluster` ended; `failure` says why it
    /// failed (`None` also when the cluster is no longer synchronised).
    pub(super) fn rbac_sync(
        &mut self,
        cluster: &str,
        failure: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Notification> {
        self.lasting(Lasting::RbacSync, cluster, failure, now, wall)
    }

    /// A `kind` failure of `subject` (`failure`), or its success.
    fn lasting(
        &mut self,
        kind: Lasting,
        subject: &str,
        failure: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Notification> {
        if kind.after(&self.rules).is_none() {
            return Vec::new();
        }
        let key = (kind, subject.to_owned());
        match failure {
            Some(reason) => {
                let entry = self
                    .failing
                    .entry(key)
                    .or_insert_with(|| (now, wall, String::new()));
                entry.2 = reason.to_owned();
                self.check_lasting(now)
            }
            None => {
                self.failing.remove(&key);
                self.resolve(&kind.key(subject), wall).into_iter().collect()
            }
        }
    }

    /// Fires what has been failing for its rule's duration.
    fn check_lasting(&mut self, now: Instant) -> Vec<Notification> {
        let due: Vec<(Lasting, Duration, String, SystemTime, String)> = self
            .failing
            .iter()
            .filter_map(|((kind, subject), (since, wall, reason))| {
                let after = kind.after(&self.rules)?;
                (now.duration_since(*since) >= after)
                    .then(|| (*kind, after, subject.clone(), *wall, reason.clone()))
            })
            .collect();
        due.into_iter()
            .filter_map(|(kind, after, subject, since, reason)| {
                let alert = kind.alert(subject, after, since, &reason);
                self.fire(alert, Ending::Condition, now)
            })
            .collect()
    }

    /// A cluster became unreachable (`reason`) or reachable again.
    pub(super) fn cluster(
        &mut self,
        cluster: &str,
        reachable: bool,
        reason: Option<&str>,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Notification> {
        if !self.rules.cluster_unreachable {
            return None;
        }
        let alert = Alert {
            name: "PaddockClusterUnreachable",
            severity: "critical",
            summary: format!("cluster {cluster} is unreachable: {}", reason.unwrap_or("")),
            labels: BTreeMap::from([("cluster", cluster.to_owned())]),
            status: Status::Firing,
            starts_at: wall,
            ends_at: None,
        };
        if reachable {
            self.resolve(&alert.key(), wall)
        } else {
            self.fire(alert, Ending::Condition, now)
        }
    }

    /// Time-driven work: bursts that went quiet are resolved, one-offs
    /// expire, refreshes failing long enough fire, and Alertmanager
    /// receivers hear firing alerts again every `resend`.
    pub(super) fn tick(&mut self, now: Instant, wall: SystemTime) -> Vec<Notification> {
        let mut out = self.check_lasting(now);
        let ended: Vec<(String, bool)> = self
            .active
            .iter()
            .filter_map(|(key, active)| match active.ending {
                Ending::Quiet(quiet) if now.duration_since(active.last_signal) >= quiet => {
                    Some((key.clone(), true))
                }
                Ending::Expire(after) if now.duration_since(active.fired) >= after => {
                    Some((key.clone(), false))
                }
                _ => None,
            })
            .collect();
        for (key, announce) in ended {
            if announce {
                out.extend(self.resolve(&key, wall));
            } else {
                self.active.remove(&key);
            }
        }
        let resend = self.options.resend;
        for active in self.active.values_mut() {
            if active.sent && now.duration_since(active.last_sent) >= resend {
                active.last_sent = now;
                let mut alert = (*active.alert).clone();
                if matches!(active.ending, Ending::Condition | Ending::Quiet(_)) {
                    alert.ends_at = None;
                }
                out.push(Notification {
                    alert: Arc::new(alert),
                    resend: true,
                });
            }
        }
        self.login_failures.prune(
            now,
            self.rules
                .failed_logins
                .map_or(Duration::ZERO, |b| b.window),
        );
        out
    }

    /// Fires `alert` unless its key is firing already.
    fn fire(&mut self, alert: Alert, ending: Ending, now: Instant) -> Option<Notification> {
        let key = alert.key();
        if let Some(active) = self.active.get_mut(&key) {
            active.last_signal = now;
            return None;
        }
        if self.active.len() >= MAX_TRACKED {
            self.rate_limited += 1;
            return None;
        }
        let sent = self.limiter.take(now);
        if !sent {
            self.rate_limited += 1;
            tracing::warn!(alert = alert.name, "alert held back by alerts.maxPerMinute");
        }
        let alert = Arc::new(alert);
        self.active.insert(
            key,
            Active {
                alert: alert.clone(),
                ending,
                fired: now,
                last_signal: now,
                last_sent: now,
                sent,
            },
        );
        sent.then_some(Notification {
            alert,
            resend: false,
        })
    }

    /// Resolves the alert firing under `key`, if any.
    fn resolve(&mut self, key: &str, wall: SystemTime) -> Option<Notification> {
        let active = self.active.remove(key)?;
        if !active.sent {
            return None;
        }
        let mut alert = (*active.alert).clone();
        alert.status = Status::Resolved;
        alert.ends_at = Some(wall);
        Some(Notification {
            alert: Arc::new(alert),
            resend: false,
        })
    }

    /// Alerts firing now.
    pub(super) fn firing(&self) -> usize {
        self.active.len()
    }
}

/// A failure that fires once it has lasted its rule's duration, and
/// resolves at the next success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Lasting {
    /// A provider's background refreshes.
    Refresh,
    /// A cluster's RBAC sync passes.
    RbacSync,
}

impl Lasting {
    fn after(self, rules: &AlertRules) -> Option<Duration> {
        match self {
            Lasting::Refresh => rules.refresh_failing,
            Lasting::RbacSync => rules.rbac_sync_failing,
        }
    }

    fn name_and_label(self) -> (&'static str, &'static str) {
        match self {
            Lasting::Refresh => ("PaddockRefreshFailing", "provider"),
            Lasting::RbacSync => ("PaddockRbacSyncFailing", "cluster"),
        }
    }

    /// The deduplication key of `subject`'s alert (see [`Alert::key`]).
    fn key(self, subject: &str) -> String {
        let (name, label) = self.name_and_label();
        format!("{name}|{label}={subject}")
    }

    fn alert(self, subject: String, after: Duration, since: SystemTime, reason: &str) -> Alert {
        let (name, label) = self.name_and_label();
        let minutes = after.as_secs() / 60;
        let summary = match self {
            Lasting::Refresh => {
                format!("refreshing {subject}'s users has failed for {minutes} minutes: {reason}")
            }
            Lasting::RbacSync => format!(
                "the RBAC sync of cluster {subject} has failed for {minutes} minutes: {reason}"
            ),
        };
        Alert {
            name,
            severity: "warning",
            summary,
            labels: BTreeMap::from([(label, subject)]),
            status: Status::Firing,
            starts_at: since,
            ends_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::alerts::Burst;

    fn engine() -> (Engine, Instant) {
        let now = Instant::now();
        let rules = AlertRules {
            failed_logins: Some(Burst {
                threshold: 3,
                window: Duration::from_secs(60),
            }),
            token_new_address: true,
            provider_degraded: true,
            refresh_failing: Some(Duration::from_secs(600)),
            cluster_unreachable: true,
            rbac_sync_failing: Some(Duration::from_secs(300)),
        };
        (Engine::new(rules, AlertsOptions::default(), now), now)
    }

    fn names(notes: &[Notification]) -> Vec<(&'static str, Status)> {
        notes
            .iter()
            .map(|n| (n.alert.name, n.alert.status))
            .collect()
    }

    #[test]
    fn a_burst_fires_once_then_resolves_after_a_quiet_window() {
        let (mut engine, t0) = engine();
        let wall = SystemTime::now();
        let s = Duration::from_secs;
        let mut fired = Vec::new();
        for i in 0..10 {
            fired.extend(engine.failed_login(Some("local/alice"), None, t0 + s(i), wall));
        }
        assert_eq!(names(&fired), [("PaddockFailedLoginBurst", Status::Firing)]);
        assert_eq!(fired[0].alert.labels["user"], "local/alice");
        // Still failing at 9 s: resolved 60 s after the last failure only.
        assert!(engine.tick(t0 + s(65), wall).iter().all(|n| n.resend));
        let resolved: Vec<_> = engine
            .tick(t0 + s(70), wall)
            .into_iter()
            .filter(|n| !n.resend)
            .collect();
        assert_eq!(
            names(&resolved),
            [("PaddockFailedLoginBurst", Status::Resolved)]
        );
        assert_eq!(engine.firing(), 0);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_fire() {
        let (mut engine, t0) = engine();
        let wall = SystemTime::now();
        for i in 0..10 {
            let at = t0 + Duration::from_secs(i * 31);
            assert!(engine
                .failed_login(None, Some("192.0.2.1"), at, wall)
                .is_empty());
        }
    }

    #[test]
    fn a_cluster_alert_is_deduplicated_until_it_resolves() {
        let (mut engine, t0) = engine();
        let wall = SystemTime::now();
        let down = |e: &mut Engine, at| e.cluster("prod", false, Some("refused"), at, wall);
        assert!(down(&mut engine, t0).is_some());
        assert!(down(&mut engine, t0 + Duration::from_secs(1)).is_none());
        let up = engine.cluster("prod", true, None, t0 + Duration::from_secs(2), wall);
        assert_eq!(up.unwrap().alert.status, Status::Resolved);
        assert!(engine
            .cluster("prod", true, None, t0 + Duration::from_secs(3), wall)
            .is_none());
        assert!(down(&mut engine, t0 + Duration::from_secs(4)).is_some());
    }

    #[test]
    fn refresh_failing_fires_after_its_duration_and_resolves_on_success() {
        let (mut engine, t0) = engine();
        let wall = SystemTime::now();
        let m = |n: u64| Duration::from_secs(n * 60);
        assert!(engine.refresh("ldap", Some("down"), t0, wall).is_empty());
        assert!(engine.tick(t0 + m(9), wall).is_empty());
        assert_eq!(
            names(&engine.tick(t0 + m(10), wall)),
            [("PaddockRefreshFailing", Status::Firing)]
        );
        assert!(engine
            .refresh("ldap", Some("down"), t0 + m(11), wall)
            .is_empty());
        assert_eq!(
            names(&engine.refresh("ldap", None, t0 + m(12), wall)),
            [("PaddockRefreshFailing", Status::Resolved)]
        );
    }

    #[test]
    fn rbac_sync_failing_fires_after_its_duration_and_resolves_when_the_cluster_goes() {
        let (mut engine, t0) = engine();
        let wall = SystemTime::now();
        let m = |n: u64| Duration::from_secs(n * 60);
        assert!(engine
            .rbac_sync("prod", Some("forbidden"), t0, wall)
            .is_empty());
        assert!(engine
            .rbac_sync("prod", Some("forbidden"), t0 + m(4), wall)
            .is_empty());
        let fired = engine.rbac_sync("prod", Some("still forbidden"), t0 + m(5), wall);
        assert_eq!(names(&fired), [("PaddockRbacSyncFailing", Status::Firing)]);
        assert_eq!(fired[0].alert.labels["cluster"], "prod");
        assert!(
            fired[0]
                .alert
                .summary
                .contains("5 minutes: still forbidden"),
            "{}",
            fired[0].alert.summary
        );
        // Another rule's subject of the same name is another alert.
        assert!(engine.refresh("prod", None, t0 + m(6), wall).is_empty());
        assert_eq!(
            names(&engine.rbac_sync("prod", None, t0 + m(6), wall)),
            [("PaddockRbacSyncFailing", Status::Resolved)]
        );
        // Failing again starts a new count.
        assert!(engine
            .rbac_sync("prod", Some("forbidden"), t0 + m(7), wall)
            .is_empty());
        assert!(engine.tick(t0 + m(11), wall).is_empty());
        assert_eq!(
            names(&engine.tick(t0 + m(12), wall)),
            [("PaddockRbacSyncFailing", Status::Firing)]
        );
    }

    #[test]
    fn the_rate_limit_holds_back_firing_alerts_and_their_resolution() {
        let (mut engine, t0) = engine();
        engine.limiter = Limiter::new(2, t0);
        let wall = SystemTime::now();
        let sent: Vec<_> = (0..5)
            .filter_map(|i| engine.cluster(&format!("c{i}"), false, None, t0, wall))
            .collect();
        assert_eq!(sent.len(), 2);
        assert_eq!(engine.rate_limited, 3);
        // c4 was held back: its resolution is not announced either.
        assert!(engine.cluster("c4", true, None, t0, wall).is_none());
        assert!(engine.cluster("c0", true, None, t0, wall).is_some());
        // A minute later the bucket is full again.
        let later = t0 + Duration::from_secs(60);
        assert!(engine.cluster("c9", false, None, later, wall).is_some());
    }

    #[test]
    fn one_offs_expire_silently_and_may_fire_again() {
        let (mut engine, t0) = engine();
        let wall = SystemTime::now();
        let expire = AlertsOptions::default().expire;
        let seen = |e: &mut Engine, at| e.new_token_address("t-1", "alice", "192.0.2.9", at, wall);
        assert!(seen(&mut engine, t0).is_some());
        assert!(seen(&mut engine, t0 + Duration::from_secs(1)).is_none());
        let after = t0 + expire;
        assert!(engine
            .tick(after, wall)
            .iter()
            .all(|n| n.alert.status == Status::Firing && n.resend));
        assert_eq!(engine.firing(), 0);
        assert!(seen(&mut engine, after).is_some());
    }
}
