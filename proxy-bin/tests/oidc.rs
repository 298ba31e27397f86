//! OpenID Connect against a real provider (npm `oidc-provider`, started by
//! the test): the browser code flow in headless Chromium ending in a
//! kubeconfig that `kubectl auth whoami` shows the OIDC principals with;
//! JWT bearer tokens verified on the request path, good and bad; a key
//! rotation; and the provider going down (logins 503, cached keys go on
//! verifying). Needs Node.js with `tests/oidc`'s `npm ci` done, Debian
//! `chromium` and `chromium-driver` (tests/run.sh installs them).

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use paddock_tests::{
    browser::Browser,
    kubectl::Kubeconfig,
    oidc::{OidcStack, CLIENT_ID, PROVIDER},
};
use serde_json::{json, Value};

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_through_oidc_in_chromium_then_use_the_downloaded_kubeconfig() {
    let mut stack = OidcStack::start(bin(), "").await;
    let browser = Browser::start().await;

    browser.goto(&stack.url("/paddock/login")).await;
    let button = browser.find(&format!("#oidc-login-{PROVIDER}")).await;
    assert_eq!(browser.text(&button).await, "Sign in with Corp SSO");
    browser
        .screenshot(&screenshots().join("oidc-login.png"))
        .await;
    browser.click(&button).await;

    // oidc-provider's own login form, then its consent form.
    let login = browser.find("input[name=login]").await;
    assert!(
        browser.url().await.starts_with(&stack.idp.issuer()),
        "{}",
        browser.url().await
    );
    browser.type_text(&login, "alice").await;
    let password = browser.find("input[name=password]").await;
    browser.type_text(&password, "alice's long password").await;
    browser
        .click(&browser.find("button[type=submit]").await)
        .await;
    // The login form is at an /interaction/ URL too: wait for the consent
    // form itself (or the landing page), or the click could land on the
    // login form's button as the page is replaced.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let consent_form = loop {
        if browser.url().await.ends_with("/paddock/") {
            break false;
        }
        if browser
            .source()
            .await
            .contains(r#"name="prompt" value="consent""#)
        {
            break true;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "neither the consent form nor the landing page after login: {}",
            browser.url().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if consent_form {
        let consent = browser.find("button[type=submit]").await;
        browser
            .screenshot(&screenshots().join("oidc-consent.png"))
            .await;
        browser.click(&consent).await;
    }

    let landing = browser.wait_for_url(|u| u.ends_with("/paddock/")).await;
    assert!(landing.starts_with(&stack.paddock.url()), "{landing}");
    let username = browser.find("#username").await;
    assert_eq!(browser.text(&username).await, "alice@example.com");
    let source = browser.source().await;
    assert!(source.contains("oidc_group://ops"), "{source}");
    browser
        .screenshot(&screenshots().join("oidc-landing.png"))
        .await;

    browser
        .click(&browser.find("#download-default").await)
        .await;
    let yaml = browser.downloaded("default.kubeconfig").await;
    assert!(yaml.contains("/k8s/clusters/default"), "{yaml}");
    let kube = Arc::new(Kubeconfig::from_yaml(&yaml));
    let k = kube.clone();
    let whoami = tokio::task::spawn_blocking(move || k.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    assert!(whoami.contains("alice@example.com"), "{whoami}");
    assert!(whoami.contains("oidc_group://ops"), "{whoami}");
    assert!(whoami.contains("oidc_group://devs"), "{whoami}");
    assert!(whoami.contains("oidc_user://"), "{whoami}");
    let k = kube.clone();
    let pods = tokio::task::spawn_blocking(move || k.ok(&["get", "pods"]))
        .await
        .unwrap();
    assert!(pods.contains("web-1"), "{pods}");

    // The code exchange left a sealed refresh token for the group refresh,
    // in the store (which the server has open too).
    let store = proxy_core::store::EmbeddedStore::open_in_dir(
        &stack.paddock.data_dir(),
        proxy_core::store::EmbeddedOptions::default(),
    )
    .unwrap();
    let kept: Vec<_> = proxy_core::store::Store::load(&store)
        .unwrap()
        .objects
        .into_iter()
        .filter_map(|v| match v.object {
            proxy_core::store::Object::ProviderToken(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].provider, PROVIDER);
    assert!(
        !kept[0].sealed.contains('.'),
        "a refresh token is kept sealed"
    );

    // The provider moves alice from ops to platform; the refresh (here
    // asked for by an admin, normally the background one) redeems the
    // kept refresh token and stores the new groups.
    stack.idp.set_user("alice", &["platform"], false);
    let admin = stack
        .paddock
        .admin_session(&stack.client, "a new admin password 1")
        .await;
    let id = proxy_core::authn::external::user_id_for(&proxy_core::authn::oidc::user_principal(
        &stack.idp.issuer(),
        "alice",
    ));
    let refreshed = stack
        .client
        .send_json(
            http::Method::POST,
            &stack.url(&format!("/paddock/v1/users/{id}/refresh")),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(refreshed.status(), 200, "{}", refreshed.text());
    let answer = refreshed.text();
    assert!(answer.contains("oidc_group://platform"), "{answer}");
    assert!(!answer.contains("oidc_group://ops"), "{answer}");

    // Disabled at the provider: the refresh token is refused, access is
    // lost, and the downloaded kubeconfig's token with it.
    stack.idp.set_user("alice", &["platform"], true);
    let refreshed = stack
        .client
        .send_json(
            http::Method::POST,
            &stack.url(&format!("/paddock/v1/users/{id}/refresh")),
            Some(&admin),
            &json!({}),
        )
        .await;
    assert_eq!(refreshed.status(), 200, "{}", refreshed.text());
    let k = kube.clone();
    let after = tokio::task::spawn_blocking(move || k.run(&["get", "pods"], None))
        .await
        .unwrap();
    assert!(!after.status.success(), "{}", refreshed.text());
    stack.fake.assert_clean();
}

/// A token like the provider's, signed by the test with `key`.
fn crafted(
    stack: &OidcStack,
    alg: Algorithm,
    kid: &str,
    key: &EncodingKey,
    change: impl Fn(&mut Value),
) -> String {
    let mut claims = json!({
        "iss": stack.idp.issuer(), "aud": CLIENT_ID, "sub": "alice",
        "email": "alice@example.com", "email_verified": true,
        "groups": ["ops"], "iat": now(), "exp": now() + 600,
    });
    change(&mut claims);
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, &claims, key).unwrap()
}

async fn pods_with(stack: &OidcStack, token: &str) -> (u16, String) {
    let answer = stack
        .client
        .get(
            &stack.url("/k8s/clusters/default/api/v1/namespaces/default/pods"),
            Some(token),
        )
        .await;
    (answer.status(), answer.text())
}

fn b64(value: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_jwts_are_verified_locally_and_bad_ones_get_a_bare_401() {
    let mut stack = OidcStack::start(bin(), "").await;
    // A real ID token from the provider.
    let token = stack.idp.id_token("alice").await;
    let (status, body) = pods_with(&stack, &token).await;
    assert_eq!(status, 200, "{body}\n{}", stack.paddock.log());
    assert!(body.contains("web-1"), "{body}");
    let kube = Kubeconfig::new(&stack.paddock.url(), &stack.paddock.ca_pem(), &token);
    let whoami = tokio::task::spawn_blocking(move || kube.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    assert!(whoami.contains("alice@example.com"), "{whoami}");
    assert!(whoami.contains("oidc_group://ops"), "{whoami}");
    // bob is not in ops: authenticated, not authorized.
    let bob = stack.idp.id_token("bob").await;
    assert_eq!(pods_with(&stack, &bob).await.0, 403);

    let rsa = EncodingKey::from_rsa_pem(&stack.idp.private_key("rsa-1")).unwrap();
    let ec = EncodingKey::from_ec_pem(&stack.idp.private_key("ec-1")).unwrap();
    // The provider's own keys, signed by the test: accepted when correct.
    let good = crafted(&stack, Algorithm::ES256, "ec-1", &ec, |_| {});
    assert_eq!(pods_with(&stack, &good).await.0, 200);
    let valid_parts: Vec<String> = crafted(&stack, Algorithm::RS256, "rsa-1", &rsa, |_| {})
        .split('.')
        .map(str::to_owned)
        .collect();
    let public = stack.idp.public_key("rsa-1");
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            crafted(&stack, Algorithm::RS256, "rsa-1", &rsa, |c| {
                c["exp"] = json!(now() - 300);
            }),
        ),
        (
            "wrong audience",
            crafted(&stack, Algorithm::RS256, "rsa-1", &rsa, |c| {
                c["aud"] = json!("another-client");
            }),
        ),
        (
            "wrong issuer",
            crafted(&stack, Algorithm::RS256, "rsa-1", &rsa, |c| {
                c["iss"] = json!("https://evil.example");
            }),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "rsa-1"})),
                valid_parts[1]
            ),
        ),
        (
            "HS256 signed with the public key",
            crafted(
                &stack,
                Algorithm::HS256,
                "rsa-1",
                &EncodingKey::from_secret(&public),
                |_| {},
            ),
        ),
        ("tampered payload", {
            let claims: Value = serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(&valid_parts[1])
                    .unwrap(),
            )
            .unwrap();
            let mut claims = claims;
            claims["groups"] = json!(["system:masters", "ops"]);
            format!("{}.{}.{}", valid_parts[0], b64(&claims), valid_parts[2])
        }),
        (
            "unknown kid",
            crafted(&stack, Algorithm::RS256, "made-up", &rsa, |_| {}),
        ),
    ];
    let baseline = stack
        .client
        .get(
            &stack.url("/k8s/clusters/default/api/v1/namespaces/default/pods"),
            Some("no-such-token"),
        )
        .await
        .json();
    for (case, token) in &cases {
        let answer = stack
            .client
            .get(
                &stack.url("/k8s/clusters/default/api/v1/namespaces/default/pods"),
                Some(token),
            )
            .await;
        assert_eq!(answer.status(), 401, "{case}: {}", answer.text());
        assert!(
            answer.head.headers.contains_key("www-authenticate"),
            "{case}"
        );
        let status = answer.json();
        assert_eq!(status["reason"], "Unauthorized", "{case}");
        // The same answer as for any unknown token: nothing says why.
        assert_eq!(status, baseline, "{case}");
    }
    stack.fake.assert_clean();

    // Rotation: the provider starts signing with a new key. Its first token
    // names a kid Paddock has not seen; one refresh of the key set (past the
    // 1 s minimum interval the made-up kid above started) finds it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    stack.rotate(&[("rsa-2", "RSA"), ("rsa-1", "RSA"), ("ec-1", "EC")]);
    let rotated = stack.idp.id_token("alice").await;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(rotated.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["kid"], "rsa-2");
    let (status, body) = pods_with(&stack, &rotated).await;
    assert_eq!(status, 200, "{body}\n{}", stack.paddock.log());
    // Tokens of the old key still verify.
    assert_eq!(pods_with(&stack, &token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_down_makes_logins_503_while_cached_keys_verify_jwts() {
    let mut stack = OidcStack::start(bin(), "").await;
    // Two tokens while the provider is up; the first warms the key cache.
    let first = stack.idp.id_token("alice").await;
    let second = stack.idp.id_token("bob").await;
    assert_eq!(pods_with(&stack, &first).await.0, 200);
    let login = stack
        .client
        .send_json(
            http::Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"provider": PROVIDER, "username": "alice", "password": "alice's long password"}),
        )
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let wrong = stack
        .client
        .send_json(
            http::Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"provider": PROVIDER, "username": "alice", "password": "wrong password"}),
        )
        .await;
    assert_eq!(wrong.status(), 401, "{}", wrong.text());

    stack.idp.stop();
    let down = stack
        .client
        .send_json(
            http::Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"provider": PROVIDER, "username": "alice", "password": "alice's long password"}),
        )
        .await;
    assert_eq!(down.status(), 503, "{}", down.text());
    let browser_login = stack
        .client
        .get(
            &stack.url(&format!("/paddock/v1/oidc/{PROVIDER}/login")),
            None,
        )
        .await;
    // Discovery was fetched before: the authorize redirect needs no call.
    // The exchange at the callback is what needs the provider; an unseen
    // token without cached keys would too. Either way no 401.
    assert_ne!(browser_login.status(), 401);
    // The second token was never verified: this is the cached keys at
    // work (bob is authenticated, and not in ops: 403, not 401 or 503).
    let (status, body) = pods_with(&stack, &second).await;
    assert_eq!(status, 403, "{body}\n{}", stack.paddock.log());
    // A kid the cached keys lack, past the 1 s refresh interval: the
    // provider cannot be asked whether it rotated to that key, so 503, not
    // 401. The next request, within the interval after that failed fetch,
    // gets the same answer without a fetch of its own.
    let rsa = EncodingKey::from_rsa_pem(&stack.idp.private_key("rsa-1")).unwrap();
    let unknown = crafted(&stack, Algorithm::RS256, "other", &rsa, |_| {});
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for attempt in ["fetching", "within the interval"] {
        let (status, body) = pods_with(&stack, &unknown).await;
        assert_eq!(status, 503, "{attempt}: {body}");
    }
    stack.fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_was_never_reached_gives_503_not_401() {
    let mut stack = OidcStack::start(bin(), "").await;
    let token = stack.idp.id_token("alice").await;
    stack.idp.stop();
    // Paddock fetched nothing yet (its prefetch ran before the provider
    // started): nothing to verify with is the provider's fault, not the caller's.
    let (status, body) = pods_with(&stack, &token).await;
    assert_eq!(status, 503, "{body}");
    let page = stack
        .client
        .get(
            &stack.url(&format!("/paddock/v1/oidc/{PROVIDER}/login")),
            None,
        )
        .await;
    assert_eq!(page.status(), 503, "{}", page.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_explain_answers_for_oidc_principals() {
    let stack = OidcStack::start(bin(), "").await;
    let config = stack.dir.path().join("paddock.yaml");
    let user = format!(
        "oidc_user://{}/alice",
        &proxy_core_principal(&stack.idp.issuer())
    );
    let output = std::process::Command::new(bin())
        .args(["policy", "explain", "--config"])
        .arg(&config)
        .args([
            "--user",
            &user,
            "--group",
            "oidc_group://ops",
            "list",
            "pods",
        ])
        .current_dir(stack.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.starts_with("yes"), "{stdout}");
    assert!(stdout.contains("oidc-ops-views"), "{stdout}");
    let output = std::process::Command::new(bin())
        .args(["policy", "explain", "--config"])
        .arg(&config)
        .args([
            "--user",
            &user,
            "--group",
            "oidc_group://devs",
            "list",
            "pods",
        ])
        .current_dir(stack.dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
}

/// The issuer hash of user principals, as Paddock computes it.
fn proxy_core_principal(issuer: &str) -> String {
    let principal = proxy_core::authn::oidc::user_principal(issuer, "x");
    principal
        .trim_start_matches("oidc_user://")
        .trim_end_matches("/x")
        .to_owned()
}
