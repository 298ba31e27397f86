//! What the RBAC sync reports about each cluster: the outcome of its last
//! pass and totals since Paddock started. Shown by
//! `GET /paddock/v1/clusters/<id>` (`status.rbacSync`) and the cluster's
//! health view, handed to the plugins after every pass
//! ([`Event::RbacSync`](crate::events::Event::RbacSync)): the metrics
//! plugin exports it, the alert plugin fires when a cluster's sync keeps
//! failing.

use std::{
    any::Any,
    collections::BTreeMap,
    sync::{Arc, PoisonError, RwLock},
};

use serde::{Serialize, Serializer};

use crate::store::{Revision, Timestamp};

/// What one pass changed in one cluster, and what failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Report {
    /// Objects created.
    pub created: u64,
    /// Objects replaced because they drifted or the bindings changed.
    pub updated: u64,
    /// Objects deleted.
    pub deleted: u64,
    /// Of the writes above, those that put back what an earlier pass had
    /// already written: an object deleted or edited by hand, or a stray
    /// object carrying Paddock's label removed. Counted from the second
    /// pass of a process on (the first has nothing to compare with).
    pub drift_repaired: u64,
    /// Objects that could not be written, and why.
    pub errors: Vec<String>,
}

impl Report {
    /// Objects created, updated or deleted.
    pub fn written(&self) -> u64 {
        self.created + self.updated + self.deleted
    }
}

/// One cluster's RBAC sync: its last pass, and totals since Paddock started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ClusterStatus {
    /// The cluster's id.
    pub cluster: String,
    /// When the last pass ended.
    #[serde(serialize_with = "rfc3339")]
    pub last_attempt: Option<Timestamp>,
    /// When a pass last ended without any error.
    #[serde(serialize_with = "rfc3339")]
    pub last_success: Option<Timestamp>,
    /// When the passes started failing (the first failed pass after a
    /// success, or after Paddock started); `None` while they succeed.
    #[serde(serialize_with = "rfc3339")]
    pub failing_since: Option<Timestamp>,
    /// The last pass's failure: the cluster could not be read, or the first
    /// object it could not write. `None` after a pass without error.
    pub last_error: Option<String>,
    /// The store revision the last pass worked from.
    pub revision: Revision,
    /// Passes run, and how many of them failed.
    pub passes: u64,
    /// Passes that failed.
    pub failed_passes: u64,
    /// Objects created, updated or deleted since Paddock started.
    pub objects_written: u64,
    /// Drift repaired since Paddock started (see [`Report::drift_repaired`]).
    pub drift_repaired: u64,
    /// What the last pass changed.
    pub last_pass: Report,
    /// Bindings the last pass could not express, and why (a user who never
    /// logged in, a role template the policy does not know).
    pub skipped: Vec<String>,
}

impl ClusterStatus {
    /// A cluster not synchronised yet.
    // Written by the sync, which needs the `kube` feature.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub(crate) fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            ..Self::default()
        }
    }

    /// Whether the last pass failed.
    pub fn failing(&self) -> bool {
        self.failing_since.is_some()
    }

    /// Records a pass that ended at `now`: `report` when the cluster could
    /// be read, `Err` with why not.
    // Written by the sync, which needs the `kube` feature.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub(crate) fn record(
        &mut self,
        now: Timestamp,
        revision: Revision,
        outcome: Result<&Report, &str>,
    ) {
        self.last_attempt = Some(now);
        self.revision = revision;
        self.passes += 1;
        let error = match outcome {
            Ok(report) => {
                self.objects_written += report.written();
                self.drift_repaired += report.drift_repaired;
                self.last_pass = report.clone();
                match report.errors.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    [first, rest @ ..] => Some(format!("{first} (and {} more)", rest.len())),
                }
            }
            Err(error) => {
                self.last_pass = Report::default();
                Some(error.to_owned())
            }
        };
        match error {
            None => {
                self.last_success = Some(now);
                self.failing_since = None;
            }
            Some(_) => {
                self.failed_passes += 1;
                self.failing_since.get_or_insert(now);
            }
        }
        self.last_error = error;
    }
}

/// Every synchronised cluster's status, as the sync last wrote it: what
/// the endpoints read. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub(crate) struct Board(Arc<RwLock<BTreeMap<String, Arc<ClusterStatus>>>>);

impl Board {
    /// Cluster `id`'s status, if it is synchronised.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<ClusterStatus>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Every synchronised cluster's status, by id.
    pub(crate) fn all(&self) -> BTreeMap<String, Arc<ClusterStatus>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    // Written by the sync, which needs the `kube` feature.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub(crate) fn set(&self, status: Arc<ClusterStatus>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(status.cluster.clone(), status);
    }

    /// Forgets `id`; whether it was there.
    // Written by the sync, which needs the `kube` feature.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub(crate) fn remove(&self, id: &str) -> bool {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some()
    }
}

/// A sync running with a proxy, as the endpoints see it: its statuses,
/// and the sync itself, which runs as long as the proxy's service lives.
#[derive(Clone)]
pub(crate) struct Running {
    /// The statuses.
    pub(crate) board: Board,
    _sync: Arc<dyn Any + Send + Sync>,
}

impl Running {
    // Written by the sync, which needs the `kube` feature.
    #[cfg_attr(not(feature = "kube"), allow(dead_code))]
    pub(crate) fn new(board: Board, sync: Arc<dyn Any + Send + Sync>) -> Self {
        Self { board, _sync: sync }
    }
}

fn rfc3339<S: Serializer>(at: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
    match at {
        Some(at) => serializer.collect_str(at),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_kept_until_a_pass_succeeds() {
        let mut status = ClusterStatus::new("prod");
        let t = |s: i64| Timestamp(1_700_000_000 + s);
        status.record(t(0), Revision(1), Err("connection refused"));
        status.record(
            t(60),
            Revision(1),
            Ok(&Report {
                created: 2,
                errors: vec!["create a: forbidden".into(), "create b: forbidden".into()],
                ..Report::default()
            }),
        );
        assert_eq!(status.failing_since, Some(t(0)));
        assert_eq!(
            status.last_error.as_deref(),
            Some("create a: forbidden (and 1 more)")
        );
        assert_eq!((status.passes, status.failed_passes), (2, 2));
        assert_eq!(status.last_success, None);
        status.record(
            t(120),
            Revision(2),
            Ok(&Report {
                updated: 1,
                drift_repaired: 1,
                ..Report::default()
            }),
        );
        assert!(!status.failing());
        assert_eq!(status.last_error, None);
        assert_eq!(status.last_success, Some(t(120)));
        assert_eq!((status.objects_written, status.drift_repaired), (3, 1));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["lastSuccess"], "2023-11-14T22:15:20Z");
        assert_eq!(json["failingSince"], serde_json::Value::Null);
        assert_eq!(json["lastPass"]["driftRepaired"], 1);
    }
}
