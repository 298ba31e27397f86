//! Several replicas on etcd, measured against a real etcd (Debian
//! `etcd-server`) this program starts on loopback ports:
//!
//! * `propagation [TRIALS]`: a token revoked through replica A, until replica B
//!   refuses it (each replica its own etcd connection, change hint and snapshot,
//!   as two `paddock serve` processes have); p50/p99/max over TRIALS (200).
//! * `verify [ROUNDS]`: token verification on the request path (a token-cache
//!   hit and an uncached verification), etcd-backed snapshot vs embedded, in
//!   alternating rounds in one process (the etcd member running throughout).
//! * `verify-count etcd|embedded N`: N cache hits and N uncached verifications
//!   on one backend, for callgrind: `valgrind --tool=callgrind
//!   --collect-atstart=no --toggle-collect='*hit_loop*' replicas verify-count etcd 100000`
//!   counts the hits only (`*uncached_loop*` the others); `malloc`'s
//!   inclusive cost in it shows whether a hit allocates (its call counts
//!   include calls outside the counted code). The verifier records uses in a
//!   last-used tracker, as the server's does.
//! * `login [SECONDS]`: local logins (argon2id + a session token commit) per
//!   second with 2 concurrent clients, etcd vs embedded.
//! * `startup USERS TOKENS`: seeds a store, then a fresh process opens it: load
//!   time and RSS, etcd vs embedded.
//!
//! Run: `cargo run --release -p paddock-benches --bin replicas -- propagation 200`

#![allow(clippy::print_stdout)]

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paddock_tests::etcd::EtcdCluster;
use proxy_core::accounts::local::{add_user, PasswordHasher, PasswordParams, PasswordPolicy};
use proxy_core::accounts::tokens::{issue, revoke, NewToken, TokenPolicy};
use proxy_core::accounts::{Accounts, AccountsOptions, LoginCredential};
use proxy_core::authn::tokens::{LastUsed, Pepper, TokenCache, TokenHasher, TokenVerifier};
use proxy_core::store::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Expect, Object, Op, Store, StoreView,
    Timestamp, TokenKind, TokenRecord, User,
};
use secrecy::{ExposeSecret, SecretString};

fn etcd_store(cluster: &EtcdCluster) -> Arc<dyn Store> {
    Arc::new(EtcdStore::connect(EtcdOptions::new(cluster.endpoints())).expect("etcd"))
}

fn embedded_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open_in_dir(dir, EmbeddedOptions::default()).expect("embedded"))
}

fn user(id: &str) -> User {
    User {
        id: id.into(),
        username: id.into(),
        display_name: String::new(),
        enabled: true,
        must_change_password: false,
        principal_ids: vec![format!("local://{id}")],
        created_at: Timestamp::now(),
    }
}

/// A fresh API token of `u-bench`, issued through `view`; its secret.
fn issue_api_token(view: &StoreView, hasher: &TokenHasher) -> (String, String) {
    let token = issue(
        view,
        hasher,
        &TokenPolicy::default(),
        NewToken::new("u-bench", TokenKind::Api),
        Timestamp::now(),
    )
    .expect("issue");
    (token.record.id, token.token.expose_secret().to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn propagation(trials: usize) {
    let cluster = EtcdCluster::start(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let a = StoreView::new(etcd_store(&cluster)).expect("A");
    let b = StoreView::new(etcd_store(&cluster)).expect("B");
    // What `Accounts::spawn_background` runs on every replica.
    let _guard = runtime.enter();
    a.spawn_poller(Duration::from_secs(1));
    b.spawn_poller(Duration::from_secs(1));
    a.commit(vec![Op::put(Object::User(user("u-bench")), Expect::Any)])
        .expect("user");
    let hasher = Arc::new(TokenHasher::new(&Pepper::generate()));
    let on_b = TokenVerifier::new(hasher.clone(), b.clone());
    let mut samples = Vec::with_capacity(trials);
    for _ in 0..trials {
        let (id, secret) = issue_api_token(&a, &hasher);
        while on_b.verify(&secret, Timestamp::now()).is_err() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let start = Instant::now();
        revoke(&a, None, &id).expect("revoke");
        while on_b.verify(&secret, Timestamp::now()).is_ok() {
            std::hint::spin_loop();
        }
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "revocation on A -> refused on B, {} trials: p50 {:?}  p99 {:?}  max {:?}",
        samples.len(),
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1]
    );
}

/// One backend's request-path setup: a snapshot holding `u-bench` and one API
/// token of theirs, its verifier, a warm token cache and the presented token.
struct VerifySetup {
    name: &'static str,
    _view: Arc<StoreView>,
    verifier: TokenVerifier,
    cache: TokenCache,
    secret: String,
}

fn verify_setup(name: &'static str, store: Arc<dyn Store>) -> VerifySetup {
    let view = StoreView::new(store).expect("view");
    let hasher = Arc::new(TokenHasher::new(&Pepper::generate()));
    view.commit(vec![Op::put(Object::User(user("u-bench")), Expect::Any)])
        .expect("user");
    let (_, secret) = issue_api_token(&view, &hasher);
    let verifier =
        TokenVerifier::new(hasher, view.clone()).with_activity(Arc::new(LastUsed::default()));
    let cache: TokenCache = TokenCache::new(Duration::from_secs(600), 100_000);
    cache
        .verify(&verifier, &secret, Timestamp::now(), |_| ())
        .expect("warm");
    VerifySetup {
        name,
        _view: view,
        verifier,
        cache,
        secret,
    }
}

/// `n` token-cache hits: the request path's cost once a token was seen.
/// Not inlined, so callgrind can count exactly this (`--toggle-collect`).
#[inline(never)]
fn hit_loop(s: &VerifySetup, now: Timestamp, n: u32) {
    for _ in 0..n {
        s.cache
            .verify(&s.verifier, std::hint::black_box(&s.secret), now, |_| ())
            .expect("valid");
    }
}

/// `n` verifications without the cache (HMAC of the secret each time).
#[inline(never)]
fn uncached_loop(s: &VerifySetup, now: Timestamp, n: u32) {
    for _ in 0..n {
        s.verifier
            .verify(std::hint::black_box(&s.secret), now)
            .expect("valid");
    }
}

/// Both backends in one process, with the etcd member running throughout,
/// measured in alternating rounds: the machine's load and the CPU's state
/// fall on both alike (measured one after the other, the first backend paid
/// for the warm-up and the etcd member's start).
fn verify(rounds: usize) {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().expect("dir");
    let setups = [
        verify_setup("etcd", etcd_store(&cluster)),
        verify_setup("embedded", embedded_store(dir.path())),
    ];
    let now = Timestamp::now();
    let mut hits: [Vec<Duration>; 2] = Default::default();
    let mut uncached: [Vec<Duration>; 2] = Default::default();
    for round in 0..rounds {
        // Alternate which backend goes first, too.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let s = &setups[i];
            let n = 500_000u32;
            let start = Instant::now();
            hit_loop(s, now, n);
            hits[i].push(start.elapsed() / n);
            let n = 100_000u32;
            let start = Instant::now();
            uncached_loop(s, now, n);
            uncached[i].push(start.elapsed() / n);
        }
    }
    for (i, s) in setups.iter().enumerate() {
        hits[i].sort();
        uncached[i].sort();
        println!(
            "{}: token verification cache hit median {:?}/op (min {:?}), uncached median {:?}/op (min {:?}), {rounds} rounds",
            s.name,
            percentile(&hits[i], 0.5),
            hits[i][0],
            percentile(&uncached[i], 0.5),
            uncached[i][0],
        );
    }
}

/// For callgrind: `n` cache hits on one backend, the only code counted when
/// run with `--collect-atstart=no --toggle-collect='*hit_loop*'`.
fn verify_count(backend: &str, n: u32) {
    let dir = tempfile::tempdir().expect("dir");
    let cluster;
    let setup = match backend {
        "etcd" => {
            cluster = EtcdCluster::start(1);
            verify_setup("etcd", etcd_store(&cluster))
        }
        _ => verify_setup("embedded", embedded_store(dir.path())),
    };
    let now = Timestamp::now();
    hit_loop(&setup, now, n);
    uncached_loop(&setup, now, n);
    println!(
        "{}: {n} cache hits and {n} uncached verifications",
        setup.name
    );
}

fn login_on(name: &str, store: Arc<dyn Store>, dir: &Path, seconds: u64) {
    let accounts = Arc::new(
        Accounts::new(store, &Pepper::generate(), dir, AccountsOptions::default())
            .expect("accounts"),
    );
    let password = SecretString::from("bench-password-0123456789");
    let hasher = PasswordHasher::new(PasswordParams::default()).expect("hasher");
    for i in 0..2 {
        add_user(
            accounts.view(),
            &hasher,
            &PasswordPolicy::default(),
            &format!("bench{i}"),
            "",
            &password,
            Timestamp::now(),
        )
        .expect("user");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let done: usize = runtime.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..2u8 {
            let (accounts, password) = (accounts.clone(), password.clone());
            tasks.push(tokio::spawn(async move {
                let username = format!("bench{i}");
                let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, i));
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let credential = LoginCredential::Password {
                        username: &username,
                        password: &password,
                    };
                    let logged = accounts
                        .login("local", credential, client)
                        .await
                        .expect("login");
                    let accounts = accounts.clone();
                    tokio::task::spawn_blocking(move || {
                        accounts.issue(NewToken::new(logged.user.id, TokenKind::Session))
                    })
                    .await
                    .expect("task")
                    .expect("session");
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("task");
        }
        total
    });
    println!(
        "{name}: {:.1} logins/s (login + session token commit, 2 clients, {seconds} s)",
        done as f64 / seconds as f64
    );
}

fn login(seconds: u64) {
    let cluster = EtcdCluster::start(1);
    let dir = tempfile::tempdir().expect("dir");
    login_on("etcd", etcd_store(&cluster), dir.path(), seconds);
    let dir2 = tempfile::tempdir().expect("dir");
    login_on(
        "embedded",
        embedded_store(dir2.path()),
        dir2.path(),
        seconds,
    );
}

/// Writes the objects straight through the backend, `per_commit` ops per
/// commit on 4 threads (no snapshot to keep up to date while seeding).
fn seed(store: Arc<dyn Store>, users: usize, tokens: usize, per_commit: usize) {
    let hash = TokenHasher::new(&Pepper::generate()).hash("seed");
    let now = Timestamp::now();
    let object = move |i: usize| {
        if i < users {
            return Object::User(user(&format!("u-{i:07}")));
        }
        let t = i - users;
        Object::Token(TokenRecord {
            id: format!("t-{t:08}"),
            user_id: format!("u-{:07}", t % users.max(1)),
            kind: TokenKind::Api,
            hash: hash.clone(),
            cluster: None,
            cluster_verifier: None,
            provider: "local".into(),
            description: String::new(),
            created_at: now,
            expires_at: None,
            idle_timeout_secs: None,
            enabled: true,
        })
    };
    let total = users + tokens;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (store, next, object) = (store.clone(), next.clone(), object.clone());
            std::thread::spawn(move || loop {
                let from = next.fetch_add(per_commit, std::sync::atomic::Ordering::Relaxed);
                if from >= total {
                    return;
                }
                let ops = (from..(from + per_commit).min(total))
                    .map(|i| Op::put(object(i), Expect::Any))
                    .collect();
                store.commit(ops).expect("seed");
            })
        })
        .collect();
    for t in threads {
        t.join().expect("seeder");
    }
    println!(
        "  seeded {users} users and {tokens} tokens in {:?}",
        started.elapsed()
    );
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// In a fresh process: open the store and load the snapshot, as `serve` does.
fn startup_child(location: &str) {
    let started = Instant::now();
    let store: Arc<dyn Store> = match location.split_once('=') {
        Some(("etcd", endpoints)) => Arc::new(
            EtcdStore::connect(EtcdOptions::new(
                endpoints.split(',').map(str::to_owned).collect(),
            ))
            .expect("etcd"),
        ),
        Some(("embedded", dir)) => embedded_store(Path::new(dir)),
        _ => panic!("bad location"),
    };
    let view = StoreView::new(store).expect("load");
    let elapsed = started.elapsed();
    let snap = view.snapshot();
    println!(
        "  load: {:?} for {} users + {} tokens; RSS {} MiB",
        elapsed,
        snap.user_count(),
        snap.tokens().count(),
        rss_kib() / 1024
    );
}

fn startup(users: usize, tokens: usize) {
    let me = std::env::current_exe().expect("exe");
    let child = |location: String| {
        let status = std::process::Command::new(&me)
            .args(["startup-child", &location])
            .status()
            .expect("child");
        assert!(status.success());
    };
    println!("etcd:");
    let cluster = EtcdCluster::start(1);
    seed(etcd_store(&cluster), users, tokens, 100);
    child(format!("etcd={}", cluster.endpoints().join(",")));
    drop(cluster);
    println!("embedded:");
    let dir = tempfile::tempdir().expect("dir");
    seed(embedded_store(dir.path()), users, tokens, 20_000);
    child(format!("embedded={}", dir.path().display()));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    match args.first().map(String::as_str) {
        Some("propagation") => propagation(arg(1, 200)),
        Some("verify") => verify(arg(1, 10)),
        Some("verify-count") => verify_count(
            args.get(1).map_or("embedded", String::as_str),
            arg(2, 100_000) as u32,
        ),
        Some("login") => login(arg(1, 10) as u64),
        Some("startup") => startup(arg(1, 100_000), arg(2, 1_000_000)),
        Some("startup-child") => startup_child(&args[1]),
        _ => {
            eprintln!("usage: replicas propagation [TRIALS] | verify [ROUNDS] | verify-count etcd|embedded N | login [SECONDS] | startup USERS TOKENS");
            std::process::exit(64);
        }
    }
}
