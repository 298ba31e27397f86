//! The one login entry: local passwords, directory passwords and provider
//! tokens (GitHub) all go through [`Accounts::login`], with one throttle.

use std::{net::IpAddr, sync::Arc, time::Instant};

use secrecy::ExposeSecret;
use sha2::Digest;

use super::local;
use super::{Accounts, LoggedIn};
use crate::authn::{
    external::{user_id_for, GateRefused, LoginCredential},
    AuthnError,
};

/// The throttle key of an attempt at `provider`: the name typed, or a
/// digest of the token (never the token itself).
fn throttle_key(credential: &LoginCredential<'_>, provider: &str) -> String {
    match credential {
        LoginCredential::Password { username, .. } => format!("{provider}/{username}"),
        LoginCredential::Token(token) => {
            let digest = sha2::Sha256::digest(token.expose_secret().as_bytes());
            format!("{provider}-token/{}", hex::encode(&digest[..12]))
        }
    }
}

fn is_empty(credential: &LoginCredential<'_>) -> bool {
    match credential {
        LoginCredential::Password { password, .. } => password.expose_secret().is_empty(),
        LoginCredential::Token(token) => token.expose_secret().trim().is_empty(),
    }
}

impl Accounts {
    /// Logs a person in with `provider`.
    ///
    /// Throttled per name typed (or token) and per address, and, once a
    /// directory resolved the name, per account, so every spelling of one
    /// account (`alice`, `CORP\alice`, `alice@corp.example`) shares one
    /// budget. Only the caller's failures count: a provider that is down or
    /// rate limited voids the attempt. An external user is stored (created on
    /// first login) with its groups, after the provider's own access rules
    /// admitted them. Every credential problem is [`AuthnError::Invalid`].
    pub async fn login(
        self: &Arc<Self>,
        provider: &str,
        credential: LoginCredential<'_>,
        client: IpAddr,
    ) -> Result<LoggedIn, AuthnError> {
        if is_empty(&credential) {
            return Err(AuthnError::Invalid);
        }
        if provider == local::PROVIDER {
            let LoginCredential::Password { username, password } = credential else {
                return Err(AuthnError::Invalid);
            };
            let login = self
                .local
                .login(username, password, client, Instant::now())
                .await?;
            return Ok(LoggedIn {
                user: login.user,
                provider: provider.to_owned(),
                must_change_password: login.must_change_password,
            });
        }
        let external = self.provider(provider).ok_or(AuthnError::Invalid)?.clone();
        let throttle = &self.throttle;
        let key = throttle_key(&credential, provider);
        throttle
            .begin_attempt(&key, client, Instant::now())
            .map_err(|t| AuthnError::Throttled {
                retry_after_secs: t.retry_after_secs,
            })?;
        let account = std::sync::Mutex::new(None::<String>);
        let gate = |id: &str| {
            let account_key = format!("{provider}/{id}");
            throttle
                .begin_account_attempt(&account_key, Instant::now())
                .map_err(|t| GateRefused {
                    retry_after_secs: t.retry_after_secs,
                })?;
            *account.lock().unwrap_or_else(|p| p.into_inner()) = Some(account_key);
            Ok(())
        };
        let result = external.login(credential, &gate).await;
        let account = account.into_inner().unwrap_or_else(|p| p.into_inner());
        // Not the caller's failure: the attempt does not count.
        let void = |this: &Self| {
            this.throttle.attempt_succeeded(&key, client);
            if let Some(account) = &account {
                this.throttle.account_attempt_void(account);
            }
        };
        let user = match result {
            Ok(user) => {
                self.set_provider_health(provider, None);
                user
            }
            Err(error @ AuthnError::Unavailable { .. }) => {
                void(self);
                self.set_provider_health(provider, Some(error.to_string()));
                return Err(error);
            }
            Err(error @ AuthnError::Throttled { .. }) if account.is_none() => {
                // The provider's own rate limit, not ours.
                void(self);
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        if let Err(error) = external.admit(&user, &|subject| self.has_binding(subject)) {
            void(self);
            let id = user_id_for(&user.principal.id);
            let provider = external.clone();
            let _ = tokio::task::spawn_blocking(move || provider.forget(&id)).await;
            return Err(error);
        }
        let this = self.clone();
        let user = tokio::task::spawn_blocking(move || this.upsert_external(&user))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|error| {
                tracing::warn!(%error, "storing an external user failed");
                AuthnError::Unavailable {
                    provider: "store".to_owned(),
                }
            })?;
        if !user.enabled {
            return Err(AuthnError::Invalid);
        }
        throttle.attempt_succeeded(&key, client);
        if let Some(account) = &account {
            throttle.account_attempt_succeeded(account);
        }
        Ok(LoggedIn {
            user,
            provider: provider.to_owned(),
            must_change_password: false,
        })
    }

    /// Whether `subject` (a user id or principal id) has a role binding.
    pub(crate) fn has_binding(&self, subject: &str) -> bool {
        super::has_binding(&self.view, subject)
    }
}
