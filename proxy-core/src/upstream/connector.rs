//! What the pooled clients connect with: TCP (+ TLS) to the API server, or
//! a stream through the cluster's agent tunnel. Everything above the
//! connection (pooling, HTTP/1.1, upgrades) is the same for both. The
//! direct connections of the workers open theirs with [`Https`] too.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper::upgrade::Upgraded;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::{
    client::legacy::connect::{Connected, Connection, HttpConnector},
    rt::TokioIo,
};
use tokio::{io::AsyncBufRead, net::TcpStream};
use tower::{Service, ServiceExt};

use crate::{body::BoxError, tunnel::TunnelConnector, worker::deadline::deadline};

/// A connection to an API server: TCP, with TLS for `https://`.
pub(super) type HttpsStream = MaybeHttpsStream<TokioIo<TcpStream>>;

/// TCP and TLS to an API server, every connection set up within the
/// cluster's connect timeout. The TCP connector's own timeout covers TCP
/// alone: a server, or a load balancer in front of it, that accepted TCP
/// and never completed TLS held the request forever, and with it every
/// request of the worker waiting for its direct connection.
#[derive(Clone, Debug)]
pub(super) struct Https {
    connector: HttpsConnector<HttpConnector>,
    timeout: Duration,
}

impl Https {
    pub(super) fn new(connector: HttpsConnector<HttpConnector>, timeout: Duration) -> Self {
        Self { connector, timeout }
    }

    /// Connects to `server` and runs `handshake` on the connection (the
    /// HTTP/2 one, where the caller makes it), the whole within the
    /// connect timeout. An error says why, for
    /// [`Cluster::unavailable`](super::Cluster::unavailable).
    pub(super) async fn open<T, H, F>(&self, server: &Uri, handshake: H) -> Result<T, String>
    where
        H: FnOnce(HttpsStream) -> F,
        F: Future<Output = Result<T, String>>,
    {
        let setup = async {
            let io = self
                .connector
                .clone()
                .oneshot(server.clone())
                .await
                .map_err(|e| crate::error::error_chain(&*e))?;
            handshake(io).await
        };
        deadline(Some(self.timeout), setup)
            .await
            .unwrap_or_else(|_| Err(format!("connect timed out after {:?}", self.timeout)))
    }

    /// Connects to `server` (TCP and TLS) within the connect timeout.
    pub(super) async fn connect(&self, server: &Uri) -> Result<HttpsStream, String> {
        self.open(server, |io| async { Ok(io) }).await
    }
}

/// A connector to one cluster.
#[derive(Clone, Debug)]
pub(super) enum Connector {
    /// TCP and TLS to the API server.
    Direct(Https),
    /// A stream through the agent's tunnel.
    Tunnel(TunnelConnector),
}

/// A connection made by a [`Connector`].
pub(super) enum Io {
    Direct(Box<HttpsStream>),
    Tunnel(Upgraded),
}

impl Service<Uri> for Connector {
    type Response = Io;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Io, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, destination: Uri) -> Self::Future {
        match self.clone() {
            Connector::Direct(https) => Box::pin(async move {
                match https.connect(&destination).await {
                    Ok(io) => Ok(Io::Direct(Box::new(io))),
                    Err(message) => Err(message.into()),
                }
            }),
            Connector::Tunnel(tunnel) => {
                Box::pin(async move { tunnel.oneshot(destination).await.map(Io::Tunnel) })
            }
        }
    }
}

impl Connection for Io {
    fn connected(&self) -> Connected {
        match self {
            Io::Direct(io) => io.connected(),
            Io::Tunnel(_) => Connected::new(),
        }
    }
}

impl hyper::rt::Read for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Direct(io) => match &mut **io {
                MaybeHttpsStream::Https(tls) => {
                    let room = buf.remaining();
                    read_records(tls.inner_mut(), cx, room, |data| buf.put_slice(data))
                        .map_ok(|_| ())
                }
                MaybeHttpsStream::Http(tcp) => Pin::new(tcp).poll_read(cx, buf),
            },
            Io::Tunnel(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

/// Reads as many of the TLS records already received as fit in `room`
/// bytes, handing each piece to `put`; `Ok(0)` at the end of the stream.
/// A TLS stream's own read hands over at most one record (16 KiB), so a
/// fast response would travel on as 16 KiB pieces: each its own body
/// chunk, frame, write and wake-up of the next reader on the way.
pub(super) fn read_records<R: AsyncBufRead + Unpin>(
    tls: &mut R,
    cx: &mut Context<'_>,
    room: usize,
    mut put: impl FnMut(&[u8]),
) -> Poll<std::io::Result<usize>> {
    let mut read = 0;
    while read < room {
        let data = match Pin::new(&mut *tls).poll_fill_buf(cx) {
            Poll::Ready(Ok(data)) => data,
            // What was read is handed over first; the error (or the
            // wait) comes again on the next read.
            Poll::Ready(Err(_)) | Poll::Pending if read > 0 => break,
            Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
            Poll::Pending => return Poll::Pending,
        };
        if data.is_empty() {
            break;
        }
        let n = data.len().min(room - read);
        put(&data[..n]);
        Pin::new(&mut *tls).consume(n);
        read += n;
    }
    Poll::Ready(Ok(read))
}

impl hyper::rt::Write for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(&mut **io).poll_write(cx, buf),
            Io::Tunnel(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(&mut **io).poll_flush(cx),
            Io::Tunnel(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(&mut **io).poll_shutdown(cx),
            Io::Tunnel(io) => Pin::new(io).poll_shutdown(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Direct(io) => io.is_write_vectored(),
            Io::Tunnel(io) => io.is_write_vectored(),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Io::Direct(io) => Pin::new(&mut **io).poll_write_vectored(cx, bufs),
            Io::Tunnel(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }
}
