use std::{fmt, path::PathBuf, sync::Arc};

use arc_swap::ArcSwapOption;
use http::{header, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use super::UpstreamError;
use crate::reload::{FileWatch, DEFAULT_POLL_INTERVAL};

/// How Paddock authenticates itself to a downstream API server.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum UpstreamCredential {
    /// No credential (only sensible in tests).
    #[default]
    None,
    /// A bearer token.
    BearerToken(SecretString),
    /// A bearer token read from a file and re-read when it changes
    /// (projected ServiceAccount tokens rotate).
    BearerTokenFile(PathBuf),
    /// A client certificate and key, PEM.
    ClientCertificate {
        /// Certificate chain, PEM.
        cert_pem: Vec<u8>,
        /// Private key, PEM.
        key_pem: SecretString,
    },
}

impl fmt::Debug for UpstreamCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::BearerToken(_) => f.write_str("BearerToken(<redacted>)"),
            Self::BearerTokenFile(path) => write!(f, "BearerTokenFile({})", path.display()),
            Self::ClientCertificate { .. } => f.write_str("ClientCertificate(<redacted>)"),
        }
    }
}

/// The `Authorization` header to add to every upstream request, kept
/// current when it comes from a file.
#[derive(Clone, Default)]
pub(super) struct AuthorizationHeader {
    value: Arc<ArcSwapOption<HeaderValue>>,
    _watch: Option<Arc<FileWatch>>,
}

impl AuthorizationHeader {
    pub(super) fn new(credential: &UpstreamCredential) -> Result<Self, UpstreamError> {
        match credential {
            UpstreamCredential::BearerToken(token) => Ok(Self {
                value: Arc::new(ArcSwapOption::from_pointee(bearer(token.expose_secret())?)),
                _watch: None,
            }),
            UpstreamCredential::BearerTokenFile(path) => {
                let token =
                    std::fs::read_to_string(path).map_err(|e| UpstreamError::Credential {
                        message: format!("cannot read token file {}: {e}", path.display()),
                    })?;
                let value = Arc::new(ArcSwapOption::from_pointee(bearer(token.trim())?));
                let target = value.clone();
                let watch = FileWatch::spawn(path, DEFAULT_POLL_INTERVAL, move |path| {
                    let token = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
                    target.store(Some(Arc::new(
                        bearer(token.trim()).map_err(|e| e.to_string())?,
                    )));
                    Ok(())
                });
                Ok(Self {
                    value,
                    _watch: Some(Arc::new(watch)),
                })
            }
            _ => Ok(Self::default()),
        }
    }

    pub(super) fn apply(&self, headers: &mut HeaderMap) {
        if let Some(value) = self.value.load().as_deref() {
            headers.insert(header::AUTHORIZATION, value.clone());
        }
    }
}

fn bearer(token: &str) -> Result<HeaderValue, UpstreamError> {
    if token.is_empty() {
        return Err(UpstreamError::Credential {
            message: "the bearer token is empty".to_owned(),
        });
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
        UpstreamError::Credential {
            message: "the bearer token contains characters not allowed in a header".to_owned(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}
