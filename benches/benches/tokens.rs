//! Token verification cost: a cache hit, a cache miss (full HMAC verification and
//! cache insert) and the bare verifier, against a snapshot holding 10 000 tokens;
//! and the embedded store's poll and durable commit.
//!
//! Run: `cargo bench -p paddock-benches --bench tokens`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use proxy_core::accounts::tokens::{issue, NewToken, TokenPolicy};
use proxy_core::authn::tokens::{LastUsed, Pepper, TokenCache, TokenHasher, TokenVerifier};
use proxy_core::store::{
    EmbeddedOptions, EmbeddedStore, Expect, Object, Op, Project, StoreView, Timestamp, TokenKind,
    TokenRecord, User,
};
use secrecy::ExposeSecret;

const TOKENS: usize = 10_000;

struct Setup {
    dir: std::path::PathBuf,
    view: Arc<StoreView>,
    verifier: TokenVerifier,
    presented: String,
}

fn setup() -> Setup {
    let dir = std::env::temp_dir().join(format!("paddock-bench-tokens-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = EmbeddedStore::open_in_dir(&dir, EmbeddedOptions::default()).expect("store");
    let view = StoreView::new(Arc::new(store)).expect("view");
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
    view.commit(ops).expect("seed");
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
        dir,
        view,
        verifier,
        presented: token.token.expose_secret().to_string(),
    }
}

fn tokens(c: &mut Criterion) {
    let s = setup();
    let now = Timestamp::now();
    let mut g = c.benchmark_group("token_verify");

    let cache: TokenCache = TokenCache::new(Duration::from_secs(10), 100_000);
    cache
        .verify(&s.verifier, &s.presented, now, |_| ())
        .expect("warm");
    g.bench_function("cache_hit", |b| {
        b.iter(|| {
            cache
                .verify(&s.verifier, black_box(&s.presented), now, |_| ())
                .expect("valid");
        });
    });

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

    g.bench_function("uncached", |b| {
        b.iter(|| {
            s.verifier
                .verify(black_box(&s.presented), now)
                .expect("valid")
        });
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
    let _ = std::fs::remove_dir_all(&s.dir);
}

criterion_group!(benches, tokens);
criterion_main!(benches);
