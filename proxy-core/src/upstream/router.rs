use std::{collections::HashMap, sync::Arc};

use arc_swap::ArcSwap;

use super::Cluster;
use crate::error::ProxyError;

/// The clusters Paddock forwards to, by id, and which one serves `/`.
///
/// Two sources: the clusters given at build time (the configuration file),
/// fixed for the process's life, and the clusters registered in the store,
/// replaced as a whole ([`Router::set_registered`]) whenever the store
/// changes. Requests read one immutable table (an atomic pointer load), so
/// a cluster is routable as soon as the table that holds it is published
/// and unroutable as soon as one without it is.
#[derive(Debug, Default)]
pub(crate) struct Router {
    configured: HashMap<String, Arc<Cluster>>,
    default: Option<Arc<Cluster>>,
    current: ArcSwap<HashMap<String, Arc<Cluster>>>,
}

impl Router {
    /// An empty router: every proxied request gets 404.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a configured cluster; `default` makes it the one served at `/`.
    pub(crate) fn add(&mut self, cluster: Cluster, default: bool) {
        let cluster = Arc::new(cluster);
        if default {
            self.default = Some(cluster.clone());
        }
        self.configured
            .insert(cluster.id().to_owned(), cluster.clone());
        let mut table = HashMap::clone(&self.current.load());
        table.insert(cluster.id().to_owned(), cluster);
        self.current.store(Arc::new(table));
    }

    /// Whether `id` is a configured (read-only) cluster.
    pub(crate) fn is_configured(&self, id: &str) -> bool {
        self.configured.contains_key(id)
    }

    /// Publishes the clusters registered in the store, replacing the
    /// previous set. A configured cluster of the same id wins.
    pub(crate) fn set_registered(&self, registered: impl IntoIterator<Item = Arc<Cluster>>) {
        let mut table = self.configured.clone();
        for cluster in registered {
            table.entry(cluster.id().to_owned()).or_insert(cluster);
        }
        self.current.store(Arc::new(table));
    }

    /// The registered (not configured) cluster `id`, if routable now.
    pub(crate) fn registered(&self, id: &str) -> Option<Arc<Cluster>> {
        if self.is_configured(id) {
            return None;
        }
        self.current.load().get(id).cloned()
    }

    /// The cluster with this id, or the default one for `None`.
    pub(crate) fn resolve(&self, id: Option<&str>) -> Result<Arc<Cluster>, ProxyError> {
        match id {
            Some(id) => self
                .current
                .load()
                .get(id)
                .cloned()
                .ok_or_else(|| ProxyError::NotFound {
                    message: format!("cluster {id:?} not found"),
                }),
            None => self.default.clone().ok_or_else(|| ProxyError::NotFound {
                message: "no default cluster is configured: use /k8s/clusters/<id>/".to_owned(),
            }),
        }
    }

    /// The ids of all routable clusters, sorted.
    pub(crate) fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.current.load().keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    /// The ids of the configured clusters, sorted.
    pub(crate) fn configured_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.configured.keys().cloned().collect();
        ids.sort_unstable();
        ids
    }

    /// Every routable cluster, configured and registered.
    pub(crate) fn clusters(&self) -> Vec<Arc<Cluster>> {
        self.current.load().values().cloned().collect()
    }
}
