//! The agent's side of each tunnel request: forwarded to the agent's own
//! API server, with the agent's credential. A `CONNECT` stream is served
//! as HTTP/1.1, whose upgrades (exec, attach, port-forward) are relayed
//! as bytes after the API server's `101`.
//!
//! A request the agent cannot forward is answered by the agent with a
//! Kubernetes Status, as Paddock answers one for a direct cluster: 503
//! when the API server could not be connected to (refused, TLS handshake,
//! connect timeout), 502 when it failed after that. Only the 503 carries
//! [`UNREACHABLE_HEADER`], with the reason, which tells Paddock the
//! cluster is unreachable rather than answering; the agent removes that
//! header from every response it relays from the API server, so the API
//! server cannot pass for the agent.

use std::{
    convert::Infallible,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::{
    body::{RequestBody, ResponseBody},
    error::ProxyError,
    hop_by_hop,
    status::Status,
    tunnel::UNREACHABLE_HEADER,
    upstream::Cluster,
};

pub(super) type Body = ResponseBody;

/// Serves one tunnel stream until Paddock closes it.
pub(super) async fn serve_stream(io: hyper::upgrade::Upgraded, upstream: Arc<Cluster>) {
    let service = hyper::service::service_fn(move |request| {
        let upstream = upstream.clone();
        async move { Ok::<_, Infallible>(forward(&upstream, request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(false)
        .serve_connection(PieceWrites(io), service)
        .with_upgrades()
        .await;
    if let Err(error) = served {
        tracing::debug!(%error, "tunnel stream ended");
    }
}

/// A tunnel stream whose writes are passed on in pieces of at most one
/// HTTP/2 frame. HTTP/1.1 flushes everything it gathered in one write (up
/// to 400 KiB of a fast response), and the stream copies each write into
/// an allocation of its own: past 128 KiB the allocator maps and unmaps
/// pages for every one (up to 7% of the agent's samples on a `logs -f`).
/// The stream sends no larger frames anyway.
struct PieceWrites(hyper::upgrade::Upgraded);

/// The largest write passed on.
const WRITE_PIECE: usize = crate::tunnel::MAX_FRAME_SIZE as usize;

impl hyper::rt::Read for PieceWrites {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PieceWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let piece = &buf[..buf.len().min(WRITE_PIECE)];
        Pin::new(&mut self.0).poll_write(cx, piece)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Forwards `request`, from a tunnel stream's HTTP/1.1 or the tunnel's
/// HTTP/2, to the API server and returns its answer (or the agent's own).
pub(super) async fn forward(upstream: &Cluster, mut request: Request<Incoming>) -> Response<Body> {
    let upgrade = request.headers().get(header::UPGRADE).cloned();
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut request));
    let (mut parts, body) = request.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    // The Host of the API server, set by the client from the URI.
    parts.headers.remove(header::HOST);
    let request = Request::from_parts(parts, RequestBody::new(body));
    let (Some(protocol), Some(client_upgrade)) = (upgrade, client_upgrade) else {
        return match upstream.send(request).await {
            Ok(mut response) => {
                response.headers_mut().remove(UNREACHABLE_HEADER);
                response
            }
            Err(error) => failure(&error),
        };
    };
    let mut response = match upstream.send_upgrade(request, protocol).await {
        Ok(response) => response,
        Err(error) => return failure(&error),
    };
    response.headers_mut().remove(UNREACHABLE_HEADER);
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut response);
        tokio::spawn(async move {
            match tokio::try_join!(client_upgrade, upstream_upgrade) {
                Ok((client, server)) => {
                    let mut client = TokioIo::new(client);
                    let mut server = TokioIo::new(server);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(error) => tracing::debug!(%error, "upgrade through the tunnel failed"),
            }
        });
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let (mut parts, body) = response.into_parts();
    hop_by_hop::strip(&mut parts.headers);
    Response::from_parts(parts, Body::upstream(body))
}

/// The Kubernetes Status for a request the agent could not forward
/// because of `error`, marked with [`UNREACHABLE_HEADER`] when the API
/// server could not be reached.
fn failure(error: &ProxyError) -> Response<Body> {
    let (code, reason) = error.code_and_reason();
    let unreachable = match error {
        ProxyError::UpstreamUnavailable { message, .. } => Some(message),
        _ => None,
    };
    let message = match unreachable {
        Some(why) => format!("paddock agent: the API server is unreachable: {why}"),
        None => format!("paddock agent: {error}"),
    };
    let body = serde_json::to_vec(&Status::failure(code, reason, message)).unwrap_or_default();
    let mut response = Response::new(Body::full(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(why) = unreachable {
        headers.insert(UNREACHABLE_HEADER, unreachable_reason(why));
    }
    response
}

/// Why the API server is unreachable, as a header value: what cannot be
/// in one (control characters, non-ASCII) becomes `?`.
fn unreachable_reason(why: &str) -> HeaderValue {
    let visible: String = format!("the agent cannot connect to its API server: {why}")
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect();
    HeaderValue::try_from(visible)
        .unwrap_or_else(|_| HeaderValue::from_static("the agent cannot connect to its API server"))
}
