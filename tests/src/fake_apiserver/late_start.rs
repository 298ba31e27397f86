//! A connection whose server is heard from late, as one far away is: its
//! first bytes after the TLS handshake wait a set time, so the client has
//! sent a burst of requests before the server's HTTP/2 SETTINGS arrive.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{ready, Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

/// Delays the first write on `S`; reads are not delayed.
pub(super) struct LateStart<S> {
    inner: S,
    start: Option<Pin<Box<Sleep>>>,
}

impl<S> LateStart<S> {
    pub(super) fn new(inner: S, delay: Duration) -> Self {
        let start = (!delay.is_zero()).then(|| Box::pin(tokio::time::sleep(delay)));
        Self { inner, start }
    }

    fn poll_started(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(start) = &mut self.start {
            ready!(start.as_mut().poll(cx));
            self.start = None;
        }
        Poll::Ready(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LateStart<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LateStart<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_started(cx));
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_started(cx));
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
