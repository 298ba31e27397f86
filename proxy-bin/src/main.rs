//! `paddock`: an authenticating reverse proxy for Kubernetes API servers.

// A command-line tool reports to stdout.
#![allow(clippy::print_stdout)]

mod accounts_cmd;
mod agent_cmd;
mod allocator;
mod bindings_cmd;
mod cluster_cmd;
mod config;
mod logging;
mod policy_cmd;
mod serve;
mod sidecar_cmd;
mod store_cmd;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::config::{AuthorizationMode, Config, ConfigErrors};

/// Exit code for invalid configuration (BSD `EX_USAGE`... `EX_DATAERR` is 65;
/// 64 is what operators script against).
const EXIT_CONFIG: u8 = 64;
/// Exit code when a service Paddock needs does not answer at start (etcd):
/// BSD `EX_UNAVAILABLE`.
const EXIT_UNAVAILABLE: u8 = 69;

#[derive(Debug, Parser)]
#[command(
    name = "paddock",
    version,
    about = "An authenticating reverse proxy for Kubernetes API servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default when no command is given).
    Serve(Box<ServeArgs>),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage users in the data directory's store.
    User {
        #[command(flatten)]
        location: accounts_cmd::StoreLocation,
        #[command(subcommand)]
        command: accounts_cmd::UserCommand,
    },
    /// Bind roles to users and groups (global, cluster or project scope).
    Binding {
        #[command(flatten)]
        location: accounts_cmd::StoreLocation,
        #[command(subcommand)]
        command: bindings_cmd::BindingCommand,
    },
    /// Create projects (named groups of namespaces) and change their namespaces.
    Project {
        #[command(flatten)]
        location: accounts_cmd::StoreLocation,
        #[command(subcommand)]
        command: bindings_cmd::ProjectCommand,
    },
    /// Register clusters (reached directly or through an agent), list and remove them.
    Cluster {
        #[command(flatten)]
        location: accounts_cmd::StoreLocation,
        #[command(subcommand)]
        command: cluster_cmd::ClusterCommand,
    },
    /// Run the cluster agent: dial out to Paddock and serve its requests
    /// to this cluster's API server.
    Agent(Box<agent_cmd::AgentArgs>),
    /// Issue, list and revoke Paddock tokens.
    Token {
        #[command(flatten)]
        location: accounts_cmd::StoreLocation,
        #[command(subcommand)]
        command: accounts_cmd::TokenCommand,
    },
    /// Print a kubeconfig for a user, with a fresh kubeconfig token.
    Kubeconfig {
        #[command(flatten)]
        location: accounts_cmd::StoreLocation,
        #[command(flatten)]
        args: accounts_cmd::KubeconfigArgs,
    },
    /// Copy a store into another (an embedded store into etcd, and back).
    Store {
        #[command(subcommand)]
        command: store_cmd::StoreCommand,
    },
    /// Run next to a downstream API server: its token-review webhook,
    /// authenticating the cluster's Paddock tokens from a local replica
    /// that keeps working while the center is down.
    Sidecar(Box<sidecar_cmd::SidecarArgs>),
    /// Check the authorization policy and ask it questions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate the policy: exit 0, or print the file, document and error and exit 64.
    Check(policy_cmd::PolicyLocation),
    /// Print yes or no (exit 0 or 1), like `kubectl auth can-i`.
    CanI(Box<policy_cmd::Question>),
    /// Print yes or no and the reason: which binding allows it, or what is missing.
    Explain(Box<policy_cmd::Question>),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration file as `serve` does: exit 0, or print every
    /// error with its key path and exit 64.
    Check {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Flags for the common settings; `--config` for everything else. Flags win over the file.
#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    /// Configuration file (YAML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8443].
    #[arg(long)]
    listen: Option<String>,
    /// Directory for Paddock's state [default: ./paddock-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Server certificate (PEM); a self-signed CA is generated when absent.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// CA for client certificates: enables client-certificate authentication.
    #[arg(long)]
    client_ca: Option<PathBuf>,
    /// The downstream API server URL (becomes the default cluster, id `default`).
    #[arg(long, conflicts_with = "kubeconfig")]
    upstream: Option<String>,
    /// CA bundle for --upstream.
    #[arg(long, requires = "upstream")]
    upstream_ca: Option<PathBuf>,
    /// Paddock's bearer token for --upstream, re-read when it changes.
    #[arg(long, requires = "upstream")]
    upstream_token_file: Option<PathBuf>,
    /// Allow an http:// --upstream: Paddock's token and the caller's
    /// identity then cross the network in clear.
    #[arg(long)]
    dangerous_upstream_allow_plaintext: bool,
    /// Take the downstream cluster from this kubeconfig.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: its current-context].
    #[arg(long, requires = "kubeconfig")]
    context: Option<String>,
    /// Static tokens in Kubernetes' --token-auth-file CSV format.
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// policy (default: built-in roles, the store's bindings, --policy-dir),
    /// allow-authenticated, or deny-all.
    #[arg(long)]
    authorization: Option<AuthorizationMode>,
    /// Directory of RBAC / Rancher policy YAML; implies --authorization policy.
    #[arg(long)]
    policy_dir: Option<PathBuf>,
    /// Store backend: embedded (the data directory's file) or etcd.
    #[arg(long, value_enum)]
    store: Option<StoreBackendArg>,
    /// etcd client URLs, comma-separated (with --store etcd).
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
}

/// `--store`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StoreBackendArg {
    Embedded,
    Etcd,
}

/// The soft open-file limit before and after [`raise_open_file_limit`].
#[derive(Debug)]
struct OpenFileLimit(std::io::Result<(u64, u64)>);

impl OpenFileLimit {
    /// Logs it (at debug; a failure at warn), once logging is set up.
    fn log(&self) {
        match &self.0 {
            Ok((before, after)) => tracing::debug!(
                before,
                after,
                "soft open-file limit (RLIMIT_NOFILE) raised to the hard limit"
            ),
            Err(error) => tracing::warn!(%error, "cannot raise the open-file limit"),
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit: each client connection
/// is a file descriptor, and the usual soft default (1024) is far below
/// what a proxy serving watches needs.
fn raise_open_file_limit() -> OpenFileLimit {
    OpenFileLimit(
        rlimit::getrlimit(rlimit::Resource::NOFILE).and_then(|(before, _)| {
            rlimit::increase_nofile_limit(u64::MAX).map(|after| (before, after))
        }),
    )
}

fn main() -> ExitCode {
    let open_files = raise_open_file_limit();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(Box::default()));
    if matches!(
        command,
        Command::Serve(_) | Command::Agent(_) | Command::Sidecar(_)
    ) {
        allocator::purge_while_idle();
    }
    match command {
        Command::Config {
            command: ConfigCommand::Check { config },
        } => match serve::with_environment(Config::load(&config)) {
            Ok((checked, _)) => {
                println!(
                    "{}: valid ({} cluster(s), authorization {:?})",
                    config.display(),
                    checked.clusters.len(),
                    checked.authorization.mode
                );
                ExitCode::SUCCESS
            }
            Err(errors) => config_invalid(&errors),
        },
        Command::Serve(args) => serve::run(*args, &open_files),
        Command::User { location, command } => accounts_cmd::user(&location, command),
        Command::Binding { location, command } => bindings_cmd::binding(&location, command),
        Command::Project { location, command } => bindings_cmd::project(&location, command),
        Command::Token { location, command } => accounts_cmd::token(&location, command),
        Command::Cluster { location, command } => cluster_cmd::cluster(&location, command),
        Command::Agent(args) => agent_cmd::run(*args),
        Command::Kubeconfig { location, args } => accounts_cmd::kubeconfig(&location, &args),
        Command::Store { command } => store_cmd::run(command),
        Command::Sidecar(args) => sidecar_cmd::run(*args),
        Command::Policy { command } => match command {
            PolicyCommand::Check(location) => policy_cmd::check(&location),
            PolicyCommand::CanI(question) => policy_cmd::ask(&question, false),
            PolicyCommand::Explain(question) => policy_cmd::ask(&question, true),
        },
    }
}

/// Reports an invalid configuration the same way for every command: one
/// error per line, each with its key path; exit 64.
fn config_invalid(errors: &ConfigErrors) -> ExitCode {
    eprintln!("paddock: invalid configuration:{errors}");
    ExitCode::from(EXIT_CONFIG)
}
