//! A small HTTPS client for the providers that speak HTTP (GitHub, OpenID
//! Connect): rustls with the configured CA or the system roots, through
//! the configured HTTP proxy, a timeout on every request, redirects never
//! followed (following them opens the door to SSRF), answers read whole
//! up to a limit.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};

use crate::net::{tls::OutboundClient, OutboundProxy};

/// Largest answer read.
const MAX_BODY: usize = 8 << 20;

/// A transport failure of [`HttpClient`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting, TLS or HTTP failed.
    #[error("{0}")]
    Transport(String),
}

/// A small HTTPS client: rustls with the configured CA (or the system
/// roots), through an HTTP proxy where one applies, a timeout on every
/// request, redirects never followed. It is also the `oauth2` crate's HTTP
/// client for GitHub's token exchange.
#[derive(Clone)]
pub struct HttpClient {
    client: OutboundClient<Full<Bytes>>,
    timeout: Duration,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client trusting `ca_pem` (PEM bundle) or else the system roots,
    /// connecting through `proxy` where it applies (TLS to the provider
    /// runs end to end inside the tunnel).
    pub fn new(
        ca_pem: Option<&[u8]>,
        timeout: Duration,
        proxy: OutboundProxy,
    ) -> Result<Self, String> {
        let client = crate::net::tls::https_client(ca_pem, timeout, proxy, false)?;
        Ok(Self { client, timeout })
    }

    /// Sends `request` and reads the whole answer (at most 8 MiB).
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| HttpError::Transport(crate::error::error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = http_body_util::Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| HttpError::Transport(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(url: &str) -> Request<Vec<u8>> {
        Request::get(url).body(Vec::new()).unwrap()
    }

    /// Requests go through the proxy: a refusal is a transport error that
    /// names the proxy, never its credentials.
    #[tokio::test]
    async fn a_refusing_proxy_is_named_without_its_credentials() {
        let (port, seen) = crate::net::test_proxy("407 Proxy Authentication Required").await;
        let proxy =
            OutboundProxy::new(&format!("http://alice:s3cret@127.0.0.1:{port}"), "").unwrap();
        let client = HttpClient::new(None, Duration::from_secs(10), proxy).unwrap();
        let error = client
            .send(get(
                "https://provider.invalid:8443/.well-known/openid-configuration",
            ))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!("proxy 127.0.0.1:{port}"))
                && error.contains("CONNECT refused: HTTP/1.1 407"),
            "{error}"
        );
        assert!(
            !error.contains("s3cret") && !error.contains("alice"),
            "{error}"
        );
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].starts_with("CONNECT provider.invalid:8443 HTTP/1.1\r\n"),
            "{seen:?}"
        );
    }
}
