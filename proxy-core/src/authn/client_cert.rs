//! Client certificates as credentials, mapped like Kubernetes does: the
//! subject's CommonName is the user, each Organization a group.
//!
//! rustls has already verified the chain against the configured client CA
//! by the time a certificate reaches this module.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::{Authenticator, AuthnError, Credential, Identity, ReadyOrBoxed};

/// The identity-relevant parts of a verified client certificate, parsed
/// once per connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Subject CommonName: the user name.
    pub common_name: String,
    /// Subject Organizations: the groups.
    pub organizations: Vec<String>,
}

impl ClientCertificate {
    /// Parses the end-entity certificate. `None` when it has no CommonName,
    /// which Kubernetes also refuses.
    pub fn from_der(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| !cn.is_empty())?
            .to_owned();
        let organizations = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        Some(Self {
            common_name,
            organizations,
        })
    }
}

/// Authenticates callers by their verified client certificate.
#[derive(Debug, Clone, Default)]
pub struct ClientCertAuthenticator;

impl Authenticator for ClientCertAuthenticator {
    fn name(&self) -> &str {
        "client-cert"
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let identity = match credential {
            Credential::ClientCertificate(cert) => Some(Arc::new(Identity {
                user: cert.common_name.clone(),
                username: cert.common_name.clone(),
                groups: cert.organizations.clone(),
                provider: "client-cert".to_owned(),
                ..Identity::default()
            })),
            _ => None,
        };
        ReadyOrBoxed::ready(Ok(identity))
    }
}
