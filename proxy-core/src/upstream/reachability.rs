//! Whether a cluster answers: the one verdict Paddock keeps per cluster,
//! which its status, the health view (`crate::health`) and the plugins
//! (the alerts' `clusterUnreachable`, the metrics' `cluster_up`) all read.
//!
//! Whoever learns something reports an observation here and decides
//! nothing: every request forwarded to the cluster and every call Paddock
//! makes to it for itself (health checks, the RBAC sync), an agent's
//! tunnel connecting (when the agent could read its API server's
//! `/version`) or dropping (`tunnel::registry`), a health check that
//! got no answer in time. Only a failure to connect (connection refused, a
//! TLS handshake failed, a name not resolved, no agent connected, an agent
//! that could not connect to its own API server) or no answer at all says
//! unreachable; any answer, whatever its status, says
//! the cluster answers (a 502 or a 504 says the server was reached, or is
//! slow). Each change of verdict, the first one included, is logged and
//! becomes one [`Event::ClusterReachability`].
//!
//! Per request it costs one relaxed load of a word every worker only reads
//! until the verdict changes.

use std::{
    sync::{
        atomic::{AtomicU8, Ordering},
        Mutex, PoisonError,
    },
    time::SystemTime,
};

use crate::{
    error::ProxyError,
    events::{Event, Events},
};

const UNKNOWN: u8 = 0;
const ANSWERS: u8 = 1;
const UNREACHABLE: u8 = 2;

/// What one source found out about a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Observation<'a> {
    /// It answered.
    Answers,
    /// It could not be reached, and why.
    Unreachable(&'a str),
}

impl<'a> Observation<'a> {
    /// What the outcome of a request or call says, if anything.
    pub(crate) fn of<T>(result: &'a Result<T, ProxyError>) -> Option<Self> {
        match result {
            Ok(_) => Some(Self::Answers),
            Err(ProxyError::UpstreamUnavailable { message, .. }) => {
                Some(Self::Unreachable(message))
            }
            Err(_) => None,
        }
    }
}

/// The verdict on a cluster, as [`Reachability::verdict`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether it answers; `None` before any observation.
    pub(crate) reachable: Option<bool>,
    /// Why not, when it does not.
    pub(crate) reason: Option<String>,
    /// When the verdict last changed.
    pub(crate) since: Option<SystemTime>,
}

/// The verdict on one cluster, and whom to tell when it changes.
#[derive(Debug)]
pub(crate) struct Reachability {
    cluster: String,
    state: AtomicU8,
    /// Written only on a change, under this lock, so a change, its reason
    /// and its event go together and events leave in the order of changes.
    detail: Mutex<Detail>,
    events: Events,
}

#[derive(Debug, Default)]
struct Detail {
    reason: Option<String>,
    since: Option<SystemTime>,
}

impl Reachability {
    /// No verdict yet on `cluster`; changes go to `events`.
    pub(crate) fn new(cluster: &str, events: Events) -> Self {
        Self {
            cluster: cluster.to_owned(),
            state: AtomicU8::new(UNKNOWN),
            detail: Mutex::default(),
            events,
        }
    }

    /// Notes what the outcome of a request or call to the cluster says.
    pub(crate) fn observe_result<T>(&self, result: &Result<T, ProxyError>) {
        if let Some(observation) = Observation::of(result) {
            self.observe(observation);
        }
    }

    /// Notes `observation`, telling the events when it changes the verdict.
    pub(crate) fn observe(&self, observation: Observation<'_>) {
        let (verdict, reason) = match observation {
            Observation::Answers => (ANSWERS, None),
            Observation::Unreachable(reason) => (UNREACHABLE, Some(reason)),
        };
        if self.state.load(Ordering::Relaxed) == verdict {
            return;
        }
        let mut detail = self.detail.lock().unwrap_or_else(PoisonError::into_inner);
        // Another worker told first.
        let before = self.state.swap(verdict, Ordering::Relaxed);
        if before == verdict {
            return;
        }
        detail.reason = reason.map(str::to_owned);
        detail.since = Some(SystemTime::now());
        let id = &self.cluster;
        match (verdict, before) {
            (UNREACHABLE, _) => {
                tracing::warn!(cluster.id = %id, reason = reason.unwrap_or(""), "cluster unreachable");
            }
            (_, UNKNOWN) => tracing::info!(cluster.id = %id, "cluster reachable"),
            _ => tracing::info!(cluster.id = %id, "cluster reachable again"),
        }
        self.events.emit(&Event::ClusterReachability {
            cluster: id.clone(),
            reachable: verdict == ANSWERS,
            reason: detail.reason.clone(),
        });
    }

    /// The verdict now.
    pub(crate) fn verdict(&self) -> Verdict {
        let detail = self.detail.lock().unwrap_or_else(PoisonError::into_inner);
        let reachable = match self.state.load(Ordering::Relaxed) {
            ANSWERS => Some(true),
            UNREACHABLE => Some(false),
            _ => None,
        };
        Verdict {
            reachable,
            reason: detail.reason.clone(),
            since: detail.since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::tests::recorded;

    #[test]
    fn every_source_moves_one_verdict_and_each_change_is_told_once() {
        let (events, seen) = recorded();
        let reachability = Reachability::new("prod", events);
        assert_eq!(reachability.verdict().reachable, None);
        let refused: Result<(), _> = Err(ProxyError::UpstreamUnavailable {
            cluster: "prod".into(),
            message: "connection refused".into(),
        });
        let slow: Result<(), _> = Err(ProxyError::UpstreamTimeout {
            cluster: "prod".into(),
            timeout_secs: 60,
        });
        // The first answer, then answers and timeouts from anyone: one event.
        reachability.observe_result(&Ok::<_, ProxyError>(()));
        reachability.observe_result(&slow);
        reachability.observe(Observation::Answers);
        assert_eq!(seen(), [(true, None)]);
        let since = reachability.verdict().since;
        assert!(since.is_some());
        // Refused by a request, then by a health check: one event.
        reachability.observe_result(&refused);
        reachability.observe(Observation::Unreachable("no answer within 10s"));
        let verdict = reachability.verdict();
        assert_eq!(verdict.reachable, Some(false));
        assert_eq!(verdict.reason.as_deref(), Some("connection refused"));
        assert!(verdict.since >= since);
        // An agent reconnecting.
        reachability.observe(Observation::Answers);
        assert_eq!(
            seen(),
            [
                (true, None),
                (false, Some("connection refused".to_owned())),
                (true, None)
            ]
        );
        assert_eq!(reachability.verdict().reason, None);
    }
}
