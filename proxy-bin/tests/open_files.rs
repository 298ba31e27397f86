//! `paddock` raises its soft open-file limit to the hard limit at start:
//! every client connection is a file descriptor.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// `(soft, hard)` "Max open files" of a running process, from /proc.
fn open_file_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("/proc limits");
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("a Max open files line");
    let mut fields = line["Max open files".len()..].split_whitespace();
    (
        fields.next().expect("soft").to_owned(),
        fields.next().expect("hard").to_owned(),
    )
}

#[test]
fn serve_raises_the_soft_open_file_limit_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("paddock.log");
    // A low soft limit, as many systems set by default.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\"")
        .arg(env!("CARGO_BIN_EXE_paddock"))
        .arg(dir.path().join("data"))
        .env_remove("KUBECONFIG")
        .env("HOME", dir.path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("sh runs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("paddock listening")
    {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "paddock exited with {status}: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "paddock did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (soft, hard) = open_file_limits(child.id());
    let _ = child.kill();
    let _ = child.wait();
    assert_ne!(hard, "256", "the hard limit is 256: nothing to raise to");
    assert_eq!(soft, hard, "the soft open-file limit was not raised");
}
