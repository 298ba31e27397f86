//! The metrics listener: plain HTTP/1.1, `GET /metrics` and nothing else.
//! Meant for loopback or a private network; it has no TLS and no
//! authentication of its own.

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The content type of the OpenMetrics text format
/// (<https://prometheus.io/docs/specs/om/open_metrics_spec/>). Prometheus 3
/// refuses a scrape with a missing or unknown one.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Scrapers served at once; more connections are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// Time a scraper gets to send its request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `registry` at `GET /metrics` on `listener` until `shutdown`
/// resolves, then closes every connection. Other paths answer 404, other
/// methods 405.
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
    let handler = move |request: Request<Incoming>| {
        let response = respond(&registry, &request);
        async move { response }
    };
    crate::server::plain::serve(
        listener,
        "metrics",
        MAX_CONNECTIONS,
        HEADER_READ_TIMEOUT,
        handler,
        shutdown,
    )
    .await;
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
