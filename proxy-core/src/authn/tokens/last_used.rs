//! Coalesced last-used times: recorded in memory per request, flushed to the store
//! at most once per interval (default a minute) per token, never a write per
//! request (a write per use is what hurt Rancher: rancher/rancher#49017).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{Expect, Key, Kind, Object, Op, StoreError, StoreView, Timestamp, TokenUsage};

#[derive(Debug, Clone, Copy)]
struct Slot {
    seen: Timestamp,
    flushed: Option<Timestamp>,
    flushed_at: Option<Timestamp>,
}

/// In-memory last-used times with a rate-limited flush.
#[derive(Debug)]
pub struct LastUsed {
    // Never held across an `.await`; held for a map lookup only.
    slots: Mutex<HashMap<String, Slot>>,
    interval: Duration,
}

impl Default for LastUsed {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

impl LastUsed {
    /// A tracker that flushes each token at most once per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            interval,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a use of token `id` at `now`.
    pub fn touch(&self, id: &str, now: Timestamp) {
        let mut slots = self.lock();
        match slots.get_mut(id) {
            Some(s) => s.seen = s.seen.max(now),
            None => {
                slots.insert(
                    id.to_string(),
                    Slot {
                        seen: now,
                        flushed: None,
                        flushed_at: None,
                    },
                );
            }
        }
    }

    /// The latest use recorded here (flushed or not).
    pub fn last_seen(&self, id: &str) -> Option<Timestamp> {
        self.lock().get(id).map(|s| s.seen)
    }

    /// Tokens with an unflushed use whose last flush is at least one interval old.
    pub fn due(&self, now: Timestamp) -> Vec<(String, Timestamp)> {
        let every = self.interval.as_secs();
        self.lock()
            .iter()
            .filter(|(_, s)| {
                s.flushed.is_none_or(|f| s.seen > f)
                    && s.flushed_at.is_none_or(|at| now.seconds_since(at) >= every)
            })
            .map(|(id, s)| (id.clone(), s.seen))
            .collect()
    }

    /// Writes the due last-used times in transactions of at most
    /// [`crate::store::BATCH_OPS`] tokens. Never moves a stored
    /// time backwards (several replicas flush the same token), skips tokens that
    /// no longer exist, and retries once on a conflict. On error nothing is marked
    /// flushed, so the next call tries again. Blocking: run it off the request
    /// path ([`LastUsed::spawn_flusher`]).
    pub fn flush(&self, view: &StoreView, now: Timestamp) -> Result<usize, StoreError> {
        let due = self.due(now);
        if due.is_empty() {
            return Ok(0);
        }
        let mut attempt = 0;
        loop {
            let snap = view.snapshot();
            let mut ops = Vec::new();
            let mut done = Vec::new();
            let mut gone = Vec::new();
            for (id, seen) in &due {
                if snap.token(id).is_none() {
                    gone.push(id.clone());
                    continue;
                }
                let (expect, stored) = match snap.token_usage(id) {
                    Some(e) => (Expect::Revision(e.revision), Some(e.value.last_used_at)),
                    None => (Expect::Absent, None),
                };
                done.push((id.clone(), *seen));
                if stored.is_some_and(|s| s >= *seen) {
                    continue;
                }
                ops.push(Op::put(
                    Object::TokenUsage(TokenUsage {
                        token_id: id.clone(),
                        last_used_at: *seen,
                    }),
                    expect,
                ));
            }
            let written = ops.len();
            let result = view.commit_batches(ops).map(|_| ());
            match result {
                Ok(()) => {
                    let mut slots = self.lock();
                    for id in gone {
                        slots.remove(&id);
                    }
                    for (id, seen) in done {
                        if let Some(s) = slots.get_mut(&id) {
                            s.flushed = Some(seen);
                            s.flushed_at = Some(now);
                        }
                    }
                    return Ok(written);
                }
                Err(StoreError::Conflict { .. }) if attempt == 0 => {
                    attempt += 1;
                    view.refresh()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Deletes the stored usage of a token (on revocation).
    pub(crate) fn forget(&self, id: &str) -> Op {
        self.lock().remove(id);
        Op::delete(Key::new(Kind::TokenUsage, id), Expect::Any)
    }

    /// Spawns a task flushing every `every` until `self` is dropped elsewhere and
    /// the view goes away. Failures are logged and retried; they never reach a
    /// request.
    pub fn spawn_flusher(
        self: &Arc<Self>,
        view: Arc<StoreView>,
        every: Duration,
    ) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        let view = Arc::downgrade(&view);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let (Some(me), Some(view)) = (me.upgrade(), view.upgrade()) else {
                    return;
                };
                let r =
                    tokio::task::spawn_blocking(move || me.flush(&view, Timestamp::now())).await;
                match r {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "flushing token last-used times failed");
                    }
                    Err(e) => tracing::warn!(error = %e, "token last-used flush task failed"),
                }
            }
        })
    }
}
