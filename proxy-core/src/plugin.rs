//! The plugin API: a small set of phases a plugin can hook, in the spirit of
//! pingora's `ProxyHttp`. Audit, metrics and the access log are plugins.
//!
//! Phases, in the order a request meets them (the chart in [`crate::stack`]
//! shows them between the layers):
//! 1. [`Plugin::on_request`]: the caller is authenticated, not yet
//!    authorized; requests to Paddock's own `/paddock/` endpoints (logins,
//!    administration) included, just before they branch off.
//! 2. [`Plugin::on_upstream_request`]: authorized, impersonation headers set,
//!    about to be forwarded; only requests that leave Paddock.
//! 3. [`Plugin::on_response`]: response headers, before they reach the
//!    client: every response, Paddock's own errors and endpoints included.
//! 4. [`Plugin::on_log`]: once, when the response body has ended.
//!
//! Besides requests, [`Plugin::on_event`] receives what Paddock learns in
//! the background (a cluster unreachable, a provider down, a refresh
//! failing): see [`crate::events`].
//!
//! A request refused before authentication skips the first two; one a
//! phase answers with [`Flow::Respond`] skips what follows up to
//! `on_response`. What a plugin keeps from one phase for a later one goes
//! into [`RequestContext::state`].
//!
//! A plugin that says which phases it hooks ([`Plugin::phases`]) is left
//! out of the others: when no plugin hooks a request or response phase, a
//! request goes through without being taken apart for it (the access log,
//! which hooks only `on_log`, costs a request nothing before its end). One
//! whose request phases always answer at once says so
//! ([`Plugin::request_phases_are_immediate`]): then a request goes through
//! them in place, instead of in a future of their own.

use std::{
    future::Future,
    ops::BitOr,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use http::{request, response, Response, StatusCode};

use crate::{
    body::{BodyCopy, RequestBody, ResponseBody},
    context::RequestContext,
    error::ProxyError,
    events::Event,
    future::ReadyOrBoxed,
};

/// What the stack does after a phase.
// `Respond` is as large as a response's head; a phase returns it rarely and
// it is moved once, so boxing it would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Flow {
    /// Go on with the next phase.
    Continue,
    /// Stop here and answer with this response.
    Respond(Response<ResponseBody>),
}

/// The phases a plugin hooks ([`Plugin::phases`]), combined with `|`.
///
/// ```
/// use proxy_core::plugin::Phases;
/// let phases = Phases::RESPONSE | Phases::LOG;
/// assert!(phases.contains(Phases::LOG));
/// assert!(!phases.contains(Phases::REQUEST));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phases(u8);

impl Phases {
    /// No phase.
    pub const NONE: Self = Self(0);
    /// [`Plugin::on_request`].
    pub const REQUEST: Self = Self(1);
    /// [`Plugin::on_upstream_request`].
    pub const UPSTREAM_REQUEST: Self = Self(1 << 1);
    /// [`Plugin::on_response`].
    pub const RESPONSE: Self = Self(1 << 2);
    /// [`Plugin::on_log`].
    pub const LOG: Self = Self(1 << 3);
    /// [`Plugin::on_event`].
    pub const EVENT: Self = Self(1 << 4);
    /// Every phase: what a plugin hooks unless it says otherwise.
    pub const ALL: Self = Self((1 << 5) - 1);

    /// Whether every phase of `other` is among these.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for Phases {
    type Output = Self;

    fn bitor(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

/// One finished request, for logging.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    /// Everything the stack learned about the request; shared, so a log
    /// can keep it for its own thread to format instead of copying from it.
    pub context: &'a Arc<RequestContext>,
    /// The status sent to the client.
    pub status: StatusCode,
    /// Body bytes sent to the client; for an upgraded connection (exec,
    /// attach, port-forward), the bytes relayed to the client until it closed.
    pub bytes: u64,
    /// Bytes the client sent through an upgraded connection; 0 otherwise.
    pub bytes_received: u64,
    /// False when the body was cut short.
    pub complete: bool,
    /// From arrival to the end of the body.
    pub duration: Duration,
}

/// A plugin: override the phases you need; the others do nothing and cost
/// nothing. A phase that knows its answer at once returns
/// [`ReadyOrBoxed::ready`]; one that must wait returns [`ReadyOrBoxed::boxed`].
///
/// Every phase gets the request's [`RequestContext`]; what a plugin wants
/// to carry from one phase to a later one goes into its
/// [`state`](RequestContext::state), keyed by a type of the plugin's own.
/// This plugin times the part of a request after authentication:
///
/// ```
/// use std::time::{Duration, Instant};
///
/// use http::request;
/// use proxy_core::{
///     context::RequestContext,
///     error::ProxyError,
///     future::ReadyOrBoxed,
///     plugin::{AccessRecord, Flow, Plugin},
/// };
///
/// /// When authentication was done; private, so no other plugin touches it.
/// #[derive(Clone, Copy)]
/// struct Authenticated(Instant);
///
/// struct Timing;
///
/// impl Plugin for Timing {
///     fn name(&self) -> &'static str {
///         "timing"
///     }
///
///     fn on_request<'a>(
///         &'a self,
///         context: &'a RequestContext,
///         _request: &'a mut request::Parts,
///     ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
///         context.state().insert(Authenticated(Instant::now()));
///         ReadyOrBoxed::ready(Ok(Flow::Continue))
///     }
///
///     fn on_log(&self, record: &AccessRecord<'_>) {
///         // Absent when the request was refused before authentication.
///         if let Some(Authenticated(at)) = record.context.state().get() {
///             let after: Duration = at.elapsed();
///             tracing::info!(request.id = %record.context.id, ?after, "after authentication");
///         }
///     }
/// }
/// # let context = std::sync::Arc::new(RequestContext::new("1".into(), http::Method::GET, "/api".into(), None));
/// # let (mut parts, ()) = http::Request::new(()).into_parts();
/// # let flow = futures_util::FutureExt::now_or_never(Timing.on_request(&context, &mut parts));
/// # assert!(matches!(flow, Some(Ok(Flow::Continue))));
/// # assert!(context.state().get::<Authenticated>().is_some());
/// # Timing.on_log(&AccessRecord {
/// #     context: &context,
/// #     status: http::StatusCode::OK,
/// #     bytes: 0,
/// #     bytes_received: 0,
/// #     complete: true,
/// #     duration: Duration::ZERO,
/// # });
/// ```
pub trait Plugin: Send + Sync + 'static {
    /// Short name for logs.
    fn name(&self) -> &'static str;

    /// The phases this plugin hooks, asked once when the proxy is built;
    /// the others are not called. Every phase unless overridden; saying
    /// fewer spares requests the work of offering them (taking a request
    /// apart for a request phase, boxing what follows it).
    fn phases(&self) -> Phases {
        Phases::ALL
    }

    /// Whether [`on_request`](Self::on_request) and
    /// [`on_upstream_request`](Self::on_upstream_request) always answer at
    /// once, with [`ReadyOrBoxed::ready`] (they do not wait for anything).
    /// When every plugin hooking those phases says so, a request goes
    /// through them in place: not moved into a future of their own, and
    /// authentication not continued in a boxed one (about 1,500
    /// instructions per request). A future that is not ready at once is
    /// then a bug, answered with a 500. `false` unless overridden.
    fn request_phases_are_immediate(&self) -> bool {
        false
    }

    /// After authentication, before authorization.
    fn on_request<'a>(
        &'a self,
        _context: &'a RequestContext,
        _request: &'a mut request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        ReadyOrBoxed::ready(Ok(Flow::Continue))
    }

    /// After impersonation, just before the request is forwarded. A
    /// [`BodyCopy`] left in the request's extensions receives the request
    /// body as it is sent.
    fn on_upstream_request<'a>(
        &'a self,
        _context: &'a RequestContext,
        _request: &'a mut request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        ReadyOrBoxed::ready(Ok(Flow::Continue))
    }

    /// Response headers on their way to the client. A [`BodyCopy`] left in
    /// the response's extensions receives the body as it is sent, complete
    /// by the time [`on_log`](Self::on_log) runs.
    fn on_response<'a>(
        &'a self,
        _context: &'a RequestContext,
        _response: &'a mut response::Parts,
    ) -> ReadyOrBoxed<'a, ()> {
        ReadyOrBoxed::ready(())
    }

    /// Once per request, when its response body has ended. Must not block.
    fn on_log(&self, _record: &AccessRecord<'_>) {}

    /// A background event (see [`crate::events`]), on the thread that
    /// noticed it. Must not block.
    fn on_event(&self, _event: &Event) {}
}

/// The configured plugins, run in order; each phase offered only to the
/// plugins that hook it.
#[derive(Clone)]
pub(crate) struct Plugins {
    all: Arc<[Arc<dyn Plugin>]>,
    by_phase: Arc<ByPhase>,
    /// The phases some plugin hooks.
    hooked: Phases,
    /// Every plugin hooking a request phase answers it at once.
    immediate: bool,
}

/// The plugins hooking each phase, in order.
#[derive(Default)]
struct ByPhase {
    request: Box<[Arc<dyn Plugin>]>,
    upstream_request: Box<[Arc<dyn Plugin>]>,
    response: Box<[Arc<dyn Plugin>]>,
    log: Box<[Arc<dyn Plugin>]>,
    event: Box<[Arc<dyn Plugin>]>,
}

/// Which request phase to run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RequestPhase {
    Request,
    UpstreamRequest,
}

impl RequestPhase {
    /// `plugin`'s answer to this phase.
    fn offer<'a>(
        self,
        plugin: &'a Arc<dyn Plugin>,
        context: &'a RequestContext,
        parts: &'a mut request::Parts,
    ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
        match self {
            Self::Request => plugin.on_request(context, parts),
            Self::UpstreamRequest => plugin.on_upstream_request(context, parts),
        }
    }
}

/// What a request phase ends with: `None` to go on, or the response a
/// plugin answered with.
pub(crate) type PhaseResult = Result<Option<Response<ResponseBody>>, ProxyError>;

/// Hands the request body to the [`BodyCopy`] a plugin left in the
/// extensions, if one did: after the upstream request phase.
pub(crate) fn copy_request_body(request: &mut http::Request<RequestBody>) {
    if let Some(copy) = request.extensions_mut().remove::<BodyCopy>() {
        request.body_mut().copy_into(copy);
    }
}

/// The answer of a plugin that said its request phases answer at once: a
/// future that is not ready at first poll is its bug, and a 500.
fn at_once(
    plugin: &str,
    answer: ReadyOrBoxed<'_, Result<Flow, ProxyError>>,
) -> Result<Flow, ProxyError> {
    let mut answer = std::pin::pin!(answer);
    match answer
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(flow) => flow,
        Poll::Pending => Err(ProxyError::Internal {
            message: format!("plugin {plugin} said its request phases answer at once, and waited"),
        }),
    }
}

/// No plugins: every phase passes through.
impl Default for Plugins {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Plugins {
    /// The given plugins, run in this order.
    pub(crate) fn new(plugins: Vec<Arc<dyn Plugin>>) -> Self {
        let phases: Vec<Phases> = plugins.iter().map(|p| p.phases()).collect();
        let hooked = phases.iter().fold(Phases::NONE, |all, &p| all | p);
        let hooking = |phase: Phases| -> Box<[Arc<dyn Plugin>]> {
            plugins
                .iter()
                .zip(&phases)
                .filter(|(_, hooked)| hooked.contains(phase))
                .map(|(plugin, _)| plugin.clone())
                .collect()
        };
        let by_phase = ByPhase {
            request: hooking(Phases::REQUEST),
            upstream_request: hooking(Phases::UPSTREAM_REQUEST),
            response: hooking(Phases::RESPONSE),
            log: hooking(Phases::LOG),
            event: hooking(Phases::EVENT),
        };
        let immediate = by_phase
            .request
            .iter()
            .chain(&by_phase.upstream_request)
            .all(|p| p.request_phases_are_immediate());
        Self {
            all: plugins.into(),
            by_phase: Arc::new(by_phase),
            hooked,
            immediate,
        }
    }

    /// True when some plugin hooks `phase`.
    pub(crate) fn hook(&self, phase: Phases) -> bool {
        self.hooked.contains(phase)
    }

    /// Whether the request phases can run in place
    /// ([`run_request_phase_now`](Self::run_request_phase_now)): no plugin
    /// hooks them, or every one hooking them answers at once.
    pub(crate) fn request_phases_in_place(&self) -> bool {
        self.immediate
    }

    fn hooking(&self, phase: RequestPhase) -> &[Arc<dyn Plugin>] {
        match phase {
            RequestPhase::Request => &self.by_phase.request,
            RequestPhase::UpstreamRequest => &self.by_phase.upstream_request,
        }
    }

    /// Runs a request phase on the request's head. The caller takes the
    /// request apart only when some plugin [`hook`](Self::hook)s the phase,
    /// and the head stays where it is: returning the request instead moved
    /// it (about 250 bytes) in and out of the result seven times a phase,
    /// some 450 instructions a request.
    pub(crate) async fn run_request_phase(
        &self,
        phase: RequestPhase,
        context: &RequestContext,
        parts: &mut request::Parts,
    ) -> PhaseResult {
        for plugin in self.hooking(phase) {
            if let Flow::Respond(response) = phase.offer(plugin, context, parts).await? {
                return Ok(Some(response));
            }
        }
        Ok(None)
    }

    /// [`run_request_phase`](Self::run_request_phase) in place, when
    /// [`request_phases_in_place`](Self::request_phases_in_place). The same
    /// loop, taking each answer at once instead of awaiting it: one
    /// function cannot be both, and awaiting is what costs.
    pub(crate) fn run_request_phase_now(
        &self,
        phase: RequestPhase,
        context: &RequestContext,
        parts: &mut request::Parts,
    ) -> PhaseResult {
        for plugin in self.hooking(phase) {
            let answer = phase.offer(plugin, context, parts);
            if let Flow::Respond(response) = at_once(plugin.name(), answer)? {
                return Ok(Some(response));
            }
        }
        Ok(None)
    }

    /// Runs the response phase, then hands `body` to the [`BodyCopy`] a
    /// plugin left in the extensions, if one did.
    pub(crate) async fn run_response(
        &self,
        context: &RequestContext,
        response: &mut response::Parts,
        body: &mut ResponseBody,
    ) {
        for plugin in self.by_phase.response.iter() {
            plugin.on_response(context, response).await;
        }
        if let Some(copy) = response.extensions.remove::<BodyCopy>() {
            body.copy_into(copy);
        }
    }

    pub(crate) fn run_log(&self, record: &AccessRecord<'_>) {
        for plugin in self.by_phase.log.iter() {
            plugin.on_log(record);
        }
    }

    pub(crate) fn run_event(&self, event: &Event) {
        for plugin in self.by_phase.event.iter() {
            plugin.on_event(event);
        }
    }
}

impl std::fmt::Debug for Plugins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.all.iter().map(|p| p.name()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use futures_util::FutureExt;

    use super::*;

    /// Records the phases it was offered; a waiting one answers its
    /// request phases after a yield, whatever it says.
    struct Recorder {
        phases: Phases,
        seen: Mutex<Vec<&'static str>>,
        says_immediate: bool,
        waits: bool,
    }

    impl Recorder {
        fn answer(&self, phase: &'static str) -> ReadyOrBoxed<'_, Result<Flow, ProxyError>> {
            self.seen.lock().unwrap().push(phase);
            if !self.waits {
                return ReadyOrBoxed::ready(Ok(Flow::Continue));
            }
            ReadyOrBoxed::boxed(async {
                tokio::task::yield_now().await;
                Ok(Flow::Continue)
            })
        }
    }

    impl Plugin for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }

        fn phases(&self) -> Phases {
            self.phases
        }

        fn request_phases_are_immediate(&self) -> bool {
            self.says_immediate
        }

        fn on_request<'a>(
            &'a self,
            _context: &'a RequestContext,
            _request: &'a mut request::Parts,
        ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
            self.answer("request")
        }

        fn on_upstream_request<'a>(
            &'a self,
            _context: &'a RequestContext,
            _request: &'a mut request::Parts,
        ) -> ReadyOrBoxed<'a, Result<Flow, ProxyError>> {
            self.answer("upstream")
        }

        fn on_response<'a>(
            &'a self,
            _context: &'a RequestContext,
            _response: &'a mut response::Parts,
        ) -> ReadyOrBoxed<'a, ()> {
            self.seen.lock().unwrap().push("response");
            ReadyOrBoxed::ready(())
        }

        fn on_log(&self, _record: &AccessRecord<'_>) {
            self.seen.lock().unwrap().push("log");
        }

        fn on_event(&self, _event: &Event) {
            self.seen.lock().unwrap().push("event");
        }
    }

    fn recorder(phases: Phases) -> Arc<Recorder> {
        Arc::new(Recorder {
            phases,
            seen: Mutex::default(),
            says_immediate: true,
            waits: false,
        })
    }

    fn waiter(phases: Phases, says_immediate: bool) -> Arc<Recorder> {
        Arc::new(Recorder {
            phases,
            seen: Mutex::default(),
            says_immediate,
            waits: true,
        })
    }

    /// Every phase, run once each.
    fn run_all(plugins: &Plugins) {
        let context = Arc::new(RequestContext::new(
            "1".into(),
            http::Method::GET,
            "/api".into(),
            None,
        ));
        for phase in [RequestPhase::Request, RequestPhase::UpstreamRequest] {
            let (mut parts, ()) = http::Request::new(()).into_parts();
            let ran = plugins
                .run_request_phase(phase, &context, &mut parts)
                .now_or_never();
            assert!(matches!(ran, Some(Ok(None))));
        }
        let (mut parts, ()) = Response::new(()).into_parts();
        let mut body = ResponseBody::empty();
        plugins
            .run_response(&context, &mut parts, &mut body)
            .now_or_never()
            .expect("ready");
        plugins.run_log(&AccessRecord {
            context: &context,
            status: StatusCode::OK,
            bytes: 0,
            bytes_received: 0,
            complete: true,
            duration: Duration::ZERO,
        });
        plugins.run_event(&Event::ProviderHealth {
            provider: "ldap".into(),
            problem: None,
        });
    }

    #[test]
    fn each_phase_is_offered_only_to_the_plugins_hooking_it() {
        let log_only = recorder(Phases::LOG);
        let every = recorder(Phases::ALL);
        let edges = recorder(Phases::REQUEST | Phases::EVENT);
        let plugins = Plugins::new(vec![log_only.clone(), every.clone(), edges.clone()]);
        run_all(&plugins);
        assert_eq!(*log_only.seen.lock().unwrap(), ["log"]);
        assert_eq!(
            *every.seen.lock().unwrap(),
            ["request", "upstream", "response", "log", "event"]
        );
        assert_eq!(*edges.seen.lock().unwrap(), ["request", "event"]);
    }

    fn context() -> RequestContext {
        RequestContext::new("1".into(), http::Method::GET, "/api".into(), None)
    }

    fn parts() -> request::Parts {
        http::Request::new(()).into_parts().0
    }

    #[test]
    fn immediate_request_phases_run_in_place_once() {
        let every = recorder(Phases::ALL);
        // Not hooking a request phase, it has no say in how they run.
        let plugins = Plugins::new(vec![every.clone(), waiter(Phases::LOG, false)]);
        assert!(plugins.request_phases_in_place());
        for phase in [RequestPhase::Request, RequestPhase::UpstreamRequest] {
            let ran = plugins.run_request_phase_now(phase, &context(), &mut parts());
            assert!(matches!(ran, Ok(None)));
        }
        assert_eq!(*every.seen.lock().unwrap(), ["request", "upstream"]);
        for phase in [Phases::REQUEST, Phases::UPSTREAM_REQUEST] {
            let plugins = Plugins::new(vec![every.clone(), waiter(phase, false)]);
            assert!(!plugins.request_phases_in_place(), "{phase:?}");
        }
        assert!(Plugins::default().request_phases_in_place());
    }

    #[test]
    fn a_plugin_that_waits_after_saying_it_would_not_is_a_500_naming_it() {
        let plugins = Plugins::new(vec![waiter(Phases::REQUEST, true)]);
        let ran = plugins.run_request_phase_now(RequestPhase::Request, &context(), &mut parts());
        match ran {
            Err(error @ ProxyError::Internal { .. }) => {
                assert!(error.to_string().contains("recorder"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_plugin_that_waits_keeps_its_phases_in_a_future() {
        let waiting = waiter(Phases::UPSTREAM_REQUEST, false);
        let plugins = Plugins::new(vec![waiting.clone()]);
        assert!(!plugins.request_phases_in_place());
        let phase = RequestPhase::UpstreamRequest;
        let ran = plugins
            .run_request_phase(phase, &context(), &mut parts())
            .await;
        assert!(matches!(ran, Ok(None)));
        assert_eq!(*waiting.seen.lock().unwrap(), ["upstream"]);
    }

    #[test]
    fn the_stack_asks_which_phases_any_plugin_hooks() {
        let plugins = Plugins::new(vec![recorder(Phases::LOG), recorder(Phases::EVENT)]);
        assert!(plugins.hook(Phases::LOG) && plugins.hook(Phases::EVENT));
        for phase in [Phases::REQUEST, Phases::UPSTREAM_REQUEST, Phases::RESPONSE] {
            assert!(!plugins.hook(phase), "{phase:?}");
        }
        assert!(!Plugins::default().hook(Phases::LOG));
        assert!(Plugins::new(vec![recorder(Phases::ALL)]).hook(Phases::RESPONSE));
    }
}
