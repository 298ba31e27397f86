//! The fake kube-apiserver as a standalone process, for the load benchmark
//! and for people trying Paddock without a cluster.
//!
//! ```sh
//! cargo run -p paddock-tests --bin fake-apiserver -- --listen 127.0.0.1:6443 \
//!     --token proxy-sa-token --cert-dir /tmp/fake
//! # CA in /tmp/fake/ca.crt; the proxy authenticates with "Bearer proxy-sa-token".
//! ```
//!
//! `--max-streams N` sets the HTTP/2 streams allowed per connection
//! (default 100, as kube-apiserver allows). `--plain-http` serves HTTP/1.1
//! without TLS; `--http1-only` serves TLS whose ALPN offers only
//! `http/1.1` (an API server behind a proxy that speaks no HTTP/2).

use std::path::PathBuf;

use paddock_tests::fake_apiserver::{FakeApiConfig, FakeApiServer};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mut config = FakeApiConfig {
        pods: vec![("default".to_owned(), "bench".to_owned())],
        ..FakeApiConfig::default()
    };
    if let Some(listen) = arg(&args, "--listen") {
        config.listen = listen.parse()?;
    }
    if let Some(token) = arg(&args, "--token") {
        config.token = token;
    }
    if let Some(streams) = arg(&args, "--max-streams") {
        config.max_streams = streams.parse()?;
    }
    config.plain_http = args.iter().any(|a| a == "--plain-http");
    config.http1_only = args.iter().any(|a| a == "--http1-only");
    let server = FakeApiServer::start(config).await?;
    if let Some(dir) = arg(&args, "--cert-dir").map(PathBuf::from) {
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("ca.crt"), server.ca_pem())?;
    }
    // Announce where we listen: scripts wait for this line.
    eprintln!("fake-apiserver listening on {}", server.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
