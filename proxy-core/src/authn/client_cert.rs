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
    /// The identity they map to, built with the connection: every request
    /// on it shares this `Arc`, so what is cached per identity (the
    /// impersonation headers, audit's user) is not rebuilt per request.
    identity: Arc<Identity>,
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
        let organizations: Vec<String> = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_owned))
            .collect();
        let identity = Identity {
            user: common_name.clone(),
            username: common_name.clone(),
            groups: organizations.clone(),
            provider: "client-cert".to_owned(),
            ..Identity::default()
        }
        .with_authenticated_group();
        Some(Self {
            common_name,
            organizations,
            identity: Arc::new(identity),
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
