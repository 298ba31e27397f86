//! Kubernetes impersonation headers: encoding an [`Identity`] exactly as
//! client-go does, and reading what a caller asked for (`kubectl --as`).
//!
//! As client-go's `NewImpersonatingRoundTripper`
//! (`staging/src/k8s.io/client-go/transport/round_trippers.go`; see
//! `docs/facts.md` §2): one header line per group and per extra value (never
//! comma-joined), `Impersonate-Uid` only when set, extra keys lower-cased then
//! escaped like `headerKeyEscape`. One difference: a trailing
//! `system:authenticated` that the API server would append by itself is not
//! sent (see `groups_to_send`).

use std::{
    cell::RefCell,
    rc::Rc,
    sync::{Arc, Weak},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use policy::ImpersonationRequest;

use crate::{
    authn::{Identity, SYSTEM_AUTHENTICATED},
    error::ProxyError,
};

/// `Impersonate-User`.
pub(crate) const USER: HeaderName = HeaderName::from_static("impersonate-user");
/// `Impersonate-Uid`.
pub(crate) const UID: HeaderName = HeaderName::from_static("impersonate-uid");
/// `Impersonate-Group`.
pub(crate) const GROUP: HeaderName = HeaderName::from_static("impersonate-group");
/// Prefix of `Impersonate-Extra-<key>` (lower case, as on the wire in HTTP/2).
pub(crate) const EXTRA_PREFIX: &str = "impersonate-extra-";
/// What every impersonation header's name starts with.
const PREFIX: &str = "impersonate-";

/// Replaces any impersonation headers in `headers` with ones under which
/// the API server sees `identity`. Fails only if the identity holds bytes
/// no header can carry.
pub fn insert_headers(headers: &mut HeaderMap, identity: &Identity) -> Result<(), ProxyError> {
    let extra_values: usize = identity.extra.values().map(Vec::len).sum();
    headers.reserve(2 + identity.groups.len() + extra_values);
    headers.insert(USER, value(&identity.user)?);
    if let Some(uid) = identity.uid.as_deref().filter(|uid| !uid.is_empty()) {
        headers.insert(UID, value(uid)?);
    }
    for group in groups_to_send(identity) {
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

/// The groups sent for `identity`: all of them, less a trailing
/// `system:authenticated` when the API server's defaulting
/// ([`policy::impersonated_groups`]) gives back the same groups in the same
/// order without it. The API server authorizes every `Impersonate-Group`
/// value it receives, and HTTP/2 indexes only a header's first value, so
/// that one would cost an authorization check and a literal on every
/// request. At least one group is always sent, so service-account
/// defaulting never applies.
fn groups_to_send(identity: &Identity) -> &[String] {
    match identity.groups.split_last() {
        Some((last, others))
            if last == SYSTEM_AUTHENTICATED
                && !others.is_empty()
                && policy::impersonated_groups(&identity.user, others) == identity.groups =>
        {
            others
        }
        _ => &identity.groups,
    }
}

/// The encoded headers of one identity: (name, value, replaces what is there).
type Encoded = Rc<[(HeaderName, HeaderValue, bool)]>;

/// Identities each thread encoded lately.
const CACHED: usize = 64;

thread_local! {
    /// This thread's encodings, most recent last, by identity: an
    /// authenticator hands out the same `Arc` for a credential for as long
    /// as it caches it. The `Weak` keeps the allocation (not the identity)
    /// alive, so no other identity can take its address while it is here.
    static ENCODED: RefCell<Vec<(Weak<Identity>, Encoded)>> = const { RefCell::new(Vec::new()) };
}

/// [`insert_headers`], with the header values encoded once per identity
/// per thread and cloned afterwards (a reference count each), instead of
/// validated and copied on every request.
pub fn insert_cached_headers(
    headers: &mut HeaderMap,
    identity: &Arc<Identity>,
) -> Result<(), ProxyError> {
    let found = ENCODED.with(|cache| {
        let cache = cache.borrow();
        cache
            .iter()
            .rev()
            .find(|(known, _)| std::ptr::eq(known.as_ptr(), Arc::as_ptr(identity)))
            .map(|(_, encoded)| encoded.clone())
    });
    let encoded = match found {
        Some(encoded) => encoded,
        None => {
            let mut fresh = HeaderMap::new();
            insert_headers(&mut fresh, identity)?;
            let mut seen = None;
            let encoded: Encoded = fresh
                .into_iter()
                .map(|(name, value)| {
                    // `into_iter` names a header's first value only.
                    let first = name.is_some();
                    if let Some(name) = name {
                        seen = Some(name);
                    }
                    let name = seen.clone().expect("the first value has a name");
                    let replaces = first && (name == USER || name == UID);
                    (name, value, replaces)
                })
                .collect();
            ENCODED.with(|cache| {
                let mut cache = cache.borrow_mut();
                cache.retain(|(known, _)| known.strong_count() > 0);
                if cache.len() >= CACHED {
                    cache.remove(0);
                }
                cache.push((Arc::downgrade(identity), encoded.clone()));
            });
            encoded
        }
    };
    headers.reserve(encoded.len());
    for (name, value, replaces) in encoded.iter() {
        if *replaces {
            headers.insert(name.clone(), value.clone());
        } else {
            headers.append(name.clone(), value.clone());
        }
    }
    Ok(())
}

fn value(text: &str) -> Result<HeaderValue, ProxyError> {
    HeaderValue::from_str(text).map_err(|_| ProxyError::Internal {
        message: "identity contains a character that no HTTP header can carry".to_owned(),
    })
}

/// `Impersonate-Extra-<escaped key>` for `key`: the key the API server
/// decodes is the key Paddock authorized, upper-case letters included.
pub(crate) fn extra_header_name(key: &str) -> Result<HeaderName, ProxyError> {
    let mut name = String::with_capacity(EXTRA_PREFIX.len() + key.len());
    name.push_str(EXTRA_PREFIX);
    name.push_str(&header_key_escape(key));
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| ProxyError::Internal {
        message: format!("extra key {key:?} cannot be encoded as a header name"),
    })
}

/// client-go's `headerKeyEscape`: every byte that is not an RFC 7230 token
/// byte, and `%` itself, becomes `%XX` with upper-case hex. Upper-case
/// letters too, unlike client-go: header names travel lower-cased (HTTP/2
/// requires it) and the API server lower-cases the name before unescaping,
/// so an upper-case letter arrives as one only escaped.
pub(crate) fn header_key_escape(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut escaped = String::with_capacity(key.len());
    for &byte in key.as_bytes() {
        if byte != b'%' && is_token_byte(byte) && !byte.is_ascii_uppercase() {
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

/// What the caller asked to be treated as (`kubectl --as`, `--as-group`,
/// `--as-uid`, `Impersonate-Extra-*`), read from the canonical header names
/// (any case) before sanitize removes them. `None` when the caller sent none
/// of them; the combination is validated by the authorize layer.
pub(crate) fn requested(headers: &HeaderMap) -> Option<ImpersonationRequest> {
    // One pass over the names: nearly every request has none of them, and
    // looking each of `user`, `uid` and `group` up by hash cost three
    // lookups per request.
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut request = ImpersonationRequest::default();
    let mut uid = None;
    for (name, value) in headers {
        if !name.as_str().starts_with(PREFIX) {
            continue;
        }
        // The first value of user and uid, as `HeaderMap::get` gives it.
        if *name == USER {
            request.user.get_or_insert_with(|| text(value));
        } else if *name == UID {
            uid.get_or_insert_with(|| text(value));
        } else if *name == GROUP {
            request.groups.push(text(value));
        } else if let Some(suffix) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            let key = policy::decode_extra_key(suffix);
            match request.extra.iter_mut().find(|(k, _)| *k == key) {
                Some((_, values)) => values.push(text(value)),
                None => request.extra.push((key, vec![text(value)])),
            }
        }
    }
    request.uid = uid.filter(|u| !u.is_empty());
    let asked = request.user.is_some()
        || request.uid.is_some()
        || !request.groups.is_empty()
        || !request.extra.is_empty();
    asked.then_some(request)
}

/// The identity a validated impersonation request proceeds as, with the
/// API server's group defaulting (`system:authenticated`, service accounts).
pub(crate) fn impersonated_identity(
    request: &ImpersonationRequest,
    provider: &str,
) -> Option<Identity> {
    let subject = request.impersonated_subject()?;
    Some(Identity {
        username: subject.user.clone(),
        user: subject.user,
        uid: request.uid.clone(),
        groups: subject.groups,
        extra: request.extra.iter().cloned().collect(),
        provider: provider.to_owned(),
        ..Identity::default()
    })
}

#[cfg(test)]
mod tests;
