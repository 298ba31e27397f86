//! Registers many agent clusters and connects one idle agent to each,
//! all in this process (`proxy_core::agent::run` per cluster), then
//! reports Paddock's resident memory. Run by `benches/tunnel.sh`:
//!
//! ```sh
//! bash benches/tunnel.sh            # AGENTS=500
//! ```

use std::time::{Duration, Instant};

use proxy_core::{
    agent::{AgentConfig, AgentToken},
    upstream::{ClusterConfig, UpstreamCredential},
};

fn arg(args: &[String], name: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| panic!("missing {name}"))
}

fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let url = arg(&args, "--url");
    let ca = std::fs::read(arg(&args, "--ca"))?;
    let admin = arg(&args, "--admin-token");
    let pid = arg(&args, "--pid");
    let agents: usize = arg(&args, "--agents").parse()?;
    let upstream = arg(&args, "--upstream");
    let upstream_ca = std::fs::read(arg(&args, "--upstream-ca"))?;
    let upstream_token = arg(&args, "--upstream-token-file");

    let client =
        paddock_tests::client::TestClient::new(&ca, paddock_tests::client::Protocol::Http1, None);
    let before = rss_kib(&pid);
    let mut tokens = Vec::with_capacity(agents);
    for i in 0..agents {
        let created = client
            .send_json(
                http::Method::POST,
                &format!("{url}/paddock/v1/clusters"),
                Some(&admin),
                &serde_json::json!({ "id": format!("idle-{i}") }),
            )
            .await;
        anyhow::ensure!(created.status() == 201, "register: {}", created.text());
        tokens.push(
            created.json()["token"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let registered = rss_kib(&pid);
    let started = Instant::now();
    for token in tokens {
        let mut upstream_config = ClusterConfig::new("local", upstream.clone());
        upstream_config.ca_pem = Some(upstream_ca.clone());
        upstream_config.credential =
            UpstreamCredential::BearerTokenFile(upstream_token.clone().into());
        let mut config = AgentConfig::new(
            url.clone(),
            AgentToken::Value(token.into()),
            upstream_config,
        );
        config.ca_pem = Some(ca.clone());
        tokio::spawn(async move {
            let _ = proxy_core::agent::run(config, std::future::pending()).await;
        });
    }
    // Every agent connected: the listing says so.
    loop {
        let listed = client
            .get(&format!("{url}/paddock/v1/clusters"), Some(&admin))
            .await
            .json();
        let connected = listed["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|c| c["status"]["connected"] == true)
                    .count()
            })
            .unwrap_or(0);
        if connected >= agents {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(240),
            "only {connected} of {agents} agents connected"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let connected_in = started.elapsed();
    // Idle for a while: keepalive pings flow, allocations settle.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = rss_kib(&pid);
    let mib = |kib: u64| kib as f64 / 1024.0;
    eprintln!(
        "agents: {agents} registered and connected in {:.1} s",
        connected_in.as_secs_f64()
    );
    eprintln!(
        "paddock RSS: {:.1} MiB before, {:.1} MiB with {agents} clusters registered, \
         {:.1} MiB with their agents connected and idle ({:.1} KiB per tunnel); target < 100 MiB",
        mib(before),
        mib(registered),
        mib(after),
        after.saturating_sub(registered) as f64 / agents as f64
    );
    Ok(())
}
