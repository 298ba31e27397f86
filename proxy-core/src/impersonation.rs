//! Kubernetes impersonation headers: encoding an [`Identity`] exactly as
//! client-go does, and reading what a caller asked for (`kubectl --as`).
//!
//! See shared/reference/k8s-proxies.md §1.1: one header line per group and
//! per extra value (never comma-joined), `Impersonate-Uid` only when set,
//! extra keys lower-cased then escaped like client-go's `headerKeyEscape`.

use std::collections::BTreeMap;

use http::{HeaderMap, HeaderName, HeaderValue};
use percent_encoding::percent_decode_str;

use crate::{authn::Identity, error::ProxyError};

/// `Impersonate-User`.
pub const USER: HeaderName = HeaderName::from_static("impersonate-user");
/// `Impersonate-Uid`.
pub const UID: HeaderName = HeaderName::from_static("impersonate-uid");
/// `Impersonate-Group`.
pub const GROUP: HeaderName = HeaderName::from_static("impersonate-group");
/// Prefix of `Impersonate-Extra-<key>` (lower case, as on the wire in HTTP/2).
pub const EXTRA_PREFIX: &str = "impersonate-extra-";

/// Replaces any impersonation headers in `headers` with ones presenting
/// `identity`. Fails only if the identity holds bytes no header can carry.
pub fn insert_headers(headers: &mut HeaderMap, identity: &Identity) -> Result<(), ProxyError> {
    let extra_values: usize = identity.extra.values().map(Vec::len).sum();
    headers.reserve(2 + identity.groups.len() + extra_values);
    headers.insert(USER, value(&identity.user)?);
    if let Some(uid) = identity.uid.as_deref().filter(|uid| !uid.is_empty()) {
        headers.insert(UID, value(uid)?);
    }
    for group in &identity.groups {
        headers.append(GROUP, value(group)?);
    }
    for (key, values) in &identity.extra {
        let name = extra_header_name(key)?;
        for v in values {
            headers.append(name.clone(), value(v)?);
        }
    }
    Ok(())
}

fn value(text: &str) -> Result<HeaderValue, ProxyError> {
    HeaderValue::from_str(text).map_err(|_| ProxyError::Internal {
        message: "identity contains a character that no HTTP header can carry".to_owned(),
    })
}

/// `Impersonate-Extra-<escaped key>` for `key`, lower-cased first so the key
/// the API server decodes is the key Paddock authorized.
pub fn extra_header_name(key: &str) -> Result<HeaderName, ProxyError> {
    let mut name = String::with_capacity(EXTRA_PREFIX.len() + key.len());
    name.push_str(EXTRA_PREFIX);
    name.push_str(&header_key_escape(&key.to_ascii_lowercase()));
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ProxyError::Internal {
        message: format!("extra key {key:?} cannot be encoded as a header name"),
    })
}

/// client-go's `headerKeyEscape`: every byte that is not an RFC 7230 token
/// byte, and `%` itself, becomes `%XX` with upper-case hex.
pub fn header_key_escape(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut escaped = String::with_capacity(key.len());
    for &byte in key.as_bytes() {
        if byte != b'%' && is_token_byte(byte) {
            escaped.push(byte as char);
        } else {
            escaped.push('%');
            escaped.push(HEX[usize::from(byte >> 4)] as char);
            escaped.push(HEX[usize::from(byte & 0xf)] as char);
        }
    }
    escaped
}

fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// The API server's decoding of an `Impersonate-Extra-` suffix: lower-cased,
/// then path-unescaped; kept verbatim (lower-cased) if unescaping fails.
pub fn decode_extra_key(suffix: &str) -> String {
    let lower = suffix.to_ascii_lowercase();
    if has_invalid_escape(&lower) {
        return lower;
    }
    match percent_decode_str(&lower).decode_utf8() {
        Ok(decoded) => decoded.into_owned(),
        Err(_) => lower,
    }
}

fn has_invalid_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
    })
}

/// What a caller asked to be treated as (`kubectl --as`, `--as-group`,
/// `--as-uid`, `Impersonate-Extra-*`), read before the headers are stripped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestedImpersonation {
    /// `Impersonate-User` (first value), if non-empty.
    pub user: Option<String>,
    /// `Impersonate-Uid`, if non-empty.
    pub uid: Option<String>,
    /// Every `Impersonate-Group` line.
    pub groups: Vec<String>,
    /// Decoded extra keys and their values.
    pub extra: BTreeMap<String, Vec<String>>,
}

impl RequestedImpersonation {
    /// Reads the caller's impersonation headers (canonical names only, any
    /// case). `Ok(None)` when the caller asked for nothing; 400 for the
    /// combinations the API server refuses (group, uid or extra without a user).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ProxyError> {
        let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let mut requested = Self {
            user: headers.get(USER).map(text).filter(|u| !u.is_empty()),
            uid: headers.get(UID).map(text).filter(|u| !u.is_empty()),
            groups: headers.get_all(GROUP).iter().map(text).collect(),
            extra: BTreeMap::new(),
        };
        for (name, value) in headers {
            if let Some(suffix) = name.as_str().strip_prefix(EXTRA_PREFIX) {
                requested
                    .extra
                    .entry(decode_extra_key(suffix))
                    .or_default()
                    .push(text(value));
            }
        }
        if requested.user.is_none() {
            let what = if !requested.groups.is_empty() {
                Some("groups")
            } else if !requested.extra.is_empty() {
                Some("extra")
            } else if requested.uid.is_some() {
                Some("uid")
            } else {
                None
            };
            return match what {
                Some(what) => Err(ProxyError::BadRequest {
                    message: format!("requested {what} without impersonating a user"),
                }),
                None => Ok(None),
            };
        }
        Ok(Some(requested))
    }

    /// The identity the caller asked to act as, `system:authenticated`
    /// added as the API server does for non-anonymous users.
    pub fn into_identity(self, provider: &str) -> Identity {
        let user = self.user.unwrap_or_default();
        let mut groups = self.groups;
        if user != "system:anonymous"
            && !groups
                .iter()
                .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
        {
            groups.push("system:authenticated".to_owned());
        }
        Identity {
            username: user.clone(),
            user,
            uid: self.uid,
            groups,
            extra: self.extra,
            provider: provider.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
