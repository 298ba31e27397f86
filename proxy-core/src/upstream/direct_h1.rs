//! A worker's own HTTP/1.1 connections to a cluster that does not speak
//! HTTP/2 (a plain `http://` server, or one whose ALPN offers only
//! `http/1.1`), for requests without a body, driven by the request's own
//! task.
//!
//! hyper's client gives every connection a task of its own: the request
//! is handed to it through a channel, the response head comes back through
//! another, and every piece of the body is passed from that task to the
//! one reading it, each hand-off a wake-up. Measured with callgrind, the
//! connection task cost about 12,000 instructions per small request and
//! the request side 3,000; this client's whole exchange costs 7,000.
//! Here a request takes an idle connection out of the worker's list,
//! writes its head and reads the answer's head itself; the response body
//! then owns the connection, reads its data straight off it, and puts it
//! back in the list once the body has been read to its end. A connection
//! whose body is dropped unread is closed.
//!
//! Requests with a body, and upgrades, take hyper's pooled client.

use std::{
    future::Future,
    io,
    mem::MaybeUninit,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{ready, Context, Poll, Waker},
    time::{Duration, Instant},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{
    header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body::{Body, Frame, SizeHint};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

use super::connector::{Https, HttpsStream};

/// Idle connections a worker keeps to one cluster at most; a connection
/// given back past this is closed.
const MAX_IDLE: usize = 256;

/// A connection unused this long is closed (as hyper-util's pool does).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A connection unused this long is checked for a close by the server
/// before a request goes out on it. Servers close idle connections after
/// seconds (nginx 75, Go's after its idle timeout), never within one: a
/// busy connection skips the check and its system call.
const CHECK_AFTER: Duration = Duration::from_secs(1);

/// The largest response head read: more is an error, not a longer wait.
const MAX_HEAD: usize = 64 * 1024;

/// The most header fields a response head may have.
const MAX_HEADERS: usize = 100;

/// The longest chunk-size line (with extensions) or trailer line.
const MAX_LINE: usize = 4096;

/// A read buffer is made this large, and a new one once less than
/// [`MIN_READ`] is left.
const READ_SIZE: usize = 16 * 1024;
const MIN_READ: usize = 4 * 1024;

/// Why a direct request was not answered.
#[derive(Debug)]
pub(super) enum DirectH1Error {
    /// No connection could be made: the cluster is unavailable.
    Connect(String),
    /// The request was sent, or the connection failed under it.
    Request(String),
}

/// One worker's HTTP/1.1 connections to one cluster.
pub(super) struct DirectH1 {
    connector: Https,
    server: Uri,
    host: HeaderValue,
    idle: Arc<Idle>,
}

/// The connections not in use, the most recently used last: a request
/// takes the last one, so under load the same few stay warm and the
/// oldest age out.
#[derive(Default)]
struct Idle(Mutex<Vec<(Box<Conn>, Instant)>>);

impl Idle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Box<Conn>, Instant)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The most recently used connection that is still open, if any.
    fn take(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        loop {
            let (mut conn, since) = self.lock().pop()?;
            let idle_for = now.saturating_duration_since(since);
            if idle_for > IDLE_TIMEOUT {
                // The others have been idle longer still.
                self.lock().clear();
                return None;
            }
            if idle_for < CHECK_AFTER || conn.is_open() {
                return Some(conn);
            }
        }
    }

    /// Puts `conn` back, and closes the connections that have been idle
    /// too long: they would otherwise stay open (closed by the server, a
    /// socket and its descriptor held) until the next request.
    fn give_back(&self, conn: Box<Conn>) {
        let now = Instant::now();
        let stale = |since: &Instant| now.saturating_duration_since(*since) > IDLE_TIMEOUT;
        let mut idle = self.lock();
        if idle.first().is_some_and(|(_, since)| stale(since)) {
            idle.retain(|(_, since)| !stale(since));
        }
        if idle.len() < MAX_IDLE {
            idle.push((conn, now));
        }
    }
}

type TlsStream = tokio_rustls::client::TlsStream<TokioIo<TokioIo<TcpStream>>>;

/// What a connection runs on.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

/// An open connection: its stream, the bytes read from it and not yet
/// used, and the buffer request heads are written into (kept, so a
/// request costs no allocation for it).
struct Conn {
    stream: Stream,
    read: BytesMut,
    write: Vec<u8>,
}

impl Conn {
    fn new(io: HttpsStream) -> Box<Self> {
        let stream = match io {
            MaybeHttpsStream::Http(tcp) => Stream::Tcp(tcp.into_inner()),
            MaybeHttpsStream::Https(tls) => Stream::Tls(Box::new(tls.into_inner())),
        };
        Box::new(Self {
            stream,
            read: BytesMut::new(),
            write: Vec::with_capacity(1024),
        })
    }

    /// Whether the server has not closed the connection while it was idle
    /// (nor sent anything, which it may not): one read that does not wait.
    fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(self.poll_fill(&mut cx), Poll::Pending)
    }

    /// Reads what has arrived onto the end of the read buffer; `Ok(0)` at
    /// the end of the stream. Over TLS, takes every record already
    /// received, not only the first.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        // Pieces of the buffer live on as bodies and header values, so it
        // is only grown (a new one) once little room is left.
        if self.read.capacity() - self.read.len() < MIN_READ {
            self.read.reserve(READ_SIZE);
        }
        match &mut self.stream {
            Stream::Tcp(tcp) => tokio_util::io::poll_read_buf(Pin::new(tcp), cx, &mut self.read),
            Stream::Tls(tls) => {
                let room = self.read.capacity() - self.read.len();
                let read = &mut self.read;
                super::connector::read_records(&mut **tls, cx, room, |data| {
                    read.extend_from_slice(data);
                })
            }
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Writes the head in `self.write` and reads the answer's head:
    /// `Err(None)` if the connection ended with nothing received (the
    /// server had closed it, or did so on reading the request).
    async fn round_trip(&mut self, head_only: bool) -> Result<Head, Option<String>> {
        let written = async {
            let stream: &mut (dyn AsyncWrite + Send + Unpin) = match &mut self.stream {
                Stream::Tcp(tcp) => tcp,
                Stream::Tls(tls) => &mut **tls,
            };
            stream.write_all(&self.write).await?;
            stream.flush().await
        };
        if written.await.is_err() {
            return Err(None);
        }
        loop {
            if !self.read.is_empty() {
                match parse_head(&mut self.read, head_only) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {}
                    Err(message) => return Err(Some(message)),
                }
            }
            match self.fill().await {
                Ok(0) if self.read.is_empty() => return Err(None),
                Ok(0) => return Err(Some("connection closed in the response head".to_owned())),
                Ok(_) => {}
                Err(error) if self.read.is_empty() => {
                    tracing::debug!(%error, "upstream HTTP/1.1 connection failed");
                    return Err(None);
                }
                Err(error) => return Err(Some(error.to_string())),
            }
        }
    }
}

/// A response head, its body's framing, and whether the connection may
/// carry another request after it.
struct Head {
    response: Response<()>,
    framing: Framing,
    keep_alive: bool,
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// Chunked: where in it the reader is.
    Chunked(Chunk),
    /// Until the server closes the connection.
    Close,
    /// Read to its end.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Chunk {
    /// At a chunk-size line.
    Size,
    /// In a chunk's data: this many bytes remain.
    Data(u64),
    /// At the CRLF after a chunk's data.
    DataEnd,
    /// In the trailer section, which is read and dropped.
    Trailers,
}

/// Parses a response head at the start of `read`, taking it off: `None`
/// when it has not all arrived. Interim answers (`100 Continue`, `103
/// Early Hints`) are skipped.
fn parse_head(read: &mut BytesMut, head_only: bool) -> Result<Option<Head>, String> {
    loop {
        let mut fields = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            read,
            &mut fields,
        ) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Partial) if read.len() <= MAX_HEAD => return Ok(None),
            Ok(_) => return Err(format!("response head over {MAX_HEAD} bytes")),
            Err(error) => return Err(format!("invalid response head: {error}")),
        };
        let code = parsed.code.unwrap_or_default();
        let status = StatusCode::from_u16(code).map_err(|_| format!("invalid status {code}"))?;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err("switched protocols without being asked to".to_owned());
        }
        if status.is_informational() {
            read.advance(len);
            continue;
        }
        let version = if parsed.version == Some(1) {
            Version::HTTP_11
        } else {
            Version::HTTP_10
        };
        // Where each field is, to slice its value out of the head once it
        // is taken off the buffer rather than copy it.
        let base = read.as_ptr() as usize;
        let mut at = [(0u32, 0u32, 0u32, 0u32); MAX_HEADERS];
        let count = parsed.headers.len();
        for (field, at) in parsed.headers.iter().zip(at.iter_mut()) {
            let offset = |part: &[u8]| (part.as_ptr() as usize - base) as u32;
            *at = (
                offset(field.name.as_bytes()),
                field.name.len() as u32,
                offset(field.value),
                field.value.len() as u32,
            );
        }
        let head = read.split_to(len).freeze();
        let mut headers = HeaderMap::with_capacity(count);
        // Which of the fields that say how the message ends are there: only
        // those are looked up again.
        let (mut length, mut coding, mut connection) = (false, false, false);
        for &(name, name_len, value, value_len) in &at[..count] {
            let (name, value) = (name as usize, value as usize);
            let name = HeaderName::from_bytes(&head[name..name + name_len as usize])
                .map_err(|_| "invalid header name in the response".to_owned())?;
            length |= name == header::CONTENT_LENGTH;
            coding |= name == header::TRANSFER_ENCODING;
            connection |= name == header::CONNECTION;
            let value =
                HeaderValue::from_maybe_shared(head.slice(value..value + value_len as usize))
                    .map_err(|_| format!("invalid value of {name} in the response"))?;
            headers.append(name, value);
        }
        // RFC 9112 §6.3: no body after these; without a length, the
        // body lasts until the connection closes.
        let no_body = status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
        let framing = if head_only || no_body {
            Framing::Done
        } else if coding {
            framing_coded(&headers)
        } else if length {
            framing_length(&headers)?
        } else {
            Framing::Close
        };
        // Both lengths is how a request smuggling attempt looks: the
        // connection is not trusted with another request (RFC 9112 §6.3).
        let keep_alive = version == Version::HTTP_11
            && framing != Framing::Close
            && !(coding && length)
            && !(connection
                && headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .any(|v| has_token(v, "close")));
        crate::hop_by_hop::strip(&mut headers);
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = version;
        *response.headers_mut() = headers;
        return Ok(Some(Head {
            response,
            framing,
            keep_alive,
        }));
    }
}

/// The body's framing when `Transfer-Encoding` is there:
/// chunked if that is the last coding, else until the connection closes.
fn framing_coded(headers: &HeaderMap) -> Framing {
    let chunked = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .next_back()
        .and_then(|last| last.as_bytes().rsplit(|&b| b == b',').next())
        .is_some_and(|coding| coding.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    if chunked {
        Framing::Chunked(Chunk::Size)
    } else {
        Framing::Close
    }
}

/// The body's framing from `Content-Length` (its values must agree).
fn framing_length(headers: &HeaderMap) -> Result<Framing, String> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            // Digits only (no sign, no space inside); 19 of them cannot
            // overflow.
            let digits = item.trim_ascii();
            let parsed =
                (!digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit))
                    .then(|| {
                        digits
                            .iter()
                            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'))
                    });
            match (parsed, length) {
                (None, _) => return Err("invalid Content-Length in the response".to_owned()),
                (Some(n), Some(m)) if n != m => {
                    return Err("conflicting Content-Length in the response".to_owned())
                }
                (Some(n), _) => length = Some(n),
            }
        }
    }
    Ok(match length {
        Some(0) => Framing::Done,
        Some(n) => Framing::Length(n),
        None => Framing::Close,
    })
}

/// Whether a comma-separated header value lists `token`.
fn has_token(value: &HeaderValue, token: &str) -> bool {
    value
        .as_bytes()
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Writes the head of a request without a body into `out`: origin form,
/// the server's authority as `Host` unless the request has one.
fn encode_head(out: &mut Vec<u8>, request: &Request<()>, host: &HeaderValue) {
    out.clear();
    out.extend_from_slice(request.method().as_str().as_bytes());
    out.push(b' ');
    let target = request.uri().path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let headers = request.headers();
    if !headers.contains_key(header::HOST) {
        field(out, header::HOST.as_str(), host);
    }
    for (name, value) in headers {
        // The body is empty, whatever the caller said about it.
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            field(out, name.as_str(), value);
        }
    }
    // A method whose request has content says it has none (RFC 9110 §8.6).
    if matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn field(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The error of a round trip that failed: why, or that the connection
/// ended with nothing received.
fn request_failed(failed: Option<String>) -> DirectH1Error {
    DirectH1Error::Request(
        failed.unwrap_or_else(|| "connection closed before the response".to_owned()),
    )
}

/// Whether a request may be sent again after its connection failed with
/// nothing received: its method is idempotent (RFC 9110 §9.2.2), so the
/// server having acted on the first is no harm.
fn retryable(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl DirectH1 {
    /// `connector` must offer only HTTP/1.1.
    pub(super) fn new(connector: Https, server: Uri) -> Self {
        let host = server
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        Self {
            connector,
            server,
            host,
            idle: Arc::default(),
        }
    }

    /// Sends a request without a body (its URI absolute) on an idle
    /// connection, or a new one, and reads the response head. A request
    /// whose reused connection turns out closed before anything came back
    /// is sent once more on a new connection if its method is idempotent;
    /// otherwise that is an error, as it is for every other failure.
    pub(super) fn send(
        &self,
        request: Request<()>,
    ) -> impl Future<Output = Result<Response<H1Body>, DirectH1Error>> + Send + '_ {
        let idle = self.idle.take();
        async move {
            let head_only = request.method() == Method::HEAD;
            // Opening a connection is rare, and boxed: every request's
            // future would be as large.
            let Some(mut conn) = idle else {
                return Box::pin(self.send_on_new(request, head_only)).await;
            };
            encode_head(&mut conn.write, &request, &self.host);
            match conn.round_trip(head_only).await {
                Ok(head) => Ok(self.answer(conn, head)),
                // The server had closed the kept connection.
                Err(None) if retryable(request.method()) => {
                    Box::pin(self.send_on_new(request, head_only)).await
                }
                Err(failed) => Err(request_failed(failed)),
            }
        }
    }

    /// Sends a request on a connection of its own, opened for it.
    async fn send_on_new(
        &self,
        request: Request<()>,
        head_only: bool,
    ) -> Result<Response<H1Body>, DirectH1Error> {
        let mut conn = self.connect().await?;
        encode_head(&mut conn.write, &request, &self.host);
        match conn.round_trip(head_only).await {
            Ok(head) => Ok(self.answer(conn, head)),
            Err(failed) => Err(request_failed(failed)),
        }
    }

    fn answer(&self, conn: Box<Conn>, head: Head) -> Response<H1Body> {
        let mut body = H1Body {
            conn: Some(conn),
            framing: head.framing,
            idle: head.keep_alive.then(|| self.idle.clone()),
        };
        body.release_if_done();
        head.response.map(|()| body)
    }

    /// A new connection (TCP and TLS), within the connect timeout.
    async fn connect(&self) -> Result<Box<Conn>, DirectH1Error> {
        let io = self.connector.connect(&self.server).await;
        Ok(Conn::new(io.map_err(DirectH1Error::Connect)?))
    }
}

/// A response body read straight off its connection, which it gives back
/// to the worker's idle list once read to its end.
pub(crate) struct H1Body {
    /// Until the body has been read (or it failed).
    conn: Option<Box<Conn>>,
    framing: Framing,
    /// Where the connection goes back to, if it may carry another request.
    idle: Option<Arc<Idle>>,
}

impl H1Body {
    /// Gives the connection back once the body has been read, if it may
    /// carry another request: the server sent nothing past the body.
    fn release_if_done(&mut self) {
        if self.framing != Framing::Done {
            return;
        }
        if let (Some(conn), Some(idle)) = (self.conn.take(), self.idle.take()) {
            if conn.read.is_empty() {
                idle.give_back(conn);
            }
        }
    }

    /// The next piece of the body; `None` at its end.
    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, String>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // How much of the bytes at hand is data.
            let data = match self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => left,
                Framing::Close => u64::MAX,
                Framing::Chunked(at) => match chunked_step(&mut conn.read, at) {
                    Ok(Some(next)) => {
                        self.framing = next;
                        self.release_if_done();
                        continue;
                    }
                    Ok(None) if conn.read.len() > MAX_LINE => {
                        return Poll::Ready(Some(Err("chunk line too long".to_owned())))
                    }
                    Ok(None) => 0,
                    Err(message) => return Poll::Ready(Some(Err(message))),
                },
            };
            if data > 0 && !conn.read.is_empty() {
                let n = conn
                    .read
                    .len()
                    .min(usize::try_from(data).unwrap_or(usize::MAX));
                let data = conn.read.split_to(n).freeze();
                self.framing = self.framing.after(n as u64);
                self.release_if_done();
                return Poll::Ready(Some(Ok(data)));
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if self.framing == Framing::Close => {
                    self.framing = Framing::Done;
                    self.conn = None;
                }
                Ok(0) => {
                    return Poll::Ready(Some(Err(
                        "connection closed before the end of the body".to_owned()
                    )))
                }
                Ok(_) => {}
                Err(error) => return Poll::Ready(Some(Err(error.to_string()))),
            }
        }
    }
}

impl Framing {
    /// The framing once `n` bytes of data have been taken.
    fn after(self, n: u64) -> Self {
        match self {
            Framing::Length(left) if left == n => Framing::Done,
            Framing::Length(left) => Framing::Length(left - n),
            Framing::Chunked(Chunk::Data(left)) if left == n => Framing::Chunked(Chunk::DataEnd),
            Framing::Chunked(Chunk::Data(left)) => Framing::Chunked(Chunk::Data(left - n)),
            other => other,
        }
    }
}

/// Takes the chunked framing's next line (a chunk size, the CRLF after a
/// chunk, a trailer) off `read`: the framing after it, or `None` if the
/// line has not all arrived.
fn chunked_step(read: &mut BytesMut, at: Chunk) -> Result<Option<Framing>, String> {
    let Some(end) = read.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = read.split_to(end + 2);
    let line = &line[..end];
    let next = match at {
        Chunk::Size => {
            let digits = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(digits.trim_ascii())
                .ok()
                .filter(|s| !s.is_empty() && s.len() <= 16)
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .ok_or("invalid chunk size")?;
            Chunk::Data(size)
        }
        Chunk::DataEnd if line.is_empty() => Chunk::Size,
        Chunk::DataEnd => return Err("chunk data longer than its size".to_owned()),
        Chunk::Trailers if line.is_empty() => return Ok(Some(Framing::Done)),
        Chunk::Trailers => Chunk::Trailers,
        Chunk::Data(_) => unreachable!("data is not a line"),
    };
    Ok(Some(match next {
        Chunk::Data(0) => Framing::Chunked(Chunk::Trailers),
        next => Framing::Chunked(next),
    }))
}

impl std::fmt::Debug for H1Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Body")
            .field("framing", &self.framing)
            .finish_non_exhaustive()
    }
}

impl Body for H1Body {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match ready!(this.poll_data(cx)) {
            Some(Ok(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Some(Err(message)) => {
                this.conn = None;
                this.framing = Framing::Done;
                Poll::Ready(Some(Err(message.into())))
            }
            None => {
                this.release_if_done();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpListener,
    };

    use super::*;
    use crate::upstream::{Cluster, ClusterConfig};

    /// A server that answers the requests on each connection it accepts
    /// with the next of `answers`, in order, and closes a connection when
    /// its answer is followed by `CLOSE`. Says how many connections it
    /// took, and keeps the request heads it read.
    struct Script {
        accepted: Arc<AtomicUsize>,
        heads: Arc<Mutex<Vec<String>>>,
        cluster: Cluster,
    }

    const CLOSE: &str = "<close>";

    async fn scripted(answers: &[&str]) -> Script {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let answers: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
            answers.iter().rev().map(|a| a.to_string()).collect(),
        ));
        let accepted = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (accepted.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let (answers, seen) = (answers.clone(), seen.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buffer.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head: Vec<u8> = buffer.drain(..end + 4).collect();
                            seen.lock().unwrap().push(String::from_utf8(head).unwrap());
                            let answer = answers.lock().unwrap().pop().expect("an answer");
                            let (answer, close) = match answer.strip_suffix(CLOSE) {
                                Some(answer) => (answer.to_owned(), true),
                                None => (answer, false),
                            };
                            if socket.write_all(answer.as_bytes()).await.is_err() || close {
                                return;
                            }
                        }
                    }
                });
            }
        });
        let config = ClusterConfig::new("a", format!("http://{address}"));
        let cluster = Cluster::new(&config, 1, crate::events::Events::default()).unwrap();
        Script {
            accepted,
            heads,
            cluster,
        }
    }

    impl Script {
        fn direct(&self) -> &DirectH1 {
            self.cluster.clients().direct_h1.as_ref().unwrap()
        }

        async fn send(&self, method: Method, path: &str) -> Result<Response<H1Body>, String> {
            let request = Request::builder()
                .method(method)
                .uri(format!("http://server{path}"))
                .header("x-test", "1")
                .body(())
                .unwrap();
            self.direct()
                .send(request)
                .await
                .map_err(|e| format!("{e:?}"))
        }

        async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Result<Bytes, String>) {
            let response = self.send(Method::GET, path).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .map_err(|e| e.to_string());
            (status, headers, body)
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn reads_each_framing_on_one_kept_connection() {
        let script = scripted(&[
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n",
            "HTTP/1.1 204 No Content\r\n\r\n",
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok",
        ])
        .await;
        let (status, headers, body) = script.get("/a?b=c").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers["x-a"], "b");
        assert_eq!(body.unwrap(), "hello");
        let (_, headers, body) = script.get("/chunked").await;
        assert_eq!(body.unwrap(), "abc0123456789");
        assert!(!headers.contains_key(header::TRANSFER_ENCODING));
        let (status, _, body) = script.get("/none").await;
        assert_eq!(
            (status, body.unwrap()),
            (StatusCode::NO_CONTENT, Bytes::new())
        );
        let (status, _, body) = script.get("/continue").await;
        assert_eq!((status, body.unwrap()), (StatusCode::OK, Bytes::from("ok")));
        let response = script.send(Method::HEAD, "/head").await.unwrap();
        assert!(response.body().is_end_stream());
        drop(response);
        let (_, _, body) = script.get("/repeated").await;
        assert_eq!(body.unwrap(), "ok", "a length repeated is one length");
        assert_eq!(script.accepted(), 1, "every request on one connection");
        let heads = script.heads.lock().unwrap().clone();
        assert!(
            heads[0].starts_with("GET /a?b=c HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
        assert!(heads[0].contains("host: 127.0.0.1:"), "{}", heads[0]);
        assert!(heads[0].contains("x-test: 1\r\n"), "{}", heads[0]);
        assert!(
            heads[4].starts_with("HEAD /head HTTP/1.1\r\n"),
            "{}",
            heads[4]
        );
    }

    #[tokio::test]
    async fn a_body_until_close_a_close_asked_for_or_two_lengths_end_the_connection() {
        let script = scripted(&[
            &format!("HTTP/1.1 200 OK\r\n\r\nuntil the end{CLOSE}"),
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
            "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\ny",
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nw\r\n0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
        ])
        .await;
        assert_eq!(script.get("/").await.2.unwrap(), "until the end");
        let (_, headers, body) = script.get("/").await;
        assert_eq!(body.unwrap(), "x");
        assert!(!headers.contains_key(header::CONNECTION));
        assert_eq!(script.get("/").await.2.unwrap(), "y");
        // Chunked wins over a length, and the connection is not kept.
        assert_eq!(script.get("/").await.2.unwrap(), "w");
        assert_eq!(script.get("/").await.2.unwrap(), "z");
        assert_eq!(script.accepted(), 5, "none of the first four was kept");
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection() {
        let script = scripted(&[
            "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234",
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
        ])
        .await;
        let response = script.send(Method::GET, "/").await.unwrap();
        drop(response);
        assert_eq!(script.get("/").await.2.unwrap(), "z");
        assert_eq!(script.accepted(), 2);
    }

    /// A server closing a kept connection as a request goes out on it: a
    /// GET is sent again on a new connection; a POST is not (the server
    /// may have acted on it), it fails.
    #[tokio::test]
    async fn only_idempotent_requests_are_sent_again_on_a_closed_connection() {
        let first = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na{CLOSE}");
        let script = scripted(&[
            &first,
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb",
            &first,
        ])
        .await;
        assert_eq!(script.get("/").await.2.unwrap(), "a");
        // Closed by the server under the idle connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(script.get("/").await.2.unwrap(), "b");
        assert_eq!(script.accepted(), 2);

        let script2 = scripted(&[&first]).await;
        assert_eq!(script2.get("/").await.2.unwrap(), "a");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let error = script2.send(Method::POST, "/").await.unwrap_err();
        assert!(error.contains("closed before the response"), "{error}");
        assert_eq!(script2.accepted(), 1, "the POST was not sent again");
    }

    /// A connection idle for more than a second is checked before use: a
    /// POST then goes on a new connection instead of failing.
    #[tokio::test]
    async fn a_long_idle_connection_is_checked_before_use() {
        let first = format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na{CLOSE}");
        let script =
            scripted(&[&first, "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb"]).await;
        assert_eq!(script.get("/").await.2.unwrap(), "a");
        tokio::time::sleep(CHECK_AFTER + Duration::from_millis(200)).await;
        let response = script.send(Method::POST, "/").await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let heads = script.heads.lock().unwrap().clone();
        assert!(heads[1].contains("content-length: 0\r\n"), "{}", heads[1]);
    }

    #[tokio::test]
    async fn malformed_answers_are_errors() {
        for (answer, expected) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                "conflicting Content-Length",
            ),
            (
                "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                "switched protocols",
            ),
            ("HTTP/1.1 2000 OK\r\n\r\n", "invalid response head"),
            ("nonsense\r\n\r\n", "invalid response head"),
            (
                &format!("HTTP/1.1 200 OK\r\nX: 1{CLOSE}"),
                "in the response head",
            ),
        ] {
            let script = scripted(&[answer]).await;
            let error = script.send(Method::GET, "/").await.unwrap_err();
            assert!(error.contains(expected), "{answer:?}: {error}");
        }
        let huge = format!(
            "HTTP/1.1 200 OK\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD + 10)
        );
        let script = scripted(&[&huge]).await;
        let error = script.send(Method::GET, "/").await.err();
        assert!(error.is_some_and(|e| e.contains("response head over")));

        for (answer, expected) in [
            (
                format!("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort{CLOSE}"),
                "before the end of the body",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_owned(),
                "invalid chunk size",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n".to_owned(),
                "longer than its size",
            ),
        ] {
            let script = scripted(&[&answer]).await;
            let error = script.get("/").await.2.unwrap_err();
            assert!(error.contains(expected), "{answer:?}: {error}");
        }
    }

    /// Connections idle past the timeout are closed when another is given
    /// back, and none is taken: a quiet cluster does not keep sockets the
    /// server has long closed.
    #[tokio::test]
    async fn connections_idle_too_long_are_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let open = || async {
            let tcp = TcpStream::connect(address).await.unwrap();
            Conn::new(MaybeHttpsStream::Http(TokioIo::new(tcp)))
        };
        let long_ago = Instant::now()
            .checked_sub(IDLE_TIMEOUT + Duration::from_secs(1))
            .unwrap();
        let (a, b, c, d) = (open().await, open().await, open().await, open().await);
        let idle = Idle::default();
        idle.lock().extend([(a, long_ago), (b, long_ago)]);
        idle.give_back(c);
        assert_eq!(idle.lock().len(), 1, "the two stale ones closed");
        assert!(idle.take().is_some(), "the fresh one is taken");
        idle.lock().push((d, long_ago));
        assert!(idle.take().is_none());
        assert!(idle.lock().is_empty());
    }

    #[test]
    fn a_request_head_says_it_has_no_body() {
        let mut out = Vec::new();
        let request = Request::post("http://server/apis/x")
            .header("content-length", "7")
            .header("transfer-encoding", "chunked")
            .header("host", "kept")
            .body(())
            .unwrap();
        encode_head(&mut out, &request, &HeaderValue::from_static("server"));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /apis/x HTTP/1.1\r\nhost: kept\r\ncontent-length: 0\r\n\r\n"
        );
    }
}
