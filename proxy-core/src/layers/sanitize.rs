//! Sanitize: removes every identity and hop-by-hop header the caller sent,
//! before anything else looks at the request.
//!
//! Names are matched case-insensitively (the `http` crate lower-cases them)
//! and with `_` treated as `-`, because some intermediaries translate one
//! into the other. What the caller asked to impersonate is kept aside for
//! the authorize layer; an upgrade request is kept aside for forward.
//! `Authorization` and `Cookie` stay until authenticate has consumed them.

use std::task::{Context, Poll};

use http::{header, HeaderMap, Request};
use tower::{Layer, Service};

use crate::{
    hop_by_hop, impersonation,
    request::{CallerImpersonation, RequestHost, UpgradeRequest},
};

/// Adds [`Sanitize`].
#[derive(Debug, Clone, Default)]
pub(crate) struct SanitizeLayer;

impl<S> Layer<S> for SanitizeLayer {
    type Service = Sanitize<S>;

    fn layer(&self, inner: S) -> Sanitize<S> {
        Sanitize { inner }
    }
}

/// Strips caller-sent identity and hop-by-hop headers.
#[derive(Debug, Clone)]
pub(crate) struct Sanitize<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Sanitize<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> S::Future {
        if let Some(upgrade) = upgrade_request(request.headers()) {
            request.extensions_mut().insert(upgrade);
        }
        if let Some(requested) = impersonation::requested(request.headers()) {
            request
                .extensions_mut()
                .insert(CallerImpersonation(requested));
        }
        // Kept for Paddock's own endpoints (kubeconfig server URLs), and only
        // for them: proxied requests pay nothing for it. Never forwarded.
        if request.uri().path().starts_with("/paddock/") {
            let host = request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| request.uri().authority().map(|a| a.as_str()))
                .map(|h| RequestHost(h.to_owned()));
            if let Some(host) = host {
                request.extensions_mut().insert(host);
            }
        }
        strip(request.headers_mut());
        self.inner.call(request)
    }
}

/// Removes caller-sent `Impersonate-*`, `X-Remote-*`, hop-by-hop headers,
/// headers listed in `Connection`, `Host` and `X-Forwarded-*`/`Forwarded`.
pub fn strip(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
        for name in hop_by_hop::connection_listed(headers) {
            headers.remove(name);
        }
    }
    strip_matching(headers, is_stripped);
}

/// Removes every header whose name `stripped` picks, asking once per name.
/// Linear in the header count whatever the caller sends: this runs before
/// authentication, on HTTP/2 requests of thousands of headers too.
fn strip_matching(headers: &mut HeaderMap, stripped: impl Fn(&str) -> bool) {
    let mut first = None;
    let mut more = Vec::new();
    for name in headers.keys() {
        if stripped(name.as_str()) {
            // Usually only `Host` goes: no allocation for one name.
            match first {
                None => first = Some(name.clone()),
                Some(_) => more.push(name.clone()),
            }
        }
    }
    if let Some(name) = first {
        headers.remove(name);
    }
    // Checked first: even an empty Vec's iterator costs its drop, on
    // every request.
    if !more.is_empty() {
        for name in more {
            headers.remove(name);
        }
    }
}

/// True for a header name Paddock never forwards from a caller.
pub(crate) fn is_stripped(name: &str) -> bool {
    const PREFIXES: [&[u8]; 3] = [b"impersonate-", b"x-remote-", b"x-forwarded-"];
    const HOP_BY_HOP: [&[u8]; 11] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"forwarded",
    ];
    let name = name.as_bytes();
    PREFIXES
        .iter()
        .any(|prefix| name.len() >= prefix.len() && dash_eq(&name[..prefix.len()], prefix))
        || HOP_BY_HOP.iter().any(|hop| dash_eq(name, hop))
}

/// Compares a lower-case header name with a lower-case pattern, `_` in the
/// name matching `-` in the pattern.
fn dash_eq(name: &[u8], pattern: &[u8]) -> bool {
    name.len() == pattern.len()
        && name
            .iter()
            .zip(pattern)
            .all(|(&n, &p)| n == p || (n == b'_' && p == b'-'))
}

fn upgrade_request(headers: &HeaderMap) -> Option<UpgradeRequest> {
    // `Upgrade` first: most requests have none, and then `Connection` is
    // not read.
    let protocol = headers.get(header::UPGRADE)?;
    let wants_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    wants_upgrade.then(|| UpgradeRequest(protocol.clone()))
}

#[cfg(test)]
mod tests;
