use std::{fmt, sync::Arc, time::Duration};

use http::{uri::PathAndQuery, Uri};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioTimer},
};

use super::{
    connector::{Connector, Https},
    credential::AuthorizationHeader,
    direct_h1::DirectH1,
    direct_h2::DirectH2,
    tls, UpstreamCredential,
};
use crate::{body::RequestBody, error::ProxyError, events::Events};

/// Why a cluster definition was rejected.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The server URL is not an absolute http(s) URL.
    #[error("cluster {cluster}: invalid server URL {url:?}: {message}")]
    Url {
        /// The cluster id.
        cluster: String,
        /// The URL given.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// The TLS settings are unusable.
    #[error("cluster {cluster}: {message}")]
    Tls {
        /// The cluster id.
        cluster: String,
        /// What is wrong.
        message: String,
    },
    /// The credential could not be loaded.
    #[error("{message}")]
    Credential {
        /// What is wrong (never the secret).
        message: String,
    },
    /// A kubeconfig could not be used.
    #[error("kubeconfig: {message}")]
    Kubeconfig {
        /// What is wrong.
        message: String,
    },
}

/// One downstream cluster, as configured.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The id in `/k8s/clusters/<id>`.
    pub id: String,
    /// The API server's base URL, e.g. `https://10.0.0.1:6443`.
    pub server: String,
    /// CA bundle (PEM) to verify the server; the system roots when absent.
    pub ca_pem: Option<Vec<u8>>,
    /// Paddock's own credential for this cluster.
    pub credential: UpstreamCredential,
    /// Skip TLS verification. Dangerous: only for throwaway test clusters.
    pub dangerous_skip_tls_verify: bool,
    /// Time allowed to set up a connection: TCP, TLS and the HTTP/2
    /// handshake. A request that cannot connect within it is answered
    /// `503` (watches, logs and exec too).
    pub connect_timeout: Duration,
    /// Time allowed for response headers of ordinary (not long-running)
    /// requests; for the RBAC sync's own calls, for the whole answer, its
    /// body included.
    pub request_timeout: Duration,
    /// The cluster's own API server as users reach it directly, with a
    /// `paddock sidecar` authenticating Paddock's tokens there (the
    /// authorized cluster endpoint); downloaded kubeconfigs get a second
    /// context, `<id>-direct`, pointing at it.
    pub direct_endpoint: Option<crate::kubeconfig::DirectEndpoint>,
}

impl ClusterConfig {
    /// A cluster at `server` with default timeouts and no credential.
    pub fn new(id: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            server: server.into(),
            ca_pem: None,
            credential: UpstreamCredential::None,
            dangerous_skip_tls_verify: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: super::DEFAULT_REQUEST_TIMEOUT,
            direct_endpoint: None,
        }
    }
}

impl ClusterConfig {
    /// Checks what [`ProxyBuilder::build`](crate::ProxyBuilder::build) would
    /// reject for this cluster (the server URL, the CA bundle, the client
    /// certificate) without building clients or watching files, so a
    /// configuration can be validated up front.
    pub fn check(&self) -> Result<(), UpstreamError> {
        self.parse_server()?;
        tls::client_config(self).map(drop)
    }

    fn parse_server(
        &self,
    ) -> Result<(http::uri::Scheme, http::uri::Authority, String), UpstreamError> {
        let url_error = |message: &str| UpstreamError::Url {
            cluster: self.id.clone(),
            url: self.server.clone(),
            message: message.to_owned(),
        };
        let uri: Uri = self.server.parse().map_err(|_| url_error("not a URL"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| url_error("no scheme"))?;
        if scheme != http::uri::Scheme::HTTPS && scheme != http::uri::Scheme::HTTP {
            return Err(url_error("the scheme must be https (or http)"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| url_error("no host"))?;
        if uri.query().is_some() {
            return Err(url_error("a server URL cannot have a query"));
        }
        Ok((
            scheme,
            authority,
            uri.path().trim_end_matches('/').to_owned(),
        ))
    }
}

pub(super) type HttpClient = Client<Connector, RequestBody>;

/// A downstream cluster ready to receive requests: pooled clients (HTTP/2
/// when the server offers it, HTTP/1.1 only for upgrades) and the
/// credential to present.
pub(crate) struct Cluster {
    id: String,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
    pub(super) authorization: AuthorizationHeader,
    /// One pair per server worker, then one for callers outside the
    /// workers: a worker's upstream connections run on its own runtime.
    clients: Box<[Clients]>,
    pub(super) request_timeout: Duration,
    direct_endpoint: Option<crate::kubeconfig::DirectEndpoint>,
    /// The verdict on reaching it, which every request and call feeds (a
    /// tunnel cluster's is its tunnel's, which the agent's connecting and
    /// dropping feed too).
    reachability: Arc<super::Reachability>,
    /// Its agent's tunnel, when reached through one: ordinary requests go
    /// as themselves, and its agent may answer for an API server it cannot
    /// reach.
    pub(super) tunnel: Option<crate::tunnel::TunnelConnector>,
}

pub(super) struct Clients {
    /// Requests without a body, over this worker's own HTTP/2 connection
    /// (not for clusters behind an agent tunnel).
    pub(super) direct: Option<DirectH2>,
    /// Requests to a server without HTTP/2, over this worker's own
    /// HTTP/1.1 connections (not for agent tunnels).
    pub(super) direct_h1: Option<DirectH1>,
    /// Requests with a body (HTTP/2 when offered).
    pub(super) ordinary: HttpClient,
    /// Upgrades (HTTP/1.1).
    pub(super) upgrade: HttpClient,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.id)
            .field(
                "server",
                &format_args!("{}://{}{}", self.scheme, self.authority, self.base_path),
            )
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Builds the clients for `config`, one set per server worker, plus one
    /// for callers outside the workers; changes of its reachability go to
    /// `events`. Must run inside a tokio runtime when the credential is a
    /// file (it is watched).
    pub(crate) fn new(
        config: &ClusterConfig,
        workers: usize,
        events: Events,
    ) -> Result<Self, UpstreamError> {
        let url_error = |message: &str| UpstreamError::Url {
            cluster: config.id.clone(),
            url: config.server.clone(),
            message: message.to_owned(),
        };
        let (scheme, authority, base_path) = config.parse_server()?;
        let tls = tls::client_config(config)?;
        let server = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| url_error(&e.to_string()))?;
        let clients = (0..=workers)
            .map(|_| Clients {
                direct: (scheme == http::uri::Scheme::HTTPS)
                    .then(|| DirectH2::new(connector(config, tls.clone(), true), server.clone())),
                direct_h1: Some(DirectH1::new(
                    connector(config, tls.clone(), false),
                    server.clone(),
                )),
                ordinary: client(Connector::Direct(connector(config, tls.clone(), true))),
                upgrade: client(Connector::Direct(connector(config, tls.clone(), false))),
            })
            .collect();
        Ok(Self {
            id: config.id.clone(),
            scheme,
            authority,
            base_path,
            authorization: AuthorizationHeader::new(&config.credential)?,
            clients,
            request_timeout: config.request_timeout,
            direct_endpoint: config.direct_endpoint.clone(),
            reachability: Arc::new(super::Reachability::new(&config.id, events)),
            tunnel: None,
        })
    }

    /// A cluster reached through its agent's tunnel: the agent adds its
    /// own credential, so Paddock sends none. Ordinary requests are
    /// streams of their own; each connection of the pooled clients (for
    /// upgrades, and every request to an agent that forwards only streams)
    /// is one tunnel stream carrying HTTP/1.1.
    pub(crate) fn tunnel(id: &str, tunnels: &crate::tunnel::Tunnels, workers: usize) -> Self {
        let connector = crate::tunnel::TunnelConnector::new(tunnels, id);
        let clients = (0..=workers)
            .map(|_| Clients {
                direct: None,
                direct_h1: None,
                ordinary: client(Connector::Tunnel(connector.clone())),
                upgrade: client(Connector::Tunnel(connector.clone())),
            })
            .collect();
        Self {
            id: id.to_owned(),
            scheme: http::uri::Scheme::HTTP,
            authority: http::uri::Authority::from_static("apiserver.tunnel"),
            base_path: String::new(),
            authorization: AuthorizationHeader::default(),
            clients,
            request_timeout: super::DEFAULT_REQUEST_TIMEOUT,
            direct_endpoint: None,
            reachability: tunnels.reachability(id),
            tunnel: Some(connector),
        }
    }

    /// Sends `request` (its URI relative to the API server, not an
    /// upgrade) with this cluster's credential, as Paddock forwards a
    /// caller's (see [`exchange`](Self::exchange)), without a deadline:
    /// what the agent forwards its tunnel's requests with. Paddock times
    /// them on its side; the agent cannot tell a watch from a get. A
    /// server it cannot connect to is [`ProxyError::UpstreamUnavailable`],
    /// as for Paddock's own requests.
    pub(crate) async fn send(
        &self,
        mut request: http::Request<RequestBody>,
    ) -> Result<crate::request::ProxyResponse, ProxyError> {
        self.apply_credential(&mut request)?;
        self.exchange(request, true).await
    }

    /// Sends `request` (its URI relative to the API server) asking to
    /// switch to `protocol`, with this cluster's credential, over the
    /// HTTP/1.1 client, which hands the upgraded connection over; no
    /// deadline: the session is long-running. How Paddock and the agent
    /// send exec, attach and port-forward.
    pub(crate) async fn send_upgrade(
        &self,
        mut request: http::Request<RequestBody>,
        protocol: http::HeaderValue,
    ) -> Result<http::Response<hyper::body::Incoming>, ProxyError> {
        self.apply_credential(&mut request)?;
        let headers = request.headers_mut();
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("Upgrade"),
        );
        headers.insert(http::header::UPGRADE, protocol);
        self.dispatch(true, request).await
    }

    /// Addresses `request` to the API server, with this cluster's
    /// credential. In place: the request is moved no more than it must be.
    pub(super) fn apply_credential(
        &self,
        request: &mut http::Request<RequestBody>,
    ) -> Result<(), ProxyError> {
        *request.uri_mut() = self.upstream_uri(request.uri())?;
        // Let ALPN pick the upstream protocol: an HTTP/2 caller may still
        // be served over HTTP/1.1 upstream, and the other way round.
        *request.version_mut() = http::Version::HTTP_11;
        self.authorization.apply(request.headers_mut());
        Ok(())
    }

    /// Whether it is reached through its agent's tunnel.
    pub(super) fn through_tunnel(&self) -> bool {
        self.tunnel.is_some()
    }

    /// The cluster's id.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Time allowed for an ordinary request's answer.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The verdict on reaching it: where what anyone finds out goes.
    pub(crate) fn reachability(&self) -> &super::Reachability {
        &self.reachability
    }

    /// Its authorized cluster endpoint, if one is configured.
    pub(crate) fn direct_endpoint(&self) -> Option<&crate::kubeconfig::DirectEndpoint> {
        self.direct_endpoint.as_ref()
    }

    /// The same cluster with this authorized cluster endpoint (a registered
    /// cluster's, kept in the store beside its connection).
    pub(crate) fn with_direct_endpoint(
        mut self,
        endpoint: Option<crate::kubeconfig::DirectEndpoint>,
    ) -> Self {
        self.direct_endpoint = endpoint;
        self
    }

    /// The clients of this thread's worker.
    pub(super) fn clients(&self) -> &Clients {
        let shared = self.clients.len() - 1;
        &self.clients[crate::worker::current().map_or(shared, |i| i.min(shared))]
    }

    /// The upstream URI for a request whose cluster-relative URI is `uri`.
    pub(super) fn upstream_uri(&self, uri: &Uri) -> Result<Uri, ProxyError> {
        let path_and_query = match (self.base_path.is_empty(), uri.path_and_query()) {
            (true, Some(pq)) => pq.clone(),
            (_, pq) => {
                let pq = pq.map_or("/", PathAndQuery::as_str);
                PathAndQuery::try_from(format!("{}{pq}", self.base_path)).map_err(|_| {
                    ProxyError::BadRequest {
                        message: "invalid request path".to_owned(),
                    }
                })?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Uri::from_parts(parts).map_err(|e| ProxyError::Internal {
            message: format!("cannot build upstream URI: {e}"),
        })
    }
}

fn connector(config: &ClusterConfig, tls: rustls::ClientConfig, allow_h2: bool) -> Https {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // Split between the addresses tried, so a dead one leaves time for the
    // next; `Https` bounds the whole setup.
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(30)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let https = if allow_h2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    Https::new(https, config.connect_timeout)
}

fn client(connector: Connector) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_timeout(Duration::from_secs(15))
        .http2_keep_alive_while_idle(true)
        .http2_adaptive_window(true)
        .build(connector)
}

#[cfg(feature = "kube")]
impl ClusterConfig {
    /// Reads cluster `id` from a kubeconfig file: the server, CA and
    /// credential of `context` (the current context when `None`).
    /// Exec and auth-provider plugins are not supported.
    pub fn from_kubeconfig(
        id: impl Into<String>,
        path: &std::path::Path,
        context: Option<&str>,
    ) -> Result<Self, UpstreamError> {
        use secrecy::SecretString;
        let error = |message: String| UpstreamError::Kubeconfig { message };
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .map_err(|e| error(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        let resolve = |p: &str| base.join(p);
        let context_name = context
            .map(str::to_owned)
            .or_else(|| kubeconfig.current_context.clone())
            .ok_or_else(|| error("no context given and no current-context set".to_owned()))?;
        let named_context = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == context_name)
            .and_then(|c| c.context.as_ref())
            .ok_or_else(|| error(format!("context {context_name:?} not found")))?;
        let cluster = kubeconfig
            .clusters
            .iter()
            .find(|c| c.name == named_context.cluster)
            .and_then(|c| c.cluster.as_ref())
            .ok_or_else(|| error(format!("cluster {:?} not found", named_context.cluster)))?;
        let server = cluster
            .server
            .clone()
            .ok_or_else(|| error(format!("cluster {:?} has no server", named_context.cluster)))?;
        let mut config = ClusterConfig::new(id, server);
        config.dangerous_skip_tls_verify = cluster.insecure_skip_tls_verify.unwrap_or(false);
        config.ca_pem = match (
            &cluster.certificate_authority_data,
            &cluster.certificate_authority,
        ) {
            (Some(data), _) => Some(decode_base64(data).map_err(error)?),
            (None, Some(file)) => {
                Some(std::fs::read(resolve(file)).map_err(|e| error(format!("{file}: {e}")))?)
            }
            (None, None) => None,
        };
        let Some(user_name) = named_context.user.as_deref() else {
            return Ok(config);
        };
        let user = kubeconfig
            .auth_infos
            .iter()
            .find(|a| a.name == user_name)
            .and_then(|a| a.auth_info.as_ref())
            .ok_or_else(|| error(format!("user {user_name:?} not found")))?;
        if user.exec.is_some() || user.auth_provider.is_some() {
            return Err(error(format!(
                "user {user_name:?} uses an exec or auth-provider plugin, which Paddock does not run; use a token, token file or client certificate"
            )));
        }
        use secrecy::ExposeSecret;
        config.credential = if let Some(token) = &user.token {
            UpstreamCredential::BearerToken(SecretString::from(token.expose_secret().to_owned()))
        } else if let Some(file) = &user.token_file {
            UpstreamCredential::BearerTokenFile(resolve(file))
        } else {
            let cert = match (&user.client_certificate_data, &user.client_certificate) {
                (Some(data), _) => Some(decode_base64(data).map_err(error)?),
                (None, Some(file)) => {
                    Some(std::fs::read(resolve(file)).map_err(|e| error(format!("{file}: {e}")))?)
                }
                _ => None,
            };
            let key = match (&user.client_key_data, &user.client_key) {
                (Some(data), _) => Some(decode_base64(data.expose_secret()).map_err(error)?),
                (None, Some(file)) => {
                    Some(std::fs::read(resolve(file)).map_err(|e| error(format!("{file}: {e}")))?)
                }
                _ => None,
            };
            match (cert, key) {
                (Some(cert_pem), Some(key_pem)) => UpstreamCredential::ClientCertificate {
                    cert_pem,
                    key_pem: SecretString::from(
                        String::from_utf8(key_pem)
                            .map_err(|_| error("client key is not PEM".into()))?,
                    ),
                },
                (None, None) => UpstreamCredential::None,
                _ => {
                    return Err(error(
                        "a client certificate needs both a certificate and a key".into(),
                    ))
                }
            }
        };
        Ok(config)
    }
}

#[cfg(feature = "kube")]
fn decode_base64(data: &str) -> Result<Vec<u8>, String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("invalid base64 data: {e}"))
}
