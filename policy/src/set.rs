//! [`PolicySet`]: the compiled policy, and how it decides.
//!
//! Where grants apply:
//! - a native `ClusterRoleBinding` in every cluster (or the one named by its
//!   `paddock.io/cluster` annotation), a `RoleBinding` in its namespace of every
//!   cluster (or of the annotated one);
//! - a `GlobalRoleBinding`: its GlobalRole's `rules` (and `namespacedRules`) in the
//!   management cluster, its `inheritedClusterRoles` in every other cluster, and, for
//!   a GlobalRole granting `*` on `*.*` (Rancher's `admin`), cluster-admin in every
//!   cluster, as Rancher does;
//! - a `ClusterRoleTemplateBinding` cluster-wide in its cluster;
//! - a `ProjectRoleTemplateBinding` in each namespace of its project, plus the rules
//!   on cluster-scoped resources that Rancher promotes to the cluster (nodes,
//!   persistentvolumes, storageclasses, apiservices, navlinks, clusterrepos, clusters).
//!
//! Namespace grants never apply to cluster-scoped, all-namespace or non-resource
//! requests. `system:masters` gets no special treatment: only bindings grant access.

mod compile;
mod index;
mod slice;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;

use self::compile::{compile, Compiled};
pub use self::compile::{CLUSTER_ANNOTATION, PROJECT_ANNOTATION};
use self::index::Grant;
pub use self::slice::ClusterPolicy;
use crate::attributes::RequestAttributes;
use crate::builtin;
use crate::decision::{describe_request, Decision, SubjectRef};
use crate::error::PolicyError;
use crate::parse::{parse_documents, Parsed};

/// The default id of the management cluster (Rancher's `local`).
pub const DEFAULT_MANAGEMENT_CLUSTER: &str = "local";

fn builtins() -> &'static [Parsed] {
    static BUILTINS: OnceLock<Vec<Parsed>> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        let mut all = parse_documents(builtin::ORIGIN, builtin::KUBERNETES, true)
            .expect("built-in Kubernetes roles parse");
        all.extend(
            parse_documents(builtin::ORIGIN, builtin::RANCHER, true)
                .expect("built-in Rancher roles parse"),
        );
        all
    })
}

/// Collects policy YAML and compiles it into a [`PolicySet`]. The built-in roles are
/// always present.
///
/// ```
/// let mut builder = policy::PolicySet::builder();
/// builder.add_yaml("team.yaml", "
/// apiVersion: management.cattle.io/v3
/// kind: ClusterRoleTemplateBinding
/// metadata: {name: crtb-1, namespace: prod}
/// clusterName: prod
/// userPrincipalName: local://u-abc
/// roleTemplateName: cluster-member
/// ")?;
/// let set = builder.build()?;
/// # Ok::<(), policy::PolicyError>(())
/// ```
#[derive(Debug, Clone)]
pub struct PolicySetBuilder {
    objects: Vec<Parsed>,
    management_cluster: Option<String>,
}

impl Default for PolicySetBuilder {
    fn default() -> Self {
        PolicySetBuilder {
            objects: builtins().to_vec(),
            management_cluster: Some(DEFAULT_MANAGEMENT_CLUSTER.to_owned()),
        }
    }
}

impl PolicySetBuilder {
    /// A builder holding only the built-in roles.
    pub fn new() -> PolicySetBuilder {
        PolicySetBuilder::default()
    }

    /// Sets the management cluster's id (default `local`), where GlobalRole rules
    /// apply; `None` means there is none.
    pub fn management_cluster(&mut self, id: Option<&str>) -> &mut PolicySetBuilder {
        self.management_cluster = id.map(str::to_owned);
        self
    }

    /// Adds every object of a (multi-document) YAML text. `origin` names the text in
    /// errors and reasons (a file path, a store key). Parse errors are returned now;
    /// reference errors by [`PolicySetBuilder::build`].
    pub fn add_yaml(
        &mut self,
        origin: &str,
        text: &str,
    ) -> Result<&mut PolicySetBuilder, PolicyError> {
        self.objects.extend(parse_documents(origin, text, false)?);
        Ok(self)
    }

    /// Compiles the policy: resolves aggregation and template inheritance, checks
    /// every reference, and indexes grants by subject and scope.
    pub fn build(&self) -> Result<PolicySet, PolicyError> {
        let compiled = compile(&self.objects, self.management_cluster.as_deref())?;
        Ok(PolicySet {
            compiled,
            management_cluster: self.management_cluster.clone(),
        })
    }
}

/// Counts describing a compiled policy set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyStats {
    /// Compiled roles (one per role, template or rule set actually bound).
    pub roles: usize,
    /// Bindings of every kind, built-ins included.
    pub bindings: usize,
    /// Users with at least one grant.
    pub users: usize,
    /// Groups with at least one grant.
    pub groups: usize,
}

/// A compiled, immutable policy. Cheap to share (`Arc<PolicySet>`); decisions only
/// look up the subject's own grants, never scan the whole set.
#[derive(Debug)]
pub struct PolicySet {
    compiled: Compiled,
    management_cluster: Option<String>,
}

impl PolicySet {
    /// A builder with the built-in roles.
    pub fn builder() -> PolicySetBuilder {
        PolicySetBuilder::new()
    }

    /// Only the built-in roles and bindings.
    pub fn builtin() -> PolicySet {
        PolicySetBuilder::new()
            .build()
            .expect("the built-in policy compiles")
    }

    /// Builds a set from `(origin, yaml)` pairs plus the built-ins.
    pub fn from_documents<'a>(
        documents: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PolicySet, PolicyError> {
        let mut builder = PolicySetBuilder::new();
        for (origin, text) in documents {
            builder.add_yaml(origin, text)?;
        }
        builder.build()
    }

    /// Counts for logs and `policy check`.
    pub fn stats(&self) -> PolicyStats {
        PolicyStats {
            roles: self.compiled.roles.len(),
            bindings: self.compiled.bindings,
            users: self.compiled.users.len(),
            groups: self.compiled.groups.len(),
        }
    }

    /// A role template's context (`cluster` or `project`) and its rules
    /// with inherited templates and external ClusterRoles resolved: what a
    /// binding to it grants, as native RBAC writes it downstream.
    pub fn role_template(&self, name: &str) -> Option<(&str, &[crate::PolicyRule])> {
        self.compiled
            .templates
            .get(name)
            .map(|(context, rules)| (context.as_str(), rules.as_slice()))
    }

    /// The management cluster's id, if any.
    pub fn management_cluster(&self) -> Option<&str> {
        self.management_cluster.as_deref()
    }

    /// Decides one request of `subject` to cluster `cluster_id`.
    pub fn decide<'s>(
        &self,
        subject: impl Into<SubjectRef<'s>>,
        cluster_id: &str,
        attrs: &RequestAttributes,
    ) -> Decision {
        let subject = subject.into();
        match self.find(subject, cluster_id, attrs) {
            Some(source) => {
                let description = &self.compiled.sources[source as usize].description;
                let mut reason = String::with_capacity(description.len() + cluster_id.len() + 24);
                reason.push_str("allowed by ");
                reason.push_str(description);
                reason.push_str(" in cluster ");
                reason.push_str(cluster_id);
                Decision::allow(reason)
            }
            None => Decision::deny(self.denial(subject, cluster_id, attrs)),
        }
    }

    /// Decides a request that needs several checks, all of which must pass (see
    /// [`RequestAttributes::authorization_checks`]). The first denial is returned;
    /// when all pass the reasons are joined with `; `. No checks at all is a denial.
    pub fn decide_all<'s>(
        &self,
        subject: impl Into<SubjectRef<'s>>,
        cluster_id: &str,
        checks: &[RequestAttributes],
    ) -> Decision {
        let subject = subject.into();
        // The usual case: one check, whose reason needs no joining.
        if let [only] = checks {
            return self.decide(subject, cluster_id, only);
        }
        let mut reasons = Vec::with_capacity(checks.len());
        for attrs in checks {
            let decision = self.decide(subject, cluster_id, attrs);
            if !decision.allowed {
                return decision;
            }
            reasons.push(decision.reason);
        }
        if reasons.is_empty() {
            return Decision::deny("nothing to authorize");
        }
        Decision::allow(reasons.join("; "))
    }

    /// The source index of the first grant allowing the request. Users first, then
    /// groups in the subject's order; within one subject, cluster-wide grants before
    /// namespace grants, each list in binding order (kind, namespace, name).
    fn find(
        &self,
        subject: SubjectRef<'_>,
        cluster: &str,
        attrs: &RequestAttributes,
    ) -> Option<u32> {
        let is_management = self.management_cluster.as_deref() == Some(cluster);
        let roles = &self.compiled.roles;
        let mut found = None;
        let mut visit = |list: &[Grant]| {
            for grant in list {
                if roles[grant.role as usize].allows(attrs) {
                    found = Some(grant.source);
                    return true;
                }
            }
            false
        };
        if let Some(grants) = self.compiled.users.get(subject.user) {
            if grants.applicable(cluster, is_management, attrs, &mut visit) {
                return found;
            }
        }
        for group in subject.groups {
            if let Some(grants) = self.compiled.groups.get(group.as_str()) {
                if grants.applicable(cluster, is_management, attrs, &mut visit) {
                    return found;
                }
            }
        }
        None
    }

    fn denial(&self, subject: SubjectRef<'_>, cluster: &str, attrs: &RequestAttributes) -> String {
        let mut reason = format!("no binding for user {}", subject.user);
        if subject.groups.is_empty() {
            reason.push_str(" (no groups)");
        } else {
            reason.push_str(" (groups: ");
            reason.push_str(&subject.groups.join(", "));
            reason.push(')');
        }
        reason.push_str(" grants ");
        describe_request(&mut reason, cluster, attrs);
        reason
    }

    /// The rules of every grant that applies to `subject` in `cluster_id` for a
    /// request in `namespace` (`""` for cluster scope), with the binding behind each;
    /// for `policy explain` and tests. Not for the request path.
    pub fn rules_for<'s>(
        &self,
        subject: impl Into<SubjectRef<'s>>,
        cluster_id: &str,
        namespace: &str,
    ) -> Vec<(String, Vec<crate::PolicyRule>)> {
        let subject = subject.into();
        let is_management = self.management_cluster.as_deref() == Some(cluster_id);
        let probe = RequestAttributes::resource_request("", "", "").with_namespace(namespace);
        let mut out = Vec::new();
        let mut visit = |list: &[Grant]| {
            for grant in list {
                out.push((
                    self.compiled.sources[grant.source as usize]
                        .description
                        .clone(),
                    self.compiled.roles[grant.role as usize].rules().to_vec(),
                ));
            }
            false
        };
        if let Some(grants) = self.compiled.users.get(subject.user) {
            grants.applicable(cluster_id, is_management, &probe, &mut visit);
        }
        for group in subject.groups {
            if let Some(grants) = self.compiled.groups.get(group.as_str()) {
                grants.applicable(cluster_id, is_management, &probe, &mut visit);
            }
        }
        out
    }
}
