//! Typed failures of the request path. The rescue layer turns each into a
//! Kubernetes `Status` response; nothing else decides status codes.

use http::{header, HeaderValue, Response, StatusCode};

use crate::{body::ResponseBody, status::Status};

/// Everything that can stop a request inside Paddock.
///
/// Messages never contain a credential: callers build them from names,
/// never from the values they were given.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The request carried no credential Paddock accepts.
    #[error("Unauthorized: no credentials were provided")]
    MissingCredentials,
    /// A credential was presented and rejected.
    #[error("Unauthorized: the credentials are invalid or expired")]
    InvalidCredentials,
    /// The credential could not even be parsed.
    #[error("Unauthorized: malformed credentials: {reason}")]
    MalformedCredentials {
        /// What was wrong, without the credential itself.
        reason: String,
    },
    /// The identity provider needed to check the credential is down.
    #[error("authentication provider {provider} is unavailable, try again later")]
    AuthenticationUnavailable {
        /// The provider's name.
        provider: String,
    },
    /// Policy refused the request.
    #[error("{reason}")]
    Forbidden {
        /// Why, for the person reading kubectl's output.
        reason: String,
    },
    /// The request itself is malformed.
    #[error("{message}")]
    BadRequest {
        /// What is wrong with it.
        message: String,
    },
    /// The request body is in a format this endpoint does not read.
    #[error("{message}")]
    UnsupportedMediaType {
        /// What is expected.
        message: String,
    },
    /// Nothing is served at this path.
    #[error("{message}")]
    NotFound {
        /// What was not found.
        message: String,
    },
    /// Too many attempts; retry after the given number of seconds.
    #[error("too many requests, retry after {retry_after_secs} seconds")]
    TooManyRequests {
        /// Seconds until a retry can succeed.
        retry_after_secs: u64,
    },
    /// The downstream API server could not be reached.
    #[error("cluster {cluster} is unreachable: {message}")]
    UpstreamUnavailable {
        /// The cluster id.
        cluster: String,
        /// What failed (connect refused, TLS handshake, ...).
        message: String,
    },
    /// The downstream API server answered with something that is not HTTP, or failed mid-request.
    #[error("cluster {cluster} failed: {message}")]
    UpstreamFailure {
        /// The cluster id.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// The downstream API server did not answer in time.
    #[error("cluster {cluster} did not answer within {timeout_secs} seconds")]
    UpstreamTimeout {
        /// The cluster id.
        cluster: String,
        /// The timeout that expired.
        timeout_secs: u64,
    },
    /// The store could not take a write (etcd unreachable or without a
    /// leader); reads go on from the last snapshot, except those that must
    /// be current (the replica feed).
    #[error("the store is unavailable, try again later: {message}")]
    StoreUnavailable {
        /// What failed.
        message: String,
    },
    /// A bug or an unexpected state inside Paddock.
    #[error("internal error: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
}

impl ProxyError {
    /// The HTTP status code and Kubernetes `reason` for this error.
    pub fn code_and_reason(&self) -> (StatusCode, &'static str) {
        match self {
            Self::MissingCredentials
            | Self::InvalidCredentials
            | Self::MalformedCredentials { .. } => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::AuthenticationUnavailable { .. }
            | Self::UpstreamUnavailable { .. }
            | Self::StoreUnavailable { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
            }
            Self::Forbidden { .. } => (StatusCode::FORBIDDEN, "Forbidden"),
            Self::BadRequest { .. } => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::NotFound { .. } => (StatusCode::NOT_FOUND, "NotFound"),
            Self::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
            }
            Self::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            Self::UpstreamFailure { .. } => (StatusCode::BAD_GATEWAY, "InternalError"),
            Self::UpstreamTimeout { .. } => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            Self::Internal { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// The `metav1.Status` response for this error, with `WWW-Authenticate`
    /// on 401 and `Retry-After` on 429 and 503.
    pub fn into_response(self) -> Response<ResponseBody> {
        let (code, reason) = self.code_and_reason();
        let mut response = Status::failure(code, reason, self.to_string()).into_response();
        let headers = response.headers_mut();
        match self {
            Self::MissingCredentials
            | Self::InvalidCredentials
            | Self::MalformedCredentials { .. } => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="paddock""#),
                );
            }
            Self::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            Self::AuthenticationUnavailable { .. }
            | Self::UpstreamUnavailable { .. }
            | Self::StoreUnavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

/// A store failure seen by an endpoint: a backend that cannot take the write
/// is 503 (the client retries), anything else is a bug or a damaged store.
impl From<crate::store::StoreError> for ProxyError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable { .. }
            | crate::store::StoreError::Unreachable { .. } => Self::StoreUnavailable {
                message: error.to_string(),
            },
            other => Self::Internal {
                message: other.to_string(),
            },
        }
    }
}

/// `error: cause: cause`: an error and its sources on one line, for Status
/// messages and logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_its_status() {
        let cases = [
            (
                ProxyError::MissingCredentials,
                401,
                Some(header::WWW_AUTHENTICATE),
            ),
            (
                ProxyError::InvalidCredentials,
                401,
                Some(header::WWW_AUTHENTICATE),
            ),
            (
                ProxyError::AuthenticationUnavailable {
                    provider: "ldap".into(),
                },
                503,
                Some(header::RETRY_AFTER),
            ),
            (
                ProxyError::Forbidden {
                    reason: "no".into(),
                },
                403,
                None,
            ),
            (
                ProxyError::TooManyRequests {
                    retry_after_secs: 7,
                },
                429,
                Some(header::RETRY_AFTER),
            ),
            (
                ProxyError::UpstreamUnavailable {
                    cluster: "c".into(),
                    message: "refused".into(),
                },
                503,
                Some(header::RETRY_AFTER),
            ),
            (
                ProxyError::UpstreamFailure {
                    cluster: "c".into(),
                    message: "reset".into(),
                },
                502,
                None,
            ),
            (
                ProxyError::from(crate::store::StoreError::Unavailable {
                    detail: "etcd: no leader".into(),
                }),
                503,
                Some(header::RETRY_AFTER),
            ),
            (
                ProxyError::UpstreamTimeout {
                    cluster: "c".into(),
                    timeout_secs: 60,
                },
                504,
                None,
            ),
        ];
        for (error, code, header) in cases {
            let response = error.clone().into_response();
            assert_eq!(response.status().as_u16(), code, "{error:?}");
            if let Some(header) = header {
                assert!(
                    response.headers().contains_key(&header),
                    "{error:?} lacks {header}"
                );
            }
        }
    }

    #[test]
    fn retry_after_carries_the_seconds() {
        let response = ProxyError::TooManyRequests {
            retry_after_secs: 7,
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "7");
    }
}
