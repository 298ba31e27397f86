//! A short-TTL cache in front of [`TokenVerifier`], holding whatever the caller
//! derives from a verified token (e.g. the request Identity).
//!
//! Entries are found by token id (not secret, so a plain hash map slot) and
//! hold a keyed SHA-256 of the secret, never the secret: a hit hashes the
//! presented secret (one SHA-256 block, the key's block is hashed once per
//! process) and compares the digests in constant time. Reading the cache's
//! memory therefore yields nothing to log in with (finding a secret for a
//! digest is a SHA-256 preimage), and a wrong secret for a cached id is a
//! miss that the full verification rejects.
//!
//! A hit is re-validated against the current [`TokenSource`](super::TokenSource)
//! state: the token and user records must still be at the revisions the entry
//! was built from, and expiry, idle timeout and the enabled flags are re-checked.
//! Revoking a token or disabling its user therefore takes effect on the very
//! next request even for a cached token; [`TokenCache::invalidate_token`] also
//! drops the entry.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::hash::os_random;
use super::verify::{split_presented, TokenVerifier, VerifiedToken};
use super::TokenError;
use crate::store::Timestamp;

/// Independent locks, so concurrent requests rarely wait on each other's
/// inserts. A power of two.
const SHARDS: usize = 16;

struct Cached<V> {
    /// Keyed SHA-256 of the secret ([`TokenCache::digest`]).
    digest: [u8; 32],
    verified: VerifiedToken,
    value: V,
    /// When it was cached; the TTL counts from here.
    since: Timestamp,
    /// The latest use recorded in the verifier's last-used tracker through
    /// this entry: a hit records a use only when the second changed, so the
    /// tracker's lock is taken at most once a second per token. Also what a
    /// full shard evicts by, least recently used first.
    touched: AtomicI64,
}

type Shard<V> = HashMap<Box<str>, Arc<Cached<V>>>;

/// A cache of verified tokens and a derived value `V`.
pub struct TokenCache<V = ()> {
    shards: Box<[RwLock<Shard<V>>]>,
    shard_of: RandomState,
    per_shard: usize,
    ttl_secs: u64,
    // SHA-256 state after one block of a per-process random key: the digest
    // identifies a secret only inside this process, and a hit hashes just the
    // secret's block.
    keyed: Sha256,
}

impl<V> std::fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries: usize = self.shards.iter().map(|s| read(s).len()).sum();
        f.debug_struct("TokenCache")
            .field("entries", &entries)
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

impl<V: Clone + Send + Sync + 'static> TokenCache<V> {
    /// A cache holding at most `capacity` tokens (rounded up to a multiple of
    /// the shard count), each for at most `ttl` (whole seconds, at least one).
    /// A full shard makes room by evicting its least recently used eighth.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let mut key = [0u8; 64];
        os_random(&mut key);
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            shard_of: RandomState::new(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            ttl_secs: ttl.as_secs().max(1),
            keyed: Sha256::new_with_prefix(key),
        }
    }

    fn digest(&self, secret: &str) -> [u8; 32] {
        self.keyed.clone().chain_update(secret).finalize().into()
    }

    fn shard(&self, id: &str) -> &RwLock<Shard<V>> {
        // Truncation is the point: the low bits pick the shard.
        #[allow(clippy::cast_possible_truncation)]
        let h = self.shard_of.hash_one(id) as usize;
        &self.shards[h & (SHARDS - 1)]
    }

    fn fresh(&self, c: &Cached<V>, now: Timestamp) -> bool {
        now >= c.since && now.seconds_since(c.since) < self.ttl_secs
    }

    /// Verifies `presented`, from the cache when possible; on a miss runs
    /// `verifier` and `build`, and caches both.
    pub fn verify(
        &self,
        verifier: &TokenVerifier,
        presented: &str,
        now: Timestamp,
        build: impl FnOnce(&VerifiedToken) -> V,
    ) -> Result<(VerifiedToken, V), TokenError> {
        let (id, secret) = split_presented(presented)?;
        let shard = self.shard(id);
        let digest = self.digest(secret);
        let cached = read(shard).get(id).cloned();
        if let Some(c) = cached {
            // The secret first: nothing about the token's state is revealed
            // to a caller who does not hold it.
            if bool::from(c.digest.ct_eq(&digest)) && self.fresh(&c, now) {
                let touched = Timestamp(c.touched.load(Ordering::Relaxed));
                if verifier.still_valid(&c.verified, touched, now) {
                    if c.touched.fetch_max(now.0, Ordering::Relaxed) < now.0 {
                        verifier.touch(id, now);
                    }
                    return Ok((c.verified.clone(), c.value.clone()));
                }
                // Changed, revoked, disabled or expired: a full verification
                // reports the precise reason.
                self.remove_if_same(id, &c);
            } else if !self.fresh(&c, now) {
                self.remove_if_same(id, &c);
            }
            // A wrong secret leaves the entry alone: knowing an id must not
            // let anyone evict it.
        }
        let verified = verifier.verify(presented, now)?;
        let value = build(&verified);
        let entry = Arc::new(Cached {
            digest,
            verified: verified.clone(),
            value: value.clone(),
            since: now,
            touched: AtomicI64::new(now.0),
        });
        let mut map = write(shard);
        if map.len() >= self.per_shard && !map.contains_key(id) {
            self.evict(&mut map, now);
        }
        map.insert(id.into(), entry);
        Ok((verified, value))
    }

    /// Makes room in a full shard: drops the expired entries, then the
    /// least recently used down to 7/8 of the shard's capacity. One scan
    /// (and one allocation) then serves the next eighth of the shard's
    /// inserts, so a miss costs a bounded amount on average however full
    /// the cache stays; a hit never comes here.
    fn evict(&self, map: &mut Shard<V>, now: Timestamp) {
        map.retain(|_, c| self.fresh(c, now));
        let keep = self.per_shard - self.per_shard.div_ceil(8);
        if let Some(excess) = map.len().checked_sub(keep).filter(|&n| n > 0) {
            // The `excess`-th oldest last use: every older entry goes, and
            // as many of that same second as it takes (which ones is the
            // map's random order, not a client's choice).
            let mut used: Vec<i64> = map
                .values()
                .map(|c| c.touched.load(Ordering::Relaxed))
                .collect();
            let (older, &mut cutoff, _) = used.select_nth_unstable(excess - 1);
            let mut ties = excess - older.iter().filter(|&&t| t < cutoff).count();
            map.retain(|_, c| {
                let t = c.touched.load(Ordering::Relaxed);
                if t == cutoff && ties > 0 {
                    ties -= 1;
                    return false;
                }
                t >= cutoff
            });
        }
        // Hits move `touched` on concurrently: should they have moved every
        // candidate past the cutoff, any one entry still makes room.
        if map.len() >= self.per_shard {
            if let Some(k) = map.keys().next().cloned() {
                map.remove(&k);
            }
        }
    }

    /// Removes `id`'s entry if it still is `c` (not one a concurrent miss
    /// just inserted).
    fn remove_if_same(&self, id: &str, c: &Arc<Cached<V>>) {
        let mut map = write(self.shard(id));
        if map.get(id).is_some_and(|cur| Arc::ptr_eq(cur, c)) {
            map.remove(id);
        }
    }

    /// Number of cached tokens.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| read(s).len()).sum()
    }

    /// Drops every cached entry of token `id`.
    pub fn invalidate_token(&self, id: &str) {
        write(self.shard(id)).remove(id);
    }

    /// Drops every cached entry of a user's tokens (on disable).
    pub fn invalidate_user(&self, user_id: &str) {
        for s in &*self.shards {
            write(s).retain(|_, c| c.verified.user_id() != user_id);
        }
    }

    /// Drops everything.
    pub fn invalidate_all(&self) {
        for s in &*self.shards {
            write(s).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::authn::tokens::{Pepper, TokenHasher, TokenSource, TokenState};
    use crate::store::{Entry, Revision, TokenKind, TokenRecord};

    const T0: Timestamp = Timestamp(1_800_000_000);

    /// Valid tokens, held in memory.
    struct Tokens(HashMap<String, Arc<Entry<TokenRecord>>>);

    impl TokenSource for Tokens {
        fn token_state(&self, id: &str) -> Option<TokenState> {
            Some(TokenState {
                record: self.0.get(id)?.clone(),
                user_enabled: true,
                user_revision: Revision(1),
                last_used: None,
            })
        }
    }

    /// A verifier knowing `n` tokens, and the tokens as presented.
    fn tokens(n: usize) -> (TokenVerifier, Vec<String>) {
        let hasher = Arc::new(TokenHasher::new(&Pepper::from_bytes([7; 32])));
        let mut records = HashMap::new();
        let mut presented = Vec::new();
        for i in 0..n {
            let (id, secret) = (format!("t-{i}"), format!("secret-{i}"));
            let record = TokenRecord {
                id: id.clone(),
                user_id: "u-alice".into(),
                kind: TokenKind::Api,
                hash: hasher.hash(&secret),
                cluster: None,
                cluster_verifier: None,
                provider: "local".into(),
                description: String::new(),
                created_at: T0,
                expires_at: None,
                idle_timeout_secs: None,
                enabled: true,
            };
            let entry = Entry {
                revision: Revision(1),
                value: record,
            };
            records.insert(id.clone(), Arc::new(entry));
            presented.push(format!("{id}:{secret}"));
        }
        (
            TokenVerifier::new(hasher, Arc::new(Tokens(records))),
            presented,
        )
    }

    /// Past its capacity, the cache stays within it and makes room with
    /// the entries used least recently: tokens in use keep their entries
    /// however many other tokens come by.
    #[test]
    fn a_full_cache_stays_bounded_and_keeps_the_recently_used() {
        const CAPACITY: usize = 1024; // 64 a shard
        let (verifier, presented) = tokens(CAPACITY + 384);
        let (old, new) = presented.split_at(CAPACITY);
        let cache: TokenCache<()> = TokenCache::new(Duration::from_secs(600), CAPACITY as u64);
        let at = |secs: u64| T0.plus(Duration::from_secs(secs));
        for p in old {
            cache.verify(&verifier, p, at(0), |_| ()).unwrap();
            assert!(cache.len() <= CAPACITY);
        }
        // In use a little later (cached again if the filling evicted them).
        let hot = &old[..16];
        for p in hot {
            cache.verify(&verifier, p, at(5), |_| ()).unwrap();
        }
        for p in new {
            cache.verify(&verifier, p, at(10), |_| ()).unwrap();
            assert!(cache.len() <= CAPACITY, "{} entries", cache.len());
        }
        for p in hot {
            cache
                .verify(&verifier, p, at(11), |_| unreachable!("{p} was evicted"))
                .unwrap();
        }
        // The newest are cached too.
        for p in &new[new.len() - 16..] {
            cache
                .verify(&verifier, p, at(11), |_| unreachable!("{p} was evicted"))
                .unwrap();
        }
    }
}
