//! A worker's own HTTP/1.1 connections to a cluster that does not speak
//! HTTP/2 (a plain `http://` server, or one whose ALPN offers only
//! `http/1.1`), driven through hyper's connection API without a pool.
//!
//! hyper-util's pooled client, for each request: locks a pool shared by
//! every worker's callers and keyed by scheme and authority, boxes the
//! request future, and spawns a task that waits for the connection to be
//! idle again and puts it back. Here the connections belong to one worker
//! (so the lock is never contended), a request takes the first connection
//! that is ready for one, and a connection stays in the list while its
//! response streams: it is ready again once hyper has read that response
//! to its end. One task per connection drives it, none per request.
//! Upgrades keep going through the pooled client, which can hand an
//! upgraded connection over.

use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

use http::{header, uri::PathAndQuery, HeaderValue, Request, Response, Uri};
use hyper::{body::Incoming, client::conn::http1};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use crate::body::RequestBody;

/// Connections a worker keeps to one cluster at most: one per request in
/// flight. Past this, requests take the pooled client.
const MAX_CONNECTIONS: usize = 256;

/// A connection unused this long is closed (as hyper-util's pool does).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How often closed and idle connections are looked for, at most, besides
/// when the list is full: not on every request, which would visit every
/// connection each time.
const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// Why a direct request was not answered.
#[derive(Debug)]
pub(super) enum DirectH1Error {
    /// Every connection is busy and no more may be opened: the request,
    /// unsent, for the pooled client.
    Busy(Box<Request<RequestBody>>),
    /// No connection could be made: the cluster is unavailable.
    Connect(String),
    /// The request was sent, or the connection failed under it.
    Request(hyper::Error),
}

/// One worker's HTTP/1.1 connections to one cluster.
pub(super) struct DirectH1 {
    connector: HttpsConnector<HttpConnector>,
    server: Uri,
    host: HeaderValue,
    conns: Mutex<Conns>,
}

/// The connections, least recently used first: a request takes the first
/// ready one and puts it at the back, so the one it finds is nearly
/// always the first it looks at (the oldest sent has most likely been
/// answered).
struct Conns {
    list: VecDeque<Conn>,
    pruned: Instant,
}

impl Conns {
    /// Drops connections that have closed or stayed unused too long
    /// (dropping the last handle ends a connection's task).
    fn prune(&mut self, now: Instant) {
        self.list.retain(|c| {
            let idle_too_long = c.sender.is_ready() && now.duration_since(c.used) > IDLE_TIMEOUT;
            !c.sender.is_closed() && !idle_too_long
        });
        self.pruned = now;
    }
}

/// An open connection and when a request last went out on it.
struct Conn {
    sender: http1::SendRequest<RequestBody>,
    used: Instant,
}

impl DirectH1 {
    /// `connector` must offer only HTTP/1.1.
    pub(super) fn new(connector: HttpsConnector<HttpConnector>, server: Uri) -> Self {
        let host = server
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        Self {
            connector,
            server,
            host,
            conns: Mutex::new(Conns {
                list: VecDeque::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// Sends `request` (absolute URI) on a ready connection, or a new one,
    /// and waits for the response head. A connection the server closed
    /// while idle is noticed before sending: the request goes on another.
    pub(super) async fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, DirectH1Error> {
        // Origin form on the wire, the server's authority as Host unless
        // the caller's is kept (as hyper-util's client does).
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
        request
            .headers_mut()
            .entry(header::HOST)
            .or_insert_with(|| self.host.clone());
        // A connection that turns out closed gives the request back; after
        // two of those, a new connection.
        for attempt in 0.. {
            let sent = {
                let now = Instant::now();
                let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
                if now.duration_since(conns.pruned) > PRUNE_INTERVAL {
                    conns.prune(now);
                }
                let ready = (attempt < 2)
                    .then(|| conns.list.iter().position(|c| c.sender.is_ready()))
                    .flatten();
                match ready.and_then(|i| conns.list.remove(i)) {
                    Some(mut conn) => {
                        conn.used = now;
                        let sent = conn.sender.try_send_request(request);
                        conns.list.push_back(conn);
                        Ok(sent)
                    }
                    None => {
                        if conns.list.len() >= MAX_CONNECTIONS {
                            conns.prune(now);
                        }
                        if conns.list.len() >= MAX_CONNECTIONS {
                            return Err(DirectH1Error::Busy(Box::new(request)));
                        }
                        Err(request)
                    }
                }
            };
            let sent = match sent {
                Ok(sent) => sent,
                Err(request) => {
                    // A new connection, opened outside the lock.
                    let mut sender = Box::pin(self.connect()).await?;
                    let response = sender.send_request(request);
                    let conn = Conn {
                        sender,
                        used: Instant::now(),
                    };
                    self.conns
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .list
                        .push_back(conn);
                    return response.await.map_err(DirectH1Error::Request);
                }
            };
            match sent.await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    // Not sent: the connection closed under it. Try another.
                    Some(unsent) => request = unsent,
                    None => return Err(DirectH1Error::Request(error.into_error())),
                },
            }
        }
        unreachable!("the loop returns")
    }

    async fn connect(&self) -> Result<http1::SendRequest<RequestBody>, DirectH1Error> {
        let io = self
            .connector
            .clone()
            .oneshot(self.server.clone())
            .await
            .map_err(|e| DirectH1Error::Connect(crate::error::error_chain(&*e)))?;
        let (sender, connection) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| DirectH1Error::Connect(format!("HTTP/1.1 handshake: {e}")))?;
        // Runs on this worker's runtime until the server closes the
        // connection or every handle to it is dropped.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(sender)
    }
}
