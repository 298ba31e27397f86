//! `alerts:` — alert hooks (`proxy_core::plugins::alerts`), and
//! `clusterHealth:` — the cluster health checker (`proxy_core::health`).
//!
//! ```yaml
//! clusterHealth: {intervalSeconds: 30, timeoutSeconds: 10}
//! alerts:
//!   rules:
//!     failedLogins: {threshold: 10, windowSeconds: 60}   # per user and per address
//!     tokenNewAddress: true
//!     providerDegraded: true
//!     refreshFailingMinutes: 15
//!     clusterUnreachable: true     # from tunnels, requests, and clusterHealth if on
//!     rbacSyncFailingMinutes: 10   # needs rbacSync
//!   receivers:
//!   - {name: ops, url: https://hooks.slack.com/services/T0/B0/XXXX, format: slack}
//!   - {name: am, url: https://alertmanager.example/api/v2/alerts, format: alertmanager, caFile: /etc/paddock/am-ca.crt}
//!   queueSize: 1000
//!   maxPerMinute: 30
//! ```

use std::{path::PathBuf, time::Duration};

use proxy_core::{
    health::HealthOptions,
    net::OutboundProxy,
    plugins::alerts::{AlertReceiver, AlertRules, Alerts, AlertsOptions, Burst, Format},
};
use serde::Deserialize;

use super::Errors;

/// `clusterHealth:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct HealthConfig {
    /// Seconds between two rounds of checks (default 30).
    interval_seconds: Option<u64>,
    /// Seconds one cluster's check may take (default 10).
    timeout_seconds: Option<u64>,
}

impl HealthConfig {
    pub(super) fn check(&self, errors: &mut Errors) -> HealthOptions {
        let mut options = HealthOptions::default();
        match self.interval_seconds {
            Some(0) => errors.push("clusterHealth.intervalSeconds", "must be at least 1"),
            Some(secs) => options.interval = Duration::from_secs(secs),
            None => {}
        }
        match self.timeout_seconds {
            Some(0) => errors.push("clusterHealth.timeoutSeconds", "must be at least 1"),
            Some(secs) => options.timeout = Duration::from_secs(secs),
            None => {}
        }
        options
    }
}

/// `alerts:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AlertsConfig {
    /// Which rules are on.
    #[serde(default)]
    rules: RulesConfig,
    /// Where alerts go.
    #[serde(default)]
    receivers: Vec<ReceiverConfig>,
    /// Notifications waiting for delivery at most (default 1000), in the
    /// shared queue and in each receiver's.
    queue_size: Option<usize>,
    /// Firing alerts sent per minute at most (default 30).
    max_per_minute: Option<u32>,
    /// Seconds a one-off alert stays firing, deduplicated (default 3600).
    expire_seconds: Option<u64>,
    /// Seconds between two sends of a firing alert to Alertmanager (default 60).
    resend_seconds: Option<u64>,
    /// Paddock's address, which alerts link to.
    #[serde(rename = "externalURL")]
    external_url: Option<String>,
}

/// `alerts.rules:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RulesConfig {
    failed_logins: Option<BurstConfig>,
    #[serde(default)]
    token_new_address: bool,
    #[serde(default)]
    provider_degraded: bool,
    refresh_failing_minutes: Option<u64>,
    #[serde(default)]
    cluster_unreachable: bool,
    rbac_sync_failing_minutes: Option<u64>,
}

/// `alerts.rules.failedLogins:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BurstConfig {
    threshold: u32,
    window_seconds: u64,
}

/// `alerts.receivers[]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReceiverConfig {
    name: String,
    /// `https://…`, or `http://` to a loopback address.
    url: String,
    /// `generic` (default), `slack`, `alertmanager`, `alertmanagerWebhook`.
    format: Option<FormatConfig>,
    ca_file: Option<PathBuf>,
    timeout_seconds: Option<u64>,
    retries: Option<u32>,
    initial_backoff_seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
enum FormatConfig {
    Generic,
    Slack,
    Alertmanager,
    AlertmanagerWebhook,
}

impl From<FormatConfig> for Format {
    fn from(value: FormatConfig) -> Self {
        match value {
            FormatConfig::Generic => Format::Generic,
            FormatConfig::Slack => Format::Slack,
            FormatConfig::Alertmanager => Format::Alertmanager,
            FormatConfig::AlertmanagerWebhook => Format::AlertmanagerWebhook,
        }
    }
}

/// A checked `alerts:` section.
#[derive(Debug)]
pub(crate) struct CheckedAlerts {
    rules: AlertRules,
    receivers: Vec<AlertReceiver>,
    options: AlertsOptions,
}

impl CheckedAlerts {
    /// Starts the delivery thread, POSTing through `proxy`.
    pub(crate) fn plugin(mut self, proxy: &OutboundProxy) -> anyhow::Result<Alerts> {
        for receiver in &mut self.receivers {
            receiver.proxy = proxy.clone();
        }
        Alerts::new(self.rules, self.receivers, self.options)
            .map_err(|e| anyhow::anyhow!("alerts: {e}"))
    }
}

impl AlertsConfig {
    /// Checks every key; `rbac_sync` tells whether `rbacSync` is configured,
    /// the sync whose failures `rbacSyncFailingMinutes` reports.
    /// `clusterUnreachable` needs no `clusterHealth`: tunnels and requests
    /// report reachability too.
    pub(super) fn check(&self, rbac_sync: bool, errors: &mut Errors) -> Option<CheckedAlerts> {
        let before = errors.len();
        let mut rules = AlertRules::default();
        let r = &self.rules;
        if let Some(burst) = &r.failed_logins {
            if burst.threshold == 0 {
                errors.push("alerts.rules.failedLogins.threshold", "must be at least 1");
            }
            if burst.window_seconds == 0 {
                errors.push(
                    "alerts.rules.failedLogins.windowSeconds",
                    "must be at least 1",
                );
            }
            rules.failed_logins = Some(Burst {
                threshold: burst.threshold,
                window: Duration::from_secs(burst.window_seconds),
            });
        }
        rules.token_new_address = r.token_new_address;
        rules.provider_degraded = r.provider_degraded;
        match r.refresh_failing_minutes {
            Some(0) => errors.push("alerts.rules.refreshFailingMinutes", "must be at least 1"),
            Some(minutes) => {
                rules.refresh_failing = Some(Duration::from_secs(minutes.saturating_mul(60)));
            }
            None => {}
        }
        match r.rbac_sync_failing_minutes {
            Some(0) => errors.push("alerts.rules.rbacSyncFailingMinutes", "must be at least 1"),
            Some(_) if !rbac_sync => errors.push(
                "alerts.rules.rbacSyncFailingMinutes",
                "needs rbacSync: the sync whose failures it reports",
            ),
            Some(minutes) => {
                rules.rbac_sync_failing = Some(Duration::from_secs(minutes.saturating_mul(60)));
            }
            None => {}
        }
        rules.cluster_unreachable = r.cluster_unreachable;
        if self.receivers.is_empty() {
            errors.push("alerts.receivers", "needs at least one receiver");
        }
        let mut receivers = Vec::new();
        for (i, receiver) in self.receivers.iter().enumerate() {
            if let Some(receiver) = receiver.check(&format!("alerts.receivers[{i}]"), errors) {
                receivers.push(receiver);
            }
        }
        let mut options = AlertsOptions::default();
        match self.queue_size {
            Some(0) => errors.push("alerts.queueSize", "must be at least 1"),
            Some(n) => options.queue_size = n,
            None => {}
        }
        match self.max_per_minute {
            Some(0) => errors.push("alerts.maxPerMinute", "must be at least 1"),
            Some(n) => options.max_per_minute = n,
            None => {}
        }
        match self.expire_seconds {
            Some(0) => errors.push("alerts.expireSeconds", "must be at least 1"),
            Some(secs) => options.expire = Duration::from_secs(secs),
            None => {}
        }
        match self.resend_seconds {
            Some(0) => errors.push("alerts.resendSeconds", "must be at least 1"),
            Some(secs) => options.resend = Duration::from_secs(secs),
            None => {}
        }
        if let Some(url) = &self.external_url {
            options.external_url = url.clone();
        }
        (errors.len() == before).then_some(CheckedAlerts {
            rules,
            receivers,
            options,
        })
    }
}

impl ReceiverConfig {
    fn check(&self, path: &str, errors: &mut Errors) -> Option<AlertReceiver> {
        let before = errors.len();
        if self.name.is_empty() {
            errors.push(format!("{path}.name"), "must not be empty");
        }
        let format = self.format.map_or(Format::Generic, Format::from);
        let mut receiver = errors.ok(
            &format!("{path}.url"),
            AlertReceiver::new(&self.name, &self.url, format),
        )?;
        if let Some(file) = &self.ca_file {
            receiver.ca_pem = errors.read(&format!("{path}.caFile"), file);
        }
        match self.timeout_seconds {
            Some(0) => errors.push(format!("{path}.timeoutSeconds"), "must be at least 1"),
            Some(secs) => receiver.timeout = Duration::from_secs(secs),
            None => {}
        }
        if let Some(retries) = self.retries {
            receiver.retries = retries;
        }
        if let Some(secs) = self.initial_backoff_seconds {
            receiver.initial_backoff = Duration::from_secs(secs);
        }
        if errors.len() == before {
            errors.ok(&format!("{path}.caFile"), receiver.check())?;
        }
        (errors.len() == before).then_some(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrors};

    fn error_paths(yaml: &str) -> Vec<String> {
        let errors: ConfigErrors = Config::from_yaml(yaml).unwrap().check().unwrap_err();
        errors.0.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn a_good_alerts_section_is_accepted() {
        let checked = Config::from_yaml(
            "clusterHealth: {intervalSeconds: 5}\n\
             alerts:\n  rules: {failedLogins: {threshold: 3, windowSeconds: 60}, clusterUnreachable: true}\n  \
             receivers: [{name: ops, url: 'http://127.0.0.1:9/x', format: alertmanagerWebhook}]\n",
        )
        .unwrap()
        .check()
        .unwrap();
        let alerts = checked.alerts.unwrap();
        assert_eq!(alerts.rules.failed_logins.unwrap().threshold, 3);
        assert_eq!(checked.health.unwrap().interval.as_secs(), 5);
    }

    #[test]
    fn bad_alerts_keys_are_named() {
        assert_eq!(
            error_paths(
                "alerts:\n  rules: {failedLogins: {threshold: 0, windowSeconds: 0}, clusterUnreachable: true}\n  \
                 receivers: [{name: ops, url: 'http://alerts.example/'}, {name: x, url: 'https://x/', caFile: /nonexistent}]\n  \
                 maxPerMinute: 0\n"
            ),
            [
                "alerts.rules.failedLogins.threshold",
                "alerts.rules.failedLogins.windowSeconds",
                "alerts.receivers[0].url",
                "alerts.receivers[1].caFile",
                "alerts.maxPerMinute",
            ]
        );
        assert_eq!(error_paths("alerts: {}\n"), ["alerts.receivers"]);
        assert_eq!(
            error_paths("clusterHealth: {timeoutSeconds: 0}\n"),
            ["clusterHealth.timeoutSeconds"]
        );
        let unknown = Config::from_yaml("alerts: {rules: {loginBurst: true}}\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("loginBurst"), "{unknown}");
    }
}
