//! Background events: what Paddock learns outside any one request (a
//! cluster stopped answering, a directory went down, a refresh failed),
//! handed to every plugin's [`Plugin::on_event`](crate::plugin::Plugin::on_event)
//! as the request phases hand them requests.
//!
//! Sources inside Paddock: the accounts (provider health on each change,
//! each background refresh), each cluster's reachability verdict, the
//! cluster health checker ([`crate::health`]) and the RBAC sync
//! ([`crate::plugins::rbac_sync`]). Other sources (an embedder's own
//! checks) emit through [`Events`], which
//! [`Proxy::events`](crate::Proxy::events) hands out; what they find about
//! a cluster's reachability goes to the verdict instead, through
//! [`Proxy::report_reachability`](crate::Proxy::report_reachability).

use std::sync::Arc;

use crate::{
    accounts::Outcome, health::ClusterHealth, plugin::Plugins, plugins::rbac_sync::ClusterStatus,
};

/// One background event.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// Paddock's verdict on a cluster changed (the first one included): it
    /// answers, or cannot be reached. Requests, the health checks, the RBAC
    /// sync's calls and an agent's tunnel all feed that one verdict, and
    /// only the verdict sends this: outside Paddock it cannot be built, so
    /// no other source can tell the plugins something routing does not
    /// believe.
    ///
    /// ```compile_fail
    /// use proxy_core::events::Event;
    /// let forged = Event::ClusterReachability {
    ///     cluster: "prod".into(),
    ///     reachable: false,
    ///     reason: None,
    /// };
    /// ```
    #[non_exhaustive]
    ClusterReachability {
        /// The cluster's id.
        cluster: String,
        /// Whether it answers now.
        reachable: bool,
        /// Why not, when it does not.
        reason: Option<String>,
    },
    /// The health checker read a cluster (every check, changed or not).
    ClusterChecked(Arc<ClusterHealth>),
    /// An external provider's backend failed when asked (`problem`), or
    /// answered again (`None`): sent on each change, not on each call.
    ProviderHealth {
        /// The provider's name.
        provider: String,
        /// Why it is degraded; `None` once it answers again.
        problem: Option<String>,
    },
    /// A background refresh of one user by a provider ended.
    Refresh {
        /// The provider's name.
        provider: String,
        /// What it did ([`Outcome::Deferred`] when the provider could not be
        /// asked).
        outcome: Outcome,
    },
    /// An RBAC sync pass over a cluster ended (every pass, failed or not),
    /// or the cluster is no longer synchronised (`status` is `None`).
    RbacSync {
        /// The cluster's id.
        cluster: String,
        /// Its status after the pass.
        status: Option<Arc<ClusterStatus>>,
    },
}

/// Hands events to the plugins of one proxy. Cheap to clone; emitting runs
/// each plugin's `on_event` on the caller's thread, which must not block.
#[derive(Clone, Debug, Default)]
pub struct Events {
    plugins: Plugins,
}

impl Events {
    pub(crate) fn new(plugins: Plugins) -> Self {
        Self { plugins }
    }

    /// Hands `event` to every plugin, in registration order.
    pub fn emit(&self, event: &Event) {
        self.plugins.run_event(event);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Clusters' reachability changes: `reachable`, `reason`.
    pub(crate) type Changes = Vec<(bool, Option<String>)>;

    /// Events that keep what they hear, and a reader of the clusters'
    /// reachability changes among it.
    pub(crate) fn recorded() -> (Events, impl Fn() -> Changes) {
        #[derive(Default)]
        struct Recorder(Mutex<Vec<Event>>);
        impl crate::plugin::Plugin for Recorder {
            fn name(&self) -> &'static str {
                "recorder"
            }
            fn on_event(&self, event: &Event) {
                self.0.lock().unwrap().push(event.clone());
            }
        }
        let recorder = Arc::new(Recorder::default());
        let events = Events::new(Plugins::new(vec![recorder.clone()]));
        let read = move || {
            recorder
                .0
                .lock()
                .unwrap()
                .iter()
                .filter_map(|event| match event {
                    Event::ClusterReachability {
                        reachable, reason, ..
                    } => Some((*reachable, reason.clone())),
                    _ => None,
                })
                .collect()
        };
        (events, read)
    }
}
