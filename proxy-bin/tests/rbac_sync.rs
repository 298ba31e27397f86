//! RBAC sync end to end through the real `paddock` binary, for clusters
//! registered while it runs: one behind `paddock agent` in its own network
//! namespace (Paddock cannot dial it; the sync goes through the tunnel),
//! one direct whose API server refuses RBAC writes. Each cluster's status
//! is read from the admin API, its health view and the metrics listener.

use std::{
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    metrics::scrape,
    netns::NetNs,
    paddock::Paddock,
};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_paddock");
const ADMIN_PASSWORD: &str = "Rbac-sync-admin-pass-1";
const GROUP: &str = "openldap_group://cn=ops,ou=groups,dc=example,dc=org";

/// A child process killed on drop.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Admin {
    client: TestClient,
    base: String,
    token: String,
}

impl Admin {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        self.client
            .call_json(method, &url, &self.token, body.as_ref())
            .await
    }

    /// Cluster `id`'s `status.rbacSync` once `done` holds for it.
    async fn sync_status(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (status, body) = self
                .call(Method::GET, &format!("/paddock/v1/clusters/{id}"), None)
                .await;
            assert_eq!(status, 200, "{body}");
            let sync = &body["status"]["rbacSync"];
            if done(sync) {
                return sync.clone();
            }
            assert!(Instant::now() < deadline, "{id}: {what}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn ours(fake: &FakeApiServer, resource: &str) -> Vec<Value> {
    fake.rbac_objects(resource)
        .into_iter()
        .filter(|o| o["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "paddock")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_registered_at_runtime_are_synchronised_through_tunnels_and_failures_show() {
    let dir = tempfile::tempdir().unwrap();
    let netns = NetNs::create();
    let edge = netns.fake_apiserver(FakeApiConfig::default());
    let locked = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    locked.forbid_rbac_writes(true);
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            "tls:\n  extraNames: [\"{}\"]\nmetrics:\n  listen: '127.0.0.1:0'\nrbacSync: {{intervalSeconds: 1}}\nclusterHealth: {{intervalSeconds: 1}}\n",
            netns.host_ip
        ),
    );
    let paddock = Paddock::start_on(
        Path::new(BIN),
        &netns.host_ip.to_string(),
        &["--config".into(), config.display().to_string()],
    );
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let token = paddock.admin_session(&client, ADMIN_PASSWORD).await;
    let admin = Admin {
        client,
        base: paddock.url(),
        token,
    };

    // Two clusters registered while Paddock runs.
    let (status, registered) = admin
        .call(
            Method::POST,
            "/paddock/v1/clusters",
            Some(json!({"id": "edge"})),
        )
        .await;
    assert_eq!(status, 201, "{registered}");
    let agent_token = registered["token"].as_str().unwrap().to_owned();
    let locked_token = write_file(dir.path(), "locked-token", locked.token());
    let (status, body) = admin
        .call(
            Method::POST,
            "/paddock/v1/clusters",
            Some(json!({"id": "locked", "connection": {
                "type": "direct", "server": locked.url(), "caPem": locked.ca_pem(),
                "tokenFile": locked_token.display().to_string(),
            }})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Bindable once routable (within a moment).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = admin
            .call(
                Method::POST,
                "/paddock/v1/bindings",
                Some(json!({"group": GROUP, "role": "cluster-member", "cluster": "edge"})),
            )
            .await;
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The agent, in a namespace Paddock cannot reach.
    let fake_ca = write_file(dir.path(), "edge-ca.crt", edge.ca_pem());
    let sa = write_file(dir.path(), "edge-sa-token", edge.token());
    let mut command = netns.command(BIN);
    paddock_tests::paddock::without_proxy_env(&mut command)
        .args([
            "agent",
            "--server",
            &paddock.url(),
            "--token",
            &agent_token,
            "--ca-file",
            &paddock.ca_path().display().to_string(),
            "--api-server",
            &edge.url(),
            "--api-ca-file",
            &fake_ca.display().to_string(),
            "--api-token-file",
            &sa.display().to_string(),
            "--initial-backoff-ms",
            "200",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _agent = Agent(command.spawn().expect("start paddock agent"));

    // Through the tunnel: the admin's global binding and the group's
    // cluster binding become native RBAC in the agent's cluster.
    let synced = admin
        .sync_status("edge", "never synchronised", |s| {
            !s["lastSuccess"].is_null() && s["objectsWritten"].as_u64() >= Some(3)
        })
        .await;
    assert!(synced["lastError"].is_null(), "{synced}");
    assert!(synced["failingSince"].is_null(), "{synced}");
    let crbs = ours(&edge, "clusterrolebindings");
    let role_of = |subject: &str| {
        crbs.iter()
            .find(|o| o["subjects"][0]["name"] == subject)
            .map(|o| o["roleRef"]["name"].clone())
    };
    assert_eq!(
        role_of(GROUP),
        Some(json!("paddock-rt-cluster-member")),
        "{crbs:?}"
    );
    let me = admin.call(Method::GET, "/paddock/v1/me", None).await.1;
    let admin_id = me["user"].as_str().unwrap();
    assert_eq!(role_of(admin_id), Some(json!("cluster-admin")), "{crbs:?}");
    assert_eq!(
        ours(&edge, "clusterroles")[0]["metadata"]["name"],
        "paddock-rt-cluster-member"
    );
    // Deleted by hand in the cluster: put back through the tunnel, counted.
    let name = crbs[0]["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(edge.delete_rbac_object("clusterrolebindings", "", &name));
    let repaired = admin
        .sync_status("edge", "drift not repaired", |s| {
            s["driftRepaired"].as_u64() >= Some(1)
        })
        .await;
    assert!(repaired["lastError"].is_null(), "{repaired}");
    assert!(ours(&edge, "clusterrolebindings")
        .iter()
        .any(|o| o["metadata"]["name"] == name));

    // The API server that refuses writes: its error, in the API and the
    // health view, and failing in the metrics.
    let failing = admin
        .sync_status("locked", "never failed", |s| !s["failingSince"].is_null())
        .await;
    let error = failing["lastError"].as_str().unwrap_or_default();
    assert!(
        error.contains("is forbidden") && error.contains("cannot create resource"),
        "{failing}"
    );
    assert!(failing["lastSuccess"].is_null(), "{failing}");
    assert!(ours(&locked, "clusterrolebindings").is_empty());
    let (status, health) = admin
        .call(Method::GET, "/paddock/v1/clusters/locked/health", None)
        .await;
    assert_eq!(status, 200, "{health}");
    assert!(
        health["rbacSync"]["lastError"]
            .as_str()
            .is_some_and(|e| e.contains("is forbidden")),
        "{health}"
    );
    let metrics = paddock
        .log()
        .lines()
        .find(|l| l.contains("metrics listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .and_then(|a| a.split_whitespace().next())
        .map(str::to_owned)
        .expect("the metrics listener's address in the log");
    let scraped = scrape(&metrics).await;
    let gauge = |cluster| scraped.value("paddock_rbac_sync_failing", &[("cluster", cluster)]);
    assert_eq!(gauge("locked"), Some(1.0));
    assert_eq!(gauge("edge"), Some(0.0));
    assert!(
        scraped
            .value("paddock_rbac_sync_objects_written", &[("cluster", "edge")])
            .is_some_and(|n| n >= 4.0),
        "{:?}",
        scraped.families()
    );

    // Unregistered: no longer synchronised, its status and series gone.
    let (status, _) = admin
        .call(Method::DELETE, "/paddock/v1/clusters/locked", None)
        .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    while scrape(&metrics)
        .await
        .value("paddock_rbac_sync_failing", &[("cluster", "locked")])
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the removed cluster's series stayed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // And nothing was ever written where writes were refused.
    assert!(ours(&locked, "clusterroles").is_empty());
}
