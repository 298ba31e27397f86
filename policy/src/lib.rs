//! Paddock's policy: Kubernetes request attributes, RBAC rule matching and
//! Rancher's role model. Pure data and decisions: no I/O, no async.
