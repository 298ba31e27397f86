//! The browser pages, rendered on the server (no front-end build step, no
//! script): the login page listing the configured providers
//! (`GET /paddock/login`, its password form posting to `POST /paddock/login`),
//! the landing page offering a kubeconfig for each cluster the user may
//! access (`GET /paddock/`), and `POST /paddock/logout`.
//!
//! Every redirect target is checked by [`safe_redirect`]; every form POST
//! must come from Paddock's own origin.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, request::Parts, HeaderValue, Request, Response, StatusCode};
use secrecy::SecretString;

use super::{session::start_session, Endpoints, MAX_BODY};
use crate::{
    accounts::Accounts,
    authz::{AuthzRequest, RequestAttributes},
    body::{RequestBody, ResponseBody},
    error::ProxyError,
    request::{ProxyResult, RequestHost},
};

/// Where the browser goes after login unless told otherwise.
pub(crate) const LANDING: &str = "/paddock/";

/// Checks a post-login redirect target: one of Paddock's own pages
/// (`/paddock/…`) only. Not a cluster path: what the API server's service
/// and pod proxies serve is anyone's content, and the browser would land on
/// it straight after signing in. Refused: anything not starting with
/// exactly one `/` (so no scheme, no `//host`), backslashes (browsers read
/// them as `/`), control characters and spaces (browsers drop tabs and
/// newlines, turning `/\t/evil` into `//evil`), `.` and `..` segments
/// (browsers resolve `/paddock/../k8s` to `/k8s`), and the same tricks
/// percent-encoded.
pub(crate) fn safe_redirect(target: Option<&str>) -> Result<String, String> {
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Ok(LANDING.to_owned());
    };
    let refuse = || Err(format!("{target:?} is not a path on this site"));
    if target.len() > 2048 {
        return refuse();
    }
    let decoded = percent_encoding::percent_decode_str(target)
        .decode_utf8()
        .map_err(|_| format!("{target:?} is not a path on this site"))?;
    for candidate in [target, decoded.as_ref()] {
        let bytes = candidate.as_bytes();
        let path = candidate.split(['?', '#']).next().unwrap_or_default();
        if bytes.first() != Some(&b'/')
            || matches!(bytes.get(1), Some(b'/' | b'\\'))
            || candidate
                .chars()
                .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
            || !(path == "/paddock" || path.starts_with(LANDING))
            || path.split('/').any(|segment| matches!(segment, "." | ".."))
        {
            return refuse();
        }
    }
    Ok(target.to_owned())
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value of cookie `name`, if the request carries a non-empty one.
#[cfg(any(feature = "github", feature = "oidc"))]
pub(crate) fn cookie_value(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

fn encode_component(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6f8;color:#1f2328}
main{max-width:30rem;margin:4rem auto;padding:2rem;background:#fff;border:1px solid #d0d7de;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.06)}
main.wide{max-width:46rem}
h1{font-size:1.5rem;margin:0 0 1.25rem}
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
.brand{font-weight:700;letter-spacing:.02em;color:#0b6e4f}
.error{background:#ffebe9;border:1px solid #ff8182;color:#82071e;padding:.75rem 1rem;border-radius:8px;margin-bottom:1rem}
.note{color:#59636e;font-size:.9rem}
a.button,button{display:block;width:100%;padding:.7rem 1rem;border-radius:8px;border:1px solid #1f2328;font:inherit;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}
a.github{background:#24292f;color:#fff;border-color:#24292f}
a.github:hover{background:#32383f}
a.oidc{margin-bottom:.5rem;background:#fff;color:#1f2328}
a.oidc:hover{background:#f4f6f8}
button.primary{background:#0b6e4f;color:#fff;border-color:#0b6e4f}
button.secondary{background:#fff;color:#1f2328;width:auto;display:inline-block}
label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input,select{width:100%;padding:.55rem .7rem;border:1px solid #d0d7de;border-radius:6px;font:inherit}
form.password{margin-top:1rem}
form.password button{margin-top:1.25rem}
.divider{display:flex;align-items:center;gap:.75rem;color:#59636e;margin:1.5rem 0 .5rem;font-size:.9rem}
.divider:before,.divider:after{content:"";flex:1;border-top:1px solid #d0d7de}
table{width:100%;border-collapse:collapse}
td,th{padding:.5rem;border-bottom:1px solid #eaeef2;text-align:left}
td.action{text-align:right}
a.download{display:inline-block;padding:.35rem .8rem;border-radius:6px;background:#0b6e4f;color:#fff;text-decoration:none;font-weight:600}
code{background:#f6f8fa;padding:.1rem .3rem;border-radius:4px;font-size:.9em}
ul.groups{max-height:12rem;overflow:auto;padding-left:1.25rem;font-size:.9rem}
header.top{display:flex;justify-content:space-between;align-items:center}
"#;

/// An HTML page with Paddock's style and protective headers.
pub(crate) fn page(
    status: StatusCode,
    title: &str,
    wide: bool,
    body: &str,
) -> Response<ResponseBody> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Paddock</title><style>{STYLE}</style></head>\
         <body><main{}><div class=\"brand\">PADDOCK</div>{body}</main></body></html>",
        escape(title),
        if wide { " class=\"wide\"" } else { "" },
    );
    let mut response = Response::new(ResponseBody::full(Bytes::from(html)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https:; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        // Not `no-referrer`: with it browsers send `Origin: null` on the
        // pages' own form posts, which the same-origin check refuses.
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// A page saying why something was refused, with a way back to the login.
pub(crate) fn refusal(status: StatusCode, title: &str, message: &str) -> Response<ResponseBody> {
    page(
        status,
        title,
        false,
        &format!(
            "<h1>{}</h1><div class=\"error\" role=\"alert\" id=\"error\">{}</div>\
             <p><a href=\"/paddock/login\">Back to the sign-in page</a></p>",
            escape(title),
            escape(message)
        ),
    )
}

/// A `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn query_param(parts: &Parts, name: &str) -> Option<String> {
    url_params(parts.uri.query().unwrap_or(""))
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `application/x-www-form-urlencoded` pairs.
pub(crate) fn url_params(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8_lossy()
                    .into_owned()
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// The host the browser addressed, if it is a plain host\[:port\].
pub(crate) fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .extensions
        .get::<RequestHost>()
        .map(|h| h.0.as_str())
        .filter(|host| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
}

/// Whether a form POST came from this origin: `Sec-Fetch-Site` when the
/// browser sends it, else `Origin`, else `Referer`; none of them is refused.
fn same_origin(parts: &Parts) -> bool {
    let Some(host) = request_host(parts) else {
        return false;
    };
    let ours = format!("https://{host}");
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let origin_ok = header("origin").map(|origin| origin == ours);
    if let Some(site) = header("sec-fetch-site") {
        return site == "same-origin" && origin_ok != Some(false);
    }
    if let Some(ok) = origin_ok {
        return ok;
    }
    header("referer").is_some_and(|r| r == ours || r.starts_with(&format!("{ours}/")))
}

fn login_page(
    accounts: &Accounts,
    redirect: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response<ResponseBody> {
    let mut body = String::from("<h1>Sign in</h1>");
    if let Some(error) = error {
        body.push_str(&format!(
            "<div class=\"error\" role=\"alert\" id=\"error\">{}</div>",
            escape(error)
        ));
    }
    let redirect_param = if redirect == LANDING {
        String::new()
    } else {
        format!("?redirect={}", encode_component(redirect))
    };
    #[cfg(feature = "github")]
    let github = accounts.github().is_some();
    #[cfg(not(feature = "github"))]
    let github = false;
    if github {
        body.push_str(&format!(
            "<a class=\"button github\" id=\"github-login\" href=\"/paddock/v1/github/login{}\">Sign in with GitHub</a>",
            escape(&redirect_param)
        ));
    }
    #[cfg(feature = "oidc")]
    let oidc = accounts.oidc_providers();
    #[cfg(feature = "oidc")]
    for provider in oidc {
        let config = provider.config();
        body.push_str(&format!(
            "<a class=\"button oidc\" id=\"oidc-login-{0}\" href=\"/paddock/v1/oidc/{0}/login{1}\">Sign in with {2}</a>",
            escape(&encode_component(&config.name)),
            escape(&redirect_param),
            escape(&config.display_name),
        ));
    }
    #[cfg(feature = "oidc")]
    let buttons = github || !oidc.is_empty();
    #[cfg(not(feature = "oidc"))]
    let buttons = github;
    let providers = accounts.provider_names();
    if buttons {
        body.push_str("<div class=\"divider\">or with a username and password</div>");
    }
    body.push_str("<form class=\"password\" method=\"post\" action=\"/paddock/login\">");
    body.push_str(&format!(
        "<input type=\"hidden\" name=\"redirect\" value=\"{}\">",
        escape(redirect)
    ));
    if providers.len() > 1 {
        body.push_str(
            "<label for=\"provider\">Directory</label><select id=\"provider\" name=\"provider\">",
        );
        for provider in &providers {
            body.push_str(&format!(
                "<option value=\"{0}\">{0}</option>",
                escape(provider)
            ));
        }
        body.push_str("</select>");
    } else {
        body.push_str("<input type=\"hidden\" name=\"provider\" value=\"local\">");
    }
    body.push_str(
        "<label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required>\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
         <button class=\"primary\" type=\"submit\" id=\"password-login\">Sign in</button></form>",
    );
    page(status, "Sign in", false, &body)
}

/// `GET /paddock/login[?redirect=/path]`.
pub(super) async fn login_get(
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
) -> ProxyResult {
    let (parts, _) = request.into_parts();
    let redirect = match safe_redirect(query_param(&parts, "redirect").as_deref()) {
        Ok(r) => r,
        Err(message) => {
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "Invalid redirect",
                &message,
            ))
        }
    };
    Ok(login_page(accounts, &redirect, None, StatusCode::OK))
}

/// `POST /paddock/login`: the password form.
pub(super) async fn login_post(
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
) -> ProxyResult {
    let client = super::session::client_ip(&request);
    let context = crate::context::of(&request);
    let (parts, body) = request.into_parts();
    if !same_origin(&parts) {
        return Ok(refusal(
            StatusCode::FORBIDDEN,
            "Sign-in refused",
            "The sign-in form was not submitted from this site.",
        ));
    }
    let bytes = body
        .read(MAX_BODY)
        .await
        .map_err(|e| ProxyError::BadRequest {
            message: format!("cannot read the form: {e}"),
        })?;
    let form = url_params(&String::from_utf8_lossy(&bytes));
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let redirect = match safe_redirect(Some(&field("redirect"))) {
        Ok(r) => r,
        Err(message) => {
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "Invalid redirect",
                &message,
            ))
        }
    };
    let provider = match field("provider") {
        p if p.is_empty() => crate::accounts::local::PROVIDER.to_owned(),
        p => p,
    };
    let username = field("username");
    let password = SecretString::from(field("password"));
    let again = |message: &str, status: StatusCode| {
        Ok(login_page(accounts, &redirect, Some(message), status))
    };
    if !accounts.provider_names().contains(&provider.as_str()) {
        return again("Unknown directory.", StatusCode::BAD_REQUEST);
    }
    if username.is_empty() || secrecy::ExposeSecret::expose_secret(&password).is_empty() {
        return again(
            "Enter your username and password.",
            StatusCode::UNAUTHORIZED,
        );
    }
    let result = accounts
        .login(
            &provider,
            crate::accounts::LoginCredential::Password {
                username: &username,
                password: &password,
            },
            client,
        )
        .await;
    let login = match super::session::recorded_login(&context, &provider, &username, result) {
        Ok(login) => login,
        Err(error) => {
            tracing::info!(auth.provider = %provider, auth.username = %username, %error, "login failed");
            let (message, status) = match ProxyError::from(error) {
                ProxyError::TooManyRequests { retry_after_secs } => (
                    format!("Too many attempts. Try again in {retry_after_secs} seconds."),
                    StatusCode::TOO_MANY_REQUESTS,
                ),
                ProxyError::AuthenticationUnavailable { .. } => (
                    "The directory is unavailable. Try again in a moment.".to_owned(),
                    StatusCode::SERVICE_UNAVAILABLE,
                ),
                _ => (
                    "Wrong username or password.".to_owned(),
                    StatusCode::UNAUTHORIZED,
                ),
            };
            return again(&message, status);
        }
    };
    let (_, cookie) = start_session(accounts, &login, "browser session".to_owned()).await?;
    let mut response = see_other(&redirect);
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `GET /paddock/`: who the user is and a kubeconfig per accessible cluster.
pub(super) async fn landing(endpoints: &Endpoints, request: Request<RequestBody>) -> ProxyResult {
    let identity = match super::caller(&request) {
        Ok(identity) if identity.token_id.is_some() => identity,
        _ => return Ok(see_other("/paddock/login")),
    };
    if identity.password_change_required {
        let reason = ProxyError::from(crate::authn::AuthnError::PasswordChangeRequired {
            username: identity.username.clone(),
        });
        return Ok(refusal(
            StatusCode::FORBIDDEN,
            "Not yet",
            &reason.to_string(),
        ));
    }
    let identity = &*identity;
    let accessible = endpoints.accessible_clusters(identity);
    let mut body = format!(
        "<header class=\"top\"><h1>Welcome, <span id=\"username\">{}</span></h1>\
         <form method=\"post\" action=\"/paddock/logout\"><button class=\"secondary\" type=\"submit\" id=\"logout\">Sign out</button></form></header>\
         <p class=\"note\">Signed in with <strong>{}</strong> as <code>{}</code>.</p><h2>Clusters</h2>",
        escape(&identity.username),
        escape(&identity.provider),
        escape(&identity.user),
    );
    if accessible.is_empty() {
        body.push_str(
            "<p id=\"no-clusters\">You have no access to any cluster yet. Ask an administrator \
             for a role binding.</p>",
        );
    } else {
        body.push_str("<table id=\"clusters\"><tr><th>Cluster</th><th>Status</th><th></th></tr>");
        for cluster in &accessible {
            body.push_str(&format!(
                "<tr><td title=\"{2}\">{0}</td><td class=\"status-{3}\" id=\"status-{0}\"{4}>{3}</td>\
                 <td class=\"action\"><a class=\"download\" id=\"download-{0}\" \
                 href=\"/paddock/v1/kubeconfig?cluster={1}\" download=\"{0}.kubeconfig\">Download kubeconfig</a></td></tr>",
                escape(&cluster.id),
                encode_component(&cluster.id),
                escape(&cluster.display_name),
                cluster.status,
                cluster
                    .last_heartbeat
                    .as_ref()
                    .map(|t| format!(" title=\"last heard from {}\"", escape(t)))
                    .unwrap_or_default(),
            ));
        }
        body.push_str("</table><p class=\"note\">Use it with <code>kubectl --kubeconfig &lt;file&gt; get pods</code>. Each download is a new token.</p>");
    }
    let groups: Vec<&String> = identity
        .groups
        .iter()
        .filter(|g| !g.starts_with("system:"))
        .collect();
    if !groups.is_empty() {
        body.push_str(&format!(
            "<h2>Groups ({})</h2><ul class=\"groups\" id=\"groups\">",
            groups.len()
        ));
        // Display names as the providers reported them at the last login or
        // refresh; the id alone when none is stored.
        let names = endpoints
            .config()
            .accounts
            .as_ref()
            .and_then(|accounts| {
                accounts.view().with_snapshot(|s| {
                    s.user_attributes(&identity.user)
                        .map(|a| a.value.group_names.clone())
                })
            })
            .unwrap_or_default();
        for group in groups {
            match names.values().find_map(|n| n.get(group.as_str())) {
                Some(name) if name != group => body.push_str(&format!(
                    "<li>{} <code>{}</code></li>",
                    escape(name),
                    escape(group)
                )),
                _ => body.push_str(&format!("<li><code>{}</code></li>", escape(group))),
            }
        }
        body.push_str("</ul>");
    }
    health_table(endpoints, identity, &mut body);
    Ok(page(StatusCode::OK, "Your clusters", true, &body))
}

/// The clusters' last health checks, for those who may list clusters in
/// the management cluster (administrators), when checks are on.
fn health_table(endpoints: &Endpoints, identity: &crate::authn::Identity, body: &mut String) {
    let checks = super::health::all(endpoints);
    if checks.is_empty() {
        return;
    }
    let config = endpoints.config();
    let list = RequestAttributes::resource_request("list", "management.cattle.io", "clusters");
    let admin = config
        .admin_authorizer
        .authorize(&AuthzRequest {
            identity,
            cluster: &config.management_cluster,
            attributes: &list,
            upgrade: false,
        })
        .allowed;
    if !admin {
        return;
    }
    body.push_str(
        "<h2>Cluster health</h2><table id=\"health\"><tr><th>Cluster</th><th>State</th>\
         <th>Version</th><th>Nodes ready</th><th>Latency</th><th>Last error</th></tr>",
    );
    for health in checks {
        let state = match (health.checked_at, health.reachable) {
            (None, _) => "not checked yet",
            (Some(_), true) => "reachable",
            (Some(_), false) => "unreachable",
        };
        let version = health
            .kubernetes_version
            .as_ref()
            .map_or("", |v| v.git_version.as_str());
        let nodes = health
            .nodes
            .map(|n| format!("{}/{}", n.ready, n.total))
            .unwrap_or_default();
        let latency = health
            .latency_seconds
            .map(|s| format!("{:.0} ms", s * 1000.0))
            .unwrap_or_default();
        body.push_str(&format!(
            "<tr id=\"health-{0}\"><td>{0}</td><td class=\"{1}\">{1}</td><td>{2}</td><td>{3}</td>\
             <td>{4}</td><td>{5}</td></tr>",
            escape(&health.cluster),
            state,
            escape(version),
            nodes,
            latency,
            escape(health.last_error.as_deref().unwrap_or("")),
        ));
    }
    body.push_str("</table>");
}

/// `POST /paddock/logout`: ends the browser session and returns to the login page.
pub(super) async fn logout_post(
    accounts: &Arc<Accounts>,
    request: Request<RequestBody>,
) -> ProxyResult {
    let token = super::caller(&request)
        .ok()
        .and_then(|caller| caller.token_id.clone());
    let (parts, _) = request.into_parts();
    if !same_origin(&parts) {
        return Ok(refusal(
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "The sign-out form was not submitted from this site.",
        ));
    }
    if let Some(id) = token {
        let accounts = accounts.clone();
        super::blocking(move || accounts.revoke(&id))
            .await?
            .map_err(ProxyError::from)?;
    }
    let mut response = see_other("/paddock/login");
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(super::session::CLEAR_SESSION_COOKIE),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_same_origin_paths_are_redirect_targets() {
        assert_eq!(safe_redirect(None).unwrap(), LANDING);
        assert_eq!(safe_redirect(Some("")).unwrap(), LANDING);
        for ok in [
            "/paddock/",
            "/paddock",
            "/paddock/?x=1",
            "/paddock/?next=/k8s/clusters/a",
            "/paddock/a//b",
            "/paddock/%41",
        ] {
            assert_eq!(safe_redirect(Some(ok)).unwrap(), ok);
        }
        for bad in [
            "//evil.example",
            "https://evil.example/",
            // Not one of Paddock's pages: a cluster path serves anyone's content.
            "/k8s/clusters/a/api/v1/namespaces/x/services/web:80/proxy/",
            "/api/v1/namespaces/x/pods/p/proxy/",
            "/paddockx",
            "/paddock/../k8s/clusters/a",
            "/paddock/%2e%2e/k8s/clusters/a",
            "/paddock/./x",
            "/\\evil.example",
            "\\\\evil.example",
            "/%2Fevil.example",
            "/%2fevil.example",
            "/%5Cevil.example",
            "/\t/evil.example",
            "/%09/evil.example",
            "%2F%2Fevil.example",
            "javascript:alert(1)",
            "evil.example",
            "/ /evil",
            "/%E0%A4%A",
        ] {
            assert!(safe_redirect(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
