//! SPDY/3.1, server side, as far as the kubelet uses it for exec and
//! port-forward: kubectl's client is `github.com/moby/spdystream` through
//! `k8s.io/apimachinery/pkg/util/httpstream/spdy`. Frames are those of the
//! SPDY/3 draft (§2.2 control and data frames, §2.6 frame types);
//! spdystream sends and expects no flow control (no SETTINGS, no
//! WINDOW_UPDATE), so neither does this.
//!
//! Name/value header blocks are compressed with one zlib stream per
//! direction for the whole session, with the draft's preset dictionary
//! (§2.6.10.1). The client's blocks are inflated with `miniz_oxide`, its
//! window pre-filled with the dictionary. Ours are written as stored
//! (uncompressed) deflate blocks after a zlib header naming the same
//! dictionary: valid deflate that any inflater reads, and all this server
//! ever sends is a handful of empty SYN_REPLY blocks.
//!
//! A stream here is what the handlers see: its headers, the data the client
//! sends on it (the channel ends at the client's FIN or RST_STREAM), and a
//! [`Sender`] to reply and write back.

use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use miniz_oxide::inflate::{
    core::{decompress, inflate_flags, DecompressorOxide},
    TINFLStatus,
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::mpsc,
};

const VERSION: u16 = 3;
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;

/// `RST_STREAM` status: the stream was refused.
pub(super) const REFUSED_STREAM: u32 = 3;

/// The draft's header dictionary (§2.6.10.1): these words, each after its
/// 32-bit big-endian length, then [`DICTIONARY_TAIL`] as is.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

fn dictionary() -> Vec<u8> {
    let mut dictionary = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        dictionary.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(word.as_bytes());
    }
    dictionary.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    dictionary
}

/// RFC 1950 §9: Adler-32, what a zlib header names a preset dictionary by.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

/// The client's header blocks: one zlib stream across the session.
struct Inflater {
    dictionary_id: u32,
    header_seen: bool,
    state: Box<DecompressorOxide>,
    /// The dictionary and everything inflated since: the LZ77 window. It
    /// only grows (`miniz_oxide`'s non-wrapping mode needs back-references
    /// to stay in the buffer), by a few hundred bytes per stream: fine for
    /// the sessions a test opens.
    window: Vec<u8>,
}

impl Inflater {
    fn new() -> Self {
        let window = dictionary();
        Self {
            dictionary_id: adler32(&window),
            header_seen: false,
            state: Box::default(),
            window,
        }
    }

    fn inflate(&mut self, mut input: &[u8]) -> io::Result<Vec<u8>> {
        if !self.header_seen {
            // RFC 1950 §2.2: CMF, FLG, and DICTID when FLG.FDICT is set.
            let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
            let [cmf, flg, ..] = *input else {
                return Err(bad("short zlib header"));
            };
            if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
                return Err(bad("not a zlib stream"));
            }
            input = &input[2..];
            if flg & 0x20 != 0 {
                let id = input.get(..4).ok_or_else(|| bad("short zlib header"))?;
                if u32::from_be_bytes(id.try_into().expect("4 bytes")) != self.dictionary_id {
                    return Err(bad("the header block names another dictionary"));
                }
                input = &input[4..];
            }
            self.header_seen = true;
        }
        let start = self.window.len();
        let flags = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
            | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
        loop {
            let position = self.window.len();
            self.window.resize(position + 16 * 1024, 0);
            let (status, read, written) =
                decompress(&mut self.state, input, &mut self.window, position, flags);
            self.window.truncate(position + written);
            input = &input[read..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => break,
                TINFLStatus::NeedsMoreInput => continue,
                other => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("header block inflate failed: {other:?}"),
                    ))
                }
            }
        }
        Ok(self.window[start..].to_vec())
    }
}

/// Reads a header block (§2.6.10) as it comes out of the inflater.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let (head, tail) = self
            .0
            .split_at_checked(n)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short header block"))?;
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn string(&mut self) -> io::Result<String> {
        let len = self.u32()? as usize;
        String::from_utf8(self.take(len)?.to_vec())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "header not UTF-8"))
    }
}

/// A name/value header block: a count, then length-prefixed names and
/// values. Names are lowercase on the wire; a value holding NULs is
/// several values.
fn parse_header_block(block: &[u8]) -> io::Result<Vec<(String, String)>> {
    let mut cursor = Cursor(block);
    let count = cursor.u32()?;
    let mut pairs = Vec::new();
    for _ in 0..count {
        let name = cursor.string()?.to_ascii_lowercase();
        let value = cursor.string()?;
        pairs.extend(value.split('\0').map(|v| (name.clone(), v.to_owned())));
    }
    Ok(pairs)
}

/// One stream the client opened (SYN_STREAM).
#[derive(Debug)]
pub(super) struct Stream {
    /// Its id (odd: the client's).
    pub(super) id: u32,
    headers: Vec<(String, String)>,
    /// What the client sends on it; ends at its FIN or RST_STREAM.
    pub(super) data: mpsc::UnboundedReceiver<Bytes>,
}

impl Stream {
    /// The first value of header `name` (any case).
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Out {
    frames: mpsc::UnboundedSender<Vec<u8>>,
    /// Whether the zlib header of our header blocks went out.
    zlib_started: bool,
}

/// Writes frames to the client; clones share one connection.
#[derive(Clone)]
pub(super) struct Sender {
    out: Arc<Mutex<Out>>,
}

fn control_frame(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.extend_from_slice(&(u32::from(flags) << 24 | payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

impl Sender {
    fn send(&self, frame: Vec<u8>) {
        let _ = self.out.lock().unwrap().frames.send(frame);
    }

    /// SYN_REPLY with no headers: the stream is accepted (spdystream's
    /// `CreateStream` waits for it, and drops data that comes before it).
    pub(super) fn reply(&self, id: u32) {
        let mut out = self.out.lock().unwrap();
        let mut payload = id.to_be_bytes().to_vec();
        if !out.zlib_started {
            // CMF 0x78 (deflate, 32 KiB window), FLG with FDICT and the
            // check bits, then the dictionary's Adler-32 (RFC 1950 §2.2).
            payload.extend_from_slice(&[0x78, 0xf9]);
            payload.extend_from_slice(&adler32(&dictionary()).to_be_bytes());
            out.zlib_started = true;
        }
        // The block (no name/value pairs) as a stored deflate block (RFC
        // 1951 §3.2.4: BFINAL 0, BTYPE 00, LEN, NLEN, bytes), then an empty
        // one, as zlib's Z_SYNC_FLUSH ends its output: an inflater hands
        // out a stored block's bytes only once it has seen the next block
        // begin (Go's `compress/flate` does), and within this frame.
        let block = 0u32.to_be_bytes();
        for stored in [&block[..], &[]] {
            let len = stored.len() as u16;
            payload.push(0);
            payload.extend_from_slice(&len.to_le_bytes());
            payload.extend_from_slice(&(!len).to_le_bytes());
            payload.extend_from_slice(stored);
        }
        let _ = out.frames.send(control_frame(SYN_REPLY, 0, &payload));
    }

    /// A data frame on stream `id`; `fin` half-closes it.
    pub(super) fn data(&self, id: u32, data: &[u8], fin: bool) {
        for (i, chunk) in data.chunks(1 << 16).enumerate() {
            let last = (i + 1) * (1 << 16) >= data.len();
            self.send(data_frame(id, chunk, fin && last));
        }
        if data.is_empty() {
            self.send(data_frame(id, &[], fin));
        }
    }

    /// RST_STREAM with `status`.
    pub(super) fn reset(&self, id: u32, status: u32) {
        let mut payload = id.to_be_bytes().to_vec();
        payload.extend_from_slice(&status.to_be_bytes());
        self.send(control_frame(RST_STREAM, 0, &payload));
    }

    /// GOAWAY: this side opens and accepts no more streams, as the
    /// kubelet's `conn.Close()` does when the command ends.
    pub(super) fn go_away(&self, last_stream: u32) {
        let mut payload = last_stream.to_be_bytes().to_vec();
        payload.extend_from_slice(&0u32.to_be_bytes());
        self.send(control_frame(GOAWAY, 0, &payload));
    }
}

fn data_frame(id: u32, data: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
    let flags = if fin { FLAG_FIN } else { 0 };
    frame.extend_from_slice(&(u32::from(flags) << 24 | data.len() as u32).to_be_bytes());
    frame.extend_from_slice(data);
    frame
}

/// Serves SPDY on `io` (the connection after `101 Switching Protocols`):
/// streams the client opens arrive on the returned channel, with the
/// sender to answer on. The session ends when the client closes the
/// connection or sends GOAWAY.
pub(super) fn serve<S>(io: S) -> (Sender, mpsc::UnboundedReceiver<Stream>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(io);
    let (frames_tx, mut frames_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    let sender = Sender {
        out: Arc::new(Mutex::new(Out {
            frames: frames_tx,
            zlib_started: false,
        })),
    };
    tokio::spawn(async move {
        while let Some(frame) = frames_rx.recv().await {
            if writer.write_all(&frame).await.is_err() || writer.flush().await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });
    let (streams_tx, streams_rx) = mpsc::unbounded_channel();
    let pings = sender.clone();
    tokio::spawn(async move {
        if let Err(error) = read_frames(&mut reader, &pings, &streams_tx).await {
            tracing::debug!(%error, "SPDY session ended");
        }
    });
    (sender, streams_rx)
}

async fn read_frames<R: AsyncRead + Unpin>(
    reader: &mut R,
    sender: &Sender,
    streams: &mpsc::UnboundedSender<Stream>,
) -> io::Result<()> {
    let mut inflater = Inflater::new();
    let mut open: HashMap<u32, mpsc::UnboundedSender<Bytes>> = HashMap::new();
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    loop {
        let mut head = [0u8; 8];
        match reader.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let first = u32::from_be_bytes(head[..4].try_into().expect("4 bytes"));
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut payload = vec![0; len];
        reader.read_exact(&mut payload).await?;
        if first & 0x8000_0000 == 0 {
            // A data frame.
            let id = first & 0x7fff_ffff;
            if let Some(stream) = open.get(&id) {
                if !payload.is_empty() {
                    let _ = stream.send(Bytes::from(payload));
                }
                if flags & FLAG_FIN != 0 {
                    open.remove(&id);
                }
            }
            continue;
        }
        let version = (first >> 16) as u16 & 0x7fff;
        if version != VERSION {
            return Err(invalid(format!("SPDY version {version}")));
        }
        let mut cursor = Cursor(&payload);
        match first as u16 {
            SYN_STREAM => {
                let id = cursor.u32()? & 0x7fff_ffff;
                let _associated = cursor.u32()?;
                let _priority_and_slot = cursor.take(2)?;
                let block = inflater.inflate(cursor.0)?;
                let headers = parse_header_block(&block)?;
                let (data_tx, data_rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN == 0 {
                    open.insert(id, data_tx);
                }
                let stream = Stream {
                    id,
                    headers,
                    data: data_rx,
                };
                if streams.send(stream).is_err() {
                    sender.reset(id, REFUSED_STREAM);
                }
            }
            RST_STREAM => {
                open.remove(&(cursor.u32()? & 0x7fff_ffff));
            }
            // The client's pings have odd ids: echo them (§2.6.5).
            PING if cursor.u32()? % 2 == 1 => sender.send(control_frame(PING, 0, &payload)),
            GOAWAY => return Ok(()),
            // SETTINGS, WINDOW_UPDATE, HEADERS, our own pings: nothing to do.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_drafts() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
        assert!(dictionary.ends_with(b"enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_our_stored_blocks() {
        // What `reply` writes, read back by the inflater: zlib header with
        // FDICT, then a stored block and the empty one that flushes it.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sender = Sender {
            out: Arc::new(Mutex::new(Out {
                frames: tx,
                zlib_started: false,
            })),
        };
        sender.reply(1);
        sender.reply(3);
        let mut inflater = Inflater::new();
        for id in [1u32, 3] {
            let frame = rx.try_recv().unwrap();
            assert_eq!(&frame[..4], &[0x80, 0x03, 0x00, 0x02]);
            assert_eq!(&frame[8..12], &id.to_be_bytes());
            assert!(frame.ends_with(&[0, 0, 0, 0xff, 0xff]));
            let block = inflater.inflate(&frame[12..]).unwrap();
            assert!(parse_header_block(&block).unwrap().is_empty());
        }
    }
}
