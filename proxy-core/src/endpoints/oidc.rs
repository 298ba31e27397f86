//! OpenID Connect browser flows (`GET /paddock/v1/oidc/<name>/login`,
//! `GET /paddock/v1/oidc/<name>/callback`). The verified ID token logs in
//! through [`Accounts::login`] like any provider credential; the refresh
//! token is then kept by the provider for the background group refresh.

use std::sync::Arc;

use http::{header, request::Parts, HeaderValue, Request, StatusCode};

use super::{
    pages::{cookie_value, refusal, request_host, safe_redirect, see_other, url_params},
    session::start_session,
};
use crate::{
    accounts::{Accounts, LoginCredential},
    authn::{
        oidc::{flow::STATE_COOKIE, flow::STATE_LIFETIME, ExchangeError, OidcProvider},
        AuthnError,
    },
    body::{RequestBody, ResponseBody},
    context::{Login, LoginOutcome},
    error::ProxyError,
    request::ProxyResult,
};

fn provider<'a>(accounts: &'a Accounts, name: &str) -> Result<&'a Arc<OidcProvider>, ProxyError> {
    accounts
        .oidc_providers()
        .iter()
        .find(|p| p.config().name == name)
        .ok_or_else(|| ProxyError::NotFound {
            message: format!("no OpenID Connect provider {name:?} is configured"),
        })
}

fn callback_url(oidc: &OidcProvider, parts: &Parts) -> Result<url::Url, String> {
    if let Some(url) = &oidc.config().redirect_url {
        return Ok(url.clone());
    }
    let host = request_host(parts).ok_or("the request has no usable Host")?;
    url::Url::parse(&format!(
        "https://{host}/paddock/v1/oidc/{}/callback",
        oidc.config().name
    ))
    .map_err(|e| e.to_string())
}

/// The state cookie, scoped to this provider's paths.
fn state_cookie(name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path=/paddock/v1/oidc/{name}/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"
    ))
    .ok()?;
    value.set_sensitive(true);
    Some(value)
}

fn unavailable_page(oidc: &OidcProvider) -> http::Response<ResponseBody> {
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("{} is unavailable", oidc.config().display_name),
        "The identity provider could not be reached. Try again in a moment.",
    )
}

/// `GET /paddock/v1/oidc/<name>/login[?redirect=/path]`: to the provider.
pub(super) async fn login(
    accounts: &Arc<Accounts>,
    name: &str,
    request: Request<RequestBody>,
) -> ProxyResult {
    let oidc = provider(accounts, name)?;
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
    let callback =
        callback_url(oidc, &parts).map_err(|message| ProxyError::BadRequest { message })?;
    let Ok(started) = oidc.start_login(&callback, &redirect).await else {
        return Ok(unavailable_page(oidc));
    };
    let mut response = see_other(started.location.as_str());
    if let Some(cookie) = state_cookie(name, &started.cookie, STATE_LIFETIME.as_secs()) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /paddock/v1/oidc/<name>/callback?code=…&state=…`: checks the
/// state, exchanges the code, logs the user in and sends the browser on.
pub(super) async fn callback(
    accounts: &Arc<Accounts>,
    name: &str,
    request: Request<RequestBody>,
) -> ProxyResult {
    let oidc = provider(accounts, name)?;
    let client = super::session::client_ip(&request);
    let context = crate::context::of(&request);
    let (parts, _) = request.into_parts();
    let cookie = cookie_value(&parts, STATE_COOKIE);
    let query = parts.uri.query().unwrap_or("");
    let mut response = match oidc.finish_login(query, cookie.as_deref()).await {
        Err(error) => {
            tracing::info!(auth.provider = %name, %error, "browser login refused");
            context.set_login(Login::new(
                name,
                "",
                LoginOutcome::Failed {
                    reason: error.to_string(),
                },
            ));
            match error {
                ExchangeError::Unavailable => unavailable_page(oidc),
                ExchangeError::Flow(crate::authn::oidc::FlowError::Denied(_)) => refusal(
                    StatusCode::FORBIDDEN,
                    "Sign-in cancelled",
                    &error.to_string(),
                ),
                ExchangeError::Rejected(_) => refusal(
                    StatusCode::UNAUTHORIZED,
                    "Sign-in failed",
                    &error.to_string(),
                ),
                _ => refusal(
                    StatusCode::BAD_REQUEST,
                    "Sign-in refused",
                    &error.to_string(),
                ),
            }
        }
        Ok((tokens, redirect_to)) => match super::session::recorded_login(
            &context,
            name,
            "",
            accounts
                .login(name, LoginCredential::Token(&tokens.id_token), client)
                .await,
        ) {
            Err(error) => {
                tracing::info!(auth.provider = %name, %error, "browser login failed");
                match error {
                    AuthnError::Denied { reason } => {
                        refusal(StatusCode::FORBIDDEN, "Access denied", &reason)
                    }
                    AuthnError::Unavailable { .. } | AuthnError::Throttled { .. } => {
                        unavailable_page(oidc)
                    }
                    other => refusal(
                        StatusCode::UNAUTHORIZED,
                        "Sign-in failed",
                        &other.to_string(),
                    ),
                }
            }
            Ok(login) => {
                if let Some(refresh) = &tokens.refresh_token {
                    oidc.keep_refresh_token(&login.user.id, refresh).await;
                }
                let redirect = safe_redirect(Some(&redirect_to))
                    .unwrap_or_else(|_| super::pages::LANDING.to_owned());
                let description = format!("{} browser session", oidc.config().display_name);
                let (_, session) = start_session(accounts, &login, description).await?;
                let mut response = see_other(&redirect);
                response.headers_mut().append(header::SET_COOKIE, session);
                response
            }
        },
    };
    // The state is single-use: forget it whatever happened.
    if let Some(clear) = state_cookie(name, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    Ok(response)
}
