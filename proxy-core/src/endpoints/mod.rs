//! Paddock's own HTTP endpoints, all under `/paddock/` so they never shadow
//! a Kubernetes path. Errors are Kubernetes `Status` JSON like everywhere else.
//!
//! | path | what |
//! |---|---|
//! | `GET /paddock/healthz`, `GET /paddock/readyz` | liveness, readiness |
//! | `POST /paddock/v1/login` | username/password → session token (+ cookie) |
//! | `POST /paddock/v1/logout` | revokes the presented session |
//! | `GET /paddock/v1/me` | who the caller is |
//! | `POST /paddock/v1/password` | changes the caller's own password |
//! | `GET /paddock/v1/kubeconfig?cluster=<id>` | a kubeconfig with a fresh token |
//! | `/paddock/v1/users[/<id>[/enable\|/disable\|/password]]` | user administration |
//! | `/paddock/v1/tokens[/<id>]` | the caller's tokens (all of them for admins) |
//! | `POST /paddock/v1/users/<id>/refresh` | re-reads a directory user's groups now |
//! | `GET /paddock/v1/principals?provider=…&q=…` | finds directory users and groups |
//! | `GET /paddock/v1/clusters/<id>/health` | the cluster's last health check (see [`crate::health`]) |
//! | `/paddock/v1/bindings[/<id>]`, `/paddock/v1/projects[/<id>[/namespaces[/<ns>]]]` | role bindings of users and groups, projects |
//! | `/paddock/v1/clusters[/<id>[/token\|/agent.yaml]]` | clusters registered at runtime, their agents' tokens and manifests |
//! | `GET /paddock/v1/connect` | an agent's tunnel (WebSocket; its registration token authenticates it) |
//! | `GET /paddock/v1/clusters/<id>/replica?since=<rev>` | a cluster's replica feed for its sidecar (long poll; see [`crate::replica`]) |
//! | `GET /paddock/login`, `POST /paddock/login` | the browser sign-in page and its password form |
//! | `GET /paddock/` | the browser landing page: a kubeconfig per accessible cluster |
//! | `POST /paddock/logout` | ends the browser session |
//! | `GET /paddock/v1/github/login`, `…/callback` | GitHub's OAuth web flow (feature `github`) |
//! | `GET /paddock/v1/oidc/<name>/login`, `…/callback` | an OpenID Connect provider's code flow (feature `oidc`) |
//!
//! The login, kubeconfig, user and token endpoints need [`Accounts`]; without
//! them they answer 404. Callers are authenticated by the same authenticate
//! layer as proxied requests (see [`path::Access`] for who may call what).
//! Administration is authorized by the same authorization step, always
//! against a policy, as `management.cattle.io` resources in the management
//! cluster (the global role `admin` may, `user` may not).

mod admin;
mod bindings;
mod clusters;
mod connect;
#[cfg(feature = "github")]
mod github;
mod health;
mod kubeconfig;
#[cfg(feature = "oidc")]
mod oidc;
mod pages;
pub(crate) mod path;
mod replica;
mod session;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use crate::{
    accounts::Accounts,
    authn::{BoxFuture, Identity},
    authz::{Authorizer, AuthzRequest, RequestAttributes},
    body::{RequestBody, ResponseBody},
    context::{self, RequestContext},
    error::ProxyError,
    layers::authorize::authorize,
    request::ProxyResult,
    upstream::Router,
};
use path::Endpoint;

/// Largest request body the endpoints read.
const MAX_BODY: usize = 64 * 1024;

/// What the endpoints are built from.
#[derive(Clone)]
pub(crate) struct EndpointsConfig {
    /// Users and tokens; `None` disables login, kubeconfig and administration.
    pub accounts: Option<Arc<Accounts>>,
    /// Decides which clusters the landing page offers (the proxy's own
    /// authorizer: what the caller may do on a cluster).
    pub authorizer: Arc<dyn Authorizer>,
    /// Decides administration requests. Always a policy: the proxy's
    /// `allow-authenticated` or `deny-all` decide Kubernetes requests only.
    pub admin_authorizer: Arc<dyn Authorizer>,
    /// PEM of the CA that signed Paddock's serving certificate, put into
    /// downloaded kubeconfigs (`None`: clients use their system roots).
    pub ca_pem: Option<Vec<u8>>,
    /// The cluster id administration is authorized against (where global
    /// roles' own rules apply).
    pub management_cluster: String,
    /// The clusters' last health checks; `None` when they are not checked.
    pub health: Option<Arc<crate::health::HealthChecker>>,
    /// The RBAC sync's per-cluster status; `None` when it does not run.
    pub rbac_sync: Option<crate::plugins::rbac_sync::Running>,
    /// Agents' tunnels: opened at [`crate::tunnel::CONNECT_PATH`], reported
    /// in cluster listings.
    pub tunnels: Arc<crate::tunnel::Tunnels>,
    /// The image agent manifests run.
    pub agent_image: String,
}

/// The `/paddock/` endpoints.
#[derive(Clone)]
pub(crate) struct Endpoints {
    inner: Arc<Inner>,
}

struct Inner {
    router: Arc<Router>,
    config: EndpointsConfig,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("accounts", &self.inner.config.accounts.is_some())
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    /// Endpoints reporting on the clusters of `router`.
    pub(crate) fn new(router: Arc<Router>, config: EndpointsConfig) -> Self {
        Self {
            inner: Arc::new(Inner { router, config }),
        }
    }

    /// Answers `request`, which the route layer parsed as `endpoint` and the
    /// authenticate layer admitted.
    pub(crate) fn handle(
        &self,
        endpoint: Endpoint,
        request: Request<RequestBody>,
    ) -> BoxFuture<'static, ProxyResult> {
        let this = self.clone();
        Box::pin(async move { this.dispatch(endpoint, request).await })
    }

    async fn dispatch(&self, endpoint: Endpoint, request: Request<RequestBody>) -> ProxyResult {
        if endpoint.is_json_api() && !matches!(*request.method(), Method::GET | Method::HEAD) {
            json_api_guard(&request)?;
        }
        match endpoint {
            Endpoint::Healthz => Ok(text("ok\n")),
            Endpoint::Readyz => Ok(self.readyz()),
            Endpoint::LoginPage => pages::login_get(self.accounts()?, request).await,
            Endpoint::LoginForm => pages::login_post(self.accounts()?, request).await,
            Endpoint::LogoutForm => pages::logout_post(self.accounts()?, request).await,
            Endpoint::Landing => pages::landing(self, request).await,
            #[cfg(feature = "github")]
            Endpoint::GithubLogin => github::login(self.accounts()?, request).await,
            #[cfg(feature = "github")]
            Endpoint::GithubCallback => github::callback(self.accounts()?, request).await,
            #[cfg(feature = "oidc")]
            Endpoint::OidcLogin(name) => oidc::login(self.accounts()?, &name, request).await,
            #[cfg(feature = "oidc")]
            Endpoint::OidcCallback(name) => oidc::callback(self.accounts()?, &name, request).await,
            Endpoint::Login => session::login(self.accounts()?, request).await,
            Endpoint::Logout => session::logout(self.accounts()?, request).await,
            Endpoint::Me => session::me(self, request).await,
            Endpoint::Password => session::change_password(self.accounts()?, request).await,
            Endpoint::Kubeconfig => kubeconfig::download(self, self.accounts()?, request).await,
            Endpoint::ClusterHealth(id) => health::cluster(self, &request, &id),
            Endpoint::Connect => connect::accept(self, self.accounts()?, request).await,
            Endpoint::Replica(cluster) => {
                replica::feed(self, self.accounts()?, request, &cluster).await
            }
            Endpoint::Admin(segments) => {
                let accounts = self.accounts()?.clone();
                let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
                admin::handle(self, &accounts, request, &segments).await
            }
        }
    }

    fn accounts(&self) -> Result<&Arc<Accounts>, ProxyError> {
        self.inner
            .config
            .accounts
            .as_ref()
            .ok_or_else(|| ProxyError::NotFound {
                message: "this Paddock has no user store: login, kubeconfig and \
                          administration are not available"
                    .to_owned(),
            })
    }

    /// Requires `verb` on the management resource `resource` (`users`,
    /// `tokens`), optionally one object of it, from the admin authorizer.
    pub(crate) fn authorize_admin(
        &self,
        context: &RequestContext,
        caller: &Identity,
        verb: &str,
        resource: &str,
        name: Option<&str>,
    ) -> Result<(), ProxyError> {
        let attributes =
            RequestAttributes::resource_request(verb, "management.cattle.io", resource)
                .with_name(name.unwrap_or(""));
        authorize(
            &*self.inner.config.admin_authorizer,
            context,
            &AuthzRequest {
                identity: caller,
                cluster: &self.inner.config.management_cluster,
                attributes: &attributes,
                upgrade: false,
            },
        )
    }

    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The clusters `identity` may use (list namespaces in, as the proxy's
    /// authorizer decides), with what is known of their state.
    pub(crate) fn accessible_clusters(&self, identity: &Identity) -> Vec<ClusterSummary> {
        let attributes = RequestAttributes::resource_request("list", "", "namespaces");
        let config = &self.inner.config;
        let records = config.accounts.as_ref().map(|a| a.view().snapshot());
        self.inner
            .router
            .ids()
            .into_iter()
            .filter(|cluster| {
                config
                    .authorizer
                    .authorize(&AuthzRequest {
                        identity,
                        cluster,
                        attributes: &attributes,
                        upgrade: false,
                    })
                    .allowed
            })
            .map(|id| {
                let record = records
                    .as_ref()
                    .filter(|_| !self.inner.router.is_configured(&id))
                    .and_then(|s| s.cluster(&id).map(|e| e.value.clone()));
                let agent = record.as_ref().is_some_and(|r| {
                    matches!(r.connection, crate::store::ClusterConnection::Agent)
                });
                let live = agent.then(|| config.tunnels.status(&id)).flatten();
                ClusterSummary {
                    display_name: record
                        .as_ref()
                        .map_or_else(|| id.clone(), |r| r.display_name.clone()),
                    status: if !agent {
                        "direct"
                    } else if live.is_some() {
                        "connected"
                    } else {
                        "disconnected"
                    },
                    // The live heartbeat, or what was recorded last.
                    last_heartbeat: live
                        .map(|l| l.last_heartbeat)
                        .or_else(|| {
                            record
                                .as_ref()
                                .filter(|_| agent)
                                .and_then(|r| r.status.last_heartbeat)
                        })
                        .map(|t| t.to_string()),
                    id,
                }
            })
            .collect()
    }

    pub(crate) fn config(&self) -> &EndpointsConfig {
        &self.inner.config
    }

    /// Cluster `id`'s RBAC sync status as the cluster views show it: `null`
    /// when the sync does not run or does not synchronise this cluster
    /// (yet: a new cluster is picked up within a quarter second), `passes: 0`
    /// while its first pass runs.
    pub(crate) fn rbac_sync_json(&self, id: &str) -> serde_json::Value {
        self.inner
            .config
            .rbac_sync
            .as_ref()
            .and_then(|running| running.board.get(id))
            .and_then(|status| serde_json::to_value(&*status).ok())
            .unwrap_or_default()
    }

    /// Ready while it can serve: a directory that is down degrades logins
    /// and refreshes, not the proxying of already issued tokens, so it is
    /// reported (`"degraded"`, with the provider and why) but stays 200.
    /// So does a store backend that stopped answering (etcd lost): requests
    /// are served from the last snapshot, writes get 503, and `store` says why.
    fn readyz(&self) -> Response<ResponseBody> {
        let clusters = self.inner.router.ids();
        let degraded = self
            .inner
            .config
            .accounts
            .as_ref()
            .map(|a| a.degraded_providers())
            .unwrap_or_default();
        let store = self
            .inner
            .config
            .accounts
            .as_ref()
            .and_then(|a| a.view().problem());
        let status = if degraded.is_empty() && store.is_none() {
            "ok"
        } else {
            "degraded"
        };
        let mut body = serde_json::json!({
            "status": status,
            "clusters": clusters,
            "degradedProviders": degraded,
        });
        if let Some(problem) = store {
            body["store"] = serde_json::json!({ "status": "unavailable", "error": problem });
        }
        json(StatusCode::OK, &body)
    }
}

/// A cluster as a user sees it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterSummary {
    /// Its id in `/k8s/clusters/<id>`.
    pub(crate) id: String,
    /// Its human-readable name.
    pub(crate) display_name: String,
    /// `direct` (Paddock connects to it), `connected` or `disconnected`
    /// (its agent's tunnel).
    pub(crate) status: &'static str,
    /// When its agent was last heard from (agent clusters), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_heartbeat: Option<String>,
}

/// Refuses a state-changing JSON API request a browser sent from another
/// site, or with a body that is not JSON. Browsers send a cross-site
/// `text/plain` or form POST without asking first (and with the cookies it
/// may carry); `application/json` from another origin needs a CORS preflight
/// Paddock never grants. CLIs and curl send no `Origin`: nothing to check.
fn json_api_guard<B>(request: &Request<B>) -> Result<(), ProxyError> {
    let header = |name: header::HeaderName| {
        request
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or_default())
    };
    if let Some(site) = header(header::HeaderName::from_static("sec-fetch-site")) {
        if !matches!(site, "same-origin" | "none") {
            return Err(cross_site());
        }
    }
    if let Some(origin) = header(header::ORIGIN) {
        let host = request
            .extensions()
            .get::<crate::request::RequestHost>()
            .map(|h| h.0.as_str());
        if host.is_none_or(|host| origin != format!("https://{host}")) {
            return Err(cross_site());
        }
    }
    if let Some(content_type) = header(header::CONTENT_TYPE) {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ProxyError::UnsupportedMediaType {
                message: format!(
                    "the body must be JSON (Content-Type: application/json), not {essence:?}"
                ),
            });
        }
    }
    Ok(())
}

fn cross_site() -> ProxyError {
    ProxyError::Forbidden {
        reason: "cross-site requests to Paddock's API are refused".to_owned(),
    }
}

/// The caller the authenticate layer found for `request`; 401 without one.
pub(crate) fn caller<B>(request: &Request<B>) -> Result<Arc<Identity>, ProxyError> {
    context::of(request)
        .identity()
        .cloned()
        .ok_or(ProxyError::MissingCredentials)
}

/// The caller's Paddock token id: endpoints that issue or end Paddock
/// tokens are for Paddock users, not for static tokens or certificates.
pub(crate) fn paddock_token<'a>(caller: &'a Identity, what: &str) -> Result<&'a str, ProxyError> {
    caller
        .token_id
        .as_deref()
        .ok_or_else(|| ProxyError::BadRequest {
            message: format!("{what} is for Paddock users: log in first (POST /paddock/v1/login)"),
        })
}

/// A JSON response.
pub(crate) fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ResponseBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(ResponseBody::full(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn text(body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Reads a JSON body of at most [`MAX_BODY`] bytes into `T`; errors name the
/// offending field.
pub(crate) async fn read_json<T: DeserializeOwned>(body: RequestBody) -> Result<T, ProxyError> {
    let bytes = body
        .read(MAX_BODY)
        .await
        .map_err(|e| ProxyError::BadRequest {
            message: format!("cannot read the request body: {e}"),
        })?;
    let deserializer = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|e| ProxyError::BadRequest {
        message: match e.path().to_string().as_str() {
            "." => format!("invalid request body: {}", e.inner()),
            path => format!("invalid request body at {path}: {}", e.inner()),
        },
    })
}

/// Maps a blocking task's panic or cancellation to an internal error.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ProxyError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProxyError::Internal {
            message: format!("background task failed: {e}"),
        })
}
