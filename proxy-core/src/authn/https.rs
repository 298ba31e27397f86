//! A small HTTPS client for the providers that speak HTTP (GitHub, OpenID
//! Connect): rustls with the configured CA or the system roots, a timeout
//! on every request, redirects never followed (following them opens the
//! door to SSRF), answers read whole up to a limit.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};

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
/// roots), a timeout on every request, redirects never followed. It is
/// also the `oauth2` crate's HTTP client for GitHub's token exchange.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
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
    /// A client trusting `ca_pem` (PEM bundle) or else the system roots.
    pub fn new(ca_pem: Option<&[u8]>, timeout: Duration) -> Result<Self, String> {
        let client = crate::upstream::tls::https_client(ca_pem, timeout, false)?;
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
