//! Per-request state shared by the layers and the plugins, carried in the
//! request's extensions as an `Arc<RequestContext>`, and the request the
//! current task is serving, for log subscribers ([`with_request_span`]).

use std::{
    any::{Any, TypeId},
    net::SocketAddr,
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError},
    time::Instant,
};

use http::Method;
use policy::RequestAttributes;
use tracing::{field::display, span::Attributes, Metadata};

pub use policy::Decision;

use crate::{authn::Identity, upstream::Cluster};

/// What Paddock learned about one request as it went down the stack. Each
/// fact is set once, by the layer that owns it, and read by later ones and
/// by the access log when the response body ends.
#[derive(Debug)]
pub struct RequestContext {
    /// Unique id, also returned to the client as `X-Request-Id`.
    pub id: String,
    /// When the request arrived.
    pub started: Instant,
    /// The request method.
    pub method: Method,
    /// The path as the client sent it (no query: queries may carry secrets).
    pub path: String,
    /// The client's address.
    pub client_addr: Option<SocketAddr>,
    identity: OnceLock<Arc<Identity>>,
    impersonated: OnceLock<Arc<Identity>>,
    // Kept here rather than in the request's extensions: each extension is
    // a separate allocation, the context is one.
    cluster: OnceLock<Arc<Cluster>>,
    attributes: OnceLock<RequestAttributes>,
    decision: OnceLock<Decision>,
    login: OnceLock<Login>,
    authn_attempt: OnceLock<crate::authn::AuthnAttempt>,
    state: PluginState,
}

impl RequestContext {
    /// A context for a request that just arrived.
    pub fn new(id: String, method: Method, path: String, client_addr: Option<SocketAddr>) -> Self {
        Self {
            id,
            started: Instant::now(),
            method,
            path,
            client_addr,
            identity: OnceLock::new(),
            impersonated: OnceLock::new(),
            cluster: OnceLock::new(),
            attributes: OnceLock::new(),
            decision: OnceLock::new(),
            login: OnceLock::new(),
            authn_attempt: OnceLock::new(),
            state: PluginState::default(),
        }
    }

    /// The plugins' own per-request state: what one phase leaves for a
    /// later one (see [`PluginState`]).
    pub fn state(&self) -> &PluginState {
        &self.state
    }

    /// The authenticated caller, once known.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.get()
    }

    /// Records the authenticated caller.
    pub(crate) fn set_identity(&self, identity: Arc<Identity>) {
        let _ = self.identity.set(identity);
    }

    /// The identity the caller acts as through `kubectl --as`, when allowed.
    pub fn impersonated(&self) -> Option<&Arc<Identity>> {
        self.impersonated.get()
    }

    /// Records the identity the caller acts as.
    pub(crate) fn set_impersonated(&self, identity: Arc<Identity>) {
        let _ = self.impersonated.set(identity);
    }

    /// The identity presented downstream: the impersonated one if any.
    pub fn effective_identity(&self) -> Option<&Arc<Identity>> {
        self.impersonated().or_else(|| self.identity())
    }

    /// The target cluster's id, once routed.
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.get().map(|cluster| cluster.id())
    }

    /// The target cluster, once routed.
    pub(crate) fn target(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Records the target cluster.
    pub(crate) fn set_target(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// What the request asks for in RBAC terms, once routed to a cluster.
    pub fn attributes(&self) -> Option<&RequestAttributes> {
        self.attributes.get()
    }

    /// Records the request's attributes.
    pub(crate) fn set_attributes(&self, attributes: RequestAttributes) {
        let _ = self.attributes.set(attributes);
    }

    /// The authorization decision, once made.
    pub fn decision(&self) -> Option<&Decision> {
        self.decision.get()
    }

    /// Records the authorization decision.
    pub(crate) fn set_decision(&self, decision: Decision) {
        let _ = self.decision.set(decision);
    }

    /// The outcome of a login at one of Paddock's login endpoints, once
    /// known: who tried, with which provider, and how it went.
    pub fn login(&self) -> Option<&Login> {
        self.login.get()
    }

    /// Records a login's outcome.
    pub(crate) fn set_login(&self, login: Login) {
        let _ = self.login.set(login);
    }

    /// How authenticating this request's credential ended, when it was
    /// refused or was a login at one of Paddock's login endpoints (an
    /// accepted credential needs no record: [`identity`](Self::identity)
    /// says so; a request without a credential made no attempt).
    pub fn authn_attempt(&self) -> Option<&crate::authn::AuthnAttempt> {
        self.authn_attempt.get()
    }

    /// Records how authenticating the request's credential ended.
    pub(crate) fn set_authn_attempt(&self, attempt: crate::authn::AuthnAttempt) {
        let _ = self.authn_attempt.set(attempt);
    }
}

tokio::task_local! {
    /// The request whose future the current task is polling: set by the
    /// trace layer around every poll, read by [`with_request_span`].
    static CURRENT: Current;
}

/// What [`CURRENT`] holds: the request, and the metadata of its `request`
/// span (disabled or not) so its fields are the span's own.
pub(crate) struct Current {
    context: Arc<RequestContext>,
    span: &'static Metadata<'static>,
}

impl Current {
    /// `context`, whose span is `span` (enabled or not).
    pub(crate) fn new(context: Arc<RequestContext>, span: &tracing::Span) -> Self {
        Self {
            context,
            span: span.metadata().expect("a span's metadata, enabled or not"),
        }
    }

    /// Calls `f` with this as the current request: for the layers' work
    /// done when a request is handed to them, before their future is
    /// polled.
    pub(crate) fn sync_scope<R>(self, f: impl FnOnce() -> R) -> R {
        CURRENT.sync_scope(self, f)
    }

    /// Runs `future` with this as the current request at each poll (and
    /// when it is dropped unfinished).
    pub(crate) fn scope<F: std::future::Future>(
        self,
        future: F,
    ) -> tokio::task::futures::TaskLocalFuture<Current, F> {
        CURRENT.scope(self, future)
    }
}

/// Calls `f` with the attributes the `request` span of the request being
/// served has (`request.id`, `http.method`, `http.path`), if the current
/// task is polling a request's future; `None` otherwise.
///
/// The span itself is at `debug` level: at `info` and above a span per
/// request would cost more than the rest of the logging, though nothing is
/// logged inside most requests. A subscriber that shows events in their
/// spans' scope can show this one as if it were entered, paying only when
/// an event is written; the metadata is the real span's, so a subscriber
/// can tell when the span is in the scope already (its callsite is the
/// same).
pub fn with_request_span<R>(f: impl FnOnce(&Attributes<'_>) -> R) -> Option<R> {
    CURRENT
        .try_with(|current| {
            let context = &current.context;
            let (id, method, path) = (
                display(&context.id),
                display(&context.method),
                display(&context.path),
            );
            // In the span's field order (see the trace layer).
            let values: [Option<&dyn tracing::Value>; 3] = [Some(&id), Some(&method), Some(&path)];
            f(&Attributes::new(
                current.span,
                &current.span.fields().value_set_all(&values),
            ))
        })
        .ok()
}

/// A login attempt (`POST /paddock/v1/login`, the sign-in form), for the
/// audit log: the caller is not authenticated yet, so the context's
/// identity says nothing about who tried. Never holds the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Login {
    /// The provider asked, e.g. `local`, `ldap`, `github`.
    pub provider: String,
    /// The login name given (empty for token providers).
    pub username: String,
    /// How it went.
    pub outcome: LoginOutcome,
}

/// How a login went.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginOutcome {
    /// Logged in as this Paddock user id.
    Succeeded {
        /// The user's id.
        user: String,
    },
    /// Refused, and why (wrong credentials, throttled, provider down).
    Failed {
        /// The reason, as logged.
        reason: String,
    },
}

impl Login {
    pub(crate) fn new(provider: &str, username: &str, outcome: LoginOutcome) -> Self {
        Self {
            provider: provider.to_owned(),
            username: username.to_owned(),
            outcome,
        }
    }
}

/// Per-request values the plugins keep between phases, one per type: a
/// start time set in `on_request` and read in `on_log`, a rate-limit
/// permit held until the request ends, an audit record filled in phase by
/// phase. See the example on [`Plugin`](crate::plugin::Plugin).
///
/// Values are keyed by their type, so a plugin should store a type of its
/// own (a newtype around an `Instant` rather than the `Instant`), which no
/// other plugin can read or overwrite. Each value lives as long as the
/// request's context: until the access log has run.
///
/// Free when unused: an empty state is a lock around an empty list, and
/// nothing is allocated until the first [`insert`](Self::insert). The lock
/// is held only inside these methods, never across an `.await`. A request
/// holds a few values at most, so they are found by comparing type ids in
/// a short list, without a map to allocate and hash into.
#[derive(Default)]
pub struct PluginState {
    values: Mutex<Vec<(TypeId, Box<dyn Any + Send + Sync>)>>,
}

impl PluginState {
    /// Stores `value`, returning the value of the same type stored before.
    pub fn insert<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        let mut values = self.lock();
        match values.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
            Some((_, slot)) => slot
                .downcast_mut::<T>()
                .map(|old| std::mem::replace(old, value)),
            None => {
                if values.capacity() == 0 {
                    values.reserve_exact(4);
                }
                values.push((TypeId::of::<T>(), Box::new(value)));
                None
            }
        }
    }

    /// A copy of the value of type `T`, if one was stored. Store an `Arc`
    /// to share something expensive to clone.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.lock()
            .iter()
            .find(|(id, _)| *id == TypeId::of::<T>())
            .and_then(|(_, value)| value.downcast_ref::<T>().cloned())
    }

    /// Takes the value of type `T` out.
    pub fn remove<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        let mut values = self.lock();
        let index = values.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
        values
            .swap_remove(index)
            .1
            .downcast::<T>()
            .ok()
            .map(|value| *value)
    }

    /// Runs `f` on the value of type `T`, inserting `T::default()` first
    /// when there is none (a counter, a list of notes). `f` runs with the
    /// state locked: it must not block nor use this state again.
    pub fn with_mut<T, R>(&self, f: impl FnOnce(&mut T) -> R) -> R
    where
        T: Clone + Default + Send + Sync + 'static,
    {
        let mut values = self.lock();
        let index = match values.iter().position(|(id, _)| *id == TypeId::of::<T>()) {
            Some(index) => index,
            None => {
                values.push((TypeId::of::<T>(), Box::new(T::default())));
                values.len() - 1
            }
        };
        let value = values[index]
            .1
            .downcast_mut::<T>()
            .expect("a value is stored under its own type id");
        f(value)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<(TypeId, Box<dyn Any + Send + Sync>)>> {
        // A plugin that panicked mid-update leaves its own value as it
        // was; the map itself is never half-written.
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for PluginState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginState")
            .field("values", &self.lock().len())
            .finish()
    }
}

/// Reads the context a request carries. Every request inside the stack has
/// one (the trace layer inserts it); outside the stack a fresh one is made.
pub(crate) fn of<B>(request: &http::Request<B>) -> Arc<RequestContext> {
    request
        .extensions()
        .get::<Arc<RequestContext>>()
        .cloned()
        .unwrap_or_else(|| {
            Arc::new(RequestContext::new(
                String::new(),
                request.method().clone(),
                request.uri().path().to_owned(),
                None,
            ))
        })
}

/// Facts about the connection a request arrived on, inserted into every
/// request's extensions by the server.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The verified client certificate, if the client presented one.
    pub client_cert: Option<Arc<crate::authn::client_cert::ClientCertificate>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_state_keeps_one_value_per_type() {
        #[derive(Clone, Debug, PartialEq)]
        struct Started(u32);
        #[derive(Clone, Default, Debug, PartialEq)]
        struct Notes(Vec<&'static str>);

        let context = RequestContext::new(String::new(), Method::GET, "/".into(), None);
        let state = context.state();
        assert_eq!(state.get::<Started>(), None);
        assert_eq!(state.insert(Started(1)), None);
        assert_eq!(state.insert(Started(2)), Some(Started(1)));
        state.with_mut(|notes: &mut Notes| notes.0.push("authenticated"));
        state.with_mut(|notes: &mut Notes| notes.0.push("forwarded"));
        assert_eq!(state.get::<Started>(), Some(Started(2)));
        assert_eq!(
            state.remove::<Notes>(),
            Some(Notes(vec!["authenticated", "forwarded"]))
        );
        assert_eq!(state.get::<Notes>(), None);
    }
}
