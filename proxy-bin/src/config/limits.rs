//! `limits:` — how long clients may take and how many may be connected.

use std::time::Duration;

use proxy_core::server::ConnectionLimits;
use serde::Deserialize;

use super::Errors;

/// `limits:`. Every timeout is in seconds and at least 1; requests that
/// stream (watches, `logs -f`, exec) are never cut by them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LimitsConfig {
    /// Time a client gets to send a request's headers (default 32, as
    /// kube-apiserver).
    header_read_timeout_seconds: Option<u64>,
    /// A connection with no request in flight is closed after this long
    /// (default 90).
    idle_timeout_seconds: Option<u64>,
    /// Time Paddock's own endpoints give a request body to arrive (default 30).
    body_read_timeout_seconds: Option<u64>,
    /// Open client connections at most (default: 80% of the open-file limit).
    max_connections: Option<usize>,
}

impl LimitsConfig {
    pub(super) fn check(&self, errors: &mut Errors) -> ConnectionLimits {
        let mut limits = ConnectionLimits::default();
        let mut seconds = |key: &str, value: Option<u64>, into: &mut Duration| match value {
            Some(0) => errors.push(format!("limits.{key}"), "must be at least 1"),
            Some(secs) => *into = Duration::from_secs(secs),
            None => {}
        };
        seconds(
            "headerReadTimeoutSeconds",
            self.header_read_timeout_seconds,
            &mut limits.header_read_timeout,
        );
        seconds(
            "idleTimeoutSeconds",
            self.idle_timeout_seconds,
            &mut limits.idle_timeout,
        );
        seconds(
            "bodyReadTimeoutSeconds",
            self.body_read_timeout_seconds,
            &mut limits.body_read_timeout,
        );
        match self.max_connections {
            Some(0) => errors.push("limits.maxConnections", "must be at least 1"),
            Some(n) => limits.max_connections = Some(n),
            None => {}
        }
        limits
    }
}
