//! The fake kube-apiserver itself: real kubectl against it directly, and its
//! impersonation semantics, so the proxy tests can trust it.

use std::time::Duration;

use http::Request;
use http_body_util::Full;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer, PROXY_USER},
    kubectl::{assert_exec_attach_and_port_forward, Kubeconfig, Transport},
};

async fn fake() -> FakeApiServer {
    FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_works_directly_against_the_fake() {
    let server = fake().await;
    let kube = Kubeconfig::new(&server.url(), server.ca_pem().as_bytes(), server.token());
    let kube = std::sync::Arc::new(kube);
    let run = |args: &'static [&'static str]| {
        let kube = kube.clone();
        tokio::task::spawn_blocking(move || kube.ok(args))
    };
    let pods = run(&["get", "pods"]).await.unwrap();
    assert!(pods.contains("web-1") && pods.contains("Running"), "{pods}");
    let whoami = run(&["auth", "whoami"]).await.unwrap();
    assert!(whoami.contains(PROXY_USER), "{whoami}");
    let resources = run(&["api-resources"]).await.unwrap();
    assert!(
        resources.contains("pods") && resources.contains("selfsubjectreviews"),
        "{resources}"
    );
    let explain = run(&["explain", "pods.spec"]).await.unwrap();
    assert!(explain.contains("containers"), "{explain}");
    let kube2 = kube.clone();
    let exec = tokio::task::spawn_blocking(move || {
        kube2.run(
            &["exec", "-i", "web-1", "--", "cat"],
            Some("hello through exec\n"),
        )
    })
    .await
    .unwrap();
    assert!(
        exec.status.success(),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "hello through exec\n"
    );
}

/// The kubelet's streaming endpoints as kubectl uses them: exec, attach and
/// port-forward, each over WebSocket (kubectl's default) and SPDY/3.1.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_exec_attach_and_port_forward_over_websocket_and_spdy() {
    let server = fake().await;
    let kube = Kubeconfig::new(&server.url(), server.ca_pem().as_bytes(), server.token());
    tokio::task::block_in_place(|| assert_exec_attach_and_port_forward(&kube, &server, "web-1"));
    // A port the pod does not serve: the kubelet's error reaches kubectl.
    for transport in [Transport::WebSocket, Transport::Spdy] {
        tokio::task::block_in_place(|| kube.assert_port_forward_refused("web-1", 9, transport));
    }
    // kube-rs: the kubelet's own WebSocket protocol, `v4.channel.k8s.io`.
    paddock_tests::kube_client::assert_port_forward(&kube, "web-1").await;
    let seen = server
        .last_request("/api/v1/namespaces/default/pods/web-1/portforward")
        .unwrap();
    assert_eq!(
        seen.headers["sec-websocket-protocol"],
        "v5.channel.k8s.io, v4.channel.k8s.io"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_watch_and_logs_stream() {
    let server = fake().await;
    let kube = Kubeconfig::new(&server.url(), server.ca_pem().as_bytes(), server.token());
    let mut watch = kube.spawn_lines(&["get", "pods", "-w"]);
    watch.wait_for("web-1", Duration::from_secs(30));
    // Wait until the watch is open, then feed an event.
    for _ in 0..200 {
        if server.watchers() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.add_pod("default", "web-2");
    let line =
        tokio::task::spawn_blocking(move || watch.wait_for("web-2", Duration::from_secs(30)))
            .await
            .unwrap();
    assert!(line.contains("Running"), "{line}");

    server.send_log_line("web-1", "first line");
    let mut logs = kube.spawn_lines(&["logs", "-f", "web-1"]);
    assert_eq!(logs.next_line(Duration::from_secs(30)), "first line");
    server.send_log_line("web-1", "second line");
    assert_eq!(logs.next_line(Duration::from_secs(30)), "second line");
}

async fn get_with(server: &FakeApiServer, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let client = TestClient::new(server.ca_pem().as_bytes(), Protocol::Http1, None);
    let mut request = Request::post(format!(
        "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
        server.url()
    ))
    .header("authorization", format!("Bearer {}", server.token()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client.fetch(request.body(Full::from("{}")).unwrap()).await;
    (response.status(), response.json())
}

#[tokio::test]
async fn applies_the_impersonation_filter_semantics() {
    let server = fake().await;
    for (headers, status) in [
        (&[("impersonate-group", "g")][..], 400),
        (&[("impersonate-uid", "1")][..], 400),
        (&[("impersonate-extra-scopes", "x")][..], 400),
        (
            &[("impersonate-user", ""), ("impersonate-group", "g")][..],
            400,
        ),
    ] {
        assert_eq!(get_with(&server, headers).await.0, status, "{headers:?}");
    }
    let (status, review) = get_with(
        &server,
        &[
            ("impersonate-user", "alice"),
            ("impersonate-group", "a,b"),
            ("impersonate-group", "dev"),
            ("impersonate-extra-Test.example.com%2fthing.thing", "v1"),
            ("impersonate-extra-%41bc", "v2"),
            ("impersonate-extra-bad%zzkey", "v3"),
        ],
    )
    .await;
    assert_eq!(status, 201);
    let user = &review["status"]["userInfo"];
    assert_eq!(user["username"], "alice");
    assert_eq!(
        user["groups"],
        serde_json::json!(["a,b", "dev", "system:authenticated"])
    );
    assert_eq!(
        user["extra"]["test.example.com/thing.thing"],
        serde_json::json!(["v1"])
    );
    assert_eq!(user["extra"]["Abc"], serde_json::json!(["v2"]));
    assert_eq!(user["extra"]["bad%zzkey"], serde_json::json!(["v3"]));

    let (_, review) = get_with(
        &server,
        &[("impersonate-user", "system:serviceaccount:ns1:sa")],
    )
    .await;
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:ns1",
            "system:authenticated"
        ])
    );
}

#[tokio::test]
async fn refuses_callers_and_records_violations() {
    let server = fake().await;
    let client = TestClient::new(server.ca_pem().as_bytes(), Protocol::Http2, None);
    let url = format!("{}/api/v1/namespaces/default/pods", server.url());
    assert_eq!(client.get(&url, None).await.status(), 401);
    assert!(server.violations().is_empty());
    assert_eq!(client.get(&url, Some("a-caller-token")).await.status(), 500);
    let request = Request::get(&url)
        .header("authorization", format!("Bearer {}", server.token()))
        .header("x-remote-user", "mallory")
        .body(Full::default())
        .unwrap();
    assert_eq!(client.fetch(request).await.status(), 500);
    assert_eq!(server.violations().len(), 2, "{:?}", server.violations());
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.assert_clean()));
    assert!(panicked.is_err());
    // This test provoked its violations; the Drop check must see none left.
    assert_eq!(server.take_violations().len(), 2);
}
