//! Client certificates as credentials, mapped like Kubernetes does: the
//! subject's CommonName is the user, each Organization a group.
//!
//! rustls has already verified the chain against the configured client CA
//! by the time a certificate reaches this module.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::{Authenticator, AuthnError, Credential, Identity, ReadyOrBoxed};

/// A verified client certificate as the identity it maps to, parsed once
/// per connection: every request on the connection shares the identity's
/// `Arc`, so what is cached per identity (the impersonation headers,
/// audit's user) is not rebuilt per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    identity: Arc<Identity>,
}

impl ClientCertificate {
    /// Parses the end-entity certificate: the subject's CommonName is the
    /// user, each Organization a group. `None` when it has no CommonName,
    /// which Kubernetes also refuses.
    pub fn from_der(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let subject = cert.subject();
        let common_name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .filter(|cn| !cn.is_empty())?;
        let identity = Identity {
            user: common_name.to_owned(),
            username: common_name.to_owned(),
            groups: subject
                .iter_organization()
                .filter_map(|o| o.as_str().ok().map(str::to_owned))
                .collect(),
            provider: "client-cert".to_owned(),
            ..Identity::default()
        }
        .with_authenticated_group();
        Some(Self {
            identity: Arc::new(identity),
        })
    }

    /// The identity: the CommonName as user, the Organizations and
    /// `system:authenticated` as groups.
    pub fn identity(&self) -> &Arc<Identity> {
        &self.identity
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
            Credential::ClientCertificate(cert) => Some(cert.identity.clone()),
            _ => None,
        };
        ReadyOrBoxed::ready(Ok(identity))
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    use super::*;
    use crate::authn::{AuthenticatorChain, SYSTEM_AUTHENTICATED};

    fn certificate(cn: &str, organization: &str) -> ClientCertificate {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        ClientCertificate::from_der(cert.der()).unwrap()
    }

    #[tokio::test]
    async fn requests_on_one_connection_share_one_identity() {
        let chain = AuthenticatorChain::new().with(ClientCertAuthenticator);
        // One connection's certificate, presented by two of its requests.
        let presented = [Credential::ClientCertificate(Arc::new(certificate(
            "carol", "platform",
        )))];
        let first = chain.authenticate(&presented).await.unwrap();
        let second = chain.authenticate(&presented).await.unwrap();
        assert_eq!(first.user, "carol");
        assert_eq!(first.provider, "client-cert");
        assert_eq!(first.groups, ["platform", SYSTEM_AUTHENTICATED]);
        assert!(Arc::ptr_eq(&first, &second));
    }

    #[test]
    fn a_certificate_without_a_common_name_is_no_credential() {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        // rcgen's default name has a CommonName.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "platform");
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert!(ClientCertificate::from_der(cert.der()).is_none());
    }
}
