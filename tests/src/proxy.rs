//! Paddock as a library, served in-process on a loopback port with a
//! generated certificate: the least powerful way to test the whole stack
//! over real TLS and HTTP.

use std::time::Duration;

use proxy_core::{server::tls::ServerTls, ProxyBuilder};
use tokio::{sync::oneshot, task::JoinHandle};

/// A proxy serving in this process.
#[derive(Debug)]
pub struct ProxyUnderTest {
    url: String,
    ca_pem: Vec<u8>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl ProxyUnderTest {
    /// Builds `builder` and serves it on 127.0.0.1:0.
    pub async fn start(builder: ProxyBuilder) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = ServerTls::self_signed(dir.path(), &[]).expect("self-signed TLS");
        let ca_pem = tls.ca_pem.clone().expect("generated CA");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", listener.local_addr().expect("addr"));
        let proxy = builder.build().expect("proxy builds");
        let (stop, stopped) = oneshot::channel::<()>();
        let config = tls.server_config().expect("server config");
        let task = tokio::spawn(proxy.serve(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            ca_pem,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The CA to trust.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// Starts a graceful shutdown; `wait` for it to finish.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for the server to finish, at most `timeout`.
    pub async fn wait(&mut self, timeout: Duration) {
        let task = self.task.take().expect("already waited");
        tokio::time::timeout(timeout, task)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked")
            .expect("server failed");
    }
}

impl Drop for ProxyUnderTest {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
