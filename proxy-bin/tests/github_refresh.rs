//! The background refresh of GitHub groups through the real `paddock`
//! binary: new memberships reach the session without a new login and
//! without any GitHub call on the request path, GitHub failing keeps the
//! last known groups, a rate limit stops the refresher until its reset, and
//! a revoked GitHub token or a lost required membership ends every session.

use std::time::{Duration, Instant};

use http::Method;
use paddock_tests::github_emulator::{
    stack::{GithubStack, StackOptions},
    Faults, RateLimit,
};
use serde_json::{json, Value};

async fn start() -> (GithubStack, String) {
    let stack = GithubStack::start(
        env!("CARGO_BIN_EXE_paddock").as_ref(),
        StackOptions {
            extra: "    refresh: {maxAgeSeconds: 1, jitterSeconds: 0, intervalSeconds: 1}\n".into(),
            ..StackOptions::default()
        },
    )
    .await;
    let token = stack.github.issue_token("octocat");
    let login = stack
        .client
        .send_json(
            Method::POST,
            &stack.url("/paddock/v1/login"),
            None,
            &json!({"provider": "github", "token": token}),
        )
        .await;
    assert_eq!(login.status(), 200, "{}", login.text());
    let session = login.json()["token"].as_str().unwrap().to_owned();
    (stack, session)
}

async fn me(stack: &GithubStack, session: &str) -> (u16, Value) {
    let me = stack
        .client
        .get(&stack.url("/paddock/v1/me"), Some(session))
        .await;
    let status = me.status();
    (status, me.json())
}

fn has_group(me: &Value, group: &str) -> bool {
    me["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|v| v == group))
}

async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memberships_are_refreshed_in_the_background_and_failures_keep_the_last_groups() {
    let (stack, session) = start().await;
    assert!(has_group(
        &me(&stack, &session).await.1,
        "github_team://5002"
    ));

    // GitHub failing: the last known groups stay, the session keeps working.
    stack.github.set_faults(Faults {
        server_errors: 1000,
        ..Faults::default()
    });
    stack.github.edit(|d| {
        let user = d.users.iter_mut().find(|u| u.login == "octocat").unwrap();
        user.teams.retain(|t| *t != 5002);
    });
    let before = stack.github.requests().len();
    eventually("a failed refresh attempt", || async {
        stack.github.requests()[before..]
            .iter()
            .any(|r| r.status == 502)
    })
    .await;
    let (status, body) = me(&stack, &session).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        has_group(&body, "github_team://5002"),
        "groups were dropped on a 5xx"
    );

    // GitHub back: the membership change arrives without a new login.
    stack.github.set_faults(Faults::default());
    eventually("team 5002 to disappear", || async {
        !has_group(&me(&stack, &session).await.1, "github_team://5002")
    })
    .await;
    let body = me(&stack, &session).await.1;
    assert!(has_group(&body, "github_team://5001"), "{body}");

    // A rate limit: nothing is asked of GitHub until its reset.
    stack.github.set_faults(Faults {
        rate_limit: Some(RateLimit {
            status: 403,
            reset_in_secs: 6,
            retry_after_secs: None,
            times: 1,
        }),
        ..Faults::default()
    });
    let before = stack.github.requests().len();
    eventually("a rate-limited refresh", || async {
        stack.github.requests()[before..]
            .iter()
            .any(|r| r.status == 403)
    })
    .await;
    let limited_at = stack.github.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stack.github.requests().len(),
        limited_at,
        "GitHub was asked again before the rate limit's reset"
    );
    eventually("refreshes to resume after the reset", || async {
        stack.github.requests().len() > limited_at
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_github_token_ends_the_sessions() {
    let (stack, session) = start().await;
    let kubeconfig = stack
        .client
        .get(
            &stack.url("/paddock/v1/kubeconfig?cluster=default"),
            Some(&session),
        )
        .await;
    assert_eq!(kubeconfig.status(), 200);
    stack.github.revoke_tokens("octocat");
    eventually("the session to be revoked", || async {
        me(&stack, &session).await.0 == 401
    })
    .await;
    let tokens = std::fs::read_dir(stack.paddock.data_dir().join("github-tokens"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tokens, 0, "the GitHub token was kept after access was lost");
}

#[tokio::test(flavor = "multi_thread")]
async fn leaving_the_required_org_ends_the_sessions() {
    let (stack, session) = start().await;
    stack.github.edit(|d| {
        let user = d.users.iter_mut().find(|u| u.login == "octocat").unwrap();
        user.orgs.retain(|o| *o != 1001);
    });
    eventually("the session to be revoked", || async {
        me(&stack, &session).await.0 == 401
    })
    .await;
}
