//! A cluster that takes a connection and never answers: an ordinary
//! request ends with a 504 `Timeout` Status after the cluster's
//! `requestTimeoutSeconds`, and a watch, which may stay open for as long as
//! the cluster keeps it, is not cut by it. Through the real `paddock`
//! binary, so the deadline is the one its worker threads keep.

use std::time::{Duration, Instant};

use paddock_tests::{
    client::{Protocol, TestClient},
    kubectl::write_file,
    paddock::Paddock,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_cluster_times_out_ordinary_requests_but_not_watches() {
    // Connections are taken (the kernel's backlog) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tokens = write_file(dir.path(), "tokens.csv", "alice-token,alice,1,\n");
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            "clusters:\n  - id: silent\n    default: true\n    server: http://{}\n    requestTimeoutSeconds: 1\n    dangerous: {{allowPlaintext: true}}\n",
            silent.local_addr().unwrap()
        ),
    );
    let args: Vec<String> = [
        "--config",
        config.to_str().unwrap(),
        "--token-auth-file",
        tokens.to_str().unwrap(),
        "--authorization",
        "allow-authenticated",
    ]
    .map(str::to_owned)
    .into();
    let paddock = Paddock::start(env!("CARGO_BIN_EXE_paddock").as_ref(), &args);
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let pods = format!("{}/api/v1/namespaces/default/pods", paddock.url());

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
