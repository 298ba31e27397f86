//! Rancher's role model (`management.cattle.io/v3`): GlobalRole, GlobalRoleBinding,
//! RoleTemplate, ClusterRoleTemplateBinding, ProjectRoleTemplateBinding, Project.
//! Field names follow Rancher's `authz_types.go`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ObjectMeta;
use crate::rule::PolicyRule;

/// `GlobalRole`: rules for the management cluster, and role templates inherited in
/// every downstream cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GlobalRole {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) rules: Vec<PolicyRule>,
    #[serde(default)]
    pub(crate) inherited_cluster_roles: Vec<String>,
    #[serde(default)]
    pub(crate) namespaced_rules: BTreeMap<String, Vec<PolicyRule>>,
}

/// `GlobalRoleBinding`: exactly one of the three subject fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GlobalRoleBinding {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) user_name: String,
    #[serde(default)]
    pub(crate) user_principal_name: String,
    #[serde(default)]
    pub(crate) group_principal_name: String,
    pub(crate) global_role_name: String,
}

/// `RoleTemplate`, of context `cluster` or `project`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoleTemplate {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) rules: Vec<PolicyRule>,
    #[serde(default)]
    pub(crate) context: String,
    #[serde(default)]
    pub(crate) role_template_names: Vec<String>,
    #[serde(default)]
    pub(crate) locked: bool,
    /// Use the ClusterRole of the same name instead of `rules`.
    #[serde(default)]
    pub(crate) external: bool,
}

/// The subject fields shared by CRTBs and PRTBs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RtbSubject {
    #[serde(default)]
    pub(crate) user_name: String,
    #[serde(default)]
    pub(crate) user_principal_name: String,
    #[serde(default)]
    pub(crate) group_name: String,
    #[serde(default)]
    pub(crate) group_principal_name: String,
    /// PRTB only: `namespace:name`.
    #[serde(default)]
    pub(crate) service_account: String,
}

/// `ClusterRoleTemplateBinding`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClusterRoleTemplateBinding {
    pub(crate) metadata: ObjectMeta,
    #[serde(flatten)]
    pub(crate) subject: RtbSubject,
    #[serde(default)]
    pub(crate) cluster_name: String,
    pub(crate) role_template_name: String,
}

/// `ProjectRoleTemplateBinding`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectRoleTemplateBinding {
    pub(crate) metadata: ObjectMeta,
    #[serde(flatten)]
    pub(crate) subject: RtbSubject,
    /// `<clusterID>:<projectID>`.
    pub(crate) project_name: String,
    pub(crate) role_template_name: String,
}

/// `Project`: `metadata.name` is the project id, `metadata.namespace` or
/// `spec.clusterName` the cluster; `spec.namespaces` is Paddock's way to list the
/// project's namespaces in the same file (Rancher's namespace annotation
/// `field.cattle.io/projectId` on `Namespace` objects works too).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Project {
    pub(crate) metadata: ObjectMeta,
    #[serde(default)]
    pub(crate) spec: ProjectSpec,
}

/// `Project.spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProjectSpec {
    #[serde(default)]
    pub(crate) cluster_name: String,
    #[serde(default)]
    pub(crate) namespaces: Vec<String>,
}
