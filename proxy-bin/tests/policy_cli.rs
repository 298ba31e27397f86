//! `paddock policy check | can-i | explain` against a policy directory.

use std::process::{Command, Output};

const POLICY: &str = r#"
apiVersion: management.cattle.io/v3
kind: Project
metadata: {name: p-dev, namespace: prod}
spec: {clusterName: prod, namespaces: [dev-a, dev-b]}
---
apiVersion: management.cattle.io/v3
kind: ProjectRoleTemplateBinding
metadata: {name: prtb-alice, namespace: p-dev}
projectName: prod:p-dev
userPrincipalName: alice
roleTemplateName: project-member
"#;

fn paddock(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paddock"))
        .args(args)
        .output()
        .unwrap()
}

fn policy_dir(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.yaml"), yaml).unwrap();
    dir
}

#[test]
fn can_i_answers_yes_or_no_with_exit_codes() {
    let dir = policy_dir(POLICY);
    let dir = dir.path().to_str().unwrap();
    let ask = |ns: &str| {
        paddock(&[
            "policy",
            "can-i",
            "--policy-dir",
            dir,
            "--user",
            "alice",
            "--cluster",
            "prod",
            "list",
            "pods",
            "-n",
            ns,
        ])
    };
    let yes = ask("dev-a");
    assert_eq!(String::from_utf8_lossy(&yes.stdout).trim(), "yes");
    assert_eq!(yes.status.code(), Some(0));
    let no = ask("kube-system");
    assert_eq!(String::from_utf8_lossy(&no.stdout).trim(), "no");
    assert_eq!(no.status.code(), Some(1));
}

#[test]
fn explain_names_the_binding_or_what_is_missing() {
    let dir = policy_dir(POLICY);
    let dir = dir.path().to_str().unwrap();
    let allowed = paddock(&[
        "policy",
        "explain",
        "--policy-dir",
        dir,
        "--user",
        "alice",
        "--cluster",
        "prod",
        "create",
        "deployments.apps",
        "-n",
        "dev-b",
    ]);
    let text = String::from_utf8_lossy(&allowed.stdout);
    assert!(
        text.contains("ProjectRoleTemplateBinding p-dev/prtb-alice"),
        "{text}"
    );
    assert!(text.contains("project-member"), "{text}");
    let denied = paddock(&[
        "policy",
        "explain",
        "--policy-dir",
        dir,
        "--user",
        "bob",
        "--group",
        "devs",
        "--cluster",
        "prod",
        "get",
        "secrets",
        "top",
        "-n",
        "dev-a",
    ]);
    let text = String::from_utf8_lossy(&denied.stdout);
    assert_eq!(denied.status.code(), Some(1));
    assert!(text.starts_with("no\n"), "{text}");
    assert!(text.contains("bob") && text.contains("devs"), "{text}");
}

#[test]
fn check_accepts_valid_and_rejects_broken_policy_naming_file_and_document() {
    let dir = policy_dir(POLICY);
    let ok = paddock(&[
        "policy",
        "check",
        "--policy-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(ok.status.success(), "{ok:?}");

    let broken = policy_dir(&format!(
        "{POLICY}---\napiVersion: management.cattle.io/v3\nkind: ProjectRoleTemplateBinding\nmetadata: {{name: x, namespace: p-dev}}\nprojectName: prod:p-dev\nuserPrincipalName: carol\nroleTemplateName: no-such-role\n"
    ));
    let out = paddock(&[
        "policy",
        "check",
        "--policy-dir",
        broken.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("policy.yaml"), "{stderr}");
    assert!(stderr.contains("document 3"), "{stderr}");
    assert!(stderr.contains("no-such-role"), "{stderr}");
}

/// Runs `paddock <args>` in `cwd` with `stdin`.
fn paddock_in(cwd: &std::path::Path, args: &[&str], stdin: &str) -> Output {
    paddock_tests::paddock::output_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_paddock"))
            .args(args)
            .current_dir(cwd),
        stdin,
    )
}

/// The store is the default policy source: a role binding made with
/// `paddock user bind` counts for `policy can-i` and `explain` as it does
/// for `serve`, found through --data-dir or the configuration's dataDir.
#[test]
fn can_i_and_explain_see_the_stores_role_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let data = cwd.join("data");
    let data = data.to_str().unwrap();
    let added = paddock_in(
        cwd,
        &["user", "add", "alice", "--data-dir", data],
        "a long enough password\n",
    );
    assert!(added.status.success(), "{added:?}");
    let bound = paddock_in(
        cwd,
        &[
            "user",
            "bind",
            "alice",
            "cluster-owner",
            "--cluster",
            "prod",
            "--data-dir",
            data,
        ],
        "",
    );
    assert!(bound.status.success(), "{bound:?}");
    let list = paddock_in(cwd, &["user", "list", "--data-dir", data], "");
    let list = String::from_utf8_lossy(&list.stdout);
    let id = list
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("alice"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("alice not listed: {list}"))
        .to_owned();
    let config = cwd.join("paddock.yaml");
    std::fs::write(&config, format!("dataDir: {data}\n")).unwrap();
    let config = config.to_str().unwrap();
    let question = [
        "--user",
        &id,
        "--cluster",
        "prod",
        "delete",
        "pods",
        "-n",
        "web",
    ];
    for location in [["--data-dir", data], ["--config", config]] {
        let can_i = paddock_in(
            cwd,
            &[&["policy", "can-i"], &location[..], &question].concat(),
            "",
        );
        assert_eq!(
            String::from_utf8_lossy(&can_i.stdout).trim(),
            "yes",
            "{location:?}: {can_i:?}"
        );
        assert_eq!(can_i.status.code(), Some(0));
        let explain = paddock_in(
            cwd,
            &[&["policy", "explain"], &location[..], &question].concat(),
            "",
        );
        let text = String::from_utf8_lossy(&explain.stdout);
        assert!(
            text.starts_with("yes\n") && text.contains("cluster-owner"),
            "{location:?}: {text}"
        );
    }
    // Without the store (a policy directory only, run where there is no
    // ./paddock-data) the binding is not there.
    let empty = policy_dir("");
    let without = paddock_in(
        cwd,
        &[
            &[
                "policy",
                "can-i",
                "--policy-dir",
                empty.path().to_str().unwrap(),
            ],
            &question[..],
        ]
        .concat(),
        "",
    );
    assert_eq!(
        String::from_utf8_lossy(&without.stdout).trim(),
        "no",
        "{without:?}"
    );
    // A data directory that was named must hold a store.
    let missing = paddock_in(
        cwd,
        &[
            &[
                "policy",
                "can-i",
                "--data-dir",
                empty.path().to_str().unwrap(),
            ],
            &question[..],
        ]
        .concat(),
        "",
    );
    assert_eq!(missing.status.code(), Some(64), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no Paddock store"));
}
