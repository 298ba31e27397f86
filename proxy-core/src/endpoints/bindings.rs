//! The admin API for role bindings and projects, authorized as Rancher's
//! `management.cattle.io` resources (`globalrolebindings`,
//! `clusterroletemplatebindings`, `projectroletemplatebindings`,
//! `projects`) in the management cluster:
//!
//! | request | what |
//! |---|---|
//! | `GET /paddock/v1/bindings` | the bindings of every kind the caller may list |
//! | `POST /paddock/v1/bindings` | `{"user"\|"group": …, "role": …, "cluster"?: …, "project"?: "<cluster>:<project>"}` |
//! | `DELETE /paddock/v1/bindings/<id>` | ends a binding (the policy reloads within a second) |
//! | `GET`, `POST /paddock/v1/projects` | lists, creates `{"cluster": …, "name": …, "namespaces"?: […]}` |
//! | `GET`, `DELETE /paddock/v1/projects/<id>` | one project; deletes one no binding uses |
//! | `POST /paddock/v1/projects/<id>/namespaces` | adds `{"namespace": …}` |
//! | `DELETE /paddock/v1/projects/<id>/namespaces/<ns>` | removes a namespace |
//!
//! The checks themselves live in [`crate::accounts::bindings`], shared with
//! the `paddock binding|project` commands.

use std::{collections::BTreeSet, sync::Arc};

use http::{request::Parts, Method, StatusCode};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{blocking, json, read_json, Endpoints};
use crate::{
    accounts::{
        bindings::{self, BindingError, Checks, NewBinding, NewScope, NewSubject},
        Accounts,
    },
    authn::Identity,
    authz::policy::PolicySource,
    body::RequestBody,
    context::RequestContext,
    error::ProxyError,
    request::ProxyResult,
    store::{BindingScope, Project, RoleBinding, Snapshot, StoreError},
};

/// The Rancher resource each scope's bindings are authorized as.
const GLOBAL: &str = "globalrolebindings";
const CLUSTER: &str = "clusterroletemplatebindings";
const PROJECT: &str = "projectroletemplatebindings";
const PROJECTS: &str = "projects";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewBindingBody {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    role: String,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewProjectBody {
    cluster: String,
    name: String,
    #[serde(default)]
    namespaces: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NamespaceBody {
    namespace: String,
}

/// One admin request under `bindings` or `projects`.
pub(super) struct Call<'a> {
    pub(super) endpoints: &'a Endpoints,
    pub(super) accounts: &'a Arc<Accounts>,
    pub(super) caller: &'a Identity,
    pub(super) context: &'a RequestContext,
}

impl Call<'_> {
    fn authorize(&self, verb: &str, resource: &str, name: Option<&str>) -> Result<(), ProxyError> {
        self.endpoints
            .authorize_admin(self.context, self.caller, verb, resource, name)
    }

    /// Answers `path` (the segments after `v1/`).
    pub(super) async fn handle(
        self,
        parts: &Parts,
        body: RequestBody,
        path: &[&str],
    ) -> ProxyResult {
        let view = self.accounts.view().clone();
        match (&parts.method, path) {
            (&Method::GET, ["bindings"]) => {
                let mut allowed = Vec::new();
                let mut denied = None;
                for resource in [GLOBAL, CLUSTER, PROJECT] {
                    match self.authorize("list", resource, None) {
                        Ok(()) => allowed.push(resource),
                        Err(e) => denied = Some(e),
                    }
                }
                if let (true, Some(denied)) = (allowed.is_empty(), denied) {
                    return Err(denied);
                }
                let items: Vec<Value> = view.with_snapshot(|snap| {
                    bindings::list_bindings(snap)
                        .iter()
                        .filter(|b| allowed.contains(&resource_of(&b.scope)))
                        .map(|b| binding_json(snap, b))
                        .collect()
                });
                Ok(json(StatusCode::OK, &json!({ "items": items })))
            }
            (&Method::POST, ["bindings"]) => {
                let new: NewBindingBody = read_json(body).await?;
                let new = new_binding(new)?;
                let resource = match new.scope {
                    NewScope::Global => GLOBAL,
                    NewScope::Cluster(_) => CLUSTER,
                    _ => PROJECT,
                };
                self.authorize("create", resource, None)?;
                // No escalation: granting a role takes `bind` on it, as
                // Kubernetes' RBAC asks of whoever creates a role binding
                // (admins have it; a delegate allowed to create bindings
                // grants only the roles they were given `bind` on).
                let roles = match new.scope {
                    NewScope::Global => "globalroles",
                    _ => "roletemplates",
                };
                self.authorize("bind", roles, Some(&new.role))?;
                let (source, clusters) = (self.policy_source(), self.clusters());
                let created = {
                    let view = view.clone();
                    blocking(move || {
                        let checks = Checks {
                            policy: &source,
                            clusters: Some(&clusters),
                        };
                        bindings::create_binding(&view, checks, new)
                    })
                    .await?
                    .map_err(|e| binding_error(e, false))?
                };
                tracing::info!(auth.user = %self.caller.user, binding.id = %created.id, binding.role = %created.role, "role binding created");
                let body = view.with_snapshot(|snap| binding_json(snap, &created));
                Ok(json(StatusCode::CREATED, &body))
            }
            (&Method::DELETE, ["bindings", id]) => {
                let scope =
                    view.with_snapshot(|s| s.role_binding(id).map(|b| b.value.scope.clone()));
                let resource = scope.as_ref().map_or(GLOBAL, resource_of);
                self.authorize("delete", resource, Some(id))?;
                let target = (*id).to_owned();
                let deleted = {
                    let view = view.clone();
                    blocking(move || bindings::delete_binding(&view, &target))
                        .await?
                        .map_err(|e| binding_error(e, true))?
                };
                tracing::info!(auth.user = %self.caller.user, binding.id = %deleted.id, "role binding deleted");
                let body = view.with_snapshot(|snap| binding_json(snap, &deleted));
                Ok(json(StatusCode::OK, &body))
            }
            (&Method::GET, ["projects"]) => {
                self.authorize("list", PROJECTS, None)?;
                let items: Vec<Value> = view
                    .with_snapshot(bindings::list_projects)
                    .iter()
                    .map(project_json)
                    .collect();
                Ok(json(StatusCode::OK, &json!({ "items": items })))
            }
            (&Method::POST, ["projects"]) => {
                self.authorize("create", PROJECTS, None)?;
                let new: NewProjectBody = read_json(body).await?;
                let (source, clusters) = (self.policy_source(), self.clusters());
                let project = blocking(move || {
                    let checks = Checks {
                        policy: &source,
                        clusters: Some(&clusters),
                    };
                    bindings::create_project(
                        &view,
                        checks,
                        &new.cluster,
                        &new.name,
                        &new.namespaces,
                    )
                })
                .await?
                .map_err(|e| binding_error(e, false))?;
                tracing::info!(auth.user = %self.caller.user, project.id = %project.id, "project created");
                Ok(json(StatusCode::CREATED, &project_json(&project)))
            }
            (&Method::GET, ["projects", id]) => {
                self.authorize("get", PROJECTS, Some(id))?;
                let project = view
                    .with_snapshot(|s| s.project(id).map(|p| p.value.clone()))
                    .ok_or_else(|| {
                        binding_error(BindingError::UnknownProject((*id).into()), true)
                    })?;
                Ok(json(StatusCode::OK, &project_json(&project)))
            }
            (&Method::DELETE, ["projects", id]) => {
                self.authorize("delete", PROJECTS, Some(id))?;
                let target = (*id).to_owned();
                let project = blocking(move || bindings::delete_project(&view, &target))
                    .await?
                    .map_err(|e| binding_error(e, true))?;
                tracing::info!(auth.user = %self.caller.user, project.id = %project.id, "project deleted");
                Ok(json(StatusCode::OK, &project_json(&project)))
            }
            (&Method::POST, ["projects", id, "namespaces"]) => {
                self.authorize("update", PROJECTS, Some(id))?;
                let add: NamespaceBody = read_json(body).await?;
                let target = (*id).to_owned();
                let project =
                    blocking(move || bindings::add_namespace(&view, &target, &add.namespace))
                        .await?
                        .map_err(|e| binding_error(e, true))?;
                tracing::info!(auth.user = %self.caller.user, project.id = %project.id, "namespace added to project");
                Ok(json(StatusCode::OK, &project_json(&project)))
            }
            (&Method::DELETE, ["projects", id, "namespaces", namespace]) => {
                self.authorize("update", PROJECTS, Some(id))?;
                let (target, namespace) = ((*id).to_owned(), (*namespace).to_owned());
                let project =
                    blocking(move || bindings::remove_namespace(&view, &target, &namespace))
                        .await?
                        .map_err(|e| binding_error(e, true))?;
                tracing::info!(auth.user = %self.caller.user, project.id = %project.id, "namespace removed from project");
                Ok(json(StatusCode::OK, &project_json(&project)))
            }
            _ => Err(ProxyError::NotFound {
                message: format!(
                    "{} {} is not a Paddock endpoint",
                    parts.method,
                    parts.uri.path()
                ),
            }),
        }
    }

    /// The policy new bindings must compile with: the one that decides
    /// Kubernetes requests when it is a policy, else the admin API's, else
    /// the built-in roles and the store's bindings.
    fn policy_source(&self) -> PolicySource {
        let config = self.endpoints.config();
        config
            .authorizer
            .policy_source()
            .or_else(|| config.admin_authorizer.policy_source())
            .map_or_else(
                || PolicySource {
                    store: Some(self.accounts.view().clone()),
                    management_cluster: Some(config.management_cluster.clone()),
                    ..PolicySource::default()
                },
                |source| (*source).clone(),
            )
    }

    /// The clusters Paddock serves, and the management cluster.
    fn clusters(&self) -> BTreeSet<String> {
        self.endpoints
            .router()
            .ids()
            .into_iter()
            .chain(std::iter::once(
                self.endpoints.config().management_cluster.clone(),
            ))
            .collect()
    }
}

fn new_binding(body: NewBindingBody) -> Result<NewBinding, ProxyError> {
    let bad = |message: &str| ProxyError::BadRequest {
        message: message.to_owned(),
    };
    let subject = match (body.user, body.group) {
        (Some(user), None) => NewSubject::User(user),
        (None, Some(group)) => NewSubject::Group(group),
        _ => return Err(bad("give exactly one of user and group")),
    };
    let scope = match (body.cluster, body.project) {
        (None, None) => NewScope::Global,
        (Some(cluster), None) => NewScope::Cluster(cluster),
        (None, Some(project)) => NewScope::project(&project).map_err(|e| binding_error(e, false))?,
        (Some(_), Some(_)) => {
            return Err(bad(
                "give at most one of cluster and project (a project names its cluster: <cluster>:<project>)",
            ))
        }
    };
    Ok(NewBinding {
        subject,
        role: body.role,
        scope,
    })
}

fn resource_of(scope: &BindingScope) -> &'static str {
    match scope {
        BindingScope::Global => GLOBAL,
        BindingScope::Cluster(_) => CLUSTER,
        BindingScope::Project(_) => PROJECT,
    }
}

/// The Kubernetes Status for a refused change. A missing binding or
/// project named by the path is 404; one named in the body is 400.
fn binding_error(error: BindingError, path_object: bool) -> ProxyError {
    let message = error.to_string();
    match error {
        BindingError::UnknownBinding(_) | BindingError::UnknownProject(_) if path_object => {
            ProxyError::NotFound { message }
        }
        BindingError::Store(StoreError::Conflict { .. }) => ProxyError::BadRequest {
            message: format!("{message}: changed by another request, try again"),
        },
        BindingError::Store(e) => ProxyError::from(e),
        _ => ProxyError::BadRequest { message },
    }
}

fn binding_json(snap: &Snapshot, binding: &RoleBinding) -> Value {
    let mut body = json!({
        "id": binding.id,
        "subjectKind": if binding.subject_is_group() { "group" } else { "user" },
        "subject": binding.subject,
        "subjectName": bindings::subject_name(snap, binding),
        "role": binding.role,
        "createdAt": binding.created_at.to_string(),
    });
    match &binding.scope {
        BindingScope::Global => body["scope"] = "global".into(),
        BindingScope::Cluster(cluster) => {
            body["scope"] = "cluster".into();
            body["cluster"] = cluster.clone().into();
        }
        BindingScope::Project(project) => {
            let cluster = snap
                .project(project)
                .map(|p| p.value.cluster_id.clone())
                .unwrap_or_default();
            body["scope"] = "project".into();
            body["cluster"] = cluster.clone().into();
            body["project"] = format!("{cluster}:{project}").into();
        }
    }
    body
}

fn project_json(project: &Project) -> Value {
    json!({
        "id": project.id,
        "cluster": project.cluster_id,
        "name": project.display_name,
        "namespaces": project.namespaces,
    })
}
