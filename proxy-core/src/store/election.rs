//! Which replica runs the work that must run once (directory and GitHub
//! refresh, token purge): etcd's lease-based election.
//!
//! A replica grants itself a lease of [`LEASE_TTL`], keeps it alive every third
//! of it (the client has no background keep-alive), and campaigns under
//! `<prefix>election/jobs` with it; etcd makes the lowest create-revision key
//! the leader. When the leader dies its lease expires and the next in line is
//! elected, within the TTL. A leader that cannot renew its lease (etcd lost, or
//! partitioned away) stops leading at once, before the lease can expire on
//! etcd's side; one whose leader key goes (its lease revoked) stops as soon
//! as its watch on that key says so. Either way two replicas never run the
//! jobs at the same time for longer than one etcd round trip.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use etcd_client::Client;

use super::Leadership;

/// The election lease's time to live. etcd's minimum is about 2 s (1.5 ×
/// the election timeout); a leader change resets leases to their full TTL.
pub(super) const LEASE_TTL: Duration = Duration::from_secs(5);

/// This replica's standing in the election, updated by a background task.
#[derive(Debug)]
pub(super) struct Election {
    leader: AtomicBool,
}

impl Leadership for Election {
    fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }
}

impl Election {
    /// Starts campaigning on `handle` under `name`, announcing `value`.
    pub(super) fn start(
        handle: &tokio::runtime::Handle,
        client: Client,
        name: String,
        value: String,
    ) -> Arc<Self> {
        let me = Arc::new(Self {
            leader: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&me);
        handle.spawn(campaign_forever(weak, client, name, value));
        me
    }
}

async fn campaign_forever(me: Weak<Election>, client: Client, name: String, value: String) {
    let ttl = i64::try_from(LEASE_TTL.as_secs()).unwrap_or(5);
    loop {
        if me.strong_count() == 0 {
            return;
        }
        if let Err(e) = one_term(&me, &client, &name, &value, ttl).await {
            tracing::debug!(error = %e, "job election: retrying");
        }
        if let Some(me) = me.upgrade() {
            if me.leader.swap(false, Ordering::AcqRel) {
                tracing::warn!("no longer the elected replica for singleton jobs");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One lease: campaign with it, lead while it is renewed. Returns when the
/// lease is lost (or this replica is dropped); the lease is revoked then, so
/// its key does not keep a place in line (or the lead) until it expires.
async fn one_term(
    me: &Weak<Election>,
    client: &Client,
    name: &str,
    value: &str,
    ttl: i64,
) -> Result<(), etcd_client::Error> {
    let mut leases = client.lease_client();
    let lease = leases.grant(ttl, None).await?.id();
    let result = campaign_and_lead(me, client, name, value, lease).await;
    // Best effort: with etcd gone the lease expires by itself.
    let _ = tokio::time::timeout(LEASE_TTL / 3, leases.revoke(lease)).await;
    result
}

async fn campaign_and_lead(
    me: &Weak<Election>,
    client: &Client,
    name: &str,
    value: &str,
    lease: i64,
) -> Result<(), etcd_client::Error> {
    let mut leases = client.lease_client();
    let (mut keeper, mut acks) = leases.keep_alive(lease).await?;
    let mut election = client.election_client();
    let mut tick = tokio::time::interval(LEASE_TTL / 3);
    let won = loop {
        // Campaign blocks until elected; the lease must be renewed meanwhile.
        let campaign = election.campaign(name, value, lease);
        tokio::pin!(campaign);
        let answer = loop {
            tokio::select! {
                answer = &mut campaign => break answer,
                _ = tick.tick() => renew(&mut keeper, &mut acks, LEASE_TTL / 3).await?,
            }
        };
        match answer {
            Ok(won) => break won,
            // The client's request timeout ends a long wait in line: the same
            // lease campaigns again and keeps its place (its key stays).
            Err(e) => {
                tracing::debug!(error = %e, "job election: campaigning again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let Some(key) = won.leader().cloned() else {
        return Err(lost("etcd named no leader key"));
    };
    // The leader key goes when the lease is revoked (or deleted by hand):
    // watched from its creation on, so that is seen at once, not at the
    // next renewal, while another replica may already be elected.
    let mut watch = client.watch_client();
    let options = etcd_client::WatchOptions::new().with_start_revision(key.rev() + 1);
    let mut key_events = watch.watch(key.key().to_vec(), Some(options)).await?;
    let Some(strong) = me.upgrade() else {
        return Ok(());
    };
    strong.leader.store(true, Ordering::Release);
    tracing::info!("elected to run the singleton jobs (refresh, purge)");
    drop(strong);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if me.strong_count() == 0 {
                    return Ok(());
                }
                renew(&mut keeper, &mut acks, LEASE_TTL / 3).await?;
            }
            event = key_events.message() => match event? {
                Some(resp) if resp.canceled() => return Err(lost("the leader key watch was cancelled")),
                Some(resp) if resp
                    .events()
                    .iter()
                    .any(|e| e.event_type() == etcd_client::EventType::Delete) =>
                {
                    return Err(lost("the leader key was deleted"));
                }
                Some(_) => {}
                None => return Err(lost("the leader key watch ended")),
            },
        }
    }
}

fn lost(why: &str) -> etcd_client::Error {
    etcd_client::Error::LeaseKeepAliveError(why.to_owned())
}

/// Renews a lease once, its answer awaited for `within`.
pub(super) async fn renew(
    keeper: &mut etcd_client::LeaseKeeper,
    acks: &mut etcd_client::LeaseKeepAliveStream,
    within: Duration,
) -> Result<(), etcd_client::Error> {
    keeper.keep_alive().await?;
    match tokio::time::timeout(within, acks.message()).await {
        Ok(Ok(Some(ack))) if ack.ttl() > 0 => Ok(()),
        Ok(Ok(_)) => Err(lost("the lease expired")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(lost("no keep-alive answer in time")),
    }
}
