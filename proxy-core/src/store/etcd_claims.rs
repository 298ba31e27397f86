//! [`Claims`] on etcd: work that one replica at a time may do (a user's
//! refresh), held by a key that lives exactly as long as its holder.
//!
//! A claim is the key `<prefix>claims/<sha256 of the name, hex>` holding
//! `<hostname>/<pid>`, created only if absent (one transaction) and attached to this store's session
//! lease: granted on the first claim with a [`SESSION_TTL`] and renewed every
//! third of it for as long as the store lives. A replica that dies or loses
//! etcd stops renewing, and etcd deletes its claims when the lease expires,
//! within [`SESSION_TTL`]; one that shuts down revokes it at once. Releasing
//! deletes the key only while it is still on this session's lease, so a
//! claim that lapsed and was taken by another replica is left to it.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};

use super::etcd::{replica_name, EtcdStore, HashedKeys};
use super::{Claims, StoreError};

/// How long a claim outlives its holder's last renewal.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(10);

/// The claims of one [`EtcdStore`].
#[derive(Debug)]
pub(super) struct EtcdClaims {
    keys: HashedKeys,
    /// The claims' value: who holds them.
    holder: String,
    /// The session lease, while it is being renewed.
    session: Arc<Mutex<Option<i64>>>,
}

impl EtcdClaims {
    pub(super) fn new(store: &EtcdStore) -> Self {
        Self {
            keys: HashedKeys::new(store, "claims"),
            holder: replica_name(),
            session: Arc::new(Mutex::new(None)),
        }
    }

    fn session_mut(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session lease, granted (and its renewal started) if there is
    /// none.
    fn session(&self) -> Result<i64, StoreError> {
        let mut session = self.session_mut();
        if let Some(id) = *session {
            return Ok(id);
        }
        let ttl = i64::try_from(SESSION_TTL.as_secs()).unwrap_or(10);
        let mut client = self.keys.client();
        let id = self
            .keys
            .block(async move { client.lease_grant(ttl, None).await })?
            .id();
        *session = Some(id);
        let (client, weak) = (self.keys.client(), Arc::downgrade(&self.session));
        self.keys.handle().spawn(renew_session(client, id, weak));
        Ok(id)
    }
}

/// Renews session `id` until it is lost or the claims are dropped (then it
/// is revoked, releasing every claim at once).
async fn renew_session(client: Client, id: i64, session: Weak<Mutex<Option<i64>>>) {
    let mut leases = client.lease_client();
    let renewed = async {
        let (mut keeper, mut acks) = leases.keep_alive(id).await?;
        let mut tick = tokio::time::interval(SESSION_TTL / 3);
        loop {
            tick.tick().await;
            if session.strong_count() == 0 {
                return Ok(());
            }
            super::election::renew(&mut keeper, &mut acks, SESSION_TTL / 3).await?;
        }
    };
    let result: Result<(), etcd_client::Error> = renewed.await;
    match session.upgrade() {
        Some(session) => {
            if let Err(e) = result {
                tracing::warn!(error = %e, "the claims' etcd lease was lost; claims held lapse");
            }
            let mut session = session.lock().unwrap_or_else(|p| p.into_inner());
            if *session == Some(id) {
                *session = None;
            }
        }
        // Dropped: let go of every claim now rather than at expiry.
        None => {
            let _ = tokio::time::timeout(SESSION_TTL / 3, leases.revoke(id)).await;
        }
    }
}

impl Claims for EtcdClaims {
    fn claim(&self, name: &str) -> Result<bool, StoreError> {
        let key = self.keys.key(name);
        // Only the renewal forgets a session (when it is lost): a claim
        // failing on a live one must not leave that lease, and the claims
        // on it, renewed with nothing left to release them.
        let session = self.session()?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                self.holder.as_str(),
                Some(PutOptions::new().with_lease(session)),
            )]);
        let mut client = self.keys.client();
        self.keys
            .block(async move { client.txn(txn).await })
            .map(|answer| answer.succeeded())
    }

    fn release(&self, name: &str) -> Result<(), StoreError> {
        let Some(session) = *self.session_mut() else {
            // No session: every claim it held has lapsed already.
            return Ok(());
        };
        let key = self.keys.key(name);
        let txn = Txn::new()
            .when([Compare::lease(key.as_str(), CompareOp::Equal, session)])
            .and_then([TxnOp::delete(key.as_str(), None)]);
        let mut client = self.keys.client();
        self.keys
            .block(async move { client.txn(txn).await })
            .map(drop)
    }
}
