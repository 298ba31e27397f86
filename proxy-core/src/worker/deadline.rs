//! Deadlines on a worker: slots in the worker's list, swept every
//! [`TICK`], in place of a tokio timer each. What keeps them: an ordinary
//! request's wait for its answer ([`deadline`]) and a connection's wait
//! for a request's head ([`sleep_until`], as hyper's header read timeout).
//!
//! A tokio timer cost about 900 instructions of the 65,000 Paddock spends
//! per request (callgrind): registering in the runtime's timer wheel at
//! the first poll, reading the clock, removing it again. These timeouts are
//! whole seconds and nearly every wait ends long before, so a slot taken
//! and given back is all most of them pay; the sweep runs only while
//! something waits, and a deadline is noticed up to one [`TICK`] late. Off
//! the workers (an embedder's runtime, the agent, where a task may move
//! between threads and the list is per thread) it is a tokio timer.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
    time::Duration,
};

use pin_project_lite::pin_project;
use slab::Slab;
// tokio's: the runtime's clock, which tests can pause.
use tokio::time::Instant;

/// How often a worker's deadlines are checked while a request waits.
const TICK: Duration = Duration::from_millis(100);

/// The answer did not come in time.
#[derive(Debug)]
pub(crate) struct TimedOut;

pin_project! {
    /// `future`, or [`TimedOut`] once its deadline has passed.
    pub(crate) struct Deadline<F> {
        #[pin]
        future: F,
        timer: Timer,
    }
}

/// What tells a [`Deadline`] or a [`Sleep`] its time is up.
enum Timer {
    /// None: the future has all the time it takes.
    Unbounded,
    /// A slot in this worker's list, taken at the first poll.
    Swept {
        deadline: Instant,
        slot: Option<usize>,
    },
    /// A tokio timer, off the workers.
    Tokio(Pin<Box<tokio::time::Sleep>>),
}

impl Timer {
    fn until(deadline: Instant) -> Self {
        if crate::worker::current().is_some() {
            Timer::Swept {
                deadline,
                slot: None,
            }
        } else {
            Timer::Tokio(Box::pin(tokio::time::sleep_until(deadline)))
        }
    }

    /// Whether the time is up; if not, `cx` is woken when it is.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> bool {
        match self {
            Timer::Unbounded => false,
            Timer::Swept { deadline, slot } => Sweep::poll(*deadline, slot, cx.waker()),
            Timer::Tokio(sleep) => sleep.as_mut().poll(cx).is_ready(),
        }
    }
}

/// `future` within `timeout`, or for as long as it takes.
pub(crate) fn deadline<F: Future>(timeout: Option<Duration>, future: F) -> Deadline<F> {
    let timer = match timeout {
        None => Timer::Unbounded,
        Some(timeout) => Timer::until(Instant::now() + timeout),
    };
    Deadline { future, timer }
}

impl<F: Future> Future for Deadline<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        if this.timer.poll_expired(cx) {
            Poll::Ready(Err(TimedOut))
        } else {
            Poll::Pending
        }
    }
}

/// Completes at its deadline.
pub(crate) struct Sleep(Timer);

/// A future that completes at `deadline`.
pub(crate) fn sleep_until(deadline: Instant) -> Sleep {
    Sleep(Timer::until(deadline))
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.poll_expired(cx) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Timer::Swept {
            slot: Some(slot), ..
        } = self
        {
            // The thread's list is gone only when the thread ends.
            let _ = SWEEP.try_with(|sweep| sweep.borrow_mut().slots.remove(*slot));
        }
    }
}

/// A worker's deadlines.
#[derive(Default)]
struct Sweep {
    slots: Slab<Slot>,
    /// Whether this worker's sweeping task runs.
    sweeping: bool,
}

struct Slot {
    deadline: Instant,
    waker: Waker,
    expired: bool,
}

thread_local! {
    static SWEEP: RefCell<Sweep> = RefCell::default();
}

impl Sweep {
    /// Whether `deadline` has passed, taking a slot (and starting the
    /// sweep) at the first poll; the waker is woken when it passes.
    fn poll(deadline: Instant, slot: &mut Option<usize>, waker: &Waker) -> bool {
        SWEEP.with(|sweep| {
            let mut sweep = sweep.borrow_mut();
            if let Some(taken) = *slot {
                let taken = &mut sweep.slots[taken];
                if !taken.expired && !taken.waker.will_wake(waker) {
                    taken.waker = waker.clone();
                }
                return taken.expired;
            }
            *slot = Some(sweep.slots.insert(Slot {
                deadline,
                waker: waker.clone(),
                expired: false,
            }));
            if !sweep.sweeping {
                sweep.sweeping = true;
                // On this worker's own runtime: the list is this thread's.
                tokio::spawn(sweeping());
            }
            false
        })
    }
}

/// Marks the passed deadlines and wakes their requests every [`TICK`],
/// until no request waits.
async fn sweeping() {
    loop {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        let idle = SWEEP.with(|sweep| {
            let mut sweep = sweep.borrow_mut();
            for (_, slot) in sweep.slots.iter_mut() {
                if !slot.expired && slot.deadline <= now {
                    slot.expired = true;
                    slot.waker.wake_by_ref();
                }
            }
            sweep.sweeping = !sweep.slots.is_empty();
            !sweep.sweeping
        });
        if idle {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` on a worker thread of its own, as the server's workers run.
    fn on_a_worker<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
        std::thread::spawn(move || {
            crate::worker::enter(0);
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap()
                .block_on(f)
        })
        .join()
        .unwrap()
    }

    fn slots() -> usize {
        SWEEP.with(|sweep| sweep.borrow().slots.len())
    }

    #[test]
    fn a_late_answer_times_out_on_a_worker_and_its_slot_is_given_back() {
        on_a_worker(async {
            let started = tokio::time::Instant::now();
            let never = deadline(Some(Duration::from_secs(2)), std::future::pending::<()>());
            assert!(matches!(never.await, Err(TimedOut)));
            // Within a tick of the deadline, not before it.
            let waited = started.elapsed();
            assert!(waited >= Duration::from_secs(2), "{waited:?}");
            assert!(waited <= Duration::from_secs(2) + TICK, "{waited:?}");
            assert_eq!(slots(), 0);
            // The sweep stops when nothing waits.
            tokio::time::sleep(TICK * 2).await;
            assert!(!SWEEP.with(|sweep| sweep.borrow().sweeping));
        });
    }

    #[test]
    fn an_answer_in_time_gives_its_slot_back() {
        on_a_worker(async {
            let answer = deadline(Some(Duration::from_secs(2)), async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                7
            });
            assert_eq!(answer.await.unwrap(), 7);
            assert_eq!(slots(), 0);
            // A dropped request gives its slot back too.
            let mut dropped = Box::pin(deadline(
                Some(Duration::from_secs(2)),
                std::future::pending::<()>(),
            ));
            assert!(futures_util::poll!(dropped.as_mut()).is_pending());
            assert_eq!(slots(), 1);
            drop(dropped);
            assert_eq!(slots(), 0);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn off_the_workers_it_is_a_tokio_timer() {
        let never = deadline(Some(Duration::from_secs(2)), std::future::pending::<()>());
        assert!(matches!(never.timer, Timer::Tokio(_)));
        assert!(matches!(never.await, Err(TimedOut)));
        let unbounded = deadline(None, async { 7 });
        assert_eq!(unbounded.await.unwrap(), 7);
    }
}
