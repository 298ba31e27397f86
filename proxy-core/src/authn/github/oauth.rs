//! The OAuth web flow: the authorize redirect with a `state` bound to a
//! short-lived encrypted cookie and PKCE S256, and the callback that checks
//! the state (in constant time, once) and exchanges the code with the
//! `oauth2` crate, mapping GitHub's HTTP-200 error answers explicitly.

use std::{borrow::Cow, time::Duration};

use oauth2::{
    basic::{BasicClient, BasicErrorResponseType},
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, TokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use super::{api::HttpClient, config::GithubConfig};
pub use crate::authn::seal::Sealer;

/// The cookie carrying the sealed state between login and callback.
pub const STATE_COOKIE: &str = "paddock_github_state";
/// How long a login may take at GitHub.
pub const STATE_LIFETIME: Duration = Duration::from_secs(600);

/// Why a callback was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum OAuthError {
    /// No state cookie came back (another browser, expired, or cookies off).
    #[error("the login state cookie is missing: start the login again")]
    MissingState,
    /// The cookie does not decrypt, or the `state` parameter does not match it.
    #[error("the login state does not match: start the login again")]
    StateMismatch,
    /// The login took longer than allowed.
    #[error("the login took too long: start the login again")]
    Expired,
    /// This state was already used once.
    #[error("this login was already completed: start the login again")]
    Replayed,
    /// The callback carried no code.
    #[error("GitHub sent no authorization code")]
    MissingCode,
    /// The user (or GitHub) declined the authorization.
    #[error("GitHub did not authorize the login: {0}")]
    Denied(String),
    /// The token endpoint refused the code (`bad_verification_code`,
    /// `incorrect_client_credentials`, `redirect_uri_mismatch`, ...).
    #[error("GitHub refused the authorization code: {0}")]
    TokenRejected(String),
    /// The token endpoint could not be reached or failed.
    #[error("GitHub's token endpoint is unavailable: {0}")]
    Unavailable(String),
}

/// What the state cookie holds.
#[derive(Serialize, Deserialize)]
struct StatePayload {
    /// The `state` parameter sent to GitHub.
    s: String,
    /// The PKCE verifier.
    v: String,
    /// Where to go after login (already validated).
    r: String,
    /// The redirect URI sent to GitHub.
    c: String,
    /// Expiry, unix seconds.
    e: u64,
}

/// A started login: where to send the browser and the cookie to set.
#[derive(Debug)]
pub struct AuthorizeStart {
    /// `https://HOST/login/oauth/authorize?...`.
    pub location: Url,
    /// The sealed state cookie's value.
    pub cookie: String,
}

/// A finished callback.
pub struct Exchanged {
    /// The user's GitHub access token.
    pub access_token: SecretString,
    /// Where the browser goes next.
    pub redirect_to: String,
}

impl std::fmt::Debug for Exchanged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanged")
            .field("redirect_to", &self.redirect_to)
            .finish_non_exhaustive()
    }
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// The web flow of one OAuth app.
pub struct OAuthFlow {
    client: Client,
    scopes: Vec<String>,
    sealer: std::sync::Arc<Sealer>,
    http: HttpClient,
    used: moka::sync::Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for OAuthFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthFlow").finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl OAuthFlow {
    /// The flow for `config`'s app, using `http` for the token exchange.
    pub fn new(config: &GithubConfig, http: HttpClient, sealer: std::sync::Arc<Sealer>) -> Self {
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                config.client_secret.expose_secret().to_owned(),
            ))
            .set_auth_uri(AuthUrl::from_url(config.endpoints.authorize_url()))
            .set_token_uri(TokenUrl::from_url(config.endpoints.token_url()))
            // GitHub documents the client credentials as form fields.
            .set_auth_type(AuthType::RequestBody);
        Self {
            client,
            scopes: config.scopes.clone(),
            sealer,
            http,
            used: moka::sync::Cache::builder()
                .time_to_live(STATE_LIFETIME)
                .max_capacity(100_000)
                .build(),
        }
    }

    /// Starts a login returning to `callback` and then to `redirect_to`
    /// (validated by the caller).
    pub fn start(&self, callback: &Url, redirect_to: &str) -> AuthorizeStart {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let redirect = RedirectUrl::from_url(callback.clone());
        let (location, state) = self
            .client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(self.scopes.iter().cloned().map(Scope::new))
            .set_pkce_challenge(challenge)
            .set_redirect_uri(Cow::Owned(redirect))
            .url();
        let payload = StatePayload {
            s: state.secret().clone(),
            v: verifier.secret().clone(),
            r: redirect_to.to_owned(),
            c: callback.to_string(),
            e: unix_now() + STATE_LIFETIME.as_secs(),
        };
        let json = serde_json::to_vec(&payload).expect("serializable");
        AuthorizeStart {
            location,
            cookie: self.sealer.seal(STATE_COOKIE, &json),
        }
    }

    /// Finishes a login: `query` is the callback's query string, `cookie`
    /// the state cookie's value if the browser sent one.
    pub async fn finish(&self, query: &str, cookie: Option<&str>) -> Result<Exchanged, OAuthError> {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let cookie = cookie.ok_or(OAuthError::MissingState)?;
        let plain = self
            .sealer
            .open(STATE_COOKIE, cookie)
            .ok_or(OAuthError::StateMismatch)?;
        let payload: StatePayload =
            serde_json::from_slice(&plain).map_err(|_| OAuthError::StateMismatch)?;
        let given = param("state").unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(payload.s.as_bytes())) || given.is_empty() {
            return Err(OAuthError::StateMismatch);
        }
        if unix_now() > payload.e {
            return Err(OAuthError::Expired);
        }
        let key: [u8; 32] = Sha256::digest(payload.s.as_bytes()).into();
        let mut fresh = false;
        self.used.entry(key).or_insert_with(|| {
            fresh = true;
        });
        if !fresh {
            return Err(OAuthError::Replayed);
        }
        if let Some(error) = param("error") {
            return Err(OAuthError::Denied(error.to_owned()));
        }
        let code = param("code")
            .filter(|c| !c.is_empty())
            .ok_or(OAuthError::MissingCode)?;
        if payload.v.is_empty() {
            return Err(OAuthError::StateMismatch);
        }
        let callback = Url::parse(&payload.c).map_err(|_| OAuthError::StateMismatch)?;
        let token = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(payload.v))
            .set_redirect_uri(Cow::Owned(RedirectUrl::from_url(callback)))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        Ok(Exchanged {
            access_token: SecretString::from(token.access_token().secret().clone()),
            redirect_to: payload.r,
        })
    }
}

/// GitHub answers token errors with HTTP 200 and `{"error": …}`; the
/// `oauth2` crate only reads error bodies of non-2xx answers, so a 200
/// error arrives as a parse failure and is read here.
fn token_error(
    error: RequestTokenError<super::api::HttpError, StandardErrorResponse<BasicErrorResponseType>>,
) -> OAuthError {
    #[derive(Deserialize)]
    struct GithubError {
        error: String,
    }
    match error {
        RequestTokenError::ServerResponse(response) => {
            OAuthError::TokenRejected(response.error().to_string())
        }
        RequestTokenError::Parse(_, body) => match serde_json::from_slice::<GithubError>(&body) {
            Ok(e) => OAuthError::TokenRejected(sanitize(&e.error)),
            Err(_) => OAuthError::Unavailable(
                "the token endpoint answered something else than a token".to_owned(),
            ),
        },
        RequestTokenError::Request(e) => OAuthError::Unavailable(e.to_string()),
        RequestTokenError::Other(e) => OAuthError::Unavailable(e),
    }
}

/// Error codes are shown on pages: keep only what an error code is made of.
fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}
