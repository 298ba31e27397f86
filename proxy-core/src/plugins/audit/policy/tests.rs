use super::*;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # Health checks are noise.
  - level: None
    nonResourceURLs: ["/healthz*", "/version"]
  # Secrets: never more than metadata (first match wins over the rule below).
  - level: Metadata
    resources: [{group: "", resources: ["secrets"]}]
  - level: None
    users: ["system:kube-proxy"]
    verbs: ["watch"]
  - level: RequestResponse
    userGroups: ["admins"]
    resources: [{group: "", resources: ["*"]}]
  - level: Request
    resources: [{group: "apps", resources: ["deployments/*"]}]
  - level: Request
    resources: [{group: "", resources: ["*/exec"]}]
  - level: Request
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["settings"]}]
    namespaces: ["kube-system"]
  - level: Metadata
    resources: [{group: "paddock.io", resources: ["tokens", "login"]}]
    omitStages: [ResponseStarted]
  - level: Metadata
    nonResourceURLs: ["/apis*"]
"#;

struct Case {
    name: &'static str,
    user: &'static str,
    group: &'static str,
    verb: &'static str,
    /// `group/resource/subresource` (empty for a non-resource request).
    resource: (&'static str, &'static str, &'static str),
    namespace: &'static str,
    object: &'static str,
    path: &'static str,
    level: Level,
}

const fn case(name: &'static str, level: Level) -> Case {
    Case {
        name,
        user: "alice",
        group: "devs",
        verb: "get",
        resource: ("", "", ""),
        namespace: "",
        object: "",
        path: "",
        level,
    }
}

#[test]
fn levels_follow_the_first_matching_rule() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let cases = [
        Case {
            path: "/healthz",
            ..case("exact non-resource prefix", Level::None)
        },
        Case {
            path: "/healthz/etcd",
            ..case("wildcard non-resource URL", Level::None)
        },
        Case {
            path: "/version",
            ..case("exact non-resource URL", Level::None)
        },
        Case {
            path: "/versions",
            ..case("no match is None", Level::None)
        },
        Case {
            path: "/apis/apps/v1",
            ..case("non-resource wildcard", Level::Metadata)
        },
        Case {
            resource: ("", "secrets", ""),
            group: "admins",
            ..case("first match wins over the admins rule", Level::Metadata)
        },
        Case {
            resource: ("", "pods", ""),
            group: "admins",
            ..case("group match, * resource", Level::RequestResponse)
        },
        Case {
            resource: ("", "pods", ""),
            user: "system:kube-proxy",
            verb: "watch",
            ..case("user and verb", Level::None)
        },
        Case {
            resource: ("", "pods", ""),
            user: "system:kube-proxy",
            ..case("user without the verb", Level::None)
        },
        Case {
            resource: ("apps", "deployments", ""),
            ..case("resource/* matches the resource", Level::Request)
        },
        Case {
            resource: ("apps", "deployments", "scale"),
            ..case("resource/* matches subresources", Level::Request)
        },
        Case {
            resource: ("", "deployments", ""),
            ..case("group must match", Level::None)
        },
        Case {
            resource: ("", "pods", "exec"),
            ..case("*/subresource", Level::Request)
        },
        Case {
            resource: ("", "pods", "log"),
            ..case("other subresource", Level::None)
        },
        Case {
            resource: ("", "configmaps", ""),
            namespace: "kube-system",
            object: "settings",
            ..case("resource name and namespace", Level::Request)
        },
        Case {
            resource: ("", "configmaps", ""),
            namespace: "default",
            object: "settings",
            ..case("other namespace", Level::None)
        },
        Case {
            resource: ("", "configmaps", ""),
            namespace: "kube-system",
            object: "other",
            ..case("other name", Level::None)
        },
        Case {
            resource: ("paddock.io", "tokens", ""),
            verb: "create",
            ..case("paddock's own resources", Level::Metadata)
        },
    ];
    for c in cases {
        let groups = [c.group.to_owned()];
        let names = [c.user];
        let (api_group, resource, subresource) = c.resource;
        let attributes = Attributes {
            user_names: &names,
            groups: &groups,
            verb: c.verb,
            is_resource_request: !resource.is_empty(),
            api_group,
            resource,
            subresource,
            namespace: c.namespace,
            name: c.object,
            path: c.path,
        };
        assert_eq!(policy.decide(&attributes).level, c.level, "{}", c.name);
    }
}

#[test]
fn omitted_stages_are_the_union_of_policy_and_rule() {
    let policy = Policy::from_yaml(POLICY).unwrap();
    let groups = [];
    let tokens = Attributes {
        user_names: &["alice"],
        groups: &groups,
        verb: "create",
        is_resource_request: true,
        api_group: "paddock.io",
        resource: "tokens",
        ..Attributes::default()
    };
    let decision = policy.decide(&tokens);
    assert!(!decision.records(Stage::RequestReceived));
    assert!(!decision.records(Stage::ResponseStarted));
    assert!(decision.records(Stage::ResponseComplete));
    let apis = Attributes {
        path: "/apis",
        verb: "get",
        ..Attributes::default()
    };
    let decision = policy.decide(&apis);
    assert!(!decision.records(Stage::RequestReceived));
    assert!(decision.records(Stage::ResponseStarted));
    let none = Attributes {
        path: "/healthz",
        ..Attributes::default()
    };
    assert!(!policy.decide(&none).records(Stage::ResponseComplete));
}

#[test]
fn without_a_file_everything_is_metadata() {
    let anything = Attributes {
        path: "/whatever",
        ..Attributes::default()
    };
    let decision = Policy::default().decide(&anything);
    assert_eq!(decision.level, Level::Metadata);
    assert!(!decision.records(Stage::RequestReceived));
    assert!(decision.records(Stage::ResponseStarted));
    assert!(decision.records(Stage::ResponseComplete));
}

#[test]
fn refuses_what_kube_apiserver_refuses() {
    for (text, expected) in [
        ("kind: Policy\nrules: []", "apiVersion: must be audit.k8s.io/v1"),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud",
            "rules[0].level: unknown variant `Loud`",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  user: [a]",
            "rules[0]: unknown field `user`",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/a]\n  namespaces: [b]",
            "rules[0]: rules cannot apply to both",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: ['/a*b']",
            "rules[0].nonResourceURLs[0]: '*' is only allowed at the end",
        ),
        (
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources: [{resources: ['*'], resourceNames: [x]}]",
            "rules[0].resources[0].resourceNames: may not be used with wildcard",
        ),
    ] {
        let error = Policy::from_yaml(text).unwrap_err().to_string();
        assert!(error.starts_with(expected), "{error:?} for {text:?}");
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    const LEVELS: &[&str] = &["None", "Metadata", "Request", "RequestResponse"];
    const USERS: &[&str] = &["alice", "bob"];
    const GROUPS: &[&str] = &["devs", "ops"];
    const VERBS: &[&str] = &["get", "list", "watch", "create"];
    const API_GROUPS: &[&str] = &["", "apps", "paddock.io"];
    const RESOURCES: &[&str] = &["pods", "pods/log", "pods/*", "*/log", "*", "deployments"];
    const NAMESPACES: &[&str] = &["", "ns1"];
    const URLS: &[&str] = &["/healthz", "/healthz*", "/api*", "*", "/version"];
    const PATHS: &[&str] = &["/healthz", "/healthz/etcd", "/api", "/version", "/"];

    fn some(from: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
        prop::collection::vec(prop::sample::select(from), 0..=2)
    }

    /// One rule, as policy-file YAML, and whether it is a resource rule
    /// (`Some(true)`), a non-resource one, or neither (it matches anything).
    fn rule() -> impl Strategy<Value = (String, Option<bool>)> {
        let resources =
            prop::collection::vec((prop::sample::select(API_GROUPS), some(RESOURCES)), 0..=2);
        (
            prop::sample::select(LEVELS),
            some(USERS),
            some(GROUPS),
            some(VERBS),
            prop::bool::ANY,
            resources,
            some(NAMESPACES),
            some(URLS),
        )
            .prop_map(
                |(level, users, groups, verbs, by_resource, resources, namespaces, urls)| {
                    let list = |v: &[&str]| format!("{v:?}");
                    let mut rule = format!(
                        "- level: {level}\n  users: {}\n  userGroups: {}\n  verbs: {}\n",
                        list(&users),
                        list(&groups),
                        list(&verbs)
                    );
                    let kind = if by_resource {
                        (!resources.is_empty() || !namespaces.is_empty()).then_some(true)
                    } else {
                        (!urls.is_empty()).then_some(false)
                    };
                    if by_resource {
                        let resources: Vec<String> = resources
                            .iter()
                            .map(|(g, r)| format!("{{group: {g:?}, resources: {}}}", list(r)))
                            .collect();
                        rule += &format!(
                            "  resources: [{}]\n  namespaces: {}\n",
                            resources.join(", "),
                            list(&namespaces)
                        );
                    } else {
                        rule += &format!("  nonResourceURLs: {}\n", list(&urls));
                    }
                    (rule, kind)
                },
            )
    }

    fn policy_text(rules: &[String]) -> String {
        format!(
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n{}",
            rules.concat()
        )
    }

    #[derive(Debug, Clone)]
    struct Request {
        user: &'static str,
        group: &'static str,
        verb: &'static str,
        resource: Option<(&'static str, &'static str, &'static str)>,
        namespace: &'static str,
        path: &'static str,
    }

    fn request() -> impl Strategy<Value = Request> {
        let resource = prop::option::of((
            prop::sample::select(API_GROUPS),
            prop::sample::select(&["pods", "deployments", "secrets"][..]),
            prop::sample::select(&["", "log", "scale"][..]),
        ));
        (
            prop::sample::select(USERS),
            prop::sample::select(GROUPS),
            prop::sample::select(VERBS),
            resource,
            prop::sample::select(NAMESPACES),
            prop::sample::select(PATHS),
        )
            .prop_map(|(user, group, verb, resource, namespace, path)| Request {
                user,
                group,
                verb,
                resource,
                namespace,
                path,
            })
    }

    fn decide(policy: &Policy, r: &Request) -> Level {
        let names = [r.user];
        let groups = [r.group.to_owned()];
        let (api_group, resource, subresource) = r.resource.unwrap_or_default();
        policy
            .decide(&Attributes {
                user_names: &names,
                groups: &groups,
                verb: r.verb,
                is_resource_request: r.resource.is_some(),
                api_group,
                resource,
                subresource,
                namespace: r.namespace,
                name: "",
                path: if r.resource.is_some() { "" } else { r.path },
            })
            .level
    }

    proptest! {
        /// Every generated policy parses, and a catch-all rule put first
        /// decides every request: the first match wins.
        #[test]
        fn a_first_catch_all_decides_everything(
            rules in prop::collection::vec(rule().prop_map(|(r, _)| r), 0..6),
            level in prop::sample::select(LEVELS),
            request in request(),
        ) {
            let policy = Policy::from_yaml(&policy_text(&rules)).unwrap();
            let mut first = vec![format!("- level: {level}\n")];
            first.extend(rules.iter().cloned());
            let caught = Policy::from_yaml(&policy_text(&first)).unwrap();
            prop_assert_eq!(decide(&caught, &request).to_string(), level);
            // A catch-all put last changes only what matched nothing.
            let mut last = rules.clone();
            last.push("- level: Metadata\n".to_owned());
            let fallback = Policy::from_yaml(&policy_text(&last)).unwrap();
            let before = decide(&policy, &request);
            let after = decide(&fallback, &request);
            if before == Level::None && !rules_match(&policy, &request) {
                prop_assert_eq!(after, Level::Metadata);
            } else {
                prop_assert_eq!(after, before);
            }
        }

        /// A resource rule never matches a non-resource request, nor a
        /// non-resource rule a resource request.
        #[test]
        fn resource_and_non_resource_rules_never_cross(
            (rule, kind) in rule(),
            request in request(),
        ) {
            // Level Metadata, so a match shows.
            let rule = rule.replacen(
                &rule[..rule.find('\n').unwrap()],
                "- level: Metadata",
                1,
            );
            let policy = Policy::from_yaml(&policy_text(&[rule])).unwrap();
            if kind.is_some_and(|by_resource| by_resource != request.resource.is_some()) {
                prop_assert_eq!(decide(&policy, &request), Level::None);
            }
        }
    }

    /// Whether some rule of `policy` matches (a `None` level included).
    fn rules_match(policy: &Policy, r: &Request) -> bool {
        let mut relabelled = policy.clone();
        for rule in &mut relabelled.rules {
            rule.level = Level::Metadata;
        }
        decide(&relabelled, r) != Level::None
    }
}
