//! OpenID Connect providers (cargo feature `oidc`): Keycloak, Okta, Azure
//! AD, Dex, or any provider with discovery.
//!
//! - **Browser login**: the authorization code flow with PKCE S256, state
//!   and nonce ([`flow`]), on the sign-in page; the ID token it ends with
//!   logs in through the accounts wing like any provider's credential, and
//!   the refresh token is kept sealed for the background group refresh.
//! - **Bearer JWTs** on the request path (an ID token from kubelogin or any
//!   client): verified locally ([`verify`]) with the cached keys
//!   ([`keys`]); the only network call is the bounded refresh of the key set
//!   when a token names a key id not seen before.
//! - **Password logins** through the provider's password grant, when
//!   enabled (Keycloak's "direct access grants").
//!
//! | what | principal id | display name |
//! |---|---|---|
//! | user | `oidc_user://<issuer-hash>/<sub>` | the user name (`<issuer>#<sub>` by default) |
//! | group | `oidc_group://<groups prefix><name>` | `<groups prefix><name>` |
//!
//! The provider being down makes logins unavailable (503); tokens signed
//! with keys already fetched keep verifying.

pub mod config;
pub mod flow;
pub mod keys;
pub mod verify;

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use arc_swap::ArcSwapOption;
use http::{header, Method, Request, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

pub use config::OidcConfig;
pub use flow::{Callback, Flow, FlowError, Started};
pub use verify::{looks_like_jwt, user_principal, TokenError};

use super::{
    external::{
        user_id_for, AccountGate, CredentialKind, ExternalProvider, ExternalUser, KnownUser,
        LoginCredential, RefreshError, RefreshSchedule, VerifiedBearer,
    },
    https::HttpClient,
    seal::Sealer,
    vault::TokenVault,
    AuthnError, BoxFuture,
};
use keys::{KeyCache, Keys, Refreshed};
use verify::Claims;

/// Purpose tag of sealed refresh tokens.
const REFRESH_PURPOSE: &str = "oidc refresh token";

/// The endpoints of the provider's discovery document that Paddock uses.
#[derive(Debug, Clone, Deserialize)]
pub struct Discovery {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where browsers are sent to log in.
    pub authorization_endpoint: Url,
    /// Where codes, refresh tokens and passwords are exchanged.
    pub token_endpoint: Url,
    /// The key set.
    pub jwks_uri: Url,
    /// Claims of the user, for a refresh answered without an ID token.
    #[serde(default)]
    pub userinfo_endpoint: Option<Url>,
}

/// What the token endpoint answered.
struct TokenAnswer {
    id_token: Option<SecretString>,
    access_token: Option<SecretString>,
    refresh_token: Option<SecretString>,
}

/// Why the token endpoint gave no tokens.
#[derive(Debug)]
enum TokenEndpointError {
    /// `invalid_grant` and other 4xx: the grant (code, password, refresh
    /// token) is not good.
    Rejected(String),
    /// Unreachable, timed out, 5xx, or not an answer.
    Unavailable(String),
}

/// Tokens a finished browser login hands to the accounts wing.
pub struct BrowserTokens {
    /// The verified ID token: the login credential.
    pub id_token: SecretString,
    /// The refresh token, when the provider issued one.
    pub refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for BrowserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrowserTokens([redacted])")
    }
}

/// Why a browser login's code exchange failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// The callback itself was refused.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// The provider refused the code, or its ID token did not verify.
    #[error("the sign-in could not be completed: {0}")]
    Rejected(String),
    /// The provider could not be asked.
    #[error("the identity provider is unavailable")]
    Unavailable,
}

/// One OpenID Connect provider.
pub struct OidcProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    http: HttpClient,
    discovery: ArcSwapOption<Discovery>,
    /// Held while the discovery document is fetched, so concurrent callers
    /// share one fetch; keeps the last failure and when it ended.
    discovering: tokio::sync::Mutex<Option<(Instant, String)>>,
    keys: KeyCache,
    sealer: Arc<Sealer>,
    flow: Flow,
    vault: OnceLock<TokenVault>,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl OidcProvider {
    /// Builds the provider; fails on an unusable CA bundle. Nothing is
    /// fetched yet: discovery and keys come with the first use (or
    /// [`prefetch`](Self::prefetch)), so Paddock starts while the provider
    /// is down.
    pub fn new(config: OidcConfig) -> Result<Self, String> {
        let http = HttpClient::new(
            config.ca_pem.as_deref(),
            config.timeout,
            config.proxy.clone(),
        )?;
        let sealer = Arc::new(Sealer::new(&config.encryption_key));
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                discovery: ArcSwapOption::empty(),
                discovering: tokio::sync::Mutex::new(None),
                keys: KeyCache::new(config.key_refresh_min_interval),
                flow: Flow::new(sealer.clone()),
                sealer,
                vault: OnceLock::new(),
                config,
            }),
        })
    }

    /// The settings.
    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Fetches discovery and the keys now, so bearer tokens verify from the
    /// first request and keep verifying if the provider goes down later.
    pub async fn prefetch(&self) -> Result<(), String> {
        self.inner.discovery().await?;
        let seen = self.inner.keys.current().generation;
        self.inner.refresh_keys(seen).await.map(drop)
    }

    /// Starts a browser login returning to `callback`, then `redirect_to`.
    /// Unavailable when the provider's discovery cannot be had.
    pub async fn start_login(
        &self,
        callback: &Url,
        redirect_to: &str,
    ) -> Result<Started, AuthnError> {
        let discovery = self
            .inner
            .discovery()
            .await
            .map_err(|_| self.inner.unavailable())?;
        let config = &self.inner.config;
        Ok(self.inner.flow.start(
            &discovery.authorization_endpoint,
            &config.client_id,
            &config.scopes,
            callback,
            redirect_to,
        ))
    }

    /// Finishes a browser login: checks the callback, exchanges the code
    /// (with the PKCE verifier) and verifies the ID token, its nonce
    /// included.
    pub async fn finish_login(
        &self,
        query: &str,
        cookie: Option<&str>,
    ) -> Result<(BrowserTokens, String), ExchangeError> {
        let callback = self.inner.flow.finish(query, cookie)?;
        let answer = self
            .inner
            .token_request(&[
                ("grant_type", "authorization_code"),
                ("code", &callback.code),
                ("redirect_uri", &callback.redirect_uri),
                ("code_verifier", &callback.verifier),
            ])
            .await
            .map_err(|e| match e {
                TokenEndpointError::Rejected(r) => ExchangeError::Rejected(r),
                TokenEndpointError::Unavailable(_) => ExchangeError::Unavailable,
            })?;
        let id_token = answer
            .id_token
            .ok_or_else(|| ExchangeError::Rejected("no ID token in the answer".to_owned()))?;
        let claims = self
            .inner
            .verify(id_token.expose_secret())
            .await
            .map_err(|e| match e {
                AuthnError::Unavailable { .. } => ExchangeError::Unavailable,
                _ => ExchangeError::Rejected("the ID token did not verify".to_owned()),
            })?;
        let nonce = claims.str("nonce").unwrap_or_default();
        if nonce.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                nonce.as_bytes(),
                callback.nonce.as_bytes(),
            ))
        {
            return Err(ExchangeError::Rejected(
                "the ID token's nonce does not match".to_owned(),
            ));
        }
        Ok((
            BrowserTokens {
                id_token,
                refresh_token: answer.refresh_token,
            },
            callback.redirect_to,
        ))
    }

    /// Keeps `refresh_token` of `user_id`, sealed, for the background
    /// refresh. Does nothing before the provider was given a vault.
    pub async fn keep_refresh_token(&self, user_id: &str, refresh_token: &SecretString) {
        self.inner.keep_refresh_token(user_id, refresh_token).await;
    }

    /// Verifies a JWT signed by this provider, as the request path does.
    pub async fn verify_token(&self, token: &str) -> Result<ExternalUser, AuthnError> {
        let claims = self.inner.verify(token).await?;
        verify::external_user(&self.inner.config, &claims).map_err(|_| AuthnError::Invalid)
    }

    /// Applies the access mode to `user`.
    pub fn check_access(
        &self,
        user: &ExternalUser,
        bound: &dyn Fn(&str) -> bool,
    ) -> Result<(), AuthnError> {
        let config = &self.inner.config;
        if config.access_mode.admits(&config.allowed, user, bound) {
            Ok(())
        } else {
            Err(AuthnError::Denied {
                reason: format!(
                    "{} is not allowed to log in to Paddock through {}: neither the user nor \
                     any of their groups is allowed{}",
                    user.username,
                    config.display_name,
                    if config.access_mode == super::external::AccessMode::Restricted {
                        " or has a role binding"
                    } else {
                        ""
                    }
                ),
            })
        }
    }
}

impl Inner {
    fn unavailable(&self) -> AuthnError {
        AuthnError::Unavailable {
            provider: self.config.name.clone(),
        }
    }

    /// The discovery document, fetched once and kept. Until a fetch
    /// succeeds, callers share the fetch in flight when they arrive, and
    /// its failure: anonymous login requests while the provider is down
    /// must not each hold a connection to it. A caller arriving after a
    /// failure asks again at once, so a provider that comes back is used.
    async fn discovery(&self) -> Result<Arc<Discovery>, String> {
        if let Some(discovery) = self.discovery.load_full() {
            return Ok(discovery);
        }
        let arrived = Instant::now();
        let mut last_failure = self.discovering.lock().await;
        if let Some(discovery) = self.discovery.load_full() {
            return Ok(discovery);
        }
        if let Some((ended, error)) = &*last_failure {
            if *ended >= arrived {
                return Err(error.clone());
            }
        }
        let fetched = self.fetch_discovery().await;
        match &fetched {
            Ok(discovery) => self.discovery.store(Some(discovery.clone())),
            Err(error) => *last_failure = Some((Instant::now(), error.clone())),
        }
        fetched
    }

    async fn fetch_discovery(&self) -> Result<Arc<Discovery>, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self.get(&url).await?;
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("the discovery document is invalid: {e}"))?;
        // OpenID Connect Discovery §4.3: the issuer must be identical.
        if discovery.issuer != self.config.issuer {
            return Err(format!(
                "the discovery document names issuer {:?}, not {:?}",
                discovery.issuer, self.config.issuer
            ));
        }
        for url in [
            &discovery.authorization_endpoint,
            &discovery.token_endpoint,
            &discovery.jwks_uri,
        ] {
            if url.scheme() != "https" {
                return Err(format!("the discovery document names {url}, not https"));
            }
        }
        Ok(Arc::new(discovery))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| e.to_string())?;
        let response = self.http.send(request).await.map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("{url} answered {}", response.status()));
        }
        Ok(response.into_body())
    }

    /// Fetches the key set unless rate limited (see [`KeyCache::refresh`]).
    async fn refresh_keys(&self, seen: u64) -> Result<Refreshed, String> {
        let result = self
            .keys
            .refresh(seen, || async {
                let discovery = self.discovery().await?;
                let body = self.get(discovery.jwks_uri.as_str()).await?;
                keys::parse_jwks(&body)
            })
            .await;
        if let Err(error) = &result {
            tracing::warn!(auth.provider = %self.config.name, %error, "fetching the provider's keys failed");
        }
        result
    }

    /// Verifies `token`: signature and claims, with the keys in memory; an
    /// unknown key id refreshes them first (single-flight, rate limited).
    async fn verify(self: &Arc<Self>, token: &str) -> Result<Claims, AuthnError> {
        let (kid, _) = verify::header(token).map_err(|e| self.refused(&e))?;
        let mut keys = self.keys.current();
        if !keys.knows(kid.as_deref()) {
            keys = match self.refresh_keys(keys.generation).await {
                Ok(Refreshed::Fresh(keys) | Refreshed::RateLimited(keys))
                    if keys.fetched_at.is_some() =>
                {
                    keys
                }
                // Nothing cached to decide with, or the provider could not
                // be asked (now, or at the last attempt, too recent to try
                // again): the key may be one it rotated to. Not the
                // caller's fault, so 503, not 401.
                _ => return Err(self.unavailable()),
            };
        } else {
            self.refresh_if_old(&keys);
        }
        verify::verify(&self.config, &keys, token).map_err(|e| self.refused(&e))
    }

    /// Keys older than the maximum age are fetched again in the background;
    /// this request goes on with the ones it has.
    fn refresh_if_old(self: &Arc<Self>, keys: &Keys) {
        let old = keys
            .fetched_at
            .is_some_and(|at| at.elapsed() > self.config.key_max_age);
        if old && !self.keys.refreshing() {
            let this = self.clone();
            let seen = keys.generation;
            tokio::spawn(async move {
                let _ = this.refresh_keys(seen).await;
            });
        }
    }

    fn refused(&self, error: &TokenError) -> AuthnError {
        tracing::debug!(auth.provider = %self.config.name, %error, "OIDC token refused");
        AuthnError::Invalid
    }

    /// POSTs a grant to the token endpoint with the client's credentials
    /// (`client_secret_basic`).
    async fn token_request(
        &self,
        form: &[(&str, &str)],
    ) -> Result<TokenAnswer, TokenEndpointError> {
        #[derive(Deserialize)]
        struct Answer {
            id_token: Option<String>,
            access_token: Option<String>,
            refresh_token: Option<String>,
            error: Option<String>,
        }
        let discovery = self
            .discovery()
            .await
            .map_err(TokenEndpointError::Unavailable)?;
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        // RFC 6749 §2.3.1: id and secret form-encoded, then Basic.
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let basic = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(
                "{}:{}",
                encode(&self.config.client_id),
                encode(self.config.client_secret.expose_secret())
            ),
        );
        let mut authorization = http::HeaderValue::from_str(&format!("Basic {basic}"))
            .map_err(|e| TokenEndpointError::Unavailable(e.to_string()))?;
        authorization.set_sensitive(true);
        let request = Request::builder()
            .method(Method::POST)
            .uri(discovery.token_endpoint.as_str())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header(header::AUTHORIZATION, authorization)
            .body(body.into_bytes())
            .map_err(|e| TokenEndpointError::Unavailable(e.to_string()))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| TokenEndpointError::Unavailable(e.to_string()))?;
        let status = response.status();
        let answer: Option<Answer> = serde_json::from_slice(response.body()).ok();
        if status.is_server_error() || (answer.is_none() && !status.is_client_error()) {
            return Err(TokenEndpointError::Unavailable(format!(
                "the token endpoint answered {status}"
            )));
        }
        match answer {
            Some(answer) if status.is_success() && answer.error.is_none() => Ok(TokenAnswer {
                id_token: answer.id_token.map(SecretString::from),
                access_token: answer.access_token.map(SecretString::from),
                refresh_token: answer.refresh_token.map(SecretString::from),
            }),
            Some(Answer { error: Some(e), .. }) => {
                Err(TokenEndpointError::Rejected(flow::sanitize(&e)))
            }
            _ => Err(TokenEndpointError::Rejected(format!(
                "the token endpoint answered {status}"
            ))),
        }
    }

    async fn keep_refresh_token(&self, user_id: &str, refresh_token: &SecretString) {
        let Some(vault) = self.vault.get() else {
            return;
        };
        if let Err(error) = vault.keep(REFRESH_PURPOSE, user_id, refresh_token).await {
            tracing::warn!(auth.provider = %self.config.name, %error, "keeping the refresh token failed");
        }
    }

    async fn stored_refresh_token(&self, user_id: &str) -> Option<SecretString> {
        self.vault.get()?.token(REFRESH_PURPOSE, user_id).await
    }

    /// Opens a refresh token an earlier version kept in a file (sealed with
    /// the provider's own key), to move it into the vault.
    fn open_file_token(&self, sealed: &str) -> Option<SecretString> {
        let plain = self.sealer.open(REFRESH_PURPOSE, sealed.trim())?;
        String::from_utf8(plain).ok().map(SecretString::from)
    }

    /// The claims of a user from the userinfo endpoint (a refresh answered
    /// without an ID token). Failures are transient: only the token
    /// endpoint's `invalid_grant` ends a user's access.
    async fn userinfo(&self, access_token: &SecretString) -> Result<Claims, RefreshError> {
        let unavailable = |reason: String| RefreshError::Unavailable {
            reason,
            retry_after_secs: 0,
        };
        let discovery = self.discovery().await.map_err(unavailable)?;
        let url = discovery
            .userinfo_endpoint
            .clone()
            .ok_or(RefreshError::NotRefreshable)?;
        let mut bearer =
            http::HeaderValue::from_str(&format!("Bearer {}", access_token.expose_secret()))
                .map_err(|_| RefreshError::NotRefreshable)?;
        bearer.set_sensitive(true);
        let request = Request::get(url.as_str())
            .header(header::AUTHORIZATION, bearer)
            .header(header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| unavailable(e.to_string()))?;
        let response = self
            .http
            .send(request)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if response.status() != StatusCode::OK {
            return Err(unavailable(format!(
                "userinfo answered {}",
                response.status()
            )));
        }
        serde_json::from_slice(response.body())
            .map(Claims)
            .map_err(|_| unavailable("userinfo is not JSON".to_owned()))
    }
}

impl ExternalProvider for OidcProvider {
    fn name(&self) -> &str {
        &self.inner.config.name
    }

    fn credential_kind(&self) -> CredentialKind {
        if self.inner.config.password_grant {
            CredentialKind::Password
        } else {
            CredentialKind::Token
        }
    }

    /// An ID token (from the browser flow, or presented to the login
    /// endpoint) is verified like a bearer token; a password goes through
    /// the provider's password grant when enabled, and the refresh token it
    /// yields is kept.
    fn login<'a>(
        &'a self,
        credential: LoginCredential<'a>,
        _gate: AccountGate<'a>,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>> {
        Box::pin(async move {
            let inner = &self.inner;
            match credential {
                LoginCredential::Token(token) => self.verify_token(token.expose_secret()).await,
                LoginCredential::Password { username, password } => {
                    if !inner.config.password_grant
                        || username.is_empty()
                        || password.expose_secret().is_empty()
                    {
                        return Err(AuthnError::Invalid);
                    }
                    let mut scope = vec!["openid"];
                    scope.extend(
                        inner
                            .config
                            .scopes
                            .iter()
                            .map(String::as_str)
                            .filter(|s| *s != "openid"),
                    );
                    let answer = inner
                        .token_request(&[
                            ("grant_type", "password"),
                            ("username", username),
                            ("password", password.expose_secret()),
                            ("scope", &scope.join(" ")),
                        ])
                        .await
                        .map_err(|e| match e {
                            TokenEndpointError::Rejected(code) if code == "invalid_grant" => {
                                AuthnError::Invalid
                            }
                            // invalid_client, unauthorized_client, ...: Paddock's
                            // configuration, not the person's password.
                            TokenEndpointError::Rejected(reason)
                            | TokenEndpointError::Unavailable(reason) => {
                                tracing::warn!(auth.provider = %inner.config.name, %reason, "password grant failed");
                                inner.unavailable()
                            }
                        })?;
                    let id_token = answer.id_token.ok_or(AuthnError::Invalid)?;
                    let user = self.verify_token(id_token.expose_secret()).await?;
                    if let Some(refresh) = &answer.refresh_token {
                        inner
                            .keep_refresh_token(&user_id_for(&user.principal.id), refresh)
                            .await;
                    }
                    Ok(user)
                }
            }
        })
    }

    fn admit(&self, user: &ExternalUser, bound: &dyn Fn(&str) -> bool) -> Result<(), AuthnError> {
        self.check_access(user, bound)
    }

    fn refresh_schedule(&self) -> RefreshSchedule {
        let mut schedule = self.inner.config.refresh;
        schedule.interval = schedule.interval.max(Duration::from_secs(1));
        schedule
    }

    /// Redeems the stored refresh token: the new ID token's (or userinfo's)
    /// groups are the user's groups now. `invalid_grant` (the session ended
    /// at the provider, the user was disabled) is access lost.
    fn refresh<'a>(
        &'a self,
        known: &'a KnownUser,
    ) -> BoxFuture<'a, Result<ExternalUser, RefreshError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let token = inner
                .stored_refresh_token(&known.user_id)
                .await
                .ok_or(RefreshError::NotRefreshable)?;
            let answer = inner
                .token_request(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", token.expose_secret()),
                ])
                .await
                .map_err(|e| match e {
                    // The refresh token is expired or revoked, the user
                    // disabled: RFC 6749 §5.2.
                    TokenEndpointError::Rejected(code) if code == "invalid_grant" => {
                        RefreshError::AccessLost {
                            reason: "the provider refused the refresh token (invalid_grant)"
                                .to_owned(),
                        }
                    }
                    // Anything else is Paddock's client setup or the
                    // provider's trouble: never a reason to end sessions.
                    TokenEndpointError::Rejected(reason)
                    | TokenEndpointError::Unavailable(reason) => RefreshError::Unavailable {
                        reason,
                        retry_after_secs: 0,
                    },
                })?;
            if let Some(rotated) = &answer.refresh_token {
                inner.keep_refresh_token(&known.user_id, rotated).await;
            }
            let claims = match (&answer.id_token, &answer.access_token) {
                (Some(id_token), _) => {
                    inner.verify(id_token.expose_secret()).await.map_err(|_| {
                        RefreshError::Unavailable {
                            reason: "the refreshed ID token did not verify".to_owned(),
                            retry_after_secs: 0,
                        }
                    })?
                }
                (None, Some(access_token)) => inner.userinfo(access_token).await?,
                (None, None) => return Err(RefreshError::NotRefreshable),
            };
            let user = verify::external_user(&inner.config, &claims).map_err(|e| {
                RefreshError::Unavailable {
                    reason: e.to_string(),
                    retry_after_secs: 0,
                }
            })?;
            if user.principal.id != known.principal {
                return Err(RefreshError::AccessLost {
                    reason: "the refresh token belongs to another user".to_owned(),
                });
            }
            Ok(user)
        })
    }

    /// Keeps refresh tokens in `vault` from now on, after moving there the
    /// ones an earlier version kept in files (`token_dir`).
    fn keep_tokens_in(&self, vault: TokenVault) {
        let inner = &self.inner;
        if let Some(dir) = &inner.config.token_dir {
            vault.import_files(REFRESH_PURPOSE, dir, |sealed| inner.open_file_token(sealed));
        }
        let _ = inner.vault.set(vault);
    }

    fn forget(&self, user_id: &str) {
        if let Some(vault) = self.inner.vault.get() {
            vault.forget(user_id);
        }
    }

    fn recognizes_bearer(&self, token: &str) -> bool {
        looks_like_jwt(token)
            && verify::unverified_issuer(token).as_deref() == Some(&self.inner.config.issuer)
    }

    fn verify_bearer<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<VerifiedBearer, AuthnError>> {
        Box::pin(async move {
            let claims = self.inner.verify(token).await?;
            let user = verify::external_user(&self.inner.config, &claims)
                .map_err(|e| self.inner.refused(&e))?;
            Ok(VerifiedBearer {
                user,
                expires_at: claims.expires_at(),
            })
        })
    }
}

#[cfg(test)]
mod tests;
