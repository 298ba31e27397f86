use std::{fmt, sync::Arc};

use base64::Engine;
use http::{header, HeaderMap};
use secrecy::{ExposeSecret, SecretString};

use super::client_cert::ClientCertificate;
use crate::error::ProxyError;

/// Name of the cookie holding a browser session token.
pub const SESSION_COOKIE: &str = "paddock_session";

/// One credential presented by a caller. Secrets stay wrapped; `Debug` never
/// prints them.
#[derive(Clone)]
#[non_exhaustive]
pub enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer(SecretString),
    /// `Authorization: Basic <base64(user:password)>`.
    Basic {
        /// The user name as typed.
        username: String,
        /// The password, never logged.
        password: SecretString,
    },
    /// The `paddock_session` cookie.
    Session(SecretString),
    /// A client certificate verified during the TLS handshake.
    ClientCertificate(Arc<ClientCertificate>),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Self::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Self::Session(_) => f.write_str("Session(<redacted>)"),
            Self::ClientCertificate(cert) => write!(f, "ClientCertificate({cert:?})"),
        }
    }
}

impl Credential {
    /// Every credential in the request, strongest first: the client
    /// certificate, then `Authorization`, then the session cookie.
    /// A malformed `Authorization` header is an error, not "no credential".
    pub fn from_request(
        headers: &HeaderMap,
        client_cert: Option<&Arc<ClientCertificate>>,
    ) -> Result<Vec<Credential>, ProxyError> {
        let mut credentials = Vec::with_capacity(1);
        if let Some(cert) = client_cert {
            credentials.push(Credential::ClientCertificate(cert.clone()));
        }
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        if let Some(value) = authorization.next() {
            if authorization.next().is_some() {
                return Err(malformed("more than one Authorization header"));
            }
            let value = value
                .to_str()
                .map_err(|_| malformed("Authorization is not visible ASCII"))?;
            credentials.push(parse_authorization(value)?);
        }
        if let Some(session) = session_cookie(headers) {
            credentials.push(Credential::Session(session));
        }
        Ok(credentials)
    }
}

fn malformed(reason: &str) -> ProxyError {
    ProxyError::MalformedCredentials {
        reason: reason.to_owned(),
    }
}

fn parse_authorization(value: &str) -> Result<Credential, ProxyError> {
    // ASCII only (the header was checked to be visible ASCII), by bytes:
    // `str::split_once(' ')` and `trim` searched by `char`, a `memchr`
    // call and two Unicode scans on every request.
    let value = value.trim_ascii();
    let (scheme, rest) = match value.bytes().position(|b| b == b' ') {
        Some(space) => (&value[..space], value[space + 1..].trim_ascii()),
        None => (value, ""),
    };
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(malformed("empty bearer token"));
        }
        Ok(Credential::Bearer(SecretString::from(rest)))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| malformed("Basic credentials are not base64"))?;
        let decoded =
            String::from_utf8(decoded).map_err(|_| malformed("Basic credentials are not UTF-8"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| malformed("Basic credentials lack a ':'"))?;
        Ok(Credential::Basic {
            username: username.to_owned(),
            password: SecretString::from(password),
        })
    } else {
        Err(malformed("unsupported Authorization scheme"))
    }
}

fn session_cookie(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| SecretString::from(value.trim_matches('"')))
        .filter(|secret| !secret.expose_secret().is_empty())
}
