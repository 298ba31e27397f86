//! `paddock serve`: merge flags over the config file, check it (the same
//! check as `paddock config check`), build proxy-core from the checked
//! configuration, bind, and run until SIGTERM/SIGINT.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};

use proxy_core::{
    accounts::{Accounts, AccountsOptions},
    authn::{
        client_cert::ClientCertAuthenticator, github::GithubProvider, ldap::LdapProvider,
        oidc::OidcProvider, token_file::TokenFileAuthenticator,
    },
    authz::{policy::PolicyAuthorizer, AllowAuthenticated, Authorizer, DenyAll},
    net::OutboundProxy,
    plugins::access_log::{AccessLog, AccessLogFormat},
    Proxy,
};
use secrecy::ExposeSecret;

use crate::{
    config::{
        AuthorizationMode, Backend, Checked, CheckedStore, ClusterEntry, Config, ConfigError,
        ConfigErrors, DangerousCluster, KubeconfigRef, LogFormat, OpenError,
    },
    ServeArgs,
};

pub(crate) fn run(args: ServeArgs, open_files: &crate::OpenFileLimit) -> ExitCode {
    let (config, outbound) = match load(&args) {
        Ok(loaded) => loaded,
        Err(errors) => return crate::config_invalid(&errors),
    };
    crate::logging::init(config.logging.level.as_deref(), config.logging.format);
    open_files.log();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, outbound)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if matches!(error.downcast_ref(), Some(OpenError::Unreachable(_))) => {
            tracing::error!(error = %error, "paddock stopped");
            eprintln!("paddock: {error}");
            ExitCode::from(crate::EXIT_UNAVAILABLE)
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "paddock stopped");
            eprintln!("paddock: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The config file (if any) with the flags applied on top, checked, and
/// the HTTP proxy Paddock's own outbound clients go through
/// (`HTTPS_PROXY`, `NO_PROXY`): a malformed one is a configuration error.
fn load(args: &ServeArgs) -> Result<(Checked, OutboundProxy), ConfigErrors> {
    let mut config = match &args.config {
        Some(path) => Config::read(path)?,
        None => Config::default(),
    };
    if let Some(listen) = &args.listen {
        config.listen = Some(listen.clone());
    }
    if let Some(dir) = &args.data_dir {
        config.data_dir = Some(dir.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config.tls.cert_file = Some(cert.clone());
        config.tls.key_file = Some(key.clone());
    }
    if let Some(ca) = &args.client_ca {
        config.tls.client_ca_file = Some(ca.clone());
    }
    if let Some(file) = &args.token_auth_file {
        config.authentication.token_file = Some(file.clone());
    }
    if let Some(mode) = args.authorization {
        config.authorization.mode = mode;
    }
    if let Some(dir) = &args.policy_dir {
        config.authorization.mode = AuthorizationMode::Policy;
        config.authorization.policy_dir = Some(dir.clone());
    }
    match args.store {
        Some(crate::StoreBackendArg::Embedded) => config.store.backend = Backend::Embedded,
        Some(crate::StoreBackendArg::Etcd) => config.store.backend = Backend::Etcd,
        None => {}
    }
    if !args.etcd_endpoints.is_empty() {
        config.store.endpoints = args.etcd_endpoints.clone();
    }
    let dangerous = DangerousCluster {
        allow_plaintext: args.dangerous_upstream_allow_plaintext,
        ..DangerousCluster::default()
    };
    let flag_cluster = if let Some(server) = &args.upstream {
        Some(ClusterEntry {
            server: Some(server.clone()),
            ca_file: args.upstream_ca.clone(),
            token_file: args.upstream_token_file.clone(),
            dangerous,
            ..ClusterEntry::default()
        })
    } else {
        args.kubeconfig.as_ref().map(|file| ClusterEntry {
            kubeconfig: Some(KubeconfigRef {
                file: file.clone(),
                context: args.context.clone(),
            }),
            dangerous,
            ..ClusterEntry::default()
        })
    };
    if let Some(mut cluster) = flag_cluster {
        cluster.id = "default".to_owned();
        cluster.default = true;
        for other in &mut config.clusters {
            other.default = false;
        }
        config.clusters.retain(|c| c.id != "default");
        config.clusters.insert(0, cluster);
    } else if config.clusters.is_empty() && args.config.is_none() {
        config.clusters.extend(discover_cluster());
    }
    with_environment(config.check())
}

/// `checked` and the HTTP proxy of the environment (`HTTPS_PROXY`,
/// `NO_PROXY`), or every error of both: what `serve` and `config check`
/// refuse alike.
pub(crate) fn with_environment(
    checked: Result<Checked, ConfigErrors>,
) -> Result<(Checked, OutboundProxy), ConfigErrors> {
    let outbound = OutboundProxy::from_env().map_err(|message| ConfigError {
        path: String::new(),
        message,
    });
    match (checked, outbound) {
        (Ok(checked), Ok(outbound)) => Ok((checked, outbound)),
        (Err(mut errors), Err(error)) => {
            errors.0.push(error);
            Err(errors)
        }
        (Err(errors), Ok(_)) => Err(errors),
        (Ok(_), Err(error)) => Err(error.into()),
    }
}

/// With no configuration at all: in-cluster credentials, else `$KUBECONFIG`,
/// else `~/.kube/config`, when present.
fn discover_cluster() -> Option<ClusterEntry> {
    let in_cluster = Path::new("/var/run/secrets/kubernetes.io/serviceaccount");
    if let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) {
        if in_cluster.join("token").exists() {
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host
            };
            return Some(ClusterEntry {
                id: "default".to_owned(),
                default: true,
                server: Some(format!("https://{host}:{port}")),
                ca_file: Some(in_cluster.join("ca.crt")),
                token_file: Some(in_cluster.join("token")),
                ..ClusterEntry::default()
            });
        }
    }
    let file = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config")))
        .filter(|path| path.is_file())?;
    Some(ClusterEntry {
        id: "default".to_owned(),
        default: true,
        kubeconfig: Some(KubeconfigRef {
            file,
            context: None,
        }),
        ..ClusterEntry::default()
    })
}

/// Builds the proxy from the checked configuration and serves until a
/// signal. What fails here is the machine's state (the store, the port,
/// writing the generated certificate), not the configuration. Identity
/// providers, the audit webhook and alert receivers are reached through
/// `outbound`.
async fn serve(config: Checked, outbound: OutboundProxy) -> anyhow::Result<()> {
    let Checked {
        listen,
        data_dir,
        tls,
        store,
        shutdown_grace,
        workers,
        limits,
        authentication,
        authorization,
        clusters,
        agents,
        logging,
        metrics,
        audit,
        health,
        alerts,
        rbac_sync,
    } = config;
    // First, before anything writes into it: mode 0700.
    proxy_core::store::create_data_dir(&data_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        )
    })?;
    let tls = tls.server_tls(&data_dir)?;
    let server_config = tls.server_config()?;
    let github = match &authentication.github {
        Some(section) => Some(section.provider(&data_dir, &outbound)?),
        None => None,
    };
    let mut oidc = Vec::new();
    for (index, section) in authentication.oidc.iter().enumerate() {
        oidc.push(section.provider(
            &format!("authentication.oidc[{index}]"),
            &data_dir,
            &outbound,
        )?);
    }
    let accounts = open_accounts(
        &store,
        &data_dir,
        authentication.accounts,
        &authentication.ldap,
        github,
        &oidc,
    )?;
    for provider in oidc {
        // Keys in memory before the first bearer token, so tokens keep
        // verifying if the provider goes down later; failures are retried
        // by the first token or login that needs them.
        tokio::spawn(async move {
            match provider.prefetch().await {
                Ok(()) => {
                    tracing::info!(auth.provider = %provider.config().name, "OIDC discovery and keys fetched");
                }
                Err(error) => {
                    tracing::warn!(auth.provider = %provider.config().name, %error, "OIDC provider not reachable yet");
                }
            }
        });
    }
    // The filter is fixed for the life of the process: when it leaves the
    // access log off, the log is not there at all, and no request pays for
    // a plugin that would drop every line.
    let access_log =
        tracing::enabled!(target: "paddock::access", tracing::Level::INFO).then(|| {
            AccessLog::new(match logging.format {
                LogFormat::Json => AccessLogFormat::Json,
                LogFormat::Text => AccessLogFormat::Text,
            })
        });
    // In place of the built-in one: this one's format is the configured
    // one, and the metrics report its drops.
    let mut builder = Proxy::builder()
        .accounts(accounts.clone())
        .without_plugins();
    if let Some(access_log) = &access_log {
        builder = builder.plugin(access_log.clone());
    }
    if let Some(ca) = &tls.ca_pem {
        builder = builder.server_ca(ca.clone());
    }
    if let Some(id) = &authorization.management_cluster {
        builder = builder.management_cluster(id.clone());
    }
    if tls.client_ca_pem.is_some() {
        builder = builder.authenticator(ClientCertAuthenticator);
    }
    if let Some(file) = &authentication.token_file {
        let tokens = TokenFileAuthenticator::watch(file)?;
        tracing::info!(tokens = tokens.len(), file = %file.display(), "static token file loaded");
        builder = builder.authenticator(tokens);
    }
    let mut policy_authorizer = None;
    let authorizer: Arc<dyn Authorizer> = match authorization.mode {
        AuthorizationMode::DenyAll => {
            tracing::warn!("no authorization policy configured: every proxied request is denied");
            Arc::new(DenyAll)
        }
        AuthorizationMode::AllowAuthenticated => {
            tracing::warn!(
                "authorization: allow-authenticated — any authenticated caller may do anything"
            );
            Arc::new(AllowAuthenticated)
        }
        AuthorizationMode::Policy => {
            let source = authorization.policy_source(Some(accounts.view().clone()));
            let authorizer = PolicyAuthorizer::watch(source)?;
            tracing::info!(stats = ?authorizer.current().stats(), "policy loaded");
            let authorizer = Arc::new(authorizer);
            policy_authorizer = Some(authorizer.clone());
            authorizer
        }
    };
    if authorization.mode == AuthorizationMode::Policy {
        // The same policy decides administration; in the other modes the
        // builder's default (the store's role bindings) does.
        builder = builder.admin_authorizer(authorizer.clone());
    }
    builder = builder.authorizer(authorizer);
    if let (Some(checked), Some(policy)) = (rbac_sync, policy_authorizer) {
        use proxy_core::plugins::rbac_sync::{CurrentPolicy, RbacSync};
        let current: CurrentPolicy = Arc::new(move || policy.current());
        let mut sync = RbacSync::new(accounts.view().clone(), current).interval(checked.interval);
        match checked.clusters {
            Some(ids) => {
                tracing::info!(clusters = ?ids, "rbac sync enabled");
                sync = sync.only(ids);
            }
            None => tracing::info!("rbac sync enabled for every cluster"),
        }
        builder = builder.rbac_sync(sync);
    }
    for cluster in clusters {
        tracing::info!(cluster.id = %cluster.config.id, server = %cluster.config.server, default = cluster.default, "cluster");
        if cluster
            .config
            .server
            .to_ascii_lowercase()
            .starts_with("http://")
        {
            tracing::warn!(cluster.id = %cluster.config.id, "dangerous.allowPlaintext: Paddock's credential and callers' identities cross the network in clear");
        }
        builder = builder.cluster(cluster.config, cluster.default);
    }
    if let Some(grace) = shutdown_grace {
        builder = builder.shutdown_grace(grace);
    }
    builder = builder
        .connection_limits(limits)
        .agent_wait(agents.wait)
        .agent_image(agents.image);
    let audit = match audit {
        Some(audit) => Some(audit.plugin(&outbound)?),
        None => None,
    };
    if let Some(audit) = &audit {
        builder = builder.plugin(audit.clone());
    }
    let alerts = match alerts {
        Some(alerts) => Some(alerts.plugin(&outbound)?),
        None => None,
    };
    if let Some(alerts) = &alerts {
        builder = builder.plugin(alerts.clone());
    }
    if let Some(health) = health {
        builder = builder.cluster_health(health);
    }
    if let Some(workers) = workers {
        builder = builder.workers(workers);
    }
    let metrics = match metrics {
        Some(checked) => {
            let plugin = proxy_core::plugins::metrics::Metrics::new();
            if let Some(access_log) = &access_log {
                plugin.queue("access", access_log.queue_stats());
            }
            if let Some(audit) = audit {
                plugin.queue("audit", audit.queue_stats());
            }
            if let Some(alerts) = alerts {
                plugin.queue("alerts", alerts.queue_stats());
            }
            plugin.store(accounts.view().clone());
            builder = builder.plugin(plugin.clone());
            Some(MetricsListener::bind(checked, &plugin).await?)
        }
        None => None,
    };
    let proxy = builder.build()?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "paddock listening");
    if let Some(proxy) = outbound.address() {
        tracing::info!(
            %proxy,
            no_proxy = ?outbound.exempt(),
            "identity providers, the audit webhook and alert receivers are reached through HTTPS_PROXY"
        );
    }
    let served = proxy
        .serve(listener, server_config, shutdown_signal())
        .await;
    if let Some(metrics) = metrics {
        metrics.stop().await;
    }
    served?;
    Ok(())
}

/// The running metrics listener: up until the proxy has drained, so a
/// scrape can watch the drain.
struct MetricsListener {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsListener {
    async fn bind(
        checked: crate::config::CheckedMetrics,
        metrics: &proxy_core::plugins::metrics::Metrics,
    ) -> anyhow::Result<Self> {
        let listen = checked.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("metrics: cannot listen on {listen}: {e}"))?;
        let addr = listener.local_addr()?;
        if checked.public {
            tracing::warn!(%addr, "metrics.dangerous.allowPublicMetrics: the metrics are served in clear, without authentication, to whoever can reach this address");
        }
        tracing::info!(%addr, "metrics listening");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        if checked.options.tls.is_some() {
            tracing::info!(%addr, authenticated = checked.options.bearer_token.is_some(), "metrics served over TLS");
        }
        let task = tokio::spawn(proxy_core::plugins::metrics::serve_with(
            listener,
            metrics.registry(),
            checked.options,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Self { stop, task })
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Opens the store (the data directory's, refusing a corrupt or newer one;
/// or etcd, refusing an unreachable one or a prefix holding foreign data), creates
/// the bootstrap admin on first start and prints its password once, and
/// starts the store's background work.
fn open_accounts(
    store: &CheckedStore,
    data_dir: &Path,
    options: AccountsOptions,
    directories: &[proxy_core::authn::ldap::LdapConfig],
    github: Option<Arc<GithubProvider>>,
    oidc: &[Arc<OidcProvider>],
) -> anyhow::Result<Arc<Accounts>> {
    let mut accounts = store.open_accounts(data_dir, options)?;
    for directory in directories {
        let provider = LdapProvider::new(directory).map_err(|e| {
            anyhow::anyhow!("directory {}: {}: {}", directory.name, e.key, e.message)
        })?;
        tracing::info!(provider = %provider.name(), kind = ?provider.kind(), "directory configured");
        accounts = accounts.with_provider(Arc::new(provider));
    }
    if let Some(github) = github {
        tracing::info!(api = %github.config().endpoints.api, access_mode = ?github.config().access_mode, "GitHub login enabled");
        accounts = accounts.with_github(github);
    }
    for provider in oidc {
        tracing::info!(auth.provider = %provider.config().name, issuer = %provider.config().issuer, access_mode = ?provider.config().access_mode, "OpenID Connect login enabled");
        accounts = accounts.with_oidc(provider.clone());
    }
    if let Some(admin) = accounts
        .bootstrap()
        .map_err(|e| anyhow::anyhow!("bootstrap admin: {e}"))?
    {
        tracing::warn!(
            user = %admin.user.username,
            password_file = %admin.password_file.display(),
            "bootstrap admin created; its password must be changed at first login"
        );
        // Printed once, on stdout (logs go to stderr); also in the 0600 file.
        println!(
            "Paddock created the user {} with the one-time password {}\n\
             (also in {}). Log in with POST /paddock/v1/login and set a new one with \
             POST /paddock/v1/password.",
            admin.user.username,
            admin.password.expose_secret(),
            admin.password_file.display()
        );
    }
    let accounts = Arc::new(accounts);
    tracing::info!(
        users = accounts.view().with_snapshot(|s| s.user_count()),
        "user store open"
    );
    Ok(accounts)
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
