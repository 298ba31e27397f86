//! The `paddock` command line: exit codes and messages operators script against.

use std::process::Command;

fn paddock() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paddock"));
    paddock_tests::paddock::without_proxy_env(&mut command);
    command
}

fn write_config(dir: &tempfile::TempDir, yaml: &str) -> std::path::PathBuf {
    let path = dir.path().join("paddock.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn config_check_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        "listen: 127.0.0.1:9443\nauthorization: allow-authenticated\nclusters:\n  - id: prod\n    default: true\n    server: https://10.0.0.1:6443\n",
    );
    let output = paddock()
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid (1 cluster(s)"));
}

#[test]
fn bad_config_exits_64_naming_the_key_path() {
    let cases = [
        (
            "clusters:\n  - id: prod\n    server: not a url\n",
            "clusters[0].server",
        ),
        (
            "clusters:\n  - id: prod\n    server: https://x\n    tokenFile: /nonexistent/token\n",
            "clusters[0].tokenFile",
        ),
        ("tls:\n  certFile: /etc/hostname\n", "tls.keyFile"),
        ("listen: [1, 2]\n", "listen"),
        (
            "authentication:\n  tokenFiel: x\n",
            "authentication.tokenFiel",
        ),
    ];
    for (yaml, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(&dir, yaml);
        for args in [
            &["config", "check", "--config"][..],
            &["serve", "--config"][..],
        ] {
            let output = paddock().args(args).arg(&config).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(64), "{args:?} {yaml}: {stderr}");
            assert!(
                stderr.contains(key),
                "{args:?}: {stderr:?} does not name {key}"
            );
        }
    }
}

#[test]
fn bad_flags_exit_64_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let output = paddock()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--upstream",
            "ftp://nowhere",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("clusters[0].server"), "{stderr}");
}

#[test]
fn missing_config_file_exits_64() {
    let output = paddock()
        .args(["config", "check", "--config", "/nonexistent/paddock.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/paddock.yaml"));
}

#[test]
fn a_corrupt_store_stops_serve_and_the_cli_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let store = data.join("paddock.redb");
    let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&store, &garbage).unwrap();
    for args in [
        vec!["serve", "--listen", "127.0.0.1:0"],
        vec!["user", "list"],
    ] {
        let output = paddock()
            .args(&args)
            .arg("--data-dir")
            .arg(&data)
            .env_remove("KUBECONFIG")
            .env("HOME", dir.path())
            .output()
            .unwrap();
        assert!(
            !output.status.success(),
            "{args:?} started on a corrupt store"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("corrupt") && stderr.contains("paddock.redb"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&store).unwrap(),
            garbage,
            "{args:?} modified the corrupt store"
        );
    }
}

/// Paddock's bearer token and the caller's identity must not cross the
/// network in clear unless the operator says so under `dangerous`.
#[test]
fn a_plaintext_cluster_is_refused_unless_dangerous_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
    )
    .unwrap();
    let by_config = write_config(
        &dir,
        "clusters:\n  - id: prod\n    server: http://127.0.0.1:1\n",
    );
    let data = dir.path().join("data");
    let serve = |extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> =
            vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
        args.push("--data-dir".into());
        args.push(data.clone().into());
        args.extend(extra.iter().map(Into::into));
        args
    };
    let check = vec![
        "config".into(),
        "check".into(),
        "--config".into(),
        by_config.clone().into(),
    ];
    let refused: [Vec<std::ffi::OsString>; 4] = [
        check,
        serve(&["--config", by_config.to_str().unwrap()]),
        serve(&["--upstream", "http://127.0.0.1:1"]),
        serve(&["--kubeconfig", kubeconfig.to_str().unwrap()]),
    ];
    for args in refused {
        let output = paddock_tests::paddock::run_to_exit(paddock().args(&args));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(
            stderr.contains("clusters[0]") && stderr.contains("allowPlaintext"),
            "{args:?}: {stderr}"
        );
    }

    let allowed = write_config(
        &dir,
        "clusters:\n  - id: prod\n    server: http://127.0.0.1:1\n    dangerous: {allowPlaintext: true}\n",
    );
    let output = paddock()
        .args(["config", "check", "--config"])
        .arg(&allowed)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
}
