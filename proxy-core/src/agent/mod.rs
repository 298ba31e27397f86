//! `paddock agent`: runs inside (or next to) a downstream cluster, dials
//! out to Paddock and serves Paddock's requests to its own API server
//! through the tunnel (see [`crate::tunnel`] for the protocol).
//!
//! * It only ever connects to its own API server: a tunnel stream carries
//!   requests, and each is sent to the configured server whatever the
//!   stream's target says (no open relay).
//! * It presents them with its own credential (the in-cluster service
//!   account, or the kubeconfig's user), exactly as Paddock presents a
//!   direct cluster's requests with the configured one; Paddock's
//!   impersonation headers then make the API server decide as the user.
//! * It keeps reconnecting, with exponential backoff and jitter (1 s
//!   doubling to 60 s); a refused token backs off the same way, so a
//!   revoked agent never spins.

mod dial;
mod forward;
pub mod manifest;

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use http::Uri;
use hyper::{body::Incoming, Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::{
    net::{tls, OutboundProxy},
    tunnel::{
        ws::{LastHeard, Role, WsBytes},
        CONNECTION_WINDOW, MAX_FRAME_SIZE, MAX_HEADER_LIST, MAX_STREAMS, PING_INTERVAL,
        PING_TIMEOUT, STREAM_WINDOW,
    },
    upstream::{Cluster, ClusterConfig, UpstreamError},
};

/// The container image agent manifests run unless told otherwise.
pub const DEFAULT_IMAGE: &str = "ghcr.io/paddock/paddock:latest";

/// First pause after a failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A tunnel that lasted this long resets the backoff.
pub const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Where the registration token comes from: re-read at every connection
/// attempt when it is a file, so a rotated Secret is picked up.
#[derive(Clone)]
#[non_exhaustive]
pub enum AgentToken {
    /// The token itself.
    Value(SecretString),
    /// A file holding it.
    File(std::path::PathBuf),
}

impl std::fmt::Debug for AgentToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentToken::Value(_) => f.write_str("Value(<redacted>)"),
            AgentToken::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

/// What an agent runs with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// Paddock's URL, `https://paddock.example`.
    pub server: String,
    /// The registration token.
    pub token: AgentToken,
    /// The CA (PEM) Paddock's certificate must chain to; when set, only it
    /// is trusted (pinning). The system roots otherwise.
    pub ca_pem: Option<Vec<u8>>,
    /// The agent's own API server and credential.
    pub upstream: ClusterConfig,
    /// Initial backoff between attempts (doubles up to [`MAX_BACKOFF`]).
    pub initial_backoff: Duration,
    /// The HTTP proxy to reach Paddock through (none by default; the
    /// binary reads `HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: OutboundProxy,
}

impl AgentConfig {
    /// An agent connecting to `server` with `token`, forwarding to `upstream`.
    pub fn new(server: impl Into<String>, token: AgentToken, upstream: ClusterConfig) -> Self {
        Self {
            server: server.into(),
            token,
            ca_pem: None,
            upstream,
            initial_backoff: INITIAL_BACKOFF,
            proxy: OutboundProxy::default(),
        }
    }
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The server URL or CA is unusable.
    #[error("{0}")]
    Config(String),
    /// The API server's settings are unusable.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

/// Runs the agent until `shutdown` resolves: dial, serve the tunnel,
/// back off, again. Returns an error only for a configuration that can
/// never work.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let server: Uri = config
        .server
        .parse()
        .map_err(|_| AgentError::Config(format!("--server: {:?} is not a URL", config.server)))?;
    if server.scheme_str() != Some("https") || server.host().is_none() {
        return Err(AgentError::Config(format!(
            "--server: {:?} must be an https:// URL",
            config.server
        )));
    }
    let proxy = config
        .proxy
        .for_destination(
            server.host().unwrap_or_default(),
            server.port_u16().unwrap_or(443),
        )
        .cloned();
    let roots = tls::roots(config.ca_pem.as_deref())
        .map_err(|e| AgentError::Config(format!("--ca-file: {e}")))?;
    let mut tls_config = rustls::ClientConfig::builder_with_provider(tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| AgentError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let dialer = dial::Dialer {
        server,
        tls: Arc::new(tls_config),
        proxy,
    };
    let upstream = Arc::new(Cluster::new(&config.upstream, 0, Default::default())?);
    tracing::info!(server = %config.server, api_server = %config.upstream.server, "paddock agent starting");
    let mut backoff = config.initial_backoff;
    let attempts = async {
        loop {
            let started = tokio::time::Instant::now();
            match attempt(&config, &dialer, &upstream).await {
                Ok(()) => tracing::warn!("tunnel to Paddock closed"),
                Err(dial::DialError::Unauthorized) => tracing::error!(
                    "Paddock refused the registration token (401): it is wrong, revoked or was rotated"
                ),
                Err(error) => tracing::warn!(%error, "cannot reach Paddock"),
            }
            if started.elapsed() >= STABLE_AFTER {
                backoff = config.initial_backoff;
            }
            let pause = jittered(backoff);
            tracing::info!(retry_in_ms = pause.as_millis() as u64, "reconnecting");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    };
    tokio::select! {
        () = attempts => Ok(()),
        () = shutdown => Ok(()),
    }
}

/// Between half and all of `backoff` ("equal jitter"), so agents that lost
/// Paddock together do not come back together.
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// One connection: dial, then serve until the tunnel ends.
async fn attempt(
    config: &AgentConfig,
    dialer: &dial::Dialer,
    upstream: &Arc<Cluster>,
) -> Result<(), dial::DialError> {
    let token = match &config.token {
        AgentToken::Value(token) => token.clone(),
        AgentToken::File(path) => std::fs::read_to_string(path)
            .map(|t| SecretString::from(t.trim().to_owned()))
            .map_err(|e| dial::DialError::Failed(format!("token file {}: {e}", path.display())))?,
    };
    let version = kubernetes_version(upstream).await;
    let socket = dialer.dial(&token, version.as_deref()).await?;
    tracing::info!(kubernetes.version = ?version, "tunnel to Paddock open");
    serve_tunnel(socket, upstream.clone())
        .await
        .map_err(|e| dial::DialError::Failed(format!("tunnel: {}", crate::error::error_chain(&e))))
}

/// Serves the HTTP/2 side of a tunnel over `socket` until it ends: every
/// request Paddock sends goes to `upstream`, and every `CONNECT` stream it
/// opens carries HTTP/1.1 to it. An error when the tunnel failed (its
/// keepalive pings went unanswered, say, or Paddock's HTTP/2 preface did
/// not come within [`dial::HANDSHAKE_TIMEOUT`]).
pub(crate) async fn serve_tunnel<S>(socket: S, upstream: Arc<Cluster>) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Each stream is a task sized for the largest state of its future:
    // boxed, forwarding's state (kilobytes) is freed once the response
    // head is out, instead of staying with every open watch.
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let upstream = upstream.clone();
        Box::pin(async move {
            Ok::<_, std::convert::Infallible>(if request.method() == Method::CONNECT {
                accept_stream(request, upstream)
            } else {
                forward::forward(&upstream, request).await
            })
        })
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_frame_size(MAX_FRAME_SIZE)
        .max_send_buf_size(1024 * 1024)
        .keep_alive_interval(PING_INTERVAL)
        .keep_alive_timeout(PING_TIMEOUT)
        .serve_connection(
            TokioIo::new(Preface::new(WsBytes::new(
                socket,
                Role::Client,
                Arc::new(LastHeard::now()),
            ))),
            service,
        )
        .await
}

/// The client preface of HTTP/2 (RFC 9113 §3.4): its length.
const PREFACE_LEN: usize = 24;

/// The tunnel's bytes, failing with a timeout unless Paddock's HTTP/2
/// preface has come through them within [`dial::HANDSHAKE_TIMEOUT`].
/// hyper's server waits for the preface without a timer, and its keepalive
/// pings start only once it came: a Paddock replica gone silent between
/// the WebSocket's 101 and the preface held the agent for ever instead of
/// letting it reconnect.
struct Preface<S> {
    io: S,
    /// Until the preface has been read: how many of its bytes are still
    /// to come, and when waiting for them ends.
    waiting: Option<(usize, Pin<Box<tokio::time::Sleep>>)>,
}

impl<S> Preface<S> {
    fn new(io: S) -> Self {
        let deadline = tokio::time::sleep(dial::HANDSHAKE_TIMEOUT);
        Self {
            io,
            waiting: Some((PREFACE_LEN, Box::pin(deadline))),
        }
    }

    /// Whether the preface is still awaited and its time is up; if not,
    /// `cx` is woken when it is. Asked whenever the stream waits.
    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        self.waiting
            .as_mut()
            .is_some_and(|(_, deadline)| deadline.as_mut().poll(cx).is_ready())
    }
}

fn no_preface() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "no HTTP/2 preface from Paddock within {:?}",
            dial::HANDSHAKE_TIMEOUT
        ),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Preface<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let Some((left, _)) = &mut this.waiting {
            *left = left.saturating_sub(buf.filled().len() - before);
            if *left == 0 {
                this.waiting = None;
            }
        }
        if read.is_pending() && this.timed_out(cx) {
            return Poll::Ready(Err(no_preface()));
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Preface<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write(cx, data);
        if written.is_pending() && this.timed_out(cx) {
            return Poll::Ready(Err(no_preface()));
        }
        written
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let flushed = Pin::new(&mut this.io).poll_flush(cx);
        if flushed.is_pending() && this.timed_out(cx) {
            return Poll::Ready(Err(no_preface()));
        }
        flushed
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if written.is_pending() && this.timed_out(cx) {
            return Poll::Ready(Err(no_preface()));
        }
        written
    }
}

/// Accepts a `CONNECT` stream and serves HTTP/1.1 on it.
fn accept_stream(
    mut request: Request<Incoming>,
    upstream: Arc<Cluster>,
) -> Response<forward::Body> {
    let response = Response::new(forward::Body::empty());
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => forward::serve_stream(io, upstream).await,
            Err(error) => tracing::debug!(%error, "tunnel stream not opened"),
        }
    });
    response
}

/// The API server's `gitVersion`, when it answers.
async fn kubernetes_version(upstream: &Cluster) -> Option<String> {
    use http_body_util::BodyExt;
    let request = Request::get("/version")
        .body(crate::body::RequestBody::empty())
        .ok()?;
    let response = tokio::time::timeout(Duration::from_secs(5), upstream.send(request))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    let version: serde_json::Value = serde_json::from_slice(&body).ok()?;
    version["gitVersion"]
        .as_str()
        .map(|v| v.chars().take(64).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paddock switched to the tunnel and then never sent its HTTP/2
    /// preface: the agent gives up on the tunnel after the handshake
    /// timeout (to reconnect) instead of waiting for ever. On tokio's
    /// paused clock, the wait takes no time.
    #[tokio::test(start_paused = true)]
    async fn a_paddock_silent_before_its_preface_is_left() {
        let (agent_end, _paddock_end) = tokio::io::duplex(1 << 20);
        let upstream = Cluster::new(
            &ClusterConfig::new("api", "https://127.0.0.1:9"),
            0,
            Default::default(),
        )
        .unwrap();
        let served = tokio::time::timeout(
            4 * dial::HANDSHAKE_TIMEOUT,
            serve_tunnel(agent_end, Arc::new(upstream)),
        )
        .await
        .expect("the agent waited for ever for Paddock's HTTP/2 preface");
        let error = crate::error::error_chain(&served.expect_err("the tunnel ended cleanly"));
        assert!(error.contains("no HTTP/2 preface"), "{error}");
    }
}
