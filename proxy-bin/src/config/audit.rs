//! `audit:` — the Kubernetes-format audit log (`proxy_core::plugins::audit`).
//!
//! ```yaml
//! audit:
//!   policyFile: /etc/paddock/audit-policy.yaml   # kube-apiserver's --audit-policy-file shape
//!   file: {path: /var/log/paddock/audit.log, maxSizeMB: 100, maxFiles: 5}
//!   queueSize: 10000
//!   onFull: drop        # or block
//! ```

use std::path::{Path, PathBuf};

use proxy_core::plugins::audit::{Audit, AuditSink, FileSink, OnFull, Policy, QueueOptions};
use serde::Deserialize;

use super::Errors;

/// `audit:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuditConfig {
    /// An `audit.k8s.io/v1` `Policy`; without one, every request is
    /// recorded at `Metadata`.
    policy_file: Option<PathBuf>,
    /// The file sink (required: it is the only sink).
    file: Option<FileConfig>,
    /// Events waiting to be written at most (default 10000).
    queue_size: Option<usize>,
    /// What to do when the queue is full (default `drop`).
    #[serde(default)]
    on_full: OnFullConfig,
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

/// `audit.onFull:`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum OnFullConfig {
    /// The request waits for room in the queue.
    Block,
    /// The event is dropped and counted.
    #[default]
    Drop,
}

/// A checked `audit:` section: what `serve` builds the plugin from.
#[derive(Debug)]
pub(crate) struct CheckedAudit {
    pub(super) policy: Policy,
    pub(super) file: FileSink,
    pub(super) queue: QueueOptions,
}

impl CheckedAudit {
    /// Opens the file and starts its writer: fails only on the machine's
    /// state (permissions, a full disk).
    pub(crate) fn plugin(self) -> std::io::Result<Audit> {
        let path = self.file.path.clone();
        let sink = AuditSink::file(self.file, self.queue).map_err(|e| {
            std::io::Error::new(e.kind(), format!("audit log {}: {e}", path.display()))
        })?;
        Ok(Audit::new(self.policy, sink))
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
        let file = match &self.file {
            None => {
                errors.push("audit.file", "is required: where the audit log is written");
                None
            }
            Some(file) => file.check(errors),
        };
        let mut queue = QueueOptions {
            on_full: match self.on_full {
                OnFullConfig::Block => OnFull::Block,
                OnFullConfig::Drop => OnFull::Drop,
            },
            ..QueueOptions::default()
        };
        match self.queue_size {
            Some(0) => errors.push("audit.queueSize", "must be at least 1"),
            Some(n) => queue.capacity = n,
            None => {}
        }
        Some(CheckedAudit {
            policy: policy?,
            file: file?,
            queue,
        })
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
