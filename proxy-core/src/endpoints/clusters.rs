//! The admin API for clusters, authorized as Rancher's
//! `management.cattle.io` `clusters` in the management cluster:
//!
//! | request | what |
//! |---|---|
//! | `GET /paddock/v1/clusters` | registered and configured clusters, with status |
//! | `POST /paddock/v1/clusters` | `{"id": …, "displayName"?, "labels"?, "connection"?: {"type": "agent"} \| {"type": "direct", "server": …, "caPem"?, "tokenFile"?}, "directEndpoint"?: {"server": …, "caPem"?}}`; an agent cluster's answer holds its registration token (shown once), the agent's command line and its manifest |
//! | `GET`, `PATCH`, `DELETE /paddock/v1/clusters/<id>` | one cluster; changes `displayName`, `labels`, `connection`, `directEndpoint` (`null` removes it); unregisters it |
//! | `POST /paddock/v1/clusters/<id>/token` | a new registration token (the old one stops working), for any cluster, configured ones included: its agent and its sidecar authenticate with it |
//! | `DELETE /paddock/v1/clusters/<id>/token` | revokes the registration token |
//! | `GET /paddock/v1/clusters/<id>/agent.yaml[?image=…]` | the agent's manifest; with the token in `X-Paddock-Agent-Token`, its Secret too |
//!
//! Clusters from the configuration file are listed read-only.

use std::{collections::BTreeMap, sync::Arc};

use http::{header, request::Parts, HeaderValue, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, json, read_json, Endpoints};
use crate::{
    accounts::{
        clusters::{self, ClusterError, ClusterUpdate, NewCluster},
        Accounts,
    },
    agent::manifest::Manifest,
    authn::Identity,
    body::{RequestBody, ResponseBody},
    context::RequestContext,
    error::ProxyError,
    request::{ProxyResult, RequestHost},
    store::{Cluster, ClusterConnection, DirectEndpointRecord},
    tunnel::{presented_token, TOKEN_HEADER},
};

/// The Rancher resource clusters are authorized as.
const CLUSTERS: &str = "clusters";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewClusterBody {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    connection: ClusterConnection,
    #[serde(default)]
    direct_endpoint: Option<DirectEndpointRecord>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    connection: Option<ClusterConnection>,
    /// Absent: unchanged; `null`: removed.
    #[serde(default, deserialize_with = "present")]
    direct_endpoint: Option<Option<DirectEndpointRecord>>,
}

/// A field that is present, `null` included (absent stays `None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// One admin request under `clusters`.
pub(super) struct Call<'a> {
    pub(super) endpoints: &'a Endpoints,
    pub(super) accounts: &'a Arc<Accounts>,
    pub(super) caller: &'a Identity,
    pub(super) context: &'a RequestContext,
}

impl Call<'_> {
    fn authorize(&self, verb: &str, name: Option<&str>) -> Result<(), ProxyError> {
        self.endpoints
            .authorize_admin(self.context, self.caller, verb, CLUSTERS, name)
    }

    /// Answers `path` (the segments after `v1/`).
    pub(super) async fn handle(
        self,
        parts: &Parts,
        body: RequestBody,
        path: &[&str],
    ) -> ProxyResult {
        let view = self.accounts.view().clone();
        match (&parts.method, path) {
            (&Method::GET, ["clusters"]) => {
                self.authorize("list", None)?;
                let router = self.endpoints.router();
                let mut items: Vec<Value> = router
                    .configured_ids()
                    .iter()
                    .map(|id| self.configured_json(id))
                    .collect();
                items.extend(view.with_snapshot(|s| {
                    clusters::list(s)
                        .iter()
                        .filter(|c| !router.is_configured(&c.id))
                        .map(|c| self.cluster_json(c))
                        .collect::<Vec<_>>()
                }));
                Ok(json(StatusCode::OK, &json!({ "items": items })))
            }
            (&Method::POST, ["clusters"]) => {
                self.authorize("create", None)?;
                let new: NewClusterBody = read_json(body).await?;
                let new = NewCluster::agent(new.id)
                    .display_name(new.display_name)
                    .labels(new.labels)
                    .connection(new.connection)
                    .direct_endpoint(new.direct_endpoint);
                let configured = self.endpoints.router().configured_ids();
                let accounts = self.accounts.clone();
                let registered = blocking(move || {
                    clusters::create(accounts.view(), accounts.token_hasher(), new, &configured)
                })
                .await?
                .map_err(cluster_error)?;
                tracing::info!(auth.user = %self.caller.user, cluster.id = %registered.cluster.id, connection = registered.cluster.connection.kind(), "cluster registered");
                let mut body = self.cluster_json(&registered.cluster);
                if let Some(token) = &registered.token {
                    self.add_agent_instructions(&mut body, parts, &registered.cluster.id, token)?;
                }
                Ok(json(StatusCode::CREATED, &body))
            }
            (&Method::GET, ["clusters", id]) => {
                self.authorize("get", Some(id))?;
                if self.endpoints.router().is_configured(id) {
                    return Ok(json(StatusCode::OK, &self.configured_json(id)));
                }
                let cluster = view
                    .with_snapshot(|s| clusters::get(s, id))
                    .ok_or_else(|| cluster_error(ClusterError::NotFound((*id).to_owned())))?;
                Ok(json(StatusCode::OK, &self.cluster_json(&cluster)))
            }
            (&Method::PATCH | &Method::PUT, ["clusters", id]) => {
                self.authorize("update", Some(id))?;
                self.refuse_configured(id)?;
                let body: UpdateBody = read_json(body).await?;
                let update = ClusterUpdate {
                    display_name: body.display_name,
                    labels: body.labels,
                    connection: body.connection,
                    direct_endpoint: body.direct_endpoint,
                };
                let target = (*id).to_owned();
                let cluster = blocking(move || clusters::update(&view, &target, update))
                    .await?
                    .map_err(cluster_error)?;
                tracing::info!(auth.user = %self.caller.user, cluster.id = %id, "cluster updated");
                Ok(json(StatusCode::OK, &self.cluster_json(&cluster)))
            }
            (&Method::DELETE, ["clusters", id]) => {
                self.authorize("delete", Some(id))?;
                self.refuse_configured(id)?;
                let target = (*id).to_owned();
                let cluster = blocking(move || clusters::delete(&view, &target))
                    .await?
                    .map_err(cluster_error)?;
                tracing::info!(auth.user = %self.caller.user, cluster.id = %id, "cluster unregistered");
                Ok(json(StatusCode::OK, &self.cluster_json(&cluster)))
            }
            (&Method::POST, ["clusters", id, "token"]) => {
                self.authorize("update", Some(id))?;
                let configured = self.endpoints.router().configured_ids();
                let (accounts, target) = (self.accounts.clone(), (*id).to_owned());
                let token = blocking(move || {
                    clusters::rotate_token(
                        accounts.view(),
                        accounts.token_hasher(),
                        &target,
                        &configured,
                    )
                })
                .await?
                .map_err(cluster_error)?;
                tracing::info!(auth.user = %self.caller.user, cluster.id = %id, "registration token issued");
                let mut body = json!({ "id": id });
                let agent = view.with_snapshot(|s| {
                    clusters::get(s, id)
                        .is_some_and(|c| matches!(c.connection, ClusterConnection::Agent))
                }) && !self.endpoints.router().is_configured(id);
                if agent {
                    self.add_agent_instructions(&mut body, parts, id, &token)?;
                } else {
                    body["token"] = json!(token.expose_secret());
                }
                body["sidecarCommand"] = json!(format!(
                    "paddock sidecar --server {} --cluster {id} --token-file <file with the token>",
                    server_url(parts)?
                ));
                Ok(json(StatusCode::OK, &body))
            }
            (&Method::DELETE, ["clusters", id, "token"]) => {
                self.authorize("update", Some(id))?;
                let configured = self.endpoints.router().configured_ids();
                let (store, target) = (view.clone(), (*id).to_owned());
                blocking(move || clusters::revoke_token(&store, &target, &configured))
                    .await?
                    .map_err(cluster_error)?;
                tracing::info!(auth.user = %self.caller.user, cluster.id = %id, "registration token revoked");
                let body = match view.with_snapshot(|s| clusters::get(s, id)) {
                    Some(cluster) if !self.endpoints.router().is_configured(id) => {
                        self.cluster_json(&cluster)
                    }
                    _ => json!({ "id": id, "hasRegistrationToken": false }),
                };
                Ok(json(StatusCode::OK, &body))
            }
            (&Method::GET, ["clusters", id, "agent.yaml"]) => {
                self.authorize("get", Some(id))?;
                let cluster = view
                    .with_snapshot(|s| clusters::get(s, id))
                    .filter(|c| matches!(c.connection, ClusterConnection::Agent))
                    .ok_or_else(|| ProxyError::NotFound {
                        message: format!("no agent cluster {id:?}"),
                    })?;
                // The token is only known to whoever was shown it: it goes
                // into the manifest when they present it, checked.
                let token = presented_token(&parts.headers);
                if let Some(token) = &token {
                    let matches = view.with_snapshot(|s| {
                        clusters::verify_agent_token(s, self.accounts.token_hasher(), token)
                    });
                    if matches.is_none_or(|(owner, _)| owner != cluster.id) {
                        return Err(ProxyError::BadRequest {
                            message: format!(
                                "{TOKEN_HEADER}: not the current registration token of cluster {id:?}"
                            ),
                        });
                    }
                }
                let query = policy::parse_query(parts.uri.query().unwrap_or(""));
                let image = query
                    .iter()
                    .find(|(k, _)| k == "image")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_else(|| self.endpoints.config().agent_image.clone());
                if image.is_empty() || image.contains(char::is_whitespace) {
                    return Err(ProxyError::BadRequest {
                        message: format!("image: {image:?} is not an image reference"),
                    });
                }
                let server = server_url(parts)?;
                let mut manifest = Manifest::new(&server, &image);
                manifest.token = token.as_ref();
                manifest.ca_pem = self.endpoints.config().ca_pem.as_deref();
                let mut response = http::Response::new(ResponseBody::full(manifest.render()));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/yaml"),
                );
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                Ok(response)
            }
            _ => Err(ProxyError::NotFound {
                message: format!(
                    "{} {} is not a Paddock endpoint",
                    parts.method,
                    parts.uri.path()
                ),
            }),
        }
    }

    fn refuse_configured(&self, id: &str) -> Result<(), ProxyError> {
        if self.endpoints.router().is_configured(id) {
            return Err(cluster_error(ClusterError::Configured(id.to_owned())));
        }
        Ok(())
    }

    /// A registered cluster as the API shows it: its live tunnel state for
    /// an agent cluster, what was last recorded otherwise.
    fn cluster_json(&self, cluster: &Cluster) -> Value {
        let mut connection = serde_json::to_value(&cluster.connection).unwrap_or_default();
        if let Some(ca) = connection.get_mut("caPem") {
            // Certificates are public, but long: say whether there is one.
            *ca = json!(!ca.is_null());
        }
        let live = self.endpoints.config().tunnels.status(&cluster.id);
        let agent = matches!(cluster.connection, ClusterConnection::Agent);
        let status = &cluster.status;
        json!({
            "id": cluster.id,
            "displayName": cluster.display_name,
            "connection": connection,
            "labels": cluster.labels,
            "directEndpoint": cluster.direct_endpoint.as_ref().map(|d| json!({
                "server": d.server,
                "caPem": d.ca_pem.is_some(),
            })),
            "readOnly": false,
            "routable": self.endpoints.router().registered(&cluster.id).is_some(),
            "hasAgentToken": cluster.agent_token_hash.is_some(),
            "hasRegistrationToken": cluster.agent_token_hash.is_some(),
            "createdAt": cluster.created_at.to_string(),
            "status": {
                "connected": if agent { live.is_some() } else { status.connected },
                "kubernetesVersion": live.as_ref().and_then(|l| l.kubernetes_version.clone())
                    .or_else(|| status.kubernetes_version.clone()),
                "agentVersion": live.as_ref().and_then(|l| l.agent_version.clone())
                    .or_else(|| status.agent_version.clone()),
                "lastHeartbeat": live.as_ref().map(|l| l.last_heartbeat)
                    .or(status.last_heartbeat).map(|t| t.to_string()),
                "rbacSync": self.endpoints.rbac_sync_json(&cluster.id),
            },
        })
    }

    /// A configured cluster: read-only (but for its registration token),
    /// reached directly.
    fn configured_json(&self, id: &str) -> Value {
        json!({
            "id": id,
            "displayName": id,
            "connection": { "type": "direct" },
            "labels": {},
            "directEndpoint": self.endpoints.router().resolve(Some(id)).ok()
                .and_then(|c| c.direct_endpoint().map(|d| json!({
                    "server": d.server,
                    "caPem": d.ca_pem.is_some(),
                }))),
            "readOnly": true,
            "routable": true,
            "hasRegistrationToken": self
                .accounts
                .view()
                .with_snapshot(|s| s.cluster_token(id).is_some()),
            "status": {
                "connected": null,
                "rbacSync": self.endpoints.rbac_sync_json(id),
            },
        })
    }

    /// The token (shown this once), the command that runs the agent with
    /// it, and the manifest that installs it.
    fn add_agent_instructions(
        &self,
        body: &mut Value,
        parts: &Parts,
        id: &str,
        token: &SecretString,
    ) -> Result<(), ProxyError> {
        let server = server_url(parts)?;
        let config = self.endpoints.config();
        let ca = if config.ca_pem.is_some() {
            " --ca-file paddock-ca.crt"
        } else {
            ""
        };
        let mut manifest = Manifest::new(&server, &config.agent_image);
        manifest.token = Some(token);
        manifest.ca_pem = config.ca_pem.as_deref();
        body["token"] = json!(token.expose_secret());
        body["agentCommand"] = json!(format!(
            "paddock agent --server {server} --token {}{ca}",
            token.expose_secret()
        ));
        body["manifest"] = json!(manifest.render());
        body["manifestUrl"] = json!(format!("{server}/paddock/v1/clusters/{id}/agent.yaml"));
        Ok(())
    }
}

/// Paddock's URL as the caller reached it.
fn server_url(parts: &Parts) -> Result<String, ProxyError> {
    let host = parts
        .extensions
        .get::<RequestHost>()
        .map(|h| h.0.as_str())
        .filter(|host| {
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .ok_or_else(|| ProxyError::BadRequest {
            message: "the request has no valid Host to build Paddock's URL from".to_owned(),
        })?;
    Ok(format!("https://{host}"))
}

fn cluster_error(error: ClusterError) -> ProxyError {
    match error {
        ClusterError::Invalid(message) => ProxyError::BadRequest { message },
        ClusterError::NotFound(_) => ProxyError::NotFound {
            message: error.to_string(),
        },
        ClusterError::Exists(_) | ClusterError::Configured(_) => ProxyError::BadRequest {
            message: error.to_string(),
        },
        ClusterError::Store(e) => ProxyError::Internal {
            message: e.to_string(),
        },
    }
}
