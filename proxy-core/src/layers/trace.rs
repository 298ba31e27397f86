//! Trace: gives each request an id, a span and a [`RequestContext`], runs
//! the plugins' response and log phases, and returns `X-Request-Id`.
//! Outermost, so even rescued errors are logged with their id.
//!
//! The `request` span is at `debug` level: enabled at `info`, a span per
//! request cost about 3,400 instructions (its fields formatted into a
//! `String` when it is created, entered and exited at every poll, closed),
//! for the few requests that log anything. Instead the request's future
//! runs with its context as a task-local, set at each poll, and a log
//! subscriber shows it as the span's scope on the events it writes (see
//! [`with_request_span`](crate::context::with_request_span); Paddock's own
//! does). An embedder that wants the span itself enables `debug` for this
//! module's target.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use http::{HeaderName, HeaderValue, Request};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::{
    authn::BoxFuture,
    context::{ConnectionInfo, Current, RequestContext},
    plugin::{AccessRecord, Phases, Plugins},
    request::ProxyResponse,
};

/// `X-Request-Id`, returned on every response.
pub(crate) const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Adds [`Trace`].
#[derive(Debug, Clone)]
pub(crate) struct TraceLayer {
    plugins: Plugins,
    ids: Arc<RequestIds>,
}

impl TraceLayer {
    /// Runs `plugins`' response and log phases for every request.
    pub(crate) fn new(plugins: Plugins) -> Self {
        Self {
            plugins,
            ids: Arc::new(RequestIds::new()),
        }
    }
}

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Trace<S> {
        Trace {
            inner,
            plugins: self.plugins.clone(),
            ids: self.ids.clone(),
        }
    }
}

/// Request ids: a random per-process prefix and a counter, unique without
/// a syscall per request.
#[derive(Debug)]
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    /// `{prefix:08x}-{counter:012x}`, written by hand into a buffer and
    /// copied once: `format!` with padding was about 2% of the instructions
    /// Paddock spends per request, and pushing a `char` at a time half of
    /// what was left.
    fn next(&self) -> String {
        // 8 digits, '-', at most 16 digits.
        let mut id = [0u8; 25];
        let mut len = push_hex(&mut id, 0, u64::from(self.prefix), 8);
        id[len] = b'-';
        len = push_hex(
            &mut id,
            len + 1,
            self.next.fetch_add(1, Ordering::Relaxed),
            12,
        );
        std::str::from_utf8(&id[..len])
            .expect("hex digits and '-' are ASCII")
            .to_owned()
    }
}

/// Writes `value` in lower-case hex, zero-padded to at least `width`
/// digits, into `out` at `at`; returns the position after the last digit.
fn push_hex(out: &mut [u8], at: usize, value: u64, width: usize) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (16 - value.leading_zeros() as usize / 4).max(width);
    for (i, byte) in out[at..at + digits].iter_mut().rev().enumerate() {
        let nibble = if i < 16 { (value >> (i * 4)) & 0xf } else { 0 };
        *byte = HEX[nibble as usize];
    }
    at + digits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `with_request_span` gives: the span's name, level and fields.
    fn request_span() -> Option<String> {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 += &format!(" {}={value:?}", field.name());
            }
        }
        crate::context::with_request_span(|attributes| {
            let meta = attributes.metadata();
            let mut fields = Fields(format!("{} {}", meta.name(), meta.level()));
            attributes.record(&mut fields);
            fields.0
        })
    }

    #[tokio::test]
    async fn the_request_span_is_there_while_the_request_is_polled() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let inner = tower::service_fn({
            let seen = seen.clone();
            move |_: Request<()>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(request_span());
                    // A later poll too.
                    tokio::task::yield_now().await;
                    seen.lock().unwrap().push(request_span());
                    Ok::<_, Infallible>(ProxyResponse::new(crate::body::ResponseBody::empty()))
                }
            }
        });
        let mut trace = TraceLayer::new(Plugins::default()).layer(inner);
        let request = Request::post("/api/v1/pods?watch=1").body(()).unwrap();
        let response = trace.call(request).await.unwrap();
        assert_eq!(request_span(), None);
        let id = response.headers()[REQUEST_ID].to_str().unwrap();
        let expected =
            format!("request DEBUG request.id={id} http.method=POST http.path=/api/v1/pods");
        assert_eq!(
            *seen.lock().unwrap(),
            [Some(expected.clone()), Some(expected)]
        );
    }

    #[test]
    fn ids_match_the_padded_hex_format() {
        for (prefix, counter) in [
            (0, 0),
            (1, 1),
            (0xdead_beef, 0x1234),
            (u32::MAX, (1 << 48) - 1),
            (7, 1 << 48),
            (u32::MAX, u64::MAX),
        ] {
            let ids = RequestIds {
                prefix,
                next: AtomicU64::new(counter),
            };
            assert_eq!(ids.next(), format!("{prefix:08x}-{counter:012x}"));
        }
    }
}

/// The request's span (see the module docs). Its fields are in the order
/// [`with_request_span`](crate::context::with_request_span) gives them.
fn request_span(context: &RequestContext) -> tracing::Span {
    tracing::debug_span!(
        "request",
        request.id = %context.id,
        http.method = %context.method,
        http.path = %context.path,
    )
}

/// Runs `future` as the request `context` is run, but without entering its
/// span: events logged in it are in the request's scope only as
/// [`with_request_span`](crate::context::with_request_span) shows it.
pub fn in_request_scope<F: std::future::Future>(
    context: Arc<RequestContext>,
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    let span = request_span(&context);
    Current::new(context, &span).scope(future)
}

/// The status logged for a request whose caller went away before its
/// response was ready, as nginx logs it ("client closed request").
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// Runs the log phase of a request whose response future is dropped
/// unfinished: the caller hung up, and the request may have reached the
/// cluster all the same (a `kubectl delete` interrupted), so the access log
/// and the audit log must still have it.
struct Abandoned<'a>(Option<(&'a Plugins, &'a Arc<RequestContext>)>);

impl<'a> Abandoned<'a> {
    fn guard(plugins: &'a Plugins, context: &'a Arc<RequestContext>) -> Self {
        Self(plugins.hook(Phases::LOG).then_some((plugins, context)))
    }

    /// The response is here: its body reports the end instead.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some((plugins, context)) = self.0.take() {
            plugins.run_log(&AccessRecord {
                context,
                status: http::StatusCode::from_u16(CLIENT_CLOSED_REQUEST)
                    .expect("a valid status code"),
                bytes: 0,
                bytes_received: 0,
                complete: false,
                duration: context.started.elapsed(),
            });
        }
    }
}

/// See the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Trace<S> {
    inner: S,
    plugins: Plugins,
    ids: Arc<RequestIds>,
}

impl<S, B> Service<Request<B>> for Trace<S>
where
    S: Service<Request<B>, Response = ProxyResponse, Error = Infallible> + Send,
    S::Future: Send + 'static,
{
    type Response = ProxyResponse;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<ProxyResponse, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let client_addr = request
            .extensions()
            .get::<Arc<ConnectionInfo>>()
            .and_then(|c| c.remote_addr);
        let context = Arc::new(RequestContext::new(
            self.ids.next(),
            request.method().clone(),
            request.uri().path().to_owned(),
            client_addr,
        ));
        let span = request_span(&context);
        request.extensions_mut().insert(context.clone());
        // The layers below do part of their work when called (all of it
        // when nothing has to wait): in the request's span and scope too.
        let response = span.in_scope(|| {
            Current::new(context.clone(), &span).sync_scope(|| self.inner.call(request))
        });
        let plugins = self.plugins.clone();
        Box::pin(
            Current::new(context.clone(), &span).scope(
                async move {
                    let abandoned = Abandoned::guard(&plugins, &context);
                    let Ok(response) = response.await;
                    let (mut parts, mut body) = response.into_parts();
                    if let Ok(id) = HeaderValue::from_str(&context.id) {
                        parts.headers.insert(REQUEST_ID, id);
                    }
                    if plugins.hook(Phases::RESPONSE) {
                        plugins.run_response(&context, &mut parts, &mut body).await;
                    }
                    if plugins.hook(Phases::LOG) {
                        // From here the body reports the end, whenever it comes.
                        abandoned.disarm();
                        let status = parts.status;
                        body.on_end(Box::new(move |end| {
                            plugins.run_log(&AccessRecord {
                                context: &context,
                                status,
                                bytes: end.bytes,
                                bytes_received: end.bytes_received,
                                complete: end.complete,
                                duration: context.started.elapsed(),
                            });
                        }));
                    }
                    Ok(ProxyResponse::from_parts(parts, body))
                }
                .instrument(span),
            ),
        )
    }
}
