//! Native Kubernetes RBAC objects (`rbac.authorization.k8s.io/v1`) and the bits of
//! `Namespace` that tie a namespace to a Rancher project.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ObjectMeta;
use crate::rule::PolicyRule;

/// `Role`: rules usable by RoleBindings in its namespace.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Role {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) rules: Vec<PolicyRule>,
}

/// `ClusterRole`, possibly aggregated from other ClusterRoles by label.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterRole {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) rules: Vec<PolicyRule>,
    #[serde(default)]
    pub(crate) aggregation_rule: Option<AggregationRule>,
}

/// `AggregationRule`: the union of every ClusterRole any selector matches.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AggregationRule {
    #[serde(default)]
    pub(crate) cluster_role_selectors: Vec<LabelSelector>,
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LabelSelector {
    #[serde(default)]
    pub(crate) match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct LabelSelectorRequirement {
    pub(crate) key: String,
    pub(crate) operator: String,
    #[serde(default)]
    pub(crate) values: Vec<String>,
}

impl LabelSelector {
    /// `metav1.LabelSelectorAsSelector` semantics: all terms must hold; an empty
    /// selector matches everything. Unknown operators are rejected at load.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|req| {
                let value = labels.get(&req.key);
                match req.operator.as_str() {
                    "In" => value.is_some_and(|v| req.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !req.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// The first invalid operator, if any.
    pub(crate) fn invalid_operator(&self) -> Option<&str> {
        self.match_expressions
            .iter()
            .map(|r| r.operator.as_str())
            .find(|op| !matches!(*op, "In" | "NotIn" | "Exists" | "DoesNotExist"))
    }
}

/// `RoleBinding` or `ClusterRoleBinding`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Binding {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) subjects: Vec<Subject>,
    pub(crate) role_ref: RoleRef,
}

/// `rbacv1.Subject`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Subject {
    pub(crate) kind: String,
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) namespace: String,
}

/// `rbacv1.RoleRef`.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct RoleRef {
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// A `v1` `Namespace`; only its project annotation matters here.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Namespace {
    pub(crate) metadata: ObjectMeta,
}
