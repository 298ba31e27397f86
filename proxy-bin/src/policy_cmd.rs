//! `paddock policy`: check a policy, and ask it questions the way
//! `kubectl auth can-i` does, without a running server.

use std::{path::PathBuf, process::ExitCode};

use policy::{RequestAttributes, Subject};
use proxy_core::authz::policy::PolicySource;

use crate::{
    config::{AuthorizationMode, Config},
    serve::policy_source,
    EXIT_CONFIG,
};

/// Where the policy comes from: a config file (its `authorization`
/// section) or a directory.
#[derive(Debug, clap::Args)]
pub(crate) struct PolicyLocation {
    /// Configuration file whose `authorization.policyDir` holds the policy.
    #[arg(long, conflicts_with = "policy_dir")]
    config: Option<PathBuf>,
    /// The policy directory itself.
    #[arg(long)]
    policy_dir: Option<PathBuf>,
    /// The management cluster's id (with --policy-dir).
    #[arg(long, requires = "policy_dir")]
    management_cluster: Option<String>,
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
        Ok((source, set)) => {
            let stats = set.stats();
            let origin = source.dir.as_deref().map_or_else(
                || "built-in roles".to_owned(),
                |dir| dir.display().to_string(),
            );
            println!("{origin}: valid ({stats:?})");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("paddock: invalid policy: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Prints yes or no (exit 0 or 1); with `explain`, the reason too.
pub(crate) fn ask(question: &Question, explain: bool) -> ExitCode {
    let (_, set) = match load(&question.location) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("paddock: invalid policy: {error}");
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
        .or_else(|| default_cluster(&question.location))
        .unwrap_or_else(|| "local".to_owned());
    let decision = set.decide(&subject, &cluster, &attributes);
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

fn load(location: &PolicyLocation) -> Result<(PolicySource, policy::PolicySet), String> {
    let source = match (&location.config, &location.policy_dir) {
        (Some(file), None) => {
            let config = Config::load(file).map_err(|e| format!("{}: {e}", file.display()))?;
            if config.authorization.mode != AuthorizationMode::Policy {
                return Err(format!(
                    "{}: authorization.mode is not policy",
                    file.display()
                ));
            }
            policy_source(&config.authorization)
        }
        (None, Some(dir)) => PolicySource {
            management_cluster: location.management_cluster.clone(),
            ..PolicySource::dir(dir)
        },
        _ => return Err("give --config or --policy-dir".to_owned()),
    };
    let set = source.load().map_err(|e| e.to_string())?;
    Ok((source, set))
}

fn default_cluster(location: &PolicyLocation) -> Option<String> {
    let config = Config::load(location.config.as_ref()?).ok()?;
    config
        .clusters
        .iter()
        .find(|c| c.default)
        .map(|c| c.id.clone())
}
