//! Login, logout, `me` and the caller's own password change.

use std::{net::IpAddr, sync::Arc, time::Instant};

use http::{header, HeaderValue, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{blocking, caller, json, paddock_token, read_json, Endpoints};
use crate::{
    accounts::{
        local::{ChangePasswordError, UserError},
        tokens::{IssueError, IssuedToken, NewToken},
        Accounts, LoggedIn, LoginCredential,
    },
    authn::{external::CredentialKind, AuthnAttempt, AuthnError, AuthnOutcome, SESSION_COOKIE},
    body::RequestBody,
    context::{ConnectionInfo, Login, LoginOutcome, RequestContext},
    error::ProxyError,
    request::ProxyResult,
    store::{TokenKind, TokenRecord, User},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoginRequest {
    #[serde(default = "local")]
    provider: String,
    #[serde(default)]
    username: String,
    /// For password providers.
    #[serde(default)]
    password: Option<SecretString>,
    /// For token providers (`github`): the provider's access token.
    #[serde(default)]
    token: Option<SecretString>,
    /// Optional note shown in token listings.
    #[serde(default)]
    description: String,
}

fn local() -> String {
    // The default provider.
    crate::accounts::local::PROVIDER.to_owned()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PasswordRequest {
    current_password: SecretString,
    new_password: SecretString,
}

/// The caller's address, for throttling; loopback when unknown (in-process use).
pub(super) fn client_ip<B>(request: &Request<B>) -> IpAddr {
    request
        .extensions()
        .get::<Arc<ConnectionInfo>>()
        .and_then(|c| c.remote_addr)
        .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip())
}

/// The `Set-Cookie` that ends a browser session.
pub(super) const CLEAR_SESSION_COOKIE: &str =
    "paddock_session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Lax";

pub(super) fn user_json(user: &User) -> serde_json::Value {
    serde_json::json!({
        "id": user.id,
        "username": user.username,
        "displayName": user.display_name,
        "enabled": user.enabled,
        "mustChangePassword": user.must_change_password,
        "principalIds": user.principal_ids,
        "createdAt": user.created_at.to_string(),
    })
}

pub(super) fn token_json(token: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "id": token.id,
        "userId": token.user_id,
        "kind": token.kind.as_str(),
        "cluster": token.cluster,
        "provider": token.provider,
        "description": token.description,
        "createdAt": token.created_at.to_string(),
        "expiresAt": token.expires_at.map(|t| t.to_string()),
        "enabled": token.enabled,
    })
}

pub(super) fn issue_error(error: IssueError) -> ProxyError {
    match error {
        IssueError::UnknownUser(_) | IssueError::UserDisabled(_) => ProxyError::InvalidCredentials,
        IssueError::Store(e) => ProxyError::from(e),
    }
}

pub(super) fn user_error(error: UserError) -> ProxyError {
    match error {
        UserError::NotFound(_) => ProxyError::NotFound {
            message: error.to_string(),
        },
        UserError::Exists(_) | UserError::InvalidUsername(_) | UserError::Password(_) => {
            ProxyError::BadRequest {
                message: error.to_string(),
            }
        }
        UserError::Store(e) => ProxyError::from(e),
    }
}

/// `POST /paddock/v1/login`: `{"provider":"local","username":…,"password":…}`
/// (or `{"provider":"github","token":…}`) → `{"token":…,"expiresAt":…,"user":{…}}`
/// and the session cookie.
pub(super) async fn login(accounts: &Arc<Accounts>, request: Request<RequestBody>) -> ProxyResult {
    let client = client_ip(&request);
    let context = crate::context::of(&request);
    let body: LoginRequest = read_json(request.into_body()).await?;
    let password = body.password.unwrap_or_else(|| SecretString::from(""));
    let token = body.token.unwrap_or_else(|| SecretString::from(""));
    let takes_token = accounts
        .provider(&body.provider)
        .map(|p| p.credential_kind() == CredentialKind::Token);
    let credential = match (takes_token, token.expose_secret().is_empty()) {
        // An empty token is refused like a wrong one: 401.
        (Some(true), _) => LoginCredential::Token(&token),
        (_, false) => {
            return Err(ProxyError::BadRequest {
                message: format!("token: provider {:?} takes a password", body.provider),
            })
        }
        (takes_token, true) => {
            if takes_token.is_none() && body.provider != crate::accounts::local::PROVIDER {
                let providers = accounts.provider_names();
                return Err(ProxyError::BadRequest {
                    message: format!(
                        "provider: unknown provider {:?} (configured: {})",
                        body.provider,
                        providers.join(", ")
                    ),
                });
            }
            if password.expose_secret().is_empty() {
                return Err(ProxyError::BadRequest {
                    message: "password: must not be empty".to_owned(),
                });
            }
            LoginCredential::Password {
                username: &body.username,
                password: &password,
            }
        }
    };
    let result = accounts.login(&body.provider, credential, client).await;
    let login = match recorded_login(&context, &body.provider, &body.username, result) {
        Ok(login) => login,
        Err(error) => {
            tracing::info!(auth.provider = %body.provider, auth.username = %body.username, %error, "login failed");
            return Err(error.into());
        }
    };
    session_response(accounts, login, body.description).await
}

/// Records a login's outcome in the request's context, for the plugins:
/// the [`Login`] (who tried, with which provider, how it went: the audit
/// log) and its [`AuthnAttempt`] (metrics). Every login endpoint passes its
/// result through here.
pub(super) fn recorded_login(
    context: &RequestContext,
    provider: &str,
    username: &str,
    result: Result<LoggedIn, AuthnError>,
) -> Result<LoggedIn, AuthnError> {
    context.set_authn_attempt(AuthnAttempt {
        provider: Some(provider.to_owned()),
        outcome: match &result {
            Ok(_) => AuthnOutcome::Success,
            Err(error) => AuthnOutcome::of(error),
        },
    });
    let outcome = match &result {
        Ok(login) => LoginOutcome::Succeeded {
            user: login.user.id.clone(),
        },
        Err(error) => LoginOutcome::Failed {
            reason: error.to_string(),
        },
    };
    let username = match &result {
        // A token login learns the name from the provider.
        Ok(login) if username.is_empty() => login.user.username.as_str(),
        _ => username,
    };
    context.set_login(Login::new(provider, username, outcome));
    result
}

/// Issues a session for `login` and answers with it as JSON and cookie.
async fn session_response(
    accounts: &Arc<Accounts>,
    login: LoggedIn,
    description: String,
) -> ProxyResult {
    let (issued, cookie) = start_session(accounts, &login, description).await?;
    let mut response = json(
        StatusCode::OK,
        &serde_json::json!({
            "token": issued.token.expose_secret(),
            "expiresAt": issued.record.expires_at.map(|t| t.to_string()),
            "mustChangePassword": login.must_change_password,
            "user": user_json(&login.user),
        }),
    );
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Issues a session token for a logged-in user, and its `paddock_session`
/// cookie (HttpOnly, Secure, SameSite=Lax).
pub(super) async fn start_session(
    accounts: &Arc<Accounts>,
    login: &LoggedIn,
    description: String,
) -> Result<(IssuedToken, HeaderValue), ProxyError> {
    let user = &login.user;
    let request = NewToken::new(user.id.clone(), TokenKind::Session)
        .provider(login.provider.clone())
        .description(description);
    let issuer = accounts.clone();
    let issued = blocking(move || issuer.issue(request))
        .await?
        .map_err(issue_error)?;
    tracing::info!(auth.provider = %login.provider, auth.user = %user.id, auth.username = %user.username, "login");
    let max_age = issued
        .record
        .expires_at
        .map_or(0, |at| at.seconds_since(crate::store::Timestamp::now()));
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax",
        issued.token.expose_secret()
    );
    let mut cookie = HeaderValue::from_str(&cookie).map_err(|_| ProxyError::Internal {
        message: "the session token is not a valid cookie value".to_owned(),
    })?;
    cookie.set_sensitive(true);
    Ok((issued, cookie))
}

/// `POST /paddock/v1/logout`: revokes the Paddock token the caller presented
/// and clears the cookie.
pub(super) async fn logout(accounts: &Arc<Accounts>, request: Request<RequestBody>) -> ProxyResult {
    let caller = caller(&request)?;
    let id = caller
        .token_id
        .clone()
        .ok_or_else(|| ProxyError::BadRequest {
            message: "logout ends a Paddock session; this credential is not one".to_owned(),
        })?;
    let accounts = accounts.clone();
    blocking(move || accounts.revoke(&id))
        .await?
        .map_err(ProxyError::from)?;
    tracing::info!(auth.user = %caller.user, "logout");
    let mut response = json(StatusCode::OK, &serde_json::json!({"status": "logged out"}));
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(CLEAR_SESSION_COOKIE),
    );
    Ok(response)
}

/// `GET /paddock/v1/me`: the caller's identity, and their user record and
/// token when they have them.
pub(super) async fn me(endpoints: &Endpoints, request: Request<RequestBody>) -> ProxyResult {
    let identity = caller(&request)?;
    let (user, token) = match endpoints.accounts() {
        Ok(accounts) => accounts.view().with_snapshot(|s| {
            let user = s.user(&identity.user).map(|u| user_json(&u.value));
            let token = identity
                .token_id
                .as_deref()
                .and_then(|id| s.token(id))
                .map(|t| token_json(&t.value));
            (user, token)
        }),
        Err(_) => (None, None),
    };
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "user": identity.user,
            "username": identity.username,
            "groups": identity.groups,
            "extra": identity.extra,
            "provider": identity.provider,
            "account": user,
            "token": token,
        }),
    ))
}

/// `POST /paddock/v1/password`: `{"currentPassword":…,"newPassword":…}`
/// changes the caller's own local password (the bootstrap admin's required
/// first step).
pub(super) async fn change_password(
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
) -> ProxyResult {
    let client = client_ip(&request);
    let caller = caller(&request)?;
    let session = paddock_token(&caller, "changing a password")?;
    let body: PasswordRequest = read_json(request.into_body()).await?;
    accounts
        .local()
        .change_password(
            &caller.user,
            &body.current_password,
            body.new_password,
            accounts.password_policy(),
            Some(session),
            client,
            Instant::now(),
        )
        .await
        .map_err(|e| match e {
            ChangePasswordError::Login(e) => crate::authn::AuthnError::from(e).into(),
            ChangePasswordError::User(UserError::Password(e)) => ProxyError::BadRequest {
                message: format!("newPassword: {e}"),
            },
            ChangePasswordError::User(e) => user_error(e),
        })?;
    tracing::info!(auth.user = %caller.user, "password changed");
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "password changed"}),
    ))
}
