//! `logging:`: the log format and filter.

use serde::Deserialize;

use super::Errors;

/// `logging:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoggingConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub(crate) format: LogFormat,
    /// A tracing filter such as `info` or `paddock=debug` (`RUST_LOG` wins).
    pub(crate) level: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LoggingConfig {
    pub(super) fn check(&self, errors: &mut Errors) {
        if let Some(level) = &self.level {
            errors.ok("logging.level", crate::logging::parse_filter(level));
        }
    }
}
