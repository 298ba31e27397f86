//! Dialing out to Paddock: TCP (through the configured HTTP proxy, if
//! any), TLS verifying Paddock's certificate, and the WebSocket upgrade
//! carrying the registration token.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{header, header::HeaderValue, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::handshake::{client::generate_key, derive_accept_key};
use tokio_util::task::AbortOnDropHandle;

use crate::net::through_proxy;
use crate::piecewise::PiecewiseWrites;
use crate::tunnel::{
    FEATURES_HEADER, FEATURE_REQUESTS, KUBERNETES_VERSION_HEADER, TOKEN_HEADER, VERSION_HEADER,
};

/// Time allowed for TCP, the proxy, TLS and the WebSocket handshake; and
/// then, the tunnel open, for Paddock's HTTP/2 preface (see
/// [`super::serve_tunnel`]).
pub(super) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

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
            Some(proxy) => through_proxy(proxy, &host, port)
                .await
                .map_err(DialError::Failed)?,
            None => TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| failed("connect", &e))?,
        };
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.clone()).map_err(|e| failed("server name", &e))?;
        let mut tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| failed("TLS", &e))?;
        tls.get_mut()
            .1
            .set_buffer_limit(Some(crate::tunnel::ws::TLS_BUFFER_LIMIT));
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
            .header(FEATURES_HEADER, FEATURE_REQUESTS)
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
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(PiecewiseWrites::new(tls)))
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
