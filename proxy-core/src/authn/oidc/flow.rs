//! The authorization code flow (OpenID Connect Core §3.1) as a browser
//! takes it: the authorize redirect carries a random `state`, a random
//! `nonce` and a PKCE S256 challenge (RFC 7636), all kept in a short-lived
//! cookie sealed with the provider's key; the callback checks the state in
//! constant time and once only, and hands back the code, the verifier and
//! the nonce the ID token must carry.

use std::time::Duration;

use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use url::Url;

use crate::authn::seal::Sealer;

/// The cookie carrying the sealed state between login and callback (its
/// path is the provider's own, so providers do not share it).
pub const STATE_COOKIE: &str = "paddock_oidc_state";
/// How long a login may take at the provider.
pub const STATE_LIFETIME: Duration = Duration::from_secs(600);

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// No state cookie came back (another browser, expired, or cookies off).
    #[error("the login state cookie is missing: start the login again")]
    MissingState,
    /// The cookie does not decrypt, or `state` does not match it.
    #[error("the login state does not match: start the login again")]
    StateMismatch,
    /// The login took longer than allowed.
    #[error("the login took too long: start the login again")]
    Expired,
    /// This state was already used once.
    #[error("this login was already completed: start the login again")]
    Replayed,
    /// The provider sent an error (the user declined, for one).
    #[error("the provider did not authorize the login: {0}")]
    Denied(String),
    /// The callback carried no code.
    #[error("the provider sent no authorization code")]
    MissingCode,
}

/// What the state cookie holds.
#[derive(Serialize, Deserialize)]
struct StatePayload {
    /// `state`.
    s: String,
    /// The PKCE verifier.
    v: String,
    /// `nonce`.
    n: String,
    /// Where to go after login (already validated).
    r: String,
    /// The redirect URI sent.
    c: String,
    /// Expiry, unix seconds.
    e: u64,
}

/// A started login.
#[derive(Debug)]
pub struct Started {
    /// The provider's authorize URL with every parameter.
    pub location: Url,
    /// The sealed state cookie's value.
    pub cookie: String,
}

/// A checked callback: what the code exchange needs.
pub struct Callback {
    /// The authorization code.
    pub code: String,
    /// The PKCE verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The redirect URI the code was issued for.
    pub redirect_uri: String,
    /// Where the browser goes next.
    pub redirect_to: String,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("redirect_to", &self.redirect_to)
            .finish_non_exhaustive()
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// The flow's state: the sealer and the states already used.
pub struct Flow {
    sealer: std::sync::Arc<Sealer>,
    used: moka::sync::Cache<[u8; 32], ()>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").finish_non_exhaustive()
    }
}

impl Flow {
    /// A flow sealing its cookies with `sealer`.
    pub fn new(sealer: std::sync::Arc<Sealer>) -> Self {
        Self {
            sealer,
            used: moka::sync::Cache::builder()
                .time_to_live(STATE_LIFETIME)
                .max_capacity(100_000)
                .build(),
        }
    }

    /// Starts a login at `authorize` for `client_id`, returning to
    /// `callback` and then to `redirect_to` (validated by the caller).
    pub fn start(
        &self,
        authorize: &Url,
        client_id: &str,
        scopes: &[String],
        callback: &Url,
        redirect_to: &str,
    ) -> Started {
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        let mut scope: Vec<&str> = vec!["openid"];
        scope.extend(scopes.iter().map(String::as_str).filter(|s| *s != "openid"));
        let mut location = authorize.clone();
        location
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", callback.as_str())
            .append_pair("scope", &scope.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        let payload = StatePayload {
            s: state,
            v: verifier,
            n: nonce,
            r: redirect_to.to_owned(),
            c: callback.to_string(),
            e: unix_now() + STATE_LIFETIME.as_secs(),
        };
        let json = serde_json::to_vec(&payload).expect("serializable");
        Started {
            location,
            cookie: self.sealer.seal(STATE_COOKIE, &json),
        }
    }

    /// Checks a callback: `query` is its query string, `cookie` the state
    /// cookie's value if the browser sent one. The state is used up.
    pub fn finish(&self, query: &str, cookie: Option<&str>) -> Result<Callback, FlowError> {
        let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let cookie = cookie.ok_or(FlowError::MissingState)?;
        let plain = self
            .sealer
            .open(STATE_COOKIE, cookie)
            .ok_or(FlowError::StateMismatch)?;
        let payload: StatePayload =
            serde_json::from_slice(&plain).map_err(|_| FlowError::StateMismatch)?;
        let given = param("state").unwrap_or("");
        if given.is_empty() || !bool::from(given.as_bytes().ct_eq(payload.s.as_bytes())) {
            return Err(FlowError::StateMismatch);
        }
        if unix_now() > payload.e {
            return Err(FlowError::Expired);
        }
        let key: [u8; 32] = Sha256::digest(payload.s.as_bytes()).into();
        let mut fresh = false;
        self.used.entry(key).or_insert_with(|| fresh = true);
        if !fresh {
            return Err(FlowError::Replayed);
        }
        if let Some(error) = param("error") {
            return Err(FlowError::Denied(sanitize(error)));
        }
        let code = param("code")
            .filter(|c| !c.is_empty())
            .ok_or(FlowError::MissingCode)?;
        Ok(Callback {
            code: code.to_owned(),
            verifier: payload.v,
            nonce: payload.n,
            redirect_uri: payload.c,
            redirect_to: payload.r,
        })
    }
}

/// Error codes are shown on pages: keep only what an error code is made of.
pub(crate) fn sanitize(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn flow() -> Flow {
        Flow::new(std::sync::Arc::new(Sealer::new(&SecretString::from("k"))))
    }

    #[test]
    fn the_authorize_url_carries_state_nonce_and_an_s256_challenge() {
        let flow = flow();
        let authorize = Url::parse("https://idp.example/auth?x=1").unwrap();
        let callback = Url::parse("https://paddock.example/cb").unwrap();
        let started = flow.start(
            &authorize,
            "paddock",
            &["groups".into()],
            &callback,
            "/paddock/",
        );
        let query: std::collections::HashMap<_, _> =
            started.location.query_pairs().into_owned().collect();
        assert_eq!(query["x"], "1");
        assert_eq!(query["code_challenge_method"], "S256");
        assert_eq!(query["scope"], "openid groups");
        assert_eq!(query["redirect_uri"], "https://paddock.example/cb");
        assert!(query["state"].len() >= 43 && query["nonce"].len() >= 43);
        let callback = flow
            .finish(
                &format!("code=c0de&state={}", query["state"]),
                Some(&started.cookie),
            )
            .unwrap();
        assert_eq!(callback.code, "c0de");
        assert_eq!(callback.nonce, query["nonce"]);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(callback.verifier.as_bytes()));
        assert_eq!(challenge, query["code_challenge"]);
        // Once only.
        assert_eq!(
            flow.finish(
                &format!("code=c0de&state={}", query["state"]),
                Some(&started.cookie)
            )
            .unwrap_err(),
            FlowError::Replayed
        );
    }

    #[test]
    fn a_wrong_or_missing_state_is_refused() {
        let flow = flow();
        let url = Url::parse("https://idp.example/auth").unwrap();
        let started = flow.start(&url, "c", &[], &url, "/");
        assert_eq!(
            flow.finish("code=x&state=other", Some(&started.cookie))
                .unwrap_err(),
            FlowError::StateMismatch
        );
        assert_eq!(
            flow.finish("code=x&state=", Some(&started.cookie))
                .unwrap_err(),
            FlowError::StateMismatch
        );
        assert_eq!(
            flow.finish("code=x&state=a", None).unwrap_err(),
            FlowError::MissingState
        );
        assert_eq!(
            flow.finish("code=x&state=a", Some("garbage")).unwrap_err(),
            FlowError::StateMismatch
        );
    }
}
