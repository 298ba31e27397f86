//! Paddock's side of the tunnels: one slot per agent cluster holding its
//! current session (an HTTP/2 client connection over the agent's
//! WebSocket), and the streams opened on it.

use std::{
    collections::HashMap,
    future::Future,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{Method, Request, Response, StatusCode};
use hyper::{body::Incoming, client::conn::http2::SendRequest, upgrade::Upgraded};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::watch,
};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::{
    ws::{LastHeard, Role, WsBytes},
    CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_HEADER_LIST, PING_INTERVAL, PING_TIMEOUT,
};
use crate::{
    body::RequestBody,
    events::Events,
    store::Timestamp,
    upstream::{Observation, Reachability},
};

/// What is known of a connected agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionInfo {
    /// The `paddock agent` version it reported.
    pub agent_version: Option<String>,
    /// The API server version it reported.
    pub kubernetes_version: Option<String>,
    /// Whether it forwards ordinary HTTP/2 requests ([`super::FEATURE_REQUESTS`]).
    pub serves_requests: bool,
    /// When it connected.
    pub connected_at: Timestamp,
    /// When the tunnel was last heard from (any message: both ends ping
    /// every [`super::PING_INTERVAL`]).
    pub last_heartbeat: Timestamp,
}

/// One connected agent.
pub(crate) struct Session {
    id: u64,
    sender: SendRequest<RequestBody>,
    info: SessionInfo,
    heard: Arc<LastHeard>,
    /// The token hash the agent authenticated with: a rotated or revoked
    /// token ends the session.
    token_hash: String,
    /// Cancelled to end the session: fails its byte stream ([`Revocable`]),
    /// so every stream on it ends at once.
    end: CancellationToken,
}

/// The slot of one cluster: its current session, if any, as a watch so a
/// request can wait for a reconnecting agent, and the verdict on reaching
/// the cluster, which outlives the cluster's clients (rebuilt when its
/// record changes).
pub(crate) struct Slot {
    current: watch::Sender<Option<Arc<Session>>>,
    reachability: Arc<Reachability>,
}

impl Slot {
    fn new(cluster: &str, events: Events) -> Self {
        Self {
            current: watch::channel(None).0,
            reachability: Arc::new(Reachability::new(cluster, events)),
        }
    }

    /// The session, once an agent is connected, waiting up to `wait` for
    /// one.
    async fn session(&self, wait: Duration) -> Result<Arc<Session>, String> {
        let mut current = self.current.subscribe();
        tokio::time::timeout(wait, current.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|s| s.clone()))
            .ok_or_else(|| {
                format!(
                    "the cluster's agent is not connected (waited {}s for it)",
                    wait.as_secs()
                )
            })
    }

    /// Sends `request` (no upgrade) to the agent as an HTTP/2 request of
    /// its own, waiting up to `wait` for an agent to be connected.
    pub(crate) async fn send(&self, wait: Duration, request: Request<RequestBody>) -> Sent {
        let session = match self.session(wait).await {
            Ok(session) => session,
            Err(message) => return Sent::Unreachable(message),
        };
        if !session.info.serves_requests {
            return Sent::StreamsOnly(request);
        }
        let mut sender = session.sender.clone();
        if let Err(error) = sender.ready().await {
            return Sent::Unreachable(format!("tunnel closed: {error}"));
        }
        match sender.send_request(request).await {
            Ok(response) => Sent::Answer(response),
            Err(error) => Sent::Failed(format!("through the tunnel: {error}")),
        }
    }

    /// Opens one stream to the agent, waiting up to `wait` for an agent to
    /// be connected; the stream carries an HTTP/1.1 connection to the
    /// cluster's API server.
    pub(crate) async fn open(&self, wait: Duration) -> Result<Upgraded, String> {
        let session = self.session(wait).await?;
        let mut sender = session.sender.clone();
        let request = Request::builder()
            .method(Method::CONNECT)
            .uri("apiserver:443")
            .body(RequestBody::empty())
            .map_err(|e| e.to_string())?;
        sender
            .ready()
            .await
            .map_err(|e| format!("tunnel closed: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("tunnel stream refused: {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "the agent refused the stream: {}",
                response.status()
            ));
        }
        hyper::upgrade::on(response)
            .await
            .map_err(|e| format!("tunnel stream failed: {e}"))
    }
}

/// What became of a request sent with [`Slot::send`].
pub(crate) enum Sent {
    /// The agent's answer (its own when it could not reach its API
    /// server: see [`super::UNREACHABLE_HEADER`]).
    Answer(Response<Incoming>),
    /// No agent connected in time, or its tunnel closed: not sent.
    Unreachable(String),
    /// The tunnel failed the request once sent.
    Failed(String),
    /// The agent forwards only `CONNECT` streams: the request, unsent.
    StreamsOnly(Request<RequestBody>),
}

/// Every agent tunnel this Paddock holds, by cluster id.
pub struct Tunnels {
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    next_id: AtomicU64,
    wait: Duration,
    /// Where the agent clusters' reachability changes go (alerts, metrics).
    events: Events,
    /// Wakes the status writer when an agent connects or drops.
    pub(super) changed: tokio::sync::Notify,
    /// Clusters whose tunnel dropped here (not replaced by a newer one),
    /// with when it was last heard from, for the status writer.
    dropped: Mutex<HashMap<String, Timestamp>>,
}

impl std::fmt::Debug for Tunnels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnels")
            .field("wait", &self.wait)
            .finish_non_exhaustive()
    }
}

impl Tunnels {
    /// No tunnels yet; requests wait up to `wait` for a disconnected
    /// agent; `events` hears agents connect and disconnect.
    pub fn new(wait: Duration, events: Events) -> Self {
        Self {
            slots: Mutex::default(),
            next_id: AtomicU64::new(1),
            wait,
            events,
            changed: tokio::sync::Notify::new(),
            dropped: Mutex::default(),
        }
    }

    /// Tells the status writer that `session`, of `cluster`, ended here.
    fn dropped_here(&self, cluster: &str, session: &Session) {
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(cluster.to_owned(), session.heard.get());
        self.changed.notify_one();
    }

    /// The last-heard clock of `cluster`'s session.
    #[cfg(test)]
    pub(super) fn heard(&self, cluster: &str) -> Option<Arc<LastHeard>> {
        let slot = self.slot(cluster);
        let current = slot.current.borrow();
        current.as_ref().map(|s| s.heard.clone())
    }

    /// The drops recorded since the last call.
    pub(super) fn take_dropped(&self) -> HashMap<String, Timestamp> {
        std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The verdict on reaching agent cluster `cluster`, which its
    /// tunnel's connecting and dropping feed.
    pub(crate) fn reachability(&self, cluster: &str) -> Arc<Reachability> {
        self.slot(cluster).reachability.clone()
    }

    /// How long a request waits for a disconnected agent.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub(crate) fn slot(&self, cluster: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(cluster.to_owned())
            .or_insert_with(|| Arc::new(Slot::new(cluster, self.events.clone())))
            .clone()
    }

    /// The connected agent of `cluster`, if any.
    pub fn status(&self, cluster: &str) -> Option<SessionInfo> {
        let slot = self.slot(cluster);
        let current = slot.current.borrow();
        current.as_ref().map(|s| SessionInfo {
            last_heartbeat: s.heard.get(),
            ..s.info.clone()
        })
    }

    /// Ends the session of `cluster` unless it authenticated with
    /// `keep_hash` (`None`: ends it whatever it is), and with it every
    /// stream open on it. Called when the cluster is deleted, no longer
    /// an agent cluster, or its token rotated or revoked.
    pub fn disconnect_unless(&self, cluster: &str, keep_hash: Option<&str>) {
        // Looked up, not created: most clusters never had a tunnel.
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(cluster)
            .cloned();
        let Some(slot) = slot else {
            return;
        };
        let current = slot.current.borrow().clone();
        if let Some(session) = current {
            if keep_hash != Some(session.token_hash.as_str()) {
                tracing::info!(cluster.id = %cluster, "agent tunnel ended: its token is no longer valid");
                session.end.cancel();
                slot.reachability.observe(Observation::Unreachable(
                    "the agent's registration token is no longer valid",
                ));
                slot.current.send_if_modified(|s| {
                    if s.as_ref().is_some_and(|s| s.id == session.id) {
                        *s = None;
                        true
                    } else {
                        false
                    }
                });
                self.dropped_here(cluster, &session);
            }
        }
    }

    /// Runs the HTTP/2 client side of a new tunnel over `io` (the agent's
    /// connection, upgraded to a WebSocket) until it ends. The new session replaces any older one
    /// of the same cluster (an agent reconnecting before the old tunnel
    /// was noticed dead). `still_valid` asks once the session is in place
    /// whether its token still is: a revocation that came between the
    /// token's check and now found no session to end, so it is ended here.
    pub(crate) async fn serve<S>(
        &self,
        cluster: &str,
        token_hash: String,
        info: SessionInfo,
        io: S,
        still_valid: impl FnOnce(&str) -> bool,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let heard = Arc::new(LastHeard::now());
        let end = CancellationToken::new();
        let io = TokioIo::new(Revocable::new(
            WsBytes::new(io, Role::Server, heard.clone()),
            end.clone(),
        ));
        let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(super::STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .max_frame_size(MAX_FRAME_SIZE)
            .max_send_buf_size(1024 * 1024)
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .keep_alive_while_idle(true)
            .handshake::<_, RequestBody>(io)
            .await;
        let (sender, connection) = match handshake {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(cluster.id = %cluster, %error, "agent tunnel: HTTP/2 handshake failed");
                return;
            }
        };
        let session = Arc::new(Session {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            sender,
            info,
            heard,
            token_hash,
            end,
        });
        let slot = self.slot(cluster);
        if let Some(old) = slot.current.send_replace(Some(session.clone())) {
            old.end.cancel();
        }
        if !still_valid(&session.token_hash) {
            tracing::info!(cluster.id = %cluster, "agent tunnel ended: its token is no longer valid");
            session.end.cancel();
        }
        tracing::info!(cluster.id = %cluster, agent.version = ?session.info.agent_version, "agent connected");
        // The agent reads its API server's `/version` just before dialing:
        // only a version says the cluster answers. Without one the next
        // request or health check decides, so an agent whose API server is
        // down does not make its cluster read reachable at every reconnect.
        if session.info.kubernetes_version.is_some() {
            slot.reachability.observe(Observation::Answers);
        }
        self.changed.notify_one();
        tokio::select! {
            result = connection => {
                if let Err(error) = result {
                    let error = crate::error::error_chain(&error);
                    tracing::info!(cluster.id = %cluster, %error, "agent tunnel ended");
                }
            }
            () = session.end.cancelled() => {}
        }
        let replaced = !slot.current.send_if_modified(|s| {
            if s.as_ref().is_some_and(|s| s.id == session.id) {
                *s = None;
                true
            } else {
                false
            }
        });
        tracing::info!(cluster.id = %cluster, "agent disconnected");
        // A newer session of the same cluster took over: still reachable.
        if !replaced {
            slot.reachability
                .observe(Observation::Unreachable("the agent's tunnel dropped"));
            self.dropped_here(cluster, &session);
        }
    }
}

/// A session's byte stream, which fails once the session is ended. hyper
/// runs the HTTP/2 connection as a task of its own, which outlives the
/// dispatcher [`Tunnels::serve`] drops and keeps carrying the streams
/// still open (watches, `logs -f`, exec, pooled HTTP/1.1 connections):
/// only failing the bytes under it ends them, and that task then drops
/// the connection, which closes the agent's end.
struct Revocable<S> {
    io: S,
    /// Boxed once per session: polled, never moved.
    ended: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl<S> Revocable<S> {
    fn new(io: S, end: CancellationToken) -> Self {
        Self {
            io,
            ended: Box::pin(end.cancelled_owned()),
        }
    }

    /// An error once the session is ended; until then, the polling task
    /// is woken when it is, so a pending read fails too.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.ended.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::ErrorKind::ConnectionAborted.into()),
            Poll::Pending => Ok(()),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Revocable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Revocable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
