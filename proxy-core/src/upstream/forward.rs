//! Forward: sends the request to its cluster and streams the answer back.
//! Nothing is buffered; upgrades (WebSocket, SPDY) become a byte tunnel.
//! The plugins' `on_upstream_request` phase runs first: it sees the exact
//! request that leaves Paddock.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::{header, Request, Response, StatusCode, Version};
use hyper::body::{Body as _, Incoming};

use futures_util::TryFutureExt as _;
use hyper_util::rt::TokioIo;
use policy::RequestAttributes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tower::Service;

use super::{direct_h1::DirectH1Error, direct_h2::DirectError, Cluster};
use crate::{
    authn::BoxFuture,
    body::{BodyEnd, RequestBody, ResponseBody, TunnelEnd},
    context::{self, RequestContext},
    error::ProxyError,
    hop_by_hop,
    plugin::{copy_request_body, Phases, Plugins, RequestPhase},
    request::{ProxyResponse, ProxyResult, UpgradeRequest},
    shutdown::Shutdown,
    tunnel::Sent,
    worker::deadline::TimedOut,
};

/// Time allowed for the response headers of an ordinary request.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The innermost service of the stack.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    // Behind an `Arc`: the stack is cloned per connection and by each layer
    // that takes its ready inner service, and cloning or dropping a
    // `Shutdown` locks the mutex of each of its two cancellation tokens,
    // shared by every connection.
    shutdown: Arc<Shutdown>,
    plugins: Plugins,
}

impl Forward {
    /// A forwarder whose watches end on `shutdown`'s drain and whose
    /// tunnels are cut on its abort; `plugins` see every request first.
    pub(crate) fn new(shutdown: Shutdown, plugins: Plugins) -> Self {
        Self {
            shutdown: Arc::new(shutdown),
            plugins,
        }
    }
}

impl Service<Request<RequestBody>> for Forward {
    type Response = ProxyResponse;
    type Error = ProxyError;
    type Future = BoxFuture<'static, ProxyResult>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        Box::pin(forward(
            request,
            self.shutdown.clone(),
            self.plugins.clone(),
        ))
    }
}

async fn forward(
    mut request: Request<RequestBody>,
    shutdown: Arc<Shutdown>,
    plugins: Plugins,
) -> ProxyResult {
    let context = context::of(&request);
    // Taken apart only for a plugin hooking the phase.
    if plugins.hook(Phases::UPSTREAM_REQUEST) {
        let (mut parts, body) = request.into_parts();
        let phase = RequestPhase::UpstreamRequest;
        let answered = if plugins.request_phases_in_place() {
            plugins.run_request_phase_now(phase, &context, &mut parts)
        } else {
            plugins.run_request_phase(phase, &context, &mut parts).await
        };
        if let Some(response) = answered? {
            return Ok(response);
        }
        request = Request::from_parts(parts, body);
        copy_request_body(&mut request);
    }
    let cluster = context
        .target()
        .cloned()
        .ok_or_else(|| ProxyError::Internal {
            message: "request reached forward without a cluster".to_owned(),
        })?;
    // Ordinary requests take the worker's cheapest connection; upgrades
    // the HTTP/1.1 client, which can hand the connection over.
    let result = match request.extensions_mut().remove::<UpgradeRequest>() {
        None => match cluster.apply_credential(&mut request) {
            Err(error) => Err(error),
            Ok(()) => {
                let long_running = context
                    .attributes()
                    .is_some_and(RequestAttributes::is_long_running);
                cluster
                    .exchange(request, long_running)
                    .await
                    .map(|mut response| {
                        if long_running {
                            response.body_mut().end_on(shutdown.drain().clone());
                        }
                        response
                    })
            }
        },
        // Boxed: rare, and every request's future would be as large.
        Some(UpgradeRequest(protocol)) => {
            Box::pin(upgrade(request, protocol, &cluster, shutdown, context)).await
        }
    };
    cluster.reachability().observe_result(&result);
    result
}

/// Sends a request asking for an upgrade (its plugins' phase done) and,
/// on a `101`, relays the session.
async fn upgrade(
    mut request: Request<RequestBody>,
    protocol: header::HeaderValue,
    cluster: &Cluster,
    shutdown: Arc<Shutdown>,
    context: Arc<RequestContext>,
) -> ProxyResult {
    let client_upgrade = hyper::upgrade::on(&mut request);
    let response = cluster.send_upgrade(request, protocol).await?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        return Ok(tunnel(cluster, response, client_upgrade, shutdown, context));
    }
    let mut response = streamed(response);
    response.body_mut().end_on(shutdown.drain().clone());
    Ok(response)
}

/// The response of a pooled or HTTP/1.1 connection, streamed back as it
/// comes.
fn streamed(response: Response<Incoming>) -> ProxyResponse {
    let (mut parts, body) = response.into_parts();
    // HTTP/2 has no connection-specific headers (h2 refuses them).
    if parts.version != Version::HTTP_2 {
        hop_by_hop::strip(&mut parts.headers);
    }
    Response::from_parts(parts, ResponseBody::upstream(body))
}

/// `sent` within the cluster's request timeout, or for as long as it takes
/// for long-running requests (see [`crate::worker::deadline`]); a timeout
/// is [`Cluster::timed_out`]. A plain future, not an `async fn`, which
/// would hold `sent` twice.
fn deadline<'a, F: Future + 'a>(
    cluster: &'a Cluster,
    long_running: bool,
    sent: F,
) -> impl Future<Output = Result<F::Output, ProxyError>> + 'a {
    let timeout = (!long_running).then_some(cluster.request_timeout);
    crate::worker::deadline::deadline(timeout, sent).map_err(|TimedOut| cluster.timed_out())
}

/// Relays the 101 to the client and, once both sides have switched, copies
/// bytes both ways until both are closed or the grace period ends. The
/// request's context lives as long as the tunnel, and with it what the
/// plugins keep in its state (the metrics' open-stream count).
fn tunnel(
    cluster: &Cluster,
    mut upstream_response: Response<Incoming>,
    client_upgrade: hyper::upgrade::OnUpgrade,
    shutdown: Arc<Shutdown>,
    context: Arc<RequestContext>,
) -> ProxyResponse {
    let upstream_upgrade = hyper::upgrade::on(&mut upstream_response);
    let cluster_id = cluster.id().to_owned();
    let end = TunnelEnd::default();
    let closed = end.clone();
    tokio::spawn(async move {
        // The request's context lives as long as the session: plugins
        // count it as open until it ends.
        let _context = context;
        // Incomplete unless the copy ends with both sides closed.
        let mut carried = BodyEnd {
            bytes: 0,
            bytes_received: 0,
            complete: false,
        };
        match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok((client, upstream)) => {
                let mut client = Counted::new(TokioIo::new(client));
                let mut upstream = Counted::new(TokioIo::new(upstream));
                tokio::select! {
                    result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                        match result {
                            Ok(_) => carried.complete = true,
                            Err(error) => {
                                // Go clients (kubectl) close without TLS
                                // close_notify, and a side that has gone
                                // resets the other's last write: the session
                                // still ended by itself.
                                carried.complete = matches!(
                                    error.kind(),
                                    std::io::ErrorKind::UnexpectedEof
                                        | std::io::ErrorKind::ConnectionReset
                                        | std::io::ErrorKind::BrokenPipe
                                        | std::io::ErrorKind::NotConnected
                                );
                                tracing::debug!(cluster.id = %cluster_id, %error, "tunnel closed with an error");
                            }
                        }
                    }
                    () = shutdown.abort().cancelled() => {
                        tracing::info!(cluster.id = %cluster_id, "tunnel cut at the end of the shutdown grace period");
                    }
                }
                // Counted as read, whatever ended the copy.
                carried.bytes_received = client.read;
                carried.bytes = upstream.read;
            }
            Err(error) => {
                tracing::warn!(cluster.id = %cluster_id, %error, "upgrade failed");
            }
        }
        closed.close(carried);
    });
    let (parts, _) = upstream_response.into_parts();
    Response::from_parts(parts, ResponseBody::tunnel(end))
}

/// Counts the bytes read through an upgraded connection, for the access
/// and audit logs: still there when the copy fails or is cut, unlike the
/// totals `copy_bidirectional` returns only on success.
struct Counted<T> {
    inner: T,
    read: u64,
}

impl<T> Counted<T> {
    fn new(inner: T) -> Self {
        Self { inner, read: 0 }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.read += (buf.filled().len() - before) as u64;
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Connect failures (refused, DNS, TLS handshake) are 503: the cluster is
/// unavailable. Anything after the request was sent is 502.
fn upstream_error(cluster: &Cluster, error: &hyper_util::client::legacy::Error) -> ProxyError {
    let message = crate::error::error_chain(error);
    if error.is_connect() {
        cluster.unavailable(message)
    } else {
        ProxyError::UpstreamFailure {
            cluster: cluster.id().to_owned(),
            message,
        }
    }
}

impl Cluster {
    /// The error of a request to this cluster that could not reach it, and
    /// why (`message`): the one way every path says so, which the
    /// reachability verdict reads as unreachable.
    pub(super) fn unavailable(&self, message: String) -> ProxyError {
        ProxyError::UpstreamUnavailable {
            cluster: self.id().to_owned(),
            message,
        }
    }

    /// Sends an ordinary request (not an upgrade; its URI absolute, its
    /// credential set) the cheapest way this worker has, and returns the
    /// answer once its headers arrived, within the cluster's request
    /// timeout unless `long_running`: a request without a body over the
    /// worker's own HTTP/2 connection, or its own HTTP/1.1 connections to a
    /// server without HTTP/2; otherwise (a body, a tunnel) as
    /// [`dispatch`](Self::dispatch) sends it.
    /// How Paddock forwards a caller's request, and how the agent forwards
    /// one from its tunnel to its API server.
    pub(crate) async fn exchange(
        &self,
        mut request: Request<RequestBody>,
        long_running: bool,
    ) -> ProxyResult {
        let clients = self.clients();
        // Set when the server turned out not to speak HTTP/2 (or has no
        // direct HTTP/2 path: plain http://).
        let mut h1_only = clients.direct.is_none();
        let direct = clients.direct.as_ref();
        if let Some(direct) = direct.filter(|_| request.body().is_end_stream()) {
            let (parts, body) = request.into_parts();
            let sent = deadline(
                self,
                long_running,
                direct.send(Request::from_parts(parts, ())),
            );
            match sent.await? {
                Ok((response, in_flight)) => {
                    let (parts, body) = response.into_parts();
                    let body = ResponseBody::upstream_h2(body).holding(in_flight);
                    return Ok(Response::from_parts(parts, body));
                }
                // An HTTP/1.1-only server: the HTTP/1.1 paths below.
                Err(DirectError::NotH2(unsent)) => {
                    request = Request::from_parts(unsent.into_parts().0, body);
                    h1_only = true;
                }
                Err(DirectError::Connect(message)) => return Err(self.unavailable(message)),
                Err(DirectError::Request(error)) => {
                    return Err(ProxyError::UpstreamFailure {
                        cluster: self.id().to_owned(),
                        message: error.to_string(),
                    })
                }
            }
        }
        if let Some(direct_h1) = clients
            .direct_h1
            .as_ref()
            .filter(|_| h1_only && request.body().is_end_stream())
        {
            let (parts, _) = request.into_parts();
            let sent = deadline(
                self,
                long_running,
                direct_h1.send(Request::from_parts(parts, ())),
            );
            return match sent.await? {
                Ok(response) => Ok(response.map(ResponseBody::upstream_h1)),
                Err(DirectH1Error::Connect(message)) => Err(self.unavailable(message)),
                Err(DirectH1Error::Request(message)) => Err(ProxyError::UpstreamFailure {
                    cluster: self.id().to_owned(),
                    message,
                }),
            };
        }
        // Boxed: rare on a direct cluster, and every request's future
        // would be as large as this one.
        let sent = deadline(self, long_running, Box::pin(self.dispatch(false, request)));
        let response = sent.await??;
        self.answer(response)
    }

    /// The error of a request whose answer did not come within the
    /// cluster's request timeout.
    fn timed_out(&self) -> ProxyError {
        ProxyError::UpstreamTimeout {
            cluster: self.id().to_owned(),
            timeout_secs: self.request_timeout.as_secs(),
        }
    }

    /// An HTTP/1.1 answer to an ordinary request, to stream back; refused
    /// if it switches protocols: nobody asked to, nobody could take the
    /// connection. (HTTP/2 has no `101`.)
    fn answer(&self, response: Response<Incoming>) -> ProxyResult {
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return Err(ProxyError::UpstreamFailure {
                cluster: self.id().to_owned(),
                message: "switched protocols without being asked to".to_owned(),
            });
        }
        Ok(streamed(response))
    }

    /// Sends `request` the way this cluster is reached when no direct
    /// connection serves it: through a tunnel whose agent forwards
    /// requests, as a tunnel stream of its own; otherwise over this
    /// worker's pooled client for upgrades or the ordinary one. Returns the
    /// answer once its headers arrived. A failure to connect is
    /// [`unavailable`](Self::unavailable), and so is, through a tunnel, the
    /// answer the agent made itself because it could not connect to its
    /// API server (see [`crate::tunnel::UNREACHABLE_HEADER`]): either way
    /// the API server was not reached.
    pub(super) async fn dispatch(
        &self,
        upgrade: bool,
        request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // Through a tunnel, as a stream of its own: HTTP/2 wants no
        // hop-by-hop headers, and a caller's went in the sanitize layer
        // (Paddock's own requests carry none). Otherwise pooled.
        let sent = match self.tunnel.as_ref().filter(|_| !upgrade) {
            Some(tunnel) => tunnel.send(request).await,
            None => Sent::StreamsOnly(request),
        };
        let response = match sent {
            Sent::Answer(response) => response,
            Sent::Unreachable(message) => return Err(self.unavailable(message)),
            Sent::Failed(message) => {
                return Err(ProxyError::UpstreamFailure {
                    cluster: self.id().to_owned(),
                    message,
                })
            }
            Sent::StreamsOnly(request) => {
                let clients = self.clients();
                let client = if upgrade {
                    &clients.upgrade
                } else {
                    &clients.ordinary
                };
                client
                    .request(request)
                    .await
                    .map_err(|error| upstream_error(self, &error))?
            }
        };
        if self.through_tunnel() {
            if let Some(reason) = crate::tunnel::agent_unreachable(response.headers()) {
                return Err(self.unavailable(reason));
            }
        }
        Ok(response)
    }

    /// Sends `request` (its URI relative to the API server) with Paddock's
    /// own credential, over this worker's pooled client, and returns the
    /// answer once its headers arrived, within the cluster's request
    /// timeout: for Paddock's own work on a cluster (the health checker,
    /// the RBAC sync), never for a caller's request. Reaches the cluster as
    /// the proxy does, directly or through its agent's tunnel.
    pub(crate) async fn call(
        &self,
        mut request: Request<RequestBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.apply_credential(&mut request)?;
        let sent = deadline(self, false, self.dispatch(false, request));
        let result = sent.await.and_then(|sent| sent);
        self.reachability().observe_result(&result);
        result
    }

    /// `GET path_and_query` with Paddock's own credential (see
    /// [`call`](Self::call)), the body read up to `limit` bytes. The caller
    /// bounds the time the body takes.
    pub(crate) async fn read(
        &self,
        path_and_query: &str,
        limit: usize,
    ) -> Result<(StatusCode, bytes::Bytes), ProxyError> {
        use http_body_util::BodyExt;

        let relative: http::Uri = path_and_query.parse().map_err(|_| ProxyError::Internal {
            message: format!("invalid path {path_and_query:?}"),
        })?;
        let request = Request::get(relative)
            .header(header::ACCEPT, "application/json")
            .body(RequestBody::empty())
            .map_err(|e| ProxyError::Internal {
                message: e.to_string(),
            })?;
        let response = self.call(request).await?;
        let status = response.status();
        let body = http_body_util::Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|error| ProxyError::UpstreamFailure {
                cluster: self.id().to_owned(),
                message: format!("reading the answer: {error}"),
            })?
            .to_bytes();
        Ok((status, body))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::upstream::ClusterConfig;

    /// A cluster at `https://` on a server that accepts TCP connections
    /// and never writes a byte (a TLS handshake that never completes, as
    /// behind a load balancer whose backends are gone), with a connect
    /// timeout of a fifth of a second; and how many connections it took.
    async fn silent_tls_cluster() -> (Cluster, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let mut config = ClusterConfig::new("silent", format!("https://{address}"));
        config.connect_timeout = Duration::from_millis(200);
        let cluster = Cluster::new(&config, 0, crate::events::Events::default()).unwrap();
        (cluster, accepted)
    }

    /// `GET uri` addressed to `cluster`, with its credential.
    fn get(cluster: &Cluster, uri: &str) -> Request<RequestBody> {
        let mut request = Request::get(uri).body(RequestBody::empty()).unwrap();
        cluster.apply_credential(&mut request).unwrap();
        request
    }

    /// A request's answer when it could not connect: the cluster is
    /// unavailable, 503.
    fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, ProxyError>) {
        let error = result.expect_err(what);
        assert!(
            matches!(error, ProxyError::UpstreamUnavailable { .. }),
            "{what}: {error:?}"
        );
        assert_eq!(
            error.into_response().status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    /// Waits `sent` out, or fails the test if it hangs: without a bound on
    /// TLS, a watch waited for ever. The guard is many times the connect
    /// timeout, no measure of speed.
    async fn unhung<F: Future>(sent: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), sent)
            .await
            .expect("a request to a server that never completes TLS hung")
    }

    /// A server that takes TCP connections and never completes TLS: a
    /// watch (no request timeout) and an ordinary request waiting behind it
    /// for the worker's HTTP/2 connection both get the unavailable error
    /// within the connect timeout; so do requests with a body and upgrades
    /// (the pooled clients) and the direct HTTP/1.1 connections.
    #[tokio::test]
    async fn a_server_that_never_completes_tls_is_unavailable() {
        let (cluster, _) = silent_tls_cluster().await;
        let watch = cluster.exchange(get(&cluster, "/api/v1/pods?watch=true"), true);
        let ordinary = cluster.exchange(get(&cluster, "/api/v1/pods"), false);
        let mut with_body = Request::post("/api/v1/namespaces")
            .body(RequestBody::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"{}"),
            )))
            .unwrap();
        cluster.apply_credential(&mut with_body).unwrap();
        let with_body = cluster.exchange(with_body, false);
        let exec = cluster.send_upgrade(
            Request::get("/api/v1/namespaces/a/pods/b/exec")
                .body(RequestBody::empty())
                .unwrap(),
            header::HeaderValue::from_static("SPDY/3.1"),
        );
        let (watch, ordinary, with_body, exec) =
            unhung(async { tokio::join!(watch, ordinary, with_body, exec) }).await;
        assert_unavailable("the watch", watch);
        assert_unavailable("the ordinary request", ordinary);
        assert_unavailable("the request with a body", with_body);
        assert_unavailable("the upgrade", exec);

        let direct_h1 = cluster.clients().direct_h1.as_ref().unwrap();
        let sent = unhung(direct_h1.send(get(&cluster, "/api").map(|_| ()))).await;
        assert!(
            matches!(sent, Err(DirectH1Error::Connect(ref m)) if m.contains("timed out")),
            "{sent:?}"
        );
    }

    /// Requests that waited for the worker's HTTP/2 connection while it
    /// failed to connect share that failure: a server that never completes
    /// TLS costs them one connect timeout, not one each in turn.
    #[tokio::test]
    async fn requests_waiting_for_a_connection_share_its_failure() {
        let (cluster, accepted) = silent_tls_cluster().await;
        let watches = (0..8)
            .map(|_| cluster.exchange(get(&cluster, "/api/v1/pods?watch=true"), true))
            .collect::<Vec<_>>();
        for result in unhung(futures_util::future::join_all(watches)).await {
            assert_unavailable("a watch", result);
        }
        let accepted = accepted.load(Ordering::SeqCst);
        assert!(accepted <= 1, "{accepted} connections opened");
    }

    /// Every request's forwarding future is moved into a box, and moved
    /// again as the layers above wrap it: its size is copied per request.
    /// It was 5,016 bytes while the rare paths (upgrades, connecting, the
    /// pooled client) were part of it and moved-from requests and errors
    /// stayed alive across awaits; 2,136 once they were boxed or dropped.
    #[tokio::test]
    async fn forwarding_futures_stay_small() {
        let cluster = Cluster::new(
            &super::super::ClusterConfig::new("a", "https://127.0.0.1:1"),
            1,
            crate::events::Events::default(),
        )
        .unwrap();
        let request = || Request::get("/").body(RequestBody::empty()).unwrap();
        let forwarding = forward(request(), Arc::new(Shutdown::new()), Plugins::default());
        assert!(
            size_of_val(&forwarding) <= 2560,
            "{}",
            size_of_val(&forwarding)
        );
        let clients = cluster.clients();
        let direct = clients.direct.as_ref().unwrap();
        let sent = direct.send(Request::get("/").body(()).unwrap());
        assert!(size_of_val(&sent) <= 512, "{}", size_of_val(&sent));
        let sent = clients
            .direct_h1
            .as_ref()
            .unwrap()
            .send(Request::get("/").body(()).unwrap());
        assert!(size_of_val(&sent) <= 768, "{}", size_of_val(&sent));
    }
}
