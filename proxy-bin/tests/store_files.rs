//! The data directory and the store file as the binary leaves them: mode
//! 0700, and a damaged or empty store refused with a clean error (never a
//! panic, never re-created, the file untouched).

use std::{
    io::Write,
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Output, Stdio},
};

use paddock_tests::paddock::Paddock;

/// A valid address no local interface has (TEST-NET-1, RFC 5737): a
/// `serve` that got past the store fails to bind instead of running on.
const UNBINDABLE: &str = "192.0.2.1:0";

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

/// `paddock <args> --data-dir <data>` with no kubeconfig to discover.
fn run(args: &[&str], data: &Path, stdin: &str) -> Output {
    let mut child = paddock_tests::paddock::without_proxy_env(&mut Command::new(bin()))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("KUBECONFIG")
        .env("HOME", data.parent().expect("a parent"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("paddock starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("stdin written");
    child.wait_with_output().expect("paddock ran")
}

/// Asserts that `output` is the clean refusal of a corrupt store.
fn assert_refused(args: &[&str], output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} {what}: started");
    assert_ne!(
        output.status.code(),
        Some(101),
        "{args:?} {what}: panicked: {stderr}"
    );
    assert!(
        stderr.contains("corrupt") && stderr.contains("paddock.redb"),
        "{args:?} {what}: {stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "{args:?} {what}: a panic message: {stderr}"
    );
}

#[test]
fn serve_creates_the_data_directory_0700() {
    let paddock = Paddock::start(bin(), &[]);
    let data = paddock.data_dir();
    for dir in [data.clone(), data.join("tls")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn an_empty_store_is_refused_not_recreated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let store = data.join("paddock.redb");
    std::fs::write(&store, b"").unwrap();
    for args in [
        &["serve", "--listen", UNBINDABLE][..],
        &["user", "list"][..],
    ] {
        let output = run(args, &data, "");
        assert_refused(args, &output, "on an empty store");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("empty"),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(std::fs::metadata(&store).unwrap().len(), 0, "{args:?}");
        assert!(
            !data.join("bootstrap-password").exists(),
            "{args:?} created a new bootstrap admin"
        );
    }
}

/// Garbage over each page of a real store in turn: the CLI and the server
/// either work (an unused page) or refuse it cleanly, never exit 101, and
/// leave the file as it was.
#[test]
fn a_store_damaged_mid_file_is_refused_cleanly_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for user in ["alice", "bob", "carol"] {
        let added = run(&["user", "add", user], &data, "a long enough password\n");
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
    }
    let store = data.join("paddock.redb");
    let pristine = std::fs::read(&store).unwrap();
    let garbage: Vec<u8> = (0..512u32).map(|i| (i * 37 + 11) as u8).collect();
    let mut refused = Vec::new();
    for offset in (4096..pristine.len()).step_by(4096) {
        let mut damaged = pristine.clone();
        damaged[offset..offset + garbage.len()].copy_from_slice(&garbage);
        std::fs::write(&store, &damaged).unwrap();
        let args = &["user", "list"][..];
        let output = run(args, &data, "");
        if !output.status.success() {
            assert_refused(args, &output, &format!("damaged at {offset}"));
            assert!(
                std::fs::read(&store).unwrap() == damaged,
                "damaged at {offset}: the file was written"
            );
            refused.push(damaged);
        }
    }
    let damaged = refused
        .first()
        .expect("no damaged page was noticed: the test damages nothing");
    std::fs::write(&store, damaged).unwrap();
    let args = &["serve", "--listen", UNBINDABLE][..];
    let output = run(args, &data, "");
    assert_refused(args, &output, "on a damaged store");
    assert!(
        std::fs::read(&store).unwrap() == *damaged,
        "serve wrote to the damaged store"
    );
}
