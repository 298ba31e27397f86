//! `agents:` — clusters reached through `paddock agent`.

use std::time::Duration;

use serde::Deserialize;

use super::Errors;

/// `agents:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AgentsConfig {
    /// Seconds a request waits for a disconnected agent before it gets 503
    /// (default 5, at most 60).
    wait_seconds: Option<u64>,
    /// The container image of the agent manifests Paddock hands out.
    image: Option<String>,
}

/// `agents:`, checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedAgents {
    /// How long a request waits for a disconnected agent.
    pub(crate) wait: Duration,
    /// The agent manifests' image.
    pub(crate) image: String,
}

impl AgentsConfig {
    pub(super) fn check(&self, errors: &mut Errors) -> CheckedAgents {
        let wait = match self.wait_seconds {
            Some(secs @ 1..=60) => Duration::from_secs(secs),
            Some(_) => {
                errors.push("agents.waitSeconds", "must be between 1 and 60");
                proxy_core::tunnel::DEFAULT_AGENT_WAIT
            }
            None => proxy_core::tunnel::DEFAULT_AGENT_WAIT,
        };
        let image = match &self.image {
            Some(image) if image.is_empty() || image.contains(char::is_whitespace) => {
                errors.push("agents.image", "must be an image reference, without spaces");
                String::new()
            }
            Some(image) => image.clone(),
            None => proxy_core::agent::DEFAULT_IMAGE.to_owned(),
        };
        CheckedAgents { wait, image }
    }
}
