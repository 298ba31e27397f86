//! A faithful stand-in for kube-apiserver, for tests and benchmarks (no
//! kube-apiserver binary can be installed on these machines).
//!
//! It authenticates the proxy by its bearer token (401 otherwise), applies
//! the Kubernetes impersonation filter's semantics, serves discovery,
//! OpenAPI v3, namespaces and pods (with server-side Tables for kubectl),
//! watches and `logs -f` the test can feed, SelfSubjectReview, exec and
//! attach over WebSocket and SPDY/3.1, and port-forward (SPDY/3.1, or SPDY tunnelled in
//! a WebSocket) to an echo server on every pod's [`PORT_FORWARD_PORT`]. It records every request, and every sign that a caller's
//! credential or identity header got through is a *violation*: the request
//! fails with 500 and [`FakeApiServer::assert_clean`] panics.

// A refused request *is* its response here; boxing it buys nothing in test code.
#![allow(clippy::result_large_err)]

mod discovery;
mod exec;
mod impersonation;
mod late_start;
mod nodes;
mod portforward;
mod rbac;
mod resources;
mod spdy;
mod upgrade;
mod webhook;

use std::{
    borrow::Cow,
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use serde_json::{json, Value};
use tokio::{
    net::TcpListener,
    sync::{broadcast, watch},
    task::JoinHandle,
};

pub use impersonation::{UserInfo, PROXY_USER};
pub use portforward::PORT as PORT_FORWARD_PORT;
pub use resources::{FIREHOSE, FIREHOSE_CHUNK};
pub use webhook::TokenWebhook;

use crate::tls::TestCa;
use late_start::LateStart;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeApiConfig {
    /// The bearer token the proxy must present.
    pub token: String,
    /// Substrings that must never reach the apiserver (tests mark caller-sent values with them).
    pub poison: Vec<String>,
    /// Namespaces that exist at start (`default` always does).
    pub namespaces: Vec<String>,
    /// Pods `(namespace, name)` that exist at start.
    pub pods: Vec<(String, String)>,
    /// Nodes `(name, ready)` (default: one ready node, `node-1`).
    pub nodes: Vec<(String, bool)>,
    /// Serve plain HTTP instead of TLS.
    pub plain_http: bool,
    /// Offer only HTTP/1.1 in ALPN, like a server without HTTP/2.
    pub http1_only: bool,
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` per HTTP/2 connection:
    /// kube-apiserver's 100 unless a test needs another.
    pub max_streams: u32,
    /// How long each connection's first bytes after the TLS handshake
    /// wait, as from a server far away: the client's first requests go out
    /// before the server's HTTP/2 SETTINGS arrive.
    pub first_write_delay: Duration,
    /// Listen address (port 0 for any).
    pub listen: SocketAddr,
}

impl Default for FakeApiConfig {
    fn default() -> Self {
        Self {
            token: "proxy-sa-token".to_owned(),
            poison: vec!["caller-poison".to_owned()],
            namespaces: vec!["default".to_owned()],
            pods: Vec::new(),
            nodes: vec![("node-1".to_owned(), true)],
            plain_http: false,
            http1_only: false,
            max_streams: 100,
            first_write_delay: Duration::ZERO,
            listen: ([127, 0, 0, 1], 0).into(),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// HTTP version.
    pub version: Version,
    /// All headers.
    pub headers: HeaderMap,
    /// The identity the request ran as (after impersonation).
    pub user: Option<UserInfo>,
}

/// A watch event the test sends to open watches.
#[derive(Debug, Clone)]
struct WatchEvent {
    namespace: String,
    kind: &'static str,
    object: Value,
}

pub(crate) struct State {
    config: FakeApiConfig,
    requests: Mutex<Vec<RecordedRequest>>,
    violations: Mutex<Vec<String>>,
    pods: Mutex<BTreeMap<(String, String), Value>>,
    namespaces: Mutex<Vec<String>>,
    nodes: Mutex<BTreeMap<String, bool>>,
    logs: Mutex<BTreeMap<String, Vec<String>>>,
    watch_tx: broadcast::Sender<WatchEvent>,
    log_tx: broadcast::Sender<(String, String)>,
    resource_version: std::sync::atomic::AtomicU64,
    bench_pod: Bytes,
    /// Bumped to close every open connection.
    generation: watch::Sender<u64>,
    /// Authenticates bearer tokens other than the proxy's.
    token_webhook: Mutex<Option<TokenWebhook>>,
    /// `rbac.authorization.k8s.io/v1` objects, ConfigMaps and Secrets.
    rbac: Mutex<rbac::Objects>,
    /// What every pod's port [`PORT_FORWARD_PORT`] is: an echo server.
    echo: SocketAddr,
    /// RBAC objects may be read, not written (403, as kube-apiserver's
    /// authorizer answers a credential without the rights).
    rbac_read_only: std::sync::atomic::AtomicBool,
    /// Lists of RBAC objects send their headers and the start of their
    /// body, then nothing more.
    rbac_lists_stall: std::sync::atomic::AtomicBool,
}

/// A running fake apiserver.
pub struct FakeApiServer {
    state: Arc<State>,
    addr: SocketAddr,
    ca_pem: String,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FakeApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApiServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeApiServer {
    /// Starts serving on `config.listen`.
    pub async fn start(config: FakeApiConfig) -> anyhow::Result<Self> {
        let ca = TestCa::new();
        let cert = ca.issue_server(&["127.0.0.1", "localhost"]);
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let mut pods = BTreeMap::new();
        for (ns, name) in &config.pods {
            pods.insert((ns.clone(), name.clone()), resources::pod(ns, name, 1));
        }
        let mut namespaces = config.namespaces.clone();
        if !namespaces.iter().any(|n| n == "default") {
            namespaces.push("default".to_owned());
        }
        let state = Arc::new(State {
            requests: Mutex::default(),
            violations: Mutex::default(),
            pods: Mutex::new(pods),
            namespaces: Mutex::new(namespaces),
            nodes: Mutex::new(config.nodes.iter().cloned().collect()),
            logs: Mutex::default(),
            watch_tx: broadcast::channel(1024).0,
            log_tx: broadcast::channel(1024).0,
            resource_version: 100.into(),
            bench_pod: Bytes::from(resources::pod("default", "bench", 1).to_string()),
            generation: watch::channel(0).0,
            token_webhook: Mutex::new(None),
            rbac: Mutex::default(),
            echo: portforward::echo_server().await?,
            rbac_read_only: std::sync::atomic::AtomicBool::new(false),
            rbac_lists_stall: std::sync::atomic::AtomicBool::new(false),
            config,
        });
        let tls = (!state.config.plain_http).then(|| {
            let mut server = (*cert.server_config()).clone();
            if state.config.http1_only {
                server.alpn_protocols = vec![b"http/1.1".to_vec()];
            }
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(state.config.max_streams)
            .max_header_list_size(1 << 20);
        let builder = Arc::new(builder);
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (state, builder, tls) = (serving.clone(), builder.clone(), tls.clone());
                let delay = state.config.first_write_delay;
                let mut generation = state.generation.subscribe();
                generation.mark_unchanged();
                let connection = async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, request).await) }
                    });
                    match tls {
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let stream = LateStart::new(stream, delay);
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                        None => {
                            let stream = LateStart::new(stream, delay);
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                };
                tokio::spawn(async move {
                    tokio::select! {
                        () = connection => {}
                        // Dropped mid-flight, like a server that restarts.
                        _ = generation.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            state,
            addr,
            ca_pem: ca.pem().to_owned(),
            task,
        })
    }

    /// Adds node `name`, or sets whether it is ready.
    pub fn set_node(&self, name: &str, ready: bool) {
        self.state
            .nodes
            .lock()
            .unwrap()
            .insert(name.to_owned(), ready);
    }

    /// Authenticates bearer tokens other than the proxy's through `webhook`
    /// from now on, as kube-apiserver started with
    /// `--authentication-token-webhook-config-file` does.
    pub fn set_token_webhook(&self, webhook: TokenWebhook) {
        *self.state.token_webhook.lock().unwrap() = Some(webhook);
    }

    /// The stored RBAC objects of `resource` (`clusterroles`,
    /// `clusterrolebindings`, `roles`, `rolebindings`), in (namespace, name) order.
    pub fn rbac_objects(&self, resource: &str) -> Vec<Value> {
        self.state
            .rbac
            .lock()
            .unwrap()
            .iter()
            .filter(|((r, _, _), _)| r == resource)
            .map(|(_, o)| o.clone())
            .collect()
    }

    /// Deletes an RBAC object by hand, as `kubectl delete` would; whether it existed.
    pub fn delete_rbac_object(&self, resource: &str, namespace: &str, name: &str) -> bool {
        self.state
            .rbac
            .lock()
            .unwrap()
            .remove(&(resource.to_owned(), namespace.to_owned(), name.to_owned()))
            .is_some()
    }

    /// From now on, refuses (`forbid`) or allows again every write of an
    /// RBAC object with 403 Forbidden, as kube-apiserver does for a
    /// credential that may list RBAC objects but not write them.
    pub fn forbid_rbac_writes(&self, forbid: bool) {
        self.state
            .rbac_read_only
            .store(forbid, std::sync::atomic::Ordering::SeqCst);
    }

    /// From now on, answers (`stall`) every list of RBAC objects with its
    /// headers and the start of its body, then nothing more, the
    /// connection held open, as an API server or a tunnel that stalls
    /// mid-answer; or answers them whole again.
    pub fn stall_rbac_lists(&self, stall: bool) {
        self.state
            .rbac_lists_stall
            .store(stall, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stores an RBAC object by hand (created or replaced, as someone else's
    /// `kubectl apply` would).
    pub fn put_rbac_object(&self, resource: &str, mut object: Value) {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        object["metadata"]["resourceVersion"] =
            self.state.next_resource_version().to_string().into();
        self.state
            .rbac
            .lock()
            .unwrap()
            .insert((resource.to_owned(), namespace, name), object);
    }

    /// Closes every open connection at once (no GOAWAY), as a crashing or
    /// restarting apiserver would; new connections are served as before.
    pub fn drop_connections(&self) {
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// `https://127.0.0.1:<port>` (or `http://` in plain mode).
    pub fn url(&self) -> String {
        let scheme = if self.state.config.plain_http {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the server certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The proxy credential it accepts.
    pub fn token(&self) -> &str {
        &self.state.config.token
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.requests.lock().unwrap().clone()
    }

    /// The last request whose path starts with `path`.
    pub fn last_request(&self, path: &str) -> Option<RecordedRequest> {
        self.requests()
            .into_iter()
            .rev()
            .find(|r| r.uri.starts_with(path))
    }

    /// Adds a pod (and emits an ADDED watch event).
    pub fn add_pod(&self, namespace: &str, name: &str) {
        let rv = self.state.next_resource_version();
        let pod = resources::pod(namespace, name, rv);
        self.state
            .pods
            .lock()
            .unwrap()
            .insert((namespace.to_owned(), name.to_owned()), pod.clone());
        self.send_watch_event(namespace, "ADDED", pod);
    }

    /// Sends an event to every open pod watch in `namespace` (`ADDED`, `MODIFIED`, `DELETED`).
    pub fn send_watch_event(&self, namespace: &str, kind: &'static str, object: Value) {
        let _ = self.state.watch_tx.send(WatchEvent {
            namespace: namespace.to_owned(),
            kind,
            object,
        });
    }

    /// The number of open pod watches.
    pub fn watchers(&self) -> usize {
        self.state.watch_tx.receiver_count()
    }

    /// Appends a line to a pod's log (seen by `logs -f` at once).
    pub fn send_log_line(&self, pod: &str, line: &str) {
        self.state
            .logs
            .lock()
            .unwrap()
            .entry(pod.to_owned())
            .or_default()
            .push(line.to_owned());
        let _ = self.state.log_tx.send((pod.to_owned(), line.to_owned()));
    }

    /// What went wrong so far: caller credentials or identity headers that reached the apiserver.
    pub fn violations(&self) -> Vec<String> {
        self.state.violations.lock().unwrap().clone()
    }

    /// Takes the violations recorded so far, for tests that provoke them on purpose.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut *self.state.violations.lock().unwrap())
    }

    /// Panics if any caller credential or identity header ever reached the fake.
    pub fn assert_clean(&self) {
        let violations = self.violations();
        assert!(
            violations.is_empty(),
            "caller credentials or identity headers reached the apiserver:\n{}",
            violations.join("\n")
        );
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
        if !std::thread::panicking() {
            self.assert_clean();
        }
    }
}

impl State {
    fn next_resource_version(&self) -> u64 {
        self.resource_version
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn violation(&self, what: String) -> Response<Body> {
        self.violations.lock().unwrap().push(what.clone());
        status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            &format!("VIOLATION: {what}"),
        )
    }
}

/// Who presented the request.
enum Presenter {
    /// The proxy, with its credential.
    Proxy,
    /// A caller talking to the apiserver directly, with a bearer token for
    /// the token webhook.
    Token(Box<TokenWebhook>, String),
}

/// Checks the proxy's credential and that nothing of the caller's got through.
fn screen(state: &State, headers: &HeaderMap) -> Result<Presenter, Response<Body>> {
    // Per header, without allocating for an ordinary one: the load
    // benchmark's requests pass here too, and a backend's cost per header
    // should not be this check's.
    for (name, value) in headers {
        let name = name.as_str();
        // A name with `_` for `-`, which some servers read as the other.
        let dashed = if name.contains('_') {
            Cow::Owned(name.replace('_', "-"))
        } else {
            Cow::Borrowed(name)
        };
        if dashed.starts_with("x-remote-") {
            return Err(state.violation(format!("header {name} reached the apiserver")));
        }
        if name == "cookie" {
            return Err(state.violation("a Cookie reached the apiserver".to_owned()));
        }
        if !state.config.poison.is_empty() {
            let text = String::from_utf8_lossy(value.as_bytes());
            if let Some(poison) = state
                .config
                .poison
                .iter()
                .find(|p| text.contains(p.as_str()))
            {
                return Err(state.violation(format!(
                    "caller value {poison:?} reached the apiserver in {name}"
                )));
            }
        }
        if name.contains('_') && dashed.starts_with("impersonate-") {
            return Err(state.violation(format!("header {name} reached the apiserver")));
        }
    }
    let is_proxy = |value: &http::HeaderValue| {
        value.as_bytes().strip_prefix(b"Bearer ") == Some(state.config.token.as_bytes())
    };
    let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
    match (authorization.next(), authorization.next()) {
        (Some(value), None) if is_proxy(value) => Ok(Presenter::Proxy),
        (Some(value), None) if state.token_webhook.lock().unwrap().is_some() => {
            let webhook = state.token_webhook.lock().unwrap().clone();
            match (
                webhook,
                value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")),
            ) {
                (Some(webhook), Some(token)) => {
                    Ok(Presenter::Token(Box::new(webhook), token.to_owned()))
                }
                _ => Err(status(
                    StatusCode::UNAUTHORIZED,
                    "Unauthorized",
                    "Unauthorized",
                )),
            }
        }
        (None, None) => Err(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        )),
        _ => Err(state
            .violation("an Authorization other than the proxy's reached the apiserver".to_owned())),
    }
}

async fn handle(state: Arc<State>, request: Request<Incoming>) -> Response<Body> {
    // The load benchmark's endpoint: no recording, no locks.
    if request.uri().path() == "/api/v1/namespaces/default/pods/bench"
        && request.method() == Method::GET
    {
        match screen(&state, request.headers()) {
            Ok(Presenter::Proxy) => {}
            Ok(Presenter::Token(..)) => {
                return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
            }
            Err(response) => return response,
        }
        return json_response(StatusCode::OK, state.bench_pod.clone());
    }
    let mut recorded = RecordedRequest {
        method: request.method().clone(),
        uri: request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned(),
        version: request.version(),
        headers: request.headers().clone(),
        user: None,
    };
    let user = match screen(&state, request.headers()) {
        Ok(Presenter::Proxy) => impersonation::user_info(request.headers()),
        Ok(Presenter::Token(webhook, token)) => {
            direct_user(&webhook, &token, request.headers()).await
        }
        Err(response) => Err(response),
    };
    recorded.user = user.as_ref().ok().cloned();
    state.requests.lock().unwrap().push(recorded);
    match user {
        Ok(user) => route(state, request, user).await,
        Err(response) => response,
    }
}

/// A caller's own bearer token, through the webhook. The fake has no RBAC
/// to let such a caller impersonate anyone.
async fn direct_user(
    webhook: &TokenWebhook,
    token: &str,
    headers: &HeaderMap,
) -> Result<UserInfo, Response<Body>> {
    let unauthorized = || status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    let user = match webhook.review(token).await {
        Ok(Some(user)) => user,
        Ok(None) => return Err(unauthorized()),
        Err(error) => {
            tracing::warn!(%error, "Failed to make webhook authenticator request");
            return Err(unauthorized());
        }
    };
    if headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-"))
    {
        return Err(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("user {:?} cannot impersonate", user.username),
        ));
    }
    Ok(user)
}

async fn route(state: Arc<State>, request: Request<Incoming>, user: UserInfo) -> Response<Body> {
    let path = request.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["version"]) => discovery::version(),
        ("GET", ["api", "v1", "nodes"]) => {
            nodes::get(&state, None, request.uri().query().unwrap_or(""))
        }
        ("GET", ["api", "v1", "nodes", name]) => nodes::get(&state, Some(name), ""),
        ("GET", ["api"]) => discovery::api(request.headers()),
        ("GET", ["apis"]) => discovery::apis(request.headers()),
        ("GET", ["api", "v1"]) => discovery::core_v1(),
        ("GET", ["apis", group, version]) => discovery::group_version(group, version),
        ("GET", ["openapi", "v3"]) => discovery::openapi_index(),
        ("GET", ["openapi", "v3", rest @ ..]) => discovery::openapi_document(&rest.join("/")),
        ("POST", ["apis", "authentication.k8s.io", version, "selfsubjectreviews"]) => {
            resources::self_subject_review(version, &user)
        }
        ("POST", ["apis", "authorization.k8s.io", _, "selfsubjectaccessreviews"]) => {
            resources::self_subject_access_review(request, &user).await
        }
        (_, ["api", "v1", "namespaces", ns, "pods", name, "exec" | "attach"]) => {
            exec::exec(request, ns, name).await
        }
        ("GET" | "POST", ["api", "v1", "namespaces", ns, "pods", name, "portforward"]) => {
            let (ns, name) = ((*ns).to_owned(), (*name).to_owned());
            portforward::portforward(&state, request, &ns, &name).await
        }
        ("GET", ["api", "v1", "namespaces", _, "pods", name, "log"]) => {
            let name = (*name).to_owned();
            resources::logs(&state, &request, &name)
        }
        (_, ["api", "v1", "namespaces"]) | (_, ["api", "v1", "namespaces", _]) => {
            resources::namespaces(&state, request, &segments).await
        }
        (_, ["apis", "rbac.authorization.k8s.io", "v1", rest @ ..]) => {
            let rest: Vec<&str> = rest.to_vec();
            rbac::serve(&state, request, &rest, rbac::Group::Rbac).await
        }
        (_, ["api", "v1", "namespaces", _, "configmaps" | "secrets", ..])
        | (_, ["api", "v1", "configmaps" | "secrets"]) => {
            let rest: Vec<&str> = segments[2..].to_vec();
            rbac::serve(&state, request, &rest, rbac::Group::Core).await
        }
        (_, ["api", "v1", "namespaces", _, "pods", ..]) | (_, ["api", "v1", "pods"]) => {
            resources::pods(&state, request, &segments).await
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        ),
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn json_value(code: StatusCode, value: &Value) -> Response<Body> {
    json_response(code, value.to_string())
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json_value(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

/// A watch or log body that ends after `timeout` (the apiserver's watch timeout).
fn streaming(
    stream: impl futures_util::Stream<Item = Bytes> + Send + 'static,
    timeout: Option<Duration>,
) -> Body {
    use futures_util::StreamExt;
    let frames = stream.map(|bytes| Ok::<_, Infallible>(http_body::Frame::data(bytes)));
    match timeout {
        Some(timeout) => {
            let deadline = tokio::time::Instant::now() + timeout;
            let limited = frames.take_until(tokio::time::sleep_until(deadline));
            http_body_util::StreamBody::new(limited).boxed_unsync()
        }
        None => http_body_util::StreamBody::new(frames).boxed_unsync(),
    }
}
