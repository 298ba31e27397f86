//! The RBAC authorizer: Kubernetes rule semantics with Rancher's role
//! model, from a directory of YAML files, swapped atomically on change.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use ::policy::{Decision, ImpersonationRequest, PolicySet, PolicySetBuilder, SubjectRef};
use arc_swap::ArcSwap;

use super::{Authorizer, AuthzRequest};
use crate::reload::{FileWatch, DEFAULT_POLL_INTERVAL};
use crate::store::{BindingScope, Project, Revision, RoleBinding, Snapshot, StoreView};

/// Why a policy directory could not be loaded: the file and, from the
/// policy crate, the document index and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyLoadError {
    /// A file or the directory could not be read.
    #[error("{path}: {message}")]
    Read {
        /// The file or directory.
        path: String,
        /// The I/O error.
        message: String,
    },
    /// The policy is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// Where policy comes from: a directory of YAML files, the role bindings
/// and projects created through the store, or both; and the management
/// cluster (whose id global roles' own rules apply to).
#[derive(Debug, Clone, Default)]
pub struct PolicySource {
    /// Directory of `*.yaml` / `*.yml` files (multi-document).
    pub dir: Option<PathBuf>,
    /// The store whose role bindings and projects join the files' objects.
    pub store: Option<Arc<StoreView>>,
    /// The management cluster's id, if any.
    pub management_cluster: Option<String>,
}

impl PolicySource {
    /// Policy from a directory only.
    pub fn dir(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(dir.into()),
            ..Self::default()
        }
    }

    /// Reads and compiles every YAML file in the directory, in name order,
    /// then the store's bindings and projects.
    pub fn load(&self) -> Result<PolicySet, PolicyLoadError> {
        let mut builder = PolicySet::builder();
        builder.management_cluster(self.management_cluster.as_deref());
        if let Some(dir) = &self.dir {
            add_dir(&mut builder, dir)?;
        }
        if let Some(store) = &self.store {
            let documents = store.with_snapshot(|snap| {
                store_documents(
                    snap.role_bindings().map(|b| &b.value),
                    snap.projects().map(|p| &p.value),
                )
            });
            builder
                .add_yaml("store", &documents)
                .map_err(|e| PolicyLoadError::Invalid(e.to_string()))?;
        }
        builder
            .build()
            .map_err(|e| PolicyLoadError::Invalid(e.to_string()))
    }

    /// Compiles the policy as it would be if the store held `bindings` and
    /// `projects` instead of its own: how a change is checked before it is
    /// committed, so that a binding the policy cannot compile (an unknown
    /// role, a template of the wrong context) never reaches the store.
    pub fn load_with(
        &self,
        bindings: &[RoleBinding],
        projects: &[Project],
    ) -> Result<PolicySet, ::policy::PolicyError> {
        let mut builder = PolicySet::builder();
        builder.management_cluster(self.management_cluster.as_deref());
        if let Some(dir) = &self.dir {
            // The directory is checked when it is loaded; here it only
            // contributes its roles, so an unreadable file is skipped.
            let _ = add_dir(&mut builder, dir);
        }
        builder.add_yaml("store", &store_documents(bindings.iter(), projects.iter()))?;
        builder.build()
    }
}

fn add_dir(builder: &mut PolicySetBuilder, dir: &Path) -> Result<(), PolicyLoadError> {
    let read_error = |path: &Path, e: std::io::Error| PolicyLoadError::Read {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_error(dir, e))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) && path.is_file()
        })
        .collect();
    files.sort();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| read_error(file, e))?;
        builder
            .add_yaml(&file.display().to_string(), &text)
            .map_err(|e| PolicyLoadError::Invalid(e.to_string()))?;
    }
    Ok(())
}

/// Role bindings and projects as Rancher objects (JSON documents, which
/// are YAML). A binding's subject is a user id (`u-...`, matched as
/// `userName`), a user principal id, or a group principal id.
fn store_documents<'a>(
    bindings: impl Iterator<Item = &'a RoleBinding>,
    projects: impl Iterator<Item = &'a Project>,
) -> String {
    use serde_json::{json, Map, Value};
    let mut documents = Vec::new();
    let mut clusters = std::collections::HashMap::new();
    for p in projects {
        clusters.insert(p.id.as_str(), p.cluster_id.as_str());
        documents.push(json!({
            "apiVersion": "management.cattle.io/v3", "kind": "Project",
            "metadata": {"name": p.id},
            "spec": {"clusterName": p.cluster_id, "namespaces": p.namespaces},
        }));
    }
    for b in bindings {
        let mut object = Map::new();
        object.insert("apiVersion".into(), json!("management.cattle.io/v3"));
        object.insert("metadata".into(), json!({"name": b.id}));
        let subject_field = if b.subject_is_group() {
            "groupPrincipalName"
        } else if b.subject.contains("://") {
            "userPrincipalName"
        } else {
            "userName"
        };
        object.insert(subject_field.into(), json!(b.subject));
        match &b.scope {
            BindingScope::Global => {
                object.insert("kind".into(), json!("GlobalRoleBinding"));
                object.insert("globalRoleName".into(), json!(b.role));
            }
            BindingScope::Cluster(cluster) => {
                object.insert("kind".into(), json!("ClusterRoleTemplateBinding"));
                object.insert("clusterName".into(), json!(cluster));
                object.insert("roleTemplateName".into(), json!(b.role));
            }
            BindingScope::Project(project) => {
                let cluster = clusters.get(project.as_str()).copied().unwrap_or_default();
                object.insert("kind".into(), json!("ProjectRoleTemplateBinding"));
                object.insert("projectName".into(), json!(format!("{cluster}:{project}")));
                object.insert("roleTemplateName".into(), json!(b.role));
            }
        }
        documents.push(Value::Object(object));
    }
    documents
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// What the store's part of the policy depends on: bindings and projects at
/// their revisions.
fn store_fingerprint(snap: &Snapshot) -> Vec<(String, Revision)> {
    snap.role_bindings()
        .map(|b| (b.value.id.clone(), b.revision))
        .chain(
            snap.projects()
                .map(|p| (format!("p/{}", p.value.id), p.revision)),
        )
        .collect()
}

/// How often the store's bindings are compared with the compiled policy's
/// (an in-memory look at the snapshot).
const STORE_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Decides with a compiled [`PolicySet`]; readers never wait for a reload.
#[derive(Clone)]
pub struct PolicyAuthorizer {
    set: Arc<ArcSwap<PolicySet>>,
    source: Option<Arc<PolicySource>>,
    _watch: Option<Arc<FileWatch>>,
    _store_watch: Option<Arc<AbortOnDrop>>,
}

/// Stops the store watch with the last authorizer clone.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for PolicyAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyAuthorizer")
            .field("stats", &self.set.load().stats())
            .finish_non_exhaustive()
    }
}

impl PolicyAuthorizer {
    /// A fixed policy.
    pub fn new(set: PolicySet) -> Self {
        Self {
            set: Arc::new(ArcSwap::from_pointee(set)),
            source: None,
            _watch: None,
            _store_watch: None,
        }
    }

    /// Loads `source` now (an error stops startup) and reloads it whenever
    /// a file in the directory or a binding or project in the store changes;
    /// a bad new version is logged with its file and document and the
    /// previous policy stays in force.
    pub fn watch(source: PolicySource) -> Result<Self, PolicyLoadError> {
        let mut authorizer = Self::new(source.load()?);
        let source = Arc::new(source);
        authorizer.source = Some(source.clone());
        let reload = {
            let (set, source) = (authorizer.set.clone(), source.clone());
            move || -> Result<(), String> {
                let new = source.load().map_err(|e| e.to_string())?;
                tracing::info!(stats = ?new.stats(), "policy reloaded");
                set.store(Arc::new(new));
                Ok(())
            }
        };
        if let Some(dir) = &source.dir {
            let reload = reload.clone();
            authorizer._watch = Some(Arc::new(FileWatch::spawn(
                dir.clone(),
                DEFAULT_POLL_INTERVAL,
                move |_| reload(),
            )));
        }
        if let Some(store) = &source.store {
            let store = Arc::downgrade(store);
            let task = tokio::spawn(async move {
                let mut last = None;
                let mut tick = tokio::time::interval(STORE_POLL_INTERVAL);
                loop {
                    tick.tick().await;
                    let Some(view) = store.upgrade() else { return };
                    let current = view.with_snapshot(store_fingerprint);
                    if last.as_ref() == Some(&current) {
                        continue;
                    }
                    if last.is_some() {
                        let reload = reload.clone();
                        let result = tokio::task::spawn_blocking(reload)
                            .await
                            .unwrap_or_else(|e| Err(e.to_string()));
                        if let Err(error) = result {
                            tracing::warn!(%error, "policy reload failed, keeping the previous policy");
                        }
                    }
                    last = Some(current);
                }
            });
            authorizer._store_watch = Some(Arc::new(AbortOnDrop(task)));
        }
        Ok(authorizer)
    }

    /// The policy in force.
    pub fn current(&self) -> Arc<PolicySet> {
        self.set.load_full()
    }
}

fn subject<'a>(request: &AuthzRequest<'a>) -> SubjectRef<'a> {
    SubjectRef {
        user: &request.identity.user,
        groups: &request.identity.groups,
    }
}

/// Decides `request` with `set`: every check the request needs (an
/// upgrade needs `create` as well as `get`) must pass. What
/// [`PolicyAuthorizer`] does, for any other holder of a compiled set.
pub fn decide(set: &PolicySet, request: &AuthzRequest<'_>) -> Decision {
    let checks = request.attributes.authorization_checks(request.upgrade);
    set.decide_all(subject(request), request.cluster, &checks)
}

/// Decides whether `request`'s identity may act as `requested` with `set`.
pub fn decide_impersonation(
    set: &PolicySet,
    request: &AuthzRequest<'_>,
    requested: &ImpersonationRequest,
) -> Decision {
    set.can_impersonate(subject(request), request.cluster, requested)
        .unwrap_or_else(|error| Decision {
            allowed: false,
            reason: error.to_string().into(),
        })
}

impl Authorizer for PolicyAuthorizer {
    fn policy_source(&self) -> Option<Arc<PolicySource>> {
        self.source.clone()
    }

    fn policy_set(&self) -> Option<Arc<PolicySet>> {
        Some(self.current())
    }

    fn authorize(&self, request: &AuthzRequest<'_>) -> Decision {
        decide(&self.set.load(), request)
    }

    fn authorize_impersonation(
        &self,
        request: &AuthzRequest<'_>,
        requested: &ImpersonationRequest,
    ) -> Decision {
        decide_impersonation(&self.set.load(), request, requested)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ::policy::RequestAttributes;

    use super::*;
    use crate::authn::Identity;

    const GRANT: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: alice-view}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}\nsubjects:\n- {kind: User, apiGroup: rbac.authorization.k8s.io, name: alice}\n";

    fn allowed(authorizer: &PolicyAuthorizer) -> bool {
        let identity = Identity {
            user: "alice".into(),
            groups: vec!["system:authenticated".into()],
            ..Identity::default()
        };
        let attributes =
            RequestAttributes::from_request("GET", "/api/v1/namespaces/default/pods", None)
                .unwrap();
        authorizer
            .authorize(&AuthzRequest {
                identity: &identity,
                cluster: "prod",
                attributes: &attributes,
                upgrade: false,
            })
            .allowed
    }

    async fn eventually(authorizer: &PolicyAuthorizer, expected: bool) -> bool {
        for _ in 0..60 {
            if allowed(authorizer) == expected {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    #[tokio::test]
    async fn reloads_on_change_and_keeps_the_old_policy_when_the_new_one_is_bad() {
        let dir = tempfile::tempdir().unwrap();
        let source = PolicySource::dir(dir.path());
        let authorizer = PolicyAuthorizer::watch(source).unwrap();
        assert!(!allowed(&authorizer), "empty policy denies");

        std::fs::write(dir.path().join("grant.yaml"), GRANT).unwrap();
        assert!(
            eventually(&authorizer, true).await,
            "the new binding was not picked up"
        );

        // A broken file anywhere in the directory keeps the policy in force.
        std::fs::write(
            dir.path().join("broken.yaml"),
            "kind: RoleBinding\nroleRef: [",
        )
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(allowed(&authorizer), "a bad file replaced the policy");

        std::fs::remove_file(dir.path().join("broken.yaml")).unwrap();
        std::fs::remove_file(dir.path().join("grant.yaml")).unwrap();
        assert!(
            eventually(&authorizer, false).await,
            "removing the binding did not revoke"
        );
    }

    #[test]
    fn a_bad_policy_at_startup_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: ClusterRoleBinding\nroleRef: {kind: ClusterRole, name: nope}\nmetadata: {name: x}\nsubjects: []\n").unwrap();
        let error = PolicySource::dir(dir.path()).load().unwrap_err();
        assert!(error.to_string().contains("bad.yaml"), "{error}");
    }
}
