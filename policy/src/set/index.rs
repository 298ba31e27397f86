//! The compiled, indexed form of a policy set: roles indexed by API group and
//! resource, grants indexed by subject and then by scope.

use crate::attributes::RequestAttributes;
use crate::hash::FastMap;
use crate::rule::PolicyRule;

/// A role's flattened rules (aggregation and template inheritance resolved), indexed
/// so a request only looks at rules that can name its group and resource.
#[derive(Debug, Default)]
pub(crate) struct CompiledRole {
    rules: Box<[PolicyRule]>,
    /// api group (or `*`) → resource before any `/` (or `*`) → rule indices.
    by_group: FastMap<Box<str>, FastMap<Box<str>, Vec<u32>>>,
    /// Rules with non-resource URLs.
    url_rules: Vec<u32>,
}

impl CompiledRole {
    pub(crate) fn new(rules: Vec<PolicyRule>) -> CompiledRole {
        let mut role = CompiledRole::default();
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).expect("fewer than 2^32 rules in one role");
            if !rule.non_resource_urls.is_empty() {
                role.url_rules.push(i);
            }
            for group in &rule.api_groups {
                let by_resource = role.by_group.entry(group.as_str().into()).or_default();
                for resource in &rule.resources {
                    let base = resource.split('/').next().unwrap_or_default();
                    let list = by_resource.entry(base.into()).or_default();
                    if list.last() != Some(&i) {
                        list.push(i);
                    }
                }
            }
        }
        role.rules = rules.into_boxed_slice();
        role
    }

    pub(crate) fn rules(&self) -> &[PolicyRule] {
        &self.rules
    }

    /// Same answer as `self.rules().iter().any(|r| r.allows(attrs))`.
    #[inline]
    pub(crate) fn allows(&self, attrs: &RequestAttributes) -> bool {
        if !attrs.is_resource_request {
            return self
                .url_rules
                .iter()
                .any(|&i| self.rules[i as usize].allows(attrs));
        }
        for group in [attrs.api_group.as_str(), "*"] {
            let Some(by_resource) = self.by_group.get(group) else {
                continue;
            };
            for base in [attrs.resource.as_str(), "*"] {
                if let Some(list) = by_resource.get(base) {
                    if list.iter().any(|&i| self.rules[i as usize].allows(attrs)) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

/// A role granted by a binding: indices into the set's roles and sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) role: u32,
    pub(crate) source: u32,
}

/// Where a grant applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Cluster-wide in every cluster.
    Everywhere,
    /// Cluster-wide in every cluster except the management cluster.
    Downstream,
    /// Cluster-wide in one cluster.
    Cluster(String),
    /// One namespace, in one cluster or (`None`) in every cluster.
    Namespace(Option<String>, String),
}

/// One subject's grants, by scope. Cluster-wide grants apply to every request in
/// their cluster(s); namespace grants only to resource requests in that namespace.
#[derive(Debug, Default)]
pub(crate) struct ScopedGrants {
    pub(crate) everywhere: Vec<Grant>,
    pub(crate) downstream: Vec<Grant>,
    pub(crate) clusters: FastMap<Box<str>, Vec<Grant>>,
    pub(crate) namespaces: FastMap<Box<str>, Vec<Grant>>,
    pub(crate) cluster_namespaces: FastMap<Box<str>, FastMap<Box<str>, Vec<Grant>>>,
}

impl ScopedGrants {
    pub(crate) fn add(&mut self, scope: &Scope, grant: Grant) {
        let list = match scope {
            Scope::Everywhere => &mut self.everywhere,
            Scope::Downstream => &mut self.downstream,
            Scope::Cluster(c) => self.clusters.entry(c.as_str().into()).or_default(),
            Scope::Namespace(None, ns) => self.namespaces.entry(ns.as_str().into()).or_default(),
            Scope::Namespace(Some(c), ns) => self
                .cluster_namespaces
                .entry(c.as_str().into())
                .or_default()
                .entry(ns.as_str().into())
                .or_default(),
        };
        if !list.contains(&grant) {
            list.push(grant);
        }
    }

    pub(crate) fn for_each_list(&mut self, mut f: impl FnMut(&mut Vec<Grant>)) {
        f(&mut self.everywhere);
        f(&mut self.downstream);
        self.clusters.values_mut().for_each(&mut f);
        self.namespaces.values_mut().for_each(&mut f);
        for m in self.cluster_namespaces.values_mut() {
            m.values_mut().for_each(&mut f);
        }
    }

    /// The grant lists that can apply to a request in `cluster`, in a fixed order.
    #[inline]
    pub(crate) fn applicable<'a>(
        &'a self,
        cluster: &str,
        is_management: bool,
        attrs: &RequestAttributes,
        mut visit: impl FnMut(&'a [Grant]) -> bool,
    ) -> bool {
        if visit(&self.everywhere) {
            return true;
        }
        if !is_management && visit(&self.downstream) {
            return true;
        }
        if let Some(list) = self.clusters.get(cluster) {
            if visit(list) {
                return true;
            }
        }
        // RoleBindings never apply to cluster-scoped, all-namespace or non-resource
        // requests (`VisitRulesFor` only reads them for a non-empty namespace).
        if attrs.is_resource_request && !attrs.namespace.is_empty() {
            let ns = attrs.namespace.as_str();
            if let Some(list) = self.namespaces.get(ns) {
                if visit(list) {
                    return true;
                }
            }
            if let Some(list) = self.cluster_namespaces.get(cluster).and_then(|m| m.get(ns)) {
                if visit(list) {
                    return true;
                }
            }
        }
        false
    }
}

/// The binding behind a grant, for reasons.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// `ProjectRoleTemplateBinding p-dev/prtb-abc (role project-member)`.
    pub(crate) description: String,
    /// Sort key: kind rank, namespace, name, detail.
    pub(crate) order: (u8, String, String, String),
}
