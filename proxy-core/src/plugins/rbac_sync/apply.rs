//! Making one cluster's labelled RBAC objects equal to the desired set,
//! with the `kube` crate: list what carries Paddock's label, create what is
//! missing, replace what drifted (with its `resourceVersion`, so a
//! concurrent edit is a conflict retried next pass, not overwritten
//! blindly), delete and recreate a binding whose `roleRef` changed (it is
//! immutable), delete what is no longer wanted. An object of the same name
//! without the label is someone else's: reported, never touched.
//!
//! A write counts as drift repaired when the pass before wrote the same
//! object ([`Report::drift_repaired`]): what changed is the cluster, not
//! Paddock's bindings.

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use serde::{de::DeserializeOwned, Serialize};

use super::desired::{Desired, MANAGED_BY, MANAGED_BY_LABEL};
use super::status::Report;

/// An object kind the sync writes.
pub(super) trait Managed:
    Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug + Send + Sync + 'static
{
    /// Whether `self` (desired) and `have` (stored) say the same.
    fn same(&self, have: &Self) -> bool;
    /// Whether `have` must be deleted and created again (immutable fields).
    fn recreate(&self, _have: &Self) -> bool {
        false
    }
}

fn labels_ok<K: Resource>(want: &K, have: &K) -> bool {
    let have = have.labels();
    want.labels().iter().all(|(k, v)| have.get(k) == Some(v))
}

impl Managed for ClusterRole {
    fn same(&self, have: &Self) -> bool {
        let rules = |r: &Self| r.rules.clone().unwrap_or_default();
        labels_ok(self, have) && rules(self) == rules(have) && have.aggregation_rule.is_none()
    }
}

impl Managed for ClusterRoleBinding {
    fn same(&self, have: &Self) -> bool {
        labels_ok(self, have) && self.role_ref == have.role_ref && self.subjects == have.subjects
    }
    fn recreate(&self, have: &Self) -> bool {
        self.role_ref != have.role_ref
    }
}

impl Managed for RoleBinding {
    fn same(&self, have: &Self) -> bool {
        labels_ok(self, have) && self.role_ref == have.role_ref && self.subjects == have.subjects
    }
    fn recreate(&self, have: &Self) -> bool {
        self.role_ref != have.role_ref
    }
}

fn selector() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
}

/// Cluster-scoped objects keyed as namespaced ones, with no namespace.
fn cluster_scoped<K: Clone>(objects: &BTreeMap<String, K>) -> BTreeMap<(String, String), K> {
    objects
        .iter()
        .map(|(n, o)| ((String::new(), n.clone()), o.clone()))
        .collect()
}

/// One pass over the three kinds; `previous` is what the pass before
/// wanted, if there was one. Listing failures (the cluster is unreachable)
/// end the pass with an error; per-object failures are in the report.
pub(super) async fn apply(
    client: &kube::Client,
    desired: &Desired,
    previous: Option<&Desired>,
) -> Result<Report, kube::Error> {
    let mut report = Report::default();
    let all = |client: &kube::Client| Api::<ClusterRole>::all(client.clone());
    sync(
        all(client),
        |_| all(client),
        cluster_scoped(&desired.cluster_roles),
        previous.map(|p| cluster_scoped(&p.cluster_roles)),
        &mut report,
    )
    .await?;
    let all_crb = |client: &kube::Client| Api::<ClusterRoleBinding>::all(client.clone());
    sync(
        all_crb(client),
        |_| all_crb(client),
        cluster_scoped(&desired.cluster_role_bindings),
        previous.map(|p| cluster_scoped(&p.cluster_role_bindings)),
        &mut report,
    )
    .await?;
    sync(
        Api::<RoleBinding>::all(client.clone()),
        |ns| Api::<RoleBinding>::namespaced(client.clone(), ns),
        desired.role_bindings.clone(),
        previous.map(|p| p.role_bindings.clone()),
        &mut report,
    )
    .await?;
    Ok(report)
}

async fn sync<K: Managed + PartialEq>(
    all: Api<K>,
    scoped: impl Fn(&str) -> Api<K>,
    desired: BTreeMap<(String, String), K>,
    previous: Option<BTreeMap<(String, String), K>>,
    report: &mut Report,
) -> Result<(), kube::Error> {
    let kind = K::kind(&());
    let mut existing: BTreeMap<(String, String), K> = all
        .list(&selector())
        .await?
        .items
        .into_iter()
        .map(|o| ((o.namespace().unwrap_or_default(), o.name_any()), o))
        .collect();
    let post = PostParams {
        field_manager: Some("paddock-rbac-sync".to_owned()),
        ..PostParams::default()
    };
    let mut fail = |what: String, error: kube::Error| {
        let message = match &error {
            kube::Error::Api(status) if status.code == 409 && what.starts_with("create") => {
                format!("{what}: an object of that name exists without Paddock's label; left alone")
            }
            _ => format!("{what}: {error}"),
        };
        report.errors.push(message);
    };
    let mut counts = (0, 0, 0);
    let mut drift = 0;
    // Wanted, and already wanted by the pass before: a write repairs drift.
    let wanted_before = |key: &(String, String), want: &K| {
        previous
            .as_ref()
            .is_some_and(|p| p.get(key).is_some_and(|before| before == want))
    };
    for ((ns, name), want) in desired {
        let api = scoped(&ns);
        let at = if ns.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {ns}/{name}")
        };
        let key = (ns.clone(), name.clone());
        let repairs = wanted_before(&key, &want);
        match existing.remove(&key) {
            None => match api.create(&post, &want).await {
                Ok(_) => {
                    counts.0 += 1;
                    drift += u64::from(repairs);
                }
                Err(e) => fail(format!("create {at}"), e),
            },
            Some(have) if want.same(&have) => {}
            Some(have) if want.recreate(&have) => {
                if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
                    fail(format!("delete {at} (roleRef changed)"), e);
                    continue;
                }
                match api.create(&post, &want).await {
                    Ok(_) => {
                        counts.1 += 1;
                        drift += u64::from(repairs);
                    }
                    Err(e) => fail(format!("create {at} (roleRef changed)"), e),
                }
            }
            Some(have) => {
                let mut next = want.clone();
                next.meta_mut().resource_version = have.meta().resource_version.clone();
                match api.replace(&name, &post, &next).await {
                    Ok(_) => {
                        counts.1 += 1;
                        drift += u64::from(repairs);
                    }
                    Err(e) => fail(format!("update {at}"), e),
                }
            }
        }
    }
    for ((ns, name), _) in existing {
        // Labelled, never wanted by the pass before: someone else's stray.
        let stray = previous
            .as_ref()
            .is_some_and(|p| !p.contains_key(&(ns.clone(), name.clone())));
        match scoped(&ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                counts.2 += 1;
                drift += u64::from(stray);
            }
            // Gone already: what was wanted.
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => fail(format!("delete {kind} {ns}/{name}"), e),
        }
    }
    report.created += counts.0;
    report.updated += counts.1;
    report.deleted += counts.2;
    report.drift_repaired += drift;
    Ok(())
}
