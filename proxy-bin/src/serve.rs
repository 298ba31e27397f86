//! `paddock serve`: merge flags over the config file, validate, wire
//! proxy-core together, bind, and run until SIGTERM/SIGINT.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use proxy_core::{
    accounts::{Accounts, AccountsOptions},
    authn::{
        client_cert::ClientCertAuthenticator, github::GithubProvider, ldap::LdapProvider,
        local::PasswordPolicy, token_file::TokenFileAuthenticator,
    },
    authz::{
        policy::{PolicyAuthorizer, PolicySource},
        AllowAuthenticated, Authorizer, DenyAll,
    },
    server::tls::ServerTls,
    upstream::{ClusterConfig, UpstreamCredential},
    Proxy,
};
use secrecy::{ExposeSecret, SecretString};

use crate::{
    config::{
        AuthorizationConfig, AuthorizationMode, ClusterEntry, Config, ConfigError, KubeconfigRef,
        LogFormat,
    },
    ServeArgs, EXIT_CONFIG,
};

const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
pub(crate) const DEFAULT_DATA_DIR: &str = "paddock-data";

pub(crate) fn run(args: ServeArgs, open_files: &crate::OpenFileLimit) -> ExitCode {
    let config = match load(&args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("paddock: invalid configuration: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&config);
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
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(ServeError::Config(error)) => {
            tracing::error!(%error, "invalid configuration");
            eprintln!("paddock: invalid configuration: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(ServeError::Runtime(error)) => {
            tracing::error!(error = %format!("{error:#}"), "paddock stopped");
            eprintln!("paddock: {error:#}");
            ExitCode::FAILURE
        }
    }
}

enum ServeError {
    Config(ConfigError),
    Runtime(anyhow::Error),
}

impl From<ConfigError> for ServeError {
    fn from(error: ConfigError) -> Self {
        Self::Config(error)
    }
}

/// The config file (if any) with the flags applied on top, validated.
fn load(args: &ServeArgs) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
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
    let flag_cluster = if let Some(server) = &args.upstream {
        Some(ClusterEntry {
            server: Some(server.clone()),
            ca_file: args.upstream_ca.clone(),
            token_file: args.upstream_token_file.clone(),
            ..ClusterEntry::default()
        })
    } else {
        args.kubeconfig.as_ref().map(|file| ClusterEntry {
            kubeconfig: Some(KubeconfigRef {
                file: file.clone(),
                context: args.context.clone(),
            }),
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
    config.validate()?;
    Ok(config)
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

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(config.logging.level.as_deref().unwrap_or("info"))
    });
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match config.logging.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn serve(config: Config) -> Result<(), ServeError> {
    let data_dir = config
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    // First, before anything writes into it: mode 0700.
    proxy_core::store::create_data_dir(&data_dir).map_err(|e| {
        ServeError::Runtime(anyhow::anyhow!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let mut tls = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => ServerTls::from_files(cert, key).map_err(|e| ConfigError {
            path: "tls.certFile".into(),
            message: e.to_string(),
        })?,
        _ => ServerTls::self_signed(&data_dir, &config.tls.extra_names)
            .map_err(|e| ServeError::Runtime(anyhow::anyhow!("self-signed certificate: {e}")))?,
    };
    let github = match &config.authentication.github {
        Some(section) => Some(section.provider(&data_dir)?),
        None => None,
    };
    let accounts = open_accounts(&data_dir, accounts_options(&config), &config, github)?;
    let mut builder = Proxy::builder().accounts(accounts.clone());
    if let Some(ca) = &tls.ca_pem {
        builder = builder.server_ca(ca.clone());
    }
    if let Some(id) = &config.authorization.management_cluster {
        builder = builder.management_cluster(id.clone());
    }
    if let Some(ca) = &config.tls.client_ca_file {
        tls = tls.with_client_ca_file(ca).map_err(|e| ConfigError {
            path: "tls.clientCAFile".into(),
            message: e.to_string(),
        })?;
        builder = builder.authenticator(ClientCertAuthenticator);
    }
    let server_config = tls.server_config().map_err(|e| ConfigError {
        path: "tls".into(),
        message: e.to_string(),
    })?;
    if let Some(file) = &config.authentication.token_file {
        let tokens = TokenFileAuthenticator::watch(file).map_err(|e| ConfigError {
            path: "authentication.tokenFile".into(),
            message: e.to_string(),
        })?;
        tracing::info!(tokens = tokens.len(), file = %file.display(), "static token file loaded");
        builder = builder.authenticator(tokens);
    }
    let authorizer: Arc<dyn Authorizer> = match config.authorization.mode {
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
            let source = PolicySource {
                store: Some(accounts.view().clone()),
                ..policy_source(&config.authorization)
            };
            let authorizer = PolicyAuthorizer::watch(source).map_err(|e| ConfigError {
                path: "authorization.policyDir".into(),
                message: e.to_string(),
            })?;
            tracing::info!(stats = ?authorizer.current().stats(), "policy loaded");
            Arc::new(authorizer)
        }
    };
    builder = builder.authorizer(authorizer);
    for (index, entry) in config.clusters.iter().enumerate() {
        let cluster = cluster_config(entry).map_err(|message| ConfigError {
            path: format!("clusters[{index}]"),
            message,
        })?;
        tracing::info!(cluster.id = %entry.id, server = %cluster.server, default = entry.default, "cluster");
        builder = builder.cluster(cluster, entry.default);
    }
    if let Some(secs) = config.shutdown_grace_seconds {
        builder = builder.shutdown_grace(Duration::from_secs(secs));
    }
    if let Some(workers) = config.workers {
        builder = builder.workers(workers);
    }
    let proxy = builder.build().map_err(|e| ConfigError {
        path: "clusters".into(),
        message: e.to_string(),
    })?;

    let listen = config.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Runtime(anyhow::anyhow!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ServeError::Runtime(e.into()))?;
    tracing::info!(%addr, data_dir = %data_dir.display(), "paddock listening");
    proxy
        .serve(listener, server_config, shutdown_signal())
        .await
        .map_err(|e| ServeError::Runtime(e.into()))
}

/// The password policy and token lifetimes of `authentication:`.
pub(crate) fn accounts_options(config: &Config) -> AccountsOptions {
    let mut options = AccountsOptions::default();
    let auth = &config.authentication;
    if let Some(n) = auth.local.password_min_length {
        options.password_policy = PasswordPolicy::with_min_length(n);
    }
    let policy = &mut options.token_policy;
    let secs = Duration::from_secs;
    if let Some(s) = auth.tokens.session_ttl_seconds {
        policy.session_ttl = secs(s);
    }
    if let Some(s) = auth.tokens.session_idle_seconds {
        policy.session_idle = Some(secs(s));
    }
    if let Some(s) = auth.tokens.api_max_ttl_seconds {
        policy.api_max_ttl = Some(secs(s));
        policy.api_default_ttl = policy.api_default_ttl.min(secs(s));
    }
    if let Some(s) = auth.tokens.kubeconfig_ttl_seconds {
        policy.kubeconfig_default_ttl = secs(s);
        policy.kubeconfig_max_ttl = Some(secs(s));
    }
    options
}

/// Opens the store in `data_dir` (refusing a corrupt or newer one), creates
/// the bootstrap admin on first start and prints its password once, and
/// starts the store's background work.
fn open_accounts(
    data_dir: &Path,
    options: AccountsOptions,
    config: &Config,
    github: Option<Arc<GithubProvider>>,
) -> Result<Arc<Accounts>, ServeError> {
    let mut accounts = Accounts::open(data_dir, options)
        .map_err(|e| ServeError::Runtime(anyhow::anyhow!("{e}")))?;
    for (index, directory) in config.authentication.ldap.iter().enumerate() {
        let provider = LdapProvider::new(directory).map_err(|e| ConfigError {
            path: format!("authentication.ldap[{index}].{}", e.key),
            message: e.message,
        })?;
        tracing::info!(provider = %provider.name(), kind = ?provider.kind(), "directory configured");
        accounts = accounts.with_directory(Arc::new(provider));
    }
    if let Some(github) = github {
        tracing::info!(api = %github.config().endpoints.api, access_mode = ?github.config().access_mode, "GitHub login enabled");
        accounts = accounts.with_github(github);
    }
    if let Some(admin) = accounts
        .bootstrap()
        .map_err(|e| ServeError::Runtime(anyhow::anyhow!("bootstrap admin: {e}")))?
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
    accounts.spawn_background();
    tracing::info!(
        users = accounts.view().with_snapshot(|s| s.user_count()),
        "user store open"
    );
    Ok(accounts)
}

/// The policy files of an `authorization:` section in mode `policy` (the
/// store, when there is one, is added by the caller).
pub(crate) fn policy_source(config: &AuthorizationConfig) -> PolicySource {
    PolicySource {
        dir: config.policy_dir.clone(),
        store: None,
        management_cluster: config.management_cluster.clone(),
    }
}

fn cluster_config(entry: &ClusterEntry) -> Result<ClusterConfig, String> {
    let mut cluster = match (&entry.server, &entry.kubeconfig) {
        (_, Some(kubeconfig)) => ClusterConfig::from_kubeconfig(
            entry.id.clone(),
            &kubeconfig.file,
            kubeconfig.context.as_deref(),
        )
        .map_err(|e| e.to_string())?,
        (Some(server), None) => ClusterConfig::new(entry.id.clone(), server.clone()),
        (None, None) => return Err("no server".to_owned()),
    };
    let read = |path: &Path| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    if let Some(ca) = &entry.ca_file {
        cluster.ca_pem = Some(read(ca)?);
    }
    if let Some(token) = &entry.token_file {
        cluster.credential = UpstreamCredential::BearerTokenFile(token.clone());
    }
    if let (Some(cert), Some(key)) = (&entry.client_cert_file, &entry.client_key_file) {
        cluster.credential = UpstreamCredential::ClientCertificate {
            cert_pem: read(cert)?,
            key_pem: SecretString::from(
                String::from_utf8(read(key)?)
                    .map_err(|_| "the client key is not PEM text".to_owned())?,
            ),
        };
    }
    if entry.dangerous.skip_tls_verify {
        cluster.dangerous_skip_tls_verify = true;
    }
    if let Some(secs) = entry.request_timeout_seconds {
        cluster.request_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = entry.connect_timeout_seconds {
        cluster.connect_timeout = Duration::from_secs(secs);
    }
    Ok(cluster)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}
