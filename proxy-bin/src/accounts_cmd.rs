//! `paddock user|token|kubeconfig`: the store's users and tokens from the
//! command line. They open the data directory's store directly, so they work
//! with the server stopped, and beside a running server (which notices the
//! change within a second).

use std::{
    io::{BufRead, IsTerminal},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use proxy_core::{
    accounts::{
        bindings::{NewBinding, NewScope, NewSubject},
        local, lookup, tokens,
        tokens::NewToken,
        Accounts,
    },
    server::tls::ServerTls,
    store::{Timestamp, TokenKind, User},
};
use secrecy::{ExposeSecret, SecretString};

use crate::bindings_cmd;
use crate::config::{Checked, Config};

/// Where the store is.
#[derive(Debug, clap::Args)]
pub(crate) struct StoreLocation {
    /// Paddock's data directory [default: dataDir of --config, else ./paddock-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Take dataDir from this configuration file.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Create a local user. The password is read from stdin (one line), or
    /// generated and printed when stdin is a terminal.
    Add {
        /// The login name.
        username: String,
        /// Human-readable name.
        #[arg(long, default_value = "")]
        display_name: String,
        /// Bind this global role (e.g. admin, user).
        #[arg(long)]
        global_role: Option<String>,
    },
    /// Set a user's password, read from stdin (one line).
    Passwd {
        /// Username or user id.
        user: String,
    },
    /// Disable a user: no login, and every token of theirs stops working.
    Disable {
        /// Username or user id.
        user: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Username or user id.
        user: String,
    },
    /// List users.
    List,
    /// Bind a role to a user: a global role, or a role template with
    /// --cluster or --project (a shortcut of `paddock binding create --user`).
    Bind {
        /// The user: id, <provider>/<login> (corp/jdoe, github/octocat,
        /// local/alice), principal id, or a local username.
        user: String,
        /// The global role, or the role template with --cluster or
        /// --project (e.g. cluster-owner, project-member).
        role: String,
        /// The cluster the role template applies in.
        #[arg(long, conflicts_with = "project")]
        cluster: Option<String>,
        /// The project the role template applies in: <cluster>:<project>.
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TokenCommand {
    /// Issue a token for a user and print it (the only time it is shown).
    Create {
        /// Username or user id.
        #[arg(long)]
        user: String,
        /// api (default) or kubeconfig.
        #[arg(long, default_value = "api")]
        kind: String,
        /// Lifetime in seconds (capped by the token policy).
        #[arg(long)]
        ttl_seconds: Option<u64>,
        /// Restrict the token to one cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Shown in listings.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens (ids and metadata, never secrets).
    List {
        /// Only this user's (username or id).
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke a token by id; the next request with it fails.
    Revoke {
        /// The token id (the part before ':').
        id: String,
    },
}

/// `paddock kubeconfig`: a kubeconfig for a user, with a fresh kubeconfig token.
#[derive(Debug, clap::Args)]
pub(crate) struct KubeconfigArgs {
    /// Username or user id.
    #[arg(long)]
    user: String,
    /// The cluster id.
    #[arg(long)]
    cluster: String,
    /// Paddock's URL as clients reach it.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    server: String,
}

impl StoreLocation {
    /// The store, with the password policy and token lifetimes of the
    /// configuration file when one is given.
    fn open(&self) -> Result<(Accounts, PathBuf), String> {
        let (accounts, config) = self.open_checked()?;
        Ok((accounts, config.data_dir))
    }

    /// The store and the checked configuration (the defaults without
    /// `--config`).
    pub(crate) fn open_checked(&self) -> Result<(Accounts, Checked), String> {
        let config = Config::for_data_dir(self.config.as_deref(), self.data_dir.as_deref())
            .map_err(|e| format!("invalid configuration:{e}"))?;
        let accounts = config
            .store
            .open_accounts(&config.data_dir, config.authentication.accounts.clone())
            .map_err(|e| e.to_string())?;
        Ok((accounts, config))
    }

    /// Whether a configuration file was given.
    pub(crate) fn has_config(&self) -> bool {
        self.config.is_some()
    }
}

pub(crate) fn finish(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("paddock: {error}");
            ExitCode::FAILURE
        }
    }
}

fn read_password() -> Result<SecretString, String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the password from stdin: {e}"))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("no password on stdin".to_owned());
    }
    Ok(SecretString::from(password))
}

/// The user `who` names: id, `<provider>/<login>`, principal id or local
/// username (see `proxy_core::accounts::lookup`).
fn resolve(accounts: &Accounts, who: &str) -> Result<User, String> {
    accounts
        .view()
        .with_snapshot(|s| lookup::resolve_user(s, who))
        .map_err(|e| e.to_string())
}

fn user_id(accounts: &Accounts, who: &str) -> Result<String, String> {
    resolve(accounts, who).map(|u| u.id)
}

pub(crate) fn user(location: &StoreLocation, command: UserCommand) -> ExitCode {
    finish((|| {
        let (accounts, config) = location.open_checked()?;
        let view = accounts.view();
        match command {
            UserCommand::Add {
                username,
                display_name,
                global_role,
            } => {
                let generated = std::io::stdin().is_terminal();
                let password = if generated {
                    SecretString::from(random_password())
                } else {
                    read_password()?
                };
                let user = local::add_user(
                    view,
                    accounts.password_hasher(),
                    accounts.password_policy(),
                    &username,
                    &display_name,
                    &password,
                    Timestamp::now(),
                )
                .map_err(|e| e.to_string())?;
                if let Some(role) = global_role {
                    let new = NewBinding {
                        subject: NewSubject::User(user.id.clone()),
                        role,
                        scope: NewScope::Global,
                    };
                    bindings_cmd::create(location, &accounts, &config, new)?;
                }
                println!("created user {} ({})", user.username, user.id);
                if generated {
                    println!("password: {}", password.expose_secret());
                }
                Ok(())
            }
            UserCommand::Passwd { user } => {
                let password = read_password()?;
                local::set_password(
                    view,
                    accounts.password_hasher(),
                    accounts.password_policy(),
                    &user_id(&accounts, &user)?,
                    &password,
                    None,
                    Timestamp::now(),
                )
                .map_err(|e| e.to_string())?;
                println!("password of {user} changed");
                Ok(())
            }
            UserCommand::Disable { user } => set_enabled(&accounts, &user, false),
            UserCommand::Enable { user } => set_enabled(&accounts, &user, true),
            UserCommand::List => {
                println!(
                    "{:<16} {:<24} {:<8} DISPLAY NAME",
                    "ID", "USERNAME", "ENABLED"
                );
                for user in local::list_users(view) {
                    println!(
                        "{:<16} {:<24} {:<8} {}",
                        user.id, user.username, user.enabled, user.display_name
                    );
                }
                Ok(())
            }
            UserCommand::Bind {
                user,
                role,
                cluster,
                project,
            } => {
                let new = NewBinding {
                    subject: NewSubject::User(user),
                    role,
                    scope: bindings_cmd::new_scope(cluster, project)?,
                };
                bindings_cmd::create(location, &accounts, &config, new)
            }
        }
    })())
}

fn set_enabled(accounts: &Accounts, user: &str, enable: bool) -> Result<(), String> {
    let id = user_id(accounts, user)?;
    let updated = local::set_enabled(accounts.view(), &id, enable).map_err(|e| e.to_string())?;
    let state = if enable { "enabled" } else { "disabled" };
    println!("user {} {state}", updated.username);
    Ok(())
}

fn random_password() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..24)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn token(location: &StoreLocation, command: TokenCommand) -> ExitCode {
    finish((|| {
        let (accounts, _) = location.open()?;
        match command {
            TokenCommand::Create {
                user,
                kind,
                ttl_seconds,
                cluster,
                description,
            } => {
                let kind = match kind.as_str() {
                    "api" => TokenKind::Api,
                    "kubeconfig" => TokenKind::Kubeconfig,
                    other => return Err(format!("--kind: {other:?} is not api or kubeconfig")),
                };
                let mut request =
                    NewToken::new(user_id(&accounts, &user)?, kind).description(description);
                if let Some(secs) = ttl_seconds {
                    request = request.ttl(Duration::from_secs(secs));
                }
                if let Some(cluster) = cluster {
                    request = request.cluster(cluster);
                }
                let issued = accounts.issue(request).map_err(|e| e.to_string())?;
                println!("{}", issued.token.expose_secret());
                Ok(())
            }
            TokenCommand::List { user } => {
                let owner = user.map(|u| user_id(&accounts, &u)).transpose()?;
                println!(
                    "{:<16} {:<16} {:<10} {:<10} {:<26} DESCRIPTION",
                    "ID", "USER", "KIND", "CLUSTER", "EXPIRES"
                );
                for token in tokens::list(accounts.view(), owner.as_deref()) {
                    println!(
                        "{:<16} {:<16} {:<10} {:<10} {:<26} {}",
                        token.id,
                        token.user_id,
                        token.kind.as_str(),
                        token.cluster.as_deref().unwrap_or("*"),
                        token
                            .expires_at
                            .map_or_else(|| "never".to_owned(), |t| t.to_string()),
                        token.description
                    );
                }
                Ok(())
            }
            TokenCommand::Revoke { id } => {
                if accounts.revoke(&id).map_err(|e| e.to_string())? {
                    println!("token {id} revoked");
                    Ok(())
                } else {
                    Err(format!("no token {id}"))
                }
            }
        }
    })())
}

pub(crate) fn kubeconfig(location: &StoreLocation, args: &KubeconfigArgs) -> ExitCode {
    finish((|| {
        let (accounts, dir) = location.open()?;
        let user = resolve(&accounts, &args.user)?;
        let request = NewToken::new(user.id.clone(), TokenKind::Kubeconfig)
            .cluster(args.cluster.clone())
            .description(format!("kubeconfig for cluster {} (CLI)", args.cluster));
        let issued = accounts.issue(request).map_err(|e| e.to_string())?;
        // The generated CA, when Paddock runs on its self-signed certificate.
        let ca = ServerTls::generated_ca_pem(&dir);
        print!(
            "{}",
            proxy_core::kubeconfig::render(
                &args.server,
                &args.cluster,
                &user.username,
                &issued.token,
                ca.as_deref(),
            )
        );
        Ok(())
    })())
}
