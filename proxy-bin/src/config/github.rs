//! `authentication.github:`: the GitHub / GitHub Enterprise provider's
//! settings, validated at load, and the provider built from them.
//!
//! ```yaml
//! authentication:
//!   github:
//!     clientId: Iv1.0123456789abcdef
//!     clientSecretFile: /etc/paddock/github-client-secret   # or clientSecretEnv: NAME
//!     host: ghe.example.com          # GitHub Enterprise; omit for github.com
//!     caFile: /etc/paddock/ghe-ca.crt
//!     scopes: [read:org, user:email]
//!     accessMode: required           # unrestricted | restricted | required
//!     allowed: [acme, "acme:platform", octocat, "github_team://5001"]
//!     redirectUrl: https://paddock.example.com/paddock/v1/github/callback
//!     encryptionKeyFile: /etc/paddock/github-key  # default: <dataDir>/github-key
//!     refresh: {maxAgeSeconds: 3600, jitterSeconds: 300}
//! ```

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use proxy_core::authn::github::{
    AccessMode, GithubConfig, GithubEndpoints, GithubProvider, RefreshSettings,
};
use proxy_core::net::OutboundProxy;
use secrecy::SecretString;
use serde::Deserialize;

use super::{ConfigError, Errors};

/// `authentication.github:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct GithubSection {
    /// The OAuth app's client id.
    #[serde(default)]
    pub(crate) client_id: String,
    /// File holding the client secret.
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    pub(crate) client_secret_env: Option<String>,
    /// GitHub Enterprise host (`ghe.example.com[:port]`).
    pub(crate) host: Option<String>,
    /// Explicit OAuth base URL (with `apiUrl`; instead of `host`).
    pub(crate) oauth_url: Option<String>,
    /// Explicit API base URL.
    pub(crate) api_url: Option<String>,
    /// CA bundle to verify GitHub with.
    #[serde(rename = "caFile")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Scopes (default `read:org`, `user:email`).
    pub(crate) scopes: Option<Vec<String>>,
    /// `unrestricted` (default), `restricted` or `required`.
    pub(crate) access_mode: Option<String>,
    /// Allowed users, organisations and teams (ids or names).
    #[serde(default)]
    pub(crate) allowed: Vec<String>,
    /// The callback URL registered with the OAuth app.
    pub(crate) redirect_url: Option<String>,
    /// Key for the state cookie and stored tokens.
    pub(crate) encryption_key_file: Option<PathBuf>,
    /// Seconds per request to GitHub (default 10).
    pub(crate) timeout_seconds: Option<u64>,
    /// Background refresh.
    #[serde(default)]
    pub(crate) refresh: RefreshSection,
}

/// `authentication.github.refresh:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RefreshSection {
    /// Groups older than this are refreshed (default 3600).
    pub(crate) max_age_seconds: Option<u64>,
    /// Random extra delay per user (default 300).
    pub(crate) jitter_seconds: Option<u64>,
    /// How often to look for stale users (default 60).
    pub(crate) interval_seconds: Option<u64>,
}

const AT: &str = "authentication.github";

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: format!("{AT}.{key}"),
        message: message.into(),
    }
}

impl GithubSection {
    /// Checks everything before a port is bound (the secret is read here),
    /// recording each error found.
    pub(crate) fn check(&self, errors: &mut Errors) {
        let mut push = |e: ConfigError| errors.push(e.path, e.message);
        if self.client_id.trim().is_empty() {
            push(error("clientId", "required"));
        }
        if let Err(e) = self.client_secret() {
            push(e);
        }
        if let Err(e) = self.endpoints() {
            push(e);
        }
        if let Some(ca) = &self.ca_file {
            let checked = std::fs::read(ca)
                .map_err(|e| error("caFile", format!("cannot read {}: {e}", ca.display())))
                .and_then(|pem| {
                    proxy_core::authn::github::HttpClient::new(
                        Some(&pem),
                        Duration::from_secs(1),
                        OutboundProxy::default(),
                    )
                    .map_err(|e| error("caFile", e))
                });
            if let Err(e) = checked {
                push(e);
            }
        }
        match self.access_mode() {
            Ok(AccessMode::Required) if self.allowed.is_empty() => push(error(
                "allowed",
                "accessMode required needs at least one allowed user, organisation or team",
            )),
            Ok(_) => {}
            Err(e) => push(e),
        }
        for (index, entry) in self.allowed.iter().enumerate() {
            if let Some((kind, id)) = entry.split_once("://") {
                let valid = matches!(kind, "github_user" | "github_org" | "github_team")
                    && !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_digit());
                if !valid {
                    push(error(
                        &format!("allowed[{index}]"),
                        format!(
                            "{entry:?} is not a github_user://, github_org:// or github_team:// id"
                        ),
                    ));
                }
            } else if entry.trim().is_empty() {
                push(error(&format!("allowed[{index}]"), "must not be empty"));
            }
        }
        if let Some(url) = &self.redirect_url {
            match url::Url::parse(url) {
                Err(e) => push(error("redirectUrl", format!("{url:?}: {e}"))),
                Ok(parsed)
                    if parsed.scheme() != "https"
                        || parsed.path() != "/paddock/v1/github/callback" =>
                {
                    push(error(
                        "redirectUrl",
                        "must be https://<paddock host>/paddock/v1/github/callback",
                    ));
                }
                Ok(_) => {}
            }
        }
        if let Err(e) =
            super::secrets::check_encryption_key(AT, self.encryption_key_file.as_deref())
        {
            push(e);
        }
        if self.timeout_seconds == Some(0) {
            push(error("timeoutSeconds", "must be at least 1"));
        }
        for (key, value) in [
            ("refresh.maxAgeSeconds", self.refresh.max_age_seconds),
            ("refresh.intervalSeconds", self.refresh.interval_seconds),
        ] {
            if value == Some(0) {
                push(error(key, "must be at least 1"));
            }
        }
    }

    fn client_secret(&self) -> Result<SecretString, ConfigError> {
        super::secrets::client_secret(
            AT,
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )
    }

    fn endpoints(&self) -> Result<GithubEndpoints, ConfigError> {
        match (&self.host, &self.oauth_url, &self.api_url) {
            (None, None, None) => Ok(GithubEndpoints::github_com()),
            (Some(host), None, None) => {
                GithubEndpoints::enterprise(host).map_err(|e| error("host", e))
            }
            (None, Some(oauth), Some(api)) => {
                GithubEndpoints::custom(oauth, api).map_err(|e| error("oauthUrl", e))
            }
            (Some(_), _, _) => Err(error("host", "set either host or oauthUrl and apiUrl")),
            (None, _, _) => Err(error("oauthUrl", "oauthUrl and apiUrl go together")),
        }
    }

    fn access_mode(&self) -> Result<AccessMode, ConfigError> {
        self.access_mode
            .as_deref()
            .map_or(Ok(AccessMode::Unrestricted), str::parse)
            .map_err(|e: String| error("accessMode", e))
    }

    /// The provider, reaching GitHub through `proxy`; the encryption key is
    /// read from `encryptionKeyFile`, else from (or created in)
    /// `<data_dir>/github-key`.
    pub(crate) fn provider(
        &self,
        data_dir: &Path,
        proxy: &OutboundProxy,
    ) -> Result<Arc<GithubProvider>, ConfigError> {
        let key = super::secrets::encryption_key(
            AT,
            self.encryption_key_file.as_deref(),
            &data_dir.join("github-key"),
        )?;
        let mut config = GithubConfig::new(self.client_id.trim(), self.client_secret()?, key);
        config.endpoints = self.endpoints()?;
        config.proxy = proxy.clone();
        // Where earlier versions kept users' tokens: moved into the store.
        config.token_dir = Some(data_dir.join("github-tokens"));
        if let Some(ca) = &self.ca_file {
            config.ca_pem = Some(
                std::fs::read(ca)
                    .map_err(|e| error("caFile", format!("cannot read {}: {e}", ca.display())))?,
            );
        }
        if let Some(scopes) = &self.scopes {
            config.scopes.clone_from(scopes);
        }
        config.access_mode = self.access_mode()?;
        config.allowed.clone_from(&self.allowed);
        if let Some(url) = &self.redirect_url {
            config.redirect_url =
                Some(url::Url::parse(url).map_err(|e| error("redirectUrl", e.to_string()))?);
        }
        if let Some(secs) = self.timeout_seconds {
            config.timeout = Duration::from_secs(secs);
        }
        let defaults = RefreshSettings::default();
        config.refresh = RefreshSettings {
            max_age: self
                .refresh
                .max_age_seconds
                .map_or(defaults.max_age, Duration::from_secs),
            jitter: self
                .refresh
                .jitter_seconds
                .map_or(defaults.jitter, Duration::from_secs),
            interval: self
                .refresh
                .interval_seconds
                .map_or(defaults.interval, Duration::from_secs),
        };
        let provider = GithubProvider::new(config).map_err(|e| error("caFile", e))?;
        Ok(Arc::new(provider))
    }
}
