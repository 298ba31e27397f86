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
        StreamingKubectl::spawn(self.command(args))
    }

    /// `kubectl exec -i <pod> -- cat` over `transport`: what goes in on
    /// stdin comes back on stdout (the fake apiserver's container is `cat`).
    pub fn assert_exec(&self, pod: &str, transport: Transport) {
        self.assert_stdin_echoed(&["exec", "-i", pod, "--", "cat"], transport);
    }

    /// `kubectl attach -i <pod>` over `transport`: what goes in on stdin
    /// comes back on stdout (the fake's container, `cat`, reads its stdin).
    pub fn assert_attach(&self, pod: &str, transport: Transport) {
        self.assert_stdin_echoed(&["attach", "-i", "-q", pod], transport);
    }

    fn assert_stdin_echoed(&self, args: &[&str], transport: Transport) {
        let input = format!("stdin over {transport:?}\n");
        let mut command = self.command(args);
        if transport == Transport::Spdy {
            command.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
        }
        let output = run_with_timeout(command, Some(&input), Duration::from_secs(60));
        assert!(
            output.status.success(),
            "kubectl {args:?} over {transport:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout), input);
    }

    /// `kubectl port-forward pod/<pod> :<port>` over `transport` to a port
    /// the pod does not serve: a connection to the local port is closed
    /// without data, and kubectl reports the kubelet's error (read from the
    /// error stream or channel) naming the port.
    pub fn assert_port_forward_refused(&self, pod: &str, port: u16, transport: Transport) {
        let mut command =
            self.command(&["port-forward", &format!("pod/{pod}"), &format!(":{port}")]);
        if transport == Transport::Spdy {
            command.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
        }
        let mut forward = StreamingKubectl::spawn(command);
        let line = forward.wait_for("Forwarding from 127.0.0.1:", Duration::from_secs(30));
        let local: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no local port in {line:?}"));
        let mut connection =
            std::net::TcpStream::connect(("127.0.0.1", local)).expect("connect to the local port");
        connection
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut received = Vec::new();
        let _ = std::io::Read::read_to_end(&mut connection, &mut received);
        let stderr = forward.kill_for_stderr();
        assert!(received.is_empty(), "data from a port nobody serves");
        assert!(
            stderr.contains(&format!("error forwarding port {port} to pod {pod}")),
            "port-forward over {transport:?} to port {port}: {stderr}"
        );
    }

    /// `kubectl port-forward pod/<pod> :http` over `transport`: bytes sent
    /// to the local port come back (the fake's pods run an echo server on
    /// their `http` port), on two connections one after the other.
    pub fn assert_port_forward(&self, pod: &str, transport: Transport) {
        let mut command = self.command(&["port-forward", &format!("pod/{pod}"), ":http"]);
        if transport == Transport::Spdy {
            command.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
        }
        let mut forward = StreamingKubectl::spawn(command);
        let line = forward.wait_for("Forwarding from 127.0.0.1:", Duration::from_secs(30));
        let port: u16 = line
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no local port in {line:?}"));
        for round in 0..2 {
            let sent =
                format!("round {round} through port-forward over {transport:?}\n").repeat(100);
            let mut connection = std::net::TcpStream::connect(("127.0.0.1", port))
                .expect("connect to the local port");
            connection
                .set_read_timeout(Some(Duration::from_secs(30)))
                .expect("timeout");
            connection.write_all(sent.as_bytes()).expect("send");
            connection
                .shutdown(std::net::Shutdown::Write)
                .expect("half-close");
            let mut received = Vec::new();
            let read = std::io::Read::read_to_end(&mut connection, &mut received);
            if read.is_err() || received != sent.as_bytes() {
                panic!(
                    "port-forward over {transport:?}: {read:?}, {} of {} bytes back; kubectl:\n{}",
                    received.len(),
                    sent.len(),
                    forward.kill_for_stderr()
                );
            }
        }
    }
}

/// How kubectl carries exec and port-forward streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// kubectl's default since 1.30 (exec, `v5.channel.k8s.io`) and 1.31
    /// (port-forward, SPDY tunnelled in `SPDY/3.1+portforward.k8s.io`).
    WebSocket,
    /// SPDY/3.1 after an HTTP/1.1 upgrade, what kubectl falls back to
    /// (forced with `KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false` and
    /// `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).
    Spdy,
}

impl Transport {
    /// The `Upgrade` header a request over this transport carries.
    pub fn upgrade_header(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Spdy => "SPDY/3.1",
        }
    }
}

impl StreamingKubectl {
    fn spawn(mut command: Command) -> Self {
        let mut child = command
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
                let stderr = self.kill_for_stderr();
                panic!("kubectl printed no line within {timeout:?}; stderr:\n{stderr}");
            }
        }
    }

    /// Stops kubectl and returns what it printed on stderr.
    pub fn kill_for_stderr(&mut self) -> String {
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
        }
        stderr
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

/// Real kubectl's exec, attach and port-forward to `pod`, over WebSocket
/// and over SPDY, through whatever `kubeconfig` points at and ending at
/// `fake`: each works, and `fake` saw the upgrade the transport implies (so
/// a silent fallback from one to the other cannot pass for it).
pub fn assert_exec_attach_and_port_forward(
    kubeconfig: &Kubeconfig,
    fake: &crate::fake_apiserver::FakeApiServer,
    pod: &str,
) {
    for transport in [Transport::WebSocket, Transport::Spdy] {
        for (verb, check) in [
            (
                "exec",
                Kubeconfig::assert_exec as fn(&Kubeconfig, &str, Transport),
            ),
            ("attach", Kubeconfig::assert_attach),
            ("portforward", Kubeconfig::assert_port_forward),
        ] {
            check(kubeconfig, pod, transport);
            let path = format!("/api/v1/namespaces/default/pods/{pod}/{verb}");
            let seen = fake
                .last_request(&path)
                .unwrap_or_else(|| panic!("{path} never reached the apiserver"));
            let upgrade = seen
                .headers
                .get("upgrade")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(
                upgrade.eq_ignore_ascii_case(transport.upgrade_header()),
                "{verb} over {transport:?} arrived as {} with Upgrade {upgrade:?}",
                seen.method
            );
            let method = if transport == Transport::Spdy {
                "POST"
            } else {
                "GET"
            };
            assert_eq!(seen.method, method, "{verb} over {transport:?}");
        }
    }
}
