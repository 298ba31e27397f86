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
//! | `GET /paddock/login`, `POST /paddock/login` | the browser sign-in page and its password form |
//! | `GET /paddock/` | the browser landing page: a kubeconfig per accessible cluster |
//! | `POST /paddock/logout` | ends the browser session |
//! | `GET /paddock/v1/github/login`, `…/callback` | GitHub's OAuth web flow (feature `github`) |
//!
//! The login, kubeconfig, user and token endpoints need [`Accounts`]; without
//! them they answer 404. Administration is authorized by the same
//! [`Authorizer`] as proxied requests, as `management.cattle.io` resources in
//! the management cluster (the global role `admin` may, `user` may not).

mod admin;
#[cfg(feature = "github")]
mod github;
mod kubeconfig;
mod pages;
mod session;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, request::Parts, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;

use crate::{
    accounts::Accounts,
    authn::{tokens::VerifiedToken, AuthenticatorChain, BoxFuture, Credential, Identity},
    authz::{Authorizer, AuthzRequest, RequestAttributes},
    body::ResponseBody,
    context::ConnectionInfo,
    error::ProxyError,
    layers::ProxyResult,
    upstream::Router,
};

/// Largest request body the endpoints read.
const MAX_BODY: usize = 64 * 1024;

/// What the endpoints are built from.
#[derive(Clone)]
pub struct EndpointsConfig {
    /// Users and tokens; `None` disables login, kubeconfig and administration.
    pub accounts: Option<Arc<Accounts>>,
    /// The proxy's authenticators, for callers of `me` and the admin API.
    pub authenticators: AuthenticatorChain,
    /// Decides administration requests.
    pub authorizer: Arc<dyn Authorizer>,
    /// PEM of the CA that signed Paddock's serving certificate, put into
    /// downloaded kubeconfigs (`None`: clients use their system roots).
    pub ca_pem: Option<Vec<u8>>,
    /// The cluster id administration is authorized against (where global
    /// roles' own rules apply).
    pub management_cluster: String,
}

/// The `/paddock/` endpoints.
#[derive(Clone)]
pub struct Endpoints {
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

/// The caller of an endpoint.
pub(crate) struct Caller {
    identity: Arc<Identity>,
    /// Set when the caller presented a Paddock-issued token.
    token: Option<VerifiedToken>,
}

impl Caller {
    /// The provider the caller's Paddock token came from, for the tokens
    /// issued on its strength (a refresh revoking a provider's tokens finds
    /// them all).
    pub(crate) fn token_provider(&self) -> String {
        self.token
            .as_ref()
            .map(|t| t.record().provider.clone())
            .unwrap_or_default()
    }
}

impl Endpoints {
    /// Endpoints reporting on the clusters of `router`.
    pub fn new(router: Arc<Router>, config: EndpointsConfig) -> Self {
        Self {
            inner: Arc::new(Inner { router, config }),
        }
    }

    /// Answers a request whose path starts with `/paddock`.
    pub fn handle(&self, request: Request<Incoming>) -> BoxFuture<'static, ProxyResult> {
        let this = self.clone();
        Box::pin(async move { this.dispatch(request).await })
    }

    async fn dispatch(&self, request: Request<Incoming>) -> ProxyResult {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let segments: Vec<&str> = path
            .trim_start_matches("/paddock/")
            .trim_end_matches('/')
            .split('/')
            .collect();
        match (&method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, ["healthz"]) => Ok(text("ok\n")),
            (&Method::GET | &Method::HEAD, ["readyz"]) => Ok(self.readyz()),
            (_, ["healthz" | "readyz"]) => Err(method_not_allowed(&method)),
            (&Method::GET | &Method::HEAD, ["login"]) => {
                pages::login_get(self.accounts()?, request).await
            }
            (&Method::POST, ["login"]) => pages::login_post(self.accounts()?, request).await,
            (&Method::POST, ["logout"]) => {
                pages::logout_post(self, self.accounts()?, request).await
            }
            (&Method::GET | &Method::HEAD, [""]) if path == "/paddock/" => {
                pages::landing(self, request).await
            }
            #[cfg(feature = "github")]
            (&Method::GET, ["v1", "github", "login"]) => {
                github::login(self.accounts()?, request).await
            }
            #[cfg(feature = "github")]
            (&Method::GET, ["v1", "github", "callback"]) => {
                github::callback(self.accounts()?, request).await
            }
            (_, ["v1", rest @ ..]) => {
                let accounts = self.accounts()?.clone();
                match (&method, rest) {
                    (&Method::POST, ["login"]) => session::login(self, &accounts, request).await,
                    (&Method::POST, ["logout"]) => session::logout(self, &accounts, request).await,
                    (&Method::GET, ["me"]) => session::me(self, request).await,
                    (&Method::POST, ["password"]) => {
                        session::change_password(self, &accounts, request).await
                    }
                    (&Method::GET, ["kubeconfig"]) => {
                        kubeconfig::download(self, &accounts, request).await
                    }
                    (_, ["users", ..] | ["tokens", ..] | ["principals"]) => {
                        admin::handle(self, &accounts, request, rest).await
                    }
                    (_, ["login" | "logout" | "me" | "password" | "kubeconfig"]) => {
                        Err(method_not_allowed(&method))
                    }
                    _ => Err(not_found(&path)),
                }
            }
            _ => Err(not_found(&path)),
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

    /// Who is calling. A Paddock token of a user who must change their
    /// password is accepted only when `password_change_ok` (the password,
    /// `me` and `logout` endpoints).
    pub(crate) async fn caller(
        &self,
        parts: &Parts,
        password_change_ok: bool,
    ) -> Result<Caller, ProxyError> {
        let client_cert = parts
            .extensions
            .get::<Arc<ConnectionInfo>>()
            .and_then(|c| c.client_cert.clone());
        let credentials = Credential::from_request(&parts.headers, client_cert.as_ref())?;
        if let Some(accounts) = &self.inner.config.accounts {
            for credential in &credentials {
                let (Credential::Bearer(token) | Credential::Session(token)) = credential else {
                    continue;
                };
                if let Some((token, identity)) = accounts
                    .tokens()
                    .authenticate_token(token.expose_secret(), password_change_ok)?
                {
                    return Ok(Caller {
                        identity: Arc::new((*identity).clone().with_authenticated_group()),
                        token: Some(token),
                    });
                }
            }
        }
        let identity = self
            .inner
            .config
            .authenticators
            .authenticate(&credentials)
            .await?;
        Ok(Caller {
            identity,
            token: None,
        })
    }

    /// Requires `verb` on the management resource `resource` (`users`,
    /// `tokens`), optionally one object of it.
    pub(crate) fn authorize_admin(
        &self,
        caller: &Caller,
        verb: &str,
        resource: &str,
        name: Option<&str>,
    ) -> Result<(), ProxyError> {
        let attributes =
            RequestAttributes::resource_request(verb, "management.cattle.io", resource)
                .with_name(name.unwrap_or(""));
        let decision = self.inner.config.authorizer.authorize(&AuthzRequest {
            identity: &caller.identity,
            cluster: &self.inner.config.management_cluster,
            attributes: &attributes,
            upgrade: false,
        });
        if decision.allowed {
            Ok(())
        } else {
            Err(ProxyError::Forbidden {
                reason: format!(
                    "user {} cannot {verb} {resource}.management.cattle.io: {}",
                    caller.identity.username, decision.reason
                ),
            })
        }
    }

    pub(crate) fn router(&self) -> &Router {
        &self.inner.router
    }

    pub(crate) fn config(&self) -> &EndpointsConfig {
        &self.inner.config
    }

    /// Ready while it can serve: a directory that is down degrades logins
    /// and refreshes, not the proxying of already issued tokens, so it is
    /// reported (`"degraded"`, with the provider and why) but stays 200.
    fn readyz(&self) -> Response<ResponseBody> {
        let mut clusters: Vec<&str> = self.inner.router.ids().collect();
        clusters.sort_unstable();
        let degraded = self
            .inner
            .config
            .accounts
            .as_ref()
            .map(|a| a.degraded_providers())
            .unwrap_or_default();
        let status = if degraded.is_empty() {
            "ok"
        } else {
            "degraded"
        };
        json(
            StatusCode::OK,
            &serde_json::json!({
                "status": status,
                "clusters": clusters,
                "degradedProviders": degraded,
            }),
        )
    }
}

fn method_not_allowed(method: &Method) -> ProxyError {
    ProxyError::BadRequest {
        message: format!("method {method} is not allowed here"),
    }
}

fn not_found(path: &str) -> ProxyError {
    ProxyError::NotFound {
        message: format!("{path} is not a Paddock endpoint"),
    }
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
pub(crate) async fn read_json<T: DeserializeOwned>(body: Incoming) -> Result<T, ProxyError> {
    let bytes = crate::body::read_limited(body, MAX_BODY, crate::body::body_read_timeout())
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
