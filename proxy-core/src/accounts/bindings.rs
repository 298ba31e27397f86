//! Role bindings and projects in the store, as the admin API and the
//! `paddock binding|project` commands write them.
//!
//! A binding gives a user or a group a role at one scope, as Rancher's
//! objects do:
//!
//! | scope | role | Rancher object |
//! |---|---|---|
//! | global | a global role (`admin`, `user`, …) | `GlobalRoleBinding` |
//! | cluster | a role template of context `cluster` | `ClusterRoleTemplateBinding` |
//! | project | a role template of context `project` | `ProjectRoleTemplateBinding` |
//!
//! Nothing reaches the store that the policy cannot compile: each change
//! is compiled first, with the policy directory and the store's other
//! bindings and projects ([`PolicySource::load_with`]), so an unknown role
//! or a template of the wrong context is refused by name, and the running
//! authorizer never meets a binding it has to reject. The authorizer picks
//! a committed change up within a second, two when another process
//! committed it (see [`crate::authz::policy`]).

use std::collections::BTreeSet;

use super::lookup::{resolve_user, user_id_for_principal, LookupError};
use crate::{
    authn::{
        external::user_id_for,
        tokens::{os_random_string, ID_ALPHABET},
    },
    authz::policy::PolicySource,
    store::{
        BindingScope, Expect, Key, Kind, Object, Op, Project, RoleBinding, Snapshot, StoreError,
        StoreView, SubjectKind, Timestamp,
    },
};

/// Who a new binding is for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NewSubject {
    /// A user, in any spelling [`resolve_user`] accepts, or a user
    /// principal id (also before that user's first login).
    User(String),
    /// A group principal id, as `GET /paddock/v1/principals` finds it
    /// (`openldap_group://…`, `activedirectory_group://…`, `github_team://…`).
    Group(String),
}

/// Where a new binding applies.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NewScope {
    /// Everywhere (a global role).
    Global,
    /// One cluster, by id.
    Cluster(String),
    /// One project: its cluster, and its id or name there.
    Project {
        /// The cluster id.
        cluster: String,
        /// The project's id or display name.
        project: String,
    },
}

impl NewScope {
    /// Parses `<cluster>:<project>` (Rancher's project name format).
    pub fn project(spec: &str) -> Result<Self, BindingError> {
        match spec.split_once(':') {
            Some((cluster, project)) if !cluster.is_empty() && !project.is_empty() => {
                Ok(NewScope::Project {
                    cluster: cluster.to_owned(),
                    project: project.to_owned(),
                })
            }
            _ => Err(BindingError::Invalid(format!(
                "project {spec:?} is not <cluster>:<project>"
            ))),
        }
    }
}

/// A binding to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBinding {
    /// The user or group.
    pub subject: NewSubject,
    /// The global role or role template.
    pub role: String,
    /// Where it applies.
    pub scope: NewScope,
}

/// What a change is checked against besides the store.
#[derive(Debug, Clone, Copy)]
pub struct Checks<'a> {
    /// The policy the binding joins (its directory and management cluster).
    pub policy: &'a PolicySource,
    /// The clusters a binding or project may name; `None` when the caller
    /// cannot know them (the CLI without a configuration file).
    pub clusters: Option<&'a BTreeSet<String>>,
}

/// Why a binding or project change was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The user named is unknown or ambiguous.
    #[error(transparent)]
    User(#[from] LookupError),
    /// A group subject that is not a group principal id.
    #[error(
        "group {0:?} is not a group principal id (openldap_group://…, \
         activedirectory_group://…, github_team://…, github_org://…): \
         find one with GET /paddock/v1/principals"
    )]
    NotAGroup(String),
    /// The role does not exist at that scope, or is locked.
    #[error("role {role:?}: {reason}")]
    InvalidRole {
        /// The role as given.
        role: String,
        /// What the policy says.
        reason: String,
    },
    /// The cluster is not one Paddock serves.
    #[error("no cluster {0:?}")]
    UnknownCluster(String),
    /// No such project.
    #[error("no project {0:?}")]
    UnknownProject(String),
    /// No such binding.
    #[error("no binding {0:?}")]
    UnknownBinding(String),
    /// The same thing exists already.
    #[error("{0}")]
    Duplicate(String),
    /// A malformed name, or a change that would leave the store inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The store failed, or another writer changed the same object first.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every binding, in id order.
pub fn list_bindings(snap: &Snapshot) -> Vec<RoleBinding> {
    snap.role_bindings().map(|b| b.value.clone()).collect()
}

/// A binding's subject as people read it: the user's name (with the
/// provider for a directory user) or the group's display name when a
/// provider reported one, else the id.
pub fn subject_name(snap: &Snapshot, binding: &RoleBinding) -> String {
    if binding.subject_is_group() {
        return snap
            .users()
            .filter_map(|u| snap.user_attributes(&u.value.id))
            .find_map(|a| {
                a.value
                    .group_names
                    .values()
                    .find_map(|names| names.get(&binding.subject).cloned())
            })
            .unwrap_or_else(|| binding.subject.clone());
    }
    snap.user(&binding.subject)
        .map_or_else(|| binding.subject.clone(), |u| u.value.username.clone())
}

/// The scope as `global`, `cluster <id>` or `project <cluster>:<id>`.
pub fn scope_name(snap: &Snapshot, scope: &BindingScope) -> String {
    match scope {
        BindingScope::Global => "global".to_owned(),
        BindingScope::Cluster(c) => format!("cluster {c}"),
        BindingScope::Project(p) => {
            let cluster = snap
                .project(p)
                .map(|p| p.value.cluster_id.clone())
                .unwrap_or_default();
            format!("project {cluster}:{p}")
        }
    }
}

/// Creates a binding after checking its subject, scope and role; refuses
/// one that grants what an existing binding already does. Blocking.
pub fn create_binding(
    view: &StoreView,
    checks: Checks<'_>,
    new: NewBinding,
) -> Result<RoleBinding, BindingError> {
    let (binding, bindings, projects) = view.with_snapshot(|snap| {
        let (subject, subject_kind) = match &new.subject {
            NewSubject::User(who) if who.contains("://") => {
                (user_id_for_principal(snap, who), SubjectKind::User)
            }
            NewSubject::User(who) => (resolve_user(snap, who)?.id, SubjectKind::User),
            NewSubject::Group(id) if is_group_principal(id) => (id.clone(), SubjectKind::Group),
            NewSubject::Group(id) => return Err(BindingError::NotAGroup(id.clone())),
        };
        let scope = match &new.scope {
            NewScope::Global => BindingScope::Global,
            NewScope::Cluster(cluster) => {
                known_cluster(checks, cluster)?;
                BindingScope::Cluster(cluster.clone())
            }
            NewScope::Project { cluster, project } => {
                BindingScope::Project(find_project(snap, Some(cluster), project)?.id)
            }
        };
        if new.role.is_empty() {
            return Err(BindingError::Invalid("role: required".to_owned()));
        }
        let binding = RoleBinding {
            id: binding_id(&subject, subject_kind, &new.role, &scope),
            subject,
            subject_kind,
            role: new.role.clone(),
            scope,
            created_at: Timestamp::now(),
        };
        if let Some(existing) = snap
            .role_bindings()
            .find(|b| same_grant(&b.value, &binding))
        {
            return Err(BindingError::Duplicate(format!(
                "{} already has role {} at {} (binding {})",
                subject_name(snap, &binding),
                binding.role,
                scope_name(snap, &binding.scope),
                existing.value.id
            )));
        }
        let mut bindings = list_bindings(snap);
        bindings.push(binding.clone());
        Ok((binding, bindings, list_projects(snap)))
    })?;
    if let Err(error) = checks.policy.load_with(&bindings, &projects) {
        return Err(BindingError::InvalidRole {
            role: binding.role,
            reason: role_problem(&binding.scope, &error),
        });
    }
    let op = Op::put(Object::RoleBinding(binding.clone()), Expect::Absent);
    match view.commit(vec![op]) {
        Ok(_) => Ok(binding),
        Err(StoreError::Conflict { .. }) => Err(BindingError::Duplicate(format!(
            "binding {} exists already",
            binding.id
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a binding; the access it granted ends when the authorizer
/// reloads (within a second). Blocking.
pub fn delete_binding(view: &StoreView, id: &str) -> Result<RoleBinding, BindingError> {
    let Some((binding, revision)) =
        view.with_snapshot(|s| s.role_binding(id).map(|b| (b.value.clone(), b.revision)))
    else {
        return Err(BindingError::UnknownBinding(id.to_owned()));
    };
    view.commit(vec![Op::delete(
        Key::new(Kind::RoleBinding, id),
        Expect::Revision(revision),
    )])?;
    Ok(binding)
}

/// Every project, in id order.
pub fn list_projects(snap: &Snapshot) -> Vec<Project> {
    snap.projects().map(|p| p.value.clone()).collect()
}

/// The project `name_or_id` (in `cluster`, when given).
pub fn find_project(
    snap: &Snapshot,
    cluster: Option<&str>,
    name_or_id: &str,
) -> Result<Project, BindingError> {
    let in_cluster = |p: &Project| cluster.is_none_or(|c| p.cluster_id == c);
    if let Some(p) = snap.project(name_or_id).filter(|p| in_cluster(&p.value)) {
        return Ok(p.value.clone());
    }
    let mut named = snap
        .projects()
        .filter(|p| in_cluster(&p.value) && p.value.display_name == name_or_id);
    match (named.next(), named.next()) {
        (Some(p), None) => Ok(p.value.clone()),
        (Some(_), Some(_)) => Err(BindingError::Invalid(format!(
            "several projects are named {name_or_id:?}: give the project id"
        ))),
        (None, _) => Err(BindingError::UnknownProject(match cluster {
            Some(c) => format!("{c}:{name_or_id}"),
            None => name_or_id.to_owned(),
        })),
    }
}

/// Creates a project in `cluster` named `name` holding `namespaces`;
/// its id is generated (`p-…`). Blocking.
pub fn create_project(
    view: &StoreView,
    checks: Checks<'_>,
    cluster: &str,
    name: &str,
    namespaces: &[String],
) -> Result<Project, BindingError> {
    known_cluster(checks, cluster)?;
    if name.is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
        return Err(BindingError::Invalid(format!(
            "project name {name:?}: 1 to 253 printable characters"
        )));
    }
    let project = view.with_snapshot(|snap| {
        if snap
            .projects()
            .any(|p| p.value.cluster_id == cluster && p.value.display_name == name)
        {
            return Err(BindingError::Duplicate(format!(
                "cluster {cluster} has a project named {name:?} already"
            )));
        }
        let mut project = Project {
            id: format!("p-{}", os_random_string(ID_ALPHABET, 8)),
            cluster_id: cluster.to_owned(),
            display_name: name.to_owned(),
            namespaces: Vec::new(),
        };
        for namespace in namespaces {
            check_namespace_free(snap, &project, namespace)?;
            project.namespaces.push(namespace.clone());
        }
        Ok(project)
    })?;
    let op = Op::put(Object::Project(project.clone()), Expect::Absent);
    view.commit(vec![op])?;
    Ok(project)
}

/// Deletes a project that no binding refers to. Blocking.
pub fn delete_project(view: &StoreView, id: &str) -> Result<Project, BindingError> {
    let (project, revision) = view.with_snapshot(|snap| {
        let entry = snap
            .project(id)
            .ok_or_else(|| BindingError::UnknownProject(id.to_owned()))?;
        let users: Vec<String> = snap
            .role_bindings()
            .filter(|b| b.value.scope == BindingScope::Project(id.to_owned()))
            .map(|b| b.value.id.clone())
            .collect();
        if !users.is_empty() {
            return Err(BindingError::Invalid(format!(
                "project {id} is used by bindings {}: delete them first",
                users.join(", ")
            )));
        }
        Ok((entry.value.clone(), entry.revision))
    })?;
    view.commit(vec![Op::delete(
        Key::new(Kind::Project, id),
        Expect::Revision(revision),
    )])?;
    Ok(project)
}

/// Adds a namespace to a project; a namespace belongs to at most one
/// project of its cluster, as in Rancher. Blocking.
pub fn add_namespace(view: &StoreView, id: &str, namespace: &str) -> Result<Project, BindingError> {
    update_project(view, id, |snap, project| {
        check_namespace_free(snap, project, namespace)?;
        project.namespaces.push(namespace.to_owned());
        Ok(())
    })
}

/// Removes a namespace from a project. Blocking.
pub fn remove_namespace(
    view: &StoreView,
    id: &str,
    namespace: &str,
) -> Result<Project, BindingError> {
    update_project(view, id, |_, project| {
        let before = project.namespaces.len();
        project.namespaces.retain(|n| n != namespace);
        if project.namespaces.len() == before {
            return Err(BindingError::Invalid(format!(
                "namespace {namespace} is not in project {}",
                project.id
            )));
        }
        Ok(())
    })
}

fn update_project(
    view: &StoreView,
    id: &str,
    change: impl FnOnce(&Snapshot, &mut Project) -> Result<(), BindingError>,
) -> Result<Project, BindingError> {
    let (project, revision) = view.with_snapshot(|snap| {
        let entry = snap
            .project(id)
            .ok_or_else(|| BindingError::UnknownProject(id.to_owned()))?;
        let mut project = entry.value.clone();
        change(snap, &mut project)?;
        Ok::<_, BindingError>((project, entry.revision))
    })?;
    let op = Op::put(Object::Project(project.clone()), Expect::Revision(revision));
    view.commit(vec![op])?;
    Ok(project)
}

fn check_namespace_free(
    snap: &Snapshot,
    project: &Project,
    namespace: &str,
) -> Result<(), BindingError> {
    if !is_dns_label(namespace) {
        return Err(BindingError::Invalid(format!(
            "namespace {namespace:?} is not a valid name (RFC 1123 label: lower-case \
             letters, digits and '-', at most 63)"
        )));
    }
    if project.namespaces.iter().any(|n| n == namespace) {
        return Err(BindingError::Duplicate(format!(
            "namespace {namespace} is in project {} already",
            project.id
        )));
    }
    if let Some(other) = snap.projects().find(|p| {
        p.value.id != project.id
            && p.value.cluster_id == project.cluster_id
            && p.value.namespaces.iter().any(|n| n == namespace)
    }) {
        return Err(BindingError::Duplicate(format!(
            "namespace {namespace} of cluster {} is in project {} already",
            project.cluster_id, other.value.id
        )));
    }
    Ok(())
}

fn known_cluster(checks: Checks<'_>, cluster: &str) -> Result<(), BindingError> {
    match checks.clusters {
        Some(known) if !known.contains(cluster) => {
            Err(BindingError::UnknownCluster(cluster.to_owned()))
        }
        _ => Ok(()),
    }
}

/// A group principal id: `<provider>_group://…`, `github_team://…`,
/// `github_org://…`.
fn is_group_principal(id: &str) -> bool {
    id.split_once("://").is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && (scheme.ends_with("_group") || matches!(scheme, "github_team" | "github_org"))
    })
}

/// Kubernetes' namespace names (RFC 1123 labels, `IsDNS1123Label` in
/// k8s.io/apimachinery `pkg/util/validation/validation.go`).
fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn same_grant(a: &RoleBinding, b: &RoleBinding) -> bool {
    a.subject == b.subject
        && a.subject_is_group() == b.subject_is_group()
        && a.role == b.role
        && a.scope == b.scope
}

/// A stable id from what the binding grants (`grb-`, `crtb-`, `prtb-` and
/// ten base32 characters of a SHA-256), so two concurrent creations of the
/// same binding collide in the store instead of both succeeding.
fn binding_id(subject: &str, kind: SubjectKind, role: &str, scope: &BindingScope) -> String {
    let (prefix, scope_id) = match scope {
        BindingScope::Global => ("grb", ""),
        BindingScope::Cluster(c) => ("crtb", c.as_str()),
        BindingScope::Project(p) => ("prtb", p.as_str()),
    };
    let kind = if kind == SubjectKind::Group {
        "group"
    } else {
        "user"
    };
    // The same digest-to-id derivation as a user id from a principal id.
    let digest = user_id_for(&format!("{kind}\0{subject}\0{role}\0{prefix}\0{scope_id}"));
    format!("{prefix}-{}", digest.trim_start_matches("u-"))
}

/// What is wrong with the role, from the policy's compile error; the
/// error's location (the store document) is dropped, its reason kept.
fn role_problem(scope: &BindingScope, error: &::policy::PolicyError) -> String {
    let expected = match scope {
        BindingScope::Global => "a global role",
        BindingScope::Cluster(_) => "a role template of context cluster",
        _ => "a role template of context project",
    };
    let text = error.to_string();
    let reason = text.rsplit_once(": ").map_or(text.as_str(), |(_, r)| r);
    format!("{reason} (this scope takes {expected})")
}

#[cfg(test)]
mod tests;
