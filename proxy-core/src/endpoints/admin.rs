//! The admin API: users and tokens, authorized by the policy's global roles.

use std::sync::Arc;

use http::{Method, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{
    blocking, caller, json, paddock_token, read_json,
    session::{issue_error, token_json, user_error, user_json},
    Endpoints,
};
use crate::{
    accounts::{local, lookup, tokens, tokens::NewToken, Accounts},
    authn::Identity,
    body::RequestBody,
    context,
    error::ProxyError,
    request::ProxyResult,
    store::{Timestamp, TokenKind},
};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewUser {
    username: String,
    password: SecretString,
    #[serde(default)]
    display_name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResetPassword {
    password: SecretString,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct NewApiToken {
    #[serde(default = "api_kind")]
    kind: String,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    description: String,
}

fn api_kind() -> String {
    "api".to_owned()
}

pub(super) async fn handle(
    endpoints: &Endpoints,
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
    path: &[&str],
) -> ProxyResult {
    let caller = caller(&request)?;
    let context = context::of(&request);
    let (parts, body) = request.into_parts();
    let method = parts.method.clone();
    let view = accounts.view().clone();
    match (&method, path) {
        (&Method::GET, ["users"]) => {
            endpoints.authorize_admin(&context, &caller, "list", "users", None)?;
            let users: Vec<_> = local::list_users(&view).iter().map(user_json).collect();
            Ok(json(StatusCode::OK, &serde_json::json!({ "items": users })))
        }
        (&Method::POST, ["users"]) => {
            endpoints.authorize_admin(&context, &caller, "create", "users", None)?;
            let new: NewUser = read_json(body).await?;
            let accounts = accounts.clone();
            let user = blocking(move || {
                local::add_user(
                    accounts.view(),
                    accounts.password_hasher(),
                    accounts.password_policy(),
                    &new.username,
                    &new.display_name,
                    &new.password,
                    Timestamp::now(),
                )
            })
            .await?
            .map_err(user_error)?;
            tracing::info!(auth.user = %caller.user, target.user = %user.id, "user created");
            Ok(json(StatusCode::CREATED, &user_json(&user)))
        }
        (&Method::GET, ["users", id]) => {
            endpoints.authorize_admin(&context, &caller, "get", "users", Some(id))?;
            let user = named_user(accounts, id)?;
            Ok(json(StatusCode::OK, &user_json(&user)))
        }
        (&Method::DELETE, ["users", id]) => {
            endpoints.authorize_admin(&context, &caller, "delete", "users", Some(id))?;
            let target = named_user(accounts, id)?.id;
            let deleted = blocking(move || local::delete_user(&view, &target))
                .await?
                .map_err(user_error)?;
            tracing::info!(auth.user = %caller.user, target.user = %deleted.id, "user deleted");
            Ok(json(StatusCode::OK, &user_json(&deleted)))
        }
        (&Method::POST, ["users", id, action @ ("enable" | "disable")]) => {
            endpoints.authorize_admin(&context, &caller, "update", "users", Some(id))?;
            let enabled = *action == "enable";
            let target = named_user(accounts, id)?.id;
            let user = blocking(move || local::set_enabled(&view, &target, enabled))
                .await?
                .map_err(user_error)?;
            tracing::info!(auth.user = %caller.user, target.user = %user.id, enabled, "user updated");
            Ok(json(StatusCode::OK, &user_json(&user)))
        }
        (&Method::POST, ["users", id, "password"]) => {
            endpoints.authorize_admin(&context, &caller, "update", "users", Some(id))?;
            let reset: ResetPassword = read_json(body).await?;
            let target = named_user(accounts, id)?.id;
            let accounts = accounts.clone();
            blocking(move || {
                local::set_password(
                    accounts.view(),
                    accounts.password_hasher(),
                    accounts.password_policy(),
                    &target,
                    &reset.password,
                    None,
                    Timestamp::now(),
                )
            })
            .await?
            .map_err(|e| match e {
                local::UserError::Password(e) => ProxyError::BadRequest {
                    message: format!("password: {e}"),
                },
                other => user_error(other),
            })?;
            tracing::info!(auth.user = %caller.user, target.user = %id, "password reset");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"status": "password reset"}),
            ))
        }
        (&Method::POST, ["users", id, "refresh"]) => {
            endpoints.authorize_admin(&context, &caller, "update", "users", Some(id))?;
            refresh_user(accounts, id).await
        }
        (&Method::GET, ["principals"]) => {
            endpoints.authorize_admin(&context, &caller, "list", "principals", None)?;
            search_principals(accounts, parts.uri.query().unwrap_or("")).await
        }
        (&Method::GET, ["tokens"]) => {
            let all = parts.uri.query().is_some_and(|q| {
                policy::parse_query(q)
                    .iter()
                    .any(|(k, v)| k == "all" && v == "true")
            });
            let owner = if all {
                endpoints.authorize_admin(&context, &caller, "list", "tokens", None)?;
                None
            } else {
                Some(caller.user.as_str())
            };
            let items: Vec<_> = tokens::list(&view, owner).iter().map(token_json).collect();
            Ok(json(StatusCode::OK, &serde_json::json!({ "items": items })))
        }
        (&Method::POST, ["tokens"]) => create_token(endpoints, accounts, &caller, body).await,
        (&Method::DELETE, ["tokens", id]) => {
            let owner = view.with_snapshot(|s| s.token(id).map(|t| t.value.user_id.clone()));
            let Some(owner) = owner else {
                return Err(ProxyError::NotFound {
                    message: format!("no token {id}"),
                });
            };
            if owner != caller.user {
                endpoints.authorize_admin(&context, &caller, "delete", "tokens", Some(id))?;
            }
            let target = (*id).to_owned();
            let accounts = accounts.clone();
            blocking(move || accounts.revoke(&target))
                .await?
                .map_err(ProxyError::from)?;
            tracing::info!(auth.user = %caller.user, token.id = %id, "token revoked");
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"status": "revoked", "id": id}),
            ))
        }
        (_, ["clusters", ..]) => {
            let call = super::clusters::Call {
                endpoints,
                accounts,
                caller: &caller,
                context: &context,
            };
            call.handle(&parts, body, path).await
        }
        (_, ["bindings" | "projects", ..]) => {
            let call = super::bindings::Call {
                endpoints,
                accounts,
                caller: &caller,
                context: &context,
            };
            call.handle(&parts, body, path).await
        }
        _ => Err(ProxyError::NotFound {
            message: format!("{} {} is not a Paddock endpoint", method, parts.uri.path()),
        }),
    }
}

/// The user a path segment names, in any spelling the resolver accepts
/// (`corp%2Fjdoe` for `corp/jdoe`); 404 when none.
fn named_user(accounts: &Accounts, segment: &str) -> Result<crate::store::User, ProxyError> {
    let who = percent_encoding::percent_decode_str(segment).decode_utf8_lossy();
    accounts
        .view()
        .with_snapshot(|s| lookup::resolve_user(s, &who))
        .map_err(|e| ProxyError::NotFound {
            message: e.to_string(),
        })
}

/// `POST /paddock/v1/tokens`: an API (or kubeconfig) token for the caller.
async fn create_token(
    endpoints: &Endpoints,
    accounts: &Arc<Accounts>,
    caller: &Identity,
    body: RequestBody,
) -> ProxyResult {
    paddock_token(caller, "issuing tokens")?;
    let new: NewApiToken = read_json(body).await?;
    let kind = match new.kind.as_str() {
        "api" => TokenKind::Api,
        "kubeconfig" => TokenKind::Kubeconfig,
        other => {
            return Err(ProxyError::BadRequest {
                message: format!("kind: {other:?} is not one of api, kubeconfig"),
            })
        }
    };
    let mut request = NewToken::new(caller.user.clone(), kind)
        .provider(caller.provider.clone())
        .description(new.description);
    if let Some(secs) = new.ttl_seconds {
        request = request.ttl(std::time::Duration::from_secs(secs));
    }
    if let Some(cluster) = new.cluster {
        endpoints
            .router()
            .resolve(Some(&cluster))
            .map_err(|_| ProxyError::BadRequest {
                message: format!("cluster: no cluster {cluster:?}"),
            })?;
        request = request.cluster(cluster);
    }
    let accounts = accounts.clone();
    let issued = blocking(move || accounts.issue(request))
        .await?
        .map_err(issue_error)?;
    tracing::info!(auth.user = %caller.user, token.id = %issued.record.id, kind = %issued.record.kind, "token created");
    let mut body = token_json(&issued.record);
    body["token"] = issued.token.expose_secret().into();
    Ok(json(StatusCode::CREATED, &body))
}

/// `POST /paddock/v1/users/<id>/refresh`: reads the user's groups from every
/// provider that knows them, now.
async fn refresh_user(accounts: &Arc<Accounts>, name_or_id: &str) -> ProxyResult {
    let user = named_user(accounts, name_or_id)?;
    let outcomes: serde_json::Map<String, serde_json::Value> = accounts
        .refresh_user(&user.id)
        .await
        .into_iter()
        .map(|(provider, outcome)| (provider, format!("{outcome:?}").into()))
        .collect();
    if outcomes.is_empty() {
        return Err(ProxyError::BadRequest {
            message: format!(
                "user {} comes from no provider that can be refreshed",
                user.username
            ),
        });
    }
    let groups = accounts.view().with_snapshot(|s| {
        s.user_attributes(&user.id)
            .map(|a| a.value.groups.clone())
            .unwrap_or_default()
    });
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "user": user_json(&user), "refresh": outcomes, "groups": groups }),
    ))
}

/// `GET /paddock/v1/principals?provider=…&q=…[&limit=…]`: users and groups
/// of a directory whose names contain `q` (escaped, capped), for admins
/// writing bindings.
async fn search_principals(accounts: &Arc<Accounts>, query: &str) -> ProxyResult {
    let params = policy::parse_query(query);
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let provider = param("provider").ok_or_else(|| ProxyError::BadRequest {
        message: "provider: required".to_owned(),
    })?;
    let q = param("q").unwrap_or("");
    let limit = match param("limit") {
        Some(l) => l.parse::<usize>().map_err(|_| ProxyError::BadRequest {
            message: "limit: not a number".to_owned(),
        })?,
        None => 50,
    };
    let found = match accounts.provider(provider) {
        Some(provider) => provider.search(q, limit).await.map_err(ProxyError::from)?,
        None => None,
    };
    let Some(found) = found else {
        return Err(ProxyError::BadRequest {
            message: format!("provider: {provider:?} is not a directory that can be searched"),
        });
    };
    let items: Vec<_> = found
        .iter()
        .map(|p| serde_json::json!({ "id": p.id, "displayName": p.display_name }))
        .collect();
    Ok(json(StatusCode::OK, &serde_json::json!({ "items": items })))
}
