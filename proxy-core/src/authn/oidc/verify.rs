//! Verifying one JWT with keys already in memory, and turning its claims
//! into a user: `jsonwebtoken` checks the signature with the key the
//! token's `kid` names (the algorithm must be one that key admits), `iss`
//! (exactly the configured issuer), `aud` (the client id or an allowed
//! audience), `exp` and `nbf` (with the configured leeway), and requires
//! `iss`, `aud`, `exp` and `sub` to be present (RFC 8725 §3.8–3.9;
//! `jsonwebtoken` checks absent claims only when told to).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::{decode, decode_header, Algorithm, Validation};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{config::OidcConfig, keys::Keys, keys::ALGORITHMS};
use crate::authn::external::{may_be_provider_bearer, ExternalUser, Principal};

/// Why a token was refused. Never shown to the caller (a refused token is
/// a plain 401); logged at debug level.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWS in compact form, or a header that cannot be read.
    #[error("not a JWT")]
    Malformed,
    /// `alg` is `none`, symmetric or otherwise not verified by Paddock.
    #[error("algorithm not allowed")]
    Algorithm,
    /// No key with the token's `kid` (after a refresh, if one was allowed).
    #[error("unknown signing key")]
    UnknownKey,
    /// Signature, issuer, audience, expiry or a required claim is wrong.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The cheap shape check of the request path: three base64url parts, a
/// header that starts as JSON does. Opaque tokens (Paddock's own, static
/// tokens) fail at the first byte or two.
pub fn looks_like_jwt(token: &str) -> bool {
    may_be_provider_bearer(token) && token.bytes().filter(|&b| b == b'.').count() == 2
}

/// The `iss` a token claims, unverified: which provider's keys to try.
pub fn unverified_issuer(token: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Issuer {
        iss: String,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<Issuer>(&bytes).ok().map(|i| i.iss)
}

/// The `kid` and `alg` of a token's header, the algorithm already checked
/// against the asymmetric list.
pub fn header(token: &str) -> Result<(Option<String>, Algorithm), TokenError> {
    let header = decode_header(token).map_err(|_| TokenError::Malformed)?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    Ok((header.kid, header.alg))
}

/// A verified token's claims.
#[derive(Debug, Clone)]
pub struct Claims(pub Map<String, Value>);

impl Claims {
    /// A string claim.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// `exp` as a time.
    pub fn expires_at(&self) -> SystemTime {
        let exp = self.0.get("exp").and_then(Value::as_u64).unwrap_or(0);
        UNIX_EPOCH + Duration::from_secs(exp)
    }
}

/// Verifies `token` with `keys`: the signature with a key admitting the
/// header's algorithm, then the claims.
pub fn verify(config: &OidcConfig, keys: &Keys, token: &str) -> Result<Claims, TokenError> {
    let (kid, alg) = header(token)?;
    let mut validation = Validation::new(alg);
    validation.leeway = config.leeway.as_secs();
    validation.validate_nbf = true;
    validation.set_issuer(&[config.issuer.as_str()]);
    let mut audiences = vec![config.client_id.as_str()];
    audiences.extend(config.audiences.iter().map(String::as_str));
    validation.set_audience(&audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let mut last = TokenError::UnknownKey;
    for key in keys.candidates(kid.as_deref(), alg) {
        match decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => {
                let claims = Claims(data.claims);
                check_claims(config, &claims)?;
                return Ok(claims);
            }
            Err(e) => last = TokenError::Invalid(e.to_string()),
        }
    }
    Err(last)
}

fn check_claims(config: &OidcConfig, claims: &Claims) -> Result<(), TokenError> {
    for (name, value) in &config.required_claims {
        if claims.str(name) != Some(value.as_str()) {
            return Err(TokenError::Invalid(format!(
                "required claim {name} is missing or different"
            )));
        }
    }
    if claims.str("sub").is_none_or(str::is_empty) {
        return Err(TokenError::Invalid("sub is empty".to_owned()));
    }
    Ok(())
}

/// The user principal of `sub` at `issuer`: `oidc_user://<issuer-hash>/<sub>`,
/// the hash the first 16 hex digits of SHA-256 of the issuer URL, so the
/// same `sub` at two issuers are two users, and a user is the same across
/// logins whatever their name or groups become.
pub fn user_principal(issuer: &str, sub: &str) -> String {
    let digest = Sha256::digest(issuer.as_bytes());
    format!("oidc_user://{}/{sub}", hex::encode(&digest[..8]))
}

/// The user a verified token stands for.
pub fn external_user(config: &OidcConfig, claims: &Claims) -> Result<ExternalUser, TokenError> {
    let sub = claims.str("sub").unwrap_or_default();
    let name = claims
        .str(&config.username_claim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            TokenError::Invalid(format!("the {} claim is missing", config.username_claim))
        })?;
    // kube-apiserver: an email user name must be verified when the token says.
    if config.username_claim == "email"
        && claims.0.get("email_verified").and_then(Value::as_bool) == Some(false)
    {
        return Err(TokenError::Invalid("email_verified is false".to_owned()));
    }
    let username = format!("{}{name}", config.effective_username_prefix());
    let mut groups: Vec<Principal> = match config.groups_claim.as_deref() {
        None => Vec::new(),
        Some(claim) => match claims.0.get(claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => many
                .iter()
                .map(|g| g.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| TokenError::Invalid(format!("{claim} is not a list of strings")))?,
            Some(_) => {
                return Err(TokenError::Invalid(format!(
                    "{claim} is not a string or a list of strings"
                )))
            }
        }
        .into_iter()
        .filter(|g| !g.is_empty())
        .map(|g| {
            let name = format!("{}{g}", config.groups_prefix);
            Principal::new(format!("oidc_group://{name}"), name)
        })
        .collect(),
    };
    groups.sort();
    groups.dedup();
    let display_name = claims
        .str("name")
        .filter(|n| !n.is_empty())
        .unwrap_or(name)
        .to_owned();
    Ok(ExternalUser {
        provider: config.name.clone(),
        principal: Principal::new(user_principal(&config.issuer, sub), username.clone()),
        username,
        display_name,
        email: claims.str("email").map(str::to_owned),
        groups,
        locator: None,
    })
}
