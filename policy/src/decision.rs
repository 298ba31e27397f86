//! Who asks ([`Subject`]), the answer ([`Decision`]), and the `metav1.Status` a
//! forbidden request gets.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::attributes::RequestAttributes;

/// The caller as policy sees it: a user and its groups, by principal id (e.g.
/// `local://u-abc`, `github_team://12`, `system:authenticated`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// The user's principal id.
    pub user: String,
    /// The group principal ids.
    pub groups: Vec<String>,
}

impl Subject {
    /// This subject, borrowed.
    pub fn borrowed(&self) -> SubjectRef<'_> {
        SubjectRef {
            user: &self.user,
            groups: &self.groups,
        }
    }

    /// A subject from a user and its groups.
    pub fn new(
        user: impl Into<String>,
        groups: impl IntoIterator<Item = impl Into<String>>,
    ) -> Subject {
        Subject {
            user: user.into(),
            groups: groups.into_iter().map(Into::into).collect(),
        }
    }
}

/// A [`Subject`] borrowed from wherever the caller keeps its identity: what
/// decisions take, so deciding a request copies none of its strings.
/// `&Subject` converts into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectRef<'a> {
    /// The user's principal id.
    pub user: &'a str,
    /// The group principal ids.
    pub groups: &'a [String],
}

impl<'a> From<&'a Subject> for SubjectRef<'a> {
    fn from(subject: &'a Subject) -> SubjectRef<'a> {
        subject.borrowed()
    }
}

/// A policy decision. The reason is for humans (logs, the 403 message, `policy
/// explain`), never parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is allowed.
    pub allowed: bool,
    /// Which binding allowed it, or what was missing. Borrowed when it
    /// is always the same, so such a decision allocates nothing.
    pub reason: Cow<'static, str>,
}

impl Decision {
    pub(crate) fn allow(reason: impl Into<Cow<'static, str>>) -> Decision {
        Decision {
            allowed: true,
            reason: reason.into(),
        }
    }

    pub(crate) fn deny(reason: impl Into<Cow<'static, str>>) -> Decision {
        Decision {
            allowed: false,
            reason: reason.into(),
        }
    }
}

/// Describes a request for reasons: `list pods in namespace default of cluster prod`,
/// `get deployments.apps "web" ...`, `get path /healthz in cluster prod`.
pub(crate) fn describe_request(out: &mut String, cluster: &str, attrs: &RequestAttributes) {
    if !attrs.is_resource_request {
        let _ = write!(
            out,
            "{} path {} in cluster {cluster}",
            attrs.verb, attrs.path
        );
        return;
    }
    let verb = if attrs.verb.is_empty() {
        "(no verb)"
    } else {
        attrs.verb.as_str()
    };
    let _ = write!(out, "{verb} {}", attrs.resource);
    if !attrs.subresource.is_empty() {
        let _ = write!(out, "/{}", attrs.subresource);
    }
    if !attrs.api_group.is_empty() {
        let _ = write!(out, ".{}", attrs.api_group);
    }
    if !attrs.name.is_empty() {
        let _ = write!(out, " {:?}", attrs.name);
    }
    if attrs.namespace.is_empty() {
        let _ = write!(out, " in cluster {cluster}");
    } else {
        let _ = write!(
            out,
            " in namespace {} of cluster {cluster}",
            attrs.namespace
        );
    }
}

/// The `metav1.Status` JSON kube-apiserver sends for a forbidden request, with the
/// decision's reason appended to the message as the apiserver appends its
/// authorizer's reason, so kubectl prints it:
/// `pods is forbidden: User "u" cannot list resource "pods" in API group "" in the
/// namespace "default": <reason>`.
pub fn forbidden_status(username: &str, attrs: &RequestAttributes, reason: &str) -> String {
    let message = forbidden_message(username, attrs, reason);
    let (group, resource) = if attrs.is_resource_request {
        (attrs.api_group.as_str(), attrs.resource.as_str())
    } else {
        ("", "")
    };
    let mut details = serde_json::Map::new();
    if attrs.is_resource_request && !attrs.name.is_empty() {
        details.insert("name".into(), attrs.name.as_str().into());
    }
    if !group.is_empty() {
        details.insert("group".into(), group.into());
    }
    if !resource.is_empty() {
        details.insert("kind".into(), resource.into());
    }
    serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    })
    .to_string()
}

/// The message of [`forbidden_status`]: kube-apiserver's wording with the
/// decision's reason appended, e.g. `pods is forbidden: User "u" cannot list
/// resource "pods" in API group "" in the namespace "default": <reason>`.
pub fn forbidden_message(username: &str, attrs: &RequestAttributes, reason: &str) -> String {
    let mut msg = if attrs.is_resource_request {
        let resource = attrs.combined_resource();
        if attrs.namespace.is_empty() {
            format!(
                "User {username:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                attrs.verb, attrs.api_group
            )
        } else {
            format!(
                "User {username:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
                attrs.verb, attrs.api_group, attrs.namespace
            )
        }
    } else {
        format!(
            "User {username:?} cannot {} path {:?}",
            attrs.verb, attrs.path
        )
    };
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    let (group, resource) = if attrs.is_resource_request {
        (attrs.api_group.as_str(), attrs.resource.as_str())
    } else {
        ("", "")
    };
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    if qualified.is_empty() {
        format!("forbidden: {msg}")
    } else if attrs.name.is_empty() || !attrs.is_resource_request {
        format!("{qualified} is forbidden: {msg}")
    } else {
        format!("{qualified} {:?} is forbidden: {msg}", attrs.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_for_namespaced_list() {
        let attrs = RequestAttributes::from_request("GET", "/api/v1/namespaces/default/pods", None)
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&forbidden_status("u-1", &attrs, "no binding")).unwrap();
        assert_eq!(v["code"], 403);
        assert_eq!(v["reason"], "Forbidden");
        assert_eq!(
            v["message"],
            "pods is forbidden: User \"u-1\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\": no binding"
        );
        assert_eq!(v["details"], serde_json::json!({"kind": "pods"}));
    }

    #[test]
    fn status_for_named_cluster_scoped_and_path() {
        let attrs =
            RequestAttributes::from_request("GET", "/apis/apps/v1/deployments/x/scale", None)
                .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&forbidden_status("u", &attrs, "")).unwrap();
        assert_eq!(
            v["message"],
            "deployments.apps \"x\" is forbidden: User \"u\" cannot get resource \"deployments/scale\" in API group \"apps\" at the cluster scope"
        );
        assert_eq!(
            v["details"],
            serde_json::json!({"name": "x", "group": "apps", "kind": "deployments"})
        );
        let attrs = RequestAttributes::from_request("GET", "/healthz", None).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&forbidden_status("u", &attrs, "r")).unwrap();
        assert_eq!(
            v["message"],
            "forbidden: User \"u\" cannot get path \"/healthz\": r"
        );
    }

    #[test]
    fn describe() {
        let mut s = String::new();
        let attrs = RequestAttributes::resource_request("get", "apps", "deployments")
            .with_namespace("ns")
            .with_name("web")
            .with_subresource("scale");
        describe_request(&mut s, "prod", &attrs);
        assert_eq!(
            s,
            "get deployments/scale.apps \"web\" in namespace ns of cluster prod"
        );
    }
}
