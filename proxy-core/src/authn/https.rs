//! A small HTTPS client for the providers that speak HTTP (GitHub, OpenID
//! Connect): rustls with the configured CA or the system roots, a timeout
//! on every request, redirects never followed (following them opens the
//! door to SSRF), answers read whole up to a limit.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use rustls::{ClientConfig, RootCertStore};

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
        let mut roots = RootCertStore::empty();
        match ca_pem {
            Some(pem) => {
                for cert in rustls_pemfile::certs(&mut &pem[..]) {
                    let cert = cert.map_err(|e| format!("invalid CA PEM: {e}"))?;
                    roots
                        .add(cert)
                        .map_err(|e| format!("invalid CA certificate: {e}"))?;
                }
                if roots.is_empty() {
                    return Err("the CA bundle holds no certificate".to_owned());
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let tls = ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
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
