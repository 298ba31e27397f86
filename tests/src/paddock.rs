//! Runs the real `paddock` binary for end-to-end tests.

use std::{
    fs,
    io::Read,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

/// `--upstream`, `--upstream-ca` and `--upstream-token-file` for `fake`, its
/// CA and Paddock's credential written into `dir`.
pub fn upstream_args(fake: &crate::fake_apiserver::FakeApiServer, dir: &Path) -> Vec<String> {
    let ca = crate::kubectl::write_file(dir, "upstream-ca.crt", fake.ca_pem());
    let token = crate::kubectl::write_file(dir, "proxy-token", fake.token());
    vec![
        "--upstream".into(),
        fake.url(),
        "--upstream-ca".into(),
        ca.display().to_string(),
        "--upstream-token-file".into(),
        token.display().to_string(),
    ]
}

/// Clears `HTTPS_PROXY` and `NO_PROXY` (either case) for `command`: the
/// agent, the sidecar and `serve` honour them, and a test's traffic goes only to
/// the loopback and network-namespace addresses it creates, never to a
/// proxy the machine happens to name. A test of the proxy sets its own.
pub fn without_proxy_env(command: &mut Command) -> &mut Command {
    for name in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] {
        command.env_remove(name);
    }
    command
}

/// Runs `command` with `stdin` written to it and returns its output (a CLI
/// command reading a password, or nothing).
pub fn output_with_stdin(command: &mut Command, stdin: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

/// Runs `command` (a paddock command expected to exit by itself, such as
/// `serve` on a configuration it must refuse) and returns its output. One
/// that keeps running instead is killed after a minute and the test fails,
/// rather than hanging.
pub fn run_to_exit(command: &mut Command) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!(
                "{command:?} kept running; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// The port of the first log line holding `marker` and its address, as
/// `addr=<ip>:<port>` (text) or `"addr":"<ip>:<port>"` (JSON): how
/// Paddock's commands say where they listen.
pub fn logged_port(log: &str, marker: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(marker))?;
    let addr = match line.split_once("addr=") {
        Some((_, text)) => text.split_whitespace().next()?,
        None => line.split_once("\"addr\":\"")?.1.split('"').next()?,
    };
    addr.rsplit(':').next()?.parse().ok()
}

/// Waits (at most 15 s) until `child` logs `marker` with its address in
/// `log` and accepts connections there; returns the port. Panics with the
/// log if it exits first or takes longer.
pub fn wait_listening(child: &mut Child, log: &Path, marker: &str) -> u16 {
    let read = || fs::read_to_string(log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("exited early with {status}, before '{marker}':\n{}", read());
        }
        if let Some(port) = logged_port(&read(), marker) {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return port;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no '{marker}' within 15 s:\n{}", read());
}

/// A `paddock serve` child process on a free loopback port, with its own
/// data directory. Killed on drop; its log is printed if a test panics.
#[derive(Debug)]
pub struct Paddock {
    child: Option<Child>,
    port: u16,
    host: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    log: PathBuf,
    log_offset: u64,
}

impl Paddock {
    /// Starts `bin serve --listen 127.0.0.1:0 --data-dir <tmp> <args>` and
    /// waits until it logs the port it bound (no port races between tests).
    pub fn start(bin: &Path, args: &[String]) -> Self {
        Self::start_on(bin, "127.0.0.1", args)
    }

    /// [`Paddock::start`] with the environment variables `env` (say
    /// `HTTPS_PROXY`) set; those of the proxy are cleared otherwise.
    pub fn start_with_env(bin: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        Self::start_in(bin, "127.0.0.1", args, env)
    }

    /// [`Paddock::start`] listening on `host` (an address of this machine,
    /// e.g. one end of a veth pair) instead of 127.0.0.1.
    pub fn start_on(bin: &Path, host: &str, args: &[String]) -> Self {
        Self::start_in(bin, host, args, &[])
    }

    fn start_in(bin: &Path, host: &str, args: &[String], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("paddock.log");
        let mut paddock = Self {
            child: None,
            port: 0,
            host: host.to_owned(),
            args: args.to_vec(),
            env: env
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            dir,
            log,
            log_offset: 0,
        };
        paddock.spawn(bin, 0);
        paddock
    }

    /// Kills the process and starts it again on the same address, port and
    /// data directory.
    pub fn restart(&mut self, bin: &Path) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let port = self.port;
        self.spawn(bin, port);
    }

    /// Kills the process (a crash: no graceful shutdown).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn spawn(&mut self, bin: &Path, port: u16) {
        // A restart appends to the same log; the port line is searched from
        // the last start on.
        let log_file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        self.log_offset = fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let child = without_proxy_env(&mut Command::new(bin))
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .arg("serve")
            .arg("--listen")
            .arg(format!("{}:{port}", self.host))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("paddock exited early with {status}:\n{}", self.log());
            }
            if let Some(port) = self.logged_port() {
                if TcpStream::connect((self.host.as_str(), port)).is_ok() {
                    self.port = port;
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "paddock did not start listening within 15 s:\n{}",
            self.log()
        );
    }

    /// The port from the "paddock listening addr=127.0.0.1:<port>" log line.
    fn logged_port(&self) -> Option<u16> {
        let log = self.log();
        let since = log.get(usize::try_from(self.log_offset).ok()?..)?;
        logged_port(since, "paddock listening")
    }

    /// `https://<host>:<port>` (host 127.0.0.1 unless started elsewhere).
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its data directory (store, generated TLS, bootstrap password).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The bootstrap admin's one-time password.
    pub fn bootstrap_password(&self) -> String {
        fs::read_to_string(self.data_dir().join("bootstrap-password"))
            .expect("bootstrap password file")
            .trim()
            .to_owned()
    }

    /// Logs the bootstrap admin in over `client`, sets `new_password` (the
    /// required first step), and returns the admin's session token.
    pub async fn admin_session(
        &self,
        client: &crate::client::TestClient,
        new_password: &str,
    ) -> String {
        let url = |path: &str| format!("{}{path}", self.url());
        let login = client
            .send_json(
                http::Method::POST,
                &url("/paddock/v1/login"),
                None,
                &serde_json::json!({"username": "admin", "password": self.bootstrap_password()}),
            )
            .await;
        assert_eq!(login.status(), 200, "{}", login.text());
        let token = login.json()["token"].as_str().expect("token").to_owned();
        let changed = client
            .send_json(
                http::Method::POST,
                &url("/paddock/v1/password"),
                Some(&token),
                &serde_json::json!({"currentPassword": self.bootstrap_password(), "newPassword": new_password}),
            )
            .await;
        assert_eq!(changed.status(), 200, "{}", changed.text());
        token
    }

    /// Runs `bin <args> --data-dir <its data dir>` (a CLI command on the
    /// running server's store) with `stdin`, and returns its output.
    pub fn cli(&self, bin: &Path, args: &[&str], stdin: &str) -> std::process::Output {
        output_with_stdin(
            Command::new(bin)
                .args(args)
                .arg("--data-dir")
                .arg(self.data_dir()),
            stdin,
        )
    }

    /// The generated CA clients must trust.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("data/tls/ca.crt")
    }

    /// The CA as PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        fs::read(self.ca_path()).expect("paddock CA")
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("already waited");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "paddock did not exit within {timeout:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Paddock {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- paddock log ----\n{}", self.log());
        }
    }
}
