//! The authorized cluster endpoint under load: a real `paddock serve` with
//! `--tokens` cluster-scoped tokens in its store, a real `paddock sidecar`
//! replicating them, then
//!
//! * the sidecar's time to its first full replica and its RSS;
//! * token-review latency over HTTP/1.1 keep-alive (p50/p99), valid and
//!   unknown tokens;
//! * revocation propagation: `DELETE /paddock/v1/tokens/<id>` sent to the
//!   center until the sidecar answers `authenticated: false` (p50/p99);
//! * user changes: `POST /paddock/v1/users/<id>/disable` (and `enable`)
//!   until the sidecar refuses (accepts) that user's token;
//! * with `--store etcd` (the center on a one-member etcd this program
//!   starts), group changes: the user's groups committed to etcd from this
//!   process, as a directory refresh on another replica commits them, until
//!   the sidecar's answer carries the new group.
//!
//! Each propagation is printed beside its baseline of the same trials: the
//! change's own round trip (the admin call answered, the etcd commit
//! acknowledged), which the propagation includes.
//!
//! Run by `benches/sidecar.sh` (release build, loopback only):
//!
//! ```sh
//! bash benches/sidecar.sh                 # TOKENS=100000 REVOCATIONS=200
//! STORE=etcd TOKENS=10000 bash benches/sidecar.sh
//! ```

// A benchmark reports to stdout.
#![allow(clippy::print_stdout)]

use paddock_benches::rss_kib;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use paddock_tests::etcd::EtcdCluster;
use proxy_core::{
    accounts::{tokens::NewToken, Accounts, AccountsOptions, PEPPER_FILE},
    authn::tokens::{Pepper, TokenHasher},
    store::{
        EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Expect, Object, Op, Store,
        Timestamp, TokenKind, TokenRecord, User, UserAttributes,
    },
};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} p50={:?} p99={:?} max={:?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// The user whose token the user and group changes are measured with.
const FLIP_USER: &str = "u-flip";
/// Its token (cluster `default`).
const FLIP_TOKEN: &str = "t-flip:flip-secret";

/// What [`seed`] leaves: the accounts over the store (kept open for the
/// group changes), an admin API token and the cluster's registration token.
struct Seeded {
    accounts: Accounts,
    admin_token: String,
    registration_token: String,
}

/// Seeds `store` (pepper in `data_dir`) with `n` tokens for cluster
/// `default` (secrets `s<i>`) and [`FLIP_USER`] with [`FLIP_TOKEN`],
/// `per_commit` objects a commit (etcd takes at most 128 operations).
fn seed(
    store: Arc<dyn Store>,
    data_dir: &Path,
    n: usize,
    per_commit: usize,
) -> anyhow::Result<Seeded> {
    std::fs::create_dir_all(data_dir)?;
    let pepper = Pepper::load_or_create(&data_dir.join(PEPPER_FILE))?;
    let accounts = Accounts::new(store, &pepper, data_dir, AccountsOptions::default())?;
    accounts.bootstrap()?;
    let mut user = accounts
        .view()
        .snapshot()
        .user_by_name("admin")
        .map(|u| u.value.clone())
        .expect("bootstrap admin");
    // A bootstrap admin may do nothing before changing its password.
    user.must_change_password = false;
    let admin = user.id.clone();
    accounts
        .view()
        .commit(vec![Op::put(Object::User(user), Expect::Any)])?;
    let feed = accounts.issue(NewToken::new(&admin, TokenKind::Api))?;
    let hasher = TokenHasher::new(&pepper);
    let cluster = TokenHasher::new(&hasher.cluster_key("default"));
    let now = Timestamp::now();
    let token = |id: String, user_id: &str, secret: &str| {
        Op::put(
            Object::Token(TokenRecord {
                id,
                user_id: user_id.to_owned(),
                kind: TokenKind::Kubeconfig,
                hash: hasher.hash(secret),
                cluster: Some("default".into()),
                cluster_verifier: Some(cluster.hash(secret)),
                provider: "local".into(),
                description: String::new(),
                created_at: now,
                expires_at: Some(now.plus(Duration::from_secs(86_400))),
                idle_timeout_secs: None,
                enabled: true,
            }),
            Expect::Any,
        )
    };
    let (flip_id, flip_secret) = FLIP_TOKEN.split_once(':').expect("id:secret");
    accounts.view().commit(vec![
        Op::put(
            Object::User(User {
                id: FLIP_USER.into(),
                username: "flip".into(),
                display_name: String::new(),
                enabled: true,
                must_change_password: false,
                principal_ids: vec![format!("local://{FLIP_USER}")],
                created_at: now,
            }),
            Expect::Any,
        ),
        token(flip_id.to_owned(), FLIP_USER, flip_secret),
    ])?;
    let mut ops = Vec::new();
    for i in 0..n {
        ops.push(token(format!("t-bench{i:07}"), &admin, &format!("s{i}")));
        if ops.len() == per_commit {
            accounts.view().commit(std::mem::take(&mut ops))?;
        }
    }
    if !ops.is_empty() {
        accounts.view().commit(ops)?;
    }
    let registration = proxy_core::accounts::clusters::rotate_token(
        accounts.view(),
        accounts.token_hasher(),
        "default",
        &["default".to_owned()],
    )?;
    Ok(Seeded {
        admin_token: secrecy::ExposeSecret::expose_secret(&feed.token).to_owned(),
        registration_token: secrecy::ExposeSecret::expose_secret(&registration).to_owned(),
        accounts,
    })
}

/// Whether a TokenReview answer shows the change.
type Arrived = Box<dyn Fn(&[u8]) -> bool>;
/// A change sent to the center (or its store), done when acknowledged.
type Change = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<()>>>>;

/// Prints a propagation's distribution beside its baseline's.
fn summary_with_baseline(name: &str, baseline: &str, samples: Vec<(Duration, Duration)>) {
    summary(baseline, samples.iter().map(|s| s.0).collect());
    summary(name, samples.iter().map(|s| s.1).collect());
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<Killed> {
    let file = std::fs::File::create(log)?;
    Ok(Killed(
        paddock_tests::paddock::without_proxy_env(&mut Command::new(bin))
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?,
    ))
}

fn logged_addr(log: &Path, marker: &str) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text.lines().find(|l| l.contains(marker))?;
    Some(
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_owned(),
    )
}

async fn wait_addr(log: &Path, marker: &str) -> String {
    // A debug build loading 100,000 tokens on a busy machine takes a while.
    for _ in 0..6000 {
        if let Some(addr) = logged_addr(log, marker) {
            return addr;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no '{marker}' in {}:\n{}",
        log.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn review_body(token: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{{"token":"{token}"}}}}"#
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let paddock = PathBuf::from(arg(&args, "--paddock", "target/release/paddock"));
    let tokens: usize = arg(&args, "--tokens", "100000").parse()?;
    let revocations: usize = arg(&args, "--revocations", "200").parse()?;
    let reviews: usize = arg(&args, "--reviews", "20000").parse()?;
    let changes: usize = arg(&args, "--changes", "100").parse()?;
    let on_etcd = match arg(&args, "--store", "embedded").as_str() {
        "embedded" => false,
        "etcd" => true,
        other => anyhow::bail!("--store embedded|etcd, not {other}"),
    };
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("center");
    let etcd = on_etcd.then(|| EtcdCluster::start(1));
    let (store, per_commit): (Arc<dyn Store>, usize) = match &etcd {
        Some(etcd) => (
            Arc::new(EtcdStore::connect(EtcdOptions::new(etcd.endpoints()))?),
            100,
        ),
        None => (
            Arc::new(EmbeddedStore::open_in_dir(
                &data,
                EmbeddedOptions::default(),
            )?),
            5000,
        ),
    };
    let started = Instant::now();
    let Seeded {
        accounts,
        admin_token: feed_token,
        registration_token,
    } = seed(store, &data, tokens, per_commit)?;
    println!(
        "seeded {tokens} cluster-scoped tokens ({} store) in {:?}",
        if on_etcd { "etcd" } else { "embedded" },
        started.elapsed()
    );

    let center_log = dir.path().join("center.log");
    let data_s = data.display().to_string();
    let mut center_args = vec![
        "serve".to_owned(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        data_s,
        "--upstream".into(),
        "https://127.0.0.1:1".into(),
    ];
    if let Some(etcd) = &etcd {
        center_args.extend([
            "--store".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            etcd.endpoints().join(","),
        ]);
    }
    let center_args: Vec<&str> = center_args.iter().map(String::as_str).collect();
    let _center = spawn(&paddock, &center_args, &center_log)?;
    let center = format!(
        "https://{}",
        wait_addr(&center_log, "paddock listening").await
    );
    let feed_file = dir.path().join("feed-token");
    std::fs::write(&feed_file, &registration_token)?;
    let sidecar_log = dir.path().join("sidecar.log");
    let ca = data.join("tls/ca.crt");
    let sidecar_started = Instant::now();
    let sidecar = spawn(
        &paddock,
        &[
            "sidecar",
            "--listen",
            "127.0.0.1:0",
            "--server",
            &center,
            "--server-ca",
            &ca.display().to_string(),
            "--cluster",
            "default",
            "--token-file",
            &feed_file.display().to_string(),
            "--data-dir",
            &dir.path().join("sidecar").display().to_string(),
        ],
        &sidecar_log,
    )?;
    let sidecar_url = format!(
        "http://{}",
        wait_addr(&sidecar_log, "sidecar listening").await
    );

    let http: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let review = |token: String| {
        let http = http.clone();
        let url = format!("{sidecar_url}/v1/authenticate");
        async move {
            let response = http
                .request(
                    Request::post(url)
                        .body(Full::new(review_body(&token)))
                        .expect("request"),
                )
                .await
                .expect("sidecar answers");
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            (status.as_u16(), body)
        }
    };
    loop {
        let ready = http
            .request(Request::get(format!("{sidecar_url}/readyz")).body(Full::default())?)
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false);
        if ready {
            break;
        }
        anyhow::ensure!(
            sidecar_started.elapsed() < Duration::from_secs(300),
            "sidecar never ready"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "sidecar: full replica of {tokens} tokens ready {:?} after start",
        sidecar_started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!(
        "sidecar RSS with {tokens} tokens: {} KiB",
        rss_kib(&sidecar.0.id().to_string())
    );

    let mut valid = Vec::with_capacity(reviews);
    for i in 0..reviews {
        let token = format!("t-bench{:07}:s{}", i % tokens, i % tokens);
        let t = Instant::now();
        let (code, body) = review(token).await;
        valid.push(t.elapsed());
        assert!(code == 200 && body.windows(20).any(|w| w == b"\"authenticated\":true"));
    }
    summary(
        "token review, valid (HTTP/1.1 keep-alive, sequential)",
        valid,
    );
    let mut unknown = Vec::with_capacity(reviews / 10);
    for i in 0..reviews / 10 {
        let t = Instant::now();
        let (code, _) = review(format!("t-nothere{i}:x")).await;
        unknown.push(t.elapsed());
        assert_eq!(code, 200);
    }
    summary("token review, unknown token", unknown);
    println!(
        "sidecar RSS after the reviews: {} KiB",
        rss_kib(&sidecar.0.id().to_string())
    );

    // Revocations through the center's admin API.
    let pem = std::fs::read(&ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(connector);
    let admin: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(https);
    let admin_call = |method: http::Method, path: String| {
        let admin = admin.clone();
        let request = Request::builder()
            .method(method)
            .uri(format!("{center}{path}"))
            .header("authorization", format!("Bearer {feed_token}"))
            .body(Full::default());
        async move {
            let response = admin.request(request?).await?;
            anyhow::ensure!(response.status() == 200, "{path}: {}", response.status());
            Ok(())
        }
    };
    // Sends `change`, then reviews `token` until `arrived` holds for the
    // answer: (the change's own round trip, until the sidecar has it).
    let propagate = |token: String, arrived: Arrived, change: Change| {
        let review = &review;
        async move {
            let t = Instant::now();
            change.await?;
            let acknowledged = t.elapsed();
            loop {
                let (_, body) = review(token.clone()).await;
                if arrived(&body) {
                    break;
                }
                anyhow::ensure!(
                    t.elapsed() < Duration::from_secs(30),
                    "the change never reached the sidecar"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            anyhow::Ok((acknowledged, t.elapsed()))
        }
    };
    let authenticated = |yes: bool| -> Arrived {
        let needle: &'static [u8] = if yes {
            b"\"authenticated\":true"
        } else {
            b"\"authenticated\":false"
        };
        Box::new(move |body: &[u8]| body.windows(needle.len()).any(|w| w == needle))
    };
    let mut propagation = Vec::with_capacity(revocations);
    for i in 0..revocations {
        let id = format!("t-bench{:07}", tokens - 1 - i);
        let token = format!("{id}:s{}", tokens - 1 - i);
        let change = admin_call(http::Method::DELETE, format!("/paddock/v1/tokens/{id}"));
        propagation.push(propagate(token, authenticated(false), Box::pin(change)).await?);
    }
    summary_with_baseline(
        "revocation propagation (DELETE sent → sidecar refuses)",
        "  baseline: DELETE answered by the center",
        propagation,
    );

    // A user disabled and enabled again, `changes` times each.
    let (mut disabled, mut enabled) = (Vec::new(), Vec::new());
    for _ in 0..changes {
        for (action, samples) in [("disable", &mut disabled), ("enable", &mut enabled)] {
            let change = admin_call(
                http::Method::POST,
                format!("/paddock/v1/users/{FLIP_USER}/{action}"),
            );
            let arrived = authenticated(action == "enable");
            samples.push(propagate(FLIP_TOKEN.to_owned(), arrived, Box::pin(change)).await?);
        }
    }
    summary_with_baseline(
        "user disabled (POST …/disable sent → sidecar refuses)",
        "  baseline: POST answered by the center",
        disabled,
    );
    summary_with_baseline(
        "user enabled (POST …/enable sent → sidecar accepts)",
        "  baseline: POST answered by the center",
        enabled,
    );

    // Group changes, committed to etcd as another replica's directory
    // refresh commits them.
    if on_etcd {
        let mut moved = Vec::with_capacity(changes);
        for i in 0..changes {
            let group = format!("openldap_group://cn=g{i}");
            let view = accounts.view().clone();
            let wanted = group.clone();
            let change = async move {
                tokio::task::spawn_blocking(move || {
                    let mut attributes = UserAttributes {
                        user_id: FLIP_USER.into(),
                        ..UserAttributes::default()
                    };
                    attributes.groups.insert("openldap".into(), vec![wanted]);
                    view.commit(vec![Op::put(
                        Object::UserAttributes(attributes),
                        Expect::Any,
                    )])
                })
                .await??;
                anyhow::Ok(())
            };
            let needle = format!("\"{group}\"").into_bytes();
            let arrived = Box::new(move |body: &[u8]| {
                body.windows(needle.len()).any(|w| w == needle.as_slice())
            });
            moved.push(propagate(FLIP_TOKEN.to_owned(), arrived, Box::pin(change)).await?);
        }
        summary_with_baseline(
            "group change (committed to etcd → sidecar answers with the new group)",
            "  baseline: etcd commit acknowledged",
            moved,
        );
    } else {
        println!("group changes: measured with --store etcd (STORE=etcd)");
    }
    println!(
        "sidecar RSS at the end: {} KiB",
        rss_kib(&sidecar.0.id().to_string())
    );
    Ok(())
}
