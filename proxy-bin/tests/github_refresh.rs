//! The background refresh of GitHub groups through the real `paddock`
//! binary: new memberships reach the session without a new login and
//! without any GitHub call on the request path, GitHub failing keeps the
//! last known groups, a rate limit stops the refresher until its reset, a
//! revoked GitHub token or a lost required membership ends every session, and
//! a token an earlier version kept in a file moves into the store on upgrade.

use std::time::{Duration, Instant};

use paddock_tests::github_emulator::{
    stack::{GithubStack, StackOptions},
    Faults, RateLimit,
};
use proxy_core::{
    authn::seal::Sealer,
    store::{EmbeddedOptions, EmbeddedStore, Expect, Key, Kind, Object, Op, ProviderToken, Store},
};
use secrecy::SecretString;
use serde_json::Value;

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
    let login = stack.token_login(&token).await;
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
    eventually("the GitHub token to be forgotten", || async {
        kept_tokens(&stack).is_empty()
    })
    .await;
}

/// The provider tokens in the stack's store (the server has it open too).
fn kept_tokens(stack: &GithubStack) -> Vec<ProviderToken> {
    let store =
        EmbeddedStore::open_in_dir(&stack.paddock.data_dir(), EmbeddedOptions::default()).unwrap();
    store
        .load()
        .unwrap()
        .objects
        .into_iter()
        .filter_map(|v| match v.object {
            Object::ProviderToken(t) => Some(t),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_an_earlier_version_kept_in_a_file_moves_into_the_store_and_keeps_refreshing() {
    let (mut stack, session) = start().await;
    let kept = kept_tokens(&stack);
    assert_eq!(kept.len(), 1, "{kept:?}");
    let user_id = kept[0].user_id.clone();
    assert!(!kept[0].sealed.contains("ghp_"), "a token in clear");

    // Make the data directory what an earlier version left: the token in
    // `github-tokens/<user id>`, sealed with the provider's key file, and
    // not in the store.
    stack.paddock.kill();
    let data = stack.paddock.data_dir();
    let key = std::fs::read_to_string(data.join("github-key")).unwrap();
    let token = stack.github.issue_token("octocat");
    let sealed = Sealer::new(&SecretString::from(key.trim().to_owned()))
        .seal("github access token", token.as_bytes());
    std::fs::create_dir_all(data.join("github-tokens")).unwrap();
    std::fs::write(data.join("github-tokens").join(&user_id), sealed).unwrap();
    let store = EmbeddedStore::open_in_dir(&data, EmbeddedOptions::default()).unwrap();
    store
        .commit(vec![Op::delete(
            Key::new(Kind::ProviderToken, format!("github/{user_id}")),
            Expect::Exists,
        )])
        .unwrap();
    drop(store);

    // Upgraded: the file moved into the store, and the refresh reads
    // GitHub with it (a team left arrives without a new login).
    stack.github.edit(|d| {
        let user = d.users.iter_mut().find(|u| u.login == "octocat").unwrap();
        user.teams.retain(|t| *t != 5002);
    });
    stack
        .paddock
        .restart(env!("CARGO_BIN_EXE_paddock").as_ref());
    eventually("team 5002 to disappear", || async {
        !has_group(&me(&stack, &session).await.1, "github_team://5002")
    })
    .await;
    assert!(!data.join("github-tokens").exists());
    let kept = kept_tokens(&stack);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].user_id, user_id);
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
