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
