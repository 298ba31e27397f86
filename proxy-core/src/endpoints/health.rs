//! `GET /paddock/v1/clusters/<id>/health`: the last health check of a
//! cluster, from the checker's cache (see [`crate::health`]). Authorized
//! as `get` on `clusters.management.cattle.io` named `<id>`, like the other
//! administration reads; nothing is read from the cluster here. With the
//! RBAC sync on, `rbacSync` holds the cluster's sync status too.

use http::{Request, StatusCode};

use super::{caller, json, Endpoints};
use crate::{context, error::ProxyError, request::ProxyResult};

pub(super) fn cluster<B>(endpoints: &Endpoints, request: &Request<B>, id: &str) -> ProxyResult {
    let caller = caller(request)?;
    endpoints.authorize_admin(&context::of(request), &caller, "get", "clusters", Some(id))?;
    if !endpoints.router().ids().iter().any(|known| known == id) {
        return Err(ProxyError::NotFound {
            message: format!("cluster {id:?} not found"),
        });
    }
    let checker = endpoints
        .config()
        .health
        .as_ref()
        .ok_or_else(|| ProxyError::NotFound {
            message: "cluster health checks are off (clusterHealth in the configuration)"
                .to_owned(),
        })?;
    let mut body = serde_json::to_value(&*checker.get(id)).unwrap_or_default();
    body["rbacSync"] = endpoints.rbac_sync_json(id);
    Ok(json(StatusCode::OK, &body))
}

/// The last checks of every cluster, by id, for the admins' landing page;
/// empty when health checks are off.
pub(super) fn all(endpoints: &Endpoints) -> Vec<std::sync::Arc<crate::health::ClusterHealth>> {
    let Some(checker) = endpoints.config().health.as_ref() else {
        return Vec::new();
    };
    let ids = endpoints.router().ids();
    ids.iter().map(|id| checker.get(id)).collect()
}
