//! The roles Paddock always ships, written out as the YAML objects they are upstream:
//! Kubernetes' `cluster-admin`, `admin`, `edit`, `view` (with the
//! `system:aggregate-to-*` roles they aggregate) and the discovery roles bound to
//! `system:authenticated`; Rancher's global roles `admin`, `user`, `user-base` and
//! role templates `cluster-owner`, `cluster-member`, `project-owner`,
//! `project-member`, `read-only` plus the Kubernetes roles as external templates.
//!
//! The text is compiled into the binary (`include_str!`), so no file is read at run
//! time. Sources: Kubernetes
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`, Rancher
//! `pkg/data/management/role_data.go` (summarised in `docs/facts.md` §4).

/// The origin name of built-in objects in error messages and reasons.
pub(crate) const ORIGIN: &str = "<built-in>";

/// Kubernetes' bootstrap roles and bindings.
pub(crate) const KUBERNETES: &str = include_str!("builtin/kubernetes.yaml");

/// Rancher's built-in global roles and role templates.
pub(crate) const RANCHER: &str = include_str!("builtin/rancher.yaml");
