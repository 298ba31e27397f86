//! Directory logins against a local slapd (started by the bench, like the
//! tests): logins with the connection pool against a new connection per
//! login, and the login of a user in 1,000 groups nested three levels deep
//! (10 direct groups, each in 9 more, each of those in 10 more), resolved by
//! the recursive `member` walk and by slapd's dynlist `memberOf`.
//!
//! Run: `cargo bench -p paddock-benches --bench ldap` (needs
//! `apt-get install slapd ldap-utils`).

use std::{fmt::Write as _, hint::black_box, time::Duration};

use criterion::{criterion_group, criterion_main, Criterion};
use paddock_tests::slapd::{Slapd, SERVICE_DN};
use proxy_core::authn::ldap::{config::Membership, DirectoryKind, LdapConfig, LdapProvider};
use secrecy::SecretString;

fn data() -> String {
    let mut ldif = String::from(
        "dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,dc=example,dc=org\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=service,dc=example,dc=org\nobjectClass: organizationalUnit\nou: service\n\n",
    );
    let _ = write!(
        ldif,
        "dn: {SERVICE_DN}\nobjectClass: person\ncn: paddock\nsn: service\nuserPassword: service-pw\n\n"
    );
    for user in ["alice", "many"] {
        let _ = write!(
            ldif,
            "dn: uid={user},ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: {user}\n\
             cn: {user}\nsn: {user}\nuserPassword: {user}-pw\n\n"
        );
    }
    let group = |name: &str, members: &[String]| {
        let mut g = format!(
            "dn: cn={name},ou=groups,dc=example,dc=org\nobjectClass: groupOfNames\ncn: {name}\n"
        );
        for m in members {
            let _ = writeln!(g, "member: {m}");
        }
        g.push('\n');
        g
    };
    let dn = |name: &str| format!("cn={name},ou=groups,dc=example,dc=org");
    // alice: two direct groups.
    ldif.push_str(&group(
        "a1",
        &["uid=alice,ou=people,dc=example,dc=org".into()],
    ));
    ldif.push_str(&group(
        "a2",
        &["uid=alice,ou=people,dc=example,dc=org".into()],
    ));
    // many: 10 level-1 groups; each in 9 level-2 groups; each of those in 10
    // level-3 groups: 10 + 90 + 900 = 1000.
    for i in 0..10 {
        ldif.push_str(&group(
            &format!("l1-{i}"),
            &["uid=many,ou=people,dc=example,dc=org".into()],
        ));
        for j in 0..9 {
            ldif.push_str(&group(&format!("l2-{i}-{j}"), &[dn(&format!("l1-{i}"))]));
            for k in 0..10 {
                ldif.push_str(&group(
                    &format!("l3-{i}-{j}-{k}"),
                    &[dn(&format!("l2-{i}-{j}"))],
                ));
            }
        }
    }
    ldif
}

fn provider(slapd: &Slapd, membership: Membership, nested: bool) -> LdapProvider {
    let mut c = LdapConfig::new(
        "bench",
        DirectoryKind::OpenLdap,
        vec![slapd.ldap_url()],
        SERVICE_DN,
        SecretString::from("service-pw"),
        "ou=people,dc=example,dc=org",
    );
    c.ca_pem = Some(slapd.ca_pem().to_owned());
    c.group_search_base = Some("ou=groups,dc=example,dc=org".into());
    c.membership = membership;
    c.nested_groups.enabled = nested;
    LdapProvider::new(&c).expect("config")
}

fn bench(c: &mut Criterion) {
    let slapd = Slapd::start(&data());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let member = Membership::Member {
        attribute: "member".into(),
    };
    let member_of = Membership::MemberOf {
        attribute: "memberOf".into(),
    };
    let alice = provider(&slapd, member.clone(), true);
    let pw = SecretString::from("alice-pw");

    let mut g = c.benchmark_group("ldap_login");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    g.bench_function("pooled_starttls", |b| {
        b.iter(|| rt.block_on(async { black_box(alice.login("alice", &pw).await.unwrap()) }));
    });
    g.bench_function("new_connection_starttls", |b| {
        b.iter(|| {
            rt.block_on(async { black_box(alice.login_unpooled("alice", &pw).await.unwrap()) })
        });
    });
    g.finish();

    let walk = provider(&slapd, member, true);
    let dynlist = provider(&slapd, member_of, false);
    let many_pw = SecretString::from("many-pw");
    for (p, name) in [(&walk, "member_walk"), (&dynlist, "dynlist_memberof")] {
        let user = rt.block_on(p.login("many", &many_pw)).unwrap();
        assert_eq!(user.groups.len(), 1000, "{name}");
    }
    let mut g = c.benchmark_group("ldap_login_1000_nested_groups");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("member_walk", |b| {
        b.iter(|| rt.block_on(async { black_box(walk.login("many", &many_pw).await.unwrap()) }));
    });
    g.bench_function("dynlist_memberof", |b| {
        b.iter(|| rt.block_on(async { black_box(dynlist.login("many", &many_pw).await.unwrap()) }));
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
