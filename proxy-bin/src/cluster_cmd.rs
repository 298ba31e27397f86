//! `paddock cluster add|list|remove|token|manifest`: clusters registered at
//! runtime, in the data directory's store. A running server routes an
//! added cluster, and stops routing a removed one, within two seconds;
//! clusters of the configuration file (with `--config`) are listed
//! read-only.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use proxy_core::{
    accounts::clusters::{self, NewCluster},
    agent::manifest::Manifest,
    store::{ClusterConnection, DirectEndpointRecord},
};
use secrecy::{ExposeSecret, SecretString};

use crate::accounts_cmd::{finish, StoreLocation};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ClusterCommand {
    /// Register a cluster: reached through an agent (the default; prints
    /// the agent's registration token, once), or directly with --server.
    Add {
        /// The id, as in /k8s/clusters/<id>.
        id: String,
        /// A human-readable name.
        #[arg(long, default_value = "")]
        display_name: String,
        /// A label, key=value (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
        /// Reach the API server directly at this https:// URL.
        #[arg(long)]
        server: Option<String>,
        /// CA bundle for --server.
        #[arg(long, requires = "server")]
        ca_file: Option<PathBuf>,
        /// Paddock's bearer token file for --server.
        #[arg(long, requires = "server")]
        token_file: Option<PathBuf>,
        /// The cluster's authorized cluster endpoint (an https:// URL where
        /// users reach its API server directly, authenticated by `paddock
        /// sidecar`): downloaded kubeconfigs gain a `<id>-direct` context.
        #[arg(long)]
        direct_endpoint: Option<String>,
        /// CA bundle users' kubectl trusts for --direct-endpoint.
        #[arg(long, requires = "direct_endpoint")]
        direct_endpoint_ca_file: Option<PathBuf>,
        /// Paddock's URL as the agent reaches it, for the printed command.
        #[arg(long, default_value = "https://127.0.0.1:8443")]
        paddock_url: String,
    },
    /// List clusters with their status.
    List,
    /// Unregister a cluster; its agent's tunnel is closed.
    Remove {
        /// The cluster id.
        id: String,
    },
    /// Issue a new registration token for a cluster (the old one stops
    /// working), or revoke it. Every cluster can have one, those of the
    /// configuration file included: its agent opens the tunnel with it, its
    /// sidecar reads the replica feed with it.
    Token {
        /// The cluster id.
        id: String,
        /// Revoke the token instead: no agent can connect and no sidecar
        /// read the feed until a new one is issued.
        #[arg(long)]
        revoke: bool,
        /// Paddock's URL as the agent and sidecar reach it, for the printed commands.
        #[arg(long, default_value = "https://127.0.0.1:8443")]
        paddock_url: String,
    },
    /// Print the Kubernetes manifest that installs the agent.
    Manifest {
        /// The cluster id.
        id: String,
        /// Paddock's URL as the agent reaches it.
        #[arg(long, default_value = "https://127.0.0.1:8443")]
        paddock_url: String,
        /// The agent's container image.
        #[arg(long, default_value = proxy_core::agent::DEFAULT_IMAGE)]
        image: String,
        /// A file holding the registration token, put into the manifest's Secret.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// The CA that signed Paddock's certificate, pinned by the agent.
        #[arg(long)]
        paddock_ca_file: Option<PathBuf>,
    },
}

pub(crate) fn cluster(location: &StoreLocation, command: ClusterCommand) -> ExitCode {
    finish(run(location, command))
}

fn run(location: &StoreLocation, command: ClusterCommand) -> Result<(), String> {
    let (accounts, config) = location.open_checked()?;
    let view = accounts.view();
    let configured: Vec<String> = config
        .clusters
        .iter()
        .map(|c| c.config.id.clone())
        .collect();
    match command {
        ClusterCommand::Add {
            id,
            display_name,
            labels,
            server,
            ca_file,
            token_file,
            direct_endpoint,
            direct_endpoint_ca_file,
            paddock_url,
        } => {
            let labels = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .ok_or_else(|| format!("--label {l:?}: expected key=value"))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()?;
            let connection = match server {
                Some(server) => ClusterConnection::Direct {
                    server,
                    ca_pem: ca_file
                        .map(|f| {
                            std::fs::read_to_string(&f)
                                .map_err(|e| format!("--ca-file {}: {e}", f.display()))
                        })
                        .transpose()?,
                    token_file,
                },
                None => ClusterConnection::Agent,
            };
            let direct_endpoint = direct_endpoint
                .map(|server| {
                    let ca_pem = direct_endpoint_ca_file
                        .map(|f| {
                            std::fs::read_to_string(&f).map_err(|e| {
                                format!("--direct-endpoint-ca-file {}: {e}", f.display())
                            })
                        })
                        .transpose()?;
                    Ok::<_, String>(DirectEndpointRecord { server, ca_pem })
                })
                .transpose()?;
            let new = NewCluster::agent(id)
                .display_name(display_name)
                .labels(labels)
                .connection(connection)
                .direct_endpoint(direct_endpoint);
            let registered = clusters::create(view, accounts.token_hasher(), new, &configured)
                .map_err(|e| e.to_string())?;
            println!(
                "cluster {} registered ({})",
                registered.cluster.id,
                registered.cluster.connection.kind()
            );
            if let Some(token) = registered.token {
                print_token(&registered.cluster.id, &token, &paddock_url);
            }
            Ok(())
        }
        ClusterCommand::List => {
            println!(
                "{:<24} {:<10} {:<10} {:<14} DISPLAY NAME",
                "ID", "SOURCE", "TYPE", "STATUS"
            );
            for id in &configured {
                println!(
                    "{id:<24} {:<10} {:<10} {:<14} {id}",
                    "config", "direct", "-"
                );
            }
            for cluster in view.with_snapshot(clusters::list) {
                let status = match (&cluster.connection, cluster.status.connected) {
                    (ClusterConnection::Agent, true) => "connected",
                    (ClusterConnection::Agent, false) => "disconnected",
                    _ => "-",
                };
                println!(
                    "{:<24} {:<10} {:<10} {:<14} {}",
                    cluster.id,
                    "store",
                    cluster.connection.kind(),
                    status,
                    cluster.display_name
                );
            }
            Ok(())
        }
        ClusterCommand::Remove { id } => {
            if configured.contains(&id) {
                return Err(format!(
                    "cluster {id:?} is defined in the configuration file: change it there"
                ));
            }
            clusters::delete(view, &id).map_err(|e| e.to_string())?;
            println!("cluster {id} removed");
            Ok(())
        }
        ClusterCommand::Token {
            id,
            revoke,
            paddock_url,
        } => {
            if revoke {
                clusters::revoke_token(view, &id, &configured).map_err(|e| e.to_string())?;
                println!("the registration token of cluster {id} is revoked");
            } else {
                let token = clusters::rotate_token(view, accounts.token_hasher(), &id, &configured)
                    .map_err(|e| match e {
                        clusters::ClusterError::NotFound(_) if !location.has_config() => {
                            format!("{e} (a cluster of the configuration file? pass --config)")
                        }
                        e => e.to_string(),
                    })?;
                let agent = !configured.contains(&id)
                    && view.with_snapshot(|s| {
                        clusters::get(s, &id)
                            .is_some_and(|c| matches!(c.connection, ClusterConnection::Agent))
                    });
                if agent {
                    print_token(&id, &token, &paddock_url);
                } else {
                    println!("registration token (shown once): {}", token.expose_secret());
                }
                println!(
                    "\nrun the sidecar next to the cluster's API server:\n  \
                     paddock sidecar --server {paddock_url} --cluster {id} --token-file <file with the token>"
                );
            }
            Ok(())
        }
        ClusterCommand::Manifest {
            id,
            paddock_url,
            image,
            token_file,
            paddock_ca_file,
        } => {
            if view.with_snapshot(|s| clusters::get(s, &id)).is_none() {
                return Err(format!("no registered cluster {id:?}"));
            }
            let token = token_file
                .map(|f| {
                    std::fs::read_to_string(&f)
                        .map(|t| SecretString::from(t.trim().to_owned()))
                        .map_err(|e| format!("--token-file {}: {e}", f.display()))
                })
                .transpose()?;
            let ca = paddock_ca_file
                .map(|f| {
                    std::fs::read(&f).map_err(|e| format!("--paddock-ca-file {}: {e}", f.display()))
                })
                .transpose()?;
            let mut manifest = Manifest::new(&paddock_url, &image);
            manifest.token = token.as_ref();
            manifest.ca_pem = ca.as_deref();
            print!("{}", manifest.render());
            Ok(())
        }
    }
}

fn print_token(id: &str, token: &SecretString, paddock_url: &str) {
    println!(
        "registration token (shown once): {}\n\nrun the agent where it reaches the cluster's API server:\n  \
         paddock agent --server {paddock_url} --token {}\n\nor install it in the cluster:\n  \
         paddock cluster manifest {id} --paddock-url {paddock_url} --token-file <file with the token> | kubectl apply -f -",
        token.expose_secret(),
        token.expose_secret(),
    );
}
