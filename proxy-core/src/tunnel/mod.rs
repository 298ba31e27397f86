//! The agent tunnel: how Paddock reaches an API server it cannot open a
//! connection to (a cluster behind NAT or a firewall).
//!
//! The agent (`paddock agent`, see [`crate::agent`]) dials **out** to
//! Paddock over TLS and upgrades to a WebSocket on [`CONNECT_PATH`], so the
//! connection passes HTTP proxies and ingress controllers. Over the
//! WebSocket's byte stream the two run HTTP/2 with the roles
//! reversed: the agent is the HTTP/2 *server*, Paddock the client.
//!
//! Every request is one HTTP/2 stream, which the agent forwards to its own
//! API server with its own credential. An ordinary request is sent as
//! itself (`TunnelConnector::send`), so its body crosses the tunnel as
//! HTTP/2 DATA frames, nothing re-encoded on the way. An upgrade (exec,
//! attach, port-forward over WebSocket or SPDY) needs HTTP/1.1, which
//! HTTP/2 cannot carry: it gets a `CONNECT` stream ([`TunnelConnector`] as
//! the pooled client's connector), on which the agent serves HTTP/1.1 and
//! which carries raw bytes after the API server's `101`. So the tunnel
//! serves the same forwarder and the same upgrades as a direct cluster.
//! Agents that do not announce [`FEATURE_REQUESTS`] get a `CONNECT`
//! stream for every request.
//!
//! Why HTTP/2 and not a framing of our own: it has per-stream flow
//! control. A stream whose reader stops (a paused `kubectl logs -f`)
//! holds at most its stream window ([`STREAM_WINDOW`]); the connection
//! window ([`CONNECTION_WINDOW`]) is sized so that thousands of stalled
//! streams fit in it, so the others keep flowing. Rancher's remotedialer
//! lacks this: one slow consumer could block its whole tunnel.
//!
//! Keepalive: both ends ping every [`PING_INTERVAL`] and drop the
//! connection when a pong takes longer than [`PING_TIMEOUT`], so a dead
//! tunnel is noticed within 20 s; streams in flight on it then end with an
//! error.
//!
//! An API server the agent cannot reach: the agent is connected, but its
//! own API server refuses connections, fails the TLS handshake or does
//! not accept one in time. The agent then answers the request itself, a
//! 503 Kubernetes Status carrying [`UNREACHABLE_HEADER`] with its reason,
//! and removes that header from every response it relays from the API
//! server, so only the agent can set it. Paddock turns such an answer
//! into the error a direct cluster's refused connection is (the cluster is
//! unreachable, and says so to the client, the health view, the metrics
//! and the alerts) instead of relaying it as the cluster's answer.
//!
//! Several replicas: each agent keeps one tunnel to the replica its
//! connection lands on; see `docs/tunnel.md` for how replicas share them.

mod connector;
mod registry;
mod status;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod ws;

use std::time::Duration;

pub use connector::TunnelConnector;
pub(crate) use registry::Sent;
pub use registry::{SessionInfo, Tunnels};
pub(crate) use status::spawn_status_writer;
pub use status::{PERSIST_EVERY, SWEEP};

/// Where agents open their tunnel: a WebSocket upgrade (`GET`).
pub const CONNECT_PATH: &str = "/paddock/v1/connect";
/// The header carrying the agent's registration token on [`CONNECT_PATH`].
pub const TOKEN_HEADER: &str = "x-paddock-agent-token";
/// The registration token presented in [`TOKEN_HEADER`], if any: how an
/// agent, a sidecar and a manifest download prove which cluster they are.
pub(crate) fn presented_token(headers: &http::HeaderMap) -> Option<secrecy::SecretString> {
    headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| secrecy::SecretString::from(v.to_owned()))
}

/// The header on an answer the agent made itself because it could not
/// connect to its API server; its value is why (visible ASCII). Never on a
/// response relayed from the API server: the agent removes it from those.
pub const UNREACHABLE_HEADER: &str = "x-paddock-agent-unreachable";

/// Why the agent could not reach its API server, when `headers` are those
/// of the answer it made itself for that reason (see [`UNREACHABLE_HEADER`]).
pub(crate) fn agent_unreachable(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(UNREACHABLE_HEADER)
        .map(|reason| String::from_utf8_lossy(reason.as_bytes()).into_owned())
}

/// The header in which the agent lists what it supports, comma-separated.
pub const FEATURES_HEADER: &str = "x-paddock-agent-features";
/// The feature of an agent that forwards ordinary HTTP/2 requests on the
/// tunnel; without it, every request needs a `CONNECT` stream.
pub const FEATURE_REQUESTS: &str = "requests";

/// The header carrying the agent's version.
pub const VERSION_HEADER: &str = "x-paddock-agent-version";
/// The header carrying the API server's version, as the agent read it.
pub const KUBERNETES_VERSION_HEADER: &str = "x-paddock-kubernetes-version";

/// Receive window of one stream: what a stalled reader holds at most.
pub const STREAM_WINDOW: u32 = 1024 * 1024;
/// Receive window of the whole tunnel: the largest HTTP/2 allows, so
/// streams whose readers stall never exhaust it in practice (2,047 of them
/// would be needed).
pub const CONNECTION_WINDOW: u32 = (1 << 31) - 1;
/// Largest HTTP/2 frame either side accepts (the protocol's default is
/// 16 KiB): a `logs -f` or a large list crosses in a quarter of the
/// frames, each its own header, decode and wake-up on the way.
pub const MAX_FRAME_SIZE: u32 = 64 * 1024;
/// Largest header block either side accepts (Kubernetes' impersonation
/// headers for a user in many groups are large).
pub const MAX_HEADER_LIST: u32 = 1 << 20;
/// Streams the agent accepts at once: every watch is one.
pub const MAX_STREAMS: u32 = 100_000;
/// Keepalive ping interval, both ends.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// Time a pong may take before the tunnel is dropped.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for a disconnected agent to come back before
/// it is answered 503.
pub const DEFAULT_AGENT_WAIT: Duration = Duration::from_secs(5);
