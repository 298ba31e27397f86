//! GitHub's browser flow (`GET /paddock/v1/github/login`, `GET
//! /paddock/v1/github/callback`). The token it ends with logs in through
//! [`Accounts::login`], like `POST /paddock/v1/login` with
//! `{"provider":"github","token":…}`.

use std::sync::Arc;

use http::{header, request::Parts, HeaderValue, Request, StatusCode};

use super::{
    pages::{cookie_value, refusal, request_host, safe_redirect, see_other, url_params},
    session::start_session,
};
use crate::{
    accounts::{Accounts, LoginCredential},
    authn::{
        github::{oauth::STATE_COOKIE, GithubProvider, OAuthError, PROVIDER},
        AuthnError,
    },
    body::{RequestBody, ResponseBody},
    context::{Login, LoginOutcome},
    error::ProxyError,
    request::ProxyResult,
};

/// Where GitHub sends the browser back to.
const CALLBACK_PATH: &str = "/paddock/v1/github/callback";
/// The state cookie's path: only the callback needs it.
const COOKIE_PATH: &str = "/paddock/v1/github/";

fn provider(accounts: &Accounts) -> Result<&Arc<GithubProvider>, ProxyError> {
    accounts.github().ok_or_else(|| ProxyError::NotFound {
        message: "GitHub login is not configured".to_owned(),
    })
}

fn callback_url(github: &GithubProvider, parts: &Parts) -> Result<url::Url, String> {
    if let Some(url) = &github.config().redirect_url {
        return Ok(url.clone());
    }
    let host = request_host(parts).ok_or("the request has no usable Host")?;
    url::Url::parse(&format!("https://{host}{CALLBACK_PATH}")).map_err(|e| e.to_string())
}

fn state_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path={COOKIE_PATH}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// `GET /paddock/v1/github/login[?redirect=/path]`: to GitHub's authorize page.
pub(super) async fn login(accounts: &Arc<Accounts>, request: Request<RequestBody>) -> ProxyResult {
    let github = provider(accounts)?;
    let (parts, _) = request.into_parts();
    let params = url_params(parts.uri.query().unwrap_or(""));
    let redirect = params
        .iter()
        .find(|(k, _)| k == "redirect")
        .map(|(_, v)| v.as_str());
    let redirect = match safe_redirect(redirect) {
        Ok(r) => r,
        Err(message) => {
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "Invalid redirect",
                &message,
            ))
        }
    };
    let callback = match callback_url(github, &parts) {
        Ok(c) => c,
        Err(message) => return Err(ProxyError::BadRequest { message }),
    };
    let start = github.flow().start(&callback, &redirect);
    let mut response = see_other(start.location.as_str());
    if let Some(cookie) = state_cookie(
        &start.cookie,
        crate::authn::github::oauth::STATE_LIFETIME.as_secs(),
    ) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

fn oauth_refusal(error: &OAuthError) -> http::Response<ResponseBody> {
    let (status, title) = match error {
        OAuthError::Denied(_) => (StatusCode::FORBIDDEN, "GitHub sign-in cancelled"),
        OAuthError::TokenRejected(_) => (StatusCode::UNAUTHORIZED, "GitHub sign-in failed"),
        OAuthError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "GitHub is unavailable"),
        _ => (StatusCode::BAD_REQUEST, "Sign-in refused"),
    };
    refusal(status, title, &error.to_string())
}

/// `GET /paddock/v1/github/callback?code=…&state=…`: checks the state,
/// exchanges the code, logs the user in and sends the browser on.
pub(super) async fn callback(
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
) -> ProxyResult {
    let github = provider(accounts)?;
    let client = super::session::client_ip(&request);
    let context = crate::context::of(&request);
    let failed = |reason: String| {
        context.set_login(Login::new(PROVIDER, "", LoginOutcome::Failed { reason }));
    };
    let (parts, _) = request.into_parts();
    let cookie = cookie_value(&parts, STATE_COOKIE);
    let query = parts.uri.query().unwrap_or("");
    let mut response = match github.flow().finish(query, cookie.as_deref()).await {
        Err(error) => {
            tracing::info!(auth.provider = "github", %error, "browser login refused");
            failed(error.to_string());
            oauth_refusal(&error)
        }
        Ok(exchanged) => match super::session::recorded_login(
            &context,
            PROVIDER,
            "",
            accounts
                .login(
                    PROVIDER,
                    LoginCredential::Token(&exchanged.access_token),
                    client,
                )
                .await,
        ) {
            Err(error) => {
                tracing::info!(auth.provider = "github", %error, "browser login failed");
                let (status, title, message) = match error {
                    AuthnError::Denied { reason } => {
                        (StatusCode::FORBIDDEN, "Access denied", reason)
                    }
                    AuthnError::Unavailable { .. } | AuthnError::Throttled { .. } => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "GitHub is unavailable",
                        "GitHub could not be reached. Try again in a moment.".to_owned(),
                    ),
                    other => (
                        StatusCode::UNAUTHORIZED,
                        "GitHub sign-in failed",
                        other.to_string(),
                    ),
                };
                refusal(status, title, &message)
            }
            Ok(login) => {
                let redirect = safe_redirect(Some(&exchanged.redirect_to))
                    .unwrap_or_else(|_| super::pages::LANDING.to_owned());
                let (_, session) =
                    start_session(accounts, &login, "GitHub browser session".to_owned()).await?;
                let mut response = see_other(&redirect);
                response.headers_mut().append(header::SET_COOKIE, session);
                response
            }
        },
    };
    // The state is single-use: forget it whatever happened.
    if let Some(clear) = state_cookie("", 0) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}
