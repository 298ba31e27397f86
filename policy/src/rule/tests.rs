//! `RuleAllows` tables: `TestResourceMatches` (`pkg/apis/rbac/helpers_test.go`),
//! `TestRuleMatches` and `TestAuthorizer` (`rbac_test.go`) and the rule semantics in `docs/facts.md` §3.

use super::*;

fn res(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> RequestAttributes {
    RequestAttributes::resource_request(verb, group, resource)
        .with_subresource(sub)
        .with_name(name)
        .with_namespace("ns")
}

fn url(verb: &str, path: &str) -> RequestAttributes {
    RequestAttributes::non_resource_request(verb, path)
}

#[test]
fn resource_matches_table() {
    #[rustfmt::skip]
    let rows: &[(&[&str], &str, &str, bool)] = &[
        (&["*"], "foo", "", true),
        (&["doesn't match", "*"], "foo", "", true),
        (&["foo/bar"], "foo", "bar", true),
        (&["foo/bar"], "foo", "", false),
        (&["*/scale"], "foo", "scale", true),
        (&["*/scale"], "foo", "", false),
        (&["foo/bar", "*/other"], "foo", "other/segment", false),
        (&["*/other/segment"], "foo", "other/segment", true),
        (&[""], "foo", "other/segment", false),
        (&["/"], "foo", "other/segment", false),
        (&["*/"], "foo", "other/segment", false),
        (&["*something/other/segment"], "foo", "other/segment", false),
        (&["something/other/segment"], "foo", "other/segment", false),
        // `pods/*` is a literal, not a wildcard
        (&["pods/*"], "pods", "log", false),
        (&["pods/*"], "pods", "*", true),
        // `*/*` only matches a one-character subresource `*`
        (&["*/*"], "pods", "log", false),
        (&["*/*"], "pods", "*", true),
        (&["pods"], "pods", "status", false),
        (&["pods/status"], "pods", "", false),
        (&[], "pods", "", false),
    ];
    for (resources, resource, sub, want) in rows {
        let rule = PolicyRule::new(&["get"], &[""], resources);
        assert_eq!(
            rule.allows(&res("get", "", resource, sub, "")),
            *want,
            "{resources:?} vs {resource}/{sub}"
        );
    }
}

#[test]
fn verbs_and_groups() {
    let rule = PolicyRule::new(&["get"], &[""], &["pods"]);
    assert!(rule.allows(&res("get", "", "pods", "", "")));
    assert!(
        !rule.allows(&res("GET", "", "pods", "", "")),
        "verbs are case-sensitive"
    );
    assert!(!rule.allows(&res("list", "", "pods", "", "")));
    assert!(!rule.allows(&res("get", "apps", "pods", "", "")));
    let star = PolicyRule::new(&["*"], &["*"], &["*"]);
    assert!(
        star.allows(&res("", "", "pods", "", "")),
        "* matches the empty verb"
    );
    assert!(star.allows(&res(
        "escalate",
        "rbac.authorization.k8s.io",
        "roles",
        "",
        "x"
    )));
    assert!(!PolicyRule::new(&[], &["*"], &["*"]).allows(&res("get", "", "pods", "", "")));
    assert!(!PolicyRule::new(&["*"], &[], &["*"]).allows(&res("get", "", "pods", "", "")));
    assert!(!PolicyRule::new(&["*"], &["Apps"], &["*"]).allows(&res("get", "apps", "pods", "", "")));
}

#[test]
fn resource_names() {
    let named = PolicyRule::new(&["get", "list"], &[""], &["pods"]).with_names(&["a", "*"]);
    assert!(named.allows(&res("get", "", "pods", "", "a")));
    assert!(
        named.allows(&res("get", "", "pods", "", "*")),
        "* is a literal name"
    );
    assert!(!named.allows(&res("get", "", "pods", "", "b")));
    assert!(
        !named.allows(&res("list", "", "pods", "", "")),
        "no name never matches names"
    );
    // a list narrowed by `metadata.name` carries the name and matches
    assert!(named.allows(&res("list", "", "pods", "", "a")));
    // an empty list allows any name, including none
    let any = PolicyRule::new(&["get"], &[""], &["pods"]);
    assert!(any.allows(&res("get", "", "pods", "", "")));
    assert!(any.allows(&res("get", "", "pods", "", "z")));
}

#[test]
fn non_resource_urls() {
    #[rustfmt::skip]
    let rows: &[(&[&str], &str, bool)] = &[
        (&["*"], "/anything", true),
        (&["/healthz"], "/healthz", true),
        (&["/healthz"], "/healthz/", false),
        (&["/healthz/*"], "/healthz", false),
        (&["/healthz/*"], "/healthz/etcd", true),
        (&["/api*"], "/apis", true),
        (&["/api*"], "/api/v1", true),
        (&["/api**"], "/apis", true),
        (&["/apis/*"], "/api", false),
        (&[], "/healthz", false),
    ];
    for (urls, path, want) in rows {
        let rule = PolicyRule::urls(&["get"], urls);
        assert_eq!(rule.allows(&url("get", path)), *want, "{urls:?} vs {path}");
    }
    let rule = PolicyRule::urls(&["get"], &["*"]);
    assert!(!rule.allows(&url("post", "/healthz")));
}

#[test]
fn resource_and_url_rules_do_not_cross() {
    let resources = PolicyRule::new(&["*"], &["*"], &["*"]);
    assert!(!resources.allows(&url("get", "/healthz")));
    let urls = PolicyRule::urls(&["*"], &["*"]);
    assert!(!urls.allows(&res("get", "", "pods", "", "")));
}

#[test]
fn yaml_field_names() {
    let rule: PolicyRule = serde_norway::from_str(
        "verbs: [get]\napiGroups: ['']\nresources: [pods]\nresourceNames: [a]\nnonResourceURLs: [/x]\n",
    )
    .unwrap();
    assert_eq!(rule.api_groups, [""]);
    assert_eq!(rule.resource_names, ["a"]);
    assert_eq!(rule.non_resource_urls, ["/x"]);
    assert!(!rule.is_full_wildcard());
    assert!(PolicyRule::new(&["*"], &["*"], &["*"]).is_full_wildcard());
    assert!(!PolicyRule::new(&["*"], &["*"], &["*"])
        .with_names(&["x"])
        .is_full_wildcard());
}
