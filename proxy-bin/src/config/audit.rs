//! `audit:` — the Kubernetes-format audit log (`proxy_core::plugins::audit`).
//!
//! ```yaml
//! audit:
//!   policyFile: /etc/paddock/audit-policy.yaml   # kube-apiserver's --audit-policy-file shape
//!   file: {path: /var/log/paddock/audit.log, maxSizeMB: 100, maxFiles: 5}
//!   webhook: {url: https://collector.example/audit, caFile: /etc/paddock/collector-ca.crt}
//!   queueSize: 10000
//!   onFull: drop        # or block
//! ```

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use proxy_core::net::OutboundProxy;
use proxy_core::plugins::audit::{
    Audit, AuditSink, FileSink, OnFull, Policy, QueueOptions, WebhookSink,
};
use serde::Deserialize;

use super::Errors;

/// `audit:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuditConfig {
    /// An `audit.k8s.io/v1` `Policy`; without one, every request is
    /// recorded at `Metadata`, `RequestReceived` omitted.
    policy_file: Option<PathBuf>,
    /// The file sink.
    file: Option<FileConfig>,
    /// The webhook sink.
    webhook: Option<WebhookConfig>,
    /// Events waiting for a sink at most (default 10000).
    queue_size: Option<usize>,
    /// What to do when a sink's queue is full (default `drop`).
    on_full: Option<OnFullConfig>,
}

/// `audit.file:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    /// The file written; its directory must exist.
    path: PathBuf,
    /// Rotate before the file grows past this many MiB (default 100).
    #[serde(rename = "maxSizeMB")]
    max_size_mb: Option<u64>,
    /// Rotated files kept (default 5; 0 keeps none).
    max_files: Option<usize>,
}

/// `audit.webhook:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WebhookConfig {
    /// `https://…`, or `http://` to a loopback address.
    url: String,
    /// The CA bundle of the receiver's certificate (default: the system's).
    ca_file: Option<PathBuf>,
    /// Events per POST at most (default 400).
    batch_size: Option<usize>,
    /// Seconds one POST may take (default 10).
    timeout_seconds: Option<u64>,
    /// Retries of a failed batch before it is dropped (default 3).
    retries: Option<u32>,
    /// Seconds before the first retry, doubled for each next (default 10).
    initial_backoff_seconds: Option<u64>,
    /// This sink's queue (default: `audit.queueSize`).
    queue_size: Option<usize>,
    /// This sink's full-queue behaviour (default: `audit.onFull`).
    on_full: Option<OnFullConfig>,
}

/// `onFull:`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnFullConfig {
    /// The request waits for room in the queue.
    Block,
    /// The event is dropped and counted.
    Drop,
}

impl From<OnFullConfig> for OnFull {
    fn from(value: OnFullConfig) -> Self {
        match value {
            OnFullConfig::Block => OnFull::Block,
            OnFullConfig::Drop => OnFull::Drop,
        }
    }
}

/// A checked `audit:` section: what `serve` builds the plugin from.
#[derive(Debug)]
pub(crate) struct CheckedAudit {
    pub(super) policy: Policy,
    pub(super) file: Option<(FileSink, QueueOptions)>,
    pub(super) webhook: Option<(WebhookSink, QueueOptions)>,
}

impl CheckedAudit {
    /// Opens the file and starts the sinks' threads, the webhook's POSTing
    /// through `proxy`: fails only on the machine's state (permissions, a
    /// full disk).
    pub(crate) fn plugin(self, proxy: &OutboundProxy) -> anyhow::Result<Audit> {
        let mut sinks = Vec::new();
        if let Some((file, queue)) = self.file {
            let path = file.path.clone();
            let sink = AuditSink::file(file, queue)
                .map_err(|e| anyhow::anyhow!("audit log {}: {e}", path.display()))?;
            sinks.push(sink);
        }
        if let Some((mut webhook, queue)) = self.webhook {
            webhook.proxy = proxy.clone();
            sinks.push(
                AuditSink::webhook(webhook, queue)
                    .map_err(|e| anyhow::anyhow!("audit webhook: {e}"))?,
            );
        }
        let mut sinks = sinks.into_iter();
        let first = sinks
            .next()
            .ok_or_else(|| anyhow::anyhow!("audit: no sink"))?;
        Ok(sinks.fold(Audit::new(self.policy, first), Audit::sink))
    }
}

impl AuditConfig {
    pub(super) fn check(&self, errors: &mut Errors) -> Option<CheckedAudit> {
        let policy = match &self.policy_file {
            Some(file) => errors
                .read_text("audit.policyFile", file)
                .and_then(|text| errors.ok("audit.policyFile", Policy::from_yaml(&text))),
            None => Some(Policy::default()),
        };
        if self.file.is_none() && self.webhook.is_none() {
            errors.push(
                "audit",
                "needs a sink: file, webhook or both, where events are written",
            );
        }
        let mut queue = QueueOptions::default();
        if let Some(on_full) = self.on_full {
            queue.on_full = on_full.into();
        }
        queue.capacity = queue_size(errors, "audit.queueSize", self.queue_size, queue.capacity);
        let file = self.file.as_ref().map(|f| f.check(errors));
        let webhook = self.webhook.as_ref().map(|w| w.check(errors, queue));
        // Every part checked (and its errors recorded) before any `?`.
        let file = match file {
            Some(checked) => Some((checked?, queue)),
            None => None,
        };
        let webhook = match webhook {
            Some(checked) => Some(checked?),
            None => None,
        };
        Some(CheckedAudit {
            policy: policy?,
            file,
            webhook,
        })
    }
}

fn queue_size(errors: &mut Errors, key: &str, value: Option<usize>, default: usize) -> usize {
    match value {
        Some(0) => {
            errors.push(key, "must be at least 1");
            default
        }
        Some(n) => n,
        None => default,
    }
}

impl FileConfig {
    fn check(&self, errors: &mut Errors) -> Option<FileSink> {
        let mut sink = FileSink::new(&self.path);
        let mut ok = true;
        let mut bad = |errors: &mut Errors, key: &str, message: String| {
            errors.push(format!("audit.file.{key}"), message);
            ok = false;
        };
        match self.path.parent() {
            _ if self.path.is_dir() => bad(
                errors,
                "path",
                format!("{} is a directory", self.path.display()),
            ),
            None => bad(errors, "path", "must name a file".to_owned()),
            Some(dir) => {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                if !dir.is_dir() {
                    let message = format!("directory {} does not exist", dir.display());
                    bad(errors, "path", message);
                }
            }
        }
        match self.max_size_mb.map(|mb| mb.checked_mul(1024 * 1024)) {
            Some(Some(0)) => bad(errors, "maxSizeMB", "must be at least 1".to_owned()),
            Some(None) => bad(errors, "maxSizeMB", "is too large".to_owned()),
            Some(Some(bytes)) => sink.max_size_bytes = bytes,
            None => {}
        }
        if let Some(n) = self.max_files {
            sink.max_files = n;
        }
        ok.then_some(sink)
    }
}

impl WebhookConfig {
    fn check(
        &self,
        errors: &mut Errors,
        defaults: QueueOptions,
    ) -> Option<(WebhookSink, QueueOptions)> {
        let before = errors.len();
        let mut queue = defaults;
        if let Some(on_full) = self.on_full {
            queue.on_full = on_full.into();
        }
        queue.capacity = queue_size(
            errors,
            "audit.webhook.queueSize",
            self.queue_size,
            queue.capacity,
        );
        let mut webhook = errors.ok("audit.webhook.url", WebhookSink::new(&self.url))?;
        if let Some(file) = &self.ca_file {
            webhook.ca_pem = errors.read("audit.webhook.caFile", file);
        }
        match self.batch_size {
            Some(0) => errors.push("audit.webhook.batchSize", "must be at least 1"),
            Some(n) => webhook.batch_size = n,
            None => {}
        }
        match self.timeout_seconds {
            Some(0) => errors.push("audit.webhook.timeoutSeconds", "must be at least 1"),
            Some(secs) => webhook.timeout = Duration::from_secs(secs),
            None => {}
        }
        if let Some(retries) = self.retries {
            webhook.retries = retries;
        }
        if let Some(secs) = self.initial_backoff_seconds {
            webhook.initial_backoff = Duration::from_secs(secs);
        }
        if errors.len() == before {
            // The CA bundle parses, TLS can be set up.
            errors.ok("audit.webhook.caFile", webhook.check())?;
        }
        (errors.len() == before).then_some((webhook, queue))
    }
}
