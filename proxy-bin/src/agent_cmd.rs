//! `paddock agent`: the cluster agent. Dials out to Paddock and serves
//! Paddock's requests to this cluster's API server through the tunnel.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use proxy_core::{
    agent::{AgentConfig, AgentToken},
    net::OutboundProxy,
    upstream::{ClusterConfig, UpstreamCredential},
};
use secrecy::SecretString;

/// In-cluster service account files (`rest.InClusterConfig`).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Flags of `paddock agent`.
#[derive(clap::Args)]
pub(crate) struct AgentArgs {
    /// Paddock's URL, e.g. https://paddock.example. Repeat it to keep one
    /// tunnel to each of several replicas (each replica then serves the
    /// cluster itself).
    #[arg(long, required = true)]
    server: Vec<String>,
    /// The registration token (`paddock cluster add` printed it).
    #[arg(
        long,
        env = "PADDOCK_AGENT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// A file holding the registration token (re-read at each reconnect).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Trust only this CA (PEM) for Paddock's certificate [default: the system roots].
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Reach the API server with this kubeconfig [default: the in-cluster
    /// service account, else $KUBECONFIG or ~/.kube/config].
    #[arg(long, conflicts_with = "api_server")]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current-context].
    #[arg(long, requires = "kubeconfig")]
    context: Option<String>,
    /// The API server's URL (instead of a kubeconfig).
    #[arg(long)]
    api_server: Option<String>,
    /// CA bundle for --api-server.
    #[arg(long, requires = "api_server")]
    api_ca_file: Option<PathBuf>,
    /// The agent's bearer token file for --api-server (re-read when it changes).
    #[arg(long, requires = "api_server")]
    api_token_file: Option<PathBuf>,
    /// First pause, in milliseconds, before reconnecting (doubles up to 60 s).
    #[arg(long, default_value_t = 1000, hide = true)]
    initial_backoff_ms: u64,
}

pub(crate) fn run(args: AgentArgs) -> ExitCode {
    crate::logging::init(None, crate::config::LogFormat::Text);
    let configs = match configs(args) {
        Ok(configs) => configs,
        Err(message) => {
            eprintln!("paddock agent: {message}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    // One thread: every stream of a tunnel goes through its one HTTP/2
    // connection anyway, and tasks handing data to each other on one
    // thread wake no other (a tenth less CPU per byte relayed).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock agent: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let failed = runtime.block_on(async {
        let stop = tokio::sync::watch::channel(false).0;
        let mut tunnels = tokio::task::JoinSet::new();
        for config in configs {
            let mut stopped = stop.subscribe();
            tunnels.spawn(proxy_core::agent::run(config, async move {
                let _ = stopped.changed().await;
            }));
        }
        let signal = shutdown_signal();
        tokio::pin!(signal);
        let (mut signalled, mut failed) = (false, None);
        loop {
            tokio::select! {
                () = &mut signal, if !signalled => {
                    signalled = true;
                    let _ = stop.send(true);
                }
                joined = tunnels.join_next() => match joined {
                    None => return failed,
                    Some(Ok(Err(error))) => {
                        failed.get_or_insert(error.to_string());
                        let _ = stop.send(true);
                    }
                    Some(_) => {}
                },
            }
        }
    });
    match failed {
        None => ExitCode::SUCCESS,
        Some(error) => {
            eprintln!("paddock agent: {error}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
    }
}

/// One agent configuration per `--server`.
fn configs(args: AgentArgs) -> Result<Vec<AgentConfig>, String> {
    let servers = args.server.clone();
    let config = config(args)?;
    Ok(servers
        .into_iter()
        .map(|server| {
            let mut config = config.clone();
            config.server = server;
            config
        })
        .collect())
}

fn config(args: AgentArgs) -> Result<AgentConfig, String> {
    let token = match (args.token, args.token_file) {
        (Some(token), _) => AgentToken::Value(SecretString::from(token)),
        (None, Some(file)) => AgentToken::File(file),
        (None, None) => {
            return Err("--token, --token-file or PADDOCK_AGENT_TOKEN is required".to_owned())
        }
    };
    let upstream = api_server(
        args.kubeconfig,
        args.context,
        args.api_server,
        args.api_ca_file,
        args.api_token_file,
    )?;
    let mut config = AgentConfig::new(
        args.server.first().cloned().unwrap_or_default(),
        token,
        upstream,
    );
    if let Some(file) = &args.ca_file {
        config.ca_pem =
            Some(std::fs::read(file).map_err(|e| format!("--ca-file {}: {e}", file.display()))?);
    }
    config.initial_backoff = Duration::from_millis(args.initial_backoff_ms.max(1));
    config.proxy = OutboundProxy::from_env()?;
    Ok(config)
}

/// The agent's own API server: the flags, else the in-cluster service
/// account, else the kubeconfig.
fn api_server(
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    server: Option<String>,
    ca_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
) -> Result<ClusterConfig, String> {
    if let Some(server) = server {
        let mut config = ClusterConfig::new("local", server);
        if let Some(file) = ca_file {
            config.ca_pem = Some(
                std::fs::read(&file)
                    .map_err(|e| format!("--api-ca-file {}: {e}", file.display()))?,
            );
        }
        if let Some(file) = token_file {
            config.credential = UpstreamCredential::BearerTokenFile(file);
        }
        return Ok(config);
    }
    let in_cluster = std::path::Path::new(SERVICE_ACCOUNT_DIR);
    if kubeconfig.is_none() {
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
                let mut config = ClusterConfig::new("local", format!("https://{host}:{port}"));
                config.ca_pem = Some(
                    std::fs::read(in_cluster.join("ca.crt"))
                        .map_err(|e| format!("in-cluster CA: {e}"))?,
                );
                config.credential = UpstreamCredential::BearerTokenFile(in_cluster.join("token"));
                return Ok(config);
            }
        }
    }
    let file = kubeconfig
        .or_else(|| std::env::var_os("KUBECONFIG").and_then(|v| std::env::split_paths(&v).next()))
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".kube/config")))
        .filter(|path| path.is_file())
        .ok_or("no API server: not in a cluster, and no kubeconfig (--kubeconfig, $KUBECONFIG, ~/.kube/config)")?;
    ClusterConfig::from_kubeconfig("local", &file, context.as_deref()).map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut terminate), Ok(mut interrupt)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
}

// By hand: the token must never reach a Debug print.
impl std::fmt::Debug for AgentArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentArgs")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}
