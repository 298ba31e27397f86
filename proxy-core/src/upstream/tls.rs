//! TLS towards downstream API servers: verification always on unless the
//! cluster's `dangerous` setting says otherwise.

use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use secrecy::ExposeSecret;

use super::{ClusterConfig, UpstreamCredential, UpstreamError};

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of `ca_pem`, or the system's when there is none.
pub(crate) fn roots(ca_pem: Option<&[u8]>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(mut pem) => {
            for cert in rustls_pemfile::certs(&mut pem) {
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
    Ok(roots)
}

/// An HTTP/1.1 client for Paddock's own outbound calls (the audit webhook,
/// a sidecar's feed), trusting `ca_pem` (or the system roots), TLS 1.2+;
/// `http://` too when `allow_http` (the caller decides where that is safe).
pub(crate) fn https_client<B>(
    ca_pem: Option<&[u8]>,
    connect_timeout: std::time::Duration,
    allow_http: bool,
) -> Result<
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        B,
    >,
    String,
>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    https_client_over(ca_pem, allow_http, http)
}

/// [`https_client`] over the TCP connections `connector` makes (through
/// an HTTP proxy, say); TLS runs on top of them.
pub(crate) fn https_client_over<C, B>(
    ca_pem: Option<&[u8]>,
    allow_http: bool,
    connector: C,
) -> Result<hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<C>, B>, String>
where
    hyper_rustls::HttpsConnector<C>: hyper_util::client::legacy::connect::Connect + Clone,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    use hyper_util::rt::{TokioExecutor, TokioTimer};
    let tls = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    let builder = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
    let connector = if allow_http {
        builder
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector)
    } else {
        builder
            .https_only()
            .enable_http1()
            .wrap_connector(connector)
    };
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector),
    )
}

pub(super) fn client_config(config: &ClusterConfig) -> Result<ClientConfig, UpstreamError> {
    let tls_error = |message: String| UpstreamError::Tls {
        cluster: config.id.clone(),
        message,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls_error(e.to_string()))?;
    let builder = if config.dangerous_skip_tls_verify {
        tracing::warn!(cluster.id = %config.id, "TLS verification towards this cluster is DISABLED");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        builder.with_root_certificates(roots(config.ca_pem.as_deref()).map_err(tls_error)?)
    };
    match &config.credential {
        UpstreamCredential::ClientCertificate { cert_pem, key_pem } => {
            let certs: Vec<CertificateDer<'static>> =
                rustls_pemfile::certs(&mut cert_pem.as_slice())
                    .collect::<Result<_, _>>()
                    .map_err(|e| tls_error(format!("invalid client certificate PEM: {e}")))?;
            let key: PrivateKeyDer<'static> =
                rustls_pemfile::private_key(&mut key_pem.expose_secret().as_bytes())
                    .map_err(|e| tls_error(format!("invalid client key PEM: {e}")))?
                    .ok_or_else(|| tls_error("no private key in the client key PEM".to_owned()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| tls_error(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// Accepts any server certificate. Only reachable through
/// `dangerous_skip_tls_verify`.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
