//! proxy-core's GitHub REST client against the GitHub emulator: every page
//! of 150 teams and 40 organisations, `Link` and page-number pagination,
//! the Enterprise `/api/v3` prefix, failing closed on a failed page, rate
//! limits (short ones waited out, long ones reported and respected), 401.

use std::time::Duration;

use paddock_tests::github_emulator::{Directory, Faults, GithubEmulator, RateLimit};
use proxy_core::authn::github::{external_user, ApiError, GithubApi, GithubEndpoints, HttpClient};
use secrecy::SecretString;

async fn setup(enterprise: bool) -> (GithubEmulator, GithubApi, SecretString) {
    let emulator = GithubEmulator::start(Directory::fixture()).await.unwrap();
    let endpoints = if enterprise {
        GithubEndpoints::enterprise(&emulator.host()).unwrap()
    } else {
        GithubEndpoints::custom(&emulator.url(), &emulator.url()).unwrap()
    };
    let http = HttpClient::new(
        Some(emulator.ca_pem().as_bytes()),
        Duration::from_secs(5),
        Default::default(),
    )
    .unwrap();
    let api = GithubApi::new(http, endpoints.api);
    let token = SecretString::from(emulator.issue_token("octocat"));
    (emulator, api, token)
}

#[tokio::test]
async fn profile_reads_every_page_following_link_headers() {
    let (emulator, api, token) = setup(false).await;
    let profile = api.profile(&token).await.unwrap();
    assert_eq!(profile.user.id, 583231);
    assert_eq!(profile.email.as_deref(), Some("octocat@example.com"));
    assert_eq!(profile.orgs.len(), 40);
    assert_eq!(profile.teams.len(), 150);
    let user = external_user(&profile);
    assert!(user
        .groups
        .iter()
        .any(|g| g.id == "github_team://5150" && g.display_name == "acme:team-150"));
    let teams = emulator.requests_to("/user/teams");
    assert_eq!(teams.len(), 2, "{teams:?}");
    assert!(teams
        .iter()
        .all(|r| r.param("per_page").as_deref() == Some("100")));
    assert_eq!(teams[1].param("page").as_deref(), Some("2"));
    assert!(emulator.requests().iter().all(|r| !r.enterprise_prefix));
}

#[tokio::test]
async fn enterprise_mode_uses_the_api_v3_prefix() {
    let (emulator, api, token) = setup(true).await;
    let profile = api.profile(&token).await.unwrap();
    assert_eq!(profile.teams.len(), 150);
    let requests = emulator.requests();
    assert!(!requests.is_empty());
    assert!(requests.iter().all(|r| r.enterprise_prefix), "{requests:?}");
    // The Link headers kept the prefix, so the second page had it too.
    assert_eq!(emulator.requests_to("/user/teams").len(), 2);
}

#[tokio::test]
async fn without_link_headers_pages_are_asked_by_number_until_an_empty_one() {
    let (emulator, api, token) = setup(false).await;
    emulator.edit(|d| {
        let user = d.users.iter_mut().find(|u| u.login == "octocat").unwrap();
        for n in 151..=200u64 {
            user.teams.push(5000 + n);
        }
        let extra: Vec<_> = (151..=200u64)
            .map(|n| paddock_tests::github_emulator::Team {
                id: 5000 + n,
                slug: format!("team-{n:03}"),
                name: format!("Team {n}"),
                org: 1001,
            })
            .collect();
        d.teams.extend(extra);
    });
    emulator.set_faults(Faults {
        omit_link: true,
        ..Faults::default()
    });
    let (_, teams) = api.groups(&token).await.unwrap();
    assert_eq!(teams.len(), 200);
    let pages: Vec<_> = emulator
        .requests_to("/user/teams")
        .iter()
        .map(|r| r.param("page"))
        .collect();
    assert_eq!(pages, vec![None, Some("2".into()), Some("3".into())]);
}

#[tokio::test]
async fn a_failed_page_fails_the_whole_list() {
    let (emulator, api, token) = setup(false).await;
    emulator.set_faults(Faults {
        fail_page: Some(("/user/teams".into(), 2)),
        ..Faults::default()
    });
    let error = api.profile(&token).await.unwrap_err();
    assert!(matches!(error, ApiError::Unavailable { .. }), "{error:?}");
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn a_short_rate_limit_is_waited_out() {
    let (emulator, api, token) = setup(false).await;
    emulator.set_faults(Faults {
        rate_limit: Some(RateLimit {
            status: 429,
            reset_in_secs: 1,
            retry_after_secs: Some(1),
            times: 1,
        }),
        ..Faults::default()
    });
    let profile = api.profile(&token).await.unwrap();
    assert_eq!(profile.teams.len(), 150);
    assert_eq!(emulator.requests_to("/user")[0].status, 429);
}

#[tokio::test]
async fn an_exhausted_rate_limit_is_reported_and_respected_until_reset() {
    let (emulator, api, token) = setup(false).await;
    emulator.set_faults(Faults {
        rate_limit: Some(RateLimit {
            status: 403,
            reset_in_secs: 600,
            retry_after_secs: None,
            times: 100,
        }),
        ..Faults::default()
    });
    match api.profile(&token).await {
        Err(ApiError::RateLimited { retry_after_secs }) => {
            assert!(
                (590..=600).contains(&retry_after_secs),
                "{retry_after_secs}"
            );
        }
        other => panic!("expected a rate limit, got {other:?}"),
    }
    let asked = emulator.requests().len();
    assert!(matches!(
        api.user(&token).await,
        Err(ApiError::RateLimited { .. })
    ));
    assert_eq!(
        emulator.requests().len(),
        asked,
        "GitHub was asked again before the reset"
    );
}

#[tokio::test]
async fn revoked_tokens_are_unauthorized_for_good() {
    let (emulator, api, token) = setup(false).await;
    emulator.revoke_tokens("octocat");
    let error = api.profile(&token).await.unwrap_err();
    assert!(matches!(error, ApiError::Unauthorized), "{error:?}");
    assert!(error.is_permanent());
}

#[tokio::test]
async fn github_down_is_unavailable() {
    let (emulator, api, token) = setup(false).await;
    emulator.set_faults(Faults {
        server_errors: 1,
        ..Faults::default()
    });
    let error = api.profile(&token).await.unwrap_err();
    assert!(matches!(error, ApiError::Unavailable { .. }), "{error:?}");
}
