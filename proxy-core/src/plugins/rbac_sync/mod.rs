//! RBAC sync: Paddock's bindings written into each downstream cluster as
//! native `ClusterRole`/`ClusterRoleBinding`/`RoleBinding` objects, so the
//! API server reaches the decisions Paddock's policy reaches for callers
//! who come straight to it through the authorized cluster endpoint
//! (`paddock sidecar`). What is written: [`desired`].
//!
//! Level-triggered: every pass computes the whole desired set from the
//! store's snapshot and the compiled policy and makes the cluster's
//! labelled objects equal to it ([`Report`]), so a missed change, a
//! restart or an object edited or deleted by hand is repaired by the next
//! pass. Passes run every `interval`, as soon as the store changes, and at
//! once for a cluster that appears. Each cluster's passes run on their
//! own, and each call, headers and body, ends within the cluster's request
//! timeout: a cluster that stalls mid-answer fails its pass and holds back
//! no other cluster's.
//!
//! Which clusters: given to a proxy
//! ([`ProxyBuilder::rbac_sync`](crate::ProxyBuilder::rbac_sync)), every
//! cluster the proxy routes to (or [`RbacSync::only`] some), configured or
//! registered in the store while Paddock runs, followed as the routing
//! table changes; a removed cluster is forgotten. Each is reached through
//! the proxy's own upstream client for it, so a cluster behind an agent
//! tunnel is synchronised exactly like a direct one; the agent's
//! credential (not Paddock's) then needs the rights to write RBAC objects
//! (`escalate` and `bind` on ClusterRoles, or `cluster-admin`).
//!
//! Never silent: each cluster's [`ClusterStatus`] (last success, last
//! error, failing since, objects written, drift repaired) is shown by
//! `GET /paddock/v1/clusters/<id>` and the cluster's health view, every
//! pass is an [`Event::RbacSync`](crate::events::Event::RbacSync) (the
//! metrics plugin exports it, the alert plugin's `rbac_sync_failing` rule
//! fires when a cluster keeps failing), and every failure is logged at warn.

#[cfg(feature = "kube")]
mod apply;
#[cfg(feature = "kube")]
mod client;
#[cfg(feature = "kube")]
pub mod desired;
mod status;
#[cfg(feature = "kube")]
mod sync;

#[cfg(feature = "kube")]
pub use desired::{Desired, BINDING_LABEL, MANAGED_BY, MANAGED_BY_LABEL};
pub(crate) use status::Running;
pub use status::{ClusterStatus, Report};
#[cfg(feature = "kube")]
pub use sync::{CurrentPolicy, RbacSync, SyncError};
