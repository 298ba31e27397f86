//! TLS client settings shared by every outbound client, and the HTTPS
//! client for Paddock's own calls.

use std::{sync::Arc, time::Duration};

use rustls::{crypto::CryptoProvider, ClientConfig, RootCertStore};

use super::{OutboundProxy, ProxyConnector};

/// The client for Paddock's own outbound calls.
pub(crate) type OutboundClient<B> =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<ProxyConnector>, B>;

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

/// An HTTP/1.1 client for Paddock's own outbound calls (identity
/// providers, the audit webhook, alert receivers, a sidecar's feed),
/// trusting `ca_pem` (or the system roots), TLS 1.2+, connecting within
/// `connect_timeout` through `proxy` where it applies (TLS then runs inside
/// the tunnel); `http://` too when `allow_http` (the caller decides where
/// that is safe).
pub(crate) fn https_client<B>(
    ca_pem: Option<&[u8]>,
    connect_timeout: Duration,
    proxy: OutboundProxy,
    allow_http: bool,
) -> Result<OutboundClient<B>, String>
where
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
    let tcp = ProxyConnector::new(proxy, connect_timeout);
    let connector = if allow_http {
        builder.https_or_http().enable_http1().wrap_connector(tcp)
    } else {
        builder.https_only().enable_http1().wrap_connector(tcp)
    };
    Ok(
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .build(connector),
    )
}
