//! Which replica runs the work that must run once (directory and GitHub
//! refresh, token purge): etcd's lease-based election.
//!
//! A replica grants itself a lease of [`LEASE_TTL`], keeps it alive every third
//! of it (the client has no background keep-alive), and campaigns under
//! `<prefix>election/jobs` with it; etcd makes the lowest create-revision key
//! the leader. When the leader dies its lease expires and the next in line is
//! elected, within the TTL. A leader that cannot renew its lease (etcd lost, or
//! partitioned away) stops leading at once, before the lease can expire on
//! etcd's side, so two replicas never run the jobs at the same time for longer
//! than one keep-alive round trip.

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
/// lease is lost (or this replica is dropped).
async fn one_term(
    me: &Weak<Election>,
    client: &Client,
    name: &str,
    value: &str,
    ttl: i64,
) -> Result<(), etcd_client::Error> {
    let mut leases = client.lease_client();
    let lease = leases.grant(ttl, None).await?.id();
    let (mut keeper, mut acks) = leases.keep_alive(lease).await?;
    let every = LEASE_TTL / 3;
    let mut election = client.election_client();
    // Campaign blocks until elected; the lease must be renewed meanwhile.
    let campaign = election.campaign(name, value, lease);
    tokio::pin!(campaign);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            won = &mut campaign => {
                won?;
                break;
            }
            _ = tick.tick() => renew(&mut keeper, &mut acks).await?,
        }
    }
    let Some(strong) = me.upgrade() else {
        return Ok(());
    };
    strong.leader.store(true, Ordering::Release);
    tracing::info!("elected to run the singleton jobs (refresh, purge)");
    drop(strong);
    loop {
        tick.tick().await;
        if me.strong_count() == 0 {
            let _ = leases.revoke(lease).await;
            return Ok(());
        }
        renew(&mut keeper, &mut acks).await?;
    }
}

async fn renew(
    keeper: &mut etcd_client::LeaseKeeper,
    acks: &mut etcd_client::LeaseKeepAliveStream,
) -> Result<(), etcd_client::Error> {
    keeper.keep_alive().await?;
    match tokio::time::timeout(LEASE_TTL / 3, acks.message()).await {
        Ok(Ok(Some(ack))) if ack.ttl() > 0 => Ok(()),
        Ok(Ok(_)) => Err(etcd_client::Error::LeaseKeepAliveError(
            "the lease expired".into(),
        )),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(etcd_client::Error::LeaseKeepAliveError(
            "no keep-alive answer in time".into(),
        )),
    }
}
