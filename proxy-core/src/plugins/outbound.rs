//! What the plugins that POST to a receiver share (the audit webhook, the
//! alert receivers): URL rules, the HTTPS client (through the configured
//! HTTP proxy), one POST with a timeout, and how a receiver is named in
//! logs and errors.

use std::{net::IpAddr, time::Duration};

use bytes::Bytes;
use http::{header, Request, Uri};
use http_body_util::{BodyExt, Full};

use crate::net::{tls::OutboundClient, OutboundProxy};

/// An HTTP(S) client for receivers.
pub(crate) type HttpClient = OutboundClient<Full<Bytes>>;

/// `url` parsed, if it is `https://`, or `http://` to a loopback address
/// (`why` says why clear text elsewhere is refused). Errors never show the
/// path, query or user info.
pub(crate) fn receiver_url(url: &str, why: &str) -> Result<Uri, String> {
    let url: Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let host = url.host().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme_str() {
        Some("https") if !host.is_empty() => Ok(url),
        Some("http") if loopback => Ok(url),
        Some("http") => Err(format!(
            "http:// only to a loopback address: {why}; use https://"
        )),
        _ => Err(format!("{} is not an https:// URL", redacted(&url))),
    }
}

/// The receiver as logs and errors name it: scheme, host and port, never
/// the path, query or user info that may hold the webhook's secret.
pub(crate) fn redacted(url: &Uri) -> String {
    let scheme = url.scheme_str().unwrap_or("?");
    let host = url.host().unwrap_or_default();
    match url.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// A client trusting `ca_pem` (the system's roots when `None`), TLS 1.2+,
/// connecting within `timeout` through `proxy` where it applies.
pub(crate) fn client(
    ca_pem: Option<&[u8]>,
    timeout: Duration,
    proxy: &OutboundProxy,
) -> Result<HttpClient, String> {
    // http:// is checked by `receiver_url`: loopback only.
    crate::net::tls::https_client(ca_pem, timeout, proxy.clone(), true)
}

/// POSTs `body` as JSON to `url` within `timeout`; a non-2xx answer is an
/// error. The (small) answer is read so the connection can be reused.
pub(crate) async fn post_json(
    client: &HttpClient,
    url: &Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<(), String> {
    let request = Request::post(url.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(timeout, async {
        let response = client
            .request(request)
            .await
            .map_err(|e| crate::error::error_chain(&e))?;
        let status = response.status();
        let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}
