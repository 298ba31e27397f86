//! The audit policy: which requests are recorded, at which level, in the
//! shape of kube-apiserver's `--audit-policy-file` (`audit.k8s.io/v1`
//! `Policy`, `staging/src/k8s.io/apiserver/pkg/apis/audit/v1/types.go`),
//! matched as `staging/src/k8s.io/apiserver/pkg/audit/policy/checker.go`
//! does: rules in order, the first that matches decides, no match is
//! `None`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How much of a request is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Level {
    /// Nothing.
    None,
    /// User, verb, object, status and timestamps; no bodies.
    Metadata,
    /// Metadata and the object sent (`requestObject`), within the limits
    /// the module docs of [`super`] give.
    Request,
    /// Metadata and both objects (`requestObject`, `responseObject`).
    RequestResponse,
}

/// When in a request's life an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Stage {
    /// As soon as the request arrives (in Paddock: once the caller is
    /// known). The default policy omits it.
    RequestReceived,
    /// Response headers sent; only for long-running requests (watch, exec,
    /// attach, port-forward, `logs -f`, proxy).
    ResponseStarted,
    /// The response body ended: for a watch or exec, when it closed.
    ResponseComplete,
    /// A panic; Paddock never writes it, accepted for compatibility.
    Panic,
}

impl Level {
    /// The name, as in a policy file and an event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::Metadata => "Metadata",
            Self::Request => "Request",
            Self::RequestResponse => "RequestResponse",
        }
    }
}

impl Stage {
    /// The name, as in a policy file and an event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestReceived => "RequestReceived",
            Self::ResponseStarted => "ResponseStarted",
            Self::ResponseComplete => "ResponseComplete",
            Self::Panic => "Panic",
        }
    }
}

/// An audit policy file: `apiVersion: audit.k8s.io/v1`, `kind: Policy`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Policy {
    /// Must be `audit.k8s.io/v1`.
    #[serde(default)]
    api_version: String,
    /// Must be `Policy`.
    #[serde(default)]
    kind: String,
    /// Accepted and ignored, as kube-apiserver does.
    #[serde(default)]
    metadata: Option<serde_norway::Value>,
    /// Evaluated in order; the first match decides.
    #[serde(default)]
    rules: Vec<PolicyRule>,
    /// Stages no rule records.
    #[serde(default)]
    omit_stages: Vec<Stage>,
    /// Leave `metadata.managedFields` out of recorded objects, unless a
    /// rule says otherwise.
    #[serde(default)]
    omit_managed_fields: bool,
}

/// One rule: a level and the selectors that must all match.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRule {
    /// The level of the requests this rule matches.
    level: Level,
    /// User names (Paddock's user id or login name); empty: any user.
    #[serde(default)]
    users: Vec<String>,
    /// Groups, any of which matches; empty: any group.
    #[serde(default)]
    user_groups: Vec<String>,
    /// Verbs (`get`, `list`, `watch`, ...; the lower-case method for
    /// non-resource URLs); empty: any verb.
    #[serde(default)]
    verbs: Vec<String>,
    /// Resources; with `namespaces`, makes this a resource rule.
    #[serde(default)]
    resources: Vec<GroupResources>,
    /// Namespaces, `""` for cluster-scoped requests.
    #[serde(default)]
    namespaces: Vec<String>,
    /// Paths of non-resource requests: exact, `*`, or a prefix ending in `*`.
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    /// Stages this rule does not record (added to the policy's).
    #[serde(default)]
    omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields` for this rule's requests.
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// Resources of one API group.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupResources {
    /// The API group, `""` for the core group.
    #[serde(default)]
    group: String,
    /// `pods`, `pods/log`, `*`, `pods/*`, `*/scale`; empty: every resource
    /// of the group.
    #[serde(default)]
    resources: Vec<String>,
    /// Object names; empty: any.
    #[serde(default)]
    resource_names: Vec<String>,
}

/// What the policy is matched against: a request as Kubernetes sees it.
/// Paddock's own `/paddock/v1/…` endpoints are resource requests in the
/// `paddock.io` group (`tokens`, `users`, `bindings`, `login`, ...); its
/// other paths are non-resource URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attributes<'a> {
    /// Names the caller goes by (user id and login name); empty when
    /// unauthenticated.
    pub user_names: &'a [&'a str],
    /// The caller's groups.
    pub groups: &'a [String],
    /// The Kubernetes verb.
    pub verb: &'a str,
    /// Whether this is a resource request.
    pub is_resource_request: bool,
    /// The API group.
    pub api_group: &'a str,
    /// The resource.
    pub resource: &'a str,
    /// The subresource, `""` for none.
    pub subresource: &'a str,
    /// The namespace, `""` for cluster-scoped.
    pub namespace: &'a str,
    /// The object name, `""` for collections.
    pub name: &'a str,
    /// The path (for non-resource requests).
    pub path: &'a str,
}

/// What the policy says about one request (kube-apiserver's
/// `RequestAuditConfig`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestAuditConfig {
    /// The level to record at.
    pub level: Level,
    omit: [bool; 4],
    /// Whether recorded objects leave out `metadata.managedFields`.
    pub omit_managed_fields: bool,
}

impl RequestAuditConfig {
    /// Every stage at `level`.
    #[cfg(test)]
    pub(crate) fn at(level: Level) -> Self {
        Self {
            level,
            omit: [false; 4],
            omit_managed_fields: false,
        }
    }

    /// Whether events of `stage` are written.
    pub fn records(&self, stage: Stage) -> bool {
        self.level != Level::None && !self.omit[stage as usize]
    }
}

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not YAML of the policy's shape; the message names the key.
    #[error("{0}")]
    Parse(String),
    /// Parsed, but not a valid policy.
    #[error("{path}: {message}")]
    Invalid {
        /// Where, e.g. `rules[2]`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

impl Default for Policy {
    /// `Metadata` for everything, `RequestReceived` omitted: what Paddock
    /// records without a policy file.
    fn default() -> Self {
        let mut policy = Self::with_level(Level::Metadata);
        policy.omit_stages = vec![Stage::RequestReceived];
        policy
    }
}

impl Policy {
    /// One rule recording every request at `level`.
    pub fn with_level(level: Level) -> Self {
        Self {
            api_version: "audit.k8s.io/v1".to_owned(),
            kind: "Policy".to_owned(),
            metadata: None,
            rules: vec![PolicyRule {
                level,
                users: Vec::new(),
                user_groups: Vec::new(),
                verbs: Vec::new(),
                resources: Vec::new(),
                namespaces: Vec::new(),
                non_resource_urls: Vec::new(),
                omit_stages: Vec::new(),
                omit_managed_fields: None,
            }],
            omit_stages: Vec::new(),
            omit_managed_fields: false,
        }
    }

    /// Parses and validates a policy file's text.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        // serde_norway's messages name the key path (`rules[0]: unknown field`).
        let policy: Policy =
            serde_norway::from_str(text).map_err(|e| PolicyError::Parse(e.to_string()))?;
        policy.validate()?;
        Ok(policy)
    }

    /// As kube-apiserver's `ValidatePolicy`
    /// (`staging/src/k8s.io/apiserver/pkg/apis/audit/validation/validation.go`).
    fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |path: String, message: &str| PolicyError::Invalid {
            path,
            message: message.to_owned(),
        };
        if self.api_version != "audit.k8s.io/v1" {
            return Err(invalid("apiVersion".into(), "must be audit.k8s.io/v1"));
        }
        if self.kind != "Policy" {
            return Err(invalid("kind".into(), "must be Policy"));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.non_resource_urls.is_empty()
                && (!rule.resources.is_empty() || !rule.namespaces.is_empty())
            {
                return Err(invalid(
                    format!("rules[{i}]"),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            for (j, url) in rule.non_resource_urls.iter().enumerate() {
                if let Some(star) = url.find('*') {
                    if star != url.len() - 1 {
                        return Err(invalid(
                            format!("rules[{i}].nonResourceURLs[{j}]"),
                            "'*' is only allowed at the end",
                        ));
                    }
                }
            }
            for (j, group) in rule.resources.iter().enumerate() {
                if !group.resource_names.is_empty()
                    && group.resources.iter().any(|r| r.contains('*'))
                {
                    return Err(invalid(
                        format!("rules[{i}].resources[{j}].resourceNames"),
                        "may not be used with wildcard resources",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The level and stages for a request: the first matching rule's, or
    /// `None`.
    pub fn decide(&self, attributes: &Attributes<'_>) -> RequestAuditConfig {
        let mut omit = [false; 4];
        for stage in &self.omit_stages {
            omit[*stage as usize] = true;
        }
        match self.rules.iter().find(|rule| rule.matches(attributes)) {
            Some(rule) => {
                for stage in &rule.omit_stages {
                    omit[*stage as usize] = true;
                }
                RequestAuditConfig {
                    level: rule.level,
                    omit,
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                }
            }
            None => RequestAuditConfig {
                level: Level::None,
                omit,
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }

    /// The highest level any rule records at: below `Request`, no request
    /// needs its bodies looked at.
    pub(crate) fn max_level(&self) -> Level {
        self.rules
            .iter()
            .map(|rule| rule.level)
            .max()
            .unwrap_or(Level::None)
    }
}

impl PolicyRule {
    fn matches(&self, a: &Attributes<'_>) -> bool {
        if !self.users.is_empty() && !a.user_names.iter().any(|n| has(&self.users, n)) {
            return false;
        }
        if !self.user_groups.is_empty() && !a.groups.iter().any(|g| has(&self.user_groups, g)) {
            return false;
        }
        if !self.verbs.is_empty() && !has(&self.verbs, a.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a);
        }
        if !self.non_resource_urls.is_empty() {
            return !a.is_resource_request
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(a.path, spec));
        }
        true
    }

    fn matches_resource(&self, a: &Attributes<'_>) -> bool {
        if !a.is_resource_request {
            return false;
        }
        if !self.namespaces.is_empty() && !has(&self.namespaces, a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        self.resources
            .iter()
            .filter(|group| group.group == a.api_group)
            .any(|group| {
                if group.resources.is_empty() {
                    return true;
                }
                if !group.resource_names.is_empty() && !has(&group.resource_names, a.name) {
                    return false;
                }
                group.resources.iter().any(|res| resource_matches(res, a))
            })
    }
}

/// `pods`, `pods/log`, `*`, `*/scale` (any resource's subresource), `pods/*`
/// (the resource and every subresource of it), as checker.go matches them.
fn resource_matches(spec: &str, a: &Attributes<'_>) -> bool {
    if spec == "*" {
        return true;
    }
    let combined_matches = match spec.split_once('/') {
        Some((resource, subresource)) => resource == a.resource && subresource == a.subresource,
        None => spec == a.resource && a.subresource.is_empty(),
    };
    if combined_matches {
        return true;
    }
    if let Some(subresource) = spec.strip_prefix("*/") {
        if !a.subresource.is_empty() && subresource == a.subresource {
            return true;
        }
    }
    spec.strip_suffix("/*") == Some(a.resource)
}

/// Exact, `*`, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix))
}

fn has(list: &[String], value: &str) -> bool {
    list.iter().any(|item| item == value)
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::None => "None",
            Level::Metadata => "Metadata",
            Level::Request => "Request",
            Level::RequestResponse => "RequestResponse",
        })
    }
}

#[cfg(test)]
mod tests;
