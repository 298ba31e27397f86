//! The status writer against a real embedded store: what it writes, and
//! above all what it does not (no write per heartbeat, none for a cluster
//! another replica keeps current).

use std::{collections::HashMap, sync::Arc};

use super::*;
use crate::store::{Cluster, EmbeddedStore, Timestamp};

fn setup(ids: &[&str]) -> (tempfile::TempDir, Arc<StoreView>) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_in_dir(dir.path(), Default::default()).unwrap();
    let view = StoreView::new(Arc::new(store)).unwrap();
    let ops = ids
        .iter()
        .map(|id| {
            Op::put(
                Object::Cluster(Box::new(Cluster {
                    id: (*id).to_owned(),
                    display_name: (*id).to_owned(),
                    connection: ClusterConnection::Agent,
                    labels: Default::default(),
                    agent_token_hash: None,
                    direct_endpoint: None,
                    status: ClusterStatus::default(),
                    created_at: Timestamp(0),
                })),
                Expect::Absent,
            )
        })
        .collect();
    view.commit(ops).unwrap();
    (dir, view)
}

fn session(heard: i64) -> SessionInfo {
    SessionInfo {
        agent_version: Some("1.0".into()),
        kubernetes_version: Some("v1.32".into()),
        serves_requests: true,
        connected_at: Timestamp(heard),
        last_heartbeat: Timestamp(heard),
    }
}

fn stored(view: &StoreView, id: &str) -> (crate::store::Revision, ClusterStatus) {
    view.with_snapshot(|s| {
        let entry = s.cluster(id).unwrap();
        (entry.revision, entry.value.status.clone())
    })
}

/// Runs one sweep at `now` with `live` as the tunnels held here.
fn sweep(
    view: &StoreView,
    live: &HashMap<&str, SessionInfo>,
    dropped: &mut HashMap<String, Timestamp>,
    now: i64,
) -> usize {
    let ops = due(
        &view.snapshot(),
        |id| live.get(id).cloned(),
        dropped,
        Timestamp(now),
    );
    let n = ops.len();
    if n > 0 {
        view.commit_batches(ops).unwrap();
    }
    n
}

#[test]
fn a_connect_is_written_then_heartbeats_only_once_a_minute() {
    let (_dir, view) = setup(&["edge", "idle"]);
    let mut dropped = HashMap::new();
    let t0 = 1_000_000;
    let mut live = HashMap::from([("edge", session(t0))]);
    assert_eq!(sweep(&view, &live, &mut dropped, t0), 1, "the connect");
    let (_, status) = stored(&view, "edge");
    assert!(status.connected);
    assert_eq!(status.agent_version.as_deref(), Some("1.0"));
    assert_eq!(status.kubernetes_version.as_deref(), Some("v1.32"));
    assert_eq!(status.last_heartbeat, Some(Timestamp(t0)));
    // Pinged every 10 s for ten minutes, swept every 15 s: one write a
    // minute, not one per ping or per sweep.
    let mut writes = 0;
    for now in (t0 + 1..=t0 + 600).step_by(15) {
        live.get_mut("edge").unwrap().last_heartbeat = Timestamp(now - (now - t0) % 10);
        writes += sweep(&view, &live, &mut dropped, now);
    }
    assert!((9..=10).contains(&writes), "{writes} heartbeat writes");
    let (_, status) = stored(&view, "edge");
    let heartbeat = status.last_heartbeat.unwrap();
    assert!(
        Timestamp(t0 + 600).seconds_since(heartbeat) <= PERSIST_EVERY.as_secs() + SWEEP.as_secs(),
        "stored heartbeat {heartbeat} is stale"
    );
    assert_eq!(stored(&view, "idle").1, ClusterStatus::default());
}

#[test]
fn a_new_agent_version_is_written_at_once() {
    let (_dir, view) = setup(&["edge"]);
    let mut dropped = HashMap::new();
    let mut live = HashMap::from([("edge", session(100))]);
    sweep(&view, &live, &mut dropped, 100);
    live.get_mut("edge").unwrap().agent_version = Some("1.1".into());
    assert_eq!(sweep(&view, &live, &mut dropped, 101), 1);
    assert_eq!(
        stored(&view, "edge").1.agent_version.as_deref(),
        Some("1.1")
    );
}

#[test]
fn a_drop_is_written_unless_a_newer_heartbeat_is_stored() {
    let (_dir, view) = setup(&["edge"]);
    let mut dropped = HashMap::new();
    let live = HashMap::from([("edge", session(100))]);
    sweep(&view, &live, &mut dropped, 100);
    // Dropped here, last heard at 130: recorded as disconnected then.
    dropped.insert("edge".to_owned(), Timestamp(130));
    assert_eq!(sweep(&view, &HashMap::new(), &mut dropped, 140), 1);
    let (_, status) = stored(&view, "edge");
    assert!(!status.connected);
    assert_eq!(status.last_heartbeat, Some(Timestamp(130)));
    assert_eq!(
        status.agent_version.as_deref(),
        Some("1.0"),
        "versions kept"
    );
    assert!(dropped.is_empty());

    // Another replica holds the agent and stored a heartbeat after the one
    // this replica last heard: its drop changes nothing.
    let elsewhere = HashMap::from([("edge", session(200))]);
    sweep(&view, &elsewhere, &mut HashMap::new(), 200);
    dropped.insert("edge".to_owned(), Timestamp(190));
    assert_eq!(sweep(&view, &HashMap::new(), &mut dropped, 210), 0);
    assert!(stored(&view, "edge").1.connected);
    assert!(dropped.is_empty());
}

#[test]
fn a_reconnect_supersedes_a_drop() {
    let (_dir, view) = setup(&["edge", "gone"]);
    let mut dropped = HashMap::new();
    let live = HashMap::from([("edge", session(100))]);
    sweep(&view, &live, &mut dropped, 100);
    dropped.insert("edge".to_owned(), Timestamp(105));
    // A drop of a cluster deleted meanwhile is forgotten.
    dropped.insert("deleted".to_owned(), Timestamp(105));
    let live = HashMap::from([("edge", session(110))]);
    assert_eq!(sweep(&view, &live, &mut dropped, 110), 0);
    assert!(stored(&view, "edge").1.connected);
    assert!(dropped.is_empty(), "{dropped:?}");
}

/// Two replicas hold the same agent's tunnel and sweep from the same
/// store: the cluster still gets one heartbeat write a minute, and the
/// replica that loses a race has nothing left to write.
#[test]
fn replicas_holding_the_same_agent_share_one_write_a_minute() {
    let (_dir, view) = setup(&["edge"]);
    let t0 = 1_000_000;
    let live = |now: i64| HashMap::from([("edge", session(now))]);
    sweep(&view, &live(t0), &mut HashMap::new(), t0);
    let (start, _) = stored(&view, "edge");
    for now in (t0 + 1..=t0 + 600).step_by(15) {
        // Replica B computed its writes from the same snapshot as A.
        let snapshot = view.snapshot();
        let a = due(
            &snapshot,
            |id| live(now).get(id).cloned(),
            &mut HashMap::new(),
            Timestamp(now),
        );
        let b = due(
            &snapshot,
            |id| live(now + 1).get(id).cloned(),
            &mut HashMap::new(),
            Timestamp(now + 1),
        );
        if !a.is_empty() {
            view.commit_batches(a).unwrap();
        }
        if !b.is_empty() {
            assert!(
                matches!(view.commit_batches(b), Err(StoreError::Conflict { .. })),
                "the revision guard lets only one of two racing writes in"
            );
        }
        // What the loser sees when it looks again.
        let again = due(
            &view.snapshot(),
            |id| live(now + 1).get(id).cloned(),
            &mut HashMap::new(),
            Timestamp(now + 1),
        );
        assert!(again.is_empty(), "a second write in the same minute");
    }
    let (end, _) = stored(&view, "edge");
    let writes = end.0 - start.0;
    assert!((9..=10).contains(&writes), "{writes} writes in ten minutes");
}

/// The task itself, with a real tunnel: a connect is written when it
/// happens, heartbeats a minute apart (not per ping), and the drop of a
/// tunnel that went silent.
#[tokio::test(start_paused = true)]
async fn the_writer_records_connects_heartbeats_and_drops() {
    let (_dir, view) = setup(&["edge"]);
    let tunnels = Arc::new(Tunnels::new(
        std::time::Duration::from_secs(1),
        crate::events::Events::default(),
    ));
    spawn_status_writer(&view, tunnels.clone());
    let tunnel = crate::tunnel::tests::tunnel_in(tunnels.clone(), "edge").await;
    let eventually = |connected: bool| {
        let view = view.clone();
        async move {
            for _ in 0..600 {
                if stored(&view, "edge").1.connected == connected {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the stored status never became connected: {connected}");
        }
    };
    eventually(true).await;
    let (connected_at, status) = stored(&view, "edge");
    assert_eq!(status.agent_version.as_deref(), Some("test"));
    assert!(status.last_heartbeat.is_some());
    // Five idle minutes, pinged every 10 s: the clock is paused, so the
    // wall-clock heartbeat does not age and nothing is due.
    tokio::time::sleep(std::time::Duration::from_secs(300)).await;
    assert_eq!(
        stored(&view, "edge").0,
        connected_at,
        "written without cause"
    );

    tunnel
        .silence_agent
        .store(true, std::sync::atomic::Ordering::Relaxed);
    eventually(false).await;
    let (_, status) = stored(&view, "edge");
    assert_eq!(
        status.agent_version.as_deref(),
        Some("test"),
        "versions kept"
    );
}

/// Woken with nothing held and a drop of a cluster no agent was ever
/// recorded for: nothing to write.
#[test]
fn a_drop_of_a_never_connected_cluster_writes_nothing() {
    let (_dir, view) = setup(&["edge"]);
    let tunnels = Tunnels::new(
        std::time::Duration::from_secs(1),
        crate::events::Events::default(),
    );
    let mut dropped = HashMap::from([("edge".to_owned(), Timestamp(5))]);
    let before = view.snapshot().revision();
    write(&view, &mut dropped, |id| tunnels.status(id));
    assert_eq!(view.snapshot().revision(), before);
    assert!(dropped.is_empty());
}
