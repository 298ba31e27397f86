//! Accepting connections: TCP, rustls, HTTP/1.1 or HTTP/2 by ALPN (upgrades
//! included), one span per connection, each connection served by one of the
//! [`workers`], the [`ConnectionLimits`], and graceful shutdown.

mod limits;
pub(crate) mod plain;
pub mod tls;
mod when_woken;
pub mod workers;

pub use limits::{
    ConnectionLimits, DEFAULT_BODY_READ_TIMEOUT, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_IDLE_TIMEOUT,
};

use std::{
    cell::RefCell,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use futures_util::future::Either;
use when_woken::WhenWoken;

use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::{
    authn::client_cert::ClientCertificate, body::RequestBody, context::ConnectionInfo,
    piecewise::PiecewiseWrites, shutdown::Shutdown, stack::ProxyService, worker::deadline,
};
use limits::{Activity, Counted, TrackedBody};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection closed for being idle gets to say goodbye
/// (HTTP/2 GOAWAY and its ping) before it is dropped, at most: never
/// longer than the idle timeout itself.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most header bytes an HTTP/2 request may carry (HPACK's count: each
/// field's name and value plus 32). Generous for the largest bearer tokens
/// and cookies, and Envoy-sized rather than Go's 1 MiB: the headers are
/// read before anyone is authenticated, and 256 KiB holds at most about
/// 8,000 fields, far below the 24,576 a `HeaderMap` can take (HTTP/1.1
/// requests are held to hyper's 100 headers).
const MAX_HEADER_LIST: u32 = 256 * 1024;

/// How connections are served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time in-flight requests get to finish on shutdown.
    pub grace: Duration,
    /// Worker threads serving connections (see [`workers`]).
    pub workers: usize,
    /// Timeouts and the connection cap.
    pub limits: ConnectionLimits,
}

/// Serves `service` on `listener` until `signal` resolves, then shuts down
/// gracefully: stop accepting, end watches cleanly, let other requests
/// finish for up to `options.grace`, then close what is left.
///
/// Connections are accepted on the caller's runtime and served on
/// `options.workers` worker threads started here and stopped on return,
/// each held to `options.limits` (see [`ConnectionLimits`]).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    service: ProxyService,
    shutdown: Shutdown,
    options: ServeOptions,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = options.grace;
    let limits = options.limits;
    let max_connections = limits.effective_max_connections();
    tracing::debug!(max_connections, ?limits, "connection limits");
    let workers = workers::Workers::start("paddock-worker", options.workers)?;
    let acceptor = TlsAcceptor::from(tls);
    let mut http1 = http1::Builder::new();
    http1
        .timer(WorkerTimer)
        .header_read_timeout(limits.header_read_timeout);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(15))
        .max_concurrent_streams(1000)
        .max_header_list_size(MAX_HEADER_LIST)
        .adaptive_window(true);
    let builders = Arc::new((http1, http2));
    let connections = Arc::new(Semaphore::new(max_connections));
    let tracker = TaskTracker::new();
    let draining = shutdown.drain().clone();
    let mut limit_logged: Option<Instant> = None;
    tokio::pin!(signal);

    loop {
        // A place under the cap first: beyond it, clients wait in the backlog.
        let permit = match connections.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if limit_logged.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait until one closes"
                    );
                    limit_logged = Some(Instant::now());
                }
                tokio::select! {
                    permit = connections.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut signal => break,
                }
            }
        };
        let (stream, remote_addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let _ = stream.set_nodelay(true);
        // Re-registered with the chosen worker's reactor below.
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "cannot hand the connection to a worker");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let builders = builders.clone();
        let service = service.with_body::<RequestBody>();
        let draining = draining.clone();
        let limits = limits.clone();
        let span = tracing::debug_span!("connection", client.addr = %remote_addr);
        workers.spawn_connection(
            tracker.track_future(
                async move {
                    let stream = match tokio::net::TcpStream::from_std(stream) {
                        Ok(stream) => stream,
                        Err(error) => {
                            return tracing::debug!(%error, "cannot register the connection")
                        }
                    };
                    let mut tls = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                    let (_, session) = tls.get_ref();
                    let h2 = session.alpn_protocol() == Some(b"h2");
                    let client_cert = session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(ClientCertificate::from_der)
                        .map(Arc::new);
                    if !h2 {
                        // HTTP/1.1 may be upgraded to an agent's tunnel,
                        // whose writes are whole WebSocket frames.
                        tls.get_mut()
                            .1
                            .set_buffer_limit(Some(crate::tunnel::ws::TLS_BUFFER_LIMIT));
                    }
                    let info = Arc::new(ConnectionInfo {
                        remote_addr: Some(remote_addr),
                        client_cert,
                    });
                    let activity = Activity::new();
                    let body_read_timeout = limits.body_read_timeout;
                    let hyper_service = {
                        let activity = activity.clone();
                        // One stack per connection, called in place: cloning it per
                        // request costs an allocation and an Arc count per layer.
                        let service = RefCell::new(service);
                        hyper::service::service_fn(move |request: http::Request<Incoming>| {
                            let mut request = request.map(|body| {
                                RequestBody::new(body).with_read_timeout(body_read_timeout)
                            });
                            request.extensions_mut().insert(info.clone());
                            let busy = activity.busy();
                            let head = request.method() == http::Method::HEAD;
                            let mut service = service.borrow_mut();
                            // No layer applies backpressure, but tower wants the question asked.
                            let mut cx = Context::from_waker(Waker::noop());
                            let response = match service.poll_ready(&mut cx) {
                                Poll::Ready(Ok(())) => Either::Left(service.call(request)),
                                _ => Either::Right(service.clone().oneshot(request)),
                            };
                            async move {
                                let response = response.await?;
                                Ok::<_, Infallible>(TrackedBody::response(response, head, busy))
                            }
                        })
                    };
                    // ALPN decides, as in Go's net/http: no sniffing, which would
                    // wait for bytes no timeout covers.
                    let io = Counted::new(TokioIo::new(PiecewiseWrites::new(tls)), permit);
                    let (http1, http2) = &*builders;
                    let ended = if h2 {
                        let connection = http2.serve_connection(io, hyper_service);
                        drive(connection, &activity, &limits, &draining).await
                    } else {
                        let connection = http1.serve_connection(io, hyper_service).with_upgrades();
                        drive(connection, &activity, &limits, &draining).await
                    };
                    if let Err(error) = ended {
                        tracing::debug!(error = %error, "connection ended with an error");
                    }
                }
                .instrument(span),
            ),
        );
    }

    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining connections"
    );
    shutdown.trigger(grace);
    tracker.close();
    tokio::select! {
        () = tracker.wait() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over, closing remaining connections"),
    }
    // Joining threads blocks: not on this runtime's threads.
    let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    Ok(())
}

/// hyper's timer for HTTP/1.1 connections, whose only use is the header
/// read timeout: one per request, kept in the worker's swept list (see
/// [`crate::worker::deadline`]) rather than as a tokio timer each.
#[derive(Debug, Clone, Copy)]
struct WorkerTimer;

impl hyper::rt::Timer for WorkerTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(deadline::sleep_until(deadline.into()))
    }
}

impl hyper::rt::Sleep for deadline::Sleep {}

/// A hyper server connection that can be asked to close gracefully.
trait GracefulConnection: Future<Output = hyper::Result<()>> {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<I, S, B> GracefulConnection for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http1::UpgradeableConnection::graceful_shutdown(self);
    }
}

impl<I, S, B, E> GracefulConnection for http2::Connection<I, S, E>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: http_body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        http2::Connection::graceful_shutdown(self);
    }
}

/// Serves `connection` until it ends; closes it gracefully when the server
/// drains or when it has been idle (see [`Activity::idle`]) for the idle
/// timeout, a client that stopped reading a response included, and
/// drops it if an idle close does not finish within [`CLOSE_TIMEOUT`] or
/// the idle timeout, whichever is shorter (at once if it never carried a
/// request).
async fn drive(
    connection: impl GracefulConnection,
    activity: &Activity,
    limits: &ConnectionLimits,
    draining: &CancellationToken,
) -> hyper::Result<()> {
    enum Close {
        Drain,
        Idle,
    }
    tokio::pin!(connection);
    // Polled only when one of them fired, not on each of the connection's
    // wake-ups (see `when_woken`).
    let close = WhenWoken::new(async {
        tokio::select! {
            biased;
            () = draining.cancelled() => Close::Drain,
            () = activity.idle(limits.idle_timeout) => Close::Idle,
        }
    });
    let close = tokio::select! {
        biased;
        ended = connection.as_mut() => return ended,
        close = close => close,
    };
    match close {
        Close::Drain => {
            connection.as_mut().graceful_shutdown();
            return connection.await;
        }
        Close::Idle => {
            if !activity.served() {
                // Never a request (an HTTP/2 client may not even have sent
                // its preface, and hyper only says goodbye after it): drop.
                tracing::debug!("closing a connection that never sent a request");
                return Ok(());
            }
            tracing::debug!("closing an idle connection");
            connection.as_mut().graceful_shutdown();
        }
    }
    match tokio::time::timeout(CLOSE_TIMEOUT.min(limits.idle_timeout), connection).await {
        Ok(ended) => ended,
        Err(_) => {
            tracing::debug!("an idle connection did not close in time: dropped");
            Ok(())
        }
    }
}
