//! The baseline for the load benchmark: a bare hyper reverse proxy with
//! the same transport as Paddock (rustls in, ALPN h2/http1.1, connections
//! served by Paddock's thread-per-core workers, each with its own
//! hyper-util pooled client out, streaming bodies) and none of its work (no
//! authentication, no header handling, no policy).
//!
//! ```sh
//! cargo run --release -p paddock-benches --bin passthrough -- \
//!     --listen 127.0.0.1:9444 --cert tls.crt --key tls.key \
//!     --upstream https://127.0.0.1:6443 --upstream-ca ca.crt \
//!     [--direct-h2] [--http1-upstream] [--work-stealing] [--workers N]
//! ```
//!
//! `--direct-h2` sends requests without a body over one `h2` connection per
//! worker, driven directly like Paddock's own upstream transport does
//! (`proxy-core/src/upstream/direct_h2.rs`), instead of hyper-util's client.
//!
//! Two diagnostics show where a gap to nginx comes from:
//! - `--http1-upstream` offers only HTTP/1.1 upstream (a keepalive pool,
//!   like nginx) instead of letting ALPN pick HTTP/2 (like Paddock);
//! - `--work-stealing` serves on one multi-threaded tokio runtime with a
//!   single shared client (Paddock's transport before the workers).

use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Response, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use proxy_core::body::ResponseBody;
use proxy_core::server::workers::{self, Workers};
use std::cell::RefCell;
use tower::ServiceExt;

thread_local! {
    /// This worker's direct HTTP/2 connection (`--direct-h2`), numbered:
    /// a connection that ends forgets itself, never one made after it.
    static DIRECT: RefCell<Option<(u64, h2::client::SendRequest<Bytes>)>> = const { RefCell::new(None) };
    static CONNECTIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Sends a request without a body over this worker's `h2` connection,
/// connecting first when there is none or it has ended.
async fn send_direct(
    connector: Connector,
    upstream: &http::Uri,
    request: Request<()>,
) -> anyhow::Result<Response<h2::RecvStream>> {
    let sender = match DIRECT.with(|d| d.borrow().as_ref().map(|(_, s)| s.clone())) {
        Some(sender) => sender,
        None => {
            let io = connector
                .oneshot(upstream.clone())
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(256 * 1024)
                .initial_connection_window_size((1 << 31) - 1)
                .handshake::<_, Bytes>(TokioIo::new(io))
                .await?;
            // Requests that found no connection at the same time each
            // make one; the last stays. Before the numbers, an earlier
            // one ending cleared the one in use, and under valgrind
            // every request paid a TLS handshake.
            let id = CONNECTIONS.with(|n| n.replace(n.get() + 1));
            tokio::spawn(async move {
                let _ = connection.await;
                DIRECT.with(|d| {
                    let mut direct = d.borrow_mut();
                    if direct.as_ref().is_some_and(|(current, _)| *current == id) {
                        *direct = None;
                    }
                });
            });
            DIRECT.with(|d| *d.borrow_mut() = Some((id, sender.clone())));
            sender
        }
    };
    let mut ready = sender.ready().await?;
    let (response, _) = ready.send_request(request, true)?;
    Ok(response.await?)
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| panic!("missing {name}"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let count = args
        .iter()
        .position(|a| a == "--workers")
        .map(|_| arg(&args, "--workers").parse())
        .transpose()?
        .unwrap_or_else(workers::default_count);
    let workers = (!args.iter().any(|a| a == "--work-stealing"))
        .then(|| Workers::start("passthrough-worker", count))
        .transpose()?;
    let cert = std::fs::read(arg(&args, "--cert"))?;
    let key = std::fs::read(arg(&args, "--key"))?;
    let upstream: http::Uri = arg(&args, "--upstream").parse()?;
    let upstream_ca = std::fs::read(arg(&args, "--upstream-ca"))?;

    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            rustls_pemfile::certs(&mut cert.as_slice()).collect::<Result<_, _>>()?,
            rustls_pemfile::private_key(&mut key.as_slice())?.expect("a key"),
        )?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut upstream_ca.as_slice()) {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if args.iter().any(|a| a == "--http1-upstream") {
        builder.wrap_connector(http)
    } else {
        builder.enable_http2().wrap_connector(http)
    };
    // One client per worker, so each worker's upstream connections run on
    // its own runtime; the last one for the work-stealing runtime.
    let clients: Arc<Vec<Client<_, Incoming>>> = Arc::new(
        (0..=workers.as_ref().map_or(0, Workers::len))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .http2_adaptive_window(true)
                    .build(connector.clone())
            })
            .collect(),
    );
    let direct_h2 = args.iter().any(|a| a == "--direct-h2");

    let listener = tokio::net::TcpListener::bind(arg(&args, "--listen")).await?;
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    eprintln!("passthrough listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            // Exit normally on Ctrl-C, so profilers write their reports.
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let stream = stream.into_std()?;
        let (acceptor, builder, clients, upstream, connector) = (
            acceptor.clone(),
            builder.clone(),
            clients.clone(),
            upstream.clone(),
            connector.clone(),
        );
        let connection = async move {
            let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
                return;
            };
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let shared = clients.len() - 1;
                let client = clients[workers::current().unwrap_or(shared)].clone();
                let (upstream, connector) = (upstream.clone(), connector.clone());
                async move {
                    let (mut parts, body) = request.into_parts();
                    let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
                    parts.uri = format!("{upstream}{}", path.trim_start_matches('/'))
                        .parse()
                        .expect("uri");
                    parts.version = Version::HTTP_11;
                    parts.headers.remove(http::header::HOST);
                    let response = if direct_h2 && body.is_end_stream() {
                        send_direct(connector, &upstream, Request::from_parts(parts, ()))
                            .await
                            .map(|r| r.map(ResponseBody::upstream_h2))
                            .map_err(|_| ())
                    } else {
                        client
                            .request(Request::from_parts(parts, body))
                            .await
                            .map(|r| r.map(ResponseBody::upstream))
                            .map_err(|_| ())
                    };
                    Ok::<_, Infallible>(response.unwrap_or_else(|()| {
                        Response::builder()
                            .status(502)
                            .body(ResponseBody::empty())
                            .expect("response")
                    }))
                }
            });
            let _ = builder.serve_connection(TokioIo::new(tls), service).await;
        };
        match &workers {
            Some(workers) => workers.spawn_connection(connection),
            None => drop(tokio::spawn(connection)),
        }
    }
}
