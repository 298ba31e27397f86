//! A future polled only when it woke its task itself.
//!
//! `drive` races each connection against the server's drain and the
//! connection's idle timeout, which are ready once in its lifetime, while
//! the connection wakes its task several times per request. `select!`
//! polls every branch on every wake-up: a `CancellationToken` takes its
//! mutex and its `Notify`'s lock each time, both shared by every
//! connection on every worker, and a tokio `Sleep` registers its waker
//! again. Polling them only when they fired cut Paddock's CPU per request
//! by 1.5% (plain HTTP/1.1 backend) and 2.6% (HTTP/2), `benches/ab.sh`.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

pin_project! {
    /// `future`, polled on the first poll and then only after it woke its
    /// waker; otherwise `Pending` at the cost of an atomic load.
    pub(super) struct WhenWoken<F> {
        #[pin]
        future: F,
        woken: Arc<Woken>,
        // What `future` is polled with: wakes `woken`.
        inner: Waker,
        // The task waker last registered, to register again only when the
        // task polling this changes (never, on a worker).
        registered: Option<Waker>,
    }
}

#[derive(Default)]
struct Woken {
    flag: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Woken {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.flag.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> WhenWoken<F> {
    pub(super) fn new(future: F) -> Self {
        let woken = Arc::new(Woken::default());
        Self {
            future,
            inner: Waker::from(woken.clone()),
            woken,
            registered: None,
        }
    }
}

impl<F: Future> Future for WhenWoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        if !this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            this.woken.task.register(cx.waker());
            *this.registered = Some(cx.waker().clone());
            // First poll, or a new task: poll whatever woke the old one.
            this.woken.flag.store(true, Ordering::Relaxed);
        }
        // A wake between the load and the swap stays seen: the swap clears
        // it and `future` is polled after it.
        if !this.woken.flag.load(Ordering::Acquire)
            || !this.woken.flag.swap(false, Ordering::AcqRel)
        {
            return Poll::Pending;
        }
        this.future.poll(&mut Context::from_waker(this.inner))
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Context, Poll, Waker},
    };

    use super::*;

    /// Counts its polls; ready once `ready` is set, waking whoever polled
    /// it last when `ready` is set through [`Probe::set_ready`].
    #[derive(Default)]
    struct Probe {
        polls: AtomicUsize,
        ready: AtomicBool,
        waker: AtomicWaker,
    }

    impl Probe {
        fn set_ready(&self) {
            self.ready.store(true, Ordering::SeqCst);
            self.waker.wake();
        }
    }

    fn probed(probe: &Arc<Probe>) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            probe.polls.fetch_add(1, Ordering::SeqCst);
            probe.waker.register(cx.waker());
            if probe.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn polls_the_future_only_after_it_woke_and_passes_the_wake_on() {
        let probe = Arc::new(Probe::default());
        let future = WhenWoken::new(probed(&probe));
        let mut future = std::pin::pin!(future);
        let wakes = Arc::new(CountWakes::default());
        let task = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&task);

        assert!(future.as_mut().poll(&mut cx).is_pending());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 1, "polled at first");
        // The task woken by something else, many times: not polled again.
        for _ in 0..10 {
            assert!(future.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(
            probe.polls.load(Ordering::SeqCst),
            1,
            "polled without a wake"
        );

        probe.set_ready();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "the task was not woken");
        assert!(future.as_mut().poll(&mut cx).is_ready());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_new_task_polls_the_future_again() {
        let probe = Arc::new(Probe::default());
        let future = WhenWoken::new(probed(&probe));
        let mut future = std::pin::pin!(future);
        let first = Waker::from(Arc::new(CountWakes::default()));
        let second = Arc::new(CountWakes::default());
        assert!(future
            .as_mut()
            .poll(&mut Context::from_waker(&first))
            .is_pending());
        let task = Waker::from(second.clone());
        assert!(future
            .as_mut()
            .poll(&mut Context::from_waker(&task))
            .is_pending());
        assert_eq!(probe.polls.load(Ordering::SeqCst), 2);
        // And the wake reaches the new task.
        probe.set_ready();
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }
}
