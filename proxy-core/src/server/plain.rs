//! A small plain-HTTP/1.1 listener for Paddock's side doors (the metrics
//! listener, the sidecar's webhook): no TLS, no stack, a bounded number of
//! connections, a deadline for request headers.

use std::{convert::Infallible, future::Future, pin::pin, time::Duration};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, task::JoinSet};

/// Serves `handler` on `listener` until `shutdown` resolves, then closes
/// every connection. Past `max_connections`, new connections are closed at
/// once; a client gets `header_read_timeout` to send its headers. `name`
/// says whose listener it is in logs.
pub(crate) async fn serve<H, F>(
    listener: TcpListener,
    name: &'static str,
    max_connections: usize,
    header_read_timeout: Duration,
    handler: H,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
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
                    tracing::warn!(%error, listener = name, "cannot accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if connections.len() >= max_connections {
            continue;
        }
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| {
                let response = handler(request);
                async move { Ok::<_, Infallible>(response.await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%error, listener = name, "connection closed with an error");
            }
        });
    }
    connections.shutdown().await;
}
