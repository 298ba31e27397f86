//! `pods/exec` over WebSocket, as kubectl 1.30+ speaks it
//! (`v5.channel.k8s.io`), for tests that hold a session open.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::{
    tungstenite::{client::IntoClientRequest, Message},
    WebSocketStream,
};

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// An open exec session; dropping it closes the connection.
#[derive(Debug)]
pub struct ExecSession {
    socket: WebSocketStream<Stream>,
}

/// Opens `GET <base><path>` (a `.../pods/<name>/exec?...` path) as a
/// WebSocket with `token`, trusting `ca_pem`; panics unless it is upgraded.
pub async fn open(base: &str, ca_pem: &[u8], token: &str, path: &str) -> ExecSession {
    let tls = crate::tls::connect(base, ca_pem, b"http/1.1").await;
    let url = format!("{}{path}", base.replace("https://", "wss://"));
    let mut request = url.into_client_request().expect("exec request");
    let headers = request.headers_mut();
    headers.insert(
        "authorization",
        format!("Bearer {token}").parse().expect("token"),
    );
    headers.insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().expect("protocol"),
    );
    let (socket, response) = tokio_tungstenite::client_async(request, tls)
        .await
        .expect("the exec upgrade failed");
    assert_eq!(response.status(), 101);
    ExecSession { socket }
}

impl ExecSession {
    /// Sends `data` on stdin and returns what comes back on stdout (the
    /// fake apiserver's container runs `cat`).
    pub async fn echo(&mut self, data: &[u8]) -> Vec<u8> {
        let mut frame = vec![0];
        frame.extend_from_slice(data);
        self.socket
            .send(Message::Binary(frame.into()))
            .await
            .expect("send on stdin");
        let echoed = self
            .socket
            .next()
            .await
            .expect("the session ended")
            .expect("the session failed");
        echoed.into_data()[1..].to_vec()
    }
}
