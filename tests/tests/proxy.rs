//! The whole stack in-process, table-driven: incoming request → request the
//! apiserver saw → response the client got. HTTP/1.1 and HTTP/2 clients.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    proxy::ProxyUnderTest,
};
use proxy_core::{
    authn::{
        token_file::TokenFileAuthenticator, Authenticator, AuthnError, Credential, Identity,
        ReadyOrBoxed,
    },
    authz::AllowAuthenticated,
    upstream::{ClusterConfig, UpstreamCredential},
    Proxy,
};
use secrecy::ExposeSecret;

const ALICE: &str = "alice-token";

/// Hands out identities the token file cannot express: extras, many groups.
struct Fixture;

fn many_groups(count: usize, len: usize) -> Vec<String> {
    (0..count).map(|i| format!("{i:0>len$}")).collect()
}

impl Authenticator for Fixture {
    fn name(&self) -> &str {
        "fixture"
    }

    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let identity = match credential {
            Credential::Bearer(token) => match token.expose_secret() {
                "extras-token" => Some(Identity {
                    user: "erin".into(),
                    username: "erin".into(),
                    extra: BTreeMap::from([
                        (
                            "test.example.com/thing.thing".to_owned(),
                            vec!["a".to_owned(), "b".to_owned()],
                        ),
                        ("percent%20encoded".to_owned(), vec!["c".to_owned()]),
                        (
                            "almost%zzpercent%xxencoded".to_owned(),
                            vec!["d".to_owned()],
                        ),
                        (
                            "example.com/ᛒᚥᛏᛖᚥᚢとロビン".to_owned(),
                            vec!["e".to_owned()],
                        ),
                        ("@=:".to_owned(), vec!["f".to_owned()]),
                        ("Scopes".to_owned(), vec!["g".to_owned()]),
                    ]),
                    ..Identity::default()
                }),
                "many-groups-token" => Some(Identity {
                    user: "gary".into(),
                    username: "gary".into(),
                    groups: many_groups(300, 8),
                    ..Identity::default()
                }),
                // 64 KiB of Impersonate-Group header values.
                "huge-groups-token" => Some(Identity {
                    user: "hugo".into(),
                    username: "hugo".into(),
                    groups: many_groups(1024, 64),
                    ..Identity::default()
                }),
                _ => None,
            },
            _ => None,
        };
        ReadyOrBoxed::ready(Ok(identity.map(Arc::new)))
    }
}

struct Setup {
    fake: FakeApiServer,
    proxy: ProxyUnderTest,
}

async fn setup() -> Setup {
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let proxy = ProxyUnderTest::start(proxy_to(&fake, "prod")).await;
    Setup { fake, proxy }
}

fn proxy_to(fake: &FakeApiServer, id: &str) -> proxy_core::ProxyBuilder {
    let mut cluster = ClusterConfig::new(id, fake.url());
    cluster.ca_pem = Some(fake.ca_pem().as_bytes().to_vec());
    cluster.credential = UpstreamCredential::BearerToken(fake.token().to_owned().into());
    Proxy::builder()
        .authenticator(
            TokenFileAuthenticator::from_csv(&format!("{ALICE},alice,1001,\"dev,ops\"\n")).unwrap(),
        )
        .authenticator(Fixture)
        .authorizer(Arc::new(AllowAuthenticated))
        .cluster(cluster, true)
}

fn request(url: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::get(url);
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).unwrap()
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn strips_every_caller_identity_header_in_every_spelling() {
    let setup = setup().await;
    let families = [
        "Impersonate-User",
        "Impersonate-Group",
        "Impersonate-Uid",
        "Impersonate-Extra-Scopes",
        "X-Remote-User",
        "X-Remote-Group",
        "X-Remote-Extra-Scopes",
        "Cookie",
    ];
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let client = TestClient::new(setup.proxy.ca_pem(), protocol, None);
        for family in families {
            for name in [
                family.to_owned(),
                family.to_lowercase(),
                family.to_uppercase(),
                family.replace('-', "_"),
                family.to_lowercase().replace('-', "_"),
            ] {
                // Impersonate-* with '-' is a --as request: refused without a policy (403), or
                // 400 for groups/uid/extra without a user, as the apiserver answers. The
                // others must be stripped silently and the request go through as alice.
                let lower = name.to_lowercase();
                let as_request = lower.starts_with("impersonate-");
                let response = client
                    .fetch(request(
                        &format!("{}{PODS}", setup.proxy.url()),
                        Some(ALICE),
                        &[(&name, "caller-poison")],
                    ))
                    .await;
                let expected = match (as_request, lower == "impersonate-user") {
                    (true, true) => 403,
                    (true, false) => 400,
                    (false, _) => 200,
                };
                assert_eq!(
                    response.status(),
                    expected,
                    "{protocol:?} {name}: {}",
                    response.text()
                );
                if !as_request {
                    let seen = setup.fake.last_request(PODS).unwrap();
                    assert_eq!(seen.user.as_ref().unwrap().username, "alice", "{name}");
                    assert!(!seen.headers.contains_key("cookie"));
                }
            }
        }
    }
    setup.fake.assert_clean();
}

#[tokio::test]
async fn presents_the_caller_with_one_header_line_per_value() {
    let setup = setup().await;
    let client = TestClient::new(setup.proxy.ca_pem(), Protocol::Http2, None);
    let response = client
        .fetch(request(
            &format!("{}{PODS}", setup.proxy.url()),
            Some(ALICE),
            &[],
        ))
        .await;
    assert_eq!(response.status(), 200);
    let seen = setup.fake.last_request(PODS).unwrap();
    assert_eq!(
        seen.headers
            .get_all("impersonate-user")
            .iter()
            .collect::<Vec<_>>(),
        ["alice"]
    );
    assert_eq!(seen.headers["impersonate-uid"], "1001");
    assert_eq!(
        seen.headers
            .get_all("impersonate-group")
            .iter()
            .collect::<Vec<_>>(),
        ["dev", "ops"]
    );
    // The API server appends system:authenticated itself: one header and
    // one impersonation check fewer, the same groups.
    assert_eq!(
        seen.user.unwrap().groups,
        ["dev", "ops", "system:authenticated"]
    );
    assert_eq!(
        seen.headers["authorization"],
        format!("Bearer {}", setup.fake.token()).as_str()
    );

    // client-go's extra-key encoding, upper-case letters escaped as well:
    // what the apiserver decodes is the key, case and all.
    client
        .fetch(request(
            &format!("{}{PODS}", setup.proxy.url()),
            Some("extras-token"),
            &[],
        ))
        .await;
    let user = setup.fake.last_request(PODS).unwrap().user.unwrap();
    let keys: Vec<&str> = user.extra.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "@=:",
            "Scopes",
            "almost%zzpercent%xxencoded",
            "example.com/ᛒᚥᛏᛖᚥᚢとロビン",
            "percent%20encoded",
            "test.example.com/thing.thing"
        ]
    );
    assert_eq!(user.extra["test.example.com/thing.thing"], ["a", "b"]);
    assert!(!setup
        .fake
        .last_request(PODS)
        .unwrap()
        .headers
        .contains_key("impersonate-uid"));
}

#[tokio::test]
async fn many_groups_and_64_kib_of_groups_go_through_both_protocols() {
    let setup = setup().await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let client = TestClient::new(setup.proxy.ca_pem(), protocol, None);
        for (token, expected) in [("many-groups-token", 300), ("huge-groups-token", 1024)] {
            let response = client
                .fetch(request(
                    &format!("{}{PODS}", setup.proxy.url()),
                    Some(token),
                    &[],
                ))
                .await;
            assert_eq!(
                response.status(),
                200,
                "{protocol:?} {token}: {}",
                response.text()
            );
            let seen = setup.fake.last_request(PODS).unwrap();
            let groups = seen.headers.get_all("impersonate-group").iter().count();
            // Each of the token's groups; the API server adds system:authenticated.
            assert_eq!(groups, expected, "{protocol:?} {token}");
            let bytes: usize = seen
                .headers
                .get_all("impersonate-group")
                .iter()
                .map(|v| v.len())
                .sum();
            if token == "huge-groups-token" {
                assert!(bytes >= 64 * 1024, "{bytes}");
            }
        }
    }
}

#[tokio::test]
async fn refuses_missing_invalid_and_unauthorized_impersonation_with_status() {
    let setup = setup().await;
    let client = TestClient::new(setup.proxy.ca_pem(), Protocol::Http1, None);
    let url = format!("{}{PODS}", setup.proxy.url());
    /// Token, extra headers, expected code and reason.
    type Case<'a> = (Option<&'a str>, &'a [(&'a str, &'a str)], u16, &'a str);
    let cases: [Case; 6] = [
        (None, &[], 401, "Unauthorized"),
        (Some("wrong-token"), &[], 401, "Unauthorized"),
        (
            Some(ALICE),
            &[("impersonate-user", "bob")],
            403,
            "Forbidden",
        ),
        (
            Some(ALICE),
            &[("impersonate-group", "admins")],
            400,
            "BadRequest",
        ),
        (Some(ALICE), &[("impersonate-uid", "7")], 400, "BadRequest"),
        (
            Some(ALICE),
            &[("impersonate-extra-scopes", "x")],
            400,
            "BadRequest",
        ),
    ];
    for (token, headers, code, reason) in cases {
        let response = client.fetch(request(&url, token, headers)).await;
        assert_eq!(
            response.status(),
            code,
            "{token:?} {headers:?}: {}",
            response.text()
        );
        let status = response.json();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], reason);
        assert_eq!(status["code"], code);
        if code == 401 {
            assert!(response.head.headers.contains_key("www-authenticate"));
        }
    }
    let malformed = client
        .fetch(request(&url, None, &[("authorization", "Basic !!!")]))
        .await;
    assert_eq!(malformed.status(), 401);
    // None of these reached the apiserver.
    assert!(setup.fake.last_request(PODS).is_none());
}

#[tokio::test]
async fn routes_by_cluster_prefix() {
    let setup = setup().await;
    let client = TestClient::new(setup.proxy.ca_pem(), Protocol::Http2, None);
    let ok = client
        .get(
            &format!("{}/k8s/clusters/prod{PODS}?limit=5", setup.proxy.url()),
            Some(ALICE),
        )
        .await;
    assert_eq!(ok.status(), 200, "{}", ok.text());
    assert_eq!(
        setup.fake.last_request(PODS).unwrap().uri,
        format!("{PODS}?limit=5")
    );
    let unknown = client
        .get(
            &format!("{}/k8s/clusters/nope{PODS}", setup.proxy.url()),
            Some(ALICE),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json()["reason"], "NotFound");
    let health = client
        .get(&format!("{}/paddock/healthz", setup.proxy.url()), None)
        .await;
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn upstream_down_is_503_naming_the_cluster() {
    // A port nothing listens on: bind one and drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cluster = ClusterConfig::new("gone", format!("https://127.0.0.1:{port}"));
    cluster.ca_pem = Some(paddock_tests::tls::TestCa::new().pem().as_bytes().to_vec());
    let proxy = ProxyUnderTest::start(
        Proxy::builder()
            .authenticator(TokenFileAuthenticator::from_csv(&format!("{ALICE},alice,1\n")).unwrap())
            .authorizer(Arc::new(AllowAuthenticated))
            .cluster(cluster, true),
    )
    .await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http1, None);
    let response = client
        .get(&format!("{}{PODS}", proxy.url()), Some(ALICE))
        .await;
    assert_eq!(response.status(), 503, "{}", response.text());
    let status = response.json();
    assert_eq!(status["reason"], "ServiceUnavailable");
    assert!(
        status["message"].as_str().unwrap().contains("cluster gone"),
        "{status}"
    );

    // An upstream whose certificate we do not trust is unavailable too, never forwarded to.
    let fake = FakeApiServer::start(FakeApiConfig::default())
        .await
        .unwrap();
    let mut untrusted = ClusterConfig::new("untrusted", fake.url());
    untrusted.ca_pem = Some(paddock_tests::tls::TestCa::new().pem().as_bytes().to_vec());
    let proxy = ProxyUnderTest::start(
        Proxy::builder()
            .authenticator(TokenFileAuthenticator::from_csv(&format!("{ALICE},alice,1\n")).unwrap())
            .authorizer(Arc::new(AllowAuthenticated))
            .cluster(untrusted, true),
    )
    .await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http1, None);
    let response = client
        .get(&format!("{}{PODS}", proxy.url()), Some(ALICE))
        .await;
    assert_eq!(response.status(), 503, "{}", response.text());
    assert!(fake.requests().is_empty());
}

/// The issue asks for this bound explicitly: a watch event must reach the
/// client within 100 ms of being written (no buffering on the path). The
/// median of several events is compared, so one scheduling hiccup on a
/// loaded machine does not decide the result.
#[tokio::test(flavor = "multi_thread")]
async fn watch_events_arrive_immediately() {
    let setup = setup().await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let client = TestClient::new(setup.proxy.ca_pem(), protocol, None);
        let response = client
            .send(request(
                &format!("{}{PODS}?watch=true", setup.proxy.url()),
                Some(ALICE),
                &[],
            ))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        while setup.fake.watchers() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut delays = Vec::new();
        for i in 0..7 {
            let sent = std::time::Instant::now();
            setup
                .fake
                .add_pod("default", &format!("w-{protocol:?}-{i}"));
            let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
                .await
                .expect("no watch event within 10 s: the proxy buffers")
                .unwrap()
                .unwrap();
            delays.push(sent.elapsed());
            let data = frame.into_data().unwrap();
            assert!(String::from_utf8_lossy(&data).contains(&format!("w-{protocol:?}-{i}")));
        }
        delays.sort();
        let median = delays[delays.len() / 2];
        assert!(
            median < Duration::from_millis(100),
            "{protocol:?}: median {median:?}, all {delays:?}"
        );
        drop(body);
        // Wait for the upstream watch to be released before the next protocol.
        for _ in 0..200 {
            if setup.fake.watchers() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn graceful_shutdown_finishes_in_flight_requests_and_ends_watches() {
    let mut setup = setup().await;
    let client = TestClient::new(setup.proxy.ca_pem(), Protocol::Http1, None);
    let h2 = TestClient::new(setup.proxy.ca_pem(), Protocol::Http2, None);
    let watch = h2
        .send(request(
            &format!("{}{PODS}?watch=true", setup.proxy.url()),
            Some(ALICE),
            &[],
        ))
        .await
        .unwrap();
    let slow = format!("{}{PODS}/web-1?fakeDelayMs=800", setup.proxy.url());
    let in_flight: Vec<_> = (0..10)
        .map(|i| {
            let (client, url) = (
                if i % 2 == 0 {
                    client.clone()
                } else {
                    h2.clone()
                },
                slow.clone(),
            );
            tokio::spawn(async move { client.get(&url, Some(ALICE)).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    setup.proxy.begin_shutdown();
    // The watch ends cleanly (end of stream, not an error) as draining starts.
    let events = tokio::time::timeout(Duration::from_secs(5), watch.into_body().collect())
        .await
        .expect("watch did not end on shutdown");
    assert!(events.is_ok(), "watch ended with an error: {events:?}");
    for request in in_flight {
        let response = request.await.unwrap();
        assert_eq!(response.status(), 200, "{}", response.text());
        assert_eq!(response.json()["metadata"]["name"], "web-1");
    }
    setup.proxy.wait(Duration::from_secs(10)).await;
    // And nothing new is accepted.
    let refused = TestClient::new(setup.proxy.ca_pem(), Protocol::Http1, None)
        .send(request(
            &format!("{}{PODS}", setup.proxy.url()),
            Some(ALICE),
            &[],
        ))
        .await;
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kube_rs_client_works_through_paddock() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams};
    let setup = setup().await;
    let kubeconfig = paddock_tests::kubectl::Kubeconfig::new(
        &format!("{}/k8s/clusters/prod", setup.proxy.url()),
        setup.proxy.ca_pem(),
        ALICE,
    );
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig.path()).unwrap(),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let list = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("web-1"));
    let pod = pods.get("web-1").await.unwrap();
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Running"));
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.minor, "32");
}

/// Requests without a body go over each worker's own HTTP/2 connection to
/// the cluster. When the apiserver drops its connections (a crash, a
/// restart), the next requests reconnect instead of failing.
#[tokio::test]
async fn dropped_upstream_connections_are_replaced() {
    let Setup { fake, proxy } = setup().await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http1, None);
    let url = format!("{}{PODS}", proxy.url());
    for _ in 0..4 {
        let response = client.get(&url, Some(ALICE)).await;
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    let seen = fake
        .last_request(PODS)
        .expect("the request reached the fake");
    assert_eq!(seen.version, http::Version::HTTP_2);

    fake.drop_connections();
    // Let the proxy's connection tasks see the close.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Several requests, so each worker's connection is exercised.
    for _ in 0..8 {
        let response = client.get(&url, Some(ALICE)).await;
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    fake.assert_clean();
}

/// A server that does not offer HTTP/2 is served over HTTP/1.1, with and
/// without a request body.
#[tokio::test]
async fn http1_only_upstreams_are_served_over_http1() {
    let fake = FakeApiServer::start(FakeApiConfig {
        http1_only: true,
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let proxy = ProxyUnderTest::start(proxy_to(&fake, "old")).await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http2, None);
    let url = format!("{}{PODS}", proxy.url());
    for _ in 0..3 {
        let response = client.get(&url, Some(ALICE)).await;
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    let seen = fake
        .last_request(PODS)
        .expect("the request reached the fake");
    assert_eq!(seen.version, http::Version::HTTP_11);
    let created = client
        .send_json(
            http::Method::POST,
            &url,
            Some(ALICE),
            &serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2"}}),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    fake.assert_clean();
}

/// A plain-HTTP server (HTTP/1.1 only) gets every worker's own keepalive
/// connections: gets, a watch streaming beside them, a request with a
/// body; when the server drops its connections the next requests open new
/// ones instead of failing (a GET whose kept connection turns out closed is
/// sent again on a new one).
#[tokio::test]
async fn plain_http1_upstreams_keep_and_replace_their_connections() {
    let fake = FakeApiServer::start(FakeApiConfig {
        plain_http: true,
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let mut cluster = ClusterConfig::new("plain", fake.url());
    cluster.credential = UpstreamCredential::BearerToken(fake.token().to_owned().into());
    let builder = Proxy::builder()
        .authenticator(
            TokenFileAuthenticator::from_csv(&format!("{ALICE},alice,1001,\"dev,ops\"\n")).unwrap(),
        )
        .authorizer(Arc::new(AllowAuthenticated))
        .cluster(cluster, true)
        .workers(1);
    let proxy = ProxyUnderTest::start(builder).await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http2, None);
    let url = format!("{}{PODS}", proxy.url());
    // A watch holds one connection while the gets go on others.
    let watch = client
        .send(request(&format!("{url}?watch=true"), Some(ALICE), &[]))
        .await
        .unwrap();
    assert_eq!(watch.status(), 200);
    for _ in 0..6 {
        let response = client.get(&url, Some(ALICE)).await;
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    let seen = fake
        .last_request(PODS)
        .expect("the request reached the fake");
    assert_eq!(seen.version, http::Version::HTTP_11);
    assert_eq!(
        seen.headers
            .get("impersonate-user")
            .map(|v| v.to_str().unwrap()),
        Some("alice")
    );
    drop(watch);

    fake.drop_connections();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let response = client.get(&url, Some(ALICE)).await;
        assert_eq!(response.status(), 200, "{}", response.text());
    }
    let created = client
        .send_json(
            http::Method::POST,
            &url,
            Some(ALICE),
            &serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2"}}),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text());
    fake.assert_clean();
}

/// A paused `kubectl logs -f` holds its upstream stream's window, and the
/// worker's connection to the cluster is shared: however many readers
/// pause, the others' responses keep flowing on the same connection
/// (hyperium/hyper#2899 is what a connection window smaller than the sum
/// of the stream windows does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_log_readers_do_not_block_the_connection_they_share() {
    use paddock_tests::fake_apiserver::FIREHOSE;
    const PAUSED: usize = 24;
    let mut pods: Vec<(String, String)> = (0..PAUSED)
        .map(|i| ("default".into(), format!("{FIREHOSE}-{i}")))
        .collect();
    pods.push(("default".into(), "web-1".into()));
    let fake = FakeApiServer::start(FakeApiConfig {
        pods,
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    // One worker: every request goes out on the same upstream connection.
    let proxy = ProxyUnderTest::start(proxy_to(&fake, "busy").workers(1)).await;
    // HTTP/1.1 towards Paddock: a connection per stream, so the client's
    // own windows hold nothing back.
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http1, None);
    let mut paused = Vec::new();
    for i in 0..PAUSED {
        let url = format!(
            "{}/api/v1/namespaces/default/pods/{FIREHOSE}-{i}/log?follow=true",
            proxy.url()
        );
        let response = client.send(request(&url, Some(ALICE), &[])).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
        // Kept, unread: the sockets' buffers fill, then Paddock's stream.
        paused.push(body);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let url = format!("{}/api/v1/namespaces/default/pods/web-1", proxy.url());
    let pod = tokio::time::timeout(Duration::from_secs(20), client.get(&url, Some(ALICE)))
        .await
        .expect("a get behind paused log readers was answered in full");
    assert_eq!(pod.status(), 200, "{}", pod.text());
    assert_eq!(pod.json()["metadata"]["name"], "web-1");
    drop(paused);
}

/// Watches hold their upstream streams for hours, and fill one connection
/// after another (kube-apiserver allows 100 streams on each): however many
/// are open, the next request gets a connection of its own instead of
/// queueing behind them.
#[tokio::test]
async fn watches_that_fill_connections_do_not_block_other_requests() {
    const WATCHES: usize = 24;
    let fake = FakeApiServer::start(FakeApiConfig {
        max_streams: 1,
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    // One worker: every request shares its upstream connections.
    let proxy = ProxyUnderTest::start(proxy_to(&fake, "busy").workers(1)).await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http2, None);
    let mut watches = Vec::new();
    for i in 0..WATCHES {
        let watch = tokio::time::timeout(
            Duration::from_secs(10),
            client.send(request(
                &format!("{}{PODS}?watch=true", proxy.url()),
                Some(ALICE),
                &[],
            )),
        )
        .await
        .unwrap_or_else(|_| panic!("watch {i} was answered"))
        .unwrap();
        assert_eq!(watch.status(), 200);
        watches.push(watch);
    }
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        client.get(&format!("{}{PODS}", proxy.url()), Some(ALICE)),
    )
    .await
    .expect("a list behind the watches was answered");
    assert_eq!(listed.status(), 200, "{}", listed.text());
    assert_eq!(fake.watchers(), WATCHES);
    fake.assert_clean();
}

/// A burst of watches on a new upstream connection, before the server's
/// SETTINGS arrive: the proxy assumes kube-apiserver's 100 streams until
/// told, so none is refused for going past the server's limit (h2 itself
/// assumes no limit, and the server answers the excess with
/// REFUSED_STREAM).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_before_the_servers_settings_stays_within_its_limit() {
    const WATCHES: usize = 250;
    let fake = FakeApiServer::start(FakeApiConfig {
        first_write_delay: Duration::from_secs(1),
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let proxy = ProxyUnderTest::start(proxy_to(&fake, "far").workers(1)).await;
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http2, None);
    let url = format!("{}{PODS}?watch=true", proxy.url());
    let watches = futures_util::future::join_all((0..WATCHES).map(|_| {
        tokio::time::timeout(
            Duration::from_secs(20),
            client.send(request(&url, Some(ALICE), &[])),
        )
    }))
    .await;
    let statuses: BTreeMap<u16, usize> = watches.iter().fold(BTreeMap::new(), |mut s, w| {
        let status = w.as_ref().expect("answered").as_ref().unwrap().status();
        *s.entry(status.as_u16()).or_default() += 1;
        s
    });
    assert_eq!(statuses, BTreeMap::from([(200, WATCHES)]));
    assert_eq!(fake.watchers(), WATCHES);
    fake.assert_clean();
}
