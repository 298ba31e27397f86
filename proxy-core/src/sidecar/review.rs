//! `authentication.k8s.io` `TokenReview`, as kube-apiserver's token webhook
//! sends it (`--authentication-token-webhook-config-file`), in both API
//! versions it speaks (`v1beta1`, its default, and `v1`).
//!
//! The answer is always in the request's version ("must respond with a
//! TokenReview object of the same version as the request", Kubernetes'
//! authentication docs); `spec` in the answer is ignored by the apiserver,
//! so none is sent. A token that does not authenticate gets HTTP 200 with
//! `authenticated: false` (the apiserver treats any other status as a
//! webhook failure); only a body that is no TokenReview gets 400.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Largest body read: a TokenReview holds one token and a few audiences.
pub const MAX_BODY: usize = 64 * 1024;

/// The API versions answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `authentication.k8s.io/v1`.
    V1,
    /// `authentication.k8s.io/v1beta1` (kube-apiserver's default).
    V1beta1,
}

impl ReviewVersion {
    /// The `apiVersion` string.
    pub fn api_version(self) -> &'static str {
        match self {
            ReviewVersion::V1 => "authentication.k8s.io/v1",
            ReviewVersion::V1beta1 => "authentication.k8s.io/v1beta1",
        }
    }
}

/// A parsed review request.
#[derive(Debug)]
pub struct ReviewRequest {
    /// The version to answer in.
    pub version: ReviewVersion,
    /// The bearer token the apiserver was given.
    pub token: SecretString,
}

/// Why a body is not a TokenReview (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    api_version: String,
    kind: String,
    spec: WireSpec,
}

#[derive(Deserialize)]
struct WireSpec {
    #[serde(default)]
    token: String,
}

/// Parses a request body. Never panics; every failure says what is wrong
/// without echoing the token.
pub fn parse(body: &[u8]) -> Result<ReviewRequest, Malformed> {
    if body.len() > MAX_BODY {
        return Err(Malformed(format!(
            "the TokenReview is larger than {MAX_BODY} bytes"
        )));
    }
    let wire: Wire = serde_json::from_slice(body).map_err(|e| {
        // serde_json's message names the place, never a value.
        Malformed(format!(
            "the body is not a TokenReview: {}",
            e.classify_message()
        ))
    })?;
    let version = match wire.api_version.as_str() {
        "authentication.k8s.io/v1" => ReviewVersion::V1,
        "authentication.k8s.io/v1beta1" => ReviewVersion::V1beta1,
        other => {
            return Err(Malformed(format!(
                "apiVersion {:?} is not authentication.k8s.io/v1 or v1beta1",
                truncate(other)
            )))
        }
    };
    if wire.kind != "TokenReview" {
        return Err(Malformed(format!(
            "kind {:?} is not TokenReview",
            truncate(&wire.kind)
        )));
    }
    if wire.spec.token.is_empty() {
        return Err(Malformed("spec.token is empty".to_owned()));
    }
    Ok(ReviewRequest {
        version,
        token: SecretString::from(wire.spec.token),
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

trait ClassifyMessage {
    fn classify_message(&self) -> String;
}

impl ClassifyMessage for serde_json::Error {
    /// The error's kind and position only: serde's own message can quote
    /// the input ("invalid type: string \"…\""), which may be the token.
    fn classify_message(&self) -> String {
        let what = match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "wrong fields or types",
            serde_json::error::Category::Eof => "truncated JSON",
        };
        format!("{what} at line {} column {}", self.line(), self.column())
    }
}

/// Who a token authenticated, as the answer's `status.user`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct ReviewedUser {
    /// Kubernetes user name (Paddock's user id, as on the proxy path).
    pub username: String,
    /// UID (the user id: stable, never reused).
    pub uid: String,
    /// Group principal ids.
    pub groups: Vec<String>,
    /// `principalid`, `username` (the login name), `requesttokenid`.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The answer: authenticated as `user`, or not, with a reason for the
/// apiserver's log.
pub fn answer(version: ReviewVersion, outcome: Result<ReviewedUser, String>) -> serde_json::Value {
    let status = match outcome {
        Ok(user) => serde_json::json!({ "authenticated": true, "user": user }),
        Err(reason) => serde_json::json!({ "authenticated": false, "error": reason }),
    };
    serde_json::json!({
        "apiVersion": version.api_version(),
        "kind": "TokenReview",
        "status": status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    #[test]
    fn parses_both_versions_as_the_apiserver_sends_them() {
        for (version, expected) in [
            ("authentication.k8s.io/v1", ReviewVersion::V1),
            ("authentication.k8s.io/v1beta1", ReviewVersion::V1beta1),
        ] {
            let body = format!(
                r#"{{"apiVersion":"{version}","kind":"TokenReview","metadata":{{"creationTimestamp":null}},"spec":{{"token":"t-1:s","audiences":["https://kubernetes.default.svc"]}},"status":{{"user":{{}}}}}}"#
            );
            let parsed = parse(body.as_bytes()).unwrap();
            assert_eq!(parsed.version, expected);
            assert_eq!(parsed.token.expose_secret(), "t-1:s");
            let answered = answer(expected, Err("nope".into()));
            assert_eq!(answered["apiVersion"], version);
            assert_eq!(answered["status"]["authenticated"], false);
        }
    }

    #[test]
    fn refuses_what_is_not_a_token_review_without_echoing_the_token() {
        for body in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            br#"{"apiVersion":"v1","kind":"TokenReview","spec":{"token":"x"}}"#,
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"Pod","spec":{"token":"x"}}"#,
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#,
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"}"#,
            br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":7}}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
        let secret = "t-abc:SECRET-VALUE";
        let body = format!(
            r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":["{secret}"]}}}}"#
        );
        let error = parse(body.as_bytes()).unwrap_err();
        assert!(!error.0.contains("SECRET"), "{error}");
        assert!(parse(&vec![b' '; MAX_BODY + 1]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        // The parser's fuzz: arbitrary bytes, and mutations of a valid
        // review, never panic, and every Ok is a well-formed request.
        #[test]
        fn never_panics_on_arbitrary_bytes(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(r) = parse(&body) {
                prop_assert!(!r.token.expose_secret().is_empty());
            }
        }

        #[test]
        fn never_panics_on_mutated_reviews(
            at in 0usize..120, byte in any::<u8>(), cut in 0usize..120,
        ) {
            let valid = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t-1:secret"}}"#;
            let mut body = valid.to_vec();
            let at = at % body.len();
            body[at] = byte;
            body.truncate(cut.max(1).min(body.len()));
            let _ = parse(&body);
        }
    }
}
