//! `paddock sidecar`: the authorized cluster endpoint next to one
//! downstream API server (see `proxy_core::sidecar`).

use std::{path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use proxy_core::{
    net::OutboundProxy,
    server::tls::ServerTls,
    sidecar::{Sidecar, SidecarOptions},
    upstream::{ClusterConfig, UpstreamCredential},
};
use secrecy::SecretString;

/// Flags of `paddock sidecar`.
#[derive(clap::Args)]
pub(crate) struct SidecarArgs {
    /// The center's URL (https://paddock.example).
    #[arg(long)]
    server: String,
    /// The cluster id this sidecar authenticates for.
    #[arg(long)]
    cluster: String,
    /// File holding the cluster's registration token (`paddock cluster
    /// token <id>` prints it), which reads the cluster's replica feed; read
    /// again after a failed poll, so a rotated token needs no restart.
    #[arg(long, conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// The registration token itself (prefer --token-file or the
    /// environment: a command line is visible to every local user).
    #[arg(long, env = "PADDOCK_SIDECAR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// CA bundle (PEM) for the center's certificate [default: system roots].
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// Address of the token-review webhook (plain HTTP; keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:6440")]
    listen: String,
    /// Directory for the replica.
    #[arg(long, default_value = "./paddock-sidecar-data")]
    data_dir: PathBuf,
    /// Refuse token reviews (HTTP 503, not cached by kube-apiserver) once
    /// the replica may be older than this: `90s`, `5m`, `1h` or seconds.
    #[arg(long, value_parser = parse_duration)]
    max_staleness: Option<Duration>,
    /// Also serve Paddock's request path (authenticate, policy,
    /// impersonate) in front of --upstream on this address (HTTPS), for
    /// API servers whose flags cannot be changed.
    #[arg(long, requires = "upstream")]
    proxy_listen: Option<String>,
    /// The local API server's URL (https://127.0.0.1:6443).
    #[arg(long, requires = "proxy_listen")]
    upstream: Option<String>,
    /// CA bundle (PEM) for --upstream [default: system roots].
    #[arg(long, requires = "upstream")]
    upstream_ca: Option<PathBuf>,
    /// The sidecar's bearer token file for --upstream (re-read when it
    /// changes): a credential allowed to impersonate users and groups.
    #[arg(long, requires = "upstream")]
    upstream_token_file: Option<PathBuf>,
    /// Certificate (PEM) of --proxy-listen [default: one generated in
    /// --data-dir/tls, signed by the CA beside it].
    #[arg(long, requires = "proxy_tls_key")]
    proxy_tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, requires = "proxy_tls_cert")]
    proxy_tls_key: Option<PathBuf>,
    /// A host name or address the generated certificate is for, besides
    /// localhost and 127.0.0.1 (repeatable).
    #[arg(long = "proxy-tls-name")]
    proxy_tls_names: Vec<String>,
}

/// The request path's settings, checked.
struct ProxyArgs {
    listen: std::net::SocketAddr,
    upstream: ClusterConfig,
    /// Built (and so checked) once, while the flags are checked.
    tls: Arc<rustls::ServerConfig>,
}

/// Checks the request path's flags, pushing what is wrong onto `errors`.
fn proxy_args(args: &SidecarArgs, errors: &mut Vec<String>) -> Option<ProxyArgs> {
    let (Some(listen), Some(upstream)) = (&args.proxy_listen, &args.upstream) else {
        return None;
    };
    let listen = listen
        .parse()
        .map_err(|_| errors.push(format!("--proxy-listen: {listen:?} is not an address:port")))
        .ok();
    if !upstream.starts_with("https://") {
        errors.push(format!("--upstream: {upstream:?} must be an https:// URL"));
    }
    let mut cluster = ClusterConfig::new(&args.cluster, upstream);
    if let Some(path) = &args.upstream_ca {
        match std::fs::read(path) {
            Ok(pem) => cluster.ca_pem = Some(pem),
            Err(e) => errors.push(format!(
                "--upstream-ca: cannot read {}: {e}",
                path.display()
            )),
        }
    }
    if let Some(path) = &args.upstream_token_file {
        if let Err(e) = std::fs::metadata(path) {
            errors.push(format!(
                "--upstream-token-file: cannot read {}: {e}",
                path.display()
            ));
        }
        cluster.credential = UpstreamCredential::BearerTokenFile(path.clone());
    }
    if let Err(e) = cluster.check() {
        errors.push(format!("--upstream: {e}"));
    }
    let tls = match (&args.proxy_tls_cert, &args.proxy_tls_key) {
        (Some(cert), Some(key)) => ServerTls::from_files(cert, key),
        _ => ServerTls::self_signed(&args.data_dir, &args.proxy_tls_names),
    }
    .and_then(|tls| tls.server_config())
    .map_err(|e| errors.push(format!("--proxy-tls-cert: {e}")))
    .ok();
    Some(ProxyArgs {
        listen: listen?,
        upstream: cluster,
        tls: tls?,
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => s.split_at(at),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration like 90s, 5m or 1h")),
    };
    Ok(Duration::from_secs(secs))
}

pub(crate) fn run(args: SidecarArgs) -> ExitCode {
    crate::logging::init(None, crate::config::LogFormat::Text);
    let mut errors = Vec::new();
    let token = match (&args.token_file, &args.token) {
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            Ok(_) => {
                errors.push(format!("--token-file: {} is empty", path.display()));
                None
            }
            Err(e) => {
                errors.push(format!("--token-file: cannot read {}: {e}", path.display()));
                None
            }
        },
        (None, Some(t)) if !t.trim().is_empty() => Some(t.trim().to_owned()),
        _ => {
            errors.push(
                "--token-file (or --token, PADDOCK_SIDECAR_TOKEN): the cluster's registration token is required"
                    .to_owned(),
            );
            None
        }
    };
    if let Some(token) = &token {
        match token.split_once('.') {
            Some((id, _)) if id == args.cluster => {}
            Some((id, _)) if !id.is_empty() && !id.contains(':') => errors.push(format!(
                "--token: that is the registration token of cluster {id:?}, not of --cluster {:?}",
                args.cluster
            )),
            _ => errors.push(format!(
                "--token: not a registration token (`{}.<secret>`, printed by `paddock cluster token {}`)",
                args.cluster, args.cluster
            )),
        }
    }
    let ca = match &args.server_ca {
        Some(path) => match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                errors.push(format!("--server-ca: cannot read {}: {e}", path.display()));
                None
            }
        },
        None => None,
    };
    if !args.server.starts_with("https://") {
        errors.push(format!(
            "--server: {:?} must be an https:// URL",
            args.server
        ));
    }
    if args.cluster.is_empty() {
        errors.push("--cluster: must not be empty".to_owned());
    }
    let listen: Option<std::net::SocketAddr> = match args.listen.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errors.push(format!(
                "--listen: {:?} is not an address:port",
                args.listen
            ));
            None
        }
    };
    let proxy = proxy_args(&args, &mut errors);
    let outbound = OutboundProxy::from_env().unwrap_or_else(|e| {
        errors.push(e);
        OutboundProxy::default()
    });
    let (Some(token), Some(listen), true) = (token, listen, errors.is_empty()) else {
        eprintln!("paddock sidecar: invalid arguments:");
        for e in &errors {
            eprintln!("  {e}");
        }
        return ExitCode::from(crate::EXIT_CONFIG);
    };
    if !listen.ip().is_loopback() {
        tracing::warn!(%listen, "the webhook is plain HTTP: anyone who can reach this address can test tokens against it");
    }
    let mut options = SidecarOptions::new(
        &args.server,
        &args.cluster,
        SecretString::from(token),
        args.data_dir.clone(),
    );
    options.server_ca_pem = ca;
    options.token_file.clone_from(&args.token_file);
    options.max_staleness = args.max_staleness;
    options.proxy = outbound;
    let sidecar = match Sidecar::open(options) {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "sidecar cannot start");
            eprintln!("paddock sidecar: {error}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("paddock sidecar: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(error) => {
                eprintln!("paddock sidecar: cannot listen on {listen}: {error}");
                return ExitCode::FAILURE;
            }
        };
        // One signal, two servers.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            crate::serve::shutdown_signal().await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let proxy = match proxy {
            None => None,
            Some(proxy) => match serve_proxy(&sidecar, proxy, until_stopped(stopped.clone())).await {
                Ok(task) => Some(task),
                Err(message) => {
                    eprintln!("paddock sidecar: {message}");
                    return ExitCode::FAILURE;
                }
            },
        };
        let addr = listener.local_addr().map_or(listen, |a| a);
        tracing::info!(%addr, cluster.id = %args.cluster, server = %args.server, "sidecar listening");
        sidecar.serve(listener, until_stopped(stopped)).await;
        if let Some(proxy) = proxy {
            let _ = proxy.await;
        }
        tracing::info!("sidecar stopped");
        ExitCode::SUCCESS
    })
}

/// Binds the request path's listener and serves it until `stop`.
async fn serve_proxy(
    sidecar: &Sidecar,
    proxy: ProxyArgs,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let built = sidecar
        .proxy(proxy.upstream)
        .map_err(|e| format!("--upstream: {e}"))?;
    let tls = proxy.tls;
    let listener = tokio::net::TcpListener::bind(proxy.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", proxy.listen))?;
    let addr = listener.local_addr().map_or(proxy.listen, |a| a);
    tracing::info!(%addr, "sidecar proxy listening");
    Ok(tokio::spawn(async move {
        if let Err(error) = built.serve(listener, tls, stop).await {
            tracing::error!(%error, "the sidecar's request path stopped");
        }
    }))
}

// By hand: the token must never reach a Debug print.
impl std::fmt::Debug for SidecarArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SidecarArgs")
            .field("server", &self.server)
            .field("cluster", &self.cluster)
            .field("listen", &self.listen)
            .field("proxy_listen", &self.proxy_listen)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
    }
}
