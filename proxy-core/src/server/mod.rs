//! Accepting connections: TCP, rustls, HTTP/1.1 or HTTP/2 by ALPN (hyper-util's
//! auto builder, upgrades included), one span per connection, each connection
//! served by one of the [`workers`], and graceful shutdown.

pub mod tls;
pub mod workers;

use std::{
    cell::RefCell,
    future::Future,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use futures_util::future::Either;

use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::{
    authn::client_cert::ClientCertificate, context::ConnectionInfo, shutdown::Shutdown,
    stack::ProxyService,
};

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How connections are served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time in-flight requests get to finish on shutdown.
    pub grace: Duration,
    /// Worker threads serving connections (see [`workers`]).
    pub workers: usize,
}

/// Serves `service` on `listener` until `signal` resolves, then shuts down
/// gracefully: stop accepting, end watches cleanly, let other requests
/// finish for up to `options.grace`, then close what is left.
///
/// Connections are accepted on the caller's runtime and served on
/// `options.workers` worker threads started here and stopped on return.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    service: ProxyService,
    shutdown: Shutdown,
    options: ServeOptions,
    signal: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let grace = options.grace;
    let workers = workers::Workers::start("paddock-worker", options.workers)?;
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(15))
        .max_concurrent_streams(1000)
        .max_header_list_size(1 << 20)
        .adaptive_window(true);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(signal);

    loop {
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
        let builder = builder.clone();
        let service = service.clone();
        let watcher = graceful.watcher();
        let span = tracing::debug_span!("connection", client.addr = %remote_addr);
        workers.spawn_connection(
            async move {
                let stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(error) => return tracing::debug!(%error, "cannot register the connection"),
                };
                let tls =
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(error)) => return tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => return tracing::debug!("TLS handshake timed out"),
                    };
                let client_cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(ClientCertificate::from_der)
                    .map(Arc::new);
                let info = Arc::new(ConnectionInfo {
                    remote_addr: Some(remote_addr),
                    client_cert,
                });
                // One stack per connection, called in place: cloning it per
                // request costs an allocation and an Arc count per layer.
                let service = RefCell::new(service);
                let hyper_service =
                    hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                        request.extensions_mut().insert(info.clone());
                        let mut service = service.borrow_mut();
                        // No layer applies backpressure, but tower wants the question asked.
                        let mut cx = Context::from_waker(Waker::noop());
                        match service.poll_ready(&mut cx) {
                            Poll::Ready(Ok(())) => Either::Left(service.call(request)),
                            _ => Either::Right(service.clone().oneshot(request)),
                        }
                    });
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(tls), hyper_service);
                if let Err(error) = watcher.watch(connection.into_owned()).await {
                    tracing::debug!(error = %error, "connection ended with an error");
                }
            }
            .instrument(span),
        );
    }

    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs(),
        "shutting down: draining connections"
    );
    shutdown.trigger(grace);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("grace period over, closing remaining connections"),
    }
    // Joining threads blocks: not on this runtime's threads.
    let _ = tokio::task::spawn_blocking(move || workers.stop()).await;
    Ok(())
}
