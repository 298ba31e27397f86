//! Clusters registered at runtime and reached through `paddock agent`:
//! the real binary on both ends, real kubectl, the fake apiserver behind
//! the agent (in its own network namespace where the test says so); one
//! agent serving two replicas on one etcd; a dropped agent as an alert and
//! a metric.

use std::{
    fs,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use paddock_tests::{
    client::{Protocol, TestClient},
    etcd::EtcdCluster,
    fake_apiserver::{FakeApiConfig, FakeApiServer, FIREHOSE},
    kubectl::{assert_exec_attach_and_port_forward, write_file, Kubeconfig},
    metrics::scrape,
    netns::NetNs,
    paddock::Paddock,
    tls::TestCa,
    webhook,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_paddock");
const USER_TOKEN: &str = "tunnel-user-token";
const ADMIN_PASSWORD: &str = "Tunnel-admin-pass-1";

/// A `paddock agent` child process, killed on drop; its log printed if the
/// test fails.
struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    fn start(mut command: Command, dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = fs::File::create(&log).expect("agent log");
        let child = paddock_tests::paddock::without_proxy_env(&mut command)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start paddock agent");
        Self {
            child: Some(child),
            log,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log());
        }
    }
}

/// Registers cluster `edge`, starts its agent in front of `fake` and waits
/// until Paddock lists it connected.
async fn edge_agent(admin: &Admin, paddock: &Paddock, fake: &FakeApiServer, dir: &Path) -> Agent {
    let token = admin.register("edge").await;
    let mut command = Command::new(BIN);
    command.args(agent_args(paddock, &token, fake, dir));
    let agent = Agent::start(command, dir, "agent");
    admin.wait_connected("edge", true, &agent).await;
    agent
}

/// `paddock agent` arguments for `fake` (its CA and token written to `dir`).
fn agent_args(paddock: &Paddock, token: &str, fake: &FakeApiServer, dir: &Path) -> Vec<String> {
    agent_args_for(&[paddock.url()], &paddock.ca_path(), token, fake, dir)
}

/// `paddock agent` arguments dialling every one of `servers`, whose
/// certificates `ca` signed.
fn agent_args_for(
    servers: &[String],
    ca: &Path,
    token: &str,
    fake: &FakeApiServer,
    dir: &Path,
) -> Vec<String> {
    let fake_ca = write_file(dir, "fake-ca.crt", fake.ca_pem());
    let sa = write_file(dir, "agent-sa-token", fake.token());
    let mut args = vec!["agent".to_owned()];
    for server in servers {
        args.extend(["--server".to_owned(), server.clone()]);
    }
    args.extend([
        "--token".into(),
        token.into(),
        "--ca-file".into(),
        ca.display().to_string(),
        "--api-server".into(),
        fake.url(),
        "--api-ca-file".into(),
        fake_ca.display().to_string(),
        "--api-token-file".into(),
        sa.display().to_string(),
        "--initial-backoff-ms".into(),
        "200".into(),
    ]);
    args
}

/// Paddock with a static user token (any authenticated caller may do
/// anything) and, through `extra_args`, whatever else the test needs.
fn start_paddock(dir: &Path, host: &str, extra_args: &[String]) -> Paddock {
    start_paddock_with(dir, host, extra_args, "")
}

/// [`start_paddock`] with `extra_yaml` appended to its configuration file.
fn start_paddock_with(dir: &Path, host: &str, extra_args: &[String], extra_yaml: &str) -> Paddock {
    let tokens = write_file(
        dir,
        "tokens.csv",
        &format!("{USER_TOKEN},alice,u-alice,devs\n"),
    );
    let config = write_file(
        dir,
        "paddock.yaml",
        &format!("tls:\n  extraNames: [\"{host}\"]\n{extra_yaml}"),
    );
    let mut args = vec![
        "--config".into(),
        config.display().to_string(),
        "--token-auth-file".into(),
        tokens.display().to_string(),
        "--authorization".into(),
        "allow-authenticated".into(),
    ];
    args.extend_from_slice(extra_args);
    Paddock::start_on(Path::new(BIN), host, &args)
}

struct Admin {
    client: TestClient,
    base: String,
    token: String,
}

impl Admin {
    async fn new(paddock: &Paddock) -> Self {
        let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
        let token = paddock.admin_session(&client, ADMIN_PASSWORD).await;
        Self {
            client,
            base: paddock.url(),
            token,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.client
            .call_json(method, &url, &self.token, body.as_ref())
            .await
    }

    /// Registers agent cluster `id`; returns its registration token.
    async fn register(&self, id: &str) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/paddock/v1/clusters",
                Some(json!({"id": id})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let token = body["token"].as_str().expect("token").to_owned();
        assert!(
            body["agentCommand"].as_str().is_some_and(
                |c| c.contains(&token) && c.starts_with("paddock agent --server https://")
            ),
            "{body}"
        );
        assert!(body["manifest"]
            .as_str()
            .is_some_and(|m| m.contains("kind: Deployment")));
        token
    }

    /// Waits until cluster `id` reports `connected`.
    async fn wait_connected(&self, id: &str, connected: bool, agent: &Agent) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = self
                .call(Method::GET, &format!("/paddock/v1/clusters/{id}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            // Connected, and routable (the router follows the store within
            // a moment).
            if body["status"]["connected"] == json!(connected)
                && (!connected || body["routable"] == json!(true))
            {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "cluster {id} never became connected={connected}: {body}\nagent log:\n{}",
                agent.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn kubeconfig(paddock: &Paddock, cluster: &str) -> Kubeconfig {
    Kubeconfig::new(
        &format!("{}/k8s/clusters/{cluster}", paddock.url()),
        &paddock.ca_pem(),
        USER_TOKEN,
    )
}

/// Runs `kubectl args` until it succeeds (an agent reconnecting), at most 30 s.
fn kubectl_eventually(kubeconfig: &Kubeconfig, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output = kubeconfig.run(args, None);
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} kept failing: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The agent runs in a namespace that can reach Paddock but that Paddock
/// cannot reach, in front of the fake apiserver living there too: kubectl
/// get, watch, logs -f, exec, attach and port-forward (WebSocket and SPDY)
/// work through `/k8s/clusters/<id>/`; the agent survives a Paddock crash
/// and restart; a killed agent's cluster answers 503, not a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reaches_a_cluster_behind_nat_through_its_agent() {
    let dir = tempfile::tempdir().unwrap();
    let netns = NetNs::create();
    let fake = netns.fake_apiserver(FakeApiConfig {
        pods: vec![("default".into(), "web".into())],
        ..FakeApiConfig::default()
    });
    let host = netns.host_ip.to_string();
    let mut paddock = start_paddock(dir.path(), &host, &[]);
    // Nothing in the namespace can be dialled from here.
    assert!(
        TcpStream::connect_timeout(
            &(netns.ns_ip, fake.addr().port()).into(),
            Duration::from_secs(2)
        )
        .is_err(),
        "the fake apiserver must not be reachable from Paddock's side"
    );
    let admin = Admin::new(&paddock).await;
    let token = admin.register("edge").await;
    let mut command = netns.command(BIN);
    command.args(agent_args(&paddock, &token, &fake, dir.path()));
    let mut agent = Agent::start(command, dir.path(), "agent");
    let cluster = admin.wait_connected("edge", true, &agent).await;
    assert_eq!(
        cluster["status"]["kubernetesVersion"], "v1.32.4-fake",
        "{cluster}"
    );
    assert_eq!(cluster["connection"]["type"], "agent", "{cluster}");

    let kubectl = kubeconfig(&paddock, "edge");
    let pods = kubectl.ok(&["get", "pods"]);
    assert!(pods.contains("web"), "{pods}");
    let whoami = kubectl.ok(&["auth", "whoami"]);
    assert!(whoami.contains("alice"), "{whoami}");

    // A watch and a followed log stream through the tunnel.
    let mut watch = kubectl.spawn_lines(&["get", "pods", "-w", "--output-watch-events"]);
    watch.wait_for("web", Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.watchers() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.add_pod("default", "api");
    watch.wait_for("api", Duration::from_secs(20));
    let mut logs = kubectl.spawn_lines(&["logs", "-f", "web"]);
    // Lines reach only followers already connected: send until one arrives.
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                fake.send_log_line("web", "through-the-tunnel");
                std::thread::sleep(Duration::from_millis(200));
            }
        });
        logs.wait_for("through-the-tunnel", Duration::from_secs(20));
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });

    // exec over WebSocket: the fake's container is `cat`.
    let exec = kubectl.run(
        &["exec", "-i", "web", "--", "cat"],
        Some("stdin-through-the-tunnel\n"),
    );
    assert!(
        String::from_utf8_lossy(&exec.stdout).contains("stdin-through-the-tunnel"),
        "exec: {}",
        String::from_utf8_lossy(&exec.stderr)
    );
    drop((watch, logs));
    // exec, attach and port-forward over WebSocket and over SPDY/3.1: the
    // echo server behind `port-forward` lives in the namespace, next to
    // the fake apiserver.
    tokio::task::block_in_place(|| assert_exec_attach_and_port_forward(&kubectl, &fake, "web"));
    // A kube-rs client's port-forward: the `v4.channel.k8s.io` WebSocket.
    paddock_tests::kube_client::assert_port_forward(&kubectl, "web").await;

    // Paddock crashes and comes back: the agent reconnects by itself.
    paddock.restart(Path::new(BIN));
    let pods = kubectl_eventually(&kubectl, &["get", "pods"]);
    assert!(pods.contains("api"), "{pods}");
    assert!(agent.log().contains("reconnecting"), "{}", agent.log());

    // The agent dies: requests get a 503 Status saying so, after the
    // bounded wait for a reconnecting agent (kubectl itself would retry a
    // 503 with Retry-After: ask without retries).
    // A watch open through the tunnel when the agent dies ends with an
    // error, not a hang and not a clean end.
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let url = format!(
        "{}/k8s/clusters/edge/api/v1/namespaces/default/pods",
        paddock.url()
    );
    let watch = client
        .send(
            Request::get(format!("{url}?watch=true"))
                .header("authorization", format!("Bearer {USER_TOKEN}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    let mut watch = watch.into_body();
    agent.kill();
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match watch.frame().await {
                Some(Ok(_)) => continue,
                other => return other.map(|r| r.map(drop)),
            }
        }
    })
    .await
    .expect("the watch hung after its agent died");
    assert!(
        matches!(ended, Some(Err(_))),
        "the watch ended cleanly: {ended:?}"
    );

    let response = client.get(&url, Some(USER_TOKEN)).await;
    assert_eq!(response.status(), 503, "{}", response.text());
    let status = response.json();
    assert_eq!(status["reason"], "ServiceUnavailable", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("agent is not connected"),
        "{status}"
    );
    fake.assert_clean();
}

/// A wrong token, and a token after rotation or revocation, are refused
/// with 401 and logged; the agent keeps trying, with backoff, not in a
/// tight loop. Rotating or revoking also ends the tunnel the old token
/// opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_rotated_and_revoked_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let paddock = start_paddock(dir.path(), "127.0.0.1", &[]);
    let admin = Admin::new(&paddock).await;
    let token = admin.register("edge").await;
    let refusals = |paddock: &Paddock| paddock.log().matches("agent tunnel refused").count();

    let (id, _) = token.split_once('.').unwrap();
    let wrong = format!("{id}.not-the-secret");
    let command = |token: &str| {
        let mut command = Command::new(BIN);
        command.args(agent_args(&paddock, token, &fake, dir.path()));
        command
    };
    let mut agent = Agent::start(command(&wrong), dir.path(), "wrong");
    tokio::time::sleep(Duration::from_secs(3)).await;
    agent.kill();
    // 200 ms doubling (with jitter down to half): a handful in 3 s, never hundreds.
    let refused = refusals(&paddock);
    assert!(
        (2..=8).contains(&refused),
        "{refused} refusals:\n{}",
        paddock.log()
    );
    assert!(
        agent.log().contains("refused the registration token (401)"),
        "{}",
        agent.log()
    );
    let (status, body) = admin
        .call(Method::GET, "/paddock/v1/clusters/edge", None)
        .await;
    assert_eq!(
        (status, &body["status"]["connected"]),
        (200, &json!(false)),
        "{body}"
    );

    // The right token connects; rotating ends its tunnel and refuses it.
    let agent = Agent::start(command(&token), dir.path(), "right");
    admin.wait_connected("edge", true, &agent).await;
    let (status, rotated) = admin
        .call(Method::POST, "/paddock/v1/clusters/edge/token", None)
        .await;
    assert_eq!(status, 200, "{rotated}");
    let rotated = rotated["token"].as_str().unwrap().to_owned();
    assert_ne!(rotated, token);
    admin.wait_connected("edge", false, &agent).await;
    let before = refusals(&paddock);
    let deadline = Instant::now() + Duration::from_secs(20);
    while refusals(&paddock) == before {
        assert!(
            Instant::now() < deadline,
            "the old token was not refused:\n{}",
            paddock.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(agent);

    // The new token works until it is revoked.
    let agent = Agent::start(command(&rotated), dir.path(), "rotated");
    admin.wait_connected("edge", true, &agent).await;
    let (status, body) = admin
        .call(Method::DELETE, "/paddock/v1/clusters/edge/token", None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hasAgentToken"], false);
    admin.wait_connected("edge", false, &agent).await;
    let before = refusals(&paddock);
    let deadline = Instant::now() + Duration::from_secs(20);
    while refusals(&paddock) == before {
        assert!(
            Instant::now() < deadline,
            "the revoked token was not refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Never the token itself in Paddock's log.
    assert!(!paddock.log().contains(rotated.split_once('.').unwrap().1));
}

/// Clusters created and deleted through the API are routable, and then
/// not, without a restart; configured clusters are listed read-only; an
/// agent cluster without its agent answers 503 after the bounded wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_come_and_go_through_the_api_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let upstream = paddock_tests::paddock::upstream_args(&fake, dir.path());
    let paddock = start_paddock(dir.path(), "127.0.0.1", &upstream);
    let admin = Admin::new(&paddock).await;
    let token_file = write_file(dir.path(), "direct-token", fake.token());

    let direct = kubeconfig(&paddock, "direct");
    let missing = direct.run(&["get", "pods"], None);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));
    let (status, body) = admin
        .call(
            Method::POST,
            "/paddock/v1/clusters",
            Some(json!({
                "id": "direct",
                "displayName": "Direct one",
                "labels": {"env": "test"},
                "connection": {"type": "direct", "server": fake.url(), "caPem": fake.ca_pem(),
                               "tokenFile": token_file},
            })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert!(body.get("token").is_none(), "{body}");
    let pods = kubectl_eventually(&direct, &["get", "pods"]);
    assert!(pods.contains("web"), "{pods}");

    let (_, list) = admin.call(Method::GET, "/paddock/v1/clusters", None).await;
    let items = list["items"].as_array().unwrap();
    let configured = items.iter().find(|c| c["id"] == "default").expect("{list}");
    assert_eq!(configured["readOnly"], true);
    let registered = items.iter().find(|c| c["id"] == "direct").expect("{list}");
    assert_eq!(registered["labels"]["env"], "test");
    assert_eq!(
        registered["connection"]["caPem"], true,
        "a flag, not the PEM: {registered}"
    );
    let (status, _) = admin
        .call(Method::DELETE, "/paddock/v1/clusters/default", None)
        .await;
    assert_eq!(status, 400, "a configured cluster cannot be deleted here");

    let (status, body) = admin
        .call(Method::DELETE, "/paddock/v1/clusters/direct", None)
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = direct.run(&["get", "pods"], None);
        if String::from_utf8_lossy(&output.stderr).contains("NotFound") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted cluster is still routed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // An agent cluster whose agent never connected: 503 with a Status.
    admin.register("lonely").await;
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = loop {
        let response = client
            .get(
                &format!("{}/k8s/clusters/lonely/api/v1/pods", paddock.url()),
                Some(USER_TOKEN),
            )
            .await;
        if response.status() != 404 || Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(response.status(), 503, "{}", response.text());
    let status = response.json();
    assert_eq!(status["kind"], "Status");

    // What a user may use, with status, without issuing a token.
    let request = Request::get(format!("{}/paddock/v1/kubeconfig", paddock.url()))
        .header("authorization", format!("Bearer {}", admin.token))
        .header("accept", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let listed = admin.client.fetch(request).await;
    assert_eq!(listed.status(), 200, "{}", listed.text());
    let listed = listed.json();
    let status_of = |id: &str| {
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].clone())
    };
    assert_eq!(status_of("lonely"), Some(json!("disconnected")), "{listed}");
    assert_eq!(status_of("default"), Some(json!("direct")), "{listed}");
    assert_eq!(status_of("direct"), None, "deleted: {listed}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("agent is not connected"),
        "{status}"
    );
}

/// Head-of-line: a stream whose reader stalls holds only its own window;
/// another stream through the same tunnel keeps flowing, and the stalled
/// ones resume when read again. Enough stall that their windows together
/// pass any connection window short of HTTP/2's largest, on the tunnel
/// and on the agent's connection to its API server alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_does_not_block_the_tunnel() {
    const FLOW: usize = 32 << 20;
    const STALLED: usize = 24;
    let dir = tempfile::tempdir().unwrap();
    let mut pods: Vec<(String, String)> = (0..STALLED)
        .map(|i| ("default".into(), format!("{FIREHOSE}-stalled-{i}")))
        .collect();
    pods.push(("default".into(), format!("{FIREHOSE}-flowing")));
    let fake = FakeApiServer::start(FakeApiConfig {
        pods,
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let paddock = start_paddock(dir.path(), "127.0.0.1", &[]);
    let admin = Admin::new(&paddock).await;
    let _agent = edge_agent(&admin, &paddock, &fake, dir.path()).await;

    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let open = |pod: String| {
        let request = Request::get(format!(
            "{}/k8s/clusters/edge/api/v1/namespaces/default/pods/{pod}/log?follow=true",
            paddock.url()
        ))
        .header("authorization", format!("Bearer {USER_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
        client.send(request)
    };
    let mut stalled = Vec::new();
    for i in 0..STALLED {
        let response = open(format!("{FIREHOSE}-stalled-{i}")).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        // Read a little, then stop reading: the windows and buffers on the way fill up.
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        stalled.push(body);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let flowing = open(format!("{FIREHOSE}-flowing")).await.unwrap();
    assert_eq!(flowing.status(), 200);
    let mut flowing = flowing.into_body();
    let mut received = 0;
    while received < FLOW {
        let frame = tokio::time::timeout(Duration::from_secs(20), flowing.frame())
            .await
            .expect("the flowing stream stalled with the other")
            .unwrap()
            .unwrap();
        received += frame.data_ref().map_or(0, Bytes::len);
    }
    assert!(received >= FLOW);
    drop(flowing);

    // The stalled ones were only paused.
    let mut resumed = 0;
    let stalled = &mut stalled[0];
    while resumed < 4 << 20 {
        let frame = tokio::time::timeout(Duration::from_secs(20), stalled.frame())
            .await
            .expect("the stalled stream did not resume")
            .expect("the stalled stream ended")
            .unwrap_or_else(|e| panic!("the stalled stream failed after {resumed} bytes: {e:?}"));
        resumed += frame.data_ref().map_or(0, Bytes::len);
    }
}

/// The manifest a registration returns, and `agent.yaml` with the token
/// presented, install the agent: real kubectl accepts every object
/// (`apply --dry-run=client`, against the fake apiserver's discovery and
/// OpenAPI). Without the token, `agent.yaml` leaves the Secret out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_manifest_applies_with_kubectl() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let paddock = start_paddock(dir.path(), "127.0.0.1", &[]);
    let admin = Admin::new(&paddock).await;
    let (status, body) = admin
        .call(
            Method::POST,
            "/paddock/v1/clusters",
            Some(json!({"id": "edge"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap().to_owned();
    let from_registration = body["manifest"].as_str().unwrap().to_owned();
    assert!(from_registration.contains(&token));

    let url = format!(
        "{}/paddock/v1/clusters/edge/agent.yaml?image=registry.example/paddock:1",
        paddock.url()
    );
    let get = |with_token: bool| {
        let mut request =
            Request::get(&url).header("authorization", format!("Bearer {}", admin.token));
        if with_token {
            request = request.header("x-paddock-agent-token", &token);
        }
        admin
            .client
            .fetch(request.body(Full::new(Bytes::new())).unwrap())
    };
    let without = get(false).await;
    assert_eq!(without.status(), 200, "{}", without.text());
    assert!(!without.text().contains("kind: Secret"));
    let with = get(true).await;
    assert_eq!(with.status(), 200, "{}", with.text());
    let manifest = with.text();
    assert!(manifest.contains("kind: Secret") && manifest.contains(&token));
    assert!(manifest.contains("image: registry.example/paddock:1"));
    assert!(
        manifest.contains("--ca-file"),
        "the agent pins Paddock's CA"
    );

    let cluster = Kubeconfig::new(&fake.url(), fake.ca_pem().as_bytes(), fake.token());
    for yaml in [&from_registration, &manifest] {
        let file = write_file(dir.path(), "agent.yaml", yaml);
        let output = cluster.ok(&[
            "apply",
            "--dry-run=client",
            "-f",
            &file.display().to_string(),
        ]);
        for object in [
            "namespace/paddock-system",
            "serviceaccount/paddock-agent",
            "clusterrole.rbac.authorization.k8s.io/paddock-agent-impersonator",
            "clusterrolebinding.rbac.authorization.k8s.io/paddock-agent-impersonator",
            "secret/paddock-agent",
            "deployment.apps/paddock-agent",
        ] {
            assert!(
                output.contains(&format!("{object} created (dry run)")),
                "{output}"
            );
        }
    }
    // A token that is not the cluster's is refused, not embedded.
    let mut wrong = Request::get(&url).header("authorization", format!("Bearer {}", admin.token));
    wrong = wrong.header("x-paddock-agent-token", "edge.wrong");
    let wrong = admin
        .client
        .fetch(wrong.body(Full::new(Bytes::new())).unwrap())
        .await;
    assert_eq!(wrong.status(), 400, "{}", wrong.text());
}

/// Two replicas on one etcd, sharing a serving certificate and token
/// pepper; one agent (in its own namespace) given both as `--server`:
/// the cluster registered through A's API is connected and routable on
/// both, kubectl reaches it through each, and when A dies B goes on
/// serving it; A restarted gets its tunnel back without any action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_serves_its_cluster_through_every_replica() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = EtcdCluster::start(1);
    let netns = NetNs::create();
    let fake = netns.fake_apiserver(FakeApiConfig {
        pods: vec![("default".into(), "web".into())],
        ..FakeApiConfig::default()
    });
    let host = netns.host_ip.to_string();
    let ca = TestCa::new();
    let (cert, key) = ca.issue_server(&[&host]).write(dir.path(), "serving");
    let ca_file = write_file(dir.path(), "serving-ca.crt", ca.pem());
    let pepper = write_file(dir.path(), "token-pepper", &"5a".repeat(32));
    let tokens = write_file(
        dir.path(),
        "tokens.csv",
        &format!("{USER_TOKEN},alice,u-alice,devs\n"),
    );
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            "store:\n  backend: etcd\n  endpoints: [\"{}\"]\n  tokenPepperFile: {}\n\
             tls:\n  certFile: {}\n  keyFile: {}\n  caFile: {}\n",
            etcd.endpoints()[0],
            pepper.display(),
            cert.display(),
            key.display(),
            ca_file.display()
        ),
    );
    let args: Vec<String> = [
        "--config",
        &config.display().to_string(),
        "--token-auth-file",
        &tokens.display().to_string(),
        "--authorization",
        "allow-authenticated",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut a = Paddock::start_on(Path::new(BIN), &host, &args);
    let b = Paddock::start_on(Path::new(BIN), &host, &args);

    let client = TestClient::new(ca.pem().as_bytes(), Protocol::Http1, None);
    let token = a.admin_session(&client, ADMIN_PASSWORD).await;
    let admin_on = |replica: &Paddock| Admin {
        client: TestClient::new(ca.pem().as_bytes(), Protocol::Http1, None),
        base: replica.url(),
        token: token.clone(),
    };
    let (admin_a, admin_b) = (admin_on(&a), admin_on(&b));
    let registration = admin_a.register("edge").await;

    let mut command = netns.command(BIN);
    command.args(agent_args_for(
        &[a.url(), b.url()],
        &ca_file,
        &registration,
        &fake,
        dir.path(),
    ));
    let agent = Agent::start(command, dir.path(), "agent");
    admin_a.wait_connected("edge", true, &agent).await;
    admin_b.wait_connected("edge", true, &agent).await;

    let kubectl_on = |replica: &Paddock| {
        Kubeconfig::new(
            &format!("{}/k8s/clusters/edge", replica.url()),
            ca.pem().as_bytes(),
            USER_TOKEN,
        )
    };
    let (via_a, via_b) = (kubectl_on(&a), kubectl_on(&b));
    for kubectl in [&via_a, &via_b] {
        let pods = kubectl.ok(&["get", "pods"]);
        assert!(pods.contains("web"), "{pods}");
    }
    let proxied = |fake: &FakeApiServer| {
        fake.requests()
            .iter()
            .filter(|r| r.uri.starts_with("/api/v1/namespaces/default/pods"))
            .count()
    };
    assert_eq!(proxied(&fake), 2, "one request through each replica");

    // A dies: B still serves the cluster, over its own tunnel.
    a.kill();
    admin_b.wait_connected("edge", true, &agent).await;
    let exec = via_b.run(&["exec", "-i", "web", "--", "cat"], Some("after A died\n"));
    assert_eq!(
        String::from_utf8_lossy(&exec.stdout),
        "after A died\n",
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let pods = via_b.ok(&["get", "pods"]);
    assert!(pods.contains("web"), "{pods}");

    // A comes back on the same address: the agent redials it.
    a.restart(Path::new(BIN));
    admin_a.wait_connected("edge", true, &agent).await;
    let pods = kubectl_eventually(&via_a, &["get", "pods"]);
    assert!(pods.contains("web"), "{pods}");
    fake.assert_clean();
}

/// An agent's tunnel dropping is one `PaddockClusterUnreachable` alert
/// and `paddock_cluster_up` 0 for its cluster, at once (the health checker
/// is set to a round an hour, so only the tunnel's own events can say
/// it); the agent back is the alert resolved, once, and the gauge at 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_dropping_and_returning_is_one_alert_and_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let (url, mut posts) = webhook::receiver("/alertmanager").await;
    let paddock = start_paddock_with(
        dir.path(),
        "127.0.0.1",
        &[],
        &format!(
            "metrics:\n  listen: '127.0.0.1:0'\n\
             clusterHealth: {{intervalSeconds: 3600, timeoutSeconds: 2}}\n\
             alerts:\n  rules: {{clusterUnreachable: true}}\n  \
             receivers: [{{name: am, url: '{url}', format: alertmanagerWebhook}}]\n"
        ),
    );
    let metrics = paddock_tests::paddock::logged_port(&paddock.log(), "metrics listening")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("no metrics listener:\n{}", paddock.log()));
    let cluster_up = || async {
        scrape(&metrics)
            .await
            .value("paddock_cluster_up", &[("cluster", "edge")])
    };
    let until_up = |want: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster_up().await != Some(want) {
            assert!(
                Instant::now() < deadline,
                "paddock_cluster_up{{cluster=\"edge\"}} never {want}: {:?}",
                cluster_up().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let admin = Admin::new(&paddock).await;
    let token = admin.register("edge").await;
    let command = || {
        let mut command = Command::new(BIN);
        command.args(agent_args(&paddock, &token, &fake, dir.path()));
        command
    };
    let mut agent = Agent::start(command(), dir.path(), "agent");
    admin.wait_connected("edge", true, &agent).await;
    until_up(1.0).await;

    agent.kill();
    let fired = tokio::time::timeout(Duration::from_secs(20), posts.recv())
        .await
        .expect("no alert for the dropped tunnel within 20 s")
        .unwrap();
    assert_eq!(fired["status"], "firing", "{fired}");
    let alert = &fired["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "PaddockClusterUnreachable");
    assert_eq!(alert["labels"]["cluster"], "edge");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| s.contains("tunnel dropped")),
        "{alert}"
    );
    until_up(0.0).await;
    // Requests to the cluster meanwhile (503 after the bounded wait) are
    // no new signal: still the one alert.
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let down = client
        .get(
            &format!("{}/k8s/clusters/edge/api/v1/pods", paddock.url()),
            Some(USER_TOKEN),
        )
        .await;
    assert_eq!(down.status(), 503, "{}", down.text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(posts.try_recv().is_err(), "more than one call for one drop");

    let agent = Agent::start(command(), dir.path(), "agent-again");
    admin.wait_connected("edge", true, &agent).await;
    let resolved = tokio::time::timeout(Duration::from_secs(20), posts.recv())
        .await
        .expect("no resolution once the agent was back")
        .unwrap();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(
        resolved["alerts"][0]["fingerprint"], alert["fingerprint"],
        "the same alert"
    );
    until_up(1.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        posts.try_recv().is_err(),
        "more than one call for one return"
    );
}

/// The agent stays connected while its API server goes away: requests get
/// a 503 Status with the agent's reason (and not its marker header), the
/// health view says unreachable and `paddock_cluster_up` drops to 0; the
/// API server back on its address, the cluster answers and both follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_its_agent_cannot_reach_is_an_unreachable_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let config = FakeApiConfig {
        plain_http: true,
        ..FakeApiConfig::default()
    };
    let fake = FakeApiServer::start(config.clone()).await.unwrap();
    let paddock = start_paddock_with(
        dir.path(),
        "127.0.0.1",
        &[],
        "metrics:\n  listen: '127.0.0.1:0'\n\
         clusterHealth: {intervalSeconds: 3600, timeoutSeconds: 2}\n",
    );
    let metrics = paddock_tests::paddock::logged_port(&paddock.log(), "metrics listening")
        .map(|port| format!("127.0.0.1:{port}"))
        .unwrap_or_else(|| panic!("no metrics listener:\n{}", paddock.log()));
    let admin = Admin::new(&paddock).await;
    let agent = edge_agent(&admin, &paddock, &fake, dir.path()).await;

    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let namespaces = format!("{}/k8s/clusters/edge/api/v1/namespaces", paddock.url());
    // Until the answer has `status`: a request on a connection the API
    // server was closing may fail after connecting (502, an answer).
    let answered = |status: u16| {
        let (client, namespaces, agent) = (&client, &namespaces, &agent);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let answer = client.get(namespaces, Some(USER_TOKEN)).await;
                if answer.status() == status {
                    return answer;
                }
                assert!(
                    Instant::now() < deadline,
                    "never {status}: {} {}\nagent log:\n{}",
                    answer.status(),
                    answer.text(),
                    agent.log()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let reachable = |want: bool| {
        let admin = &admin;
        let metrics = &metrics;
        async move {
            let (status, health) = admin
                .call(Method::GET, "/paddock/v1/clusters/edge/health", None)
                .await;
            assert_eq!(status, 200, "{health}");
            assert_eq!(health["reachable"], want, "{health}");
            let up = scrape(metrics)
                .await
                .value("paddock_cluster_up", &[("cluster", "edge")]);
            assert_eq!(up, Some(if want { 1.0 } else { 0.0 }));
            health
        }
    };
    answered(200).await;
    reachable(true).await;

    let addr = fake.addr();
    fake.drop_connections();
    drop(fake);
    let down = answered(503).await;
    assert!(
        down.head
            .headers
            .get("x-paddock-agent-unreachable")
            .is_none(),
        "the agent's marker reached the client: {:?}",
        down.head.headers
    );
    let status = down.json();
    assert_eq!(status["kind"], "Status", "{status}");
    assert_eq!(status["reason"], "ServiceUnavailable", "{status}");
    // Refused, or reset when the connection reached the closing listener's
    // backlog: either way the agent could not connect.
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(
            "cluster edge is unreachable: the agent cannot connect to its API server: "
        ) && message.contains("tcp connect error"),
        "{status}"
    );
    let health = reachable(false).await;
    assert!(health["since"].is_string(), "{health}");
    assert!(
        !agent.log().contains("tunnel to Paddock closed"),
        "the agent dropped its tunnel"
    );

    let _back = FakeApiServer::start(FakeApiConfig {
        listen: addr,
        ..config
    })
    .await
    .unwrap();
    answered(200).await;
    reachable(true).await;
}
