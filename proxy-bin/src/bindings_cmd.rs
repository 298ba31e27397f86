//! `paddock binding|project`: role bindings of users and groups, and
//! projects, in the data directory's store. The same checks as the admin
//! API (`proxy_core::accounts::bindings`): the role must exist at the
//! scope, with `--config` the cluster must be configured, and a duplicate
//! is refused. A running server picks a change up within two seconds.

use std::{collections::BTreeSet, process::ExitCode};

use proxy_core::{
    accounts::{
        bindings::{self, Checks, NewBinding, NewScope, NewSubject},
        Accounts,
    },
    authz::policy::PolicySource,
};

use crate::accounts_cmd::{finish, StoreLocation};
use crate::config::Checked;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum BindingCommand {
    /// Bind a role to a user or a group: a global role, or a role template
    /// with --cluster or --project.
    Create {
        /// The user: id, <provider>/<login> (corp/jdoe, github/octocat,
        /// local/alice), principal id, or a local username.
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        user: Option<String>,
        /// The group's principal id (openldap_group://…, activedirectory_group://…,
        /// github_team://…), as GET /paddock/v1/principals shows it.
        #[arg(long)]
        group: Option<String>,
        /// The global role, or the role template with --cluster or --project.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// List role bindings.
    List,
    /// Delete a role binding by id.
    Delete {
        /// The binding id (see `paddock binding list`).
        id: String,
    },
}

/// Where a binding applies: global unless one of these is given.
#[derive(Debug, clap::Args)]
pub(crate) struct ScopeArgs {
    /// Bind a cluster role template in this cluster.
    #[arg(long, conflicts_with = "project")]
    cluster: Option<String>,
    /// Bind a project role template in this project: <cluster>:<project id or name>.
    #[arg(long)]
    project: Option<String>,
}

impl ScopeArgs {
    fn scope(&self) -> Result<NewScope, String> {
        match (&self.cluster, &self.project) {
            (Some(cluster), _) => Ok(NewScope::Cluster(cluster.clone())),
            (None, Some(project)) => NewScope::project(project).map_err(|e| e.to_string()),
            (None, None) => Ok(NewScope::Global),
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ProjectCommand {
    /// Create a project: a named group of namespaces in one cluster.
    Create {
        /// The cluster.
        #[arg(long)]
        cluster: String,
        /// The project's name.
        name: String,
        /// A namespace of the project (repeatable).
        #[arg(long = "namespace")]
        namespaces: Vec<String>,
    },
    /// List projects.
    List,
    /// Delete a project no binding uses.
    Delete {
        /// The project: id, or <cluster>:<project id or name>.
        project: String,
    },
    /// Add a namespace to a project.
    AddNamespace {
        /// The project: id, or <cluster>:<project id or name>.
        project: String,
        /// The namespace.
        namespace: String,
    },
    /// Remove a namespace from a project.
    RemoveNamespace {
        /// The project: id, or <cluster>:<project id or name>.
        project: String,
        /// The namespace.
        namespace: String,
    },
}

/// The policy and clusters a change is checked against.
struct Context {
    policy: PolicySource,
    clusters: Option<BTreeSet<String>>,
}

impl Context {
    fn new(location: &StoreLocation, accounts: &Accounts, config: &Checked) -> Self {
        // Without a configuration file the clusters are unknown here.
        let clusters = location.has_config().then(|| {
            config
                .clusters
                .iter()
                .map(|c| c.config.id.clone())
                .chain(config.authorization.management_cluster.clone())
                .collect()
        });
        Self {
            policy: config
                .authorization
                .policy_source(Some(accounts.view().clone())),
            clusters,
        }
    }

    fn checks(&self) -> Checks<'_> {
        Checks {
            policy: &self.policy,
            clusters: self.clusters.as_ref(),
        }
    }
}

/// Creates a binding and says what it did; `paddock user bind` and `user
/// add --global-role` come here too.
pub(crate) fn create(
    location: &StoreLocation,
    accounts: &Accounts,
    config: &Checked,
    new: NewBinding,
) -> Result<(), String> {
    let context = Context::new(location, accounts, config);
    let binding = bindings::create_binding(accounts.view(), context.checks(), new)
        .map_err(|e| e.to_string())?;
    accounts.view().with_snapshot(|snap| {
        println!(
            "bound {} to {} at {} (binding {})",
            binding.role,
            bindings::subject_name(snap, &binding),
            bindings::scope_name(snap, &binding.scope),
            binding.id
        );
    });
    Ok(())
}

pub(crate) fn binding(location: &StoreLocation, command: BindingCommand) -> ExitCode {
    finish((|| {
        let (accounts, config) = location.open_checked()?;
        match command {
            BindingCommand::Create {
                user,
                group,
                role,
                scope,
            } => {
                let subject = match (user, group) {
                    (Some(user), _) => NewSubject::User(user),
                    (None, Some(group)) => NewSubject::Group(group),
                    (None, None) => return Err("give --user or --group".to_owned()),
                };
                let new = NewBinding {
                    subject,
                    role,
                    scope: scope.scope()?,
                };
                create(location, &accounts, &config, new)
            }
            BindingCommand::List => {
                println!(
                    "{:<20} {:<6} {:<32} {:<16} SCOPE",
                    "ID", "KIND", "SUBJECT", "ROLE"
                );
                accounts.view().with_snapshot(|snap| {
                    for b in bindings::list_bindings(snap) {
                        let kind = if b.subject_is_group() {
                            "group"
                        } else {
                            "user"
                        };
                        let subject = match bindings::subject_name(snap, &b) {
                            name if name == b.subject => name,
                            name => format!("{name} ({})", b.subject),
                        };
                        println!(
                            "{:<20} {:<6} {:<32} {:<16} {}",
                            b.id,
                            kind,
                            subject,
                            b.role,
                            bindings::scope_name(snap, &b.scope)
                        );
                    }
                });
                Ok(())
            }
            BindingCommand::Delete { id } => {
                let deleted =
                    bindings::delete_binding(accounts.view(), &id).map_err(|e| e.to_string())?;
                println!("binding {} deleted", deleted.id);
                Ok(())
            }
        }
    })())
}

pub(crate) fn project(location: &StoreLocation, command: ProjectCommand) -> ExitCode {
    finish((|| {
        let (accounts, config) = location.open_checked()?;
        let view = accounts.view();
        let find = |spec: &str| {
            view.with_snapshot(|snap| match spec.split_once(':') {
                Some((cluster, project)) => bindings::find_project(snap, Some(cluster), project),
                None => bindings::find_project(snap, None, spec),
            })
            .map_err(|e| e.to_string())
        };
        match command {
            ProjectCommand::Create {
                cluster,
                name,
                namespaces,
            } => {
                let context = Context::new(location, &accounts, &config);
                let project =
                    bindings::create_project(view, context.checks(), &cluster, &name, &namespaces)
                        .map_err(|e| e.to_string())?;
                println!(
                    "created project {} ({}:{})",
                    project.display_name, project.cluster_id, project.id
                );
                Ok(())
            }
            ProjectCommand::List => {
                println!("{:<12} {:<16} {:<24} NAMESPACES", "ID", "CLUSTER", "NAME");
                for p in view.with_snapshot(bindings::list_projects) {
                    println!(
                        "{:<12} {:<16} {:<24} {}",
                        p.id,
                        p.cluster_id,
                        p.display_name,
                        p.namespaces.join(",")
                    );
                }
                Ok(())
            }
            ProjectCommand::Delete { project } => {
                let id = find(&project)?.id;
                bindings::delete_project(view, &id).map_err(|e| e.to_string())?;
                println!("project {id} deleted");
                Ok(())
            }
            ProjectCommand::AddNamespace { project, namespace } => {
                let id = find(&project)?.id;
                bindings::add_namespace(view, &id, &namespace).map_err(|e| e.to_string())?;
                println!("namespace {namespace} added to project {id}");
                Ok(())
            }
            ProjectCommand::RemoveNamespace { project, namespace } => {
                let id = find(&project)?.id;
                bindings::remove_namespace(view, &id, &namespace).map_err(|e| e.to_string())?;
                println!("namespace {namespace} removed from project {id}");
                Ok(())
            }
        }
    })())
}

/// `scope` as the CLI's `--cluster`/`--project` would give it.
pub(crate) fn new_scope(
    cluster: Option<String>,
    project: Option<String>,
) -> Result<NewScope, String> {
    ScopeArgs { cluster, project }.scope()
}
