//! `pods/exec` and `pods/attach` (the same streams, without a command):
//! the container runs `cat`, so what comes in on stdin goes
//! out on stdout; when stdin closes, a Success status goes out on the error
//! channel and the session ends. Over a WebSocket (`v5.channel.k8s.io`,
//! `v4.channel.k8s.io`: one byte of channel before each message) or over
//! SPDY/3.1 (one stream per channel, as the kubelet serves it:
//! `pkg/kubelet/cri/streaming/remotecommand/httpstream.go`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{
        protocol::{frame::coding::CloseCode, CloseFrame, Role},
        Message,
    },
    WebSocketStream,
};

use super::{spdy, status, upgrade, Body};

const WEBSOCKET_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
/// What the kubelet negotiates over SPDY, newest first (v5 is v4 on SPDY).
const SPDY_PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;
const SUCCESS: &[u8] = br#"{"metadata":{},"status":"Success"}"#;
/// The kubelet's `--streaming-connection-idle-timeout`-independent wait
/// for the client to open its streams (`streamCreationTimeout`).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) async fn exec(mut request: Request<Incoming>, _ns: &str, _pod: &str) -> Response<Body> {
    if upgrade::is_spdy(&request) {
        return match upgrade::spdy(&mut request, &SPDY_PROTOCOLS) {
            Ok(upgrade) => {
                let streams = expected_streams(request.uri().query().unwrap_or(""));
                tokio::spawn(async move {
                    if let Ok(upgraded) = upgrade.on.await {
                        exec_spdy(TokioIo::new(upgraded), streams).await;
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
    match upgrade::websocket(&mut request, &WEBSOCKET_PROTOCOLS) {
        Ok(upgrade) => {
            let v5 = upgrade.protocol == WEBSOCKET_PROTOCOLS[0];
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.on.await {
                    exec_websocket(TokioIo::new(upgraded), v5).await;
                }
            });
            upgrade.response
        }
        Err(refused) => refused,
    }
}

async fn exec_websocket(io: TokioIo<hyper::upgrade::Upgraded>, v5: bool) {
    let mut socket = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    while let Some(Ok(message)) = socket.next().await {
        match message {
            Message::Binary(data) if data.first() == Some(&STDIN) => {
                let mut out = Vec::with_capacity(data.len());
                out.push(STDOUT);
                out.extend_from_slice(&data[1..]);
                if socket.send(Message::Binary(out.into())).await.is_err() {
                    return;
                }
            }
            Message::Binary(data) if v5 && data.as_ref() == [CLOSE, STDIN] => break,
            Message::Close(_) => break,
            _ => {}
        }
    }
    let mut done = vec![ERROR];
    done.extend_from_slice(SUCCESS);
    let _ = socket.send(Message::Binary(done.into())).await;
    let _ = socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await;
}

/// The `streamType`s the client will open, from the query: always
/// `error`, then each of stdin, stdout and stderr it asked for (stderr
/// not with a TTY, which adds `resize`).
fn expected_streams(query: &str) -> Vec<&'static str> {
    let flag = |name: &str| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(k, v)| k == name && matches!(v, "true" | "1"))
        })
    };
    let tty = flag("tty");
    let mut streams = vec!["error"];
    for (name, wanted) in [
        ("stdin", flag("stdin")),
        ("stdout", flag("stdout")),
        ("stderr", flag("stderr") && !tty),
        ("resize", tty),
    ] {
        if wanted {
            streams.push(name);
        }
    }
    streams
}

async fn exec_spdy(io: TokioIo<hyper::upgrade::Upgraded>, expected: Vec<&'static str>) {
    let (sender, mut incoming) = spdy::serve(io);
    let mut streams: Vec<spdy::Stream> = Vec::new();
    let mut last = 0;
    let collected = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while streams.len() < expected.len() {
            let Some(stream) = incoming.recv().await else {
                return false;
            };
            last = stream.id;
            let known = stream
                .header("streamtype")
                .is_some_and(|t| expected.contains(&t));
            if !known {
                sender.reset(stream.id, spdy::REFUSED_STREAM);
                continue;
            }
            sender.reply(stream.id);
            streams.push(stream);
        }
        true
    })
    .await;
    if collected != Ok(true) {
        tracing::debug!("exec over SPDY: the client did not open its streams");
        return;
    }
    let mut take = |kind: &str| {
        streams
            .iter()
            .position(|s| s.header("streamtype") == Some(kind))
            .map(|i| streams.swap_remove(i))
    };
    let error = take("error").expect("expected");
    let stdin = take("stdin");
    let stdout = take("stdout");
    let stderr = take("stderr");
    // `cat`: stdin to stdout until the client half-closes stdin.
    if let Some(mut stdin) = stdin {
        while let Some(data) = stdin.data.recv().await {
            if let Some(stdout) = &stdout {
                sender.data(stdout.id, &data, false);
            }
        }
    }
    for stream in [&stdout, &stderr].into_iter().flatten() {
        sender.data(stream.id, &[], true);
    }
    sender.data(error.id, SUCCESS, true);
    sender.go_away(last);
}
