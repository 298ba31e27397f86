//! [`SharedCounters`] on etcd: the login throttle's failure counts, shared by
//! every replica so that an attacker cannot multiply attempts by the number of
//! replicas.
//!
//! One key per counter, `<prefix>counters/<sha256 of the name, hex>` (names are
//! usernames and client addresses: hashed, they are neither listed in clear nor
//! limited in the characters they may hold), with the value
//! `{"count":N,"lastMs":<unix ms>}`. A check-and-increment is one transaction
//! guarded by each key's `mod_revision` (or its absence), retried on a
//! conflict, so concurrent attempts on two replicas are counted one after the
//! other, never both against the same old count.
//!
//! Counters expire with an etcd lease: keys written within one minute share a
//! lease of `forget_after` plus a minute (granting a lease per write would cost
//! a round trip each), so a counter is forgotten between `forget_after` and
//! `forget_after` + 1 min after its last increment, like Kubernetes' lease
//! reuse for events.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::etcd::{EtcdStore, HashedKeys};
use super::{SharedCounters, StoreError};

/// How long one granted lease is reused for new writes.
const LEASE_REUSE: Duration = Duration::from_secs(60);
/// Conflicts tolerated before giving up (heavy contention on one name).
const ATTEMPTS: usize = 8;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Counter {
    count: u32,
    last_ms: u64,
}

/// The counters of one [`EtcdStore`].
#[derive(Debug)]
pub(super) struct EtcdCounters {
    keys: HashedKeys,
    lease: Mutex<Option<(i64, Instant, Duration)>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl EtcdCounters {
    pub(super) fn new(store: &EtcdStore) -> Self {
        Self {
            keys: HashedKeys::new(store, "counters"),
            lease: Mutex::new(None),
        }
    }

    /// A lease for a write now, granted when the cached one is too old.
    fn lease(&self, forget_after: Duration) -> Result<i64, StoreError> {
        let mut cached = self.lease.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((id, granted, ttl)) = *cached {
            if granted.elapsed() < LEASE_REUSE && ttl == forget_after {
                return Ok(id);
            }
        }
        let ttl = i64::try_from((forget_after + LEASE_REUSE).as_secs()).unwrap_or(i64::MAX);
        let mut client = self.keys.client();
        let id = self
            .keys
            .block(async move { client.lease_grant(ttl, None).await })?
            .id();
        *cached = Some((id, Instant::now(), forget_after));
        Ok(id)
    }

    /// Reads `keys` at one revision: (value, mod_revision) each.
    fn read(&self, keys: &[String]) -> Result<Vec<Option<(Counter, i64)>>, StoreError> {
        let txn = Txn::new().and_then(
            keys.iter()
                .map(|k| TxnOp::get(k.as_str(), None))
                .collect::<Vec<_>>(),
        );
        let mut client = self.keys.client();
        let resp = self.keys.block(async move { client.txn(txn).await })?;
        Ok(resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().first().and_then(|kv| {
                    serde_json::from_slice::<Counter>(kv.value())
                        .ok()
                        .map(|c| (c, kv.mod_revision()))
                }),
                _ => None,
            })
            .collect())
    }

    fn guard(key: &str, current: Option<&(Counter, i64)>) -> Compare {
        match current {
            Some((_, rev)) => Compare::mod_revision(key, CompareOp::Equal, *rev),
            None => Compare::create_revision(key, CompareOp::Equal, 0),
        }
    }

    fn write(&self, txn: Txn) -> Result<bool, StoreError> {
        let mut client = self.keys.client();
        Ok(self
            .keys
            .block(async move { client.txn(txn).await })?
            .succeeded())
    }
}

impl SharedCounters for EtcdCounters {
    fn check_and_increment(
        &self,
        names: &[String],
        wait: &dyn Fn(usize, u32, Duration) -> Duration,
        forget_after: Duration,
    ) -> Result<Duration, StoreError> {
        let keys: Vec<String> = names.iter().map(|n| self.keys.key(n)).collect();
        for _ in 0..ATTEMPTS {
            let now = now_ms();
            let current = self.read(&keys)?;
            let longest = current
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let (c, _) = c.as_ref()?;
                    let since = Duration::from_millis(now.saturating_sub(c.last_ms));
                    (since < forget_after).then(|| wait(i, c.count, since))
                })
                .max()
                .unwrap_or(Duration::ZERO);
            if !longest.is_zero() {
                return Ok(longest);
            }
            let lease = self.lease(forget_after)?;
            let mut compares = Vec::new();
            let mut puts = Vec::new();
            for (key, c) in keys.iter().zip(&current) {
                compares.push(Self::guard(key, c.as_ref()));
                let count = match c {
                    // A counter past its window starts again, as the local one does.
                    Some((c, _))
                        if Duration::from_millis(now.saturating_sub(c.last_ms)) < forget_after =>
                    {
                        c.count.saturating_add(1)
                    }
                    _ => 1,
                };
                let value = serde_json::to_vec(&Counter {
                    count,
                    last_ms: now,
                })
                .map_err(|e| self.keys.unavailable(e))?;
                puts.push(TxnOp::put(
                    key.as_str(),
                    value,
                    Some(PutOptions::new().with_lease(lease)),
                ));
            }
            if self.write(Txn::new().when(compares).and_then(puts))? {
                return Ok(Duration::ZERO);
            }
        }
        Err(self.keys.unavailable("too much contention on one counter"))
    }

    fn decrement(&self, name: &str) -> Result<(), StoreError> {
        let key = self.keys.key(name);
        for _ in 0..ATTEMPTS {
            let current = self.read(std::slice::from_ref(&key))?;
            let Some((c, _)) = &current[0] else {
                return Ok(());
            };
            let guard = Self::guard(&key, current[0].as_ref());
            let op = if c.count <= 1 {
                TxnOp::delete(key.as_str(), None)
            } else {
                let value = serde_json::to_vec(&Counter {
                    count: c.count - 1,
                    last_ms: c.last_ms,
                })
                .map_err(|e| self.keys.unavailable(e))?;
                // Keep the lease the key already has.
                TxnOp::put(
                    key.as_str(),
                    value,
                    Some(PutOptions::new().with_ignore_lease()),
                )
            };
            if self.write(Txn::new().when([guard]).and_then([op]))? {
                return Ok(());
            }
        }
        Err(self.keys.unavailable("too much contention on one counter"))
    }

    fn remove(&self, name: &str) -> Result<(), StoreError> {
        let key = self.keys.key(name);
        let mut client = self.keys.client();
        self.keys
            .block(async move { client.delete(key, None).await })
            .map(drop)
    }
}
