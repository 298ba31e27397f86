//! Dialing out to Paddock: TCP (through an HTTP proxy when `HTTPS_PROXY`
//! says so), TLS verifying Paddock's certificate, and the WebSocket
//! upgrade carrying the registration token.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, header::HeaderValue, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tokio_util::task::AbortOnDropHandle;

use crate::tunnel::{KUBERNETES_VERSION_HEADER, TOKEN_HEADER, VERSION_HEADER};

/// Time allowed for TCP, the proxy, TLS and the WebSocket handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest proxy response head read.
const MAX_PROXY_RESPONSE: usize = 8 * 1024;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum DialError {
    /// Paddock refused the registration token.
    #[error("Paddock refused the registration token (401): it is wrong, revoked or was rotated")]
    Unauthorized,
    /// Anything else; the message says what.
    #[error("{0}")]
    Failed(String),
}

/// Where and how to dial.
pub(super) struct Dialer {
    pub(super) server: Uri,
    pub(super) tls: Arc<rustls::ClientConfig>,
    pub(super) proxy: Option<Uri>,
}

/// The connection to Paddock, upgraded to a WebSocket.
pub(super) type Socket = TokioIo<Upgraded>;

impl Dialer {
    /// Opens the tunnel's WebSocket (RFC 6455 §4.1).
    pub(super) async fn dial(
        &self,
        token: &SecretString,
        kubernetes_version: Option<&str>,
    ) -> Result<Socket, DialError> {
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            self.dial_inner(token, kubernetes_version),
        )
        .await
        .map_err(|_| DialError::Failed("timed out connecting to Paddock".to_owned()))?
    }

    async fn dial_inner(
        &self,
        token: &SecretString,
        kubernetes_version: Option<&str>,
    ) -> Result<Socket, DialError> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| DialError::Failed(format!("{what}: {e}"));
        let host = self
            .server
            .host()
            .ok_or_else(|| DialError::Failed("the server URL has no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = self.server.port_u16().unwrap_or(443);
        let tcp = match &self.proxy {
            Some(proxy) => through_proxy(proxy, &host, port).await?,
            None => TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| failed("connect", &e))?,
        };
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.clone()).map_err(|e| failed("server name", &e))?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| failed("TLS", &e))?;
        let authority = match self.server.port_u16() {
            Some(port) => format!("{}:{port}", self.server.host().unwrap_or_default()),
            None => self.server.host().unwrap_or_default().to_owned(),
        };
        let key = generate_key();
        let mut request = Request::get(crate::tunnel::CONNECT_PATH)
            .header(header::HOST, authority)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_VERSION, "13")
            .header(header::SEC_WEBSOCKET_KEY, &key)
            .header(VERSION_HEADER, env!("CARGO_PKG_VERSION"))
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed("request", &e))?;
        let headers = request.headers_mut();
        let mut value = HeaderValue::from_str(token.expose_secret())
            .map_err(|_| DialError::Failed("the token is not a valid header value".to_owned()))?;
        value.set_sensitive(true);
        headers.insert(TOKEN_HEADER, value);
        if let Some(version) = kubernetes_version.and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(KUBERNETES_VERSION_HEADER, version);
        }
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| failed("HTTP", &e))?;
        // Runs until it hands the socket to the upgrade; aborted with the
        // dial when Paddock never answers.
        let _connection = AbortOnDropHandle::new(tokio::spawn(connection.with_upgrades()));
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| failed("WebSocket handshake", &e))?;
        match response.status() {
            StatusCode::SWITCHING_PROTOCOLS => {}
            StatusCode::UNAUTHORIZED => return Err(DialError::Unauthorized),
            status => {
                return Err(DialError::Failed(format!(
                    "Paddock answered {status} instead of switching to the tunnel"
                )))
            }
        }
        let accepted = response
            .headers()
            .get(header::SEC_WEBSOCKET_ACCEPT)
            .is_some_and(|v| v.as_bytes() == derive_accept_key(key.as_bytes()).as_bytes());
        let websocket = response
            .headers()
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        if !accepted || !websocket {
            return Err(DialError::Failed(
                "WebSocket handshake: Paddock's answer does not accept the upgrade".to_owned(),
            ));
        }
        let upgraded = hyper::upgrade::on(response)
            .await
            .map_err(|e| failed("WebSocket handshake", &e))?;
        Ok(TokioIo::new(upgraded))
    }
}

/// A TCP connection to `host:port` through the HTTP proxy `proxy`
/// (`CONNECT`, RFC 9110 §9.3.6), with basic credentials from its URL.
async fn through_proxy(proxy: &Uri, host: &str, port: u16) -> Result<TcpStream, DialError> {
    let failed = |e: String| DialError::Failed(format!("proxy {}: {e}", proxy_display(proxy)));
    let proxy_host = proxy
        .host()
        .ok_or_else(|| failed("no host".to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let proxy_port = proxy.port_u16().unwrap_or(80);
    let mut tcp = TcpStream::connect((proxy_host, proxy_port))
        .await
        .map_err(|e| failed(e.to_string()))?;
    let target = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((userinfo, _)) = proxy.authority().and_then(|a| a.as_str().rsplit_once('@')) {
        use base64::Engine;
        let decoded = percent_encoding::percent_decode_str(userinfo).decode_utf8_lossy();
        let credentials = base64::engine::general_purpose::STANDARD.encode(decoded.as_bytes());
        head.push_str(&format!("Proxy-Authorization: Basic {credentials}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut reader = BufReader::new(&mut tcp);
    let mut status = String::new();
    let mut read = 0;
    loop {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| failed(e.to_string()))?;
        read += n;
        if n == 0 || read > MAX_PROXY_RESPONSE {
            return Err(failed("closed or overlong answer to CONNECT".to_owned()));
        }
        if status.is_empty() {
            status = line.trim().to_owned();
        } else if line == "\r\n" || line == "\n" {
            break;
        }
    }
    // Nothing follows the head until we speak (TLS starts with the client).
    if !reader.buffer().is_empty() {
        return Err(failed("sent data before the tunnel was used".to_owned()));
    }
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') {
        return Err(failed(format!("CONNECT refused: {status}")));
    }
    Ok(tcp)
}

/// A proxy URL without its credentials, for messages.
fn proxy_display(proxy: &Uri) -> String {
    let host = proxy.host().unwrap_or_default();
    match proxy.port_u16() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The proxy `HTTPS_PROXY` (or `https_proxy`) names for `host`, unless
/// `NO_PROXY` (or `no_proxy`) exempts it.
pub(super) fn proxy_from_env(host: &str) -> Result<Option<Uri>, String> {
    let var = |names: [&str; 2]| {
        names
            .iter()
            .find_map(|n| std::env::var(n).ok())
            .filter(|v| !v.is_empty())
    };
    let Some(proxy) = var(["HTTPS_PROXY", "https_proxy"]) else {
        return Ok(None);
    };
    if let Some(no_proxy) = var(["NO_PROXY", "no_proxy"]) {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let exempt = no_proxy.split(',').map(str::trim).any(|entry| {
            entry == "*"
                || (!entry.is_empty()
                    && (host == entry.trim_start_matches('.')
                        || host.ends_with(&format!(".{}", entry.trim_start_matches('.')))))
        });
        if exempt {
            return Ok(None);
        }
    }
    let with_scheme = if proxy.contains("://") {
        proxy
    } else {
        format!("http://{proxy}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|_| "HTTPS_PROXY is not a URL".to_owned())?;
    if uri.scheme_str() != Some("http") {
        return Err("HTTPS_PROXY: only http:// proxies are supported".to_owned());
    }
    Ok(Some(uri))
}
