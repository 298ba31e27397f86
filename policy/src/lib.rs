//! Paddock's policy: Kubernetes request attributes, RBAC rule matching and
//! Rancher's role model. Pure data and decisions: no I/O, no async.
//!
//! - [`RequestAttributes::from_request`] resolves an HTTP request into what RBAC sees,
//!   exactly as kube-apiserver's `RequestInfoFactory` does (quirks included).
//! - [`PolicyRule::allows`] is Kubernetes' `RuleAllows`.
//! - [`PolicySet`] holds native RBAC objects (Role, ClusterRole with aggregation,
//!   RoleBinding, ClusterRoleBinding) and Rancher's model (GlobalRole,
//!   GlobalRoleBinding, RoleTemplate, ClusterRoleTemplateBinding,
//!   ProjectRoleTemplateBinding, Project), read from YAML with
//!   [`PolicySetBuilder::add_yaml`], plus the built-in roles, and answers
//!   [`PolicySet::decide`] with a [`Decision`] whose reason names the binding.
//! - [`PolicySet::can_impersonate`] authorises `kubectl --as` like the API server.
//! - [`forbidden_status`] is the 403 `metav1.Status` body carrying the reason.
//!
//! The crate has no features and no optional dependencies.

mod attributes;
mod builtin;
mod decision;
mod error;
mod hash;
mod impersonation;
mod model;
mod parse;
mod rule;
mod set;

pub use attributes::{parse_query, AttributesError, RequestAttributes};
/// The string type of [`RequestAttributes`]' path-derived fields: short values are
/// stored inline, so resolving a request does not allocate for them.
pub use compact_str::CompactString;
pub use decision::{forbidden_message, forbidden_status, Decision, Subject, SubjectRef};
pub use error::PolicyError;
pub use impersonation::{
    decode_extra_key, impersonated_groups, split_service_account, ImpersonationError,
    ImpersonationRequest,
};
pub use model::Location;
pub use rule::PolicyRule;
pub use set::{
    ClusterPolicy, PolicySet, PolicySetBuilder, PolicyStats, CLUSTER_ANNOTATION,
    DEFAULT_MANAGEMENT_CLUSTER, PROJECT_ANNOTATION,
};
