//! The Active Directory provider against a real Samba AD DC, provisioned by
//! the test into a temp dir and run in its own network namespace.
//!
//! Needs root and `apt-get install samba samba-ad-dc samba-ad-provision
//! ldap-utils`; without them this test fails. One DC (about 10 s to
//! provision and start) serves every case, in order.

use std::path::Path;

use base64::Engine as _;
use paddock_tests::samba::{SambaDc, BASE_DN, SERVICE_PASSWORD, SERVICE_UPN};
use proxy_core::authn::{
    ldap::{
        config::Membership, guid::guid_to_string, DirectoryKind, DirectoryUser, InvalidReason,
        LdapConfig, LdapLoginError, LdapProvider,
    },
    AuthnError,
};
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn config(dc: &SambaDc, url: String, membership: Membership, nested: bool) -> LdapConfig {
    let mut c = LdapConfig::new(
        "corp-ad",
        DirectoryKind::ActiveDirectory,
        vec![url],
        SERVICE_UPN,
        pw(SERVICE_PASSWORD),
        // The domain root: AD answers subtree searches here with
        // continuation references, which must be ignored.
        BASE_DN,
    );
    c.ca_pem = Some(dc.ca_pem().to_owned());
    c.default_login_domain = Some("example.test".into());
    c.membership = membership;
    c.nested_groups.enabled = nested;
    c.connect_timeout_seconds = 3;
    c.operation_timeout_seconds = 10;
    c
}

fn provider(dc: &SambaDc, membership: Membership, nested: bool) -> LdapProvider {
    LdapProvider::new(&config(dc, dc.ldaps_url(), membership, nested)).expect("valid config")
}

fn names(user: &DirectoryUser) -> Vec<&str> {
    let mut n: Vec<&str> = user
        .groups
        .iter()
        .map(|g| g.display_name.as_str())
        .collect();
    n.sort_unstable();
    n
}

/// The objectGUID of `filter`'s entry as Samba itself reports it.
fn guid_of(dc: &SambaDc, filter: &str) -> String {
    let ldif = dc.ldapsearch(BASE_DN, filter, &["objectGUID"]);
    let b64 = ldif
        .lines()
        .find_map(|l| l.strip_prefix("objectGUID:: "))
        .unwrap_or_else(|| panic!("no objectGUID for {filter}: {ldif}"));
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .expect("base64");
    guid_to_string(&bytes).expect("16 bytes")
}

fn invalid(reason: InvalidReason) -> LdapLoginError {
    LdapLoginError::InvalidCredentials { reason }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_directory_against_a_real_samba_dc() {
    let pipe = Path::new(env!("CARGO_BIN_EXE_netns-pipe"));
    let dc = tokio::task::spawn_blocking(move || SambaDc::start(pipe))
        .await
        .unwrap();

    // In-chain: the server expands nesting (developers ⊂ engineering ⊂ company).
    let in_chain = provider(&dc, Membership::InChain, false);
    // The DC may need a moment after its port opens.
    let mut ready = in_chain.check().await;
    for _ in 0..50 {
        if ready.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        ready = in_chain.check().await;
    }
    ready.unwrap_or_else(|e| panic!("{e}\n{}", dc.log()));

    let alice = in_chain
        .login("alice", &pw("Alice-Passw0rd!"))
        .await
        .unwrap();
    assert_eq!(
        alice.principal.id,
        format!(
            "activedirectory_user://{}",
            guid_of(&dc, "(sAMAccountName=alice)")
        ),
        "objectGUID is formatted like Samba does (mixed-endian)"
    );
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name, "Alice Liddell");
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));
    assert_eq!(names(&alice), ["company", "developers", "engineering"]);
    let developers = alice
        .groups
        .iter()
        .find(|g| g.display_name == "developers")
        .unwrap();
    assert_eq!(
        developers.id,
        format!(
            "activedirectory_group://{}",
            guid_of(&dc, "(sAMAccountName=developers)")
        )
    );

    // Every name form finds the same account.
    for name in [
        r"EXAMPLE\alice",
        "alice@example.test",
        "ALICE",
        "alice@EXAMPLE.TEST",
    ] {
        let u = in_chain.login(name, &pw("Alice-Passw0rd!")).await.unwrap();
        assert_eq!(u.principal.id, alice.principal.id, "{name}");
    }
    // Parentheses in sAMAccountName are escaped, not filter syntax.
    let jdoe = in_chain
        .login("jdoe(qa)", &pw("Jdoe-Passw0rd!"))
        .await
        .unwrap();
    assert_eq!(jdoe.username, "jdoe(qa)");
    assert_eq!(names(&jdoe), ["company", "developers", "engineering"]);

    // The other strategies agree.
    let token_groups = provider(&dc, Membership::TokenGroups, false)
        .login("alice", &pw("Alice-Passw0rd!"))
        .await
        .unwrap();
    let tg = names(&token_groups);
    for g in ["company", "developers", "engineering", "Domain Users"] {
        assert!(tg.contains(&g), "{g} missing from tokenGroups {tg:?}");
    }
    let member_of = Membership::MemberOf {
        attribute: "memberOf".into(),
    };
    let direct = provider(&dc, member_of.clone(), false)
        .login("alice", &pw("Alice-Passw0rd!"))
        .await
        .unwrap();
    assert_eq!(names(&direct), ["developers"]);
    let walked = provider(&dc, member_of, true)
        .login("alice", &pw("Alice-Passw0rd!"))
        .await
        .unwrap();
    assert_eq!(names(&walked), ["company", "developers", "engineering"]);
    let member = provider(
        &dc,
        Membership::Member {
            attribute: "member".into(),
        },
        true,
    )
    .login("alice", &pw("Alice-Passw0rd!"))
    .await
    .unwrap();
    assert_eq!(names(&member), ["company", "developers", "engineering"]);

    // StartTLS on ldap:// (Samba refuses simple binds without TLS).
    let starttls = LdapProvider::new(&config(&dc, dc.ldap_url(), Membership::InChain, false))
        .unwrap()
        .login("alice", &pw("Alice-Passw0rd!"))
        .await
        .unwrap();
    assert_eq!(starttls.principal.id, alice.principal.id);

    // Conformance and AD sub-codes.
    let cases = [
        ("alice", "", InvalidReason::EmptyPassword),
        ("alice", "wrong", InvalidReason::WrongPassword),
        ("nobody", "Alice-Passw0rd!", InvalidReason::UnknownUser),
        ("carol", "Carol-Passw0rd!", InvalidReason::AccountDisabled),
        (
            "frank",
            "Frank-Passw0rd!",
            InvalidReason::PasswordMustChange,
        ),
        ("*", "Alice-Passw0rd!", InvalidReason::UnknownUser),
        (
            "*)(sAMAccountName=*",
            "Alice-Passw0rd!",
            InvalidReason::UnknownUser,
        ),
        (
            "admin)(|(sAMAccountName=*",
            "Alice-Passw0rd!",
            InvalidReason::UnknownUser,
        ),
        ("al*", "Alice-Passw0rd!", InvalidReason::UnknownUser),
    ];
    for (user, password, reason) in cases {
        let e = in_chain.login(user, &pw(password)).await.unwrap_err();
        assert_eq!(e, invalid(reason), "{user}");
        assert!(matches!(AuthnError::from(e), AuthnError::Invalid));
    }
    // Three bad passwords lock dave (threshold 3); then even the right one
    // is refused with 775.
    for _ in 0..3 {
        assert_eq!(
            in_chain.login("dave", &pw("nope")).await.unwrap_err(),
            invalid(InvalidReason::WrongPassword)
        );
    }
    assert_eq!(
        in_chain
            .login("dave", &pw("Dave-Passw0rd!"))
            .await
            .unwrap_err(),
        invalid(InvalidReason::AccountLockedOut)
    );

    // Every spelling of one account shares one throttling budget (here 2
    // failures, below the domain's lockout threshold of 3): once it is spent,
    // no spelling gets a bind, the right password included, so the
    // directory never locks the account.
    {
        use proxy_core::accounts::local::Backoff;
        use proxy_core::accounts::{Accounts, AccountsOptions};
        use std::{sync::Arc, time::Duration};
        let dir = tempfile::tempdir().unwrap();
        let mut options = AccountsOptions::default();
        options.throttle.per_user =
            Backoff::new(2, Duration::from_secs(60), Duration::from_secs(300));
        let accounts = Arc::new(
            Accounts::open(dir.path(), options)
                .unwrap()
                .with_provider(Arc::new(provider(&dc, Membership::InChain, false))),
        );
        let client = |n: u8| std::net::IpAddr::from([192, 0, 2, n]);
        for (n, name) in [r"EXAMPLE\jdoe(qa)", "jdoe(qa)@example.test"]
            .into_iter()
            .enumerate()
        {
            let e = accounts
                .login(
                    "corp-ad",
                    proxy_core::accounts::LoginCredential::Password {
                        username: name,
                        password: &pw("nope"),
                    },
                    client(n as u8),
                )
                .await
                .unwrap_err();
            assert!(matches!(e, AuthnError::Invalid), "{name}: {e:?}");
        }
        for (n, name) in ["jdoe(qa)", "JDOE(QA)@EXAMPLE.TEST", r"EXAMPLE\jdoe(qa)"]
            .into_iter()
            .enumerate()
        {
            let e = accounts
                .login(
                    "corp-ad",
                    proxy_core::accounts::LoginCredential::Password {
                        username: name,
                        password: &pw("Alice-Passw0rd!"),
                    },
                    client(10 + n as u8),
                )
                .await
                .unwrap_err();
            assert!(matches!(e, AuthnError::Throttled { .. }), "{name}: {e:?}");
        }
        // Not locked in the directory; a good bind resets its count.
        in_chain
            .login("jdoe(qa)", &pw("Jdoe-Passw0rd!"))
            .await
            .unwrap();
    }

    // Refresh and principal search.
    let refreshed = in_chain.refresh(&alice).await.unwrap();
    assert_eq!(refreshed.principal, alice.principal);
    assert_eq!(refreshed.groups, alice.groups);
    let found = in_chain.search_principals("develop", 10).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].id, developers.id);
    let users = in_chain.search_principals("Liddell", 10).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, alice.principal.id);

    // The shared authenticator conformance suite, through Accounts::login as
    // the login endpoint uses it; it ends by stopping the DC (unavailable,
    // not invalid, and an empty password still refused before any I/O).
    use paddock_tests::conformance::{self, ConformanceTarget};
    use proxy_core::accounts::{Accounts, AccountsOptions};
    use std::sync::Arc;
    struct Directory {
        accounts: Arc<Accounts>,
        dc: SambaDc,
        _dir: tempfile::TempDir,
    }
    impl ConformanceTarget for Directory {
        fn accounts(&self) -> &Arc<Accounts> {
            &self.accounts
        }
        fn provider(&self) -> &str {
            "corp-ad"
        }
        fn valid_user(&self) -> (String, String) {
            ("alice".into(), "Alice-Passw0rd!".into())
        }
        fn disabled_user(&self) -> (String, String) {
            ("carol".into(), "Carol-Passw0rd!".into())
        }
        fn stop_backend(&mut self) -> bool {
            self.dc.kill();
            true
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let accounts = Accounts::open(dir.path(), AccountsOptions::default())
        .unwrap()
        .with_provider(Arc::new(in_chain));
    let report = conformance::run(Directory {
        accounts: Arc::new(accounts),
        dc,
        _dir: dir,
    })
    .await;
    assert!(report.not_applicable.is_empty(), "{report:?}");
}
