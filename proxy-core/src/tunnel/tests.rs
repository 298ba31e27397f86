//! The tunnel end to end over an in-memory pipe: Paddock's side
//! ([`Tunnels::serve`]) and the agent's ([`crate::agent::serve_tunnel`]),
//! WebSocket and HTTP/2 included, without TLS or sockets. Keepalive tests
//! run on tokio's paused clock, so 20 s of silence take no time and the
//! "noticed within 30 s" promise is checked exactly.

use std::{
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, DuplexStream, ReadBuf};

use super::*;
use crate::{
    events::Events,
    store::Timestamp,
    upstream::{Cluster, ClusterConfig},
};

/// The promise of `docs/tunnel.md`: a dead tunnel is noticed this fast.
const NOTICED_WITHIN: Duration = Duration::from_secs(30);

/// One end's connection, which a test can cut off silently: from then on
/// nothing it sends arrives and nothing reaches it, but it is not closed
/// (a network partition, a stopped peer).
struct Valve {
    io: DuplexStream,
    cut: Arc<AtomicBool>,
}

impl AsyncRead for Valve {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.cut.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Valve {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.cut.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.cut.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.cut.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Two ends of a pipe, each with the switch that silences it.
fn pipe() -> ((Valve, Arc<AtomicBool>), (Valve, Arc<AtomicBool>)) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let end = |io| {
        let cut = Arc::new(AtomicBool::new(false));
        (
            Valve {
                io,
                cut: cut.clone(),
            },
            cut,
        )
    };
    (end(a), end(b))
}

/// A tunnel between a Paddock and an agent, both running.
pub(crate) struct Tunnel {
    pub(crate) tunnels: Arc<Tunnels>,
    pub(crate) paddock: tokio::task::JoinHandle<()>,
    pub(crate) agent: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    pub(crate) silence_paddock: Arc<AtomicBool>,
    pub(crate) silence_agent: Arc<AtomicBool>,
}

/// A new tunnel of `cluster` in `tunnels`, connected; its agent forwards
/// to an API server that is never asked.
pub(crate) async fn tunnel_in(tunnels: Arc<Tunnels>, cluster: &str) -> Tunnel {
    tunnel_to(tunnels, cluster, "https://127.0.0.1:9", true).await
}

/// A new tunnel of `cluster` in `tunnels`, connected; its agent forwards
/// to the API server at `api_server`, ordinary requests too when it
/// announced so (`serves_requests`), or else only `CONNECT` streams, as
/// older agents do.
async fn tunnel_to(
    tunnels: Arc<Tunnels>,
    cluster: &str,
    api_server: &str,
    serves_requests: bool,
) -> Tunnel {
    let tunnel = start(tunnels, cluster, api_server, serves_requests, true);
    connected(&tunnel.tunnels, cluster).await;
    tunnel
}

/// Paddock's and the agent's ends of a new tunnel of `cluster`, started:
/// Paddock's session finds its token `still_valid` or not once in place.
fn start(
    tunnels: Arc<Tunnels>,
    cluster: &str,
    api_server: &str,
    serves_requests: bool,
    still_valid: bool,
) -> Tunnel {
    let ((paddock_end, silence_paddock), (agent_end, silence_agent)) = pipe();
    let serving = tunnels.clone();
    let id = cluster.to_owned();
    let paddock = tokio::spawn(async move {
        let info = SessionInfo {
            agent_version: Some("test".into()),
            kubernetes_version: None,
            serves_requests,
            connected_at: Timestamp::now(),
            last_heartbeat: Timestamp::now(),
        };
        serving
            .serve(&id, "hash".into(), info, paddock_end, |_| still_valid)
            .await;
    });
    let upstream = Arc::new(
        Cluster::new(
            &ClusterConfig::new("api", api_server),
            0,
            Default::default(),
        )
        .unwrap(),
    );
    let agent = tokio::spawn(async move { crate::agent::serve_tunnel(agent_end, upstream).await });
    Tunnel {
        tunnels,
        paddock,
        agent,
        silence_paddock,
        silence_agent,
    }
}

async fn tunnel(cluster: &str) -> Tunnel {
    let tunnels = Arc::new(Tunnels::new(Duration::from_secs(1), Events::default()));
    tunnel_in(tunnels, cluster).await
}

async fn connected(tunnels: &Tunnels, cluster: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while tunnels.status(cluster).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the agent never connected");
}

/// The agent goes silent: Paddock notices within 30 s, drops the tunnel,
/// and a stream in flight on it ends with an error, not a hang and not a
/// clean end of file.
#[tokio::test(start_paused = true)]
async fn a_silent_agent_is_noticed_and_its_streams_fail() {
    let tunnel = tunnel("edge").await;
    let tunnels = &tunnel.tunnels;
    let stream = tunnels
        .slot("edge")
        .open(Duration::from_secs(1))
        .await
        .unwrap();
    let mut stream = hyper_util::rt::TokioIo::new(stream);

    tunnel.silence_agent.store(true, Ordering::Relaxed);
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(NOTICED_WITHIN, stream.read(&mut buf))
        .await
        .expect("a stream on a dead tunnel hung");
    assert!(read.is_err(), "the stream ended cleanly: {read:?}");
    tokio::time::timeout(NOTICED_WITHIN, tunnel.paddock)
        .await
        .expect("Paddock did not notice the silent agent")
        .unwrap();
    assert!(tunnels.status("edge").is_none());
    assert!(
        tunnels.take_dropped().contains_key("edge"),
        "the drop was not handed to the status writer"
    );
    // New requests are refused after the bounded wait.
    let refused = tunnels.slot("edge").open(Duration::from_secs(1)).await;
    assert!(refused.unwrap_err().contains("not connected"));
}

/// A revoked or rotated token ends the tunnel at once, streams already
/// open on it included (hyper's HTTP/2 connection task would otherwise
/// carry them on, kept alive by its pings), and the agent sees it close.
/// Sooner than keepalive could notice anything: the clock is paused, so
/// everything ready runs before it moves.
#[tokio::test(start_paused = true)]
async fn a_revoked_token_ends_the_streams_open_on_its_tunnel() {
    let tunnel = tunnel("edge").await;
    let tunnels = &tunnel.tunnels;
    let stream = tunnels
        .slot("edge")
        .open(Duration::from_secs(1))
        .await
        .unwrap();
    let mut stream = hyper_util::rt::TokioIo::new(stream);

    tunnels.disconnect_unless("edge", Some("some-other-hash"));
    let at_once = PING_INTERVAL / 2;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(at_once, stream.read(&mut buf))
        .await
        .expect("a stream stayed open on the ended tunnel");
    assert!(read.is_err(), "the stream ended cleanly: {read:?}");
    let served = tokio::time::timeout(at_once, tunnel.agent)
        .await
        .expect("the agent's tunnel stayed open")
        .unwrap();
    assert!(served.is_err(), "the agent's tunnel ended cleanly");
    tunnel.paddock.await.unwrap();
    assert!(tunnels.status("edge").is_none());
}

/// A token revoked between its check and the session's registration
/// (while the WebSocket upgrade completed) found no session to end: the
/// session, once registered, asks again and ends itself.
#[tokio::test(start_paused = true)]
async fn a_token_revoked_while_the_tunnel_opened_ends_it() {
    let tunnels = Arc::new(Tunnels::new(Duration::from_secs(1), Events::default()));
    let Tunnel { paddock, agent, .. } =
        start(tunnels.clone(), "edge", "https://127.0.0.1:9", true, false);
    let at_once = PING_INTERVAL / 2;
    tokio::time::timeout(at_once, paddock)
        .await
        .expect("the session of a revoked token stayed up")
        .unwrap();
    let served = tokio::time::timeout(at_once, agent)
        .await
        .expect("the agent's tunnel stayed open")
        .unwrap();
    assert!(served.is_err(), "the agent's tunnel ended cleanly");
    assert!(tunnels.status("edge").is_none());
}

/// Paddock goes silent: the agent notices within 30 s and returns (to
/// reconnect).
#[tokio::test(start_paused = true)]
async fn a_silent_paddock_is_noticed_by_the_agent() {
    let tunnel = tunnel("edge").await;
    tunnel.silence_paddock.store(true, Ordering::Relaxed);
    let served = tokio::time::timeout(NOTICED_WITHIN, tunnel.agent)
        .await
        .expect("the agent did not notice the silent Paddock")
        .unwrap();
    assert!(served.is_err(), "the agent's tunnel ended cleanly");
}

/// The live heartbeat follows what is read from the tunnel: the pings of
/// an idle one keep it current, and the idle tunnel stays up.
#[tokio::test(start_paused = true)]
async fn an_idle_tunnel_keeps_its_heartbeat() {
    let tunnel = tunnel("edge").await;
    let tunnels = &tunnel.tunnels;
    // Pretend it was last heard from long ago; a ping brings it back.
    tunnels.heard("edge").unwrap().set(Timestamp(1));
    tokio::time::sleep(PING_INTERVAL * 3).await;
    let heard = tunnels.status("edge").unwrap().last_heartbeat;
    assert!(heard > Timestamp(1), "no ping was heard: {heard}");
    assert!(!tunnel.agent.is_finished() && !tunnel.paddock.is_finished());
}

/// The API server stands for this one: a 200 to every request, carrying
/// the agent's marker of an unreachable API server, which must not pass
/// for the agent's.
async fn forging_api_server(listener: tokio::net::TcpListener) {
    loop {
        let Ok((io, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|_request| async {
                let mut response = http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(br#"{"kind":"NamespaceList","items":[]}"#),
                ));
                response
                    .headers_mut()
                    .insert(UNREACHABLE_HEADER, http::HeaderValue::from_static("forged"));
                Ok::<_, std::convert::Infallible>(response)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(io), service)
                .await;
        });
    }
}

/// An agent connected through its tunnel whose API server refuses
/// connections: the request is answered 503 with a Kubernetes Status
/// saying why, and the cluster is unreachable, not answering. Once the API
/// server is up, the cluster answers again, and the marker its response
/// carries is neither taken for the agent's nor passed on. The request
/// crosses the tunnel as an HTTP/2 request of its own.
#[tokio::test]
async fn an_api_server_the_agent_cannot_reach_is_an_unreachable_cluster() {
    unreachable_then_answering(true).await;
}

/// The same through an agent that forwards only `CONNECT` streams (one
/// that does not announce [`FEATURE_REQUESTS`]): each request rides
/// HTTP/1.1 inside a stream.
#[tokio::test]
async fn an_agent_forwarding_only_streams_gets_every_request_in_one() {
    unreachable_then_answering(false).await;
}

async fn unreachable_then_answering(serves_requests: bool) {
    use http_body_util::BodyExt;
    use tower::Service;

    // A port nothing listens on, until the API server comes up on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (events, seen) = crate::events::tests::recorded();
    let tunnels = Arc::new(Tunnels::new(Duration::from_secs(1), events));
    let _tunnel = tunnel_to(
        tunnels.clone(),
        "edge",
        &format!("http://{addr}"),
        serves_requests,
    )
    .await;
    let cluster = Arc::new(Cluster::tunnel("edge", &tunnels, 0));
    let mut forward = crate::upstream::Forward::new(
        crate::shutdown::Shutdown::new(),
        crate::plugin::Plugins::default(),
    );
    let get = || {
        let context = Arc::new(crate::context::RequestContext::new(
            "test".into(),
            http::Method::GET,
            "/api/v1/namespaces".into(),
            None,
        ));
        context.set_target(cluster.clone());
        let mut request = http::Request::get("/api/v1/namespaces")
            .body(crate::body::RequestBody::empty())
            .unwrap();
        request.extensions_mut().insert(context);
        request
    };
    // Connected, but the agent read no `/version`: no verdict yet.
    assert_eq!(seen(), []);

    let error = forward.call(get()).await.unwrap_err();
    let crate::error::ProxyError::UpstreamUnavailable { message, .. } = &error else {
        panic!("not unavailable: {error:?}");
    };
    assert!(
        message.starts_with("the agent cannot connect to its API server: ")
            && message.contains("refused"),
        "{message}"
    );
    let reason = message.clone();
    let response = error.into_response();
    assert_eq!(response.status(), http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(UNREACHABLE_HEADER).is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["code"], 503, "{status}");
    assert_eq!(status["reason"], "ServiceUnavailable", "{status}");
    assert_eq!(
        status["message"],
        format!("cluster edge is unreachable: {reason}"),
        "{status}"
    );
    assert_eq!(cluster.reachability().verdict().reachable, Some(false));
    assert_eq!(seen(), [(false, Some(reason.clone()))]);

    tokio::spawn(forging_api_server(
        tokio::net::TcpListener::bind(addr).await.unwrap(),
    ));
    let response = forward.call(get()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    let crossed_as = if serves_requests {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    assert_eq!(response.version(), crossed_as);
    assert!(
        response.headers().get(UNREACHABLE_HEADER).is_none(),
        "the API server's marker was passed on"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"kind":"NamespaceList","items":[]}"#);
    assert_eq!(cluster.reachability().verdict().reachable, Some(true));
    assert_eq!(seen(), [(false, Some(reason)), (true, None)]);
}
