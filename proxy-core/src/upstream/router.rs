use std::{collections::HashMap, sync::Arc};

use super::Cluster;
use crate::error::ProxyError;

/// The clusters Paddock forwards to, by id, and which one serves `/`.
#[derive(Debug, Default)]
pub(crate) struct Router {
    clusters: HashMap<String, Arc<Cluster>>,
    default: Option<Arc<Cluster>>,
}

impl Router {
    /// An empty router: every proxied request gets 404.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Adds a cluster; `default` makes it the one served at `/`.
    pub(crate) fn add(&mut self, cluster: Cluster, default: bool) {
        let cluster = Arc::new(cluster);
        if default {
            self.default = Some(cluster.clone());
        }
        self.clusters.insert(cluster.id().to_owned(), cluster);
    }

    /// The cluster with this id, or the default one for `None`.
    pub(crate) fn resolve(&self, id: Option<&str>) -> Result<Arc<Cluster>, ProxyError> {
        match id {
            Some(id) => self
                .clusters
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

    /// The ids of all clusters.
    pub(crate) fn ids(&self) -> impl Iterator<Item = &str> {
        self.clusters.keys().map(String::as_str)
    }

    /// Every cluster.
    pub(crate) fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.values()
    }
}
