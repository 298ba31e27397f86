//! Large copies made as pieces of at most [`PIECE`] bytes.
//!
//! glibc (2.33 to 2.38, as in Debian 12 and Ubuntu 22.04) copies a block
//! above about 2 KiB with `rep movsb` on CPUs that announce fast short
//! `rep movsb` (FSRM). On AMD EPYC that instruction runs at about 2 GB/s
//! when the destination is not aligned with the source, against about 40
//! GB/s for glibc's vector loop, which it uses below that size. Streamed
//! bodies meet that case all the time: rustls copies a response's bytes
//! behind a 5-byte record header, the tunnel gathers HTTP/2 frames behind
//! a WebSocket header. Measured on such a host while one `logs -f` stream
//! ran: those two copies took 21% of Paddock's CPU and 20% of the agent's.
//! Pieces cost one call per 2 KiB wherever this does not apply.

use std::{
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest piece: under glibc's `rep movsb` threshold on FSRM CPUs
/// (2,112 bytes).
pub(crate) const PIECE: usize = 2 * 1024;

/// Pieces handed down in one vectored write at most: 128 KiB, more than a
/// TLS connection takes at once.
const MAX_PIECES: usize = 64;

/// Appends `bytes` to `out` a piece at a time.
pub(crate) fn extend_piecewise(out: &mut Vec<u8>, bytes: &[u8]) {
    for piece in bytes.chunks(PIECE) {
        out.extend_from_slice(piece);
    }
}

/// A connection whose writes reach the one below (a TLS stream, which
/// copies what it is given into its records) as pieces of at most
/// [`PIECE`] bytes, in one vectored write. Reads pass through.
pub(crate) struct PiecewiseWrites<S> {
    io: S,
}

impl<S> PiecewiseWrites<S> {
    pub(crate) fn new(io: S) -> Self {
        Self { io }
    }
}

impl<S: AsyncWrite + Unpin> PiecewiseWrites<S> {
    /// Writes `bufs` as one vectored write of pieces, as many as fit in
    /// [`MAX_PIECES`].
    fn poll_pieces<'a>(
        &mut self,
        cx: &mut Context<'_>,
        bufs: impl IntoIterator<Item = &'a [u8]>,
    ) -> Poll<io::Result<usize>> {
        let mut pieces = [IoSlice::new(&[]); MAX_PIECES];
        let mut n = 0;
        for piece in bufs.into_iter().flat_map(|buf| buf.chunks(PIECE)) {
            if n == MAX_PIECES {
                break;
            }
            pieces[n] = IoSlice::new(piece);
            n += 1;
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, &pieces[..n])
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PiecewiseWrites<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PiecewiseWrites<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.len() <= PIECE {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        this.poll_pieces(cx, [buf])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if bufs.len() <= MAX_PIECES && bufs.iter().all(|b| b.len() <= PIECE) {
            return Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        }
        this.poll_pieces(cx, bufs.iter().map(|buf| &**buf))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Records the slices of each vectored write it gets.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<usize>>,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.writes.push(bufs.iter().map(|b| b.len()).collect());
            for buf in bufs {
                this.bytes.extend_from_slice(buf);
            }
            Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn large_writes_go_down_in_pieces_and_in_order() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut io = PiecewiseWrites::new(Recorder::default());
        // A small write passes as it is.
        assert_eq!(io.write(&data[..100]).await.unwrap(), 100);
        // A large one goes down as pieces, at most MAX_PIECES at once.
        let n = io.write(&data[100..]).await.unwrap();
        assert_eq!(n, MAX_PIECES * PIECE);
        // Vectored: a small slice and a large one.
        let rest = &data[100 + n..];
        let bufs = [IoSlice::new(&rest[..10]), IoSlice::new(&rest[10..])];
        let m = io.write_vectored(&bufs).await.unwrap();
        io.write_all(&rest[m..]).await.unwrap();
        let recorder = io.io;
        assert_eq!(recorder.bytes, data);
        assert_eq!(recorder.writes[0], vec![100]);
        assert!(recorder.writes[1].iter().all(|&len| len == PIECE));
        assert_eq!(recorder.writes[2][0], 10);
        assert!(recorder.writes.iter().flatten().all(|&len| len <= PIECE));
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut io = PiecewiseWrites::new(a);
        b.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }

    #[test]
    fn piecewise_extension_copies_everything() {
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut out = b"head".to_vec();
        extend_piecewise(&mut out, &data);
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], &data[..]);
    }
}
