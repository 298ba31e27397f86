//! `GET /paddock/v1/connect`: an agent opens its tunnel.
//!
//! A WebSocket upgrade (RFC 6455 §4.2) authenticated by the agent's
//! registration token in [`TOKEN_HEADER`](crate::tunnel::TOKEN_HEADER). Agents are not users: the
//! authenticate layer reads no credential for this endpoint, and the token
//! is only ever compared, in constant time, with its cluster's stored hash.
//! A refused agent gets 401 and the refusal is logged (with the cluster id
//! it claimed, never the token).

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use super::Endpoints;
use crate::{
    accounts::{clusters, Accounts},
    body::{RequestBody, ResponseBody},
    context::ConnectionInfo,
    error::ProxyError,
    request::{ProxyResult, UpgradeRequest},
    store::Timestamp,
    tunnel::{
        presented_token, SessionInfo, FEATURES_HEADER, FEATURE_REQUESTS, KUBERNETES_VERSION_HEADER,
        VERSION_HEADER,
    },
};

/// Header values an agent reports are cut to this length.
const MAX_REPORTED: usize = 64;

pub(super) async fn accept(
    endpoints: &Endpoints,
    accounts: &Arc<Accounts>,
    mut request: Request<RequestBody>,
) -> ProxyResult {
    let peer = request
        .extensions()
        .get::<Arc<ConnectionInfo>>()
        .and_then(|c| c.remote_addr);
    let headers = request.headers();
    let is_websocket = request
        .extensions()
        .get::<UpgradeRequest>()
        .is_some_and(|UpgradeRequest(p)| p.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let key = headers.get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let (true, Some(key), true) = (is_websocket, key, version_ok) else {
        return Err(ProxyError::BadRequest {
            message: "the agent tunnel is a WebSocket (version 13) upgrade over HTTP/1.1"
                .to_owned(),
        });
    };
    let presented = presented_token(headers);
    let reported = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_REPORTED).collect::<String>())
    };
    let info = SessionInfo {
        agent_version: reported(VERSION_HEADER),
        kubernetes_version: reported(KUBERNETES_VERSION_HEADER),
        serves_requests: headers
            .get_all(FEATURES_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|feature| feature.trim() == FEATURE_REQUESTS),
        connected_at: Timestamp::now(),
        last_heartbeat: Timestamp::now(),
    };
    let Some(presented) = presented else {
        tracing::warn!(client.addr = ?peer, "agent tunnel refused: no registration token");
        return Err(ProxyError::MissingCredentials);
    };
    let verified = accounts.view().with_snapshot(|snapshot| {
        clusters::verify_agent_token(snapshot, accounts.token_hasher(), &presented)
    });
    let Some((cluster, token_hash)) = verified else {
        let claimed = secrecy::ExposeSecret::expose_secret(&presented)
            .split_once('.')
            .map(|(id, _)| id.chars().take(MAX_REPORTED).collect::<String>());
        tracing::warn!(client.addr = ?peer, cluster.id = ?claimed, "agent tunnel refused: invalid, revoked or rotated registration token");
        return Err(ProxyError::InvalidCredentials);
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let tunnels = endpoints.config().tunnels.clone();
    let accounts = accounts.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::warn!(cluster.id = %cluster, %error, "agent tunnel: upgrade failed");
                return;
            }
        };
        // The tunnels' status writer records the connect and the drop.
        // Checked again once the session is registered: a revocation
        // while the upgrade completed had no session to end.
        let still_valid = |hash: &str| {
            accounts.view().with_snapshot(|snapshot| {
                clusters::verify_agent_token(snapshot, accounts.token_hasher(), &presented)
                    .is_some_and(|(id, current)| id == cluster && current == hash)
            })
        };
        tunnels
            .serve(
                &cluster,
                token_hash,
                info,
                TokioIo::new(upgraded),
                still_valid,
            )
            .await;
    });
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).map_err(|e| ProxyError::Internal {
            message: e.to_string(),
        })?,
    );
    Ok(response)
}
