//! The sidecar's listener: plain HTTP/1.1 on loopback, as kube-apiserver's
//! token webhook and Rancher's `kube-api-auth` expect
//! (`http://127.0.0.1:6440/v1/authenticate`).
//!
//! | path | what |
//! |---|---|
//! | `POST /v1/authenticate` | TokenReview webhook ([`super::review`]) |
//! | `GET /healthz` | liveness |
//! | `GET /readyz` | replica revision and lag; 503 before the first state or past `--max-staleness` |
//! | `GET /metrics` | OpenMetrics: revision, lag, tokens, reviews by result |

use std::{future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use super::{review, Shared};

const MAX_CONNECTIONS: usize = 1024;
/// kube-api-auth's timeouts: read-header 10 s, whole request 30 s.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) {
    let handler = move |request: Request<Incoming>| {
        let shared = shared.clone();
        async move { respond(&shared, request).await }
    };
    crate::server::plain::serve(
        listener,
        "sidecar",
        MAX_CONNECTIONS,
        HEADER_READ_TIMEOUT,
        handler,
        shutdown,
    )
    .await;
}

async fn respond(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match (method, path.as_str()) {
        (Method::POST, "/v1/authenticate") => {
            let body = Limited::new(request.into_body(), review::MAX_BODY);
            let bytes = match tokio::time::timeout(BODY_TIMEOUT, body.collect()).await {
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(_)) => {
                    shared.metrics.review("malformed");
                    return status(
                        StatusCode::BAD_REQUEST,
                        "BadRequest",
                        &format!(
                            "the TokenReview is unreadable or larger than {} bytes",
                            review::MAX_BODY
                        ),
                    );
                }
                Err(_) => {
                    shared.metrics.review("malformed");
                    return status(
                        StatusCode::REQUEST_TIMEOUT,
                        "Timeout",
                        "the TokenReview body did not arrive in time",
                    );
                }
            };
            let (code, value) = shared.review(&bytes);
            json(code, &value)
        }
        (Method::GET | Method::HEAD, "/healthz") => plain(StatusCode::OK, "ok\n"),
        (Method::GET | Method::HEAD, "/readyz") => {
            let (ready, body) = shared.readiness();
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(code, &body)
        }
        (Method::GET | Method::HEAD, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(shared.metrics_text())));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::plugins::metrics::CONTENT_TYPE),
            );
            response
        }
        (_, "/v1/authenticate") => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "POST a TokenReview here",
        ),
        _ => status(StatusCode::NOT_FOUND, "NotFound", "not found"),
    }
}

pub(super) fn status(
    code: StatusCode,
    reason: &'static str,
    message: &str,
) -> Response<Full<Bytes>> {
    let value = serde_json::to_value(crate::status::Status::failure(code, reason, message))
        .unwrap_or_default();
    json(code, &value)
}

fn json(code: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn plain(code: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
