//! `pods/exec` over WebSocket (`v5.channel.k8s.io`, `v4.channel.k8s.io`):
//! the container runs `cat` — stdin (channel 0) comes back on stdout
//! (channel 1); when stdin closes, a Success status goes out on channel 3.

use futures_util::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::{
    tungstenite::{
        handshake::derive_accept_key,
        protocol::{frame::coding::CloseCode, CloseFrame, Role},
        Message,
    },
    WebSocketStream,
};

use super::{full, status, Body};

const SUPPORTED: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const ERROR: u8 = 3;
const CLOSE: u8 = 255;

pub(super) async fn exec(mut request: Request<Incoming>, _ns: &str, _pod: &str) -> Response<Body> {
    let is_websocket = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_websocket {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Upgrade request required (this fake serves exec over WebSocket only)",
        );
    }
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing Sec-WebSocket-Key",
        );
    };
    let offered: Vec<String> = request
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .collect();
    let Some(protocol) = offered
        .iter()
        .find(|p| SUPPORTED.contains(&p.as_str()))
        .cloned()
    else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("no supported subprotocol in {offered:?}"),
        );
    };
    let upgrade = hyper::upgrade::on(&mut request);
    let v5 = protocol == SUPPORTED[0];
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
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
        done.extend_from_slice(br#"{"metadata":{},"status":"Success"}"#);
        let _ = socket.send(Message::Binary(done.into())).await;
        let _ = socket
            .close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            }))
            .await;
    });
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("accept key"),
    );
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocol).expect("protocol"),
    );
    response
}
