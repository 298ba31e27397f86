//! Timeouts the worker threads keep, through the real `paddock` binary:
//! a cluster that takes a connection and never answers ends an ordinary
//! request with a 504 `Timeout` Status after the cluster's
//! `requestTimeoutSeconds` (a watch, which may stay open for as long as
//! the cluster keeps it, is not cut by it); a client that stops sending a
//! request head is disconnected after `limits.headerReadTimeoutSeconds`.

use std::time::{Duration, Instant};

use paddock_tests::{
    client::{Protocol, TestClient},
    kubectl::write_file,
    paddock::Paddock,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Paddock in front of a cluster that takes connections (the kernel's
/// backlog) and never answers, with a one-second request timeout and
/// header read timeout; alice's token allowed everything.
struct Silent {
    paddock: Paddock,
    _cluster: std::net::TcpListener,
    _dir: tempfile::TempDir,
}

impl Silent {
    fn start() -> Self {
        let cluster = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let tokens = write_file(dir.path(), "tokens.csv", "alice-token,alice,1,\n");
        let config = write_file(
            dir.path(),
            "paddock.yaml",
            &format!(
                "limits: {{headerReadTimeoutSeconds: 1, idleTimeoutSeconds: 300}}\n\
                 clusters:\n  - id: silent\n    default: true\n    server: http://{}\n    \
                 requestTimeoutSeconds: 1\n    dangerous: {{allowPlaintext: true}}\n",
                cluster.local_addr().unwrap()
            ),
        );
        let args = [
            "--config",
            config.to_str().unwrap(),
            "--token-auth-file",
            tokens.to_str().unwrap(),
            "--authorization",
            "allow-authenticated",
        ]
        .map(str::to_owned);
        Self {
            paddock: Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args),
            _cluster: cluster,
            _dir: dir,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_cluster_times_out_ordinary_requests_but_not_watches() {
    let silent = Silent::start();
    let client = TestClient::new(&silent.paddock.ca_pem(), Protocol::Http1, None);
    let pods = format!("{}/api/v1/namespaces/default/pods", silent.paddock.url());

    // Each worker keeps its own deadlines: a few requests reach both.
    for _ in 0..4 {
        let started = Instant::now();
        let response = client.get(&pods, Some("alice-token")).await;
        assert_eq!(response.status(), 504, "{}", response.text());
        assert!(started.elapsed() >= Duration::from_secs(1));
        let status: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Timeout");
        assert!(
            status["message"].as_str().unwrap().contains("silent"),
            "{status}"
        );
    }

    // A watch waits for as long as the cluster takes.
    let watch = format!("{pods}?watch=true");
    let watch = client.get(&watch, Some("alice-token"));
    assert!(
        tokio::time::timeout(Duration::from_secs(3), watch)
            .await
            .is_err(),
        "a watch ended within three times the request timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_that_stops_arriving_is_cut_off() {
    let silent = Silent::start();
    // New connections go to the worker with the fewest: both are tried.
    for _ in 0..4 {
        let mut tls = paddock_tests::tls::connect(
            &silent.paddock.url(),
            &silent.paddock.ca_pem(),
            b"http/1.1",
        )
        .await;
        // A whole request first: answered, and the connection kept.
        tls.write_all(b"GET /paddock/healthz HTTP/1.1\r\nhost: paddock\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"ok\n") {
            let mut chunk = [0; 1024];
            let read = tls.read(&mut chunk).await.unwrap();
            assert_ne!(read, 0, "{}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..read]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
        // Then half a head, and nothing more.
        tls.write_all(b"GET /paddock/healthz HTTP/1.1\r\nhost:")
            .await
            .unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "the connection was still open after 30 s, with a 1 s header read timeout"
        );
        assert!(started.elapsed() >= Duration::from_secs(1));
    }
}
