//! The body types of the stack, one for requests and one for responses.
//!
//! [`RequestBody`] is what every layer, Paddock's endpoints and the
//! forwarder see, whatever body the server or an embedder handed in: hyper's
//! own body is kept as it is, any other is boxed once at the entry.
//! [`ResponseBody`] is streamed from the upstream or produced by Paddock,
//! never buffered, with a tap for the access log.

use std::{
    any::Any,
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Limited};
use hyper::body::Incoming;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Errors carried by bodies: whatever the upstream connection reported.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body inside the stack.
///
/// Made by [`RequestBody::new`] from any body: hyper's [`Incoming`], what
/// Paddock's own server hands in, is kept unboxed, so serving costs no
/// allocation for it; a body that has already ended (a GET from
/// `http_body_util::Empty`, say) becomes [`RequestBody::empty`], also
/// without one. Any other body is boxed once.
pub struct RequestBody {
    kind: RequestKind,
    /// A plugin's copy of the data as it is read (the audit log's
    /// `requestObject`).
    copy: Option<BodyCopy>,
    /// How long [`read`](Self::read) waits for the whole body.
    read_timeout: Duration,
}

enum RequestKind {
    Empty,
    Incoming(Incoming),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl RequestBody {
    /// A body without data.
    pub fn empty() -> Self {
        Self::of(RequestKind::Empty)
    }

    fn of(kind: RequestKind) -> Self {
        Self {
            kind,
            copy: None,
            read_timeout: crate::server::DEFAULT_BODY_READ_TIMEOUT,
        }
    }

    /// The serving connection's body read timeout, for [`read`](Self::read).
    pub(crate) fn with_read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Copies the data into `copy` as it is read; a body that has already
    /// ended completes the copy at once.
    pub(crate) fn copy_into(&mut self, copy: BodyCopy) {
        if self.is_end_stream() {
            copy.end(true);
        }
        self.copy = Some(copy);
    }

    /// Wraps `body`, boxing it unless it is hyper's own or already ended.
    pub fn new<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // A type test, not a trait: a blanket impl for every body cannot be
        // specialised for the two types that need no box.
        let mut slot = Some(body);
        let any: &mut dyn Any = &mut slot;
        if let Some(incoming) = any.downcast_mut::<Option<Incoming>>() {
            if let Some(incoming) = incoming.take() {
                return Self::of(RequestKind::Incoming(incoming));
            }
        } else if let Some(ready) = any.downcast_mut::<Option<Self>>() {
            if let Some(ready) = ready.take() {
                return ready;
            }
        }
        match slot {
            Some(body) if !body.is_end_stream() => {
                Self::of(RequestKind::Boxed(body.map_err(Into::into).boxed_unsync()))
            }
            _ => Self::empty(),
        }
    }

    /// Reads the whole body, at most `limit` bytes, which must arrive
    /// within the serving connection's body read timeout
    /// ([`ConnectionLimits::body_read_timeout`](crate::server::ConnectionLimits::body_read_timeout);
    /// [`crate::server::DEFAULT_BODY_READ_TIMEOUT`] outside Paddock's
    /// server, e.g. when an embedder serves [`crate::Proxy::service`]
    /// itself): how Paddock's own endpoints read what they are sent, and a
    /// client trickling its body cannot hold a connection (and a request)
    /// open.
    pub(crate) async fn read(self, limit: usize) -> Result<Bytes, BoxError> {
        let deadline = self.read_timeout;
        match tokio::time::timeout(deadline, Limited::new(self, limit).collect()).await {
            Ok(collected) => Ok(collected?.to_bytes()),
            Err(_) => Err(format!("it did not arrive within {deadline:?}").into()),
        }
    }
}

impl Default for RequestBody {
    fn default() -> Self {
        Self::empty()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.kind {
            RequestKind::Empty => Poll::Ready(None),
            RequestKind::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            RequestKind::Boxed(body) => Pin::new(body).poll_frame(cx),
        };
        if let Some(copy) = &self.copy {
            match &polled {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        copy.push(data);
                    }
                    // The reader may stop polling at the last frame.
                    if self.is_end_stream() {
                        copy.end(true);
                    }
                }
                Poll::Ready(Some(Err(_))) => copy.end(false),
                Poll::Ready(None) => copy.end(true),
                Poll::Pending => {}
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            RequestKind::Empty => true,
            RequestKind::Incoming(body) => body.is_end_stream(),
            RequestKind::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            RequestKind::Empty => SizeHint::with_exact(0),
            RequestKind::Incoming(body) => body.size_hint(),
            RequestKind::Boxed(body) => body.size_hint(),
        }
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            RequestKind::Empty => "empty",
            RequestKind::Incoming(_) => "incoming",
            RequestKind::Boxed(_) => "boxed",
        };
        f.debug_struct("RequestBody").field("kind", &kind).finish()
    }
}

/// Called once when a body ends or is dropped, with the bytes that went through.
pub type OnEnd = Box<dyn FnOnce(BodyEnd) + Send>;

/// How a response body ended, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyEnd {
    /// Data bytes sent to the client; for an upgraded connection (exec,
    /// attach, port-forward), the bytes relayed from the cluster to it.
    pub bytes: u64,
    /// Bytes the client sent through an upgraded connection; 0 for every
    /// other request (request bodies are not counted).
    pub bytes_received: u64,
    /// False when the client went away or the upstream failed mid-stream.
    pub complete: bool,
}

/// A response body: upstream bytes passed through frame by frame, or a
/// small body Paddock built itself (Status errors, its own endpoints).
pub struct ResponseBody {
    kind: Kind,
    bytes: u64,
    on_end: Option<OnEnd>,
    drain: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    /// The upstream stream this body reads, counted as busy until dropped.
    in_flight: Option<crate::upstream::InFlight>,
    /// The tunnel a 101 response opened: its end is this body's end.
    tunnel: Option<TunnelEnd>,
    /// A plugin's copy of the data as it passes (the audit log's
    /// `responseObject`).
    copy: Option<BodyCopy>,
}

enum Kind {
    Full(Option<Bytes>),
    Upstream(Incoming),
    H2(h2::RecvStream),
    H1(crate::upstream::H1Body),
}

impl ResponseBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self::from_kind(Kind::Full(None))
    }

    /// A complete body held in memory.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self::from_kind(Kind::Full((!bytes.is_empty()).then_some(bytes)))
    }

    /// A body streamed from the upstream, frame by frame.
    pub fn upstream(body: Incoming) -> Self {
        Self::from_kind(Kind::Upstream(body))
    }

    /// A body read straight off a worker's own HTTP/1.1 connection.
    pub(crate) fn upstream_h1(body: crate::upstream::H1Body) -> Self {
        Self::from_kind(Kind::H1(body))
    }

    /// A body streamed from an HTTP/2 upstream stream; flow-control
    /// capacity is released as each frame is passed on.
    pub fn upstream_h2(body: h2::RecvStream) -> Self {
        Self::from_kind(Kind::H2(body))
    }

    fn from_kind(kind: Kind) -> Self {
        Self {
            kind,
            bytes: 0,
            on_end: None,
            drain: None,
            in_flight: None,
            tunnel: None,
            copy: None,
        }
    }

    /// Copies the data into `copy` as it passes, complete when the body
    /// ends (before [`on_end`](Self::on_end) runs).
    pub(crate) fn copy_into(&mut self, copy: BodyCopy) {
        self.copy = Some(copy);
    }

    /// The empty body of a 101 response whose connection `tunnel` relays:
    /// its end (and `on_end`) comes when the tunnel closes, with the bytes
    /// it carried, not when the 101 has been sent.
    pub(crate) fn tunnel(tunnel: TunnelEnd) -> Self {
        let mut body = Self::empty();
        body.tunnel = Some(tunnel);
        body
    }

    /// Keeps `in_flight` until the body is dropped.
    pub(crate) fn holding(mut self, in_flight: crate::upstream::InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Runs `on_end` once, when the body ends or is dropped.
    pub fn on_end(&mut self, on_end: OnEnd) {
        self.on_end = Some(on_end);
    }

    /// Ends the body cleanly (end of stream, not an error) when `token` is
    /// cancelled: how watches finish on graceful shutdown.
    pub fn end_on(&mut self, token: CancellationToken) {
        self.drain = Some(Box::pin(token.cancelled_owned()));
    }

    fn finish(&mut self, complete: bool) {
        if let Some(copy) = self.copy.take() {
            copy.end(complete);
        }
        if let Some(on_end) = self.on_end.take() {
            match self.tunnel.take() {
                Some(tunnel) => tunnel.defer(on_end),
                None => on_end(BodyEnd {
                    bytes: self.bytes,
                    bytes_received: 0,
                    complete,
                }),
            }
        }
    }
}

/// Joins the body of a 101 response to the tunnel task that outlives it:
/// whichever of the body's end and the tunnel's close comes last reports
/// the end, once, with the tunnel's byte counts. So the access log and the
/// audit log see an exec session end when it ends, and how much it carried.
#[derive(Clone, Default)]
pub(crate) struct TunnelEnd(Arc<Mutex<TunnelState>>);

#[derive(Default)]
enum TunnelState {
    #[default]
    Open,
    /// The body ended first; its `on_end` waits for the tunnel.
    Waiting(OnEnd),
    /// The tunnel closed first.
    Closed(BodyEnd),
}

impl TunnelEnd {
    /// The tunnel closed having carried `end`.
    pub(crate) fn close(&self, end: BodyEnd) {
        let previous = std::mem::replace(&mut *self.lock(), TunnelState::Closed(end));
        if let TunnelState::Waiting(on_end) = previous {
            on_end(end);
        }
    }

    /// The body ended: run `on_end` when the tunnel closes (now if it has).
    fn defer(&self, on_end: OnEnd) {
        let mut state = self.lock();
        match std::mem::take(&mut *state) {
            TunnelState::Closed(end) => {
                *state = TunnelState::Closed(end);
                drop(state);
                on_end(end);
            }
            _ => *state = TunnelState::Waiting(on_end),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TunnelState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(drain) = this.drain.as_mut() {
            if drain.as_mut().poll(cx).is_ready() {
                this.drain = None;
                this.kind = Kind::Full(None);
                this.finish(true);
                return Poll::Ready(None);
            }
        }
        let polled = match &mut this.kind {
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            Kind::H2(body) => poll_h2(body, cx),
            Kind::H1(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                    if let Some(copy) = &this.copy {
                        copy.push(data);
                    }
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Upstream(body) => body.is_end_stream(),
            Kind::H2(body) => body.is_end_stream(),
            Kind::H1(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(Some(bytes)) => SizeHint::with_exact(bytes.len() as u64),
            Kind::Full(None) => SizeHint::with_exact(0),
            Kind::Upstream(body) => body.size_hint(),
            Kind::H2(_) => SizeHint::default(),
            Kind::H1(body) => body.size_hint(),
        }
    }
}

/// Data, then trailers, then the end, giving each data frame's capacity back.
fn poll_h2(
    body: &mut h2::RecvStream,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    match body.poll_data(cx) {
        Poll::Ready(Some(Ok(data))) => {
            let _ = body.flow_control().release_capacity(data.len());
            Poll::Ready(Some(Ok(Frame::data(data))))
        }
        Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
        Poll::Ready(None) => match body.poll_trailers(cx) {
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            Poll::Pending => Poll::Pending,
        },
        Poll::Pending => Poll::Pending,
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.is_end_stream();
        self.finish(complete);
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Full(_) => "full",
            Kind::Upstream(_) | Kind::H2(_) | Kind::H1(_) => "upstream",
        };
        f.debug_struct("ResponseBody").field("kind", &kind).finish()
    }
}

/// A bounded copy of a body's data, taken frame by frame as the body
/// streams past: the body is never held back nor buffered in front of its
/// reader. A plugin asks for one by inserting it into the request's
/// extensions in [`on_upstream_request`](crate::plugin::Plugin::on_upstream_request)
/// or the response's in [`on_response`](crate::plugin::Plugin::on_response),
/// keeps a clone, and reads it with [`take`](Self::take) once the body has
/// ended (in [`on_log`](crate::plugin::Plugin::on_log) for the response).
///
/// At most `limit` bytes are kept; past it the copy is dropped and only
/// the overflow is remembered, so a large body costs no memory.
#[derive(Clone, Debug)]
pub struct BodyCopy(Arc<Mutex<CopyState>>);

struct CopyState {
    data: Vec<u8>,
    limit: usize,
    overflowed: bool,
    /// Set when the body ended: `Some(true)` at its end of stream.
    ended: Option<bool>,
}

// By hand: a body's bytes never reach a Debug print, only their length.
impl std::fmt::Debug for CopyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyState")
            .field("len", &self.data.len())
            .field("limit", &self.limit)
            .field("overflowed", &self.overflowed)
            .field("ended", &self.ended)
            .finish()
    }
}

/// What a [`BodyCopy`] holds once its body has ended.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Copied {
    /// The whole body.
    Complete(Bytes),
    /// The body was longer than the copy's limit.
    TooLarge,
    /// The body has not ended, or ended with an error or cut short.
    Incomplete,
}

impl std::fmt::Debug for Copied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Complete(bytes) => write!(f, "Complete({} bytes)", bytes.len()),
            Self::TooLarge => f.write_str("TooLarge"),
            Self::Incomplete => f.write_str("Incomplete"),
        }
    }
}

impl BodyCopy {
    /// A copy of at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Mutex::new(CopyState {
            data: Vec::new(),
            limit,
            overflowed: false,
            ended: None,
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CopyState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, data: &[u8]) {
        let mut state = self.lock();
        if state.overflowed {
            return;
        }
        if state.data.len() + data.len() > state.limit {
            state.overflowed = true;
            state.data = Vec::new();
            return;
        }
        state.data.extend_from_slice(data);
    }

    fn end(&self, complete: bool) {
        let mut state = self.lock();
        if state.ended.is_none() {
            state.ended = Some(complete);
        }
    }

    /// The copy, taken out: what the body carried if it ended within the
    /// limit.
    pub fn take(&self) -> Copied {
        let mut state = self.lock();
        if state.overflowed {
            return Copied::TooLarge;
        }
        match state.ended {
            Some(true) => Copied::Complete(std::mem::take(&mut state.data).into()),
            _ => Copied::Incomplete,
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::{Empty, Full};

    use super::*;

    fn kind(body: &RequestBody) -> &'static str {
        match body.kind {
            RequestKind::Empty => "empty",
            RequestKind::Incoming(_) => "incoming",
            RequestKind::Boxed(_) => "boxed",
        }
    }

    #[tokio::test]
    async fn request_bodies_are_boxed_only_when_they_carry_data() {
        let empty = RequestBody::new(Empty::<Bytes>::new());
        assert_eq!(kind(&empty), "empty");
        assert!(empty.is_end_stream());

        let full = RequestBody::new(Full::new(Bytes::from_static(b"{\"a\":1}")));
        assert_eq!(kind(&full), "boxed");
        // Already a RequestBody: passed through, not boxed a second time.
        let again = RequestBody::new(full);
        assert_eq!(kind(&again), "boxed");
        assert_eq!(again.read(64).await.unwrap(), &b"{\"a\":1}"[..]);
    }

    #[tokio::test]
    async fn reading_refuses_more_than_the_limit() {
        let body = RequestBody::new(Full::new(Bytes::from(vec![b'x'; 65])));
        let error = body.read(64).await.unwrap_err();
        assert!(error.to_string().contains("length limit"), "{error}");
    }

    /// A tunnel's body reports its end once, with the tunnel's counts,
    /// whichever of the body and the tunnel ends first.
    #[test]
    fn a_tunnel_body_ends_when_the_tunnel_closes() {
        let carried = BodyEnd {
            bytes: 7,
            bytes_received: 5,
            complete: true,
        };
        for tunnel_first in [false, true] {
            let ends = Arc::new(Mutex::new(Vec::new()));
            let tunnel = TunnelEnd::default();
            let mut body = ResponseBody::tunnel(tunnel.clone());
            let seen = ends.clone();
            body.on_end(Box::new(move |end| seen.lock().unwrap().push(end)));
            if tunnel_first {
                tunnel.close(carried);
                assert!(ends.lock().unwrap().is_empty());
                drop(body);
            } else {
                drop(body);
                assert!(
                    ends.lock().unwrap().is_empty(),
                    "reported before the tunnel closed"
                );
                tunnel.close(carried);
            }
            assert_eq!(
                *ends.lock().unwrap(),
                [carried],
                "tunnel first: {tunnel_first}"
            );
        }
    }
}
