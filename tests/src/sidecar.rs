//! Runs the real `paddock sidecar` for end-to-end tests.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::paddock::wait_listening;

/// The arguments that point a sidecar at `center`'s replica feed for
/// `cluster`, with its registration token in `token_file` and its replica in
/// `data_dir`.
pub fn feed_args(
    center: &crate::paddock::Paddock,
    cluster: &str,
    token_file: &Path,
    data_dir: &Path,
) -> Vec<String> {
    vec![
        "--server".into(),
        center.url(),
        "--server-ca".into(),
        center.ca_path().display().to_string(),
        "--cluster".into(),
        cluster.into(),
        "--token-file".into(),
        token_file.display().to_string(),
        "--data-dir".into(),
        data_dir.display().to_string(),
    ]
}

/// A `paddock sidecar` child process. Killed on drop; its log is printed if
/// a test panics.
#[derive(Debug)]
pub struct Sidecar {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
}

impl Sidecar {
    /// Starts `bin sidecar --listen <listen> <args>` and waits until it
    /// logs the address it bound. `log` is its log file.
    pub fn start(bin: &Path, listen: &str, args: &[String], log: &Path) -> Self {
        Self::start_with_env(bin, listen, args, &[], log)
    }

    /// [`Sidecar::start`] with `env` added to its environment.
    pub fn start_with_env(
        bin: &Path,
        listen: &str,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Self {
        let _ = fs::write(log, "");
        let log_file = fs::File::create(log).expect("log file");
        let child = crate::paddock::without_proxy_env(&mut Command::new(bin))
            .arg("sidecar")
            .arg("--listen")
            .arg(listen)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,proxy_core::sidecar=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log file"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let mut child = child;
        let port = wait_listening(&mut child, log, "sidecar listening");
        Self {
            child: Some(child),
            port,
            log: log.to_owned(),
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of its request path (`--proxy-listen`), as it logged it.
    pub fn proxy_port(&self) -> u16 {
        crate::paddock::logged_port(&self.log(), "sidecar proxy listening")
            .expect("the sidecar logs its proxy's address (started with --proxy-listen?)")
    }

    /// `http://127.0.0.1:<port>/v1/authenticate`, the webhook.
    pub fn webhook_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/authenticate", self.port)
    }

    /// A webhook config file for kube-apiserver's
    /// `--authentication-token-webhook-config-file`, written into `dir`:
    /// exactly what the README tells operators to write.
    pub fn write_webhook_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("paddock-authn-webhook.yaml");
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: paddock-sidecar\n  cluster:\n    server: {}\n    insecure-skip-tls-verify: true\nusers:\n- name: kube-apiserver\n  user: {{}}\ncontexts:\n- name: webhook\n  context:\n    cluster: paddock-sidecar\n    user: kube-apiserver\ncurrent-context: webhook\n",
            self.webhook_url()
        );
        fs::write(&path, yaml).expect("write webhook config");
        path
    }

    /// `GET <path>` on its listener: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        http_request(self.port, "GET", path, "")
    }

    /// `POST /v1/authenticate` with `body`: status and body.
    pub fn review(&self, body: &str) -> (u16, String) {
        http_request(self.port, "POST", "/v1/authenticate", body)
    }

    /// Kills it (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- sidecar log ----\n{}", self.log());
        }
    }
}

/// One HTTP/1.1 request over a fresh connection (the sidecar is plain HTTP).
fn http_request(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the sidecar");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
