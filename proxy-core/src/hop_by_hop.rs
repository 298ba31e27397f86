//! Connection-specific headers (RFC 9110 §7.6.1): they describe one hop
//! and are never forwarded. The sanitize layer removes a caller's (in any
//! spelling); the forwarder and the agent remove an upstream response's.

use http::{header, HeaderMap, HeaderName};

/// The header names a message's `Connection` lists.
pub(crate) fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect()
}

/// Removes the hop-by-hop headers of an HTTP/1.1 message and those its
/// `Connection` lists. Most messages carry none, so the names are scanned
/// once and only what is there is removed: removing each of eight names by
/// hash lookup cost about 1,200 instructions per response.
pub(crate) fn strip(headers: &mut HeaderMap) {
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    for name in connection_listed(headers) {
        headers.remove(name);
    }
    while let Some(name) = headers.keys().find(|n| is_hop_by_hop(n)).cloned() {
        headers.remove(name);
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    const STANDARD: [HeaderName; 7] = [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ];
    STANDARD.contains(name) || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (n.parse::<HeaderName>().unwrap(), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn strips_hop_by_hop_and_connection_listed_headers_only() {
        let mut message = headers(&[
            ("content-type", "application/json"),
            ("connection", "keep-alive, X-Secret-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authenticate", "Basic"),
            ("proxy-authorization", "Basic eA=="),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("upgrade", "websocket"),
            ("audit-id", "abc"),
            ("audit-id", "def"),
        ]);
        strip(&mut message);
        let left: Vec<_> = message
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            left,
            [
                ("content-type", "application/json"),
                ("audit-id", "abc"),
                ("audit-id", "def")
            ]
        );
    }

    #[test]
    fn leaves_a_message_without_them_as_it_is() {
        let pairs = [
            ("content-type", "application/json"),
            ("content-length", "2"),
        ];
        let mut message = headers(&pairs);
        strip(&mut message);
        assert_eq!(message, headers(&pairs));
    }
}
