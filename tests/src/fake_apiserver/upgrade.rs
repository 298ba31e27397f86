//! The two upgrades the kubelet's streaming endpoints accept: a WebSocket
//! (RFC 6455, the subprotocol chosen from the client's list) and SPDY/3.1
//! (`k8s.io/apimachinery/pkg/util/httpstream`: `Upgrade: SPDY/3.1`, the
//! protocol negotiated through `X-Stream-Protocol-Version`).

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::{body::Incoming, upgrade::OnUpgrade};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::{full, status, Body};

/// A `101 Switching Protocols` to send, the protocol agreed on, and the
/// connection it will hand over.
pub(super) struct Upgrade {
    pub(super) response: Response<Body>,
    pub(super) protocol: String,
    pub(super) on: OnUpgrade,
}

fn upgrade_is(request: &Request<Incoming>, protocol: &str) -> bool {
    request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(protocol))
}

/// Whether the client asks for a WebSocket.
pub(super) fn is_websocket(request: &Request<Incoming>) -> bool {
    upgrade_is(request, "websocket")
}

/// Whether the client asks for SPDY/3.1.
pub(super) fn is_spdy(request: &Request<Incoming>) -> bool {
    upgrade_is(request, "SPDY/3.1")
}

/// Every value of a list header, however it was split across lines.
fn list(request: &Request<Incoming>, name: &str) -> Vec<String> {
    request
        .headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn switching(upgrade: &'static str, on: OnUpgrade) -> (Response<Body>, OnUpgrade) {
    let mut response = Response::new(full(bytes::Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static(upgrade));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    (response, on)
}

/// Accepts a WebSocket whose subprotocol is the first the client offers
/// among `supported`; otherwise a 400 Status.
pub(super) fn websocket(
    request: &mut Request<Incoming>,
    supported: &[&str],
) -> Result<Upgrade, Response<Body>> {
    let Some(key) = request.headers().get("sec-websocket-key").cloned() else {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "missing Sec-WebSocket-Key",
        ));
    };
    let offered = list(request, "sec-websocket-protocol");
    let Some(protocol) = offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
    else {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("no supported subprotocol in {offered:?}"),
        ));
    };
    let (mut response, on) = switching("websocket", hyper::upgrade::on(request));
    let headers = response.headers_mut();
    headers.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("accept key"),
    );
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(&protocol).expect("protocol"),
    );
    Ok(Upgrade {
        response,
        protocol,
        on,
    })
}

/// Accepts SPDY/3.1 with the first protocol the client lists in
/// `X-Stream-Protocol-Version` that is in `supported`, as
/// `httpstream.Handshake` does: without the header, 400; with none in
/// common, 403 listing what the server accepts.
pub(super) fn spdy(
    request: &mut Request<Incoming>,
    supported: &[&str],
) -> Result<Upgrade, Response<Body>> {
    let offered = list(request, "x-stream-protocol-version");
    if offered.is_empty() {
        return Err(status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "unable to upgrade: X-Stream-Protocol-Version is required",
        ));
    }
    let Some(protocol) = offered
        .iter()
        .find(|p| supported.contains(&p.as_str()))
        .cloned()
    else {
        let mut refused = status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {supported:?}"
            ),
        );
        for accepted in supported {
            refused.headers_mut().append(
                "x-accepted-stream-protocol-versions",
                HeaderValue::from_str(accepted).expect("protocol"),
            );
        }
        return Err(refused);
    };
    let (mut response, on) = switching("SPDY/3.1", hyper::upgrade::on(request));
    response.headers_mut().insert(
        "x-stream-protocol-version",
        HeaderValue::from_str(&protocol).expect("protocol"),
    );
    Ok(Upgrade {
        response,
        protocol,
        on,
    })
}
