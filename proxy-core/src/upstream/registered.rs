//! Feeds the router from the store: clusters registered at runtime become
//! routable, and stop being routable, without a restart.
//!
//! A task watches the store's snapshot (itself refreshed from the change
//! feed, so other replicas' and the CLI's writes arrive too) and publishes
//! a new routing table whenever a revision brings a change. A cluster whose
//! connection details did not change keeps its clients and their pooled
//! connections. An agent cluster whose registration token was rotated or
//! revoked, which was switched to `direct`, or which was deleted, loses
//! its tunnel.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use super::{Cluster, ClusterConfig, Router, UpstreamCredential};
use crate::{
    events::Events,
    store::{ClusterConnection, DirectEndpointRecord, Revision, Snapshot, StoreView},
    tunnel::Tunnels,
};

/// How often the snapshot's revision is compared.
const CHECK_INTERVAL: Duration = Duration::from_millis(200);

/// The clients built for one registered cluster, and what they were built from.
struct Built {
    connection: ClusterConnection,
    direct_endpoint: Option<DirectEndpointRecord>,
    cluster: Arc<Cluster>,
}

/// Keeps `router`'s registered clusters equal to the store's until the
/// view or the router is dropped; changes of their reachability go to
/// `events`.
pub(crate) fn spawn_sync(
    view: &Arc<StoreView>,
    router: &Arc<Router>,
    tunnels: Arc<Tunnels>,
    workers: usize,
    events: Events,
) {
    let view: Weak<StoreView> = Arc::downgrade(view);
    let router: Weak<Router> = Arc::downgrade(router);
    tokio::spawn(async move {
        let mut built: HashMap<String, Built> = HashMap::new();
        let mut seen: Option<Revision> = None;
        let mut tick = tokio::time::interval(CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(view), Some(router)) = (view.upgrade(), router.upgrade()) else {
                return;
            };
            let snapshot = view.snapshot();
            if seen == Some(snapshot.revision()) {
                continue;
            }
            seen = Some(snapshot.revision());
            sync(&snapshot, &router, &tunnels, workers, &events, &mut built);
        }
    });
}

fn sync(
    snapshot: &Snapshot,
    router: &Router,
    tunnels: &Tunnels,
    workers: usize,
    events: &Events,
    built: &mut HashMap<String, Built>,
) {
    let mut next = HashMap::new();
    for entry in snapshot.clusters() {
        let record = &entry.value;
        if router.is_configured(&record.id) {
            continue;
        }
        // Only an agent cluster's current token keeps a tunnel: one
        // switched to `direct` loses it, whatever became of the token.
        let keep = match record.connection {
            ClusterConnection::Agent => record.agent_token_hash.as_deref(),
            ClusterConnection::Direct { .. } => None,
        };
        tunnels.disconnect_unless(&record.id, keep);
        let reused = built.remove(&record.id).filter(|b| {
            b.connection == record.connection && b.direct_endpoint == record.direct_endpoint
        });
        let cluster = match reused {
            Some(b) => b.cluster,
            None => match build(&record.id, &record.connection, tunnels, workers, events) {
                Ok(cluster) => {
                    let cluster = cluster.with_direct_endpoint(
                        record
                            .direct_endpoint
                            .as_ref()
                            .map(DirectEndpointRecord::to_endpoint),
                    );
                    tracing::info!(cluster.id = %record.id, connection = record.connection.kind(), "registered cluster routable");
                    Arc::new(cluster)
                }
                Err(error) => {
                    tracing::warn!(cluster.id = %record.id, %error, "registered cluster cannot be used");
                    continue;
                }
            },
        };
        next.insert(
            record.id.clone(),
            Built {
                connection: record.connection.clone(),
                direct_endpoint: record.direct_endpoint.clone(),
                cluster,
            },
        );
    }
    for gone in built.keys() {
        tracing::info!(cluster.id = %gone, "registered cluster removed");
        tunnels.disconnect_unless(gone, None);
    }
    *built = next;
    router.set_registered(built.values().map(|b| b.cluster.clone()));
}

fn build(
    id: &str,
    connection: &ClusterConnection,
    tunnels: &Tunnels,
    workers: usize,
    events: &Events,
) -> Result<Cluster, super::UpstreamError> {
    match connection {
        ClusterConnection::Direct {
            server,
            ca_pem,
            token_file,
        } => {
            let mut config = ClusterConfig::new(id, server.clone());
            config.ca_pem = ca_pem.as_ref().map(|p| p.as_bytes().to_vec());
            if let Some(file) = token_file {
                config.credential = UpstreamCredential::BearerTokenFile(file.clone());
            }
            Cluster::new(&config, workers, events.clone())
        }
        _ => Ok(Cluster::tunnel(id, tunnels, workers)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ClusterStatus, EmbeddedStore, Expect, Object, Op, Timestamp};

    fn record(connection: ClusterConnection) -> Op {
        Op::put(
            Object::Cluster(Box::new(crate::store::Cluster {
                id: "edge".to_owned(),
                display_name: "edge".to_owned(),
                connection,
                labels: Default::default(),
                // The hash the test tunnel authenticated with.
                agent_token_hash: Some("hash".to_owned()),
                direct_endpoint: None,
                status: ClusterStatus::default(),
                created_at: Timestamp(0),
            })),
            Expect::Any,
        )
    }

    /// An agent cluster switched to `direct` loses its tunnel, its token
    /// unchanged: only an agent cluster's token opens one, so a later
    /// revocation would no longer reach it.
    #[tokio::test(start_paused = true)]
    async fn a_cluster_switched_to_direct_loses_its_tunnel() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_in_dir(dir.path(), Default::default()).unwrap();
        let view = StoreView::new(Arc::new(store)).unwrap();
        let tunnels = Arc::new(Tunnels::new(Duration::from_secs(1), Events::default()));
        let tunnel = crate::tunnel::tests::tunnel_in(tunnels.clone(), "edge").await;
        let router = Router::new();
        let mut built = HashMap::new();
        let mut sync_with = |connection| {
            view.commit(vec![record(connection)]).unwrap();
            sync(
                &view.snapshot(),
                &router,
                &tunnels,
                0,
                &Events::default(),
                &mut built,
            );
        };

        sync_with(ClusterConnection::Agent);
        assert!(tunnels.status("edge").is_some(), "its own token ended it");
        sync_with(ClusterConnection::Direct {
            server: "https://127.0.0.1:9".to_owned(),
            ca_pem: None,
            token_file: None,
        });
        assert!(
            tunnels.status("edge").is_none(),
            "the tunnel outlived the switch"
        );
        tunnel.paddock.await.unwrap();
    }
}
