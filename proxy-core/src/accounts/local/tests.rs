use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::store::{BindingScope, EmbeddedOptions, EmbeddedStore};

const NOW: Timestamp = Timestamp(1_800_000_000);
const ADDR: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const ADDR2: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_string())
}

/// Cheap parameters: these tests are about the flow, not the cost.
fn fast_hasher() -> Arc<PasswordHasher> {
    Arc::new(PasswordHasher::dangerous_with_params(PasswordParams::new(64, 1, 1)).unwrap())
}

struct Fixture {
    dir: tempfile::TempDir,
    view: Arc<StoreView>,
    hasher: Arc<PasswordHasher>,
    provider: LocalProvider,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_in_dir(dir.path(), EmbeddedOptions::default()).unwrap();
    let view = StoreView::new(Arc::new(store)).unwrap();
    let hasher = fast_hasher();
    let provider = LocalProvider::new(view.clone(), hasher.clone(), Arc::default());
    Fixture {
        dir,
        view,
        hasher,
        provider,
    }
}

impl Fixture {
    fn add(&self, name: &str, password: &str) -> User {
        add_user(
            &self.view,
            &self.hasher,
            &PasswordPolicy::default(),
            name,
            "",
            &pw(password),
            NOW,
        )
        .unwrap()
    }
}

#[test]
fn default_hash_is_owasp_argon2id_and_verifies() {
    let h = PasswordHasher::new(PasswordParams::default()).unwrap();
    let phc = h.hash(&pw("correct horse battery")).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    assert_eq!(
        h.verify(Some(&phc), &pw("correct horse battery")),
        Verification::Match {
            needs_rehash: false
        }
    );
    assert_eq!(
        h.verify(Some(&phc), &pw("correct horse batter")),
        Verification::Mismatch
    );
    // Unknown user: the dummy hash is checked and never matches.
    assert_eq!(
        h.verify(None, &pw("correct horse battery")),
        Verification::Mismatch
    );
    assert_eq!(h.verify(None, &pw("")), Verification::Mismatch);
    assert!(
        !format!("{h:?}").contains("argon2id$"),
        "Debug shows no hash"
    );
}

#[test]
fn weak_parameters_are_refused_and_old_hashes_flagged_for_rehash() {
    assert_eq!(
        PasswordHasher::new(PasswordParams::new(4096, 2, 1)).unwrap_err(),
        PasswordError::WeakParams
    );
    assert_eq!(
        PasswordHasher::new(PasswordParams::new(19_456, 1, 1)).unwrap_err(),
        PasswordError::WeakParams
    );
    let old = fast_hasher();
    let phc = old.hash(&pw("a long enough password")).unwrap();
    let new = PasswordHasher::dangerous_with_params(PasswordParams::new(128, 1, 1)).unwrap();
    assert_eq!(
        new.verify(Some(&phc), &pw("a long enough password")),
        Verification::Match { needs_rehash: true }
    );
    for bad in ["", "$argon2id$garbage", "plaintext"] {
        assert_eq!(
            new.verify(Some(bad), &pw("plaintext")),
            Verification::Mismatch
        );
    }
}

#[test]
fn password_policy() {
    let p = PasswordPolicy::default();
    assert_eq!(p.min_length, 12);
    assert_eq!(
        p.check("bob", &pw("elevenchars")),
        Err(PasswordError::TooShort { min: 12 })
    );
    assert!(p.check("bob", &pw("twelve chars")).is_ok());
    // Characters, not bytes.
    assert!(p.check("bob", &pw(&"ü".repeat(12))).is_ok());
    assert!(p.check("bob", &pw(&"ü".repeat(11))).is_err());
    assert_eq!(
        p.check("averylongusername", &pw("AveryLongUsername")),
        Err(PasswordError::EqualsUsername)
    );
    assert_eq!(
        p.check("bob", &pw(&"x".repeat(1025))),
        Err(PasswordError::TooLong { max: 1024 })
    );
    assert!(PasswordPolicy::with_min_length(20)
        .check("bob", &pw("twelve chars"))
        .is_err());
}

#[test]
fn backoff_schedule_is_exponential_and_capped() {
    let b = ThrottleConfig::default().per_user;
    let delays: Vec<u64> = (0..16).map(|f| b.delay_after(f).as_secs()).collect();
    assert_eq!(
        delays,
        [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    );
    assert_eq!(b.delay_after(u32::MAX), Duration::from_secs(300));
    // Within a 30-minute observation window an attacker waiting out every delay
    // gets 5 free + 9 doubling (511 s) + 4 capped attempts.
    assert_eq!(b.max_failures_within(Duration::from_secs(1800)), 18);
    assert_eq!(b.max_failures_within(Duration::ZERO), 5);
}

#[test]
fn throttle_blocks_with_retry_after_per_user_and_per_address() {
    let t = LoginThrottle::default();
    let t0 = Instant::now();
    for i in 0..4 {
        assert!(t.check("alice", ADDR, t0).is_ok(), "attempt {i}");
        assert_eq!(t.record_failure("alice", ADDR, t0), None);
    }
    assert_eq!(
        t.record_failure("Alice", ADDR, t0),
        Some(Throttled {
            retry_after_secs: 1
        }),
        "usernames are case-insensitive"
    );
    assert_eq!(
        t.check("alice", ADDR2, t0),
        Err(Throttled {
            retry_after_secs: 1
        })
    );
    // Another user from the same address is not blocked by alice's record.
    assert!(t.check("bob", ADDR2, t0).is_ok());
    let t1 = t0 + Duration::from_millis(1000);
    assert!(t.check("alice", ADDR2, t1).is_ok());
    t.record_failure("alice", ADDR2, t1);
    assert_eq!(
        t.check("alice", ADDR2, t1 + Duration::from_millis(500)),
        Err(Throttled {
            retry_after_secs: 2
        }),
        "rounded up"
    );
    // Success clears the user's record.
    t.record_success("alice");
    assert!(t.check("alice", ADDR2, t1).is_ok());
    // Forgotten after a quiet period.
    for _ in 0..10 {
        t.record_failure("carol", ADDR2, t1);
    }
    assert!(t.check("carol", ADDR2, t1).is_err());
    let later = t1 + Duration::from_secs(31 * 60);
    assert!(t.check("carol", ADDR2, later).is_ok());
    assert_eq!(
        t.record_failure("carol", ADDR2, later),
        None,
        "count restarted"
    );
}

#[test]
fn address_is_throttled_across_usernames_and_success_does_not_reset_it() {
    let t = LoginThrottle::default();
    let t0 = Instant::now();
    for i in 0..20 {
        t.record_failure(&format!("user{i}"), ADDR, t0);
    }
    t.record_success("user0");
    assert_eq!(
        t.check("someone-else", ADDR, t0),
        Err(Throttled {
            retry_after_secs: 1
        })
    );
    assert!(t.check("someone-else", ADDR2, t0).is_ok());
}

#[test]
fn a_burst_of_concurrent_attempts_cannot_overtake_the_count() {
    let t = Arc::new(LoginThrottle::default());
    let t0 = Instant::now();
    // 50 attempts in flight at once (none finished): only the free ones start.
    let go = std::sync::Barrier::new(50);
    let started = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (t, go) = (t.clone(), &go);
                s.spawn(move || {
                    go.wait();
                    t.begin_attempt("alice", ADDR, t0).is_ok()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|ok| *ok)
            .count()
    });
    assert_eq!(started, 5);
}

#[test]
fn successful_attempts_do_not_accumulate_against_an_address() {
    let t = LoginThrottle::default();
    let t0 = Instant::now();
    // A busy NAT: many users logging in successfully.
    for i in 0..100 {
        let user = format!("user{i}");
        t.begin_attempt(&user, ADDR, t0).unwrap();
        t.attempt_succeeded(&user, ADDR);
    }
    assert!(t.is_empty());
    assert!(t.begin_attempt("late", ADDR, t0).is_ok());
}

#[test]
fn throttle_memory_is_bounded() {
    let t = LoginThrottle::new(ThrottleConfig {
        max_entries: 100,
        ..ThrottleConfig::default()
    });
    let t0 = Instant::now();
    for i in 0..1000u32 {
        let addr = IpAddr::V4(Ipv4Addr::from(i));
        t.record_failure(
            &format!("u{i}"),
            addr,
            t0 + Duration::from_millis(u64::from(i)),
        );
    }
    assert!(t.len() <= 102, "{}", t.len());
}

#[tokio::test]
async fn login_flow() {
    let f = fixture();
    let alice = f.add("alice", "alice's long password");
    let t0 = Instant::now();
    let ok = f
        .provider
        .login("alice", &pw("alice's long password"), ADDR, t0)
        .await
        .unwrap();
    assert_eq!(ok.user.id, alice.id);
    assert!(!ok.must_change_password);
    // Case-insensitive username.
    assert!(f
        .provider
        .login("ALICE", &pw("alice's long password"), ADDR, t0)
        .await
        .is_ok());
    for bad in ["wrong", ""] {
        assert_eq!(
            f.provider
                .login("alice", &pw(bad), ADDR, t0)
                .await
                .unwrap_err(),
            LoginError::InvalidCredentials
        );
    }
    assert_eq!(
        f.provider
            .login("nobody", &pw("whatever password"), ADDR, t0)
            .await
            .unwrap_err(),
        LoginError::InvalidCredentials,
        "unknown users get the same answer"
    );
}

#[tokio::test]
async fn repeated_failures_are_throttled_before_the_password_is_checked() {
    let f = fixture();
    f.add("alice", "alice's long password");
    let t0 = Instant::now();
    for _ in 0..5 {
        let e = f
            .provider
            .login("alice", &pw("guess"), ADDR, t0)
            .await
            .unwrap_err();
        assert_eq!(e, LoginError::InvalidCredentials);
    }
    // Even the right password is refused while blocked.
    assert_eq!(
        f.provider
            .login("alice", &pw("alice's long password"), ADDR, t0)
            .await
            .unwrap_err(),
        LoginError::Throttled(Throttled {
            retry_after_secs: 1
        })
    );
    let t1 = t0 + Duration::from_secs(1);
    assert!(f
        .provider
        .login("alice", &pw("alice's long password"), ADDR, t1)
        .await
        .is_ok());
}

#[tokio::test]
async fn disabled_user_cannot_log_in() {
    let f = fixture();
    f.add("alice", "alice's long password");
    let t0 = Instant::now();
    let u = set_enabled(&f.view, "alice", false).unwrap();
    assert!(!u.enabled);
    assert_eq!(
        f.provider
            .login("alice", &pw("alice's long password"), ADDR, t0)
            .await
            .unwrap_err(),
        LoginError::InvalidCredentials
    );
    set_enabled(&f.view, &u.id, true).unwrap();
    assert!(f
        .provider
        .login("alice", &pw("alice's long password"), ADDR2, t0)
        .await
        .is_ok());
    assert!(matches!(
        set_enabled(&f.view, "nobody", true),
        Err(UserError::NotFound(_))
    ));
}

#[test]
fn usernames_are_unique_and_validated() {
    let f = fixture();
    f.add("alice", "alice's long password");
    let policy = PasswordPolicy::default();
    let e = add_user(
        &f.view,
        &f.hasher,
        &policy,
        "Alice",
        "",
        &pw("another long one"),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, UserError::Exists(_)), "{e}");
    for bad in ["", "a b", "a/b", "x:y"] {
        let e = add_user(
            &f.view,
            &f.hasher,
            &policy,
            bad,
            "",
            &pw("another long one"),
            NOW,
        )
        .unwrap_err();
        assert!(matches!(e, UserError::InvalidUsername(_)), "{bad:?}");
    }
    let e = add_user(&f.view, &f.hasher, &policy, "bob", "", &pw("short"), NOW).unwrap_err();
    assert!(matches!(
        e,
        UserError::Password(PasswordError::TooShort { .. })
    ));
    // A second process adding the same name concurrently loses cleanly.
    let other = StoreView::new(Arc::new(
        EmbeddedStore::open_in_dir(f.dir.path(), EmbeddedOptions::default()).unwrap(),
    ))
    .unwrap();
    add_user(
        &other,
        &f.hasher,
        &policy,
        "carol",
        "",
        &pw("carol's long password"),
        NOW,
    )
    .unwrap();
    // `f.view` has not polled yet, so its own pre-check passes; the store refuses.
    let e = add_user(
        &f.view,
        &f.hasher,
        &policy,
        "CAROL",
        "",
        &pw("carol's long password"),
        NOW,
    )
    .unwrap_err();
    assert!(matches!(e, UserError::Exists(_)), "{e}");
    let names: Vec<String> = list_users(&f.view)
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(names, ["alice", "carol"]);
}

#[tokio::test]
async fn bootstrap_admin_once_with_a_0600_file_and_a_forced_password_change() {
    let f = fixture();
    let admin = bootstrap_admin(&f.view, &f.hasher, f.dir.path(), NOW)
        .unwrap()
        .expect("empty store bootstraps");
    assert_eq!(admin.user.username, "admin");
    assert!(admin.user.must_change_password);
    assert!(!format!("{admin:?}").contains(admin.password.expose_secret()));
    let text = std::fs::read_to_string(&admin.password_file).unwrap();
    assert_eq!(text.trim(), admin.password.expose_secret());
    assert_eq!(admin.password.expose_secret().len(), 24);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&admin.password_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let snap = f.view.snapshot();
    let binding = snap
        .role_bindings()
        .find(|b| b.value.subject == admin.user.id)
        .expect("admin binding");
    assert_eq!(binding.value.role, "admin");
    assert_eq!(binding.value.scope, BindingScope::Global);
    // Second start: nothing.
    assert!(bootstrap_admin(&f.view, &f.hasher, f.dir.path(), NOW)
        .unwrap()
        .is_none());

    let t0 = Instant::now();
    let login = f
        .provider
        .login("admin", &admin.password, ADDR, t0)
        .await
        .unwrap();
    assert!(login.must_change_password);
    let policy = PasswordPolicy::default();
    let e = f
        .provider
        .change_password(
            &admin.user.id,
            &admin.password,
            pw("short"),
            &policy,
            None,
            ADDR,
            t0,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, ChangePasswordError::User(UserError::Password(_))),
        "{e}"
    );
    f.provider
        .change_password(
            &admin.user.id,
            &admin.password,
            pw("a brand new admin password"),
            &policy,
            None,
            ADDR,
            t0,
        )
        .await
        .unwrap();
    let login = f
        .provider
        .login("admin", &pw("a brand new admin password"), ADDR, t0)
        .await
        .unwrap();
    assert!(!login.must_change_password);
    assert!(f
        .provider
        .login("admin", &admin.password, ADDR, t0)
        .await
        .is_err());
}

#[test]
fn bootstrap_race_between_two_processes_creates_one_admin() {
    let f = fixture();
    let other = StoreView::new(Arc::new(
        EmbeddedStore::open_in_dir(f.dir.path(), EmbeddedOptions::default()).unwrap(),
    ))
    .unwrap();
    let a = bootstrap_admin(&f.view, &f.hasher, f.dir.path(), NOW).unwrap();
    // `other` has not seen the first admin yet: the store's conflict check decides.
    let b = bootstrap_admin(&other, &f.hasher, f.dir.path(), NOW).unwrap();
    assert!(a.is_some());
    assert!(b.is_none());
    assert_eq!(other.snapshot().user_count(), 1);
}

#[test]
fn set_password_by_admin() {
    let f = fixture();
    f.add("alice", "alice's long password");
    let policy = PasswordPolicy::default();
    set_password(
        &f.view,
        &f.hasher,
        &policy,
        "alice",
        &pw("a different password"),
        None,
        NOW,
    )
    .unwrap();
    let snap = f.view.snapshot();
    let u = snap.user_by_name("alice").unwrap();
    let phc = &snap.password(&u.value.id).unwrap().value.phc;
    assert!(f
        .hasher
        .verify(Some(phc), &pw("a different password"))
        .is_match());
    assert!(matches!(
        set_password(
            &f.view,
            &f.hasher,
            &policy,
            "nobody",
            &pw("a different password"),
            None,
            NOW
        ),
        Err(UserError::NotFound(_))
    ));
}
