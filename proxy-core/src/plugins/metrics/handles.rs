//! Pre-resolved label handles: the counters and the histogram one request
//! updates, found by comparing a few short strings in a small per-thread
//! cache instead of hashing label sets (SipHash over every label, under
//! the families' locks) on every request.
//!
//! A worker serves the same few clusters, verbs and resources over and
//! over, so a handful of entries per thread hit nearly always. Only label
//! sets whose values are all known (none read `other`) are kept, so a
//! value learnt later is never shadowed by a stale entry; the handles
//! share their atomics with the families, so an update through them is
//! what a scrape reads.

use std::{cell::RefCell, sync::Arc};

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};

/// Entries kept per thread (all `Metrics` instances together).
const CAPACITY: usize = 32;

/// What one request is counted under, as the request says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Key<'a> {
    pub(super) cluster: &'a str,
    pub(super) verb: &'static str,
    pub(super) group: &'a str,
    pub(super) resource: &'a str,
    pub(super) code: u16,
    /// Whether the duration is observed (not for long-running requests).
    pub(super) timed: bool,
    /// The authentication attempt's provider and result, if any.
    pub(super) authn: Option<(&'a str, &'static str)>,
}

/// The metrics one request updates.
#[derive(Debug, Clone)]
pub(super) struct Handles {
    pub(super) request: Counter,
    pub(super) duration: Option<Histogram>,
    pub(super) authn: Option<Counter>,
}

struct Entry {
    /// The `Metrics` instance the handles belong to.
    owner: u64,
    cluster: Arc<str>,
    verb: &'static str,
    group: Arc<str>,
    resource: Arc<str>,
    code: u16,
    timed: bool,
    authn: Option<(Arc<str>, &'static str)>,
    handles: Handles,
}

impl Entry {
    fn matches(&self, owner: u64, key: &Key<'_>) -> bool {
        self.owner == owner
            && self.code == key.code
            && self.timed == key.timed
            && self.verb == key.verb
            && *self.cluster == *key.cluster
            && *self.resource == *key.resource
            && *self.group == *key.group
            && match (&self.authn, key.authn) {
                (Some((provider, result)), Some((p, r))) => *result == r && **provider == *p,
                (None, None) => true,
                _ => false,
            }
    }
}

thread_local! {
    static CACHE: RefCell<(Vec<Entry>, usize)> = const { RefCell::new((Vec::new(), 0)) };
}

/// Resolved label values, as [`resolve`](with)'s callback returns them.
pub(super) struct Resolved {
    pub(super) cluster: Arc<str>,
    pub(super) group: Arc<str>,
    pub(super) resource: Arc<str>,
    pub(super) provider: Option<Arc<str>>,
    pub(super) handles: Handles,
}

/// Runs `use_handles` on the handles for `key`: from this thread's cache,
/// or from `resolve` (the families' slow path), kept when every value
/// resolved to itself.
pub(super) fn with(
    owner: u64,
    key: &Key<'_>,
    resolve: impl FnOnce() -> Resolved,
    use_handles: impl FnOnce(&Handles),
) {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (entries, next) = &mut *cache;
        if let Some(entry) = entries.iter().find(|e| e.matches(owner, key)) {
            use_handles(&entry.handles);
            return;
        }
        let resolved = resolve();
        use_handles(&resolved.handles);
        let exact = *resolved.cluster == *key.cluster
            && *resolved.group == *key.group
            && *resolved.resource == *key.resource
            && match (&resolved.provider, key.authn) {
                (Some(provider), Some((p, _))) => **provider == *p,
                (None, None) => true,
                _ => false,
            };
        if !exact {
            return;
        }
        let entry = Entry {
            owner,
            cluster: resolved.cluster,
            verb: key.verb,
            group: resolved.group,
            resource: resolved.resource,
            code: key.code,
            timed: key.timed,
            authn: resolved.provider.zip(key.authn.map(|(_, r)| r)),
            handles: resolved.handles,
        };
        if entries.len() < CAPACITY {
            entries.push(entry);
        } else {
            entries[*next] = entry;
            *next = (*next + 1) % CAPACITY;
        }
    });
}
