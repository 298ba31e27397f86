//! An HTTPS client for tests: trusts a given CA, speaks HTTP/1.1 or HTTP/2,
//! optionally presents a client certificate.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use crate::tls::IssuedCert;

/// Which protocol to force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// A test HTTPS client.
#[derive(Clone, Debug)]
pub struct TestClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A collected response.
#[derive(Debug)]
pub struct Collected {
    /// Status, headers.
    pub head: http::response::Parts,
    /// The whole body.
    pub body: Bytes,
}

impl Collected {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status.as_u16()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestClient {
    /// A client trusting `ca_pem`, forcing `protocol`, with an optional client certificate.
    pub fn new(ca_pem: &[u8], protocol: Protocol, client_cert: Option<&IssuedCert>) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
            roots.add(cert.expect("CA pem")).expect("CA cert");
        }
        let builder = rustls::ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let tls = match client_cert {
            Some(cert) => builder
                .with_client_auth_cert(
                    rustls_pemfile::certs(&mut cert.cert_pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .expect("client cert"),
                    rustls_pemfile::private_key(&mut cert.key_pem.as_bytes())
                        .expect("client key")
                        .expect("a key"),
                )
                .expect("client auth"),
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = match protocol {
            Protocol::Http1 => connector.enable_http1().wrap_connector(http),
            Protocol::Http2 => connector.enable_http2().wrap_connector(http),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        if protocol == Protocol::Http2 {
            builder.http2_only(true);
        }
        Self {
            client: builder.build(connector),
        }
    }

    /// Sends a request and returns the streaming response.
    pub async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.client.request(request).await
    }

    /// Sends a request and collects the whole response.
    pub async fn fetch(&self, request: Request<Full<Bytes>>) -> Collected {
        let response = self.send(request).await.expect("request failed");
        let (head, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        Collected { head, body }
    }

    /// `method url` with a JSON body and an optional bearer token.
    pub async fn send_json(
        &self,
        method: http::Method,
        url: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> Collected {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.fetch(
            request
                .body(Full::new(Bytes::from(body.to_string())))
                .expect("request"),
        )
        .await
    }

    /// `method url` with a bearer token and, when given, a JSON body: the
    /// status and the body read as JSON (`Null` when it is not JSON).
    pub async fn call_json(
        &self,
        method: http::Method,
        url: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let response = match body {
            Some(body) => self.send_json(method, url, Some(token), body).await,
            None => {
                let request = Request::builder()
                    .method(method)
                    .uri(url)
                    .header("authorization", format!("Bearer {token}"))
                    .body(Full::default())
                    .expect("request");
                self.fetch(request).await
            }
        };
        let json = serde_json::from_slice(&response.body).unwrap_or(serde_json::Value::Null);
        (response.status(), json)
    }

    /// `GET url` with a bearer token.
    pub async fn get(&self, url: &str, token: Option<&str>) -> Collected {
        let mut request = Request::get(url);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.fetch(request.body(Full::default()).expect("request"))
            .await
    }
}
