//! A GitHub (and GitHub Enterprise) emulator for tests: a hyper server on a
//! random loopback port with TLS from a [`TestCa`].
//!
//! It serves the OAuth web flow (`/login/oauth/authorize`, an approval page
//! a browser can submit, `/login/oauth/access_token` answering errors with
//! HTTP 200 and an `error` field as GitHub does, PKCE S256) and the REST API
//! (`/user`, `/user/emails`, `/user/orgs`, `/user/teams`) at the root, as
//! api.github.com does, and under `/api/v3`, as GitHub Enterprise does. Lists
//! honour `per_page` (default 30, at most 100) and `page`, carry `Link`
//! headers (`next` and `last` on every page but the last) and answer `[]`
//! past the end. Every API answer has the `x-ratelimit-*` headers; faults
//! ([`Faults`]) force rate limits (403/429), 5xx, a failing page, revoked
//! tokens and token-endpoint errors. Every request is logged.

mod model;
pub mod stack;

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::{net::TcpListener, task::JoinHandle};

pub use model::{Directory, Email, Org, Team, User};

use crate::tls::TestCa;

/// The OAuth app the emulator knows.
pub const CLIENT_ID: &str = "Iv1.paddocktest";
/// Its secret.
pub const CLIENT_SECRET: &str = "emulator-client-secret";

/// How long an authorization code stays valid (GitHub: 10 minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// One request as the emulator saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// Method.
    pub method: Method,
    /// Path without the `/api/v3` prefix.
    pub path: String,
    /// The query string.
    pub query: String,
    /// Whether the path had the `/api/v3` prefix.
    pub enterprise_prefix: bool,
    /// The status answered.
    pub status: u16,
}

impl LoggedRequest {
    /// The value of query parameter `name`.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// A rate limit to answer with.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// 403 (primary limit, as GitHub mostly does) or 429.
    pub status: u16,
    /// `x-ratelimit-reset` this many seconds from now.
    pub reset_in_secs: u64,
    /// `retry-after`, as on secondary limits.
    pub retry_after_secs: Option<u64>,
    /// How many API requests get it before the limit lifts.
    pub times: usize,
}

/// Failures the emulator can be told to produce.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Answer API requests with a rate limit.
    pub rate_limit: Option<RateLimit>,
    /// Answer this many API requests with 502.
    pub server_errors: usize,
    /// Answer 500 for this page of this list path (`("/user/teams", 2)`).
    pub fail_page: Option<(String, u32)>,
    /// Answer the next token exchange with HTTP 200 and this `error`.
    pub token_error: Option<String>,
    /// Delay every API answer by this much.
    pub delay: Option<Duration>,
    /// Send no `Link` headers (clients must page by number until `[]`).
    pub omit_link: bool,
}

struct Code {
    login: String,
    redirect_uri: Option<String>,
    challenge: Option<String>,
    scope: String,
    issued: Instant,
    used: bool,
}

struct State {
    directory: Mutex<Directory>,
    signed_in: Mutex<Option<String>>,
    faults: Mutex<Faults>,
    codes: Mutex<HashMap<String, Code>>,
    tokens: Mutex<HashMap<String, (String, String)>>,
    log: Mutex<Vec<LoggedRequest>>,
    counter: AtomicU64,
    used: AtomicU64,
    base: Mutex<String>,
}

/// A running GitHub emulator. Stops when dropped.
pub struct GithubEmulator {
    state: Arc<State>,
    addr: SocketAddr,
    ca_pem: String,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for GithubEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl GithubEmulator {
    /// Starts an emulator serving `directory` on a random loopback port,
    /// with a certificate for `127.0.0.1` and `localhost` from a fresh CA.
    /// The browser is signed in as the first user.
    pub async fn start(directory: Directory) -> anyhow::Result<Self> {
        let ca = TestCa::new();
        let cert = ca.issue_server(&["127.0.0.1", "localhost"]);
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            signed_in: Mutex::new(directory.users.first().map(|u| u.login.clone())),
            directory: Mutex::new(directory),
            faults: Mutex::default(),
            codes: Mutex::default(),
            tokens: Mutex::default(),
            log: Mutex::default(),
            counter: AtomicU64::new(1),
            used: AtomicU64::new(0),
            base: Mutex::new(format!("https://{addr}")),
        });
        let tls = tokio_rustls::TlsAcceptor::from(cert.server_config());
        let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, builder, tls) = (serving.clone(), builder.clone(), tls.clone());
                tokio::spawn(async move {
                    let Ok(stream) = tls.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            state,
            addr,
            ca_pem: ca.pem().to_owned(),
            task,
        })
    }

    /// `https://127.0.0.1:<port>`: the OAuth base (and the API base in
    /// github.com mode).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `127.0.0.1:<port>`, a GitHub Enterprise host (API under `/api/v3`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The CA that signed its certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Signs the browser in as `login` (who the authorize page approves for).
    pub fn sign_in(&self, login: &str) {
        *self.state.signed_in.lock().unwrap() = Some(login.to_owned());
    }

    /// Issues an access token for `login` directly (a personal access token).
    pub fn issue_token(&self, login: &str) -> String {
        let token = format!("ghp_{}", self.state.random());
        self.state.tokens.lock().unwrap().insert(
            token.clone(),
            (login.to_owned(), "read:org,user:email".to_owned()),
        );
        token
    }

    /// Revokes every token of `login`: the API answers 401 for them.
    pub fn revoke_tokens(&self, login: &str) {
        self.state
            .tokens
            .lock()
            .unwrap()
            .retain(|_, (owner, _)| owner != login);
    }

    /// Changes the data (memberships, users) while running.
    pub fn edit(&self, f: impl FnOnce(&mut Directory)) {
        f(&mut self.state.directory.lock().unwrap());
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        *self.state.faults.lock().unwrap() = faults;
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.lock().unwrap().clone()
    }

    /// Requests to `path` (without the `/api/v3` prefix).
    pub fn requests_to(&self, path: &str) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Forgets the request log.
    pub fn clear_log(&self) {
        self.state.log.lock().unwrap().clear();
    }
}

impl Drop for GithubEmulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl State {
    fn random(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let digest = Sha256::digest(format!("{n}/{nanos}/{:p}", self).as_bytes());
        hex_encode(&digest[..16])
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

type Answer = Response<Full<Bytes>>;

async fn handle(state: &State, request: Request<Incoming>) -> Answer {
    let method = request.method().clone();
    let raw_path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (enterprise_prefix, path) = match raw_path.strip_prefix("/api/v3") {
        Some(rest) => (true, if rest.is_empty() { "/" } else { rest }.to_owned()),
        None => (false, raw_path.clone()),
    };
    let headers = request.headers().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let response = route(
        state,
        &method,
        &path,
        &query,
        enterprise_prefix,
        &headers,
        &body,
    )
    .await;
    state.log.lock().unwrap().push(LoggedRequest {
        method,
        path,
        query,
        enterprise_prefix,
        status: response.status().as_u16(),
    });
    response
}

async fn route(
    state: &State,
    method: &Method,
    path: &str,
    query: &str,
    enterprise_prefix: bool,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Answer {
    let params = parse_form(query.as_bytes());
    match (method, path) {
        (&Method::GET, "/login/oauth/authorize") if !enterprise_prefix => {
            authorize_page(state, &params)
        }
        (&Method::POST, "/login/oauth/authorize") if !enterprise_prefix => {
            approve(state, &parse_form(body))
        }
        (&Method::POST, "/login/oauth/access_token") if !enterprise_prefix => {
            access_token(state, headers, &parse_form(body))
        }
        _ => api(state, method, path, &params, enterprise_prefix, headers).await,
    }
}

fn parse_form(bytes: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn html(status: StatusCode, body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /login/oauth/authorize`: GitHub's "Authorize application" page, as a
/// form the browser submits with one button (auto-approve).
fn authorize_page(state: &State, params: &BTreeMap<String, String>) -> Answer {
    if params.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return html(
            StatusCode::NOT_FOUND,
            "<h1>404: application not found</h1>".into(),
        );
    }
    let login = params
        .get("login")
        .cloned()
        .or_else(|| state.signed_in.lock().unwrap().clone())
        .unwrap_or_default();
    let mut hidden = String::new();
    for key in [
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "code_challenge",
        "code_challenge_method",
    ] {
        if let Some(value) = params.get(key) {
            hidden.push_str(&format!(
                r#"<input type="hidden" name="{key}" value="{}">"#,
                escape(value)
            ));
        }
    }
    html(
        StatusCode::OK,
        format!(
            r#"<!doctype html><html><head><title>Authorize application</title></head>
<body><h1>Authorize Paddock test app</h1>
<p>Signed in as <strong id="login">{login}</strong>. Scopes: <code>{scope}</code></p>
<form method="post" action="/login/oauth/authorize">{hidden}
<input type="hidden" name="login" value="{login}">
<button type="submit" id="js-oauth-authorize-btn" name="authorize" value="1">Authorize</button>
</form></body></html>"#,
            login = escape(&login),
            scope = escape(params.get("scope").map_or("", String::as_str)),
        ),
    )
}

fn redirect(location: &str) -> Answer {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::FOUND;
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The approval form's POST: a single-use code, then back to `redirect_uri`.
fn approve(state: &State, form: &BTreeMap<String, String>) -> Answer {
    let Some(redirect_uri) = form.get("redirect_uri") else {
        return html(StatusCode::BAD_REQUEST, "no redirect_uri".into());
    };
    let login = form.get("login").cloned().unwrap_or_default();
    if state.directory.lock().unwrap().user(&login).is_none() {
        return html(StatusCode::FORBIDDEN, "not signed in".into());
    }
    if let Some(method) = form.get("code_challenge_method") {
        if method != "S256" {
            return html(
                StatusCode::BAD_REQUEST,
                "code_challenge_method must be S256".into(),
            );
        }
    }
    let code = state.random()[..20].to_owned();
    state.codes.lock().unwrap().insert(
        code.clone(),
        Code {
            login,
            redirect_uri: Some(redirect_uri.clone()),
            challenge: form.get("code_challenge").cloned(),
            scope: form
                .get("scope")
                .cloned()
                .unwrap_or_default()
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(","),
            issued: Instant::now(),
            used: false,
        },
    );
    let mut target = url::Url::parse(redirect_uri).expect("redirect_uri");
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(s) = form.get("state") {
        target.query_pairs_mut().append_pair("state", s);
    }
    redirect(target.as_str())
}

/// `POST /login/oauth/access_token`. Errors are HTTP 200 with `error`, as
/// on GitHub; JSON only when asked for with `Accept`, form-encoded otherwise.
fn access_token(
    state: &State,
    headers: &http::HeaderMap,
    form: &BTreeMap<String, String>,
) -> Answer {
    let json_wanted = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/json"));
    let answer = |fields: Vec<(&str, String)>| -> Answer {
        let (body, content_type) = if json_wanted {
            let map: serde_json::Map<String, Value> = fields
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Value::from(v)))
                .collect();
            (
                Value::Object(map).to_string(),
                "application/json; charset=utf-8",
            )
        } else {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in fields {
                s.append_pair(k, &v);
            }
            (s.finish(), "application/x-www-form-urlencoded")
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
    };
    let error = |code: &str, description: &str| {
        answer(vec![
            ("error", code.to_owned()),
            ("error_description", description.to_owned()),
            (
                "error_uri",
                format!("https://docs.github.com/apps/troubleshooting#{code}"),
            ),
        ])
    };
    if let Some(code) = state.faults.lock().unwrap().token_error.take() {
        return error(&code, "forced by the test");
    }
    let (id, secret) = basic_credentials(headers).unwrap_or_else(|| {
        (
            form.get("client_id").cloned().unwrap_or_default(),
            form.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    if id != CLIENT_ID || secret != CLIENT_SECRET {
        return error(
            "incorrect_client_credentials",
            "The client_id and/or client_secret passed are incorrect.",
        );
    }
    let mut codes = state.codes.lock().unwrap();
    let Some(code) = form.get("code").and_then(|c| codes.get_mut(c)) else {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    };
    if code.used || code.issued.elapsed() > CODE_LIFETIME {
        return error(
            "bad_verification_code",
            "The code passed is incorrect or expired.",
        );
    }
    if let (Some(expected), Some(given)) = (&code.redirect_uri, form.get("redirect_uri")) {
        if expected != given {
            return error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            );
        }
    }
    if let Some(challenge) = &code.challenge {
        let Some(verifier) = form.get("code_verifier") else {
            return error(
                "bad_verification_code",
                "The code_verifier is required for this code.",
            );
        };
        let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return error(
                "bad_verification_code",
                "The code_verifier does not match the code_challenge.",
            );
        }
    }
    code.used = true;
    let token = format!("gho_{}", state.random());
    state
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), (code.login.clone(), code.scope.clone()));
    answer(vec![
        ("access_token", token),
        ("scope", code.scope.clone()),
        ("token_type", "bearer".to_owned()),
    ])
}

fn basic_credentials(headers: &http::HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    Some((decode(id), decode(secret)))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn api_json(status: StatusCode, value: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn rate_headers(response: &mut Answer, remaining: u64, used: u64, reset: u64) {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(5000u64));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-used", HeaderValue::from(used));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
}

async fn api(
    state: &State,
    method: &Method,
    path: &str,
    params: &BTreeMap<String, String>,
    enterprise_prefix: bool,
    headers: &http::HeaderMap,
) -> Answer {
    let delay = state.faults.lock().unwrap().delay;
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let used = state.used.fetch_add(1, Ordering::Relaxed) + 1;
    let reset = now_secs() + 3600;
    // Rate limits and 5xx come before authentication, as GitHub's edge does.
    {
        let mut faults = state.faults.lock().unwrap();
        if let Some(limit) = &mut faults.rate_limit {
            if limit.times > 0 {
                limit.times -= 1;
                let status = StatusCode::from_u16(limit.status).unwrap_or(StatusCode::FORBIDDEN);
                let mut response = api_json(
                    status,
                    &json!({
                        "message": "API rate limit exceeded for user ID 583231.",
                        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    }),
                );
                rate_headers(&mut response, 0, 5000, now_secs() + limit.reset_in_secs);
                if let Some(after) = limit.retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(after));
                }
                return response;
            }
        }
        if faults.server_errors > 0 {
            faults.server_errors -= 1;
            return api_json(StatusCode::BAD_GATEWAY, &json!({"message": "Server Error"}));
        }
    }
    let mut response = api_authenticated(state, method, path, params, enterprise_prefix, headers);
    rate_headers(&mut response, 5000 - used.min(5000), used, reset);
    response
}

fn api_authenticated(
    state: &State,
    method: &Method,
    path: &str,
    params: &BTreeMap<String, String>,
    enterprise_prefix: bool,
    headers: &http::HeaderMap,
) -> Answer {
    if method != Method::GET {
        return api_json(StatusCode::NOT_FOUND, &json!({"message": "Not Found"}));
    }
    let base = format!(
        "{}{}",
        state.base.lock().unwrap(),
        if enterprise_prefix { "/api/v3" } else { "" }
    );
    if path == "/" {
        return api_json(
            StatusCode::OK,
            &json!({"current_user_url": format!("{base}/user")}),
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("token ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .map(str::to_owned);
    let owner = token.and_then(|t| state.tokens.lock().unwrap().get(&t).cloned());
    let Some((login, scopes)) = owner else {
        return api_json(
            StatusCode::UNAUTHORIZED,
            &json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        );
    };
    let directory = state.directory.lock().unwrap();
    let Some(user) = directory.user(&login) else {
        return api_json(StatusCode::NOT_FOUND, &json!({"message": "Not Found"}));
    };
    let items: Vec<Value> = match path {
        "/user" => {
            let mut response = api_json(StatusCode::OK, &user.json(&base));
            if let Ok(v) = HeaderValue::from_str(&scopes.replace(',', ", ")) {
                response.headers_mut().insert("x-oauth-scopes", v);
            }
            return response;
        }
        "/user/emails" => user.emails.iter().map(Email::json).collect(),
        "/user/orgs" => user
            .orgs
            .iter()
            .filter_map(|id| directory.org(*id))
            .map(|o| o.json(&base))
            .collect(),
        "/user/teams" => user
            .teams
            .iter()
            .filter_map(|id| directory.team(*id))
            .filter_map(|t| Some(t.json(&base, directory.org(t.org)?)))
            .collect(),
        _ => return api_json(StatusCode::NOT_FOUND, &json!({"message": "Not Found"})),
    };
    let per_page: usize = params
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: u32 = params
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    if let Some((fail_path, fail_page)) = &state.faults.lock().unwrap().fail_page {
        if fail_path == path && *fail_page == page {
            return api_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"message": "Server Error"}),
            );
        }
    }
    let pages = items.len().div_ceil(per_page).max(1) as u32;
    let start = (page as usize - 1).saturating_mul(per_page);
    let slice: Vec<Value> = items.into_iter().skip(start).take(per_page).collect();
    let mut response = api_json(StatusCode::OK, &Value::Array(slice));
    let link_to =
        |n: u32, rel: &str| format!("<{base}{path}?per_page={per_page}&page={n}>; rel=\"{rel}\"");
    let mut links = Vec::new();
    if page > 1 {
        links.push(link_to(page - 1, "prev"));
    }
    if page < pages {
        links.push(link_to(page + 1, "next"));
        links.push(link_to(pages, "last"));
    }
    if page > 1 {
        links.push(link_to(1, "first"));
    }
    if !links.is_empty() && !state.faults.lock().unwrap().omit_link {
        if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}
