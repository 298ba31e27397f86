//! What one cluster's native RBAC should hold for Paddock's bindings: pure,
//! from a store snapshot and the compiled policy.
//!
//! | Paddock | native object (labelled [`MANAGED_BY_LABEL`]=[`MANAGED_BY`]) |
//! |---|---|
//! | role template `<rt>` bound in this cluster | ClusterRole `paddock-rt-<rt>`, the template's rules with inheritance resolved |
//! | cluster binding | ClusterRoleBinding `paddock-crb-<hash>` to `paddock-rt-<rt>` |
//! | project binding | a RoleBinding `paddock-rb-<hash>` to `paddock-rt-<rt>` in every namespace of the project |
//! | global binding to `admin` | ClusterRoleBinding `paddock-crb-<hash>` to `cluster-admin` |
//!
//! Subjects are named as the proxy path and the sidecar present callers:
//! users by their Paddock user id, groups by their principal id. A binding
//! to a user principal that has never logged in has no user id yet and is
//! skipped (reported), as is a binding to a template the policy does not
//! know. Binding names hash (namespace, role, subject), so a changed role
//! is a new object: `roleRef` is immutable downstream.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use crate::store::{BindingScope, RoleBinding as StoreBinding, Snapshot};

/// The label on every object Paddock writes; nothing without it is touched.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Its value.
pub const MANAGED_BY: &str = "paddock";
/// The store binding an object stands for.
pub const BINDING_LABEL: &str = "paddock.io/binding";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The desired objects for one cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    /// By name.
    pub cluster_roles: BTreeMap<String, ClusterRole>,
    /// By name.
    pub cluster_role_bindings: BTreeMap<String, ClusterRoleBinding>,
    /// By (namespace, name).
    pub role_bindings: BTreeMap<(String, String), RoleBinding>,
    /// Bindings that could not be written, and why.
    pub skipped: Vec<String>,
}

fn meta(name: &str, namespace: Option<&str>, binding: Option<&str>) -> ObjectMeta {
    let mut labels = BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned())]);
    if let Some(b) = binding {
        labels.insert(BINDING_LABEL.to_owned(), b.to_owned());
    }
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn some_vec(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

/// A policy rule as `rbac.authorization.k8s.io/v1` writes it (empty lists
/// omitted, as the API server returns them).
pub(super) fn native_rule(rule: &policy::PolicyRule) -> PolicyRule {
    PolicyRule {
        verbs: rule.verbs.clone(),
        api_groups: some_vec(&rule.api_groups),
        resources: some_vec(&rule.resources),
        resource_names: some_vec(&rule.resource_names),
        non_resource_urls: some_vec(&rule.non_resource_urls),
    }
}

/// The ClusterRole name for role template `rt`.
pub fn template_role_name(rt: &str) -> String {
    format!("paddock-rt-{rt}")
}

fn hash_name(prefix: &str, parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    format!("{prefix}-{}", &hex::encode(h.finalize())[..12])
}

/// The downstream subject of `binding`, or why there is none.
fn subject(snap: &Snapshot, binding: &StoreBinding) -> Result<Subject, String> {
    if binding.subject_is_group() {
        return Ok(Subject {
            kind: "Group".into(),
            api_group: Some(RBAC_GROUP.into()),
            name: binding.subject.clone(),
            namespace: None,
        });
    }
    let user_id = if snap.user(&binding.subject).is_some() {
        binding.subject.clone()
    } else {
        snap.users()
            .find(|u| u.value.principal_ids.contains(&binding.subject))
            .map(|u| u.value.id.clone())
            .ok_or_else(|| {
                format!(
                    "binding {}: user {} has not logged in yet (no user id to bind)",
                    binding.id, binding.subject
                )
            })?
    };
    Ok(Subject {
        kind: "User".into(),
        api_group: Some(RBAC_GROUP.into()),
        name: user_id,
        namespace: None,
    })
}

fn role_ref(name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.into()),
        kind: "ClusterRole".into(),
        name: name.to_owned(),
    }
}

/// Everything Paddock's bindings call for in `cluster`.
pub fn desired(snap: &Snapshot, policy: &policy::PolicySet, cluster: &str) -> Desired {
    let mut out = Desired::default();
    let mut bindings: Vec<&StoreBinding> = snap.role_bindings().map(|b| &b.value).collect();
    bindings.sort_by(|a, b| a.id.cmp(&b.id));
    for binding in bindings {
        let namespaces: Option<Vec<String>> = match &binding.scope {
            BindingScope::Global if binding.role == "admin" => None,
            BindingScope::Cluster(c) if c == cluster => None,
            BindingScope::Project(p) => match snap.project(p) {
                Some(project) if project.value.cluster_id == cluster => {
                    Some(project.value.namespaces.clone())
                }
                _ => continue,
            },
            _ => continue,
        };
        let subject = match subject(snap, binding) {
            Ok(s) => s,
            Err(why) => {
                out.skipped.push(why);
                continue;
            }
        };
        let role_name = if matches!(binding.scope, BindingScope::Global) {
            "cluster-admin".to_owned()
        } else {
            let Some((_, rules)) = policy.role_template(&binding.role) else {
                out.skipped.push(format!(
                    "binding {}: the policy has no role template {}",
                    binding.id, binding.role
                ));
                continue;
            };
            let name = template_role_name(&binding.role);
            out.cluster_roles
                .entry(name.clone())
                .or_insert_with(|| ClusterRole {
                    metadata: meta(&name, None, None),
                    rules: Some(rules.iter().map(native_rule).collect()),
                    aggregation_rule: None,
                });
            name
        };
        match namespaces {
            None => {
                let name = hash_name(
                    "paddock-crb",
                    &["", &role_name, &subject.kind, &subject.name],
                );
                out.cluster_role_bindings.insert(
                    name.clone(),
                    ClusterRoleBinding {
                        metadata: meta(&name, None, Some(&binding.id)),
                        role_ref: role_ref(&role_name),
                        subjects: Some(vec![subject]),
                    },
                );
            }
            Some(namespaces) => {
                for ns in namespaces {
                    let name = hash_name(
                        "paddock-rb",
                        &[&ns, &role_name, &subject.kind, &subject.name],
                    );
                    out.role_bindings.insert(
                        (ns.clone(), name.clone()),
                        RoleBinding {
                            metadata: meta(&name, Some(&ns), Some(&binding.id)),
                            role_ref: role_ref(&role_name),
                            subjects: Some(vec![subject.clone()]),
                        },
                    );
                }
            }
        }
    }
    out
}
