//! Authorising `kubectl --as` (nested impersonation) with Kubernetes' semantics
//! (`WithImpersonation` in
//! `staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`; see
//! `docs/facts.md` §2): which attribute sets are checked, which header
//! combinations are a 400, and the identity that results.

use crate::attributes::RequestAttributes;
use crate::decision::{Decision, Subject, SubjectRef};
use crate::set::PolicySet;

const SA_PREFIX: &str = "system:serviceaccount:";

/// What a caller asked to impersonate (`Impersonate-User`, `-Uid`, `-Group`,
/// `-Extra-<key>`), already decoded: extra keys as [`decode_extra_key`] gives them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImpersonationRequest {
    /// `Impersonate-User` (the first value); `None` or empty means "not impersonating".
    pub user: Option<String>,
    /// `Impersonate-Uid`.
    pub uid: Option<String>,
    /// Every `Impersonate-Group` value, one group each.
    pub groups: Vec<String>,
    /// Extra keys and their values.
    pub extra: Vec<(String, Vec<String>)>,
}

/// An impersonation request the API server would refuse with 400 Bad Request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImpersonationError {
    /// `Impersonate-Group` without a user.
    #[error("requested groups without impersonating a user")]
    GroupsWithoutUser,
    /// `Impersonate-Extra-*` without a user.
    #[error("requested extra without impersonating a user")]
    ExtraWithoutUser,
    /// `Impersonate-Uid` without a user.
    #[error("requested uid without impersonating a user")]
    UidWithoutUser,
}

impl ImpersonationRequest {
    /// The requested user, if impersonating at all (an empty user is no user).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref().filter(|u| !u.is_empty())
    }

    /// Checks the combination like the API server: groups, extra or uid without a user
    /// are a 400. Returns whether anything is impersonated.
    pub fn validate(&self) -> Result<bool, ImpersonationError> {
        if self.user().is_some() {
            return Ok(true);
        }
        if !self.groups.is_empty() {
            return Err(ImpersonationError::GroupsWithoutUser);
        }
        if !self.extra.is_empty() {
            return Err(ImpersonationError::ExtraWithoutUser);
        }
        if self.uid.is_some() {
            return Err(ImpersonationError::UidWithoutUser);
        }
        Ok(false)
    }

    /// The attribute sets the API server checks, all with verb `impersonate`, in its
    /// order: the user (`users`, or `serviceaccounts` in the SA's namespace), each
    /// group (`groups`), each extra value (`userextras/<key>` in
    /// `authentication.k8s.io`), the uid (`uids` in `authentication.k8s.io`).
    pub fn checks(&self) -> Result<Vec<RequestAttributes>, ImpersonationError> {
        if !self.validate()? {
            return Ok(Vec::new());
        }
        let user = self.user().unwrap_or_default();
        let imp = |group: &str, resource: &str, name: &str| {
            RequestAttributes::resource_request("impersonate", group, resource).with_name(name)
        };
        let mut checks = Vec::with_capacity(1 + self.groups.len() + self.extra.len() + 1);
        checks.push(match split_service_account(user) {
            Some((ns, name)) => imp("", "serviceaccounts", name).with_namespace(ns),
            None => imp("", "users", user),
        });
        for group in &self.groups {
            checks.push(imp("", "groups", group));
        }
        for (key, values) in &self.extra {
            for value in values {
                checks
                    .push(imp("authentication.k8s.io", "userextras", value).with_subresource(key));
            }
        }
        if let Some(uid) = &self.uid {
            checks.push(imp("authentication.k8s.io", "uids", uid));
        }
        Ok(checks)
    }

    /// The identity the request proceeds as (legacy filter, see
    /// [`impersonated_groups`]). `None` when not impersonating.
    pub fn impersonated_subject(&self) -> Option<Subject> {
        let user = self.user()?;
        Some(Subject {
            user: user.to_owned(),
            groups: impersonated_groups(user, &self.groups),
        })
    }
}

/// The groups the API server gives `user` impersonated with `groups`
/// (legacy filter): a service account without requested groups gets
/// `system:serviceaccounts` and `system:serviceaccounts:<ns>`; then
/// `system:authenticated` is added unless it or `system:unauthenticated` is
/// present (`system:unauthenticated` instead for `system:anonymous`).
pub fn impersonated_groups(user: &str, groups: &[String]) -> Vec<String> {
    let mut groups = groups.to_vec();
    if groups.is_empty() {
        if let Some((ns, _)) = split_service_account(user) {
            groups.push("system:serviceaccounts".to_owned());
            groups.push(format!("system:serviceaccounts:{ns}"));
        }
    }
    let has = |g: &str| groups.iter().any(|x| x == g);
    if user == "system:anonymous" {
        if !has("system:unauthenticated") {
            groups.push("system:unauthenticated".to_owned());
        }
    } else if !has("system:authenticated") && !has("system:unauthenticated") {
        groups.push("system:authenticated".to_owned());
    }
    groups
}

/// `serviceaccount.SplitUsername`: `system:serviceaccount:<ns>:<name>` with a DNS-1123
/// label namespace and a DNS-1123 subdomain name, else `None` (a plain user).
pub fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let rest = user.strip_prefix(SA_PREFIX)?;
    let mut parts = rest.split(':');
    let (ns, name) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_dns1123_label(ns) || !is_dns1123_subdomain(name) {
        return None;
    }
    Some((ns, name))
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// The extra key of an `Impersonate-Extra-<suffix>` header as the API server decodes
/// it: lower-cased first, then percent-decoded; if decoding fails (or is not UTF-8)
/// the lower-cased suffix is kept verbatim. `+` is not a space.
pub fn decode_extra_key(suffix: &str) -> String {
    let lower = suffix.to_lowercase();
    match percent_encoding::percent_decode_str(&lower).decode_utf8() {
        Ok(decoded) if valid_escapes(&lower) => decoded.into_owned(),
        _ => lower,
    }
}

fn valid_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if !(i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

impl PolicySet {
    /// Whether `subject` may impersonate what `request` names in `cluster_id`: every
    /// check of [`ImpersonationRequest::checks`] must be allowed. A request that
    /// impersonates nothing is allowed ("not impersonating"); groups, extra or uid
    /// without a user are an error (the API server answers 400).
    pub fn can_impersonate<'s>(
        &self,
        subject: impl Into<SubjectRef<'s>>,
        cluster_id: &str,
        request: &ImpersonationRequest,
    ) -> Result<Decision, ImpersonationError> {
        let subject = subject.into();
        let checks = request.checks()?;
        if checks.is_empty() {
            return Ok(Decision::allow("not impersonating"));
        }
        let mut first_reason = None;
        for attrs in &checks {
            let decision = self.decide(subject, cluster_id, attrs);
            if !decision.allowed {
                return Ok(decision);
            }
            first_reason.get_or_insert(decision.reason);
        }
        let user = request.user().unwrap_or_default();
        Ok(Decision::allow(format!(
            "may impersonate {user:?} ({} checks passed; user: {})",
            checks.len(),
            first_reason.unwrap_or_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames() {
        assert_eq!(
            split_service_account("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        assert_eq!(
            split_service_account("system:serviceaccount:ns:a.b-c"),
            Some(("ns", "a.b-c"))
        );
        for plain in [
            "system:serviceaccount:Foo:default",
            "system:serviceaccount:ns",
            "system:serviceaccount:ns:sa:extra",
            "system:serviceaccount::sa",
            "system:serviceaccount:-ns:sa",
            "system:serviceaccount:ns:Sa",
            "system:serviceaccounts:ns:sa",
            "alice",
        ] {
            assert_eq!(split_service_account(plain), None, "{plain}");
        }
        let long = format!("system:serviceaccount:{}:sa", "a".repeat(64));
        assert_eq!(split_service_account(&long), None);
    }

    #[test]
    fn extra_keys_decode_like_the_apiserver() {
        assert_eq!(decode_extra_key("Scopes"), "scopes");
        assert_eq!(
            decode_extra_key("Test.example.com%2fthing.thing"),
            "test.example.com/thing.thing"
        );
        // lower-casing happens before unescaping
        assert_eq!(decode_extra_key("%41bc"), "abc".replace('a', "A"));
        // a bad escape keeps the lower-cased suffix verbatim; `+` is not a space
        assert_eq!(decode_extra_key("Almost%ZZpercent"), "almost%zzpercent");
        assert_eq!(decode_extra_key("a+b"), "a+b");
        assert_eq!(decode_extra_key("trailing%2"), "trailing%2");
    }

    #[test]
    fn checks_and_resulting_identity() {
        let req = ImpersonationRequest {
            user: Some("system:serviceaccount:ci:bot".into()),
            uid: Some("42".into()),
            groups: vec![],
            extra: vec![("scopes".into(), vec!["a".into(), "b".into()])],
        };
        let checks = req.checks().unwrap();
        let summary: Vec<_> = checks
            .iter()
            .map(|c| {
                (
                    c.api_group.as_str(),
                    c.combined_resource().into_owned(),
                    c.namespace.as_str(),
                    c.name.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("", "serviceaccounts".to_owned(), "ci", "bot"),
                (
                    "authentication.k8s.io",
                    "userextras/scopes".to_owned(),
                    "",
                    "a"
                ),
                (
                    "authentication.k8s.io",
                    "userextras/scopes".to_owned(),
                    "",
                    "b"
                ),
                ("authentication.k8s.io", "uids".to_owned(), "", "42"),
            ]
        );
        assert!(checks
            .iter()
            .all(|c| c.verb == "impersonate" && c.is_resource_request));
        let who = req.impersonated_subject().unwrap();
        assert_eq!(
            who.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated"
            ]
        );

        let given = ImpersonationRequest {
            user: Some("bob".into()),
            groups: vec!["devs".into()],
            ..Default::default()
        };
        assert_eq!(
            given.impersonated_subject().unwrap().groups,
            ["devs", "system:authenticated"]
        );
        let unauth = ImpersonationRequest {
            user: Some("bob".into()),
            groups: vec!["system:unauthenticated".into()],
            ..Default::default()
        };
        assert_eq!(
            unauth.impersonated_subject().unwrap().groups,
            ["system:unauthenticated"]
        );
        let anon = ImpersonationRequest {
            user: Some("system:anonymous".into()),
            ..Default::default()
        };
        assert_eq!(
            anon.impersonated_subject().unwrap().groups,
            ["system:unauthenticated"]
        );
        assert_eq!(ImpersonationRequest::default().impersonated_subject(), None);
        assert_eq!(
            ImpersonationRequest::default().checks().unwrap(),
            Vec::new()
        );
    }
}
