//! Opens many concurrent idle watch streams through Paddock and reports
//! the proxy's resident memory before and after. Run by
//! `benches/watch-memory.sh`, which starts the fake apiserver and Paddock:
//!
//! ```sh
//! bash benches/watch-memory.sh            # WATCHES=10000
//! ```

use paddock_benches::rss_kib;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| panic!("missing {name}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url");
    let token = arg(&args, "--token");
    let pid = arg(&args, "--pid");
    let watches: usize = arg(&args, "--watches").parse()?;
    let per_connection: usize = arg(&args, "--per-connection").parse()?;
    let ca = std::fs::read(arg(&args, "--ca"))?;
    // Another process to report (the agent, when the watches go through a tunnel).
    let also = args
        .iter()
        .position(|a| a == "--also-pid")
        .and_then(|i| args.get(i + 1).cloned());
    let also_before = also.as_deref().map(rss_kib);

    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.as_slice()) {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();

    let before = rss_kib(&pid);
    let started = Instant::now();
    let connections = watches.div_ceil(per_connection);
    let mut tasks = Vec::with_capacity(watches);
    for c in 0..connections {
        // One client per connection: the legacy client keeps one HTTP/2 connection per host.
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_only()
            .enable_http2()
            .wrap_connector(http);
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        for i in 0..per_connection.min(watches - c * per_connection) {
            let client = client.clone();
            let request = Request::get(format!(
                "{url}/api/v1/namespaces/default/pods?watch=true&timeoutSeconds=3600&n={c}-{i}"
            ))
            .header("authorization", format!("Bearer {token}"))
            .body(Empty::new())?;
            tasks.push(tokio::spawn(async move { client.request(request).await }));
        }
    }
    let mut open = Vec::with_capacity(watches);
    for task in tasks {
        let response = task.await??;
        anyhow::ensure!(
            response.status() == 200,
            "watch refused: {}",
            response.status()
        );
        open.push(response);
    }
    let established = started.elapsed();
    // Let allocations settle (h2 windows, pools) before reading RSS.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rss_kib(&pid);
    let mib = |kib: u64| kib as f64 / 1024.0;
    eprintln!(
        "watches: {} open over {connections} HTTP/2 connections in {:.1} s",
        open.len(),
        established.as_secs_f64()
    );
    eprintln!(
        "paddock RSS: {:.1} MiB before, {:.1} MiB with the watches open ({:.1} KiB per watch); target < 124 MiB",
        mib(before),
        mib(after),
        (after.saturating_sub(before)) as f64 / open.len() as f64
    );
    if let (Some(pid), Some(before)) = (&also, also_before) {
        let after = rss_kib(pid);
        eprintln!(
            "process {pid} RSS: {:.1} MiB before, {:.1} MiB with the watches open ({:.1} KiB per watch)",
            mib(before),
            mib(after),
            (after.saturating_sub(before)) as f64 / open.len() as f64
        );
    }
    Ok(())
}
