//! TLS towards downstream API servers: verification always on unless the
//! cluster's `dangerous` setting says otherwise.

use std::sync::Arc;

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use secrecy::ExposeSecret;

use super::{ClusterConfig, UpstreamCredential, UpstreamError};
use crate::net::tls::{provider, roots};

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
