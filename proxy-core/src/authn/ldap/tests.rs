use super::*;

#[test]
fn every_login_error_maps_to_401_or_503() {
    let invalid = LdapLoginError::invalid(InvalidReason::AccountLockedOut);
    assert!(matches!(
        AuthnError::from(invalid.clone()),
        AuthnError::Invalid
    ));
    // The client-facing text never carries the reason.
    assert_eq!(invalid.to_string(), "invalid username or password");
    for e in [
        LdapLoginError::Unavailable {
            provider: "corp".into(),
            message: "connect failed".into(),
        },
        LdapLoginError::Misconfigured {
            provider: "corp".into(),
            message: "service account refused".into(),
        },
    ] {
        assert!(
            matches!(AuthnError::from(e), AuthnError::Unavailable { ref provider } if provider == "corp")
        );
    }
}

#[test]
fn ad_diagnostics_without_a_known_code() {
    assert_eq!(InvalidReason::from_ad_diagnostic("no data here"), None);
    assert_eq!(
        InvalidReason::from_ad_diagnostic("AcceptSecurityContext error, data 999, v1"),
        None
    );
    assert_eq!(
        InvalidReason::from_ad_diagnostic("AcceptSecurityContext error, data 52E, v1"),
        Some(InvalidReason::WrongPassword)
    );
}

/// A fake directory on plain loopback LDAP: accepts binds, never answers a
/// search. Counts the searches sent on a connection that already has an
/// unanswered one.
async fn hanging_search_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = reused.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                let mut held = Vec::new();
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n < 6 {
                        return;
                    }
                    // SEQUENCE, short length, INTEGER msgid (1 byte), op.
                    let (msgid, op) = (buf[4], buf[5]);
                    match op {
                        // BindRequest -> BindResponse success.
                        0x60 => {
                            let resp = [
                                0x30, 0x0c, 0x02, 0x01, msgid, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04,
                                0x00, 0x04, 0x00,
                            ];
                            if socket.write_all(&resp).await.is_err() {
                                return;
                            }
                        }
                        // Anything else (a search): never answered.
                        _ => {
                            if !held.is_empty() {
                                count.fetch_add(1, Ordering::SeqCst);
                            }
                            held.push(msgid);
                        }
                    }
                }
            });
        }
    });
    (port, reused)
}

#[tokio::test]
async fn an_operation_timeout_is_unavailable_and_the_connection_is_not_reused() {
    use secrecy::SecretString;
    let (port, reused) = hanging_search_server().await;
    let mut c = LdapConfig::new(
        "fake",
        DirectoryKind::OpenLdap,
        vec![format!("ldap://127.0.0.1:{port}")],
        "cn=svc",
        SecretString::from("pw"),
        "dc=x",
    );
    c.dangerous.allow_plaintext = true;
    c.operation_timeout_seconds = 1;
    let p = LdapProvider::new(&c).unwrap();
    for _ in 0..3 {
        let e = p
            .login("alice", &SecretString::from("pw"))
            .await
            .unwrap_err();
        assert!(
            matches!(e, LdapLoginError::Unavailable { ref message, .. } if message.contains("timed out")),
            "{e:?}"
        );
    }
    // A connection whose search timed out is closed, never used again.
    assert_eq!(reused.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The bytes a fake directory answers to the message with this id.
type Reply = fn(u8) -> Vec<u8>;

/// A fake directory on plain loopback LDAP that answers a bind with
/// `bind_reply(msgid)` and a search with `search_reply(msgid)`.
async fn scripted_server(bind_reply: Reply, search_reply: Reply) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 512];
                while let Ok(n @ 6..) = socket.read(&mut buf).await {
                    let _ = n;
                    // SEQUENCE, short length, INTEGER msgid (1 byte), op.
                    let (msgid, op) = (buf[4], buf[5]);
                    let reply = match op {
                        0x60 => bind_reply(msgid),
                        0x63 => search_reply(msgid),
                        _ => return,
                    };
                    if socket.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn bind_ok(msgid: u8) -> Vec<u8> {
    vec![
        0x30, 0x0c, 0x02, 0x01, msgid, 0x61, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
    ]
}

fn fake_provider(port: u16) -> LdapProvider {
    let mut c = LdapConfig::new(
        "fake",
        DirectoryKind::OpenLdap,
        vec![format!("ldap://127.0.0.1:{port}")],
        "cn=svc",
        secrecy::SecretString::from("pw"),
        "dc=x",
    );
    c.dangerous.allow_plaintext = true;
    c.operation_timeout_seconds = 5;
    LdapProvider::new(&c).unwrap()
}

/// ldap3 decodes replies with `expect`; a malformed one must be "directory
/// unavailable" (503), not a panic in the login task, nor a hang.
#[tokio::test]
async fn a_malformed_reply_is_unavailable_not_a_panic() {
    let cases: [(&str, Reply, Reply); 3] = [
        // BindResponse whose resultCode is an OCTET STRING, not ENUMERATED:
        // ldap3 panics in the caller (`LdapResultExt::from`).
        (
            "bind result code",
            |id| {
                vec![
                    0x30, 0x0c, 0x02, 0x01, id, 0x61, 0x07, 0x04, 0x01, 0x00, 0x04, 0x00, 0x04,
                    0x00,
                ]
            },
            |_| Vec::new(),
        ),
        // An empty LDAPMessage: ldap3 panics in its connection driver.
        ("empty message", |_| vec![0x30, 0x00], |_| Vec::new()),
        // A SearchResultEntry without its attribute list, then success:
        // ldap3 panics in `SearchEntry::construct`.
        ("search entry", bind_ok, |id| {
            let mut reply = vec![0x30, 0x08, 0x02, 0x01, id, 0x64, 0x03, 0x04, 0x01, b'a'];
            reply.extend([
                0x30, 0x0c, 0x02, 0x01, id, 0x65, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
            ]);
            reply
        }),
    ];
    for (name, bind, search) in cases {
        let p = fake_provider(scripted_server(bind, search).await);
        let login =
            tokio::spawn(async move { p.login("alice", &secrecy::SecretString::from("pw")).await });
        let e = login
            .await
            .unwrap_or_else(|e| panic!("{name}: the login task failed: {e}"))
            .unwrap_err();
        assert!(
            matches!(e, LdapLoginError::Unavailable { ref message, .. } if !message.contains("timed out")),
            "{name}: {e:?}"
        );
        assert!(matches!(
            AuthnError::from(e),
            AuthnError::Unavailable { .. }
        ));
    }
}
