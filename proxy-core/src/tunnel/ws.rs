//! A WebSocket (RFC 6455) as a byte stream: what the tunnel's HTTP/2
//! connection runs over, after the upgrade (the agent's
//! [`crate::agent`] dial, Paddock's `/paddock/v1/connect`).
//!
//! The framing is done here rather than by a WebSocket library because
//! the tunnel needs none of a library's message handling and all of its
//! buffers would be per tunnel: reads go straight from TLS into the
//! caller's (HTTP/2's) buffer and are unmasked in place, so an idle tunnel
//! holds no read buffer and a busy one copies nothing here. Writes are
//! gathered into one binary frame per flush (or per [`MESSAGE_SIZE`]),
//! masked in place by the client, and the buffer is let go once the frame
//! is written. Pings are answered; a close frame ends the stream.
//!
//! Every frame read is a sign of life: [`LastHeard`] keeps its time, which
//! is the tunnel's heartbeat (both ends send HTTP/2 PINGs every
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

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{piecewise::extend_piecewise, store::Timestamp};

/// Writes are gathered into frames of up to this size. HTTP/2 writes a
/// frame header and its payload separately; one WebSocket frame per flush
/// instead of one per write halves the frames (and their headers and
/// masks) and lets the far end read large payloads at once. HTTP/2 flushes
/// after each large DATA frame: a flush holds one of
/// [`super::MAX_FRAME_SIZE`] and its 9-byte header, behind the small
/// frames buffered before it (16 KiB of them as a rule), so this much does
/// not split it. At 64 KiB every full DATA frame was split: its last 9
/// bytes went out as a frame, a TLS record and a write of their own. The
/// frame's buffer stays under 128 KiB, past which the allocator maps and
/// unmaps pages for each one.
const MESSAGE_SIZE: usize = super::MAX_FRAME_SIZE as usize + 9 + 16 * 1024;
/// What the TLS connection under the WebSocket must accept in one write:
/// a whole gathered frame. Past rustls' default of 64 KiB, the tail of
/// each full frame went out as a TLS record, a write and a wake-up of the
/// reader of its own.
pub(crate) const TLS_BUFFER_LIMIT: usize = 2 * (HEADER_ROOM + MESSAGE_SIZE);
/// Room kept in front of a gathered payload for the largest frame header
/// (2 bytes, an 8-byte length, a 4-byte mask), so header and payload go
/// out as one write.
const HEADER_ROOM: usize = 14;
/// A data read asks for at most this much: the plaintext of one TLS
/// record, the most TLS hands over per read. Safe code cannot pass the
/// caller's buffer down uninitialized, so what is asked for is zeroed
/// first; asking for all of HTTP/2's 64 KiB zeroed four times what came.
const READ_SIZE: usize = 16 * 1024;
/// Control frames (pongs, close) waiting to be written are capped: a peer
/// that pings without reading our answers gets no more of them.
const MAX_CONTROL: usize = 4 * 1024;

const OPCODE_CONTINUATION: u8 = 0x0;
const OPCODE_TEXT: u8 = 0x1;
const OPCODE_BINARY: u8 = 0x2;
const OPCODE_CLOSE: u8 = 0x8;
const OPCODE_PING: u8 = 0x9;
const OPCODE_PONG: u8 = 0xA;
const FIN: u8 = 0x80;
const MASKED: u8 = 0x80;

/// Which end of the WebSocket this is: the client masks what it sends
/// (RFC 6455 §5.3), the server does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The agent, which dialed.
    Client,
    /// Paddock.
    Server,
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

/// Where reading is within the frames.
enum Reading {
    /// A frame header: `have` of its bytes read.
    Header {
        bytes: [u8; HEADER_ROOM],
        have: usize,
    },
    /// The payload of a data frame: `left` bytes of it still to come.
    Data {
        left: u64,
        mask: Option<[u8; 4]>,
        offset: usize,
    },
    /// The payload of a control frame (at most 125 bytes), read whole.
    Control {
        opcode: u8,
        payload: Vec<u8>,
        have: usize,
        mask: Option<[u8; 4]>,
    },
    /// A close frame was read: end of stream.
    Closed,
}

impl Reading {
    fn header() -> Self {
        Reading::Header {
            bytes: [0; HEADER_ROOM],
            have: 0,
        }
    }
}

/// A WebSocket connection read and written as bytes.
pub(crate) struct WsBytes<S> {
    io: S,
    role: Role,
    heard: Arc<LastHeard>,
    reading: Reading,
    /// The frame being gathered: [`HEADER_ROOM`] bytes, then the payload.
    /// Empty (no allocation) between frames.
    out: Vec<u8>,
    /// Once the gathered frame is sealed (header written, payload masked):
    /// where the bytes still to write start.
    sending: Option<usize>,
    /// Control frames to write (between data frames), and how much of
    /// them is written.
    control: Vec<u8>,
    control_sent: usize,
    /// A close frame is to follow what was gathered before it (RFC 6455
    /// §5.5.1): we shut down, or the peer closed. Nothing more is taken.
    close_wanted: bool,
    /// The close frame was queued, after everything else.
    close_queued: bool,
}

impl<S> WsBytes<S> {
    /// `io` after the WebSocket handshake; `heard` is touched by every
    /// frame read.
    pub(crate) fn new(io: S, role: Role, heard: Arc<LastHeard>) -> Self {
        Self {
            io,
            role,
            heard,
            reading: Reading::header(),
            out: Vec::new(),
            sending: None,
            control: Vec::new(),
            control_sent: 0,
            close_wanted: false,
            close_queued: false,
        }
    }

    /// A random mask for a frame we send, when we are the client.
    fn new_mask(&self) -> Option<[u8; 4]> {
        (self.role == Role::Client).then(rand::random::<[u8; 4]>)
    }

    /// Queues a control frame (`payload` at most 125 bytes).
    fn queue_control(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.new_mask();
        self.control.push(FIN | opcode);
        self.control
            .push(payload.len() as u8 | if mask.is_some() { MASKED } else { 0 });
        if let Some(mask) = mask {
            self.control.extend_from_slice(&mask);
        }
        let start = self.control.len();
        self.control.extend_from_slice(payload);
        if let Some(mask) = mask {
            apply_mask(&mut self.control[start..], mask, 0);
        }
    }

    /// Seals the gathered payload into a binary frame: header in front,
    /// payload masked (client).
    fn seal(&mut self) {
        let len = self.out.len() - HEADER_ROOM;
        let mask = self.new_mask();
        let mask_bit = if mask.is_some() { MASKED } else { 0 };
        let mut header = [0u8; HEADER_ROOM];
        header[0] = FIN | OPCODE_BINARY;
        let mut n = 2;
        if len < 126 {
            header[1] = mask_bit | len as u8;
        } else if let Ok(short) = u16::try_from(len) {
            header[1] = mask_bit | 126;
            header[2..4].copy_from_slice(&short.to_be_bytes());
            n = 4;
        } else {
            header[1] = mask_bit | 127;
            header[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            n = 10;
        }
        if let Some(mask) = mask {
            header[n..n + 4].copy_from_slice(&mask);
            n += 4;
            apply_mask(&mut self.out[HEADER_ROOM..], mask, 0);
        }
        let start = HEADER_ROOM - n;
        self.out[start..HEADER_ROOM].copy_from_slice(&header[..n]);
        self.sending = Some(start);
    }

    /// Starts reading the frame whose complete header is `header`.
    fn start_frame(&mut self, header: &[u8]) -> io::Result<()> {
        let (first, second) = (header[0], header[1]);
        if first & 0x70 != 0 {
            return Err(invalid("WebSocket frame with reserved bits set"));
        }
        let (len, rest) = match second & 0x7F {
            126 => (
                u64::from(u16::from_be_bytes([header[2], header[3]])),
                &header[4..],
            ),
            127 => {
                let mut long = [0u8; 8];
                long.copy_from_slice(&header[2..10]);
                (u64::from_be_bytes(long), &header[10..])
            }
            short => (u64::from(short), &header[2..]),
        };
        let mask = (second & MASKED != 0).then(|| [rest[0], rest[1], rest[2], rest[3]]);
        // RFC 6455 §5.1: clients mask every frame, servers none.
        if mask.is_some() != (self.role == Role::Server) {
            return Err(invalid(
                "WebSocket frame masked the wrong way for its sender",
            ));
        }
        self.heard.touch();
        let opcode = first & 0x0F;
        self.reading = match opcode {
            OPCODE_BINARY | OPCODE_CONTINUATION => Reading::Data {
                left: len,
                mask,
                offset: 0,
            },
            OPCODE_CLOSE | OPCODE_PING | OPCODE_PONG => {
                if len > 125 || first & FIN == 0 {
                    return Err(invalid("malformed WebSocket control frame"));
                }
                Reading::Control {
                    opcode,
                    payload: vec![0; len as usize],
                    have: 0,
                    mask,
                }
            }
            OPCODE_TEXT => return Err(invalid("text message on the tunnel")),
            _ => return Err(invalid("unknown WebSocket opcode")),
        };
        Ok(())
    }
}

/// XORs `data` with `mask`, `data` starting `offset` bytes into the
/// payload. Blocks of [`MASK_BLOCK`] bytes against the key repeated: a loop
/// of fixed length over plain bytes, which the compiler turns into vector
/// instructions whatever it inlines (a word at a time through
/// `copy_from_slice` cost a call per four bytes in some builds).
fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    let mut wide = [0u8; MASK_BLOCK];
    for (i, byte) in wide.iter_mut().enumerate() {
        *byte = key[i % 4];
    }
    let mut blocks = data.chunks_exact_mut(MASK_BLOCK);
    for block in &mut blocks {
        for (byte, k) in block.iter_mut().zip(wide) {
            *byte ^= k;
        }
    }
    for (byte, k) in blocks.into_remainder().iter_mut().zip(wide) {
        *byte ^= k;
    }
}

/// Bytes masked per step (a multiple of the key's 4).
const MASK_BLOCK: usize = 64;

fn invalid(message: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The length of the header starting with `first_two`.
fn header_len(first_two: [u8; 2]) -> usize {
    let extended = match first_two[1] & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mask = if first_two[1] & MASKED != 0 { 4 } else { 0 };
    2 + extended + mask
}

impl<S: AsyncWrite + Unpin> WsBytes<S> {
    /// Writes `bytes[*at..]`, advancing `at`.
    fn poll_write_all(
        io: &mut S,
        cx: &mut Context<'_>,
        bytes: &[u8],
        at: &mut usize,
    ) -> Poll<io::Result<()>> {
        while *at < bytes.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &bytes[*at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *at += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Writes the queued control frames (only ever between data frames).
    fn poll_control(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(Self::poll_write_all(
            &mut self.io,
            cx,
            &self.control,
            &mut self.control_sent
        ))?;
        self.control = Vec::new();
        self.control_sent = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes everything pending: the frame being written, the control
    /// frames, then what was gathered as one frame, then the close if one
    /// is wanted.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if let Some(at) = &mut self.sending {
                ready!(Self::poll_write_all(&mut self.io, cx, &self.out, at))?;
                self.sending = None;
                // What an idle tunnel keeps between its pings is then
                // nothing, not the last frame's allocation.
                self.out = Vec::new();
            }
            if self.control_sent < self.control.len() {
                ready!(self.poll_control(cx))?;
            }
            if self.out.len() > HEADER_ROOM {
                self.seal();
            } else if self.close_wanted && !self.close_queued {
                // Pongs may pass gathered data; the close may not.
                self.close_queued = true;
                self.queue_control(OPCODE_CLOSE, &[]);
            } else {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Takes as much of `chunks` as fits in the frame being gathered,
    /// sending it first when it is full.
    fn gather<'a>(
        &mut self,
        cx: &mut Context<'_>,
        chunks: impl Iterator<Item = &'a [u8]> + Clone,
    ) -> Poll<io::Result<usize>> {
        if self.close_wanted {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if self.sending.is_some() || self.out.len() >= HEADER_ROOM + MESSAGE_SIZE {
            ready!(self.poll_send(cx))?;
        }
        let wanted: usize = chunks.clone().map(<[u8]>::len).sum();
        if wanted == 0 {
            return Poll::Ready(Ok(0));
        }
        if self.out.is_empty() {
            // The whole frame's room at once: grown write by write, a
            // frame reallocated (and copied) several times.
            self.out.reserve_exact(HEADER_ROOM + MESSAGE_SIZE);
            self.out.resize(HEADER_ROOM, 0);
        }
        let room = HEADER_ROOM + MESSAGE_SIZE - self.out.len();
        let mut taken = 0;
        for chunk in chunks {
            let n = chunk.len().min(room - taken);
            extend_piecewise(&mut self.out, &chunk[..n]);
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
        let this = &mut *self;
        loop {
            match &mut this.reading {
                Reading::Header { bytes, have } => {
                    let want = if *have < 2 {
                        2
                    } else {
                        header_len([bytes[0], bytes[1]])
                    };
                    if *have == want {
                        let header = *bytes;
                        this.start_frame(&header[..want])?;
                        continue;
                    }
                    let mut into = ReadBuf::new(&mut bytes[*have..want]);
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut into))?;
                    let n = into.filled().len();
                    if n == 0 {
                        // Between frames, the connection's end is the
                        // stream's; inside one, it was cut.
                        return Poll::Ready(if *have == 0 {
                            Ok(())
                        } else {
                            Err(io::ErrorKind::UnexpectedEof.into())
                        });
                    }
                    *have += n;
                }
                Reading::Data { left, mask, offset } => {
                    if *left == 0 {
                        this.reading = Reading::header();
                        continue;
                    }
                    if buf.remaining() == 0 {
                        return Poll::Ready(Ok(()));
                    }
                    let max = usize::try_from(*left)
                        .unwrap_or(usize::MAX)
                        .min(buf.remaining())
                        .min(READ_SIZE);
                    let into = buf.initialize_unfilled_to(max);
                    let n = {
                        let mut read = ReadBuf::new(&mut *into);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut read))?;
                        read.filled().len()
                    };
                    if n == 0 {
                        return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                    }
                    if let Some(mask) = mask {
                        apply_mask(&mut into[..n], *mask, *offset);
                    }
                    *offset += n;
                    *left -= n as u64;
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Reading::Control {
                    opcode,
                    payload,
                    have,
                    mask,
                } => {
                    if *have < payload.len() {
                        let mut into = ReadBuf::new(&mut payload[*have..]);
                        ready!(Pin::new(&mut this.io).poll_read(cx, &mut into))?;
                        let n = into.filled().len();
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
                        }
                        *have += n;
                        continue;
                    }
                    if let Some(mask) = mask {
                        apply_mask(payload, *mask, 0);
                    }
                    let (opcode, payload) = (*opcode, std::mem::take(payload));
                    this.reading = Reading::header();
                    match opcode {
                        OPCODE_PING if this.control.len() < MAX_CONTROL => {
                            this.queue_control(OPCODE_PONG, &payload);
                            // Sent now if the connection takes it, else
                            // with the next write (HTTP/2 pings write
                            // every few seconds).
                            if this.sending.is_none() {
                                let _ = this.poll_control(cx);
                            }
                        }
                        OPCODE_CLOSE => {
                            this.reading = Reading::Closed;
                            // Answered after what was gathered, now if
                            // the connection takes it, else at the next
                            // flush or shutdown.
                            this.close_wanted = true;
                            let _ = this.poll_send(cx);
                            return Poll::Ready(Ok(()));
                        }
                        _ => {}
                    }
                }
                Reading::Closed => return Poll::Ready(Ok(())),
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
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.close_wanted = true;
        ready!(self.poll_send(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::{
        tungstenite::{
            protocol::{
                frame::{
                    coding::{Data, OpCode},
                    Frame,
                },
                Role as Peer,
            },
            Message,
        },
        WebSocketStream,
    };

    use super::*;

    fn unheard() -> Arc<LastHeard> {
        Arc::new(LastHeard(AtomicI64::new(0)))
    }

    /// Bytes cross in order whatever the write sizes, vectored writes
    /// included; reading marks the tunnel as heard from.
    #[tokio::test]
    async fn bytes_cross_in_order_and_reads_are_heard() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut client = WsBytes::new(a, Role::Client, unheard());
        let heard = unheard();
        let mut server = WsBytes::new(b, Role::Server, heard.clone());
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            let (head, tail) = sent.split_at(9);
            let slices = [io::IoSlice::new(head), io::IoSlice::new(&tail[..1000])];
            let n = client.write_vectored(&slices).await.unwrap();
            assert_eq!(n, 1009);
            // Larger than a frame: taken in parts.
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

    /// What the client end writes is a WebSocket as a library reads it:
    /// masked binary frames (a server refuses unmasked ones) with each
    /// length encoding, then a close.
    #[tokio::test]
    async fn a_websocket_library_reads_what_the_client_end_writes() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut ours = WsBytes::new(a, Role::Client, unheard());
        let mut theirs = WebSocketStream::from_raw_socket(b, Peer::Server, None).await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            // 7-bit, 16-bit and 64-bit payload lengths.
            ours.write_all(&sent[..5]).await.unwrap();
            ours.flush().await.unwrap();
            ours.write_all(&sent[5..305]).await.unwrap();
            ours.flush().await.unwrap();
            ours.write_all(&sent[305..]).await.unwrap();
            ours.shutdown().await.unwrap();
        });
        let mut received = Vec::new();
        let mut frames = 0;
        while let Some(message) = theirs.next().await {
            match message.unwrap() {
                Message::Binary(bytes) => {
                    received.extend_from_slice(&bytes);
                    frames += 1;
                }
                Message::Close(_) => break,
                other => panic!("unexpected message {other:?}"),
            }
        }
        writer.await.unwrap();
        let first_difference = received.iter().zip(&data).position(|(a, b)| a != b);
        assert!(
            received == data,
            "the bytes arrived changed: {} of {} bytes, first difference at {first_difference:?}",
            received.len(),
            data.len()
        );
        // Two small frames, then the rest in frames of at most MESSAGE_SIZE.
        let expected = 2 + (data.len() - 305).div_ceil(MESSAGE_SIZE);
        assert!(frames >= expected, "{frames} frames, {expected} expected");
    }

    /// What a library writes, the server end reads: binary messages,
    /// fragmented ones included; pings are answered with their payload;
    /// a close ends the stream and is answered.
    #[tokio::test]
    async fn the_server_end_reads_a_websocket_library_and_answers_its_pings() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut theirs = WebSocketStream::from_raw_socket(a, Peer::Client, None).await;
        let heard = unheard();
        let mut ours = WsBytes::new(b, Role::Server, heard.clone());
        theirs
            .send(Message::Binary(vec![1, 2, 3].into()))
            .await
            .unwrap();
        theirs
            .send(Message::Ping(b"are you there".to_vec().into()))
            .await
            .unwrap();
        let big: Vec<u8> = (0..70_000u32).map(|i| (i % 249) as u8).collect();
        theirs
            .send(Message::Frame(Frame::message(
                big.clone(),
                OpCode::Data(Data::Binary),
                false,
            )))
            .await
            .unwrap();
        theirs
            .send(Message::Frame(Frame::message(
                vec![4, 5],
                OpCode::Data(Data::Continue),
                true,
            )))
            .await
            .unwrap();
        theirs.send(Message::Close(None)).await.unwrap();
        let mut received = Vec::new();
        ours.read_to_end(&mut received).await.unwrap();
        let mut expected = vec![1, 2, 3];
        expected.extend_from_slice(&big);
        expected.extend_from_slice(&[4, 5]);
        assert!(received == expected, "the bytes arrived changed");
        assert!(heard.get().0 > 0);
        ours.shutdown().await.unwrap();
        let mut answers = Vec::new();
        while let Some(Ok(message)) = theirs.next().await {
            answers.push(message);
        }
        assert!(
            answers.contains(&Message::Pong(b"are you there".to_vec().into())),
            "the ping was not answered: {answers:?}"
        );
        assert!(
            answers.iter().any(|m| matches!(m, Message::Close(_))),
            "the close was not answered: {answers:?}"
        );
    }

    /// Data gathered before the peer's close reaches the peer before our
    /// answering close (RFC 6455 §5.5.1), and nothing is taken after it.
    #[tokio::test]
    async fn data_gathered_before_a_close_goes_out_before_the_answer() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut theirs = WebSocketStream::from_raw_socket(a, Peer::Client, None).await;
        let mut ours = WsBytes::new(b, Role::Server, unheard());
        // Gathered, not flushed.
        ours.write_all(b"last words").await.unwrap();
        theirs.send(Message::Close(None)).await.unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            ours.read(&mut buf).await.unwrap(),
            0,
            "the close ends the stream"
        );
        let refused = ours.write(b"too late").await.unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::BrokenPipe);
        ours.shutdown().await.unwrap();
        let mut answers = Vec::new();
        while let Some(Ok(message)) = theirs.next().await {
            answers.push(message);
        }
        assert_eq!(
            answers.first(),
            Some(&Message::Binary(b"last words".to_vec().into())),
            "the data did not come first: {answers:?}"
        );
        assert!(
            matches!(answers.get(1), Some(Message::Close(_))),
            "no close after the data: {answers:?}"
        );
    }

    /// A frame's whole room is reserved when it starts: gathering it up
    /// to its full size never reallocates.
    #[tokio::test]
    async fn a_frame_is_gathered_without_reallocating() {
        let (a, _b) = tokio::io::duplex(1 << 20);
        let mut ours = WsBytes::new(a, Role::Client, unheard());
        ours.write_all(b"x").await.unwrap();
        assert!(
            ours.out.capacity() >= HEADER_ROOM + MESSAGE_SIZE,
            "{} bytes reserved",
            ours.out.capacity()
        );
        let start = ours.out.as_ptr();
        let mut left = MESSAGE_SIZE - 1;
        for size in (1..).map(|i| i * 997) {
            let n = ours.write(&vec![7u8; size.min(left)]).await.unwrap();
            left -= n;
            if left == 0 {
                break;
            }
        }
        assert_eq!(ours.out.len(), HEADER_ROOM + MESSAGE_SIZE);
        assert_eq!(ours.out.as_ptr(), start, "the frame was moved");
    }

    /// A text message is not the tunnel's: reading fails.
    #[tokio::test]
    async fn a_text_message_is_an_error() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut theirs = WebSocketStream::from_raw_socket(a, Peer::Client, None).await;
        let mut ours = WsBytes::new(b, Role::Server, unheard());
        theirs.send(Message::Text("hello".into())).await.unwrap();
        let mut buf = [0u8; 16];
        let error = ours.read(&mut buf).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    /// Frames masked the wrong way for their sender are refused (RFC 6455
    /// §5.1): unmasked from a client, masked from a server.
    /// Masking agrees with the byte-by-byte definition (RFC 6455 §5.3) for
    /// every offset into the key and lengths around the block size.
    #[test]
    fn masking_is_the_rfc_s_byte_by_byte_xor() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for offset in 0..8 {
            for len in [0, 1, 3, 4, 5, 63, 64, 65, 130, 1000] {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let mut masked = data.clone();
                apply_mask(&mut masked, mask, offset);
                let expected: Vec<u8> = data
                    .iter()
                    .enumerate()
                    .map(|(i, b)| b ^ mask[(offset + i) % 4])
                    .collect();
                assert_eq!(masked, expected, "offset {offset}, length {len}");
            }
        }
    }

    #[tokio::test]
    async fn a_frame_masked_the_wrong_way_is_an_error() {
        for (role, header) in [
            // Unmasked binary frame of one byte, sent to the server.
            (Role::Server, vec![0x82, 0x01, b'x']),
            // Masked binary frame of one byte, sent to the client.
            (Role::Client, vec![0x82, 0x81, 1, 2, 3, 4, b'x' ^ 1]),
        ] {
            let (mut a, b) = tokio::io::duplex(1 << 16);
            let mut ours = WsBytes::new(b, role, unheard());
            a.write_all(&header).await.unwrap();
            let mut buf = [0u8; 16];
            let error = ours.read(&mut buf).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{role:?}");
        }
    }
}
