//! Clients that send nothing, or send it slowly, cannot hold connections
//! forever, and long-lived requests are never mistaken for idle ones. The
//! proxy runs in-process with short [`ConnectionLimits`] so no test waits
//! for the production defaults.
//!
//! The outer `tokio::time::timeout`s only turn a hang into a failure; they
//! are many times the configured limits and never what a test asserts.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    proxy::ProxyUnderTest,
};
use proxy_core::{
    accounts::{Accounts, AccountsOptions},
    authn::token_file::TokenFileAuthenticator,
    authz::AllowAuthenticated,
    server::ConnectionLimits,
    upstream::{ClusterConfig, UpstreamCredential},
    Proxy, ProxyBuilder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

const ALICE: &str = "alice-token";
const PODS: &str = "/api/v1/namespaces/default/pods";
/// Long enough that only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

fn limits(
    header_read: Duration,
    idle: Duration,
    body_read: Duration,
    max_connections: Option<usize>,
) -> ConnectionLimits {
    let mut limits = ConnectionLimits::default();
    limits.header_read_timeout = header_read;
    limits.idle_timeout = idle;
    limits.body_read_timeout = body_read;
    limits.max_connections = max_connections;
    limits
}

fn builder(fake: Option<&FakeApiServer>) -> ProxyBuilder {
    let builder = Proxy::builder()
        .authenticator(
            TokenFileAuthenticator::from_csv(&format!("{ALICE},alice,1001,\"dev\"\n")).unwrap(),
        )
        .authorizer(Arc::new(AllowAuthenticated));
    match fake {
        Some(fake) => {
            let mut cluster = ClusterConfig::new("prod", fake.url());
            cluster.ca_pem = Some(fake.ca_pem().as_bytes().to_vec());
            cluster.credential = UpstreamCredential::BearerToken(fake.token().to_owned().into());
            builder.cluster(cluster, true)
        }
        None => builder,
    }
}

async fn fake_with_a_pod() -> FakeApiServer {
    FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap()
}

/// A TLS connection to the proxy offering only `alpn`, sending nothing yet.
async fn connect(proxy: &ProxyUnderTest, alpn: &[u8]) -> TlsStream<tokio::net::TcpStream> {
    paddock_tests::tls::connect(proxy.url(), proxy.ca_pem(), alpn).await
}

/// An HTTP/2 client connection to the proxy, driven by a task that ends
/// with the connection.
async fn http2_connection(
    proxy: &ProxyUnderTest,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tls = connect(proxy, b"h2").await;
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

/// Reads until the server closes the connection (EOF or reset), returning
/// what it sent.
async fn read_until_closed(tls: &mut TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// A TLS connection that negotiates `alpn` and then sends nothing is closed.
async fn assert_silent_connection_closed(alpn: &[u8], header_read: Duration, idle: Duration) {
    let proxy = ProxyUnderTest::start(builder(None).connection_limits(limits(
        header_read,
        idle,
        HANG,
        None,
    )))
    .await;
    let mut tls = connect(&proxy, alpn).await;
    tokio::time::timeout(HANG, read_until_closed(&mut tls))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a TLS connection that sent nothing over {} was kept open",
                String::from_utf8_lossy(alpn)
            )
        });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_http1_connection_is_closed_by_the_header_read_timeout() {
    // Idle timeout far away: the header-read timeout is what must act.
    assert_silent_connection_closed(b"http/1.1", Duration::from_millis(300), HANG * 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_silent_http2_connection_is_closed_by_the_idle_timeout() {
    assert_silent_connection_closed(b"h2", HANG, Duration::from_millis(300)).await;
}

/// Starts a request on a new connection, checks it is not served while
/// `holder` holds the only connection place, drops `holder` and checks the
/// request is then served.
async fn assert_waits_for_the_place_of(proxy: &ProxyUnderTest, holder: impl Sized) {
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http1, None);
    let url = format!("{}/paddock/healthz", proxy.url());
    let waiting = tokio::spawn(async move { client.get(&url, None).await.status() });
    // Not served while the place is held (a wrong pass here could only come
    // from a slow machine, never a wrong failure).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a connection beyond the limit was served"
    );
    drop(holder);
    let status = tokio::time::timeout(HANG, waiting)
        .await
        .expect("the waiting connection was never served once the place was free")
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_connection_with_no_open_stream_is_closed_when_idle() {
    let proxy = ProxyUnderTest::start(builder(None).connection_limits(limits(
        HANG,
        Duration::from_millis(300),
        HANG,
        None,
    )))
    .await;
    let (mut sender, connection) = http2_connection(&proxy).await;
    let response = sender
        .send_request(
            Request::get(format!("{}/paddock/healthz", proxy.url()))
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
    // With its only stream done, the server ends the connection (GOAWAY).
    tokio::time::timeout(HANG, connection)
        .await
        .expect("an idle HTTP/2 connection was kept open")
        .unwrap()
        .expect("the connection ended cleanly");
}

/// An HTTP/2 connection whose client never opens its receive window
/// (SETTINGS_INITIAL_WINDOW_SIZE 0), driven by a task that ends with the
/// connection, and the head of a response whose body cannot be sent.
async fn stalled_http2_response(
    proxy: &ProxyUnderTest,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    http::Response<hyper::body::Incoming>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let tls = connect(proxy, b"h2").await;
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    // A 404 Status: headers, then a body the window never lets through.
    let response = tokio::time::timeout(
        HANG,
        sender.send_request(
            Request::get(format!("{}/paddock/nope", proxy.url()))
                .body(Full::<Bytes>::default())
                .unwrap(),
        ),
    )
    .await
    .expect("no response head")
    .unwrap();
    assert_eq!(response.status(), 404);
    (sender, response, connection)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_that_never_reads_its_response_is_closed_when_idle() {
    let proxy = ProxyUnderTest::start(builder(None).connection_limits(limits(
        HANG,
        Duration::from_millis(300),
        HANG,
        None,
    )))
    .await;
    // The client keeps everything, reads nothing, and answers pings.
    let (_sender, _response, connection) = stalled_http2_response(&proxy).await;
    let _ = tokio::time::timeout(HANG, connection)
        .await
        .expect("a connection whose client never read its response was kept open");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_http2_client_that_never_reads_its_response_gives_its_place_back() {
    let proxy = ProxyUnderTest::start(builder(None).connection_limits(limits(
        HANG,
        Duration::from_millis(300),
        HANG,
        Some(1),
    )))
    .await;
    let (_sender, _response, _connection) = stalled_http2_response(&proxy).await;
    // Waits for the only place, which the stalled client never gives up.
    let client = TestClient::new(proxy.ca_pem(), Protocol::Http1, None);
    let response = tokio::time::timeout(
        HANG,
        client.get(&format!("{}/paddock/healthz", proxy.url()), None),
    )
    .await
    .expect("a client that never reads kept the only connection place");
    assert_eq!(response.status(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_body_trickled_one_byte_at_a_time_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = Arc::new(Accounts::open(dir.path(), AccountsOptions::default()).unwrap());
    let proxy = ProxyUnderTest::start(builder(None).accounts(accounts).connection_limits(limits(
        HANG,
        HANG,
        Duration::from_millis(300),
        None,
    )))
    .await;
    let host = proxy.url().trim_start_matches("https://").to_owned();
    let json = &br#"{"provider":"local","username":"alice","password":"a long password"}"#[..];
    let form = &b"username=alice&password=a+long+password&redirect=%2Fpaddock%2F"[..];
    for (path, content_type, body) in [
        ("/paddock/v1/login", "application/json", json),
        ("/paddock/login", "application/x-www-form-urlencoded", form),
    ] {
        let mut tls = connect(&proxy, b"http/1.1").await;
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: {content_type}\r\n\
             origin: https://{host}\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let (mut read, mut write) = tokio::io::split(tls);
        // One byte every 100 ms: the whole body would take seconds.
        let trickle = tokio::spawn(async move {
            for byte in body {
                if write.write_all(&[*byte]).await.is_err() || write.flush().await.is_err() {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            true
        });
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        let answered = tokio::time::timeout(HANG, async {
            while !String::from_utf8_lossy(&response).contains("did not arrive") {
                match read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => response.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(answered.is_ok(), "{path}: no answer to a trickled body");
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 400"), "{path}: {response}");
        assert!(response.contains("did not arrive"), "{path}: {response}");
        assert!(
            !trickle.is_finished() || !trickle.await.unwrap(),
            "{path}: the whole body was sent before the answer"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_beyond_the_limit_is_served_only_when_one_closes() {
    let proxy =
        ProxyUnderTest::start(builder(None).connection_limits(limits(HANG, HANG, HANG, Some(1))))
            .await;
    // The first connection takes the only place and keeps it (keep-alive).
    let mut first = connect(&proxy, b"http/1.1").await;
    first
        .write_all(b"GET /paddock/healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = first.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    assert_waits_for_the_place_of(&proxy, first).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_watch_outlives_the_idle_and_header_timeouts() {
    let fake = fake_with_a_pod().await;
    let idle = Duration::from_millis(200);
    let proxy = ProxyUnderTest::start(
        builder(Some(&fake)).connection_limits(limits(idle, idle, idle, None)),
    )
    .await;
    for protocol in [Protocol::Http1, Protocol::Http2] {
        let client = TestClient::new(proxy.ca_pem(), protocol, None);
        let response = client
            .send(
                Request::get(format!("{}{PODS}?watch=true", proxy.url()))
                    .header("authorization", format!("Bearer {ALICE}"))
                    .body(Full::default())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        while fake.watchers() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Quiet for many idle timeouts.
        tokio::time::sleep(idle * 10).await;
        let name = format!("late-{protocol:?}");
        fake.add_pod("default", &name);
        let frame = tokio::time::timeout(HANG, body.frame())
            .await
            .expect("no event")
            .expect("the watch was cut")
            .expect("the watch failed");
        let data = frame.into_data().unwrap();
        assert!(
            String::from_utf8_lossy(&data).contains(&name),
            "{protocol:?}: {}",
            String::from_utf8_lossy(&data)
        );
        drop(body);
        while fake.watchers() != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_exec_session_outlives_the_idle_and_header_timeouts() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

    let fake = fake_with_a_pod().await;
    let idle = Duration::from_millis(200);
    let proxy = ProxyUnderTest::start(builder(Some(&fake)).connection_limits(limits(
        idle,
        idle,
        idle,
        Some(1),
    )))
    .await;
    let tls = connect(&proxy, b"http/1.1").await;
    let url = format!(
        "{}/api/v1/namespaces/default/pods/web-1/exec?command=cat&stdin=true&stdout=true",
        proxy.url().replace("https://", "wss://")
    );
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    headers.insert("authorization", format!("Bearer {ALICE}").parse().unwrap());
    headers.insert(
        "sec-websocket-protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let (mut socket, response) =
        tokio::time::timeout(HANG, tokio_tungstenite::client_async(request, tls))
            .await
            .expect("no answer to the exec upgrade")
            .expect("the exec upgrade failed");
    assert_eq!(response.status(), 101);
    // Quiet for many idle timeouts.
    tokio::time::sleep(idle * 10).await;
    socket
        .send(Message::Binary(b"\0still here".to_vec().into()))
        .await
        .expect("the exec session was cut");
    let echoed = tokio::time::timeout(HANG, socket.next())
        .await
        .expect("no echo")
        .expect("the exec session ended")
        .expect("the exec session failed");
    assert_eq!(echoed.into_data().as_ref(), b"\x01still here");
    // The session holds the only connection place until it ends.
    assert_waits_for_the_place_of(&proxy, socket).await;
}

/// HEAD on Paddock's own responses over HTTP/2: headers (with the length a
/// GET would have), no body, and no stream reset.
#[tokio::test(flavor = "multi_thread")]
async fn head_on_paddock_responses_works_over_http2() {
    let proxy = ProxyUnderTest::start(builder(None)).await;
    let (mut sender, _connection) = http2_connection(&proxy).await;
    for path in ["/paddock/healthz", "/paddock/readyz", "/paddock/nope"] {
        let url = format!("{}{path}", proxy.url());
        let get = sender
            .send_request(Request::get(&url).body(Full::<Bytes>::default()).unwrap())
            .await
            .unwrap();
        let (get, get_body) = get.into_parts();
        let get_body = get_body.collect().await.unwrap().to_bytes();
        let head = sender
            .send_request(Request::head(&url).body(Full::<Bytes>::default()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"));
        assert_eq!(head.status(), get.status, "HEAD {path}");
        assert_eq!(
            head.headers().get("content-length"),
            get.headers.get("content-length"),
            "HEAD {path}: not the length of a GET"
        );
        let body = head
            .into_body()
            .collect()
            .await
            .unwrap_or_else(|e| panic!("HEAD {path}: {e}"))
            .to_bytes();
        assert!(body.is_empty(), "HEAD {path}: a body");
        assert!(!get_body.is_empty(), "GET {path}: no body");
    }
}

/// Headers are read before anyone is authenticated: an HTTP/2 request with
/// more than 256 KiB of them is refused without reaching the cluster, and
/// Paddock serves on. (1 MiB was accepted: enough for 24,000 header
/// fields, which overflowed a `HeaderMap` when the identity's were added.)
#[tokio::test(flavor = "multi_thread")]
async fn an_http2_request_with_too_many_header_bytes_is_refused() {
    let fake = fake_with_a_pod().await;
    let proxy = ProxyUnderTest::start(builder(Some(&fake))).await;
    let url = format!("{}{PODS}", proxy.url());
    let get = |extra_headers: usize| {
        let mut request = Request::get(&url).header("authorization", format!("Bearer {ALICE}"));
        for i in 0..extra_headers {
            request = request.header(format!("x-filler-{i}"), "v".repeat(64));
        }
        request.body(Full::<Bytes>::default()).unwrap()
    };
    let (mut sender, _connection) = http2_connection(&proxy).await;
    // About 330 KiB by HPACK's count.
    let refused = tokio::time::timeout(HANG, sender.send_request(get(3000)))
        .await
        .expect("no answer");
    assert!(
        !matches!(&refused, Ok(response) if response.status().is_success()),
        "{:?}",
        refused.map(|r| r.status())
    );
    assert!(fake.last_request(PODS).is_none(), "it reached the cluster");
    let (mut sender, _connection) = http2_connection(&proxy).await;
    let served = sender.send_request(get(100)).await.unwrap();
    assert_eq!(served.status(), 200);
}
