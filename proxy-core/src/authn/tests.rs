use std::sync::atomic::{AtomicUsize, Ordering};

use http::{HeaderMap, HeaderValue};
use secrecy::ExposeSecret;

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            )
        })
        .collect()
}

#[test]
fn extracts_bearer_basic_and_session_credentials() {
    let creds = Credential::from_request(
        &headers(&[
            ("authorization", "bearer  abc "),
            ("cookie", "a=b; paddock_session=s3cr3t; c=d"),
        ]),
        None,
    )
    .unwrap();
    assert!(matches!(&creds[0], Credential::Bearer(t) if t.expose_secret() == "abc"));
    assert!(matches!(&creds[1], Credential::Session(t) if t.expose_secret() == "s3cr3t"));

    // "alice:pa:ss" in base64: the password may contain ':'.
    let creds = Credential::from_request(
        &headers(&[("authorization", "Basic YWxpY2U6cGE6c3M=")]),
        None,
    )
    .unwrap();
    assert!(matches!(&creds[0], Credential::Basic { username, password }
        if username == "alice" && password.expose_secret() == "pa:ss"));
}

#[test]
fn malformed_authorization_is_an_error_and_never_echoes_the_secret() {
    for value in [
        "Bearer",
        "Basic !!!notbase64",
        "Basic Zm9v",
        "Negotiate abc",
        "Digest xyz",
    ] {
        let mut map = HeaderMap::new();
        map.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(value).unwrap(),
        );
        let error = Credential::from_request(&map, None).unwrap_err();
        assert!(
            matches!(error, ProxyError::MalformedCredentials { .. }),
            "{value}"
        );
        assert!(!error.to_string().contains("notbase64") && !error.to_string().contains("xyz"));
    }
    let mut twice = HeaderMap::new();
    twice.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer a"),
    );
    twice.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Bearer b"),
    );
    assert!(Credential::from_request(&twice, None).is_err());
}

#[test]
fn debug_never_prints_secrets() {
    let printed = format!(
        "{:?}",
        [
            Credential::Bearer("tok-123".into()),
            Credential::Basic {
                username: "u".into(),
                password: "pw-456".into()
            },
            Credential::Session("sess-789".into()),
        ]
    );
    for secret in ["tok-123", "pw-456", "sess-789"] {
        assert!(!printed.contains(secret), "{printed}");
    }
}

struct Fixed(Result<Option<Arc<Identity>>, AuthnError>, AtomicUsize);

impl Authenticator for Fixed {
    fn name(&self) -> &str {
        "fixed"
    }
    fn authenticate<'a>(
        &'a self,
        _: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        self.1.fetch_add(1, Ordering::SeqCst);
        ReadyOrBoxed::ready(self.0.clone())
    }
}

fn alice() -> Arc<Identity> {
    Arc::new(Identity {
        user: "alice".into(),
        username: "alice".into(),
        ..Identity::default()
    })
}

#[tokio::test]
async fn chain_semantics() {
    let bearer = [Credential::Bearer("t".into())];
    let none = || Fixed(Ok(None), AtomicUsize::new(0));
    let down = || {
        Fixed(
            Err(AuthnError::Unavailable {
                provider: "ldap".into(),
            }),
            AtomicUsize::new(0),
        )
    };

    let missing = AuthenticatorChain::new()
        .with(none())
        .authenticate(&[])
        .await;
    assert!(matches!(missing, Err(ProxyError::MissingCredentials)));

    let invalid = AuthenticatorChain::new()
        .with(none())
        .authenticate(&bearer)
        .await;
    assert!(matches!(invalid, Err(ProxyError::InvalidCredentials)));

    // A provider that is down is 503, not 401 ...
    let unavailable = AuthenticatorChain::new()
        .with(down())
        .with(none())
        .authenticate(&bearer)
        .await;
    assert!(matches!(
        unavailable,
        Err(ProxyError::AuthenticationUnavailable { .. })
    ));

    // ... unless another provider knows the caller; system:authenticated is added once.
    let ok = AuthenticatorChain::new()
        .with(down())
        .with(Fixed(Ok(Some(alice())), AtomicUsize::new(0)))
        .authenticate(&bearer)
        .await
        .unwrap();
    assert_eq!(ok.groups, [SYSTEM_AUTHENTICATED]);
    assert_eq!(with_authenticated_group(ok).groups.len(), 1);
}

/// Knows one bearer token, and answers only after waiting (a directory
/// round trip, a JWT to verify).
pub(crate) struct Later(pub &'static str, pub Arc<Identity>);

impl Authenticator for Later {
    fn name(&self) -> &str {
        "later"
    }
    fn authenticate<'a>(
        &'a self,
        credential: &'a Credential,
    ) -> ReadyOrBoxed<'a, Result<Option<Arc<Identity>>, AuthnError>> {
        let known = matches!(credential, Credential::Bearer(t) if t.expose_secret() == self.0);
        ReadyOrBoxed::boxed(async move {
            tokio::task::yield_now().await;
            Ok(known.then(|| self.1.clone()))
        })
    }
}

/// The answer without waiting is the chain's answer whenever every
/// authenticator asked knows it at once, and none when one must wait.
#[tokio::test]
async fn answers_at_once_as_the_chain_would() {
    let bearer = [Credential::Bearer("t".into())];
    let fixed = |answer| Fixed(answer, AtomicUsize::new(0));
    let down = || {
        Err(AuthnError::Unavailable {
            provider: "ldap".into(),
        })
    };
    let chains = [
        AuthenticatorChain::new().with(fixed(Ok(None))),
        AuthenticatorChain::new()
            .with(fixed(down()))
            .with(fixed(Ok(None))),
        AuthenticatorChain::new()
            .with(fixed(Err(AuthnError::Invalid)))
            .with(fixed(Ok(Some(alice())))),
        AuthenticatorChain::new()
            .with(fixed(down()))
            .with(fixed(Ok(Some(alice())))),
    ];
    for chain in chains {
        for credentials in [&bearer[..], &[]] {
            let now = chain.authenticate_now(credentials).expect("known at once");
            let awaited = chain.authenticate(credentials).await;
            assert_eq!(
                now.as_ref()
                    .map(|i| i.groups.clone())
                    .map_err(|e| e.to_string()),
                awaited.map(|i| i.groups.clone()).map_err(|e| e.to_string()),
                "{chain:?}"
            );
        }
    }

    // One that must wait: no answer now, the right one awaited; one found
    // at once before it is the answer without asking it.
    let waits = AuthenticatorChain::new()
        .with(fixed(Ok(None)))
        .with(Later("t", alice()));
    assert!(waits.authenticate_now(&bearer).is_none());
    assert_eq!(waits.authenticate(&bearer).await.unwrap().user, "alice");
    let found_first = AuthenticatorChain::new()
        .with(fixed(Ok(Some(alice()))))
        .with(Later("t", alice()));
    assert!(matches!(found_first.authenticate_now(&bearer), Some(Ok(_))));
}
