//! A minimal HTTP `CONNECT` proxy on loopback, for clients that must reach
//! their server through `HTTPS_PROXY`.

use std::sync::{Arc, Mutex};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A proxy answering every `CONNECT` with one status line; on a 2xx it
/// relays bytes to the requested target. Runs until the runtime ends.
#[derive(Debug, Clone)]
pub struct ConnectProxy {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    /// Starts one on `127.0.0.1` answering `status` (`"200 Connection
    /// established"`, `"407 Proxy Authentication Required"`).
    pub async fn start(status: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let record = heads.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, status, record.clone()));
            }
        });
        Self { port, heads }
    }

    /// Its URL, with `userinfo` (`user:password`) when given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(userinfo) => format!("http://{userinfo}@127.0.0.1:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// The request heads it received, in order.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().expect("heads").clone()
    }

    /// Whether it was asked for a tunnel to `authority` (`host:port`).
    pub fn connected_to(&self, authority: &str) -> bool {
        let connect = format!("CONNECT {authority} HTTP/1.1\r\n");
        self.heads().iter().any(|h| h.starts_with(&connect))
    }

    /// Whether every request carried `userinfo` (`user:password`) as its
    /// Basic credentials.
    pub fn all_with_basic(&self, userinfo: &str) -> bool {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(userinfo);
        let header = format!("Proxy-Authorization: Basic {basic}\r\n");
        self.heads().iter().all(|h| h.contains(&header))
    }
}

async fn serve(mut client: TcpStream, status: &str, record: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    record.lock().expect("heads").push(head);
    let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
    if client.write_all(answer.as_bytes()).await.is_err() || !status.starts_with('2') {
        return;
    }
    if let Ok(mut server) = TcpStream::connect(target).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}
