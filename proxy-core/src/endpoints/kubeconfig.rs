//! `GET /paddock/v1/kubeconfig?cluster=<id>`: a kubeconfig whose server is
//! Paddock's `/k8s/clusters/<id>` (at the host the caller used), with a
//! fresh kubeconfig token scoped to that cluster and Paddock's CA; for a
//! cluster with an authorized cluster endpoint, a second context
//! `<id>-direct` to its API server (the token is cluster-scoped, so the
//! cluster's sidecar accepts it there).
//!
//! Asked for JSON (`Accept: application/json`) without a cluster, it lists
//! the clusters the caller may use instead, with their status (`direct`,
//! or whether the cluster's agent is `connected`), and issues nothing.

use std::sync::Arc;

use http::{header, HeaderValue, Request, StatusCode};

use super::{blocking, caller, paddock_token, session::issue_error, Endpoints};
use crate::{
    accounts::{tokens::NewToken, Accounts},
    body::{RequestBody, ResponseBody},
    error::ProxyError,
    request::{ProxyResult, RequestHost},
    store::TokenKind,
};

pub(super) async fn download(
    endpoints: &Endpoints,
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
) -> ProxyResult {
    let caller = caller(&request)?;
    paddock_token(&caller, "downloading a kubeconfig")?;
    let (parts, _) = request.into_parts();
    let query = policy::parse_query(parts.uri.query().unwrap_or(""));
    let cluster = query
        .iter()
        .find(|(k, _)| k == "cluster")
        .map(|(_, v)| v.clone());
    let wants_json = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    if cluster.is_none() && wants_json {
        let items: Vec<_> = endpoints
            .accessible_clusters(&caller)
            .into_iter()
            .filter(|c| caller.cluster_scope.as_deref().is_none_or(|s| s == c.id))
            .map(|c| {
                let url = format!("/paddock/v1/kubeconfig?cluster={}", c.id);
                let mut item = serde_json::to_value(c).unwrap_or_default();
                item["kubeconfigUrl"] = url.into();
                item
            })
            .collect();
        return Ok(super::json(
            StatusCode::OK,
            &serde_json::json!({ "items": items }),
        ));
    }
    let cluster = endpoints.router().resolve(cluster.as_deref())?;
    // A cluster-scoped token gets a kubeconfig for its own cluster only.
    if let Some(scope) = caller.cluster_scope.as_deref() {
        if scope != cluster.id() {
            return Err(crate::layers::authenticate::out_of_scope(
                scope,
                cluster.id(),
            ));
        }
    }
    let host = parts
        .extensions
        .get::<RequestHost>()
        .map(|h| h.0.as_str())
        .ok_or_else(|| ProxyError::BadRequest {
            message: "the request has no Host to build the server URL from".to_owned(),
        })?;
    // The host becomes part of a YAML document: only what a host can contain.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return Err(ProxyError::BadRequest {
            message: "invalid Host header".to_owned(),
        });
    }
    let user_id = caller.user.clone();
    let username = caller.username.clone();
    // Refreshes that revoke a provider's tokens find this one too.
    let provider = caller.provider.clone();
    let request = NewToken::new(user_id, TokenKind::Kubeconfig)
        .provider(provider)
        .cluster(cluster.id())
        .description(format!("kubeconfig for cluster {}", cluster.id()));
    let issuer = accounts.clone();
    let issued = blocking(move || issuer.issue(request))
        .await?
        .map_err(issue_error)?;
    let name = cluster.id();
    let yaml = crate::kubeconfig::render_with_direct(
        &format!("https://{host}"),
        name,
        &username,
        &issued.token,
        endpoints.config().ca_pem.as_deref(),
        cluster.direct_endpoint(),
    );
    tracing::info!(auth.user = %caller.user, cluster.id = %name, token.id = %issued.record.id, "kubeconfig issued");
    let mut response = http::Response::new(ResponseBody::full(yaml));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/yaml"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}.kubeconfig\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}
