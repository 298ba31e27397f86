//! `paddock policy`: check the policy, and ask it questions the way
//! `kubectl auth can-i` does, without a running server. The policy is the
//! one `serve` enforces: the built-in roles, the policy directory, and the
//! role bindings and projects in the data directory's store.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use policy::{RequestAttributes, Subject};
use proxy_core::accounts::Accounts;

use crate::{
    config::{AuthorizationMode, Checked, Config},
    EXIT_CONFIG,
};

/// Where the policy comes from: a config file (its `authorization` section
/// and `dataDir`), a policy directory, and the data directory's store.
#[derive(Debug, clap::Args)]
pub(crate) struct PolicyLocation {
    /// Configuration file: its authorization section, dataDir and default cluster.
    #[arg(long, conflicts_with = "policy_dir")]
    config: Option<PathBuf>,
    /// The policy directory (instead of --config's policyDir).
    #[arg(long)]
    policy_dir: Option<PathBuf>,
    /// The management cluster's id (with --policy-dir).
    #[arg(long, requires = "policy_dir")]
    management_cluster: Option<String>,
    /// Paddock's data directory, whose store's role bindings and projects are
    /// part of the policy [default: dataDir of --config, else ./paddock-data
    /// when it holds a store].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// A question for the policy, in `kubectl auth can-i` form.
#[derive(Debug, clap::Args)]
pub(crate) struct Question {
    #[command(flatten)]
    location: PolicyLocation,
    /// The user's principal id.
    #[arg(long)]
    user: String,
    /// A group principal id (repeatable); system:authenticated is always added.
    #[arg(long = "group")]
    groups: Vec<String>,
    /// The cluster [default: the config's default cluster, else "local"].
    #[arg(long)]
    cluster: Option<String>,
    /// The namespace.
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// The verb, e.g. get, list, create, impersonate.
    verb: String,
    /// RESOURCE[.GROUP][/SUBRESOURCE] (plural, as in the URL), or a non-resource URL starting with '/'.
    resource: String,
    /// The object's name.
    name: Option<String>,
}

pub(crate) fn check(location: &PolicyLocation) -> ExitCode {
    match load(location) {
        Ok(effective) => {
            let origin = effective
                .config
                .authorization
                .policy_dir
                .as_deref()
                .map_or_else(
                    || "built-in roles".to_owned(),
                    |dir| dir.display().to_string(),
                );
            let store = if effective.store {
                " and the store's bindings"
            } else {
                ""
            };
            println!("{origin}{store}: valid ({:?})", effective.set.stats());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("paddock: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Prints yes or no (exit 0 or 1); with `explain`, the reason too.
pub(crate) fn ask(question: &Question, explain: bool) -> ExitCode {
    let effective = match load(&question.location) {
        Ok(effective) => effective,
        Err(error) => {
            eprintln!("paddock: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let attributes = attributes(question);
    let mut subject = Subject::new(&question.user, &question.groups);
    if !subject.groups.iter().any(|g| g == "system:authenticated") {
        subject.groups.push("system:authenticated".to_owned());
    }
    let cluster = question
        .cluster
        .clone()
        .or_else(|| effective.config.default_cluster().map(str::to_owned))
        .unwrap_or_else(|| "local".to_owned());
    let mut decision = effective.set.decide(&subject, &cluster, &attributes);
    if !decision.allowed && question.user.contains("://") {
        // The proxy presents a provider's user (`oidc_user://…`,
        // `github_user://…`) as its Paddock user id: ask as that one too.
        subject.user = match &effective.accounts {
            Some(accounts) => accounts.view().with_snapshot(|snap| {
                proxy_core::accounts::lookup::user_id_for_principal(snap, &question.user)
            }),
            None => proxy_core::authn::external::user_id_for(&question.user),
        };
        decision = effective.set.decide(&subject, &cluster, &attributes);
    }
    println!("{}", if decision.allowed { "yes" } else { "no" });
    if explain {
        println!("{}", decision.reason);
    }
    if decision.allowed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn attributes(question: &Question) -> RequestAttributes {
    if question.resource.starts_with('/') {
        return RequestAttributes::non_resource_request(&question.verb, &question.resource);
    }
    let (resource, subresource) = question
        .resource
        .split_once('/')
        .unwrap_or((&question.resource, ""));
    let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
    RequestAttributes::resource_request(&question.verb, group, resource)
        .with_subresource(subresource)
        .with_namespace(question.namespace.as_deref().unwrap_or(""))
        .with_name(question.name.as_deref().unwrap_or(""))
}

/// The checked configuration and the policy compiled from it.
struct Effective {
    config: Checked,
    set: policy::PolicySet,
    /// Whether a store's bindings are part of the policy.
    store: bool,
    /// The store, when there is one.
    accounts: Option<Accounts>,
}

/// The configuration (the file, with the flags over it), checked as `serve`
/// checks it, and the policy `serve` would enforce with it.
fn load(location: &PolicyLocation) -> Result<Effective, String> {
    let mut config = match &location.config {
        Some(file) => Config::read(file).map_err(|e| format!("invalid configuration:{e}"))?,
        None => Config::default(),
    };
    if let Some(dir) = &location.data_dir {
        config.data_dir = Some(dir.clone());
    }
    if let Some(dir) = &location.policy_dir {
        config.authorization.mode = AuthorizationMode::Policy;
        config.authorization.policy_dir = Some(dir.clone());
        config.authorization.management_cluster = location.management_cluster.clone();
    }
    // A data directory named on the command line or in the file must hold a store.
    let explicit = config.data_dir.is_some();
    let config = config
        .check()
        .map_err(|e| format!("invalid configuration:{e}"))?;
    if config.authorization.mode != AuthorizationMode::Policy {
        return Err(format!(
            "authorization mode is {:?}, not policy: there is no policy to ask",
            config.authorization.mode
        ));
    }
    let store = open_store(&config, explicit)?;
    let has_store = store.is_some();
    let set = config
        .authorization
        .policy_source(store.as_ref().map(|accounts| accounts.view().clone()))
        .load()
        .map_err(|e| format!("invalid policy: {e}"))?;
    Ok(Effective {
        config,
        set,
        store: has_store,
        accounts: store,
    })
}

/// The data directory's store, when it has one. A data directory that was
/// named must have one; the default one is used when present.
/// Never creates a store.
fn open_store(config: &Checked, explicit: bool) -> Result<Option<Accounts>, String> {
    let dir: &Path = &config.data_dir;
    if config.store.etcd.is_some() {
        return config
            .store
            .open_accounts(dir, config.authentication.accounts.clone())
            .map(Some)
            .map_err(|e| e.to_string());
    }
    if !dir
        .join(proxy_core::store::EmbeddedStore::FILE_NAME)
        .exists()
    {
        return if explicit {
            Err(format!("no Paddock store in {}", dir.display()))
        } else {
            Ok(None)
        };
    }
    Accounts::open(dir, config.authentication.accounts.clone())
        .map(Some)
        .map_err(|e| e.to_string())
}
