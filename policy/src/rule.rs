//! RBAC policy rules and Kubernetes' `RuleAllows`
//! (`plugin/pkg/auth/authorizer/rbac/rbac.go`, helpers in
//! `pkg/apis/rbac/v1/evaluation_helpers.go`), ported literally.

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::attributes::RequestAttributes;

/// One RBAC rule, as in `rbac.authorization.k8s.io/v1` `PolicyRule`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Verbs, or `*` for all (case-sensitive).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups (`""` is the core group), or `*`.
    #[serde(default, rename = "apiGroups")]
    pub api_groups: Vec<String>,
    /// Resources (`pods`, `pods/log`, `*/scale`), or `*`.
    #[serde(default)]
    pub resources: Vec<String>,
    /// Object names; empty means any name.
    #[serde(default)]
    pub resource_names: Vec<String>,
    /// Non-resource URLs (`/healthz`, `/api*`), or `*`.
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

const ALL: &str = "*";

impl PolicyRule {
    /// A rule from string slices, for built-in roles and tests.
    pub fn new(verbs: &[&str], api_groups: &[&str], resources: &[&str]) -> PolicyRule {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        PolicyRule {
            verbs: own(verbs),
            api_groups: own(api_groups),
            resources: own(resources),
            ..PolicyRule::default()
        }
    }

    /// A non-resource URL rule.
    pub fn urls(verbs: &[&str], urls: &[&str]) -> PolicyRule {
        let own = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        PolicyRule {
            verbs: own(verbs),
            non_resource_urls: own(urls),
            ..PolicyRule::default()
        }
    }

    /// Restricts the rule to these object names.
    #[must_use]
    pub fn with_names(mut self, names: &[&str]) -> PolicyRule {
        self.resource_names = names.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Whether this rule allows the request (`RuleAllows`).
    ///
    /// Resource requests need the verb, the API group, the resource (with `*`,
    /// the exact `resource/subresource`, or `*/<subresource>`) and the name (an empty
    /// `resourceNames` allows any, otherwise exact membership) to match. Non-resource
    /// requests need the verb and the path (`*`, exact, or a rule ending in `*` whose
    /// text without the trailing stars is a raw prefix of the path).
    pub fn allows(&self, attrs: &RequestAttributes) -> bool {
        if attrs.is_resource_request {
            self.verb_matches(&attrs.verb)
                && self.api_group_matches(&attrs.api_group)
                && self.resource_matches(&attrs.resource, &attrs.subresource)
                && self.resource_name_matches(&attrs.name)
        } else {
            self.verb_matches(&attrs.verb) && self.non_resource_url_matches(&attrs.path)
        }
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == ALL || v == verb)
    }

    fn api_group_matches(&self, group: &str) -> bool {
        self.api_groups.iter().any(|g| g == ALL || g == group)
    }

    fn resource_matches(&self, resource: &str, subresource: &str) -> bool {
        self.resources.iter().any(|r| {
            if r == ALL {
                return true;
            }
            // exact `resource` or `resource/subresource`, without building the string
            let exact = if subresource.is_empty() {
                r == resource
            } else {
                r.len() == resource.len() + 1 + subresource.len()
                    && r.starts_with(resource)
                    && r.as_bytes()[resource.len()] == b'/'
                    && r.ends_with(subresource)
            };
            exact
                || (!subresource.is_empty()
                    && r.len() == subresource.len() + 2
                    && r.starts_with("*/")
                    && r.ends_with(subresource))
        })
    }

    fn resource_name_matches(&self, name: &str) -> bool {
        self.resource_names.is_empty() || self.resource_names.iter().any(|n| n == name)
    }

    fn non_resource_url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|u| {
            u == ALL || u == path || (u.ends_with('*') && path.starts_with(u.trim_end_matches('*')))
        })
    }

    /// Whether this rule grants every verb on every resource of every group (a
    /// cluster-admin rule), without a name restriction.
    pub fn is_full_wildcard(&self) -> bool {
        self.verbs.iter().any(|v| v == ALL)
            && self.api_groups.iter().any(|g| g == ALL)
            && self.resources.iter().any(|r| r == ALL)
            && self.resource_names.is_empty()
    }
}
