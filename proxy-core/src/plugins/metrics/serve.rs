//! The metrics listener: HTTP/1.1, `GET /metrics` and nothing else. Plain
//! and open by default, for loopback; [`ListenerOptions`] adds TLS and a
//! bearer token for a listener other hosts can reach. At most
//! [`MAX_CONNECTIONS`] at once, each served for a minute at most.

use std::{convert::Infallible, future::Future, pin::pin, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::registry::Registry;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::{net::TcpListener, task::JoinSet, time::Instant};
use tokio_util::either::Either;

/// The content type of the OpenMetrics text format
/// (<https://prometheus.io/docs/specs/om/open_metrics_spec/>). Prometheus 3
/// refuses a scrape with a missing or unknown one.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapers served at once; more connections are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Time a scraper gets to send its request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a connection is served. Scrapers reconnect (Prometheus opens
/// another connection when its kept-alive one is closed); a client that
/// stops reading its replies, hyper's writes stuck, holds a place no
/// longer than this and [`CLOSE_GRACE`].
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Time, once the lifetime is over, for the reply being written to end
/// before the connection is dropped; an idle one closes at once.
const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// TLS and authentication of the metrics listener.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct ListenerOptions {
    /// Serve over TLS with this configuration (its ALPN is set to
    /// `http/1.1`: the listener speaks nothing else).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Answer only scrapes that send `Authorization: Bearer <token>`
    /// (Prometheus' `authorization.credentials_file`); 401 otherwise.
    pub bearer_token: Option<SecretString>,
}

impl std::fmt::Debug for ListenerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerOptions")
            .field("tls", &self.tls.is_some())
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Time a scraper gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `registry` at `GET /metrics` on `listener` until `shutdown`
/// resolves, then closes every connection: plain HTTP, no authentication
/// (see [`serve_with`]). Other paths answer 404, other methods 405. A
/// connection is closed after a minute (its reply in progress gets 10 s
/// more to be read); scrapers open another.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use proxy_core::plugins::metrics::{serve, Metrics};
///
/// let metrics = Metrics::new();
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9090").await?;
/// tokio::spawn(serve(listener, metrics.registry(), std::future::pending()));
/// # Ok(())
/// # }
/// ```
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    shutdown: impl Future<Output = ()>,
) {
    serve_with(listener, registry, ListenerOptions::default(), shutdown).await;
}

/// [`serve`], with TLS and a bearer token when `options` say so.
pub async fn serve_with(
    listener: TcpListener,
    registry: Arc<Registry>,
    options: ListenerOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = options.tls.map(|tls| {
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(tls))
    });
    let token = options.bearer_token.map(Arc::new);
    let mut shutdown = pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather
                    // than spin.
                    tracing::warn!(%error, "metrics listener cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if connections.len() >= MAX_CONNECTIONS {
            continue;
        }
        let (registry, token, acceptor) = (registry.clone(), token.clone(), acceptor.clone());
        connections.spawn(async move {
            let closes = Instant::now() + CONNECTION_LIFETIME;
            let service = service_fn(move |request| {
                let response = match authorized(token.as_deref(), &request) {
                    true => respond(&registry, &request),
                    false => unauthorized(),
                };
                async move { Ok::<_, Infallible>(response) }
            });
            let stream = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => Either::Left(stream),
                        _ => return,
                    }
                }
                None => Either::Right(stream),
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let mut connection = pin!(connection);
            let served = tokio::select! {
                served = connection.as_mut() => served,
                () = tokio::time::sleep_until(closes) => {
                    connection.as_mut().graceful_shutdown();
                    match tokio::time::timeout(CLOSE_GRACE, connection).await {
                        Ok(served) => served,
                        Err(_) => {
                            tracing::debug!("metrics connection dropped: its reply was not read");
                            return;
                        }
                    }
                }
            };
            if let Err(error) = served {
                tracing::debug!(%error, "metrics connection closed with an error");
            }
        });
    }
    connections.shutdown().await;
}

/// Whether `request` carries the bearer token, when one is required;
/// compared in constant time.
fn authorized<B>(token: Option<&SecretString>, request: &Request<B>) -> bool {
    let Some(token) = token else {
        return true;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    bool::from(presented.ct_eq(token.expose_secret().as_bytes()))
}

fn unauthorized() -> Response<Full<Bytes>> {
    let mut response = plain(StatusCode::UNAUTHORIZED, "unauthorized\n");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn respond(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(super::encode(registry))));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::{counter::Counter, family::Family};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A client that pipelines scrapes and never reads the replies: hyper's
    /// writes get stuck, and the connection is dropped once its lifetime
    /// and grace are over rather than holding its place forever.
    #[tokio::test]
    async fn a_client_that_never_reads_its_replies_is_dropped() {
        const PIPELINED: usize = 16;
        // About 900 kB a reply: a few fill the socket buffers.
        let padding = Family::<Vec<(String, String)>, Counter>::default();
        for i in 0..20_000 {
            padding
                .get_or_create(&vec![("series".to_owned(), i.to_string())])
                .inc();
        }
        let mut registry = Registry::default();
        registry.register("padding", "Bytes to fill the socket buffers", padding);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, Arc::new(registry), std::future::pending()));

        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // Small and fixed (not grown by the kernel) while nothing is read.
        socket.set_recv_buffer_size(4096).unwrap();
        let mut client = socket.connect(addr).await.unwrap();
        let requests = "GET /metrics HTTP/1.1\r\nHost: paddock\r\n\r\n".repeat(PIPELINED);
        client.write_all(requests.as_bytes()).await.unwrap();
        // Real time for the server to read the requests and get stuck
        // writing; then, the clock paused, the lifetime and the grace pass
        // as soon as it only waits.
        tokio::time::sleep(Duration::from_millis(500)).await;
        tokio::time::pause();
        tokio::time::sleep(CONNECTION_LIFETIME + CLOSE_GRACE + Duration::from_secs(1)).await;
        tokio::time::resume();

        // What was written before the connection was dropped, then its end.
        let mut received = Vec::new();
        let mut buffer = vec![0; 64 << 10];
        let ended = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(n @ 1..) = client.read(&mut buffer).await {
                received.extend_from_slice(&buffer[..n]);
            }
        })
        .await;
        assert!(ended.is_ok(), "the connection stayed open");
        let status = b"HTTP/1.1 200 OK";
        let replies = received
            .windows(status.len())
            .filter(|w| w == status)
            .count();
        assert!(
            replies < PIPELINED,
            "all {replies} replies were written: the connection was left to them"
        );
    }
}
