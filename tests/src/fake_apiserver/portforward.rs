//! `pods/portforward`, as the kubelet serves it
//! (`pkg/kubelet/cri/streaming/portforward/httpstream.go`): over SPDY/3.1
//! with protocol `portforward.k8s.io`, or over a WebSocket whose
//! subprotocol `SPDY/3.1+portforward.k8s.io` carries the same SPDY
//! session in binary messages (what kubectl 1.31+ asks for first; the
//! apiserver's `PortForwardWebsockets` tunnelling).
//!
//! Each forwarded connection is a pair of streams the client opens with
//! the same `requestID` header: `streamType: error` and `streamType: data`,
//! both naming the pod's `port`. Data flows between the data stream and a
//! TCP connection to the pod's port; a failure is written on the error
//! stream; both are closed when the connection ends. Every pod listens on
//! [`PORT`] (named `http` in its spec) with an echo server.
//!
//! Other clients (kube-rs, the Python client) use the kubelet's older
//! WebSocket protocol, `v4.channel.k8s.io` (`portforward/websocket.go`):
//! the ports are in the query (`ports=8080,9090`), port `i` has data
//! channel `2i` and error channel `2i+1`, every message starts with its
//! channel byte, and the server's first message on each channel is the
//! port, 16 bits little-endian. One TCP connection per port, for the
//! WebSocket's life.

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_tungstenite::{
    tungstenite::{protocol::Role, Message},
    WebSocketStream,
};

use super::{spdy, status, upgrade, Body, State};

/// The container port every pod serves (an echo server), named `http`.
pub const PORT: u16 = 8080;
const SPDY_PROTOCOL: &str = "portforward.k8s.io";
const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
const CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// Starts the pods' echo server on loopback: every connection gets back
/// what it sends, and its write side closes when the peer's does.
pub(super) async fn echo_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    Ok(addr)
}

pub(super) async fn portforward(
    state: &Arc<State>,
    mut request: Request<Incoming>,
    ns: &str,
    pod: &str,
) -> Response<Body> {
    if !state
        .pods
        .lock()
        .unwrap()
        .contains_key(&(ns.to_owned(), pod.to_owned()))
    {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("pods \"{pod}\" not found"),
        );
    }
    let target = Target {
        pod: pod.to_owned(),
        echo: state.echo,
    };
    if upgrade::is_spdy(&request) {
        return match upgrade::spdy(&mut request, &[SPDY_PROTOCOL]) {
            Ok(upgrade) => {
                tokio::spawn(async move {
                    if let Ok(upgraded) = upgrade.on.await {
                        serve(TokioIo::new(upgraded), target).await;
                    }
                });
                upgrade.response
            }
            Err(refused) => refused,
        };
    }
    if !upgrade::is_websocket(&request) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Upgrade request required",
        );
    }
    let ports = query_ports(request.uri().query().unwrap_or(""));
    match upgrade::websocket(&mut request, &[TUNNEL_PROTOCOL, CHANNEL_PROTOCOL]) {
        Ok(upgrade) if upgrade.protocol == CHANNEL_PROTOCOL && ports.is_empty() => status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "query parameter \"ports\" is required",
        ),
        Ok(upgrade) => {
            let tunnel = upgrade.protocol == TUNNEL_PROTOCOL;
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.on.await {
                    let socket = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    if tunnel {
                        let (ours, theirs) = tokio::io::duplex(64 * 1024);
                        tokio::join!(bridge(socket, theirs), serve(ours, target));
                    } else {
                        serve_channels(socket, ports, target).await;
                    }
                }
            });
            upgrade.response
        }
        Err(refused) => refused,
    }
}

/// Carries the SPDY bytes between binary WebSocket messages and `side`.
async fn bridge<S>(socket: WebSocketStream<S>, side: tokio::io::DuplexStream)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut messages) = socket.split();
    let (mut read, mut write) = tokio::io::split(side);
    let inbound = async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(data) if write.write_all(&data).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = write.shutdown().await;
    };
    let outbound = async move {
        let mut buffer = vec![0; 32 * 1024];
        while let Ok(n @ 1..) = read.read(&mut buffer).await {
            let message = Message::Binary(buffer[..n].to_vec().into());
            if sink.send(message).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    };
    tokio::join!(inbound, outbound);
}

#[derive(Clone)]
struct Target {
    pod: String,
    echo: SocketAddr,
}

/// The error and data streams of one forwarded connection.
#[derive(Default)]
struct Pair {
    error: Option<spdy::Stream>,
    data: Option<spdy::Stream>,
}

async fn serve<S>(io: S, target: Target)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (sender, mut incoming) = spdy::serve(io);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    while let Some(stream) = incoming.recv().await {
        let kind = stream.header("streamtype").map(str::to_owned);
        // Clients before 1.4 sent no requestID: the stream id stands in.
        let request = stream
            .header("requestid")
            .map_or_else(|| stream.id.to_string(), str::to_owned);
        if stream.header("port").is_none() || !matches!(kind.as_deref(), Some("error" | "data")) {
            sender.reset(stream.id, spdy::REFUSED_STREAM);
            continue;
        }
        sender.reply(stream.id);
        let pair = pairs.entry(request.clone()).or_default();
        match kind.as_deref() {
            Some("error") => pair.error = Some(stream),
            _ => pair.data = Some(stream),
        }
        if pair.error.is_some() && pair.data.is_some() {
            let pair = pairs.remove(&request).expect("just seen");
            let (Some(error), Some(data)) = (pair.error, pair.data) else {
                unreachable!("both present");
            };
            tokio::spawn(forward(sender.clone(), target.clone(), error, data));
        }
    }
}

/// The pod's `port`, as the container runtime dials it; the error is the
/// message the kubelet writes on the error stream.
async fn connect(target: &Target, port: &str) -> Result<TcpStream, String> {
    let result = match port.parse::<u16>() {
        Ok(PORT) => TcpStream::connect(target.echo)
            .await
            .map_err(|e| e.to_string()),
        Ok(port) => Err(format!(
            "dial tcp4 127.0.0.1:{port}: connect: connection refused"
        )),
        Err(_) => Err("invalid port".to_owned()),
    };
    result.map_err(|reason| {
        format!(
            "error forwarding port {port} to pod {}: {reason}",
            target.pod
        )
    })
}

async fn forward(sender: spdy::Sender, target: Target, error: spdy::Stream, data: spdy::Stream) {
    let port = data.header("port").unwrap_or_default().to_owned();
    let (id, mut from_client) = (data.id, data.data);
    match connect(&target, &port).await {
        Ok(connection) => {
            let (mut read, mut write) = connection.into_split();
            let upstream = async {
                while let Some(bytes) = from_client.recv().await {
                    if write.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                let _ = write.shutdown().await;
            };
            let downstream = async {
                let mut buffer = vec![0; 32 * 1024];
                while let Ok(n @ 1..) = read.read(&mut buffer).await {
                    sender.data(id, &buffer[..n], false);
                }
            };
            tokio::join!(upstream, downstream);
        }
        Err(message) => sender.data(error.id, message.as_bytes(), false),
    }
    sender.data(id, &[], true);
    sender.data(error.id, &[], true);
}

/// The `ports` query parameter: repeated, each a comma-separated list.
fn query_ports(query: &str) -> Vec<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| *name == "ports")
        .flat_map(|(_, value)| {
            percent_encoding::percent_decode_str(value)
                .decode_utf8_lossy()
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|port| !port.is_empty())
        .collect()
}

/// `v4.channel.k8s.io`: each port's data and error channel over one
/// WebSocket.
async fn serve_channels<S>(socket: WebSocketStream<S>, ports: Vec<String>, target: Target)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sink, mut messages) = socket.split();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let framed = |channel: usize, data: &[u8]| {
        let mut message = Vec::with_capacity(1 + data.len());
        message.push(channel as u8);
        message.extend_from_slice(data);
        message
    };
    let mut writers = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().enumerate() {
        let number = port.parse::<u16>().unwrap_or_default().to_le_bytes();
        let _ = out_tx.send(framed(2 * i, &number));
        let _ = out_tx.send(framed(2 * i + 1, &number));
        match connect(&target, port).await {
            Ok(connection) => {
                let (mut read, write) = connection.into_split();
                let out = out_tx.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0; 32 * 1024];
                    while let Ok(n @ 1..) = read.read(&mut buffer).await {
                        if out.send(framed(2 * i, &buffer[..n])).is_err() {
                            return;
                        }
                    }
                });
                writers.push(Some(write));
            }
            Err(message) => {
                let _ = out_tx.send(framed(2 * i + 1, message.as_bytes()));
                writers.push(None);
            }
        }
    }
    drop(out_tx);
    let outbound = async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(Message::Binary(message.into())).await.is_err() {
                return;
            }
        }
    };
    let inbound = async move {
        while let Some(Ok(message)) = messages.next().await {
            match message {
                Message::Binary(data) if data.len() > 1 && data[0] % 2 == 0 => {
                    let port = usize::from(data[0] / 2);
                    if let Some(Some(write)) = writers.get_mut(port) {
                        let _ = write.write_all(&data[1..]).await;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    // The client closing the WebSocket ends everything.
    tokio::select! {
        () = inbound => {}
        () = outbound => {}
    }
}
