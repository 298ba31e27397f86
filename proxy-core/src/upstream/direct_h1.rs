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
    future::Future,
    sync::Mutex,
    time::{Duration, Instant},
};

use http::{header, uri::PathAndQuery, HeaderValue, Request, Response, Uri};
use hyper::{body::Incoming, client::conn::http1};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use crate::{body::RequestBody, future::BoxFuture};

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

/// What [`DirectH1::try_send`] did with a request.
enum Tried<S> {
    /// Handed to a ready connection: the answer to come.
    Sent(S),
    /// No connection was ready (or none was asked for): a new one may be
    /// opened for it.
    NoneReady(Request<RequestBody>),
    /// No connection was ready and no more may be opened.
    Busy(Request<RequestBody>),
}

/// A ready connection's answer, or the request back if it turned out closed.
type SendResult =
    Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<RequestBody>>>;

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
    ///
    /// Handed to a ready connection at once, before the future is polled:
    /// the future then holds only the answer to come, and every request's
    /// future is as small (the rare paths are boxed).
    pub(super) fn send(
        &self,
        mut request: Request<RequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, DirectH1Error>> + Send + '_ {
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
        let sent = self.try_send(request, true);
        async move {
            // The rare paths are boxed, and awaited outside the matches:
            // an error alive across their await would hold a request.
            let again: BoxFuture<'_, _> = match sent {
                Tried::Sent(sent) => match sent.await {
                    Ok(response) => return Ok(response),
                    Err(mut error) => match error.take_message() {
                        // Not sent: the connection closed under it.
                        Some(unsent) => Box::pin(self.send_again(unsent)),
                        None => return Err(DirectH1Error::Request(error.into_error())),
                    },
                },
                Tried::NoneReady(request) => Box::pin(self.send_on_new(request)),
                Tried::Busy(request) => return Err(DirectH1Error::Busy(Box::new(request))),
            };
            again.await
        }
    }

    /// Sends a request whose connection closed under it: on one more ready
    /// connection, and if that one has closed too, on a new one.
    async fn send_again(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, DirectH1Error> {
        let request = match self.try_send(request, true) {
            Tried::Sent(sent) => match sent.await {
                Ok(response) => return Ok(response),
                Err(mut error) => match error.take_message() {
                    Some(unsent) => unsent,
                    None => return Err(DirectH1Error::Request(error.into_error())),
                },
            },
            Tried::NoneReady(request) => request,
            Tried::Busy(request) => return Err(DirectH1Error::Busy(Box::new(request))),
        };
        match self.try_send(request, false) {
            Tried::NoneReady(request) => self.send_on_new(request).await,
            Tried::Busy(request) => Err(DirectH1Error::Busy(Box::new(request))),
            Tried::Sent(_) => unreachable!("no ready connection was asked for"),
        }
    }

    /// Hands `request` to the least recently used ready connection (if
    /// `any_ready`), without waiting; else says whether a new connection
    /// may be opened for it.
    fn try_send(
        &self,
        request: Request<RequestBody>,
        any_ready: bool,
    ) -> Tried<impl Future<Output = SendResult> + Send + use<>> {
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if now.duration_since(conns.pruned) > PRUNE_INTERVAL {
            conns.prune(now);
        }
        let ready = any_ready
            .then(|| conns.list.iter().position(|c| c.sender.is_ready()))
            .flatten();
        match ready.and_then(|i| conns.list.remove(i)) {
            Some(mut conn) => {
                conn.used = now;
                let sent = conn.sender.try_send_request(request);
                conns.list.push_back(conn);
                Tried::Sent(sent)
            }
            None => {
                if conns.list.len() >= MAX_CONNECTIONS {
                    conns.prune(now);
                }
                if conns.list.len() >= MAX_CONNECTIONS {
                    return Tried::Busy(request);
                }
                Tried::NoneReady(request)
            }
        }
    }

    /// Sends `request` on a new connection, opened outside the lock.
    async fn send_on_new(
        &self,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, DirectH1Error> {
        let mut sender = self.connect().await?;
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
        response.await.map_err(DirectH1Error::Request)
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
