//! The Kubernetes impersonation filter's semantics (legacy
//! `WithImpersonation`,
//! `staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`; see
//! `docs/facts.md` §2).

use std::collections::BTreeMap;

use http::{HeaderMap, StatusCode};
use percent_encoding::percent_decode_str;
use serde::Serialize;

use super::{status, Body};

/// Who a request runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// User name.
    pub username: String,
    /// UID, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// Groups.
    pub groups: Vec<String>,
    /// Extra attributes.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The proxy's own identity, when it impersonates nobody.
pub const PROXY_USER: &str = "system:serviceaccount:paddock:proxy";

/// Applies the impersonation headers: 400 for group/uid/extra without a
/// user, the resulting identity otherwise.
pub(super) fn user_info(headers: &HeaderMap) -> Result<UserInfo, http::Response<Body>> {
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    // headers.Get: the first value only; empty means "not impersonating".
    let user = headers
        .get("impersonate-user")
        .map(text)
        .filter(|u| !u.is_empty());
    let groups: Vec<String> = headers
        .get_all("impersonate-group")
        .iter()
        .map(text)
        .collect();
    let uid = headers
        .get("impersonate-uid")
        .map(text)
        .filter(|u| !u.is_empty());
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(suffix) = name.as_str().strip_prefix("impersonate-extra-") {
            extra
                .entry(unescape_extra_key(suffix))
                .or_default()
                .push(text(value));
        }
    }
    let Some(username) = user else {
        let problem = if !groups.is_empty() {
            Some("groups")
        } else if !extra.is_empty() {
            Some("extra")
        } else if uid.is_some() {
            Some("uid")
        } else {
            None
        };
        if let Some(what) = problem {
            return Err(status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("requested {what} without impersonating a user"),
            ));
        }
        return Ok(UserInfo {
            username: PROXY_USER.to_owned(),
            uid: None,
            groups: vec![
                "system:serviceaccounts".to_owned(),
                "system:serviceaccounts:paddock".to_owned(),
                "system:authenticated".to_owned(),
            ],
            extra: BTreeMap::new(),
        });
    };
    let mut groups = groups;
    if groups.is_empty() {
        if let Some(ns) = service_account_namespace(&username) {
            groups.push("system:serviceaccounts".to_owned());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
    }
    let has = |g: &str, groups: &[String]| groups.iter().any(|x| x == g);
    if username == "system:anonymous" {
        if !has("system:unauthenticated", &groups) {
            groups.push("system:unauthenticated".to_owned());
        }
    } else if !has("system:authenticated", &groups) && !has("system:unauthenticated", &groups) {
        groups.push("system:authenticated".to_owned());
    }
    Ok(UserInfo {
        username,
        uid,
        groups,
        extra,
    })
}

/// `unescapeExtraKey`: lower-case (Go canonicalisation already did), then
/// `url.PathUnescape`; on failure the lower-cased key verbatim.
pub(super) fn unescape_extra_key(suffix: &str) -> String {
    let lower = suffix.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let valid = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || (bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    });
    if !valid {
        return lower;
    }
    percent_decode_str(&lower)
        .decode_utf8()
        .map_or(lower.clone(), |s| s.into_owned())
}

fn service_account_namespace(user: &str) -> Option<&str> {
    let rest = user.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    (label(ns) && !name.is_empty() && !name.contains(':')).then_some(ns)
}
