//! What keeps clients that send nothing, or send it slowly, from holding
//! connections (and file descriptors) forever: a header-read timeout, an
//! idle timeout, a deadline for the request bodies Paddock reads itself,
//! and a cap on open connections.
//!
//! "Idle" means nothing is waiting on an upstream and no response has made
//! progress for the idle timeout. A request waits on its upstream until its
//! response exists, and again whenever its body has nothing to send: a
//! watch, `kubectl logs -f` or an exec session (an upgraded connection is
//! no longer the server's) is never idle, however quiet it is, so none of
//! these limits cuts it. A response body that is not asked for its next
//! frame waits on the client instead, which is not reading (HTTP/2: it
//! never opened its window; HTTP/1.1: it stopped reading the socket), and
//! that does not keep a connection open.

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use http_body::{Body, Frame, SizeHint};
use tokio::{
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Instant,
};

/// kube-apiserver's `ReadHeaderTimeout` ("just shy of
/// requestTimeoutUpperBound"), `staging/src/k8s.io/apiserver/pkg/server/secure_serving.go`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(32);

/// kube-apiserver's `IdleTimeout` for HTTP/1.1 and HTTP/2 ("matches
/// http.DefaultTransport keep-alive timeout"), same file.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How long Paddock's own endpoints wait for a whole request body (at most
/// 64 KiB: a login, a new user, a token request).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Limits on client connections, set with
/// [`ProxyBuilder::connection_limits`](crate::ProxyBuilder::connection_limits).
///
/// ```
/// use std::time::Duration;
/// let mut limits = proxy_core::server::ConnectionLimits::default();
/// limits.idle_timeout = Duration::from_secs(60);
/// limits.max_connections = Some(10_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionLimits {
    /// Time a client gets to send a request's headers, counted from when
    /// Paddock starts waiting for them (so it also ends an HTTP/1.1
    /// keep-alive connection that sends nothing). Default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// A connection is closed (HTTP/2: GOAWAY) when for this long none of
    /// its requests waited on the cluster (for a response, or a watch's
    /// next event) and none of its responses made progress: a client that
    /// stops reading a response does not hold the connection. Default
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// Time Paddock's own endpoints (`/paddock/`) give a request body to
    /// arrive whole; proxied bodies stream and are not limited. Default
    /// [`DEFAULT_BODY_READ_TIMEOUT`].
    pub body_read_timeout: Duration,
    /// Open connections at most; beyond it Paddock stops accepting until
    /// one closes (new clients wait in the listen backlog). `None`: 80% of
    /// the soft open-file limit (`RLIMIT_NOFILE`) when serving starts,
    /// leaving room for upstream connections and files.
    pub max_connections: Option<usize>,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            max_connections: None,
        }
    }
}

impl ConnectionLimits {
    /// [`ConnectionLimits::max_connections`], or its default from the
    /// current open-file limit.
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| {
                let soft =
                    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
                usize::try_from(soft / 5 * 4).unwrap_or(usize::MAX)
            })
            .clamp(1, Semaphore::MAX_PERMITS)
    }
}

/// Whether a connection's requests wait on their upstreams, and when its
/// responses last made progress.
#[derive(Debug)]
pub(super) struct Activity {
    start: Instant,
    /// Requests waiting on their upstream: for their response, or for
    /// their body's next frame.
    waiting: AtomicUsize,
    /// Milliseconds after `start` of the last progress: a response, a body
    /// frame, or a request's end.
    last_progress_ms: AtomicU64,
    served: AtomicBool,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            waiting: AtomicUsize::new(0),
            last_progress_ms: AtomicU64::new(0),
            served: AtomicBool::new(false),
        })
    }

    /// Marks a new request as waiting on its upstream until the returned
    /// guard says otherwise or is dropped.
    pub(super) fn busy(self: &Arc<Self>) -> Busy {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        Busy {
            activity: self.clone(),
            waiting: true,
        }
    }

    /// Whether the connection ever carried a request.
    pub(super) fn served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Resolves once no request has waited on its upstream, and no
    /// response made progress, for `timeout`.
    pub(super) async fn idle(&self, timeout: Duration) {
        let mut deadline = self.start + timeout;
        loop {
            tokio::time::sleep_until(deadline).await;
            if self.waiting.load(Ordering::Acquire) > 0 {
                deadline = Instant::now() + timeout;
                continue;
            }
            let last_progress =
                self.start + Duration::from_millis(self.last_progress_ms.load(Ordering::Relaxed));
            deadline = last_progress + timeout;
            if deadline <= Instant::now() {
                return;
            }
        }
    }
}

/// A request on its connection, and whether it waits on its upstream.
#[derive(Debug)]
pub(super) struct Busy {
    activity: Arc<Activity>,
    waiting: bool,
}

impl Busy {
    /// The request waits on its upstream again: its body had nothing to send.
    fn wait(&mut self) {
        if !self.waiting {
            self.waiting = true;
            self.activity.waiting.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The request made progress (a response, a frame, its end), and now
    /// waits on the client to ask for more.
    fn progress(&mut self) {
        let activity = &*self.activity;
        let ms = u64::try_from(activity.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.last_progress_ms.fetch_max(ms, Ordering::Relaxed);
        if self.waiting {
            self.waiting = false;
            // Release: whoever sees the count drop sees the time above.
            activity.waiting.fetch_sub(1, Ordering::Release);
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        // Not waiting: the response's last step (its head, or the poll that
        // ended its body) already recorded the time.
        if self.waiting {
            self.progress();
        }
    }
}

/// A response body that tells its connection's [`Activity`] whether it
/// waits on its upstream (its last poll was pending) or on the client (it
/// yielded a frame, or was never polled, and was not asked again); for a
/// HEAD request, no content at all.
#[derive(Debug)]
pub(super) struct TrackedBody<B> {
    inner: B,
    head: bool,
    busy: Busy,
}

impl<B: Body> TrackedBody<B> {
    /// The response to a request, `head` when it was a HEAD request.
    ///
    /// A response to HEAD has no content (RFC 9110, section 9.3.2) but
    /// should carry the length a GET would have. hyper's HTTP/1.1 server
    /// knows that; its HTTP/2 server sends the body anyway, and clients
    /// reset the stream with PROTOCOL_ERROR. So the length goes into the
    /// headers here and the body is withheld, whatever produced it.
    pub(super) fn response(
        mut response: http::Response<B>,
        head: bool,
        mut busy: Busy,
    ) -> http::Response<Self> {
        // The upstream answered: the body waits for the client to ask for it
        // (hyper's HTTP/2 server asks only once the client's window opens).
        busy.progress();
        if head && !response.body().is_end_stream() {
            if let Some(length) = response.body().size_hint().exact() {
                response
                    .headers_mut()
                    .entry(http::header::CONTENT_LENGTH)
                    .or_insert_with(|| length.into());
            }
        }
        response.map(|inner| Self { inner, head, busy })
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.head {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match polled {
            Poll::Pending => this.busy.wait(),
            Poll::Ready(_) => this.busy.progress(),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.head || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.head {
            return SizeHint::with_exact(0);
        }
        self.inner.size_hint()
    }
}

/// A connection's I/O holding its place under the connection cap: the
/// place is given back when the I/O is dropped, which for an upgraded
/// connection (exec, port-forward) is when the tunnel ends.
#[derive(Debug)]
pub(super) struct Counted<I> {
    io: I,
    _permit: OwnedSemaphorePermit,
}

impl<I> Counted<I> {
    pub(super) fn new(io: I, permit: OwnedSemaphorePermit) -> Self {
        Self {
            io,
            _permit: permit,
        }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for Counted<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for Counted<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_requests_in_flight_and_counts_from_the_last_end() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let busy = activity.busy();
        let idle = activity.idle(timeout);
        tokio::pin!(idle);
        // A request waiting for its response far longer than the timeout: not idle.
        assert!(
            tokio::time::timeout(Duration::from_secs(60), idle.as_mut())
                .await
                .is_err(),
            "idle while a request was in flight"
        );
        drop(busy);
        let ended = tokio::time::Instant::now();
        idle.await;
        assert!(ended.elapsed() >= timeout, "idle before the timeout");
    }

    /// A body whose polls are pending, or yield a frame once `ready`.
    struct Upstream {
        ready: bool,
    }

    impl Body for Upstream {
        type Data = &'static [u8];
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
            if self.ready {
                Poll::Ready(Some(Ok(Frame::data(&b"event"[..]))))
            } else {
                Poll::Pending
            }
        }
    }

    fn poll(body: &mut TrackedBody<Upstream>) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        Pin::new(body).poll_frame(&mut cx).is_ready()
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_waiting_on_its_upstream_is_not_idle_and_one_the_client_does_not_read_is() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(10);
        let idle = activity.idle(timeout);
        tokio::pin!(idle);
        let response = http::Response::new(Upstream { ready: false });
        let mut body = TrackedBody::response(response, false, activity.busy()).into_body();
        // Never polled since its headers went out: the client's window is shut.
        let responded = tokio::time::Instant::now();
        idle.as_mut().await;
        assert!(responded.elapsed() >= timeout, "idle before the timeout");

        let idle = activity.idle(timeout);
        tokio::pin!(idle);
        // A quiet watch: its last poll was pending, for far longer than the timeout.
        assert!(!poll(&mut body));
        assert!(
            tokio::time::timeout(Duration::from_secs(60), idle.as_mut())
                .await
                .is_err(),
            "idle while waiting on the upstream"
        );
        // An event the client never asks for.
        body.inner.ready = true;
        assert!(poll(&mut body));
        let sent = tokio::time::Instant::now();
        idle.await;
        assert!(sent.elapsed() >= timeout, "idle before the timeout");
    }

    #[test]
    fn the_default_cap_leaves_room_below_the_open_file_limit() {
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        let max = ConnectionLimits::default().effective_max_connections();
        assert!(max >= 1);
        assert!((max as u64) < soft.max(2), "{max} of {soft}");
        let limits = ConnectionLimits {
            max_connections: Some(0),
            ..ConnectionLimits::default()
        };
        assert_eq!(limits.effective_max_connections(), 1);
    }
}
