//! `rbacSync:` — write Paddock's bindings into clusters as native RBAC
//! (see `proxy_core::plugins::rbac_sync`), for callers who reach those
//! clusters' API servers directly through `paddock sidecar`.
//!
//! ```yaml
//! rbacSync: {}                                    # every cluster, registered ones included
//! rbacSync: {clusters: [prod], intervalSeconds: 60}  # only these configured clusters
//! ```

use std::time::Duration;

use serde::Deserialize;

use super::Errors;

/// `rbacSync:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RbacSyncConfig {
    /// The cluster ids to synchronise (each one of `clusters:`); absent:
    /// every cluster, configured or registered while Paddock runs.
    clusters: Option<Vec<String>>,
    /// Seconds between full passes that repair drift (default 60); changes
    /// in Paddock are written at once.
    interval_seconds: Option<u64>,
}

/// `rbacSync:`, checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedRbacSync {
    /// Cluster ids; `None` for every cluster.
    pub(crate) clusters: Option<Vec<String>>,
    /// Time between full passes.
    pub(crate) interval: Duration,
}

impl RbacSyncConfig {
    pub(super) fn check(
        &self,
        known: &[&str],
        policy: bool,
        errors: &mut Errors,
    ) -> Option<CheckedRbacSync> {
        let before = errors.len();
        if !policy {
            errors.push(
                "rbacSync",
                "needs authorization mode policy: the bindings it writes are the policy's",
            );
        }
        let listed = self.clusters.as_deref().unwrap_or_default();
        if self.clusters.as_ref().is_some_and(Vec::is_empty) {
            errors.push(
                "rbacSync.clusters",
                "name at least one cluster, or leave it out for every cluster",
            );
        }
        for (i, id) in listed.iter().enumerate() {
            if !known.contains(&id.as_str()) {
                errors.push(
                    format!("rbacSync.clusters[{i}]"),
                    format!("{id:?} is not one of clusters:"),
                );
            }
        }
        if self.interval_seconds == Some(0) {
            errors.push("rbacSync.intervalSeconds", "must be at least 1");
        }
        (errors.len() == before).then(|| CheckedRbacSync {
            clusters: self.clusters.clone(),
            interval: Duration::from_secs(self.interval_seconds.unwrap_or(60)),
        })
    }
}
