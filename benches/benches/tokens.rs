//! Token verification cost: a cache hit, a cache miss (full HMAC verification and
//! cache insert) and the bare verifier, against a snapshot holding 10 000 tokens,
//! with the snapshot loaded from the embedded store and from etcd (one member
//! this bench starts; Debian's `etcd-server`), in the same run; and the
//! embedded store's poll and durable commit.
//!
//! Both backends answer the request path from the same in-memory snapshot,
//! so their `token_verify` rows must agree; a difference is the machine, not
//! the code.
//!
//! Run: `cargo bench -p paddock-benches --bench tokens`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use paddock_tests::etcd::EtcdCluster;
use proxy_core::accounts::tokens::{issue, NewToken, TokenPolicy};
use proxy_core::authn::tokens::{LastUsed, Pepper, TokenCache, TokenHasher, TokenVerifier};
use proxy_core::store::{
    EmbeddedOptions, EmbeddedStore, EtcdOptions, EtcdStore, Expect, Object, Op, Project, Store,
    StoreView, Timestamp, TokenKind, TokenRecord, User,
};
use secrecy::ExposeSecret;

const TOKENS: usize = 10_000;

struct Setup {
    view: Arc<StoreView>,
    verifier: TokenVerifier,
    presented: String,
}

fn setup(store: Arc<dyn Store>) -> Setup {
    let view = StoreView::new(store).expect("view");
    let now = Timestamp::now();
    let hasher = Arc::new(TokenHasher::new(&Pepper::generate()));
    let mut ops = vec![Op::put(
        Object::User(User {
            id: "u-bench".into(),
            username: "bench".into(),
            display_name: String::new(),
            enabled: true,
            must_change_password: false,
            principal_ids: vec![],
            created_at: now,
        }),
        Expect::Absent,
    )];
    // Background tokens so lookups hit a realistically sized map.
    for i in 0..TOKENS {
        ops.push(Op::put(
            Object::Token(TokenRecord {
                id: format!("t-bg{i:08}"),
                user_id: "u-bench".into(),
                kind: TokenKind::Api,
                hash: hasher.hash("background"),
                cluster: None,
                cluster_verifier: None,
                provider: "local".into(),
                description: String::new(),
                created_at: now,
                expires_at: None,
                idle_timeout_secs: None,
                enabled: true,
            }),
            Expect::Absent,
        ));
    }
    // etcd takes at most 128 ops per transaction.
    view.commit_batches(ops).expect("seed");
    let token = issue(
        &view,
        &hasher,
        &TokenPolicy::default(),
        NewToken::new("u-bench", TokenKind::Session),
        now,
    )
    .expect("issue");
    let activity = Arc::new(LastUsed::default());
    let verifier = TokenVerifier::new(hasher, view.clone()).with_activity(activity);
    Setup {
        view,
        verifier,
        presented: token.token.expose_secret().to_string(),
    }
}

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let embedded = setup(Arc::new(
        EmbeddedStore::open_in_dir(dir.path(), EmbeddedOptions::default()).expect("store"),
    ));
    let etcd_member = EtcdCluster::start(1);
    let etcd = setup(Arc::new(
        EtcdStore::connect(EtcdOptions::new(etcd_member.endpoints())).expect("etcd"),
    ));
    let now = Timestamp::now();
    let mut g = c.benchmark_group("token_verify");
    for (backend, s) in [("embedded", &embedded), ("etcd", &etcd)] {
        let cache: TokenCache = TokenCache::new(Duration::from_secs(600), 100_000);
        cache
            .verify(&s.verifier, &s.presented, now, |_| ())
            .expect("warm");
        g.bench_function(format!("cache_hit/{backend}"), |b| {
            b.iter(|| {
                cache
                    .verify(&s.verifier, black_box(&s.presented), now, |_| ())
                    .expect("valid");
            });
        });
        g.bench_function(format!("uncached/{backend}"), |b| {
            b.iter(|| {
                s.verifier
                    .verify(black_box(&s.presented), now)
                    .expect("valid")
            });
        });
    }
    let s = &embedded;
    g.bench_function("cache_miss", |b| {
        b.iter_batched_ref(
            || TokenCache::<()>::new(Duration::from_secs(10), 100_000),
            |cache| {
                cache
                    .verify(&s.verifier, black_box(&s.presented), now, |_| ())
                    .expect("valid")
            },
            BatchSize::SmallInput,
        );
    });

    let wrong = format!("{}x", &s.presented[..s.presented.len() - 1]);
    g.bench_function("wrong_secret", |b| {
        b.iter(|| {
            s.verifier
                .verify(black_box(&wrong), now)
                .expect_err("invalid")
        });
    });
    g.finish();
    drop(etcd);
    drop(etcd_member);

    // What the CLI-alongside-server design costs: the server's poll when nothing
    // changed (one read transaction on the shared file), and one durable commit.
    let mut g = c.benchmark_group("store");
    g.bench_function("poll_no_change", |b| {
        b.iter(|| assert!(!s.view.refresh().expect("refresh")));
    });
    g.bench_function("revision", |b| {
        b.iter(|| s.view.store().revision().expect("revision"));
    });
    g.sample_size(20);
    let mut i = 0u64;
    g.bench_function("durable_commit", |b| {
        b.iter(|| {
            i += 1;
            s.view
                .commit(vec![Op::put(
                    Object::Project(Project {
                        id: format!("p-{i}"),
                        cluster_id: "c-1".into(),
                        display_name: "bench".into(),
                        namespaces: vec![],
                    }),
                    Expect::Any,
                )])
                .expect("commit")
        });
    });
    g.finish();
}

criterion_group!(benches, tokens);
criterion_main!(benches);
