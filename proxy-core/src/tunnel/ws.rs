//! A WebSocket as a byte stream: what the tunnel's HTTP/2 connection runs
//! over. Writes are gathered and sent as one binary message per flush (or
//! per [`MESSAGE_SIZE`]); reads return the bytes of binary messages in
//! order. Pings are answered by tungstenite while the stream is read, and
//! HTTP/2 reads continuously, so they always are.
//!
//! Every message read is a sign of life: [`LastHeard`] keeps its time,
//! which is the tunnel's heartbeat (both ends send HTTP/2 PINGs every
//! [`super::PING_INTERVAL`], so an idle tunnel is heard from that often).

use std::{
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::{
    tungstenite::{protocol::WebSocketConfig, Message},
    WebSocketStream,
};

use crate::store::Timestamp;

/// Writes are gathered into messages of up to this size. HTTP/2 writes a
/// frame header and its payload separately; one message per flush instead
/// of one per write halves the messages (and their headers, masks and
/// allocations) and lets the far end read large payloads at once.
const MESSAGE_SIZE: usize = 64 * 1024;

/// The WebSocket settings of both ends.
pub(crate) fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        // Allocated per tunnel up front (tungstenite's default is 128 KiB)
        // and the most a read asks TLS for: the largest part of an idle
        // tunnel's memory, and small reads cost throughput.
        .read_buffer_size(32 * 1024)
        .max_message_size(Some(4 << 20))
        .max_frame_size(Some(4 << 20))
        // Each message goes to TLS as soon as it is sent: tungstenite's
        // own buffering would copy it once more, and a partial write of a
        // large buffer moves the rest down (`Vec::drain`) every time.
        .write_buffer_size(0)
        // A peer that stops reading cannot grow memory without limit.
        .max_write_buffer_size(8 << 20)
}

/// When a tunnel was last heard from.
#[derive(Debug)]
pub(crate) struct LastHeard(AtomicI64);

impl LastHeard {
    pub(crate) fn now() -> Self {
        Self(AtomicI64::new(Timestamp::now().0))
    }

    fn touch(&self) {
        self.0.store(Timestamp::now().0, Ordering::Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn set(&self, at: Timestamp) {
        self.0.store(at.0, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::Relaxed))
    }
}

/// A [`WebSocketStream`] read and written as bytes.
pub(crate) struct WsBytes<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message read.
    pending: Bytes,
    /// Written, not yet sent.
    out: BytesMut,
    heard: Arc<LastHeard>,
}

impl<S> WsBytes<S> {
    pub(crate) fn new(ws: WebSocketStream<S>, heard: Arc<LastHeard>) -> Self {
        Self {
            ws,
            pending: Bytes::new(),
            out: BytesMut::new(),
            heard,
        }
    }
}

fn to_io(error: tokio_tungstenite::tungstenite::Error) -> io::Error {
    use tokio_tungstenite::tungstenite::Error;
    match error {
        Error::Io(error) => error,
        Error::ConnectionClosed | Error::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsBytes<S> {
    /// Hands what was written to the WebSocket as one message.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.out.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Sink::<Message>::poll_ready(Pin::new(&mut self.ws), cx)).map_err(to_io)?;
        // The whole buffer goes: what an idle tunnel keeps between its
        // pings is then nothing, not the rest of an allocation.
        let message = Message::Binary(std::mem::take(&mut self.out).freeze());
        Pin::new(&mut self.ws).start_send(message).map_err(to_io)?;
        Poll::Ready(Ok(()))
    }

    /// Takes as much of `chunks` as fits in the message being gathered,
    /// sending it first when it is full.
    fn gather<'a>(
        &mut self,
        cx: &mut Context<'_>,
        chunks: impl Iterator<Item = &'a [u8]>,
    ) -> Poll<io::Result<usize>> {
        if self.out.len() >= MESSAGE_SIZE {
            ready!(self.poll_send(cx))?;
        }
        let room = MESSAGE_SIZE - self.out.len();
        let mut taken = 0;
        for chunk in chunks {
            let n = chunk.len().min(room - taken);
            self.out.extend_from_slice(&chunk[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        Poll::Ready(Ok(taken))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                buf.put_slice(&self.pending[..n]);
                self.pending.advance(n);
                if self.pending.is_empty() {
                    // Let go of the read buffer the message was cut from.
                    self.pending = Bytes::new();
                }
                return Poll::Ready(Ok(()));
            }
            let next = ready!(Pin::new(&mut self.ws).poll_next(cx));
            if matches!(next, Some(Ok(_))) {
                self.heard.touch();
            }
            match next {
                Some(Ok(Message::Binary(data))) => self.pending = data,
                // Control frames are handled by tungstenite; text is not ours.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text message on the tunnel",
                    )))
                }
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(error)) => return Poll::Ready(Err(to_io(error))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.gather(cx, std::iter::once(data))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.gather(cx, bufs.iter().map(|b| &**b))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Sink::<Message>::poll_flush(Pin::new(&mut self.ws), cx).map_err(to_io)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send(cx))?;
        Sink::<Message>::poll_close(Pin::new(&mut self.ws), cx).map_err(to_io)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::protocol::Role;

    use super::*;

    async fn pair() -> (
        WsBytes<tokio::io::DuplexStream>,
        WsBytes<tokio::io::DuplexStream>,
        Arc<LastHeard>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let client = WebSocketStream::from_raw_socket(a, Role::Client, Some(config())).await;
        let server = WebSocketStream::from_raw_socket(b, Role::Server, Some(config())).await;
        let heard = Arc::new(LastHeard(AtomicI64::new(0)));
        (
            WsBytes::new(client, Arc::new(LastHeard::now())),
            WsBytes::new(server, heard.clone()),
            heard,
        )
    }

    /// Bytes cross in order whatever the write sizes, vectored writes
    /// included; reading marks the tunnel as heard from.
    #[tokio::test]
    async fn bytes_cross_in_order_and_reads_are_heard() {
        let (mut client, mut server, heard) = pair().await;
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let (head, tail) = sent.split_at(9);
            let slices = [io::IoSlice::new(head), io::IoSlice::new(&tail[..1000])];
            let n = client.write_vectored(&slices).await.unwrap();
            assert_eq!(n, 1009);
            // Larger than a message: taken in parts.
            for chunk in sent[1009..].chunks(70_000) {
                client.write_all(chunk).await.unwrap();
            }
            client.flush().await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        server.read_to_end(&mut received).await.unwrap();
        writer.await.unwrap();
        assert_eq!(received.len(), data.len());
        assert!(received == data, "the bytes arrived changed");
        assert!(
            heard.get().0 > 0,
            "reading did not record the tunnel as heard"
        );
    }
}
