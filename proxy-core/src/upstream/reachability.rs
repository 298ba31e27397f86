//! Whether a direct cluster answers, as its requests find out: the first
//! connection refused (or a TLS handshake failed, a name not resolved)
//! after answers, and the first answer after such failures, become an
//! [`Event::ClusterReachability`] for the plugins (the alerts'
//! `clusterUnreachable`), with no health checker needed. An agent's
//! tunnel reports its own cluster's reachability when the agent connects
//! and drops (`tunnel::registry`), so tunnel clusters have none of this.
//!
//! Per request it costs one relaxed load of a word every worker only reads
//! until the verdict changes.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::{error::ProxyError, events::Event, plugin::Plugins, request::ProxyResult};

const UNKNOWN: u8 = 0;
const ANSWERS: u8 = 1;
const UNREACHABLE: u8 = 2;

/// The last verdict on one cluster.
#[derive(Debug, Default)]
pub(crate) struct Reachability(AtomicU8);

impl Reachability {
    /// Notes what forwarding `result` says about the cluster `id`, telling
    /// `plugins` when that changes the verdict. A 502 or a 504 says the
    /// server was reached (or is slow), not that it is unreachable: only a
    /// failure to connect (503) does.
    pub(crate) fn observe(&self, id: &str, result: &ProxyResult, plugins: &Plugins) {
        let (verdict, reason) = match result {
            Ok(_) => (ANSWERS, None),
            Err(ProxyError::UpstreamUnavailable { message, .. }) => (UNREACHABLE, Some(message)),
            Err(_) => return,
        };
        if self.0.load(Ordering::Relaxed) == verdict {
            return;
        }
        let before = self.0.swap(verdict, Ordering::Relaxed);
        // Another worker told first; and a cluster that answers from the
        // start has not changed.
        if before == verdict || (before == UNKNOWN && verdict == ANSWERS) {
            return;
        }
        if verdict == UNREACHABLE {
            tracing::warn!(cluster.id = %id, reason = reason.map_or("", String::as_str), "cluster unreachable");
        } else {
            tracing::info!(cluster.id = %id, "cluster reachable again");
        }
        if plugins.is_empty() {
            return;
        }
        plugins.run_event(&Event::ClusterReachability {
            cluster: id.to_owned(),
            reachable: verdict == ANSWERS,
            reason: reason.cloned(),
        });
    }
}
