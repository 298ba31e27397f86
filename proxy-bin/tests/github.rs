//! GitHub logins end to end through the real `paddock` binary, the GitHub
//! emulator and real kubectl: token login with its 401/403/429/503 answers,
//! 190 groups across pages reaching the downstream cluster, the Enterprise
//! `/api/v3` mode, and the browser flow's refusals (tampered and replayed
//! state, missing state cookie and PKCE verifier, open redirects, a user
//! outside the required organisation). The happy browser path in Chromium
//! is in `github_browser.rs`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use paddock_tests::{
    client::Collected,
    github_emulator::{
        stack::{GithubStack, StackOptions},
        Faults, RateLimit, CLIENT_ID, CLIENT_SECRET,
    },
    kubectl::Kubeconfig,
};
use serde_json::json;

fn bin() -> &'static std::path::Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_login_maps_every_team_and_kubectl_sees_the_team_principals() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;
    let token = stack.github.issue_token("octocat");
    let login = stack.token_login(&token).await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let body = login.json();
    assert_eq!(body["user"]["username"], "octocat");
    assert_eq!(
        body["user"]["principalIds"],
        json!(["github_user://583231"])
    );
    let session = body["token"].as_str().unwrap().to_owned();
    assert!(
        !stack.paddock.log().contains(&token),
        "the GitHub token was logged"
    );

    let me = stack
        .client
        .get(&stack.url("/paddock/v1/me"), Some(&session))
        .await
        .json();
    let groups: Vec<&str> = me["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g.as_str())
        .collect();
    assert_eq!(
        groups
            .iter()
            .filter(|g| g.starts_with("github_team://"))
            .count(),
        150,
        "{me}"
    );
    assert_eq!(
        groups
            .iter()
            .filter(|g| g.starts_with("github_org://"))
            .count(),
        40
    );
    let teams = stack.github.requests_to("/user/teams");
    assert_eq!(teams.len(), 2, "{teams:?}");
    assert!(teams
        .iter()
        .all(|r| r.param("per_page").as_deref() == Some("100")));

    let download = stack
        .client
        .get(
            &stack.url("/paddock/v1/kubeconfig?cluster=default"),
            Some(&session),
        )
        .await;
    assert_eq!(download.status(), 200, "{}", download.text());
    let kube = Arc::new(Kubeconfig::from_yaml(&download.text()));
    let asked = stack.github.requests().len();
    let k = kube.clone();
    let whoami = tokio::task::spawn_blocking(move || k.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    assert!(whoami.contains("github_team://5001"), "{whoami}");
    assert!(whoami.contains("github_team://5150"), "{whoami}");
    assert!(whoami.contains("github_org://1001"), "{whoami}");
    let k = kube.clone();
    let pods = tokio::task::spawn_blocking(move || k.ok(&["get", "pods"]))
        .await
        .unwrap();
    assert!(pods.contains("web-1"), "{pods}");
    assert_eq!(
        stack.github.requests().len(),
        asked,
        "GitHub was asked on the request path"
    );
    stack.fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn token_login_answers_401_for_bad_tokens_403_for_outsiders_and_503_when_github_is_down() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;
    for token in ["", "   ", "gho_not-a-token"] {
        let refused = stack.token_login(token).await;
        assert_eq!(refused.status(), 401, "{token:?}: {}", refused.text());
        assert_eq!(refused.json()["kind"], "Status");
        assert!(refused.head.headers.contains_key("www-authenticate"));
    }
    let missing = stack
        .client
        .send_json(
            Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"provider": "github"}),
        )
        .await;
    assert_eq!(missing.status(), 401, "{}", missing.text());

    let outsider = stack
        .token_login(&stack.github.issue_token("outsider"))
        .await;
    assert_eq!(outsider.status(), 403, "{}", outsider.text());
    assert!(outsider.text().contains("outsider"), "{}", outsider.text());

    let token = stack.github.issue_token("octocat");
    stack.github.set_faults(Faults {
        server_errors: 10,
        ..Faults::default()
    });
    let down = stack.token_login(&token).await;
    assert_eq!(down.status(), 503, "{}", down.text());
    stack.github.set_faults(Faults {
        fail_page: Some(("/user/teams".into(), 2)),
        ..Faults::default()
    });
    let partial = stack.token_login(&token).await;
    assert_eq!(
        partial.status(),
        503,
        "a failed page must fail the login: {}",
        partial.text()
    );

    stack.github.set_faults(Faults {
        rate_limit: Some(RateLimit {
            status: 429,
            reset_in_secs: 1,
            retry_after_secs: Some(1),
            times: 1,
        }),
        ..Faults::default()
    });
    let waited = stack.token_login(&token).await;
    assert_eq!(waited.status(), 200, "{}", waited.text());
    stack.github.set_faults(Faults {
        rate_limit: Some(RateLimit {
            status: 403,
            reset_in_secs: 900,
            retry_after_secs: None,
            times: 100,
        }),
        ..Faults::default()
    });
    let limited = stack.token_login(&token).await;
    assert_eq!(limited.status(), 429, "{}", limited.text());
    let retry: u64 = limited.head.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((800..=900).contains(&retry), "{retry}");

    // Local logins still work as before.
    let local = stack
        .client
        .send_json(
            Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"username": "admin", "password": stack.paddock.bootstrap_password()}),
        )
        .await;
    assert_eq!(local.status(), 200, "{}", local.text());
    let empty = stack
        .client
        .send_json(
            Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"username": "admin"}),
        )
        .await;
    assert_eq!(empty.status(), 400, "{}", empty.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn github_unreachable_is_503_not_401() {
    let mut stack = GithubStack::start(bin(), StackOptions::default()).await;
    let token = stack.github.issue_token("octocat");
    // Stop GitHub: replace it by a fresh emulator and drop the old one.
    let replacement = paddock_tests::github_emulator::GithubEmulator::start(Default::default())
        .await
        .unwrap();
    drop(std::mem::replace(&mut stack.github, replacement));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let down = stack.token_login(&token).await;
    assert_eq!(down.status(), 503, "{}", down.text());
    assert!(down.head.headers.contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread")]
async fn enterprise_mode_logs_in_through_the_api_v3_prefix() {
    let stack = GithubStack::start(
        bin(),
        StackOptions {
            enterprise: true,
            ..StackOptions::default()
        },
    )
    .await;
    let login = stack
        .token_login(&stack.github.issue_token("octocat"))
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let requests = stack.github.requests();
    assert!(requests.len() >= 5, "{requests:?}");
    assert!(requests.iter().all(|r| r.enterprise_prefix), "{requests:?}");

    // The browser flow goes to HOST/login/oauth/authorize (no prefix).
    let start = stack
        .client
        .get(&stack.url("/paddock/v1/github/login"), None)
        .await;
    assert_eq!(start.status(), 303);
    let location = start.head.headers["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!(
            "https://{}/login/oauth/authorize?",
            stack.github.host()
        )),
        "{location}"
    );
}

/// The browser flow driven by hand: start, approve at the emulator, and
/// the callback URL and state cookie it produced.
struct Started {
    cookie: String,
    callback: String,
    authorize: url::Url,
}

async fn start_login(stack: &GithubStack, redirect: Option<&str>) -> Started {
    let path = match redirect {
        Some(r) => format!("/paddock/v1/github/login?redirect={}", urlencode(r)),
        None => "/paddock/v1/github/login".to_owned(),
    };
    let start = stack.client.get(&stack.url(&path), None).await;
    assert_eq!(start.status(), 303, "{}", start.text());
    let set_cookie = start.head.headers["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    for attribute in [
        "paddock_github_state=",
        "HttpOnly",
        "Secure",
        "SameSite=Lax",
        "Max-Age=600",
    ] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let authorize = url::Url::parse(start.head.headers["location"].to_str().unwrap()).unwrap();
    let param = |name: &str| {
        authorize
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(param("code_challenge_method").as_deref(), Some("S256"));
    assert!(param("code_challenge").is_some_and(|c| c.len() >= 43));
    assert_eq!(param("scope").as_deref(), Some("read:org user:email"));
    assert_eq!(
        param("redirect_uri").unwrap(),
        stack.url("/paddock/v1/github/callback")
    );
    // Approve, as the browser would by submitting the emulator's form.
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in authorize.query_pairs() {
        form.append_pair(&k, &v);
    }
    form.append_pair("login", "octocat");
    let approve = stack
        .github_client
        .fetch(
            Request::post(format!("{}/login/oauth/authorize", stack.github.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form.finish())))
                .unwrap(),
        )
        .await;
    assert_eq!(approve.status(), 302, "{}", approve.text());
    let callback = approve.head.headers["location"]
        .to_str()
        .unwrap()
        .to_owned();
    Started {
        cookie,
        callback,
        authorize,
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn get_with_cookie(stack: &GithubStack, url: &str, cookie: Option<&str>) -> Collected {
    let mut request = Request::get(url);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    stack
        .client
        .fetch(request.body(Full::default()).unwrap())
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callback_refuses_tampered_replayed_and_cookieless_states() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;

    // No state cookie (so no PKCE verifier either): refused.
    let started = start_login(&stack, None).await;
    let missing = get_with_cookie(&stack, &started.callback, None).await;
    assert_eq!(missing.status(), 400, "{}", missing.text());
    assert!(
        missing.text().contains("start the login again"),
        "{}",
        missing.text()
    );

    // A state parameter that does not match the cookie: refused.
    let started = start_login(&stack, None).await;
    let tampered = started.callback.replace("state=", "state=x");
    let refused = get_with_cookie(&stack, &tampered, Some(&started.cookie)).await;
    assert_eq!(refused.status(), 400, "{}", refused.text());
    // A cookie that was tampered with: refused.
    let mut bad_cookie = started.cookie.clone().into_bytes();
    let last = bad_cookie.len() - 3;
    bad_cookie[last] = if bad_cookie[last] == b'a' { b'b' } else { b'a' };
    let refused = get_with_cookie(
        &stack,
        &started.callback,
        Some(std::str::from_utf8(&bad_cookie).unwrap()),
    )
    .await;
    assert_eq!(refused.status(), 400, "{}", refused.text());

    // The genuine pair works once, and lands on the page asked for...
    let started = start_login(&stack, Some("/paddock/?from=test")).await;
    let ok = get_with_cookie(&stack, &started.callback, Some(&started.cookie)).await;
    assert_eq!(ok.status(), 303, "{}", ok.text());
    assert_eq!(ok.head.headers["location"], "/paddock/?from=test");
    let cookies: Vec<&str> = ok
        .head
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("paddock_session="))
        .unwrap_or_else(|| panic!("no session cookie in {cookies:?}"));
    assert!(session.contains("HttpOnly") && session.contains("Secure"));
    assert!(cookies
        .iter()
        .any(|c| c.starts_with("paddock_github_state=;") && c.contains("Max-Age=0")));
    // ... and is refused when replayed.
    let replayed = get_with_cookie(&stack, &started.callback, Some(&started.cookie)).await;
    assert_eq!(replayed.status(), 400, "{}", replayed.text());
    assert!(replayed.text().contains("already"), "{}", replayed.text());

    // The emulator enforces PKCE: a code exchanged without the verifier is refused
    // (with HTTP 200 and an error field, as GitHub answers).
    let started = start_login(&stack, None).await;
    let code = url::Url::parse(&started.callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let exchange = stack
        .github_client
        .fetch(
            Request::post(format!("{}/login/oauth/access_token", stack.github.url()))
                .header("accept", "application/json")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(format!(
                    "client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}&code={code}&redirect_uri={}",
                    urlencode(&stack.url("/paddock/v1/github/callback"))
                ))))
                .unwrap(),
        )
        .await;
    assert_eq!(exchange.status(), 200);
    assert_eq!(
        exchange.json()["error"],
        "bad_verification_code",
        "{}",
        exchange.text()
    );
    let _ = started.authorize;

    // A token endpoint answering HTTP 200 with an error is a refusal, not a crash.
    let started = start_login(&stack, None).await;
    stack.github.set_faults(Faults {
        token_error: Some("incorrect_client_credentials".into()),
        ..Faults::default()
    });
    let rejected = get_with_cookie(&stack, &started.callback, Some(&started.cookie)).await;
    assert_eq!(rejected.status(), 401, "{}", rejected.text());
    assert!(
        rejected.text().contains("incorrect_client_credentials"),
        "{}",
        rejected.text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirects_are_refused() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;
    for target in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/%2F%2Fevil.example",
        "/%5Cevil.example",
        "/\t/evil.example",
    ] {
        for path in ["/paddock/v1/github/login", "/paddock/login"] {
            let url = stack.url(&format!("{path}?redirect={}", urlencode(target)));
            let refused = stack.client.get(&url, None).await;
            assert_eq!(
                refused.status(),
                400,
                "{path} {target:?}: {}",
                refused.text()
            );
            assert!(refused.head.headers.get("location").is_none());
        }
    }
    // The password form too.
    let refused = stack
        .client
        .fetch(
            Request::post(stack.url("/paddock/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", stack.paddock.url())
                .body(Full::new(Bytes::from(format!(
                    "provider=local&username=admin&password=x&redirect={}",
                    urlencode("//evil.example")
                ))))
                .unwrap(),
        )
        .await;
    assert_eq!(refused.status(), 400, "{}", refused.text());
    // And a form posted from another site is refused outright.
    let cross = stack
        .client
        .fetch(
            Request::post(stack.url("/paddock/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", "https://evil.example")
                .body(Full::new(Bytes::from(
                    "provider=local&username=admin&password=x",
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(cross.status(), 403, "{}", cross.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_outside_the_required_org_gets_a_refusal_page() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;
    stack.github.sign_in("outsider");
    let start = stack
        .client
        .get(&stack.url("/paddock/v1/github/login"), None)
        .await;
    let cookie = start.head.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let authorize = url::Url::parse(start.head.headers["location"].to_str().unwrap()).unwrap();
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in authorize.query_pairs() {
        form.append_pair(&k, &v);
    }
    form.append_pair("login", "outsider");
    let approve = stack
        .github_client
        .fetch(
            Request::post(format!("{}/login/oauth/authorize", stack.github.url()))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form.finish())))
                .unwrap(),
        )
        .await;
    let callback = approve.head.headers["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let refused = get_with_cookie(&stack, &callback, Some(&cookie)).await;
    assert_eq!(refused.status(), 403, "{}", refused.text());
    let page = refused.text();
    assert!(page.contains("Access denied"), "{page}");
    assert!(page.contains("outsider"), "{page}");
    assert!(page.contains("allowed list"), "{page}");
    assert!(
        !refused
            .head
            .headers
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("paddock_session=")),
        "a refused user got a session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_page_lists_providers_and_its_password_form_shows_errors_on_the_page() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;
    let page = stack.client.get(&stack.url("/paddock/login"), None).await;
    assert_eq!(page.status(), 200);
    assert_eq!(
        page.head.headers["content-type"],
        "text/html; charset=utf-8"
    );
    let html = page.text();
    assert!(html.contains("Sign in with GitHub"), "{html}");
    assert!(html.contains("href=\"/paddock/v1/github/login\""), "{html}");
    assert!(html.contains("name=\"password\""), "{html}");

    let post = |body: String| {
        stack.client.fetch(
            Request::post(stack.url("/paddock/login"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("origin", stack.paddock.url())
                .header("sec-fetch-site", "same-origin")
                .body(Full::new(Bytes::from(body)))
                .unwrap(),
        )
    };
    let wrong =
        post("provider=local&username=admin&password=nope&redirect=%2Fpaddock%2F".into()).await;
    assert_eq!(wrong.status(), 401, "{}", wrong.text());
    assert!(
        wrong.text().contains("Wrong username or password."),
        "{}",
        wrong.text()
    );
    assert!(wrong.head.headers.get("set-cookie").is_none());

    let password = urlencode(&stack.paddock.bootstrap_password());
    let ok = post(format!(
        "provider=local&username=admin&password={password}&redirect=%2Fpaddock%2F%3Fx%3D1"
    ))
    .await;
    assert_eq!(ok.status(), 303, "{}", ok.text());
    assert_eq!(ok.head.headers["location"], "/paddock/?x=1");
    let cookie = ok.head.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("paddock_session=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    // The bootstrap admin must change their password first: the landing page says so.
    let session = cookie.split(';').next().unwrap().to_owned();
    let landing = get_with_cookie(&stack, &stack.url("/paddock/"), Some(&session)).await;
    assert_eq!(landing.status(), 403, "{}", landing.text());
    assert!(
        landing.text().contains("change their password"),
        "{}",
        landing.text()
    );
    // Without a session the landing page sends the browser to sign in.
    let anonymous = stack.client.get(&stack.url("/paddock/"), None).await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(anonymous.head.headers["location"], "/paddock/login");
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_github_tokens_is_throttled_but_github_outages_are_not_counted() {
    let stack = GithubStack::start(bin(), StackOptions::default()).await;
    let token = stack.github.issue_token("octocat");
    stack.github.set_faults(Faults {
        server_errors: 1000,
        ..Faults::default()
    });
    for _ in 0..8 {
        assert_eq!(stack.token_login(&token).await.status(), 503);
    }
    stack.github.set_faults(Faults::default());
    assert_eq!(stack.token_login(&token).await.status(), 200);

    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(stack.token_login("gho_guess").await.status());
    }
    assert_eq!(&statuses[..5], &[401; 5], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}
