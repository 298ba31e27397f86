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

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::connect::{Connection, HttpConnector},
    rt::TokioIo,
};
use tokio::sync::Mutex;
use tower::ServiceExt;

/// Per-stream and per-connection receive windows: a watch or a large list
/// streams at full speed without hyper's adaptive window, and a slow reader
/// holds at most this much per stream.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 4 * 1024 * 1024;
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
}

/// `error: cause: cause`, the way hyper-util's errors are reported.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The state of one worker's connection.
enum Slot {
    /// Not connected yet, or the last connection ended.
    Idle,
    Connected(h2::client::SendRequest<Bytes>),
    /// ALPN said HTTP/1.1: never try again for this worker.
    NotH2,
}

/// One worker's direct HTTP/2 connection to one cluster.
pub(super) struct DirectH2 {
    connector: HttpsConnector<HttpConnector>,
    server: Uri,
    // A tokio mutex: connecting happens under it, so concurrent first
    // requests share one connection instead of racing to open several.
    slot: Mutex<Slot>,
}

impl DirectH2 {
    pub(super) fn new(connector: HttpsConnector<HttpConnector>, server: Uri) -> Self {
        Self {
            connector,
            server,
            slot: Mutex::new(Slot::Idle),
        }
    }

    /// Sends a request that has no body and waits for the response head.
    /// A connection that has ended is replaced once, before the request is
    /// sent; a request is never sent twice.
    pub(super) async fn send(
        &self,
        request: Request<()>,
    ) -> Result<Response<h2::RecvStream>, DirectError> {
        let sender = match self.sender(false).await {
            Ok(sender) => sender,
            Err(Unsendable::NotH2) => return Err(DirectError::NotH2(request)),
            Err(Unsendable::Connect(message)) => return Err(DirectError::Connect(message)),
        };
        let ready = match sender.ready().await {
            Ok(ready) => ready,
            // The connection ended since it was last used (GOAWAY, reset,
            // server restart): nothing was sent, reconnect and go on.
            Err(_) => match self.sender(true).await {
                Ok(sender) => sender.ready().await.map_err(DirectError::Request)?,
                Err(Unsendable::NotH2) => return Err(DirectError::NotH2(request)),
                Err(Unsendable::Connect(message)) => return Err(DirectError::Connect(message)),
            },
        };
        let mut ready = ready;
        let (response, _) = ready
            .send_request(request, true)
            .map_err(DirectError::Request)?;
        response.await.map_err(DirectError::Request)
    }

    /// The current connection's handle; a new connection when there is
    /// none or `reconnect` says the current one has ended.
    async fn sender(&self, reconnect: bool) -> Result<h2::client::SendRequest<Bytes>, Unsendable> {
        let mut slot = self.slot.lock().await;
        match &*slot {
            Slot::Connected(sender) if !reconnect => return Ok(sender.clone()),
            Slot::NotH2 => return Err(Unsendable::NotH2),
            _ => {}
        }
        *slot = Slot::Idle;
        let sender = match self.connect().await {
            Ok(sender) => sender,
            Err(Unsendable::NotH2) => {
                *slot = Slot::NotH2;
                return Err(Unsendable::NotH2);
            }
            Err(error) => return Err(error),
        };
        *slot = Slot::Connected(sender.clone());
        Ok(sender)
    }

    async fn connect(&self) -> Result<h2::client::SendRequest<Bytes>, Unsendable> {
        let io = self
            .connector
            .clone()
            .oneshot(self.server.clone())
            .await
            .map_err(|e| Unsendable::Connect(error_chain(&*e)))?;
        if !io.connected().is_negotiated_h2() {
            return Err(Unsendable::NotH2);
        }
        let (sender, mut connection) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(MAX_HEADER_LIST)
            .enable_push(false)
            .handshake::<_, Bytes>(TokioIo::new(io))
            .await
            .map_err(|e| Unsendable::Connect(format!("HTTP/2 handshake: {e}")))?;
        let ping_pong = connection.ping_pong();
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
        });
        Ok(sender)
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
