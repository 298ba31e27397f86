//! The OpenLDAP provider against a real slapd started by each test (random
//! loopback ports, own config and data, StartTLS and LDAPS with a test CA).
//!
//! Needs `apt-get install slapd ldap-utils`; without them these tests fail.

use paddock_tests::slapd::{Slapd, BASE_LDIF};
use proxy_core::authn::{
    ldap::{
        config::{EnabledCheck, Membership},
        DirectoryKind, DirectoryUser, InvalidReason, LdapConfig, LdapLoginError, LdapProvider,
    },
    AuthnError,
};
use secrecy::SecretString;

const SERVICE_DN: &str = "cn=paddock,ou=service,dc=example,dc=org";
const PEOPLE: &str = "ou=people,dc=example,dc=org";
const GROUPS: &str = "ou=groups,dc=example,dc=org";
const JDOE_DN: &str = r"cn=Doe\, John \+ Co,ou=people,dc=example,dc=org";

/// Users: alice (nested groups, a cycle, a posixGroup), jdoe (CN with `,`
/// and `+`), `star*user` (uid with `*`), carol (disabled), admin, bob (no
/// groups). Groups: developers ⊂ engineering ⊂ company, cycle-a ⇄ cycle-b,
/// "QA, Tier 2", posixGroup ops.
/// Added to the directory after [`BASE_LDIF`].
const DATA: &str = r#"dn: ou=moved,dc=example,dc=org
objectClass: organizationalUnit
ou: moved

dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
displayName: Alice Liddell
mail: alice@example.org
userPassword: alice-pw

dn: cn=Doe\, John \+ Co,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: jdoe
cn: Doe, John + Co
sn: Doe
userPassword: jdoe-pw

dn: uid=star*user,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: star*user
cn: Star User
sn: User
userPassword: star-pw

dn: uid=carol,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: carol
cn: Carol
sn: Carol
employeeType: disabled
userPassword: carol-pw

dn: uid=admin,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: admin
cn: Admin
sn: Admin
userPassword: admin-pw

dn: uid=bob,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Bob
userPassword: bob-pw

dn: cn=developers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: developers
member: uid=alice,ou=people,dc=example,dc=org
member: cn=Doe\, John \+ Co,ou=people,dc=example,dc=org

dn: cn=engineering,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: engineering
member: cn=developers,ou=groups,dc=example,dc=org

dn: cn=company,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: company
member: cn=engineering,ou=groups,dc=example,dc=org

dn: cn=cycle-a,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: cycle-a
member: uid=alice,ou=people,dc=example,dc=org
member: cn=cycle-b,ou=groups,dc=example,dc=org

dn: cn=cycle-b,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: cycle-b
member: cn=cycle-a,ou=groups,dc=example,dc=org

dn: cn=QA\, Tier 2,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: QA, Tier 2
member: cn=Doe\, John \+ Co,ou=people,dc=example,dc=org

dn: cn=ops,ou=groups,dc=example,dc=org
objectClass: posixGroup
cn: ops
gidNumber: 5000
memberUid: alice
memberUid: star*user
"#;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn config(slapd: &Slapd, servers: Vec<String>) -> LdapConfig {
    let mut c = LdapConfig::new(
        "corp-ldap",
        DirectoryKind::OpenLdap,
        servers,
        SERVICE_DN,
        pw("service-pw"),
        PEOPLE,
    );
    c.ca_pem = Some(slapd.ca_pem().to_owned());
    c.group_search_base = Some(GROUPS.into());
    c.enabled_check = Some(EnabledCheck::Attribute {
        attribute: "employeeType".into(),
        disabled_values: vec!["disabled".into()],
    });
    c.connect_timeout_seconds = 2;
    c.operation_timeout_seconds = 5;
    c
}

fn provider(slapd: &Slapd, membership: Membership, nested: bool) -> LdapProvider {
    let mut c = config(slapd, vec![slapd.ldap_url()]);
    c.membership = membership;
    c.nested_groups.enabled = nested;
    LdapProvider::new(&c).expect("valid config")
}

fn member() -> Membership {
    Membership::Member {
        attribute: "member".into(),
    }
}

fn member_of() -> Membership {
    Membership::MemberOf {
        attribute: "memberOf".into(),
    }
}

fn group_names(user: &DirectoryUser) -> Vec<&str> {
    let mut names: Vec<&str> = user
        .groups
        .iter()
        .map(|g| g.display_name.as_str())
        .collect();
    names.sort_unstable();
    names
}

fn is_uuid_principal(id: &str, scheme: &str) -> bool {
    let Some(rest) = id.strip_prefix(&format!("{scheme}://")) else {
        return false;
    };
    rest.len() == 36 && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn invalid(reason: InvalidReason) -> LdapLoginError {
    LdapLoginError::InvalidCredentials { reason }
}

#[tokio::test]
async fn login_over_starttls_returns_entry_uuid_principals_and_nested_member_of() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member_of(), false);
    let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
    assert!(
        is_uuid_principal(&alice.principal.id, "openldap_user"),
        "{}",
        alice.principal.id
    );
    assert_eq!(alice.principal.display_name, "Alice Liddell");
    assert_eq!(alice.username, "alice");
    assert_eq!(alice.display_name, "Alice Liddell");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.dn, "uid=alice,ou=people,dc=example,dc=org");
    // dynlist computes memberOf transitively: three levels.
    let names = group_names(&alice);
    for g in ["developers", "engineering", "company", "cycle-a"] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    assert!(alice
        .groups
        .iter()
        .all(|g| is_uuid_principal(&g.id, "openldap_group")));
    // StartTLS was used: ldap:// without `dangerous` never talks plain.
    assert!(
        slapd.log().contains("oid=1.3.6.1.4.1.1466.20037"),
        "no StartTLS in the slapd log"
    );
}

#[tokio::test]
async fn ldaps_with_the_test_ca_works_and_a_wrong_ca_is_unavailable() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let c = config(&slapd, vec![slapd.ldaps_url()]);
    let p = LdapProvider::new(&c).unwrap();
    let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
    assert_eq!(alice.username, "alice");

    let other_ca = paddock_tests::tls::TestCa::new();
    for url in [slapd.ldaps_url(), slapd.ldap_url()] {
        let mut c = config(&slapd, vec![url.clone()]);
        c.ca_pem = Some(other_ca.pem().to_owned());
        let e = LdapProvider::new(&c)
            .unwrap()
            .login("alice", &pw("alice-pw"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, LdapLoginError::Unavailable { .. }),
            "{url}: {e:?}"
        );
    }
}

#[tokio::test]
async fn member_strategy_walks_nested_groups_with_cycle_detection_and_depth_cap() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let direct = provider(&slapd, member(), false)
        .login("alice", &pw("alice-pw"))
        .await
        .unwrap();
    assert_eq!(group_names(&direct), ["cycle-a", "developers"]);

    let nested = provider(&slapd, member(), true)
        .login("alice", &pw("alice-pw"))
        .await
        .unwrap();
    assert_eq!(
        group_names(&nested),
        ["company", "cycle-a", "cycle-b", "developers", "engineering"]
    );

    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.membership = member();
    c.nested_groups.enabled = true;
    c.nested_groups.max_depth = 1;
    let one_level = LdapProvider::new(&c)
        .unwrap()
        .login("alice", &pw("alice-pw"))
        .await
        .unwrap();
    assert_eq!(
        group_names(&one_level),
        ["cycle-a", "cycle-b", "developers", "engineering"]
    );

    c.nested_groups.max_depth = 8;
    c.nested_groups.max_groups = 3;
    let capped = LdapProvider::new(&c)
        .unwrap()
        .login("alice", &pw("alice-pw"))
        .await
        .unwrap();
    assert_eq!(capped.groups.len(), 3);
}

#[tokio::test]
async fn memberof_with_a_recursive_walk_terminates_on_cycles() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let alice = provider(&slapd, member_of(), true)
        .login("alice", &pw("alice-pw"))
        .await
        .unwrap();
    let names = group_names(&alice);
    for g in ["company", "cycle-a", "cycle-b", "developers", "engineering"] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    assert!(!names.contains(&"ops"));
}

#[tokio::test]
async fn posix_groups_by_member_uid() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(
        &slapd,
        Membership::MemberUid {
            attribute: "memberUid".into(),
            user_attribute: "uid".into(),
        },
        false,
    );
    let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
    assert_eq!(group_names(&alice), ["ops"]);
    let star = p.login("star*user", &pw("star-pw")).await.unwrap();
    assert_eq!(group_names(&star), ["ops"]);
    let bob = p.login("bob", &pw("bob-pw")).await.unwrap();
    assert!(bob.groups.is_empty());
}

#[tokio::test]
async fn special_characters_in_dns_and_uids() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member(), true);
    let jdoe = p.login("jdoe", &pw("jdoe-pw")).await.unwrap();
    // slapd hands the DN back with hex escapes: the same DN.
    assert_eq!(
        jdoe.dn.replace(r"\2C", r"\,").replace(r"\2B", r"\+"),
        JDOE_DN
    );
    assert_eq!(jdoe.display_name, "Doe, John + Co");
    // Group search by member=<DN with \, and \+>, escaped for the filter.
    assert_eq!(
        group_names(&jdoe),
        ["QA, Tier 2", "company", "developers", "engineering"]
    );
    // The same through memberOf + batched DN lookups.
    let via_member_of = provider(&slapd, member_of(), false)
        .login("jdoe", &pw("jdoe-pw"))
        .await
        .unwrap();
    assert!(group_names(&via_member_of).contains(&"QA, Tier 2"));

    let star = p.login("star*user", &pw("star-pw")).await.unwrap();
    assert_eq!(star.username, "star*user");
    // `*` is a literal, never a wildcard.
    for name in ["star*", "*user", "star*use*", "*"] {
        assert_eq!(
            p.login(name, &pw("star-pw")).await.unwrap_err(),
            invalid(InvalidReason::UnknownUser),
            "{name}"
        );
    }
}

#[tokio::test]
async fn injection_attempts_never_match_anyone() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member(), false);
    let attacks = [
        "*",
        "*)(uid=*",
        "admin)(|(uid=*",
        "*)(|(objectClass=*",
        "alice)(uid=*",
        "al*",
        "admin)(&",
        "*))%00",
        "alice\0",
        r"\2a",
        "admin)(|(userPassword=*)",
    ];
    for attack in attacks {
        for password in ["alice-pw", "admin-pw", "x"] {
            let e = p.login(attack, &pw(password)).await.unwrap_err();
            assert_eq!(e, invalid(InvalidReason::UnknownUser), "{attack:?}");
        }
    }
    // The service account is outside the user search base: not a login.
    assert_eq!(
        p.login("paddock", &pw("service-pw")).await.unwrap_err(),
        invalid(InvalidReason::UnknownUser)
    );
}

#[tokio::test]
async fn conformance_empty_password_is_rejected_before_any_bind() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member(), false);
    let (connections, binds) = (slapd.connections(), slapd.binds());
    for user in ["alice", "carol", "nobody", "*"] {
        assert_eq!(
            p.login(user, &pw("")).await.unwrap_err(),
            invalid(InvalidReason::EmptyPassword)
        );
    }
    // Give slapd a moment to log anything it might have seen.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(slapd.connections(), connections, "{}", slapd.log());
    assert_eq!(slapd.binds(), binds);

    // A directory that is down still gives the empty-password answer.
    let mut c = config(&slapd, vec!["ldap://127.0.0.1:1".into()]);
    c.connect_timeout_seconds = 1;
    let down = LdapProvider::new(&c).unwrap();
    assert_eq!(
        down.login("alice", &pw("")).await.unwrap_err(),
        invalid(InvalidReason::EmptyPassword)
    );
}

#[tokio::test]
async fn conformance_wrong_password_unknown_and_disabled_users_are_invalid() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member(), false);
    let cases = [
        ("alice", "wrong", InvalidReason::WrongPassword),
        ("alice", "alice-pw ", InvalidReason::WrongPassword),
        ("alice", "ALICE-PW", InvalidReason::WrongPassword),
        ("nobody", "alice-pw", InvalidReason::UnknownUser),
        ("carol", "carol-pw", InvalidReason::AccountDisabled),
        ("", "alice-pw", InvalidReason::InvalidLoginName),
    ];
    for (user, password, reason) in cases {
        let e = p.login(user, &pw(password)).await.unwrap_err();
        assert_eq!(e, invalid(reason), "{user}");
        assert!(matches!(AuthnError::from(e), AuthnError::Invalid));
    }
    // The same provider still works afterwards (pool not poisoned).
    p.login("alice", &pw("alice-pw")).await.unwrap();
}

#[tokio::test]
async fn conformance_backend_down_is_unavailable_not_invalid() {
    let mut slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec!["ldap://127.0.0.1:1".into()]);
    c.connect_timeout_seconds = 1;
    let down = LdapProvider::new(&c).unwrap();
    let e = down.login("alice", &pw("alice-pw")).await.unwrap_err();
    assert!(matches!(e, LdapLoginError::Unavailable { .. }), "{e:?}");
    assert!(matches!(
        AuthnError::from(e),
        AuthnError::Unavailable { ref provider } if provider == "corp-ldap"
    ));

    // A directory that goes away after the pool was warm.
    let p = provider(&slapd, member(), false);
    p.login("alice", &pw("alice-pw")).await.unwrap();
    slapd.kill();
    for password in ["alice-pw", "wrong"] {
        let e = p.login("alice", &pw(password)).await.unwrap_err();
        assert!(matches!(e, LdapLoginError::Unavailable { .. }), "{e:?}");
    }
}

#[tokio::test]
async fn failover_when_the_first_server_is_unreachable() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = config(
        &slapd,
        vec![
            format!("ldap://127.0.0.1:{closed}"),
            "ldaps://127.0.0.1:1".into(),
            slapd.ldaps_url(),
        ],
    );
    let p = LdapProvider::new(&c).unwrap();
    for _ in 0..3 {
        let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
        assert_eq!(alice.username, "alice");
    }
}

#[tokio::test]
async fn pooled_connection_is_reused_and_rebound_as_the_service_account() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.membership = member();
    c.pool.max_size = 1;
    let p = LdapProvider::new(&c).unwrap();
    let before = slapd.connections();
    for _ in 0..3 {
        let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
        assert_eq!(group_names(&alice), ["cycle-a", "developers"]);
        assert_eq!(
            p.login("alice", &pw("wrong")).await.unwrap_err(),
            invalid(InvalidReason::WrongPassword)
        );
    }
    let found = p.search_principals("developers", 10).await.unwrap();
    assert_eq!(found.len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(slapd.connections() - before, 1, "{}", slapd.log());
    // Every user bind is followed by a service-account bind.
    let binds: Vec<&str> = slapd
        .bind_dns()
        .iter()
        .map(|dn| if dn == SERVICE_DN { "service" } else { "user" })
        .collect();
    let mut expected = vec!["service"];
    for _ in 0..6 {
        expected.extend(["user", "service"]);
    }
    assert_eq!(binds, expected, "{}", slapd.log());
}

#[tokio::test]
async fn refresh_rereads_groups_enabled_state_and_follows_a_moved_entry() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member(), true);
    let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
    assert!(group_names(&alice).contains(&"company"));

    slapd.modify(
        "dn: cn=developers,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n",
    );
    let refreshed = p.refresh(&alice).await.unwrap();
    assert_eq!(refreshed.principal, alice.principal);
    assert_eq!(group_names(&refreshed), ["cycle-a", "cycle-b"]);

    // Moved out of its DN: found again by entryUUID.
    slapd.modify(
        "dn: uid=alice,ou=people,dc=example,dc=org\nchangetype: modrdn\nnewrdn: uid=alice\ndeleteoldrdn: 1\nnewsuperior: ou=moved,dc=example,dc=org\n",
    );
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.user_search_base = "dc=example,dc=org".into();
    c.membership = member();
    let wide = LdapProvider::new(&c).unwrap();
    let moved = wide.refresh(&alice).await.unwrap();
    assert_eq!(moved.principal.id, alice.principal.id);
    assert_eq!(moved.dn, "uid=alice,ou=moved,dc=example,dc=org");

    slapd.modify(
        "dn: uid=alice,ou=moved,dc=example,dc=org\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n",
    );
    assert_eq!(
        wide.refresh(&moved).await.unwrap_err(),
        invalid(InvalidReason::AccountDisabled)
    );
}

#[tokio::test]
async fn search_principals_escapes_and_caps() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = provider(&slapd, member(), false);
    let found = p.search_principals("Liddell", 10).await.unwrap();
    assert_eq!(found.len(), 1);
    assert!(is_uuid_principal(&found[0].id, "openldap_user"));
    assert_eq!(found[0].display_name, "Alice Liddell");
    // `*` is a literal: only the user whose uid contains one.
    let star = p.search_principals("*", 10).await.unwrap();
    assert_eq!(
        star.iter()
            .map(|p| p.display_name.as_str())
            .collect::<Vec<_>>(),
        ["Star User"]
    );
    assert!(p
        .search_principals("*)(uid=*", 10)
        .await
        .unwrap()
        .is_empty());
    let groups = p.search_principals("cycle", 10).await.unwrap();
    assert_eq!(groups.len(), 2);
    assert!(groups
        .iter()
        .all(|g| is_uuid_principal(&g.id, "openldap_group")));
    assert_eq!(p.search_principals("e", 2).await.unwrap().len(), 2);
    assert!(p.search_principals("", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_service_account_is_misconfigured_not_invalid() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.bind_password = pw("not-the-service-pw");
    let p = LdapProvider::new(&c).unwrap();
    let e = p.login("alice", &pw("alice-pw")).await.unwrap_err();
    assert!(matches!(e, LdapLoginError::Misconfigured { .. }), "{e:?}");
    assert!(matches!(
        AuthnError::from(e),
        AuthnError::Unavailable { .. }
    ));
}

#[tokio::test]
async fn concurrent_logins_share_the_pool() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let p = std::sync::Arc::new(provider(&slapd, member(), true));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let (user, password) = if i % 2 == 0 {
                ("alice", "alice-pw")
            } else {
                ("jdoe", "jdoe-pw")
            };
            p.login(user, &pw(password)).await.map(|u| u.username)
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let name = t.await.unwrap().unwrap();
        assert_eq!(name, if i % 2 == 0 { "alice" } else { "jdoe" });
    }
}

#[tokio::test]
async fn pooled_connections_are_replaced_after_a_directory_restart() {
    let mut slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    for health_check_after in [0, 600] {
        let mut c = config(&slapd, vec![slapd.ldap_url()]);
        c.membership = member();
        c.pool.max_size = 1;
        c.pool.health_check_after_seconds = health_check_after;
        let p = LdapProvider::new(&c).unwrap();
        p.login("alice", &pw("alice-pw")).await.unwrap();
        slapd.restart();
        for _ in 0..2 {
            let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
            assert_eq!(group_names(&alice), ["cycle-a", "developers"]);
        }
    }
}

#[tokio::test]
async fn a_server_that_accepts_but_never_answers_fails_over() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let mut c = config(
        &slapd,
        vec![format!("ldap://127.0.0.1:{hung_port}"), slapd.ldap_url()],
    );
    c.connect_timeout_seconds = 1;
    let p = LdapProvider::new(&c).unwrap();
    let started = std::time::Instant::now();
    p.login("alice", &pw("alice-pw")).await.unwrap();
    // A server that just failed is tried last for a while: no second wait.
    p.login("alice", &pw("alice-pw")).await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(8));

    let mut only_hung = config(&slapd, vec![format!("ldap://127.0.0.1:{hung_port}")]);
    only_hung.connect_timeout_seconds = 1;
    let e = LdapProvider::new(&only_hung)
        .unwrap()
        .login("alice", &pw("alice-pw"))
        .await
        .unwrap_err();
    assert!(matches!(e, LdapLoginError::Unavailable { .. }), "{e:?}");
}

#[tokio::test]
async fn cancelled_logins_never_leave_a_user_bound_connection_in_the_pool() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.membership = member();
    c.pool.max_size = 2;
    let p = LdapProvider::new(&c).unwrap();
    for i in 0..80u64 {
        let _ = tokio::time::timeout(
            std::time::Duration::from_micros(i * 40),
            p.login("alice", &pw("alice-pw")),
        )
        .await;
    }
    // Groups are readable only by the service account: a connection still
    // bound as alice would find none.
    for _ in 0..4 {
        assert_eq!(
            p.search_principals("developers", 10).await.unwrap().len(),
            1
        );
        let alice = p.login("alice", &pw("alice-pw")).await.unwrap();
        assert_eq!(group_names(&alice), ["cycle-a", "developers"]);
    }
}

#[tokio::test]
async fn a_failed_rebind_drops_the_user_bound_connection() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.membership = member();
    c.pool.max_size = 1;
    let p = LdapProvider::new(&c).unwrap();
    p.login("alice", &pw("alice-pw")).await.unwrap();
    let set_service_pw = |password: &str| {
        slapd.modify(&format!(
            "dn: {SERVICE_DN}\nchangetype: modify\nreplace: userPassword\nuserPassword: {password}\n"
        ));
    };
    // The pooled connection is still bound as the service account; the user
    // bind works, the re-bind does not.
    set_service_pw("rotated");
    let e = p.login("alice", &pw("alice-pw")).await.unwrap_err();
    assert!(matches!(e, LdapLoginError::Misconfigured { .. }), "{e:?}");
    set_service_pw("service-pw");
    // Groups are readable only by the service account: reusing the
    // connection left bound as alice would find none.
    assert_eq!(
        p.search_principals("developers", 10).await.unwrap().len(),
        1
    );
}

/// The shared authenticator conformance suite (the one local users pass),
/// through `Accounts::login` as the login endpoint uses it.
#[tokio::test(flavor = "multi_thread")]
async fn the_authenticator_conformance_suite_passes_against_slapd() {
    use paddock_tests::conformance::{self, ConformanceTarget};
    use proxy_core::accounts::{Accounts, AccountsOptions};
    use std::sync::Arc;

    struct Directory {
        accounts: Arc<Accounts>,
        slapd: Slapd,
        _dir: tempfile::TempDir,
    }
    impl ConformanceTarget for Directory {
        fn accounts(&self) -> &Arc<Accounts> {
            &self.accounts
        }
        fn provider(&self) -> &str {
            "corp-ldap"
        }
        fn valid_user(&self) -> (String, String) {
            ("alice".into(), "alice-pw".into())
        }
        fn disabled_user(&self) -> (String, String) {
            ("carol".into(), "carol-pw".into())
        }
        fn stop_backend(&mut self) -> bool {
            self.slapd.kill();
            true
        }
    }

    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let provider = LdapProvider::new(&config(&slapd, vec![slapd.ldap_url()])).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let accounts = Accounts::open(dir.path(), AccountsOptions::default())
        .unwrap()
        .with_provider(std::sync::Arc::new(provider));
    let report = conformance::run(Directory {
        accounts: Arc::new(accounts),
        slapd,
        _dir: dir,
    })
    .await;
    assert!(report.not_applicable.is_empty(), "{report:?}");
    assert_eq!(report.passed.len(), 8, "{report:?}");
}

/// Several spellings of one account share one throttling budget: alice by
/// `uid` and by `mail` (and with stray blanks, which the directory ignores)
/// counts against her one account, and once it is blocked no spelling gets
/// her password sent to the directory, the right one included.
#[tokio::test(flavor = "multi_thread")]
async fn spellings_of_one_account_share_its_login_throttle() {
    use proxy_core::accounts::local::Backoff;
    use proxy_core::accounts::{Accounts, AccountsOptions};
    use std::{sync::Arc, time::Duration};

    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.login_attributes = vec!["uid".into(), "mail".into()];
    let provider = LdapProvider::new(&c).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = AccountsOptions::default();
    options.throttle.per_user = Backoff::new(3, Duration::from_secs(60), Duration::from_secs(300));
    let accounts = Arc::new(
        Accounts::open(dir.path(), options)
            .unwrap()
            .with_provider(Arc::new(provider)),
    );
    // Each attempt from its own address: only the account can tie them.
    let client = |n: u8| std::net::IpAddr::from([192, 0, 2, n]);
    for (n, name) in ["alice", "alice@example.org", " alice "]
        .into_iter()
        .enumerate()
    {
        let e = accounts
            .login(
                "corp-ldap",
                proxy_core::accounts::LoginCredential::Password {
                    username: name,
                    password: &pw("wrong"),
                },
                client(n as u8),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, AuthnError::Invalid), "{name}: {e:?}");
    }
    let user_binds = || {
        slapd
            .bind_dns()
            .iter()
            .filter(|dn| dn.as_str() != SERVICE_DN)
            .count()
    };
    let before = user_binds();
    for (n, name) in ["alice", "ALICE@example.org"].into_iter().enumerate() {
        let e = accounts
            .login(
                "corp-ldap",
                proxy_core::accounts::LoginCredential::Password {
                    username: name,
                    password: &pw("alice-pw"),
                },
                client(10 + n as u8),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, AuthnError::Throttled { .. }), "{name}: {e:?}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(user_binds(), before, "{}", slapd.log());
    // Another account is not affected.
    accounts
        .login(
            "corp-ldap",
            proxy_core::accounts::LoginCredential::Password {
                username: "bob",
                password: &pw("bob-pw"),
            },
            client(20),
        )
        .await
        .unwrap();
}

/// A name the directory does not know costs a bind like a wrong password
/// (a DN that cannot exist, then the service account again), so the answer
/// time does not tell which names exist.
#[tokio::test]
async fn an_unknown_user_costs_a_bind_like_a_wrong_password() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.pool.max_size = 1;
    let p = LdapProvider::new(&c).unwrap();
    assert_eq!(
        p.login("nobody", &pw("alice-pw")).await.unwrap_err(),
        invalid(InvalidReason::UnknownUser)
    );
    assert_eq!(
        p.login("alice", &pw("wrong")).await.unwrap_err(),
        invalid(InvalidReason::WrongPassword)
    );
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let binds = slapd.bind_dns();
    let shape: Vec<&str> = binds
        .iter()
        .map(|dn| if dn == SERVICE_DN { "service" } else { "user" })
        .collect();
    assert_eq!(
        shape,
        ["service", "user", "service", "user", "service"],
        "{}",
        slapd.log()
    );
    // The unknown name's bind is a DN no entry has, never the name typed.
    assert!(
        binds[1].starts_with("cn=paddock-no-such-user-"),
        "{binds:?}"
    );
    assert!(binds[1].ends_with(PEOPLE), "{binds:?}");
    assert!(!binds[1].contains("nobody"));
}

/// A login stores the groups' display names beside their ids (for the
/// landing page); attributes stored before names were kept still load.
#[tokio::test(flavor = "multi_thread")]
async fn a_login_stores_group_display_names() {
    use proxy_core::accounts::{Accounts, AccountsOptions};
    use proxy_core::store::UserAttributes;
    use std::sync::Arc;

    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let mut c = config(&slapd, vec![slapd.ldap_url()]);
    c.membership = member();
    let dir = tempfile::tempdir().unwrap();
    let accounts = Arc::new(
        Accounts::open(dir.path(), AccountsOptions::default())
            .unwrap()
            .with_provider(Arc::new(LdapProvider::new(&c).unwrap())),
    );
    let client = std::net::IpAddr::from([127, 0, 0, 1]);
    let alice = accounts
        .login(
            "corp-ldap",
            proxy_core::accounts::LoginCredential::Password {
                username: "alice",
                password: &pw("alice-pw"),
            },
            client,
        )
        .await
        .unwrap();
    let attributes = accounts
        .view()
        .with_snapshot(|s| s.user_attributes(&alice.user.id).map(|a| a.value.clone()))
        .unwrap();
    let ids = &attributes.groups["corp-ldap"];
    let names = &attributes.group_names["corp-ldap"];
    assert_eq!(ids.len(), 2, "{attributes:?}");
    let mut shown: Vec<&str> = ids.iter().map(|id| names[id].as_str()).collect();
    shown.sort_unstable();
    assert_eq!(shown, ["cycle-a", "developers"]);

    let old: UserAttributes =
        serde_json::from_str(r#"{"user_id":"u-1","groups":{"corp-ldap":["openldap_group://x"]}}"#)
            .unwrap();
    assert!(old.group_names.is_empty());
}
