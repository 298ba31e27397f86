//! A directory login end to end through the real `paddock` binary: a real
//! slapd, `authentication.ldap` in the config file (service password from a
//! file), `POST /paddock/v1/login` with the directory's provider name, a
//! binding made with `paddock user bind`, a downloaded kubeconfig, and real
//! kubectl seeing the directory groups as principal ids.
//!
//! Needs `apt-get install slapd ldap-utils` (tests/run.sh installs them).

use std::{sync::Arc, time::Duration};

use http::Method;
use paddock_tests::{
    client::{Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::{write_file, Kubeconfig},
    paddock::Paddock,
    slapd::{Slapd, BASE_LDIF, SERVICE_DN},
};
use serde_json::json;

/// Added to the directory after [`BASE_LDIF`].
const DATA: &str = r#"dn: uid=alice,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
userPassword: alice-pw

dn: cn=developers,ou=groups,dc=example,dc=org
objectClass: groupOfNames
cn: developers
member: uid=alice,ou=people,dc=example,dc=org
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_directory_user_logs_in_and_kubectl_sees_their_groups_as_principals() {
    let slapd = Slapd::start(&format!("{BASE_LDIF}{DATA}"));
    let fake = FakeApiServer::start(FakeApiConfig {
        pods: vec![("default".into(), "web-1".into())],
        ..FakeApiConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream_ca = write_file(dir.path(), "upstream-ca.crt", fake.ca_pem());
    let upstream_token = write_file(dir.path(), "proxy-token", fake.token());
    let ldap_ca = write_file(dir.path(), "ldap-ca.crt", slapd.ca_pem());
    let service_password = write_file(dir.path(), "ldap-password", "service-pw\n");
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            r#"authentication:
  ldap:
    - name: corp
      kind: openldap
      servers: ["{ldap}"]
      caFile: {ldap_ca}
      bindDn: "{SERVICE_DN}"
      bindPasswordFile: {service_password}
      userSearchBase: ou=people,dc=example,dc=org
      groupSearchBase: ou=groups,dc=example,dc=org
      membership: {{strategy: member}}
clusters:
  - id: default
    default: true
    server: {upstream}
    caFile: {upstream_ca}
    tokenFile: {upstream_token}
"#,
            ldap = slapd.ldap_url(),
            ldap_ca = ldap_ca.display(),
            service_password = service_password.display(),
            upstream = fake.url(),
            upstream_ca = upstream_ca.display(),
            upstream_token = upstream_token.display(),
        ),
    );
    let bin: &std::path::Path = env!("CARGO_BIN_EXE_paddock").as_ref();
    let check = std::process::Command::new(bin)
        .args(["config", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let paddock = Paddock::start(bin, &["--config".into(), config.display().to_string()]);
    let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
    let url = |path: &str| format!("{}{path}", paddock.url());
    let login = |password: &'static str| {
        let client = client.clone();
        let url = url("/paddock/v1/login");
        async move {
            client
                .send_json(
                    Method::POST,
                    &url,
                    None,
                    &json!({"provider": "corp", "username": "alice", "password": password}),
                )
                .await
        }
    };

    let wrong = login("not-alice-pw").await;
    assert_eq!(wrong.status(), 401, "{}", wrong.text());
    let empty = login("").await;
    assert_eq!(empty.status(), 400, "{}", empty.text());
    let ok = login("alice-pw").await;
    assert_eq!(ok.status(), 200, "{}", ok.text());
    let session = ok.json()["token"].as_str().unwrap().to_owned();
    let user_id = ok.json()["user"]["id"].as_str().unwrap().to_owned();
    let me = client
        .get(&url("/paddock/v1/me"), Some(&session))
        .await
        .json();
    let groups: Vec<String> = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_owned())
        .collect();
    let developers = groups
        .iter()
        .find(|g| g.starts_with("openldap_group://"))
        .unwrap_or_else(|| panic!("no directory group in {me}"))
        .clone();
    // entryUUID, not the DN: the id survives renames.
    assert!(!developers.contains("cn="), "{developers}");
    assert_eq!(
        me["extra"]["principalid"][0]
            .as_str()
            .unwrap()
            .split("://")
            .next(),
        Some("openldap_user"),
        "{me}"
    );
    // The landing page names the group, not only its id.
    let landing = client.get(&url("/paddock/"), Some(&session)).await.text();
    assert!(
        landing.contains(&format!("<li>developers <code>{developers}</code></li>")),
        "{landing}"
    );
    // A second login is the same user.
    assert_eq!(
        login("alice-pw").await.json()["user"]["id"],
        user_id.as_str()
    );

    // No binding yet: denied. `paddock user bind` beside the running server grants.
    let pods = "/api/v1/namespaces/default/pods";
    let denied = client.get(&url(pods), Some(&session)).await;
    assert_eq!(denied.status(), 403, "{}", denied.text());
    let bound = paddock.cli(
        bin,
        &[
            "user",
            "bind",
            &user_id,
            "cluster-owner",
            "--cluster",
            "default",
        ],
        "",
    );
    assert!(
        bound.status.success(),
        "{}",
        String::from_utf8_lossy(&bound.stderr)
    );
    let mut status = 0;
    for _ in 0..50 {
        status = client.get(&url(pods), Some(&session)).await.status();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "the binding never took effect");

    let yaml = client
        .get(
            &url("/paddock/v1/kubeconfig?cluster=default"),
            Some(&session),
        )
        .await
        .text();
    let kube = Arc::new(Kubeconfig::from_yaml(&yaml));
    let k = kube.clone();
    let whoami = tokio::task::spawn_blocking(move || k.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    assert!(whoami.contains(&user_id), "{whoami}");
    assert!(whoami.contains(&developers), "{whoami}");
    let k = kube.clone();
    let listed = tokio::task::spawn_blocking(move || k.ok(&["get", "pods", "-n", "default"]))
        .await
        .unwrap();
    assert!(listed.contains("web-1"), "{listed}");

    // An admin finds principals to bind, escaped and capped.
    let admin = paddock.admin_session(&client, "a new admin password").await;
    let found = client
        .get(
            &url("/paddock/v1/principals?provider=corp&q=develop"),
            Some(&admin),
        )
        .await;
    assert_eq!(found.status(), 200, "{}", found.text());
    assert!(found.text().contains(&developers), "{}", found.text());
    let injected = client
        .get(
            &url("/paddock/v1/principals?provider=corp&q=*)(uid=*"),
            Some(&admin),
        )
        .await;
    assert_eq!(injected.json()["items"], json!([]), "{}", injected.text());
    // alice, not an admin, may not search.
    let denied = client
        .get(
            &url("/paddock/v1/principals?provider=corp&q=dev"),
            Some(&session),
        )
        .await;
    assert_eq!(denied.status(), 403, "{}", denied.text());

    // alice leaves the group in the directory; a refresh (not a new login)
    // takes the group away, with nothing asked of the directory per request.
    slapd.modify(
        "dn: cn=developers,ou=groups,dc=example,dc=org\nchangetype: modify\ndelete: member\nmember: uid=alice,ou=people,dc=example,dc=org\n-\nadd: member\nmember: cn=paddock,ou=service,dc=example,dc=org\n",
    );
    let refresh_url = url(&format!("/paddock/v1/users/{user_id}/refresh"));
    let refreshed = client
        .send_json(Method::POST, &refresh_url, Some(&admin), &json!({}))
        .await;
    assert_eq!(refreshed.status(), 200, "{}", refreshed.text());
    let me = client
        .get(&url("/paddock/v1/me"), Some(&session))
        .await
        .json();
    assert!(!me.to_string().contains(&developers), "{me}");

    // alice is deleted in the directory: the next refresh revokes her tokens.
    slapd.modify("dn: uid=alice,ou=people,dc=example,dc=org\nchangetype: delete\n");
    let refreshed = client
        .send_json(Method::POST, &refresh_url, Some(&admin), &json!({}))
        .await;
    assert!(
        refreshed.text().contains("AccessLost"),
        "{}",
        refreshed.text()
    );
    let gone = client.get(&url("/paddock/v1/me"), Some(&session)).await;
    assert_eq!(gone.status(), 401, "{}", gone.text());

    // The directory goes down: a login is 503, never 401, and readyz says which.
    let mut slapd = slapd;
    slapd.kill();
    let down = login("alice-pw").await;
    assert_eq!(down.status(), 503, "{}", down.text());
    let ready = client.get(&url("/paddock/readyz"), None).await;
    assert_eq!(ready.status(), 200);
    let ready = ready.json();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert!(ready["degradedProviders"]["corp"].is_string(), "{ready}");
}
