//! The listener's TLS: TLS 1.2 and 1.3 only, ALPN h2 and http/1.1,
//! optional client certificates, and a self-signed CA generated once and
//! kept in the data directory when no certificate is configured.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

/// Why TLS could not be set up. Never contains key material.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// PEM data is malformed or does not fit together.
    #[error("{message}")]
    Invalid {
        /// What is wrong.
        message: String,
    },
}

/// PEM material for the listener.
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate chain, leaf first.
    pub cert_chain_pem: Vec<u8>,
    /// Private key.
    pub key_pem: secrecy::SecretSlice<u8>,
    /// CA bundle for client certificates; `None` disables client-certificate authentication.
    pub client_ca_pem: Option<Vec<u8>>,
    /// The CA clients should trust (handed out in kubeconfigs), when known.
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn invalid(message: impl Into<String>) -> TlsError {
    TlsError::Invalid {
        message: message.into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

impl ServerTls {
    /// Loads a certificate and key from files.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            cert_chain_pem: read(cert)?,
            key_pem: read(key)?.into(),
            client_ca_pem: None,
            ca_pem: None,
        })
    }

    /// Requests (but does not require) client certificates signed by the
    /// CA in `path`.
    pub fn with_client_ca_file(mut self, path: &Path) -> Result<Self, TlsError> {
        self.client_ca_pem = Some(read(path)?);
        Ok(self)
    }

    /// The certificate generated on first start in `data_dir/tls/`, reused
    /// on every later start: a CA (`ca.crt`, the one clients trust) and a
    /// server certificate for localhost, 127.0.0.1, ::1 and `extra_names`.
    /// Directories it creates get mode 0700.
    pub fn self_signed(data_dir: &Path, extra_names: &[String]) -> Result<Self, TlsError> {
        let dir = data_dir.join("tls");
        let paths = SelfSignedPaths::new(&dir);
        if !paths.cert.exists() {
            generate(&dir, &paths, extra_names)?;
        }
        let mut tls = Self::from_files(&paths.cert, &paths.key)?;
        tls.ca_pem = Some(read(&paths.ca)?);
        Ok(tls)
    }

    /// The CA of the certificate [`ServerTls::self_signed`] generated in
    /// `data_dir`, if it exists.
    pub fn generated_ca_pem(data_dir: &Path) -> Option<Vec<u8>> {
        fs::read(SelfSignedPaths::new(&data_dir.join("tls")).ca).ok()
    }

    /// The rustls configuration for the listener.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        use secrecy::ExposeSecret;
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile::certs(&mut self.cert_chain_pem.as_slice())
                .collect::<Result<_, _>>()
                .map_err(|e| invalid(format!("invalid certificate PEM: {e}")))?;
        if certs.is_empty() {
            return Err(invalid("the certificate file holds no certificate"));
        }
        let key: PrivateKeyDer<'static> =
            rustls_pemfile::private_key(&mut self.key_pem.expose_secret())
                .map_err(|e| invalid(format!("invalid key PEM: {e}")))?
                .ok_or_else(|| invalid("the key file holds no private key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| invalid(e.to_string()))?;
        let builder = match &self.client_ca_pem {
            Some(pem) => builder.with_client_cert_verifier(client_verifier(pem, provider)?),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(|e| invalid(format!("certificate and key do not match: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl ServerTls {
    /// Checks a client CA bundle (PEM) the way [`ServerTls::server_config`]
    /// uses it, so a configuration can be validated before any certificate
    /// exists.
    pub fn check_client_ca(pem: &[u8]) -> Result<(), TlsError> {
        client_verifier(pem, Arc::new(rustls::crypto::ring::default_provider())).map(drop)
    }
}

fn client_verifier(
    pem: &[u8],
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &*pem) {
        let cert = cert.map_err(|e| invalid(format!("invalid client CA PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| invalid(format!("invalid client CA: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| invalid(format!("client CA: {e}")))
}

struct SelfSignedPaths {
    ca: PathBuf,
    ca_key: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl SelfSignedPaths {
    fn new(dir: &Path) -> Self {
        Self {
            ca: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }
}

fn generate(dir: &Path, paths: &SelfSignedPaths, extra_names: &[String]) -> Result<(), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let rc = |e: rcgen::Error| invalid(format!("cannot generate certificate: {e}"));
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rc)?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Paddock CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let ca_key = KeyPair::generate().map_err(rc)?;
    let ca_cert = ca_params.self_signed(&ca_key).map_err(rc)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(extra_names.iter().cloned());
    let mut params = CertificateParams::new(names).map_err(rc)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "paddock");
    params.not_after = rcgen::date_time_ymd(2046, 1, 1);
    let key = KeyPair::generate().map_err(rc)?;
    let cert = params.signed_by(&key, &issuer).map_err(rc)?;

    // Mode 0700, the data directory's too when this creates it: keys live here.
    crate::store::create_data_dir(dir).map_err(|e| TlsError::File {
        path: dir.display().to_string(),
        message: e.to_string(),
    })?;
    write_file(&paths.ca, ca_cert.pem().as_bytes(), false)?;
    write_file(&paths.ca_key, issuer.key().serialize_pem().as_bytes(), true)?;
    write_file(&paths.key, key.serialize_pem().as_bytes(), true)?;
    // The certificate last: its presence marks the set complete.
    write_file(&paths.cert, cert.pem().as_bytes(), false)?;
    tracing::info!(dir = %dir.display(), "generated a self-signed CA and server certificate");
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let error = |e: std::io::Error| TlsError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(error)?;
    file.write_all(contents).map_err(error)?;
    file.sync_all().map_err(error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_generated_certificate_creates_the_data_directory_0700() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("data");
        let tls = ServerTls::self_signed(&data_dir, &[]).unwrap();
        assert!(tls.server_config().is_ok());
        for dir in [data_dir.clone(), data_dir.join("tls")] {
            let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", dir.display());
        }
    }
}
