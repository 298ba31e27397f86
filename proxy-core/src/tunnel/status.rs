//! Agents' status in the store: what survives a restart and what a
//! replica without the tunnel knows (`connected`, versions,
//! `lastHeartbeat`).
//!
//! The live heartbeat is in memory ([`super::SessionInfo::last_heartbeat`],
//! the time the tunnel was last heard from) and is what this replica's
//! `/paddock/v1/clusters`, kubeconfig list and landing page show. The
//! store gets it coalesced: one task per Paddock compares, every
//! [`SWEEP`] and when an agent connects or drops, the tunnels it holds
//! with the stored status and writes only what changed (connected,
//! versions), or a heartbeat once the stored one is [`PERSIST_EVERY`]
//! old. Writes are batched (one transaction per hundred clusters), not one
//! per ping, and never one blocking thread per agent.
//!
//! Several replicas: each writes for the tunnels it holds, but reads the
//! stored heartbeat first (the snapshot follows the other replicas'
//! writes), so a cluster whose agent is connected to every replica still
//! gets at most one heartbeat write per [`PERSIST_EVERY`]; two replicas
//! racing are told apart by the revision guard, and the loser, seeing the
//! winner's write, has nothing left to do. A replica that loses a tunnel
//! records `connected: false` only when the store knows of no heartbeat
//! newer than its own; if another replica still holds the agent, that
//! replica's next sweep writes `connected: true` again.

use std::{
    collections::HashMap,
    sync::{Arc, Weak},
    time::Duration,
};

use super::{SessionInfo, Tunnels};
use crate::store::{
    ClusterConnection, ClusterStatus, Expect, Object, Op, Snapshot, StoreError, StoreView,
    Timestamp,
};

/// How often the held tunnels are compared with the stored status.
pub const SWEEP: Duration = Duration::from_secs(15);
/// A stored heartbeat is refreshed once it is this old.
pub const PERSIST_EVERY: Duration = Duration::from_secs(60);
/// Connects and drops arriving within this time are written together
/// (hundreds of agents reconnect at once after a restart).
const GATHER: Duration = Duration::from_millis(200);

/// Keeps the stored status of the agents `tunnels` holds current until
/// the view is dropped.
pub(crate) fn spawn_status_writer(view: &Arc<StoreView>, tunnels: Arc<Tunnels>) {
    let view: Weak<StoreView> = Arc::downgrade(view);
    tokio::spawn(async move {
        // Tunnels that ended here and are not written yet, with when they
        // were last heard from.
        let mut dropped: HashMap<String, Timestamp> = HashMap::new();
        let mut tick = tokio::time::interval(SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tunnels.changed.notified() => tokio::time::sleep(GATHER).await,
            }
            let Some(view) = view.upgrade() else { return };
            dropped.extend(tunnels.take_dropped());
            let tunnels = tunnels.clone();
            let written = tokio::task::spawn_blocking(move || {
                write(&view, &mut dropped, |id| tunnels.status(id));
                dropped
            })
            .await;
            match written {
                Ok(left) => dropped = left,
                Err(error) => {
                    tracing::warn!(%error, "agent status writer failed");
                    dropped = HashMap::new();
                }
            }
        }
    });
}

/// Writes what is due; on a conflict (someone else wrote a cluster
/// meanwhile) looks again at the newer snapshot. Blocking.
fn write(
    view: &StoreView,
    dropped: &mut HashMap<String, Timestamp>,
    live: impl Fn(&str) -> Option<SessionInfo>,
) {
    for _ in 0..3 {
        // What is left of the drops once written; kept as it was if the
        // write fails.
        let mut left = dropped.clone();
        let ops = due(&view.snapshot(), &live, &mut left, Timestamp::now());
        if ops.is_empty() {
            *dropped = left;
            return;
        }
        match view.commit_batches(ops) {
            Ok(_) => {
                *dropped = left;
                return;
            }
            // Another write won (a replica's, an admin's): look again.
            Err(StoreError::Conflict { .. }) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot record agents' status; retrying at the next sweep");
                return;
            }
        }
    }
}

/// The writes that bring the stored status of agent clusters in line with
/// the tunnels held here (`live`) and those that dropped here
/// (`dropped`, emptied of what needs no more writing), at time `now`.
fn due(
    snapshot: &Snapshot,
    live: impl Fn(&str) -> Option<SessionInfo>,
    dropped: &mut HashMap<String, Timestamp>,
    now: Timestamp,
) -> Vec<Op> {
    let mut ops = Vec::new();
    let stale = |stored: Option<Timestamp>, heard: Timestamp| {
        stored.is_none_or(|t| heard.seconds_since(t) >= PERSIST_EVERY.as_secs())
    };
    // Drops of clusters that are gone need no record.
    dropped.retain(|id, _| snapshot.cluster(id).is_some());
    for entry in snapshot.clusters() {
        let cluster = &entry.value;
        if !matches!(cluster.connection, ClusterConnection::Agent) {
            continue;
        }
        let stored = &cluster.status;
        let next = if let Some(info) = live(&cluster.id) {
            // Held here: a reconnect supersedes an earlier drop.
            dropped.remove(&cluster.id);
            let next = ClusterStatus {
                connected: true,
                kubernetes_version: info.kubernetes_version,
                agent_version: info.agent_version,
                last_heartbeat: Some(info.last_heartbeat.min(now)),
            };
            let changed = !stored.connected
                || stored.kubernetes_version != next.kubernetes_version
                || stored.agent_version != next.agent_version;
            (changed || stale(stored.last_heartbeat, info.last_heartbeat)).then_some(next)
        } else if let Some(heard) = dropped.remove(&cluster.id) {
            // Dropped here: unless a replica has reported a newer heartbeat
            // (it holds the agent now), the agent is gone.
            let newer_elsewhere = stored.last_heartbeat.is_some_and(|t| t > heard);
            (stored.connected && !newer_elsewhere).then(|| ClusterStatus {
                connected: false,
                last_heartbeat: Some(heard),
                ..stored.clone()
            })
        } else {
            None
        };
        if let Some(status) = next {
            let mut cluster = cluster.clone();
            cluster.status = status;
            ops.push(Op::put(
                Object::Cluster(Box::new(cluster)),
                Expect::Revision(entry.revision),
            ));
        }
    }
    ops
}

#[cfg(test)]
mod tests;
