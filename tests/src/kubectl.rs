//! Running the real `kubectl` against a server, with a kubeconfig written
//! for the test.

use std::{
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::Duration,
};

/// Where kubectl is expected; the test fails with an install hint if it is missing.
pub fn kubectl_binary() -> PathBuf {
    let path = std::env::var_os("KUBECTL").map_or_else(|| PathBuf::from("kubectl"), PathBuf::from);
    let found = Command::new(&path)
        .args(["version", "--client"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "kubectl is not installed: install the Debian package 'kubectl' (Kubernetes or Google Cloud apt \
         repository) or put a kubectl binary on PATH (or set KUBECTL)"
    );
    path
}

/// A kubeconfig file in a temporary directory.
#[derive(Debug)]
pub struct Kubeconfig {
    dir: tempfile::TempDir,
}

impl Kubeconfig {
    /// A kubeconfig for `server`, trusting `ca_pem`, authenticating with a bearer `token`.
    pub fn new(server: &str, ca_pem: &[u8], token: &str) -> Self {
        Self::with_user(server, ca_pem, &format!("    token: {token}\n"))
    }

    /// A kubeconfig whose user section is `user_yaml` (indented four spaces).
    pub fn with_user(server: &str, ca_pem: &[u8], user_yaml: &str) -> Self {
        use base64::Engine;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: test\n  user:\n{user_yaml}contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: default\ncurrent-context: test\n"
        );
        std::fs::write(dir.path().join("config"), config).expect("write kubeconfig");
        Self { dir }
    }

    /// A kubeconfig file holding exactly `yaml` (e.g. one Paddock handed out).
    pub fn from_yaml(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("config"), yaml).expect("write kubeconfig");
        Self { dir }
    }

    /// The kubeconfig's path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// A kubectl command using this kubeconfig and a private cache directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(kubectl_binary());
        command
            .arg("--kubeconfig")
            .arg(self.path())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path());
        command
    }

    /// Runs kubectl to completion (at most `timeout`), feeding `stdin`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_with_timeout(self.command(args), stdin, Duration::from_secs(60))
    }

    /// Runs kubectl and asserts it succeeded; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args, None);
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts a long-running kubectl (`get -w`, `logs -f`) whose stdout lines arrive on a channel.
    pub fn spawn_lines(&self, args: &[&str]) -> StreamingKubectl {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        StreamingKubectl { child, lines: rx }
    }
}

/// A kubectl that keeps running; killed on drop.
#[derive(Debug)]
pub struct StreamingKubectl {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl StreamingKubectl {
    /// The next stdout line, waiting at most `timeout`; panics with stderr on timeout.
    pub fn next_line(&mut self, timeout: Duration) -> String {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => line,
            Err(_) => {
                let _ = self.child.kill();
                let mut stderr = String::new();
                if let Some(mut err) = self.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
                panic!("kubectl printed no line within {timeout:?}; stderr:\n{stderr}");
            }
        }
    }

    /// Waits for a line containing `needle`, skipping others.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self.next_line(left);
            if line.contains(needle) {
                return line;
            }
        }
    }
}

impl Drop for StreamingKubectl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a command with a deadline; kills it when the deadline passes.
pub fn run_with_timeout(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(timeout).is_err() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    });
    let output = child.wait_with_output().expect("wait");
    let _ = tx.send(());
    output
}

/// Writes `contents` to `dir/name` and returns the path.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).expect("write");
    path
}
