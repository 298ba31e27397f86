//! # proxy-core
//!
//! Paddock's authenticating reverse proxy for Kubernetes API servers, as a
//! library. A request arrives over TLS, the caller is authenticated, every
//! credential and identity header the caller sent is removed, Kubernetes
//! impersonation headers are added, and the request is streamed to the
//! right downstream API server with Paddock's own credential: watches,
//! `logs -f` and exec sessions included.
//!
//! The layer order, and where each [`plugin`] phase runs, lives in
//! [`stack`]; each layer is one file in `proxy-core/src/layers/`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use proxy_core::{authn::token_file::TokenFileAuthenticator, authz::AllowAuthenticated,
//!                  upstream::{ClusterConfig, UpstreamCredential}, Proxy, server::tls::ServerTls};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut cluster = ClusterConfig::new("prod", "https://10.0.0.1:6443");
//! cluster.ca_pem = Some(std::fs::read("ca.crt")?);
//! cluster.credential = UpstreamCredential::BearerTokenFile("proxy-token".into());
//! let proxy = Proxy::builder()
//!     .authenticator(TokenFileAuthenticator::watch("tokens.csv".as_ref())?)
//!     .authorizer(Arc::new(AllowAuthenticated))
//!     .cluster(cluster, true)
//!     .build()?;
//! let tls = ServerTls::self_signed("./paddock-data".as_ref(), &[])?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8443").await?;
//! proxy.serve(listener, tls.server_config()?, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! ## Features
//! - `kube` (default): read clusters from kubeconfig files
//!   ([`upstream::ClusterConfig::from_kubeconfig`]).
//! - `ldap` (default): Active Directory and OpenLDAP logins
//!   ([`authn::ldap::LdapProvider`]), with `ldap3` over rustls.
//! - `github` (default): GitHub and GitHub Enterprise logins
//!   (`authn::github`): the browser flow, token login, background refresh.
//! - `oidc` (default): OpenID Connect providers (`authn::oidc`): the
//!   browser code flow, JWT bearer tokens verified locally, background refresh.

pub mod accounts;
pub mod agent;
pub mod authn;
pub mod authz;
#[doc(hidden)]
pub mod bench;
pub mod body;
pub mod context;
pub(crate) mod endpoints;
pub mod error;
pub mod events;
pub mod future;
pub mod health;
pub(crate) mod hop_by_hop;
pub(crate) mod impersonation;
pub mod kubeconfig;
pub(crate) mod layers;
pub mod net;
pub(crate) mod piecewise;
pub mod plugin;
pub mod plugins;
pub(crate) mod reload;
pub mod replica;
pub mod request;
pub mod server;
pub mod shutdown;
pub mod sidecar;
pub mod stack;
pub mod status;
pub mod store;
pub mod tunnel;
pub mod upstream;
mod worker;

use std::{future::Future, sync::Arc, time::Duration};

use accounts::Accounts;
use authn::{Authenticator, AuthenticatorChain};
use authz::{Authorizer, DenyAll};
use plugin::{Plugin, Plugins};
use shutdown::Shutdown;
pub use stack::ProxyService;
use stack::StackParts;
use upstream::{Cluster, ClusterConfig, Router, UpstreamError};

/// Default time in-flight requests get to finish on shutdown.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Assembles a [`Proxy`].
pub struct ProxyBuilder {
    authenticators: AuthenticatorChain,
    authorizer: Arc<dyn Authorizer>,
    admin_authorizer: Option<Arc<dyn Authorizer>>,
    clusters: Vec<(ClusterConfig, bool)>,
    plugins: Vec<Arc<dyn Plugin>>,
    grace: Duration,
    workers: usize,
    limits: server::ConnectionLimits,
    accounts: Option<Arc<Accounts>>,
    ca_pem: Option<Vec<u8>>,
    management_cluster: String,
    health: Option<health::HealthOptions>,
    agent_wait: Duration,
    agent_image: String,
    #[cfg(feature = "kube")]
    rbac_sync: Option<plugins::rbac_sync::RbacSync>,
}

impl Default for ProxyBuilder {
    fn default() -> Self {
        Self {
            authenticators: AuthenticatorChain::new(),
            authorizer: Arc::new(DenyAll),
            admin_authorizer: None,
            clusters: Vec::new(),
            plugins: vec![Arc::new(plugins::access_log::AccessLog::default())],
            grace: DEFAULT_SHUTDOWN_GRACE,
            workers: server::workers::default_count(),
            limits: server::ConnectionLimits::default(),
            accounts: None,
            ca_pem: None,
            management_cluster: ::policy::DEFAULT_MANAGEMENT_CLUSTER.to_owned(),
            health: None,
            agent_wait: tunnel::DEFAULT_AGENT_WAIT,
            agent_image: agent::DEFAULT_IMAGE.to_owned(),
            #[cfg(feature = "kube")]
            rbac_sync: None,
        }
    }
}

impl ProxyBuilder {
    /// Adds an identity provider, asked after those already added.
    pub fn authenticator(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticators = self.authenticators.with(authenticator);
        self
    }

    /// Serves local users and Paddock-issued tokens: their tokens are
    /// accepted (asked before the authenticators already added), the login,
    /// kubeconfig and admin endpoints are enabled, and
    /// [`build`](Self::build) starts the accounts' background work.
    pub fn accounts(mut self, accounts: Arc<Accounts>) -> Self {
        let tokens: Arc<dyn Authenticator> = accounts.tokens().clone();
        let mut chain = AuthenticatorChain::new().with_shared(tokens);
        // Providers' own bearer tokens (OIDC JWTs): after Paddock's tokens,
        // whose shape check is cheaper still.
        if let Some(bearer) = accounts.provider_bearer() {
            chain = chain.with(bearer);
        }
        self.authenticators = chain.extend(self.authenticators);
        self.accounts = Some(accounts);
        self
    }

    /// The CA certificate (PEM) that downloaded kubeconfigs trust.
    pub fn server_ca(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    /// The cluster id administration is authorized against (default
    /// `local`, Rancher's management cluster).
    pub fn management_cluster(mut self, id: impl Into<String>) -> Self {
        self.management_cluster = id.into();
        self
    }

    /// Sets the policy decision point (default: [`DenyAll`]).
    pub fn authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// Sets the policy that decides the admin API under `/paddock/v1/`
    /// (users, tokens, principals). Default: the role bindings in the
    /// [`accounts`](Self::accounts) store, so an [`AllowAuthenticated`] or
    /// [`DenyAll`] proxy authorizer never decides administration; set it to
    /// the same [`PolicyAuthorizer`] as [`authorizer`](Self::authorizer) when
    /// that is one.
    ///
    /// [`AllowAuthenticated`]: authz::AllowAuthenticated
    /// [`PolicyAuthorizer`]: authz::policy::PolicyAuthorizer
    pub fn admin_authorizer(mut self, authorizer: Arc<dyn Authorizer>) -> Self {
        self.admin_authorizer = Some(authorizer);
        self
    }

    /// Adds a downstream cluster; `default` serves it at `/` as well.
    pub fn cluster(mut self, config: ClusterConfig, default: bool) -> Self {
        self.clusters.push((config, default));
        self
    }

    /// How long a request to an agent cluster waits for a disconnected
    /// agent to come back before it is answered 503 (default
    /// [`tunnel::DEFAULT_AGENT_WAIT`]).
    pub fn agent_wait(mut self, wait: Duration) -> Self {
        self.agent_wait = wait;
        self
    }

    /// The container image the agent manifests run (default
    /// [`agent::DEFAULT_IMAGE`]).
    pub fn agent_image(mut self, image: impl Into<String>) -> Self {
        self.agent_image = image.into();
        self
    }

    /// Adds a plugin after the built-in access log.
    pub fn plugin(mut self, plugin: impl Plugin) -> Self {
        self.plugins.push(Arc::new(plugin));
        self
    }

    /// Reads every cluster's health (reachability, version, nodes, latency)
    /// on this schedule, with Paddock's own credential, for
    /// `GET /paddock/v1/clusters/<id>/health`, the admins' landing page and
    /// the plugins' [`on_event`](plugin::Plugin::on_event) (see [`health`]).
    /// Off unless set.
    pub fn cluster_health(mut self, options: health::HealthOptions) -> Self {
        self.health = Some(options);
        self
    }

    /// Writes the bindings into the clusters as native RBAC (see
    /// [`plugins::rbac_sync`]): every cluster this proxy routes to, those
    /// registered while it runs included, unless
    /// [`only`](plugins::rbac_sync::RbacSync::only) some. Each pass is an
    /// event for the plugins; each cluster's status is shown by
    /// `GET /paddock/v1/clusters/<id>` and [`Proxy::rbac_sync_status`].
    #[cfg(feature = "kube")]
    pub fn rbac_sync(mut self, sync: plugins::rbac_sync::RbacSync) -> Self {
        self.rbac_sync = Some(sync);
        self
    }

    /// Removes every plugin, the access log included.
    pub fn without_plugins(mut self) -> Self {
        self.plugins.clear();
        self
    }

    /// Time in-flight requests get to finish on shutdown.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Worker threads serving connections (default: one per core; at
    /// least one). Each has its own event loop and its own connections to
    /// every cluster, see [`server::workers`].
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Timeouts for slow or silent clients and the cap on open connections
    /// (default: [`server::ConnectionLimits::default`]).
    pub fn connection_limits(mut self, limits: server::ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the clusters' clients and the stack. Must run inside a tokio
    /// runtime (credential files are watched).
    pub fn build(self) -> Result<Proxy, BuildError> {
        let plugins = Plugins::new(self.plugins);
        let events = events::Events::new(plugins.clone());
        let mut router = Router::new();
        for (config, default) in &self.clusters {
            router.add(
                Cluster::new(config, self.workers, events.clone())?,
                *default,
            );
        }
        let router = Arc::new(router);
        let tunnels = Arc::new(tunnel::Tunnels::new(self.agent_wait, events.clone()));
        if let Some(accounts) = &self.accounts {
            accounts.set_events(events.clone());
            // Store polling, token purge and providers' refresh run with the
            // proxy: an embedder cannot forget them.
            accounts.spawn_background();
            // Clusters registered in the store become routable.
            upstream::spawn_sync(
                accounts.view(),
                &router,
                tunnels.clone(),
                self.workers,
                events.clone(),
            );
            // Agents' status (connected, heartbeat) reaches the store, coalesced.
            tunnel::spawn_status_writer(accounts.view(), tunnels.clone());
        }
        let shutdown = Shutdown::new();
        let admin_authorizer = match (self.admin_authorizer, &self.accounts) {
            (Some(authorizer), _) => authorizer,
            (None, Some(accounts)) => Arc::new(
                authz::policy::PolicyAuthorizer::watch(authz::policy::PolicySource {
                    store: Some(accounts.view().clone()),
                    management_cluster: Some(self.management_cluster.clone()),
                    ..Default::default()
                })
                .map_err(BuildError::AdminPolicy)?,
            ),
            (None, None) => Arc::new(DenyAll),
        };
        let health = self
            .health
            .map(|options| health::HealthChecker::spawn(router.clone(), options, events.clone()));
        #[cfg(feature = "kube")]
        let rbac_sync = self.rbac_sync.map(|sync| {
            let sync = Arc::new(sync.attach(router.clone(), events.clone()));
            // Ends when the service (which holds the sync) is dropped.
            sync.spawn();
            plugins::rbac_sync::Running::new(sync.board(), sync)
        });
        #[cfg(not(feature = "kube"))]
        let rbac_sync = None;
        let service = stack::build(StackParts {
            authenticators: self.authenticators,
            authorizer: self.authorizer,
            admin_authorizer,
            router: router.clone(),
            tunnels,
            agent_image: self.agent_image,
            plugins,
            shutdown: shutdown.clone(),
            accounts: self.accounts,
            ca_pem: self.ca_pem,
            management_cluster: self.management_cluster,
            health,
            rbac_sync: rbac_sync.clone(),
        });
        Ok(Proxy {
            service,
            rbac_sync,
            events,
            router,
            shutdown,
            options: server::ServeOptions {
                grace: self.grace,
                workers: self.workers,
                limits: self.limits,
            },
        })
    }
}

/// Why [`ProxyBuilder::build`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A cluster's client could not be built.
    #[error(transparent)]
    Cluster(#[from] UpstreamError),
    /// The store's role bindings, which decide the admin API, do not compile.
    #[error("the admin API's policy: {0}")]
    AdminPolicy(authz::policy::PolicyLoadError),
}

/// A built proxy: its service, and a way to serve it.
pub struct Proxy {
    service: ProxyService,
    rbac_sync: Option<plugins::rbac_sync::Running>,
    events: events::Events,
    router: Arc<Router>,
    shutdown: Shutdown,
    options: server::ServeOptions,
}

impl Proxy {
    /// Starts assembling a proxy.
    pub fn builder() -> ProxyBuilder {
        ProxyBuilder::default()
    }

    /// The request path as a tower service, for embedding in another
    /// server: it takes requests with any body of [`bytes::Bytes`] (hyper's
    /// `Incoming`, `http_body_util::Full`, an axum body, ...), see
    /// `examples/examples/mount.rs`. Behind another server, set the
    /// [`ConnectionInfo`](context::ConnectionInfo) extension to report the
    /// client's address and certificate; `kubectl exec` and port-forward
    /// need a hyper server with upgrades enabled.
    pub fn service<B>(&self) -> ProxyService<B> {
        self.service.with_body()
    }

    /// Where background events for this proxy's plugins go: an embedder's
    /// own checks (see [`events`]). A cluster's reachability is not among
    /// them: that is Paddock's own verdict.
    pub fn events(&self) -> events::Events {
        self.events.clone()
    }

    /// Tells Paddock's verdict on `cluster` what a check of the embedder's
    /// own found: `Ok(())` it answered, `Err(reason)` it could not be
    /// reached. The cluster's status, the health view and the plugins (an
    /// [`Event::ClusterReachability`](events::Event::ClusterReachability)
    /// when the verdict changes) all read that one verdict, which requests,
    /// Paddock's own calls and agents' tunnels feed too. False when no
    /// cluster has this id.
    ///
    /// ```no_run
    /// # fn run(proxy: &proxy_core::Proxy) {
    /// proxy.report_reachability("edge-1", Err("the site's VPN is down"));
    /// # }
    /// ```
    pub fn report_reachability(&self, cluster: &str, outcome: Result<(), &str>) -> bool {
        let Ok(cluster) = self.router.resolve(Some(cluster)) else {
            return false;
        };
        cluster.reachability().observe(match outcome {
            Ok(()) => upstream::Observation::Answers,
            Err(reason) => upstream::Observation::Unreachable(reason),
        });
        true
    }

    /// Each cluster's RBAC sync status, by cluster id; empty when the sync
    /// does not run (see [`ProxyBuilder::rbac_sync`]).
    pub fn rbac_sync_status(
        &self,
    ) -> std::collections::BTreeMap<String, Arc<plugins::rbac_sync::ClusterStatus>> {
        self.rbac_sync
            .as_ref()
            .map(|running| running.board.all())
            .unwrap_or_default()
    }

    /// Serves on `listener` with `tls` until `signal` resolves, then shuts
    /// down gracefully (see [`server::serve`]).
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        tls: Arc<rustls::ServerConfig>,
        signal: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        server::serve(
            listener,
            tls,
            self.service,
            self.shutdown,
            self.options,
            signal,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Keeps the clusters' reachability events it hears.
    #[derive(Default)]
    struct Heard(Mutex<Vec<(String, bool, Option<String>)>>);

    impl Plugin for Arc<Heard> {
        fn name(&self) -> &'static str {
            "heard"
        }

        fn on_event(&self, event: &events::Event) {
            if let events::Event::ClusterReachability {
                cluster,
                reachable,
                reason,
            } = event
            {
                self.0
                    .lock()
                    .unwrap()
                    .push((cluster.clone(), *reachable, reason.clone()));
            }
        }
    }

    /// An embedder's check goes through the cluster's one verdict: a
    /// change is one event, a repeat of the verdict none.
    #[tokio::test]
    async fn reported_reachability_feeds_the_clusters_verdict() {
        let heard = Arc::new(Heard::default());
        let proxy = Proxy::builder()
            .without_plugins()
            .plugin(heard.clone())
            .cluster(
                upstream::ClusterConfig::new("edge", "https://127.0.0.1:1"),
                false,
            )
            .build()
            .unwrap();
        assert!(proxy.report_reachability("edge", Err("the VPN is down")));
        assert!(proxy.report_reachability("edge", Err("still down")));
        assert!(proxy.report_reachability("edge", Ok(())));
        assert!(!proxy.report_reachability("nowhere", Ok(())));
        assert_eq!(
            *heard.0.lock().unwrap(),
            [
                ("edge".to_owned(), false, Some("the VPN is down".to_owned())),
                ("edge".to_owned(), true, None),
            ]
        );
    }
}
