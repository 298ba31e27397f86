//! A worker's own HTTP/2 connection to a cluster, used directly through the
//! `h2` crate for requests without a body (gets, lists, watches, logs,
//! deletes: nearly all of what kubectl sends).
//!
//! hyper's HTTP/2 client spawns a task, a channel and a oneshot per request
//! and answers through them; driving `h2` directly, the response arrives on
//! the caller's own task. Measured on 2 cores, a passthrough doing this needs
//! about 16 µs of CPU per request against 19–21 µs through hyper-util's client
//! (`benches/RESULTS.md`). Requests with a body, upgrades and servers that do
//! not offer HTTP/2 keep going through the pooled hyper-util clients.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper_util::{client::legacy::connect::Connection, rt::TokioIo};
use tokio::sync::Mutex;

use super::connector::{Https, HttpsStream};

/// Per-stream receive window: a watch or a large list streams at full
/// speed without hyper's adaptive window, and a reader that pauses (a
/// `kubectl logs -f` in a pager) holds at most this much.
const STREAM_WINDOW: u32 = 256 * 1024;
/// Per-connection receive window: the largest HTTP/2 allows. What paused
/// streams hold counts against it too, and every request of a worker to a
/// cluster shares the connection: at 4 MiB, sixteen paused `logs -f` held
/// all of it and every other response on the connection waited for them
/// (hyperium/hyper#2899). Memory stays bounded by the stream window.
const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// Largest DATA frame the server may send (HTTP/2's default is 16 KiB): a
/// large list or a `logs -f` arrives in a quarter of the frames, and an
/// agent relays each frame it gets as one write into its tunnel, so this
/// is also what spares the tunnel three writes, reads and wake-ups in
/// four.
const MAX_FRAME_SIZE: u32 = 64 * 1024;
/// Largest response header block accepted.
const MAX_HEADER_LIST: u32 = 1 << 20;
/// Keepalive pings: one after this much time...
const PING_INTERVAL: Duration = Duration::from_secs(30);
/// ...and the connection is dropped if the pong takes longer than this.
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a direct request was not answered.
#[derive(Debug)]
pub(super) enum DirectError {
    /// The server does not speak HTTP/2 (ALPN chose HTTP/1.1): the request,
    /// unsent, for the pooled client, which handles both.
    NotH2(Request<()>),
    /// No connection could be made: the cluster is unavailable.
    Connect(String),
    /// The request was sent, or the connection failed under it.
    Request(h2::Error),
}

/// Why no connection is there to send on.
enum Unsendable {
    NotH2,
    Connect(String),
    /// The replacement for an ended connection ended too.
    Ended(h2::Error),
}

/// Streams a new connection is taken to allow until the server's
/// SETTINGS say how many it does (h2 assumes no limit): kube-apiserver's
/// 100. Assuming none, a burst of watches went on a new connection past
/// the server's limit and it refused them with 502s (the test
/// `a_burst_before_the_servers_settings_stays_within_its_limit`).
const INITIAL_MAX_STREAMS: usize = 100;

/// Connections a worker opens to one cluster at most. A new one opens only
/// when every open one has as many streams in use as the server allows
/// (`SETTINGS_MAX_CONCURRENT_STREAMS`), so long-lived watches cannot
/// starve the requests behind them; past this many, a request waits for a
/// stream. kube-apiserver allows 100 streams per connection (since the
/// HTTP/2 rapid-reset fixes, CVE-2023-44487): at 16 connections, a worker
/// with 1,600 watches open left every further request to that cluster
/// waiting for one to end, and an agent has one worker.
const MAX_CONNECTIONS: usize = 1024;

/// One open connection.
struct Conn {
    sender: h2::client::SendRequest<Bytes>,
    in_flight: Arc<AtomicUsize>,
    ended: Arc<AtomicBool>,
}

/// A connection picked for one request: its sender, the stream it holds,
/// and its flag to set if it turns out to have ended.
type Picked = (h2::client::SendRequest<Bytes>, InFlight, Arc<AtomicBool>);

/// The open connection with the fewest streams in use.
fn least_busy(conns: &[Conn]) -> Option<&Conn> {
    conns
        .iter()
        .min_by_key(|conn| conn.in_flight.load(Ordering::Relaxed))
}

impl Conn {
    fn picked(&self) -> Picked {
        (
            self.sender.clone(),
            InFlight::new(&self.in_flight),
            self.ended.clone(),
        )
    }

    fn has_room(&self) -> bool {
        let limit = self.sender.current_max_send_streams().max(1);
        self.in_flight.load(Ordering::Relaxed) < limit
    }
}

/// The state of one worker's connections.
enum Pool {
    Conns {
        conns: Vec<Conn>,
        /// Why the last connection attempt failed, if it did.
        last_error: Option<String>,
    },
    /// ALPN said HTTP/1.1: never try again for this worker.
    NotH2,
}

/// Holds one stream of a connection until dropped: the response body keeps
/// it for as long as the stream is open.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker's direct HTTP/2 connections to one cluster.
pub(super) struct DirectH2 {
    connector: Https,
    server: Uri,
    // A tokio mutex: connecting happens under it, so concurrent requests
    // share a new connection instead of racing to open several. Held at
    // most the connect timeout, which bounds connecting.
    pool: Mutex<Pool>,
    /// Connection attempts finished, so requests that waited for the lock
    /// while one failed share its answer instead of each trying again in
    /// turn (a blackholed server would otherwise cost a connect timeout per
    /// queued request). Counted once an attempt ends: counted as it began,
    /// a request that came during the attempt took it for one before its
    /// time and tried again.
    attempts: AtomicU64,
}

impl DirectH2 {
    pub(super) fn new(connector: Https, server: Uri) -> Self {
        Self {
            connector,
            server,
            pool: Mutex::new(Pool::Conns {
                conns: Vec::new(),
                last_error: None,
            }),
            attempts: AtomicU64::new(0),
        }
    }

    /// Sends a request that has no body and waits for the response head;
    /// the [`InFlight`] must live as long as the response body. A
    /// connection that has ended is replaced once, before the request is
    /// sent; a request is never sent twice.
    ///
    /// Nearly always an open connection has room: then the request is
    /// handed to it at once, before the future is polled, and the future
    /// holds only the answer to come (every request's future is as small).
    /// Anything else (connecting, a connection that has ended) is boxed.
    pub(super) fn send(
        &self,
        request: Request<()>,
    ) -> impl Future<Output = Result<(Response<h2::RecvStream>, InFlight), DirectError>> + Send + '_
    {
        let sent = match self.pick_now() {
            Some((mut sender, in_flight, ended)) => {
                // A fresh handle has no request of its own waiting for a
                // stream: asking whether it is ready never waits, it only
                // says whether the connection has failed.
                let mut cx = Context::from_waker(Waker::noop());
                match sender.poll_ready(&mut cx) {
                    Poll::Ready(Ok(())) => Ok(sender
                        .send_request(request, true)
                        .map(|(response, _)| (response, in_flight))),
                    Poll::Ready(Err(_)) => {
                        ended.store(true, Ordering::Relaxed);
                        Err(request)
                    }
                    Poll::Pending => Err(request),
                }
            }
            None => Err(request),
        };
        async move {
            let (response, in_flight) = match sent {
                Ok(Ok(sent)) => sent,
                Ok(Err(error)) => return Err(DirectError::Request(error)),
                Err(request) => return Box::pin(self.send_waiting(request)).await,
            };
            let response = response.await.map_err(DirectError::Request)?;
            Ok((response, in_flight))
        }
    }

    /// [`send`](Self::send) when no open connection could take the request
    /// at once.
    async fn send_waiting(
        &self,
        request: Request<()>,
    ) -> Result<(Response<h2::RecvStream>, InFlight), DirectError> {
        let (mut ready, in_flight) = match self.ready().await {
            Ok(ready) => ready,
            Err(Unsendable::NotH2) => return Err(DirectError::NotH2(request)),
            Err(Unsendable::Connect(message)) => return Err(DirectError::Connect(message)),
            Err(Unsendable::Ended(error)) => return Err(DirectError::Request(error)),
        };
        let (response, _) = ready
            .send_request(request, true)
            .map_err(DirectError::Request)?;
        let response = response.await.map_err(DirectError::Request)?;
        Ok((response, in_flight))
    }

    /// A connection ready for one more stream. One that ended since it was
    /// last used (GOAWAY, reset, server restart) is replaced once: nothing
    /// was sent on it.
    async fn ready(&self) -> Result<(h2::client::SendRequest<Bytes>, InFlight), Unsendable> {
        let (sender, in_flight, ended) = self.pick().await?;
        if let Ok(ready) = sender.ready().await {
            return Ok((ready, in_flight));
        }
        ended.store(true, Ordering::Relaxed);
        drop(in_flight);
        let (sender, in_flight, _) = self.pick().await?;
        let ready = sender.ready().await.map_err(Unsendable::Ended)?;
        Ok((ready, in_flight))
    }

    /// A connection with a free stream, the least busy first; a new one
    /// when none has room and fewer than [`MAX_CONNECTIONS`] are open.
    async fn pick(&self) -> Result<Picked, Unsendable> {
        let attempts_seen = self.attempts.load(Ordering::Relaxed);
        let mut pool = self.pool.lock().await;
        let (conns, last_error) = match &mut *pool {
            Pool::Conns { conns, last_error } => (conns, last_error),
            Pool::NotH2 => return Err(Unsendable::NotH2),
        };
        conns.retain(|conn| !conn.ended.load(Ordering::Relaxed));
        let conn = match least_busy(conns) {
            Some(conn) if conn.has_room() || conns.len() >= MAX_CONNECTIONS => conn,
            _ => {
                if let Some(message) = last_error
                    .as_ref()
                    .filter(|_| self.attempts.load(Ordering::Relaxed) != attempts_seen)
                {
                    return Err(Unsendable::Connect(message.clone()));
                }
                let connected = self.connect().await;
                self.attempts.fetch_add(1, Ordering::Relaxed);
                match connected {
                    Ok(conn) => {
                        *last_error = None;
                        conns.push(conn);
                        conns.last().expect("just pushed")
                    }
                    Err(Unsendable::NotH2) => {
                        *pool = Pool::NotH2;
                        return Err(Unsendable::NotH2);
                    }
                    Err(error) => {
                        if let Unsendable::Connect(message) = &error {
                            *last_error = Some(message.clone());
                        }
                        return Err(error);
                    }
                }
            }
        };
        Ok(conn.picked())
    }

    /// An open connection with room, if there is one and nobody holds the
    /// lock (connecting, say), without waiting.
    fn pick_now(&self) -> Option<Picked> {
        let mut pool = self.pool.try_lock().ok()?;
        let Pool::Conns { conns, .. } = &mut *pool else {
            return None;
        };
        conns.retain(|conn| !conn.ended.load(Ordering::Relaxed));
        least_busy(conns)
            .filter(|conn| conn.has_room())
            .map(Conn::picked)
    }

    /// A new connection: TCP, TLS and the HTTP/2 handshake, within the
    /// connect timeout.
    async fn connect(&self) -> Result<Conn, Unsendable> {
        let handshake = |io: HttpsStream| async move {
            // `None`: ALPN chose HTTP/1.1.
            if !io.connected().is_negotiated_h2() {
                return Ok(None);
            }
            h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .max_header_list_size(MAX_HEADER_LIST)
                .initial_max_send_streams(INITIAL_MAX_STREAMS)
                .max_frame_size(MAX_FRAME_SIZE)
                .enable_push(false)
                .handshake::<_, Bytes>(TokioIo::new(io))
                .await
                .map(Some)
                .map_err(|e| format!("HTTP/2 handshake: {e}"))
        };
        let opened = self.connector.open(&self.server, handshake).await;
        let (sender, mut connection) = opened
            .map_err(Unsendable::Connect)?
            .ok_or(Unsendable::NotH2)?;
        let ping_pong = connection.ping_pong();
        let ended = Arc::new(AtomicBool::new(false));
        let ended_on_exit = ended.clone();
        // Runs on this worker's runtime; ends when the server closes the
        // connection, every handle is dropped, or a ping goes unanswered.
        tokio::spawn(async move {
            let keepalive = async {
                match ping_pong {
                    Some(ping_pong) => keepalive(ping_pong).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                result = &mut connection => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "upstream HTTP/2 connection ended");
                    }
                }
                () = keepalive => tracing::debug!("upstream HTTP/2 ping timed out, connection dropped"),
            }
            ended_on_exit.store(true, Ordering::Relaxed);
        });
        Ok(Conn {
            sender,
            in_flight: Arc::default(),
            ended,
        })
    }
}

/// Pings every [`PING_INTERVAL`]; returns when a pong does not come back
/// within [`PING_TIMEOUT`] or the connection is gone.
async fn keepalive(mut ping_pong: h2::PingPong) {
    loop {
        tokio::time::sleep(PING_INTERVAL).await;
        match tokio::time::timeout(PING_TIMEOUT, ping_pong.ping(h2::Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(_)) | Err(_) => return,
        }
    }
}
