//! One cluster's part of a compiled policy ([`ClusterPolicy`]): what a
//! sidecar next to that cluster needs to decide its requests as the center
//! does, and nothing of any other cluster.
//!
//! It holds, for every user and group with a grant that can apply in the
//! cluster, the grants in the order [`PolicySet::decide`] visits them
//! (cluster-wide first, then per namespace), the rules of the roles they
//! grant (aggregation and inheritance already resolved) and the description
//! of the binding behind each. A set rebuilt from it
//! ([`PolicySet::from_cluster_policy`]) gives the same decision, with the
//! same reason, for every request to that cluster; other clusters' grants,
//! unbound roles and templates are not in it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::compile::Compiled;
use super::index::{CompiledRole, Grant, ScopedGrants, Source};
use super::PolicySet;
use crate::error::PolicyError;
use crate::model::Location;
use crate::rule::PolicyRule;

/// One cluster's part of a [`PolicySet`] (see the module docs).
/// Serializable, and deterministic: two sets compiled from the same
/// objects give equal slices, so a reader can tell a change by comparing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterPolicy {
    cluster: String,
    #[serde(default)]
    management: bool,
    roles: Vec<Vec<PolicyRule>>,
    sources: Vec<String>,
    #[serde(default)]
    users: BTreeMap<String, SubjectGrants>,
    #[serde(default)]
    groups: BTreeMap<String, SubjectGrants>,
}

/// One subject's grants in the cluster: `(role, source)` index pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubjectGrants {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    cluster: Vec<(u32, u32)>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    namespaces: BTreeMap<String, Vec<(u32, u32)>>,
}

impl ClusterPolicy {
    /// The cluster it is for.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Users and groups with at least one grant in the cluster.
    pub fn subjects(&self) -> usize {
        self.users.len() + self.groups.len()
    }
}

/// Renumbers the roles and sources a slice keeps, in order of first use.
struct Renumber<'a> {
    set: &'a Compiled,
    roles: HashMap<u32, u32>,
    sources: HashMap<u32, u32>,
    out_roles: Vec<Vec<PolicyRule>>,
    out_sources: Vec<String>,
}

impl Renumber<'_> {
    fn grant(&mut self, grant: Grant) -> (u32, u32) {
        let next = u32::try_from(self.out_roles.len()).unwrap_or(u32::MAX);
        let role = *self.roles.entry(grant.role).or_insert_with(|| {
            self.out_roles
                .push(self.set.roles[grant.role as usize].rules().to_vec());
            next
        });
        let next = u32::try_from(self.out_sources.len()).unwrap_or(u32::MAX);
        let source = *self.sources.entry(grant.source).or_insert_with(|| {
            self.out_sources
                .push(self.set.sources[grant.source as usize].description.clone());
            next
        });
        (role, source)
    }

    fn list<'g>(&mut self, lists: impl IntoIterator<Item = &'g [Grant]>) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for grant in lists.into_iter().flatten() {
            let pair = self.grant(*grant);
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        out
    }

    /// A subject's grants that can apply in `cluster`, in the order
    /// `ScopedGrants::applicable` visits them.
    fn subject(&mut self, grants: &ScopedGrants, cluster: &str, management: bool) -> SubjectGrants {
        let empty: &[Grant] = &[];
        let downstream = if management {
            empty
        } else {
            &grants.downstream
        };
        let own = grants.clusters.get(cluster).map_or(empty, Vec::as_slice);
        let cluster_wide = self.list([grants.everywhere.as_slice(), downstream, own]);
        let in_cluster = grants.cluster_namespaces.get(cluster);
        let mut names: Vec<&str> = grants.namespaces.keys().map(|k| &**k).collect();
        names.extend(in_cluster.into_iter().flat_map(|m| m.keys().map(|k| &**k)));
        names.sort_unstable();
        names.dedup();
        let mut namespaces = BTreeMap::new();
        for ns in names {
            let everywhere = grants.namespaces.get(ns).map_or(empty, Vec::as_slice);
            let here = in_cluster
                .and_then(|m| m.get(ns))
                .map_or(empty, Vec::as_slice);
            let list = self.list([everywhere, here]);
            if !list.is_empty() {
                namespaces.insert(ns.to_owned(), list);
            }
        }
        SubjectGrants {
            cluster: cluster_wide,
            namespaces,
        }
    }
}

impl PolicySet {
    /// The part of this policy that decides requests to `cluster` (see
    /// [`ClusterPolicy`]).
    pub fn for_cluster(&self, cluster: &str) -> ClusterPolicy {
        let management = self.management_cluster.as_deref() == Some(cluster);
        let mut renumber = Renumber {
            set: &self.compiled,
            roles: HashMap::new(),
            sources: HashMap::new(),
            out_roles: Vec::new(),
            out_sources: Vec::new(),
        };
        let mut slice = |subjects: &crate::hash::FastMap<Box<str>, ScopedGrants>| {
            // Sorted, so the numbering and the output are deterministic.
            let mut names: Vec<&Box<str>> = subjects.keys().collect();
            names.sort_unstable();
            let mut out = BTreeMap::new();
            for name in names {
                let grants = renumber.subject(&subjects[name], cluster, management);
                if !grants.cluster.is_empty() || !grants.namespaces.is_empty() {
                    out.insert(name.to_string(), grants);
                }
            }
            out
        };
        let users = slice(&self.compiled.users);
        let groups = slice(&self.compiled.groups);
        ClusterPolicy {
            cluster: cluster.to_owned(),
            management,
            roles: renumber.out_roles,
            sources: renumber.out_sources,
            users,
            groups,
        }
    }

    /// A set that decides requests to `policy`'s cluster exactly as the set
    /// it was cut from (and denies every other cluster's). Fails when the
    /// slice refers to a role or source it does not hold.
    pub fn from_cluster_policy(policy: &ClusterPolicy) -> Result<PolicySet, PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            at: Box::new(Location {
                origin: format!("cluster policy of {}", policy.cluster),
                document: 1,
                item: None,
            }),
            object: format!("ClusterPolicy {}", policy.cluster),
            message,
        };
        let grant = |(role, source): (u32, u32)| {
            if (role as usize) < policy.roles.len() && (source as usize) < policy.sources.len() {
                Ok(Grant { role, source })
            } else {
                Err(invalid(format!(
                    "grant ({role}, {source}) refers past {} roles and {} sources",
                    policy.roles.len(),
                    policy.sources.len()
                )))
            }
        };
        let scoped = |subject: &SubjectGrants| -> Result<ScopedGrants, PolicyError> {
            let mut out = ScopedGrants::default();
            if !subject.cluster.is_empty() {
                let list = subject
                    .cluster
                    .iter()
                    .map(|g| grant(*g))
                    .collect::<Result<_, _>>()?;
                out.clusters.insert(policy.cluster.as_str().into(), list);
            }
            if !subject.namespaces.is_empty() {
                let by_ns = out
                    .cluster_namespaces
                    .entry(policy.cluster.as_str().into())
                    .or_default();
                for (ns, list) in &subject.namespaces {
                    let list = list.iter().map(|g| grant(*g)).collect::<Result<_, _>>()?;
                    by_ns.insert(ns.as_str().into(), list);
                }
            }
            Ok(out)
        };
        let mut compiled = Compiled {
            roles: policy
                .roles
                .iter()
                .map(|rules| CompiledRole::new(rules.clone()))
                .collect(),
            sources: policy
                .sources
                .iter()
                .map(|description| Source {
                    description: description.clone(),
                    order: Default::default(),
                })
                .collect(),
            bindings: policy.sources.len(),
            ..Compiled::default()
        };
        for (name, subject) in &policy.users {
            compiled
                .users
                .insert(name.as_str().into(), scoped(subject)?);
        }
        for (name, subject) in &policy.groups {
            compiled
                .groups
                .insert(name.as_str().into(), scoped(subject)?);
        }
        Ok(PolicySet {
            compiled,
            management_cluster: policy.management.then(|| policy.cluster.clone()),
        })
    }
}

#[cfg(test)]
mod tests;
