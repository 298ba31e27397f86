//! The GitHub browser flow in headless Debian Chromium: the sign-in page,
//! "Sign in with GitHub", the emulator's authorize page, the landing page,
//! the kubeconfig download, and kubectl with that file seeing the team
//! principals. Screenshots go to `target/screenshots/`. Needs the Debian
//! packages `chromium` and `chromium-driver` (tests/run.sh installs them);
//! without them the test fails saying so.

use std::{path::PathBuf, sync::Arc};

use paddock_tests::{
    browser::Browser,
    github_emulator::stack::{GithubStack, StackOptions},
    kubectl::Kubeconfig,
};

fn screenshots() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots")
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_with_github_in_chromium_then_use_the_downloaded_kubeconfig() {
    let stack = GithubStack::start(
        env!("CARGO_BIN_EXE_paddock").as_ref(),
        StackOptions::default(),
    )
    .await;
    let browser = Browser::start().await;

    browser.goto(&stack.url("/paddock/login")).await;
    let button = browser.find("#github-login").await;
    assert_eq!(browser.text(&button).await, "Sign in with GitHub");
    browser.find("form.password #username").await;
    browser
        .screenshot(&screenshots().join("github-login.png"))
        .await;

    browser.click(&button).await;
    let authorize = browser.find("#js-oauth-authorize-btn").await;
    assert!(
        browser.url().await.starts_with(&stack.github.url()),
        "{}",
        browser.url().await
    );
    browser
        .screenshot(&screenshots().join("github-authorize.png"))
        .await;
    browser.click(&authorize).await;

    let landing = browser.wait_for_url(|u| u.ends_with("/paddock/")).await;
    assert!(landing.starts_with(&stack.paddock.url()), "{landing}");
    let username = browser.find("#username").await;
    assert_eq!(browser.text(&username).await, "octocat");
    let source = browser.source().await;
    assert!(source.contains("github_team://5001"), "{source}");
    let download = browser.find("#download-default").await;
    browser
        .screenshot(&screenshots().join("github-landing.png"))
        .await;

    browser.click(&download).await;
    let yaml = browser.downloaded("default.kubeconfig").await;
    assert!(yaml.contains("/k8s/clusters/default"), "{yaml}");
    let kube = Arc::new(Kubeconfig::from_yaml(&yaml));
    let k = kube.clone();
    let whoami = tokio::task::spawn_blocking(move || k.ok(&["auth", "whoami"]))
        .await
        .unwrap();
    assert!(whoami.contains("github_team://5001"), "{whoami}");
    assert!(whoami.contains("github_team://5150"), "{whoami}");
    let k = kube.clone();
    let pods = tokio::task::spawn_blocking(move || k.ok(&["get", "pods"]))
        .await
        .unwrap();
    assert!(pods.contains("web-1"), "{pods}");

    // The emulator saw PKCE and the exchange used the verifier.
    let authorize_request = stack
        .github
        .requests_to("/login/oauth/authorize")
        .into_iter()
        .next()
        .expect("the browser went to GitHub");
    assert_eq!(
        authorize_request.param("code_challenge_method").as_deref(),
        Some("S256")
    );

    // Signing out ends the session: the landing page sends the browser back.
    let logout = browser.find("#logout").await;
    browser.click(&logout).await;
    browser
        .wait_for_url(|u| u.ends_with("/paddock/login"))
        .await;
    browser.goto(&stack.url("/paddock/")).await;
    browser
        .wait_for_url(|u| u.ends_with("/paddock/login"))
        .await;
    stack.fake.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outsider_sees_a_clear_refusal_page_in_chromium() {
    let stack = GithubStack::start(
        env!("CARGO_BIN_EXE_paddock").as_ref(),
        StackOptions::default(),
    )
    .await;
    stack.github.sign_in("outsider");
    let browser = Browser::start().await;
    browser.goto(&stack.url("/paddock/login")).await;
    let button = browser.find("#github-login").await;
    browser.click(&button).await;
    let authorize = browser.find("#js-oauth-authorize-btn").await;
    browser.click(&authorize).await;
    let error = browser.find("#error").await;
    let message = browser.text(&error).await;
    assert!(message.contains("outsider"), "{message}");
    assert!(message.contains("allowed list"), "{message}");
    browser
        .screenshot(&screenshots().join("github-refused.png"))
        .await;
}
