//! What the GitHub provider is built from: the OAuth app, where GitHub (or
//! GitHub Enterprise) lives, who may log in, and how often groups are
//! refreshed.

use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::net::OutboundProxy;

/// Where the OAuth endpoints and the REST API live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubEndpoints {
    /// Base of `/login/oauth/authorize` and `/login/oauth/access_token`.
    pub oauth: Url,
    /// Base of the REST API (`/user`, `/user/teams`, ...).
    pub api: Url,
}

impl GithubEndpoints {
    /// github.com: OAuth at `https://github.com`, API at `https://api.github.com`.
    pub fn github_com() -> Self {
        Self {
            oauth: Url::parse("https://github.com/").expect("static URL"),
            api: Url::parse("https://api.github.com/").expect("static URL"),
        }
    }

    /// GitHub Enterprise Server at `host` (`ghe.example.com[:port]`): OAuth
    /// at `https://HOST/login/oauth/*`, API at `https://HOST/api/v3`.
    pub fn enterprise(host: &str) -> Result<Self, String> {
        if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
            return Err(format!(
                "{host:?} is not a host name (like ghe.example.com or ghe.example.com:8443)"
            ));
        }
        let oauth = Url::parse(&format!("https://{host}/"))
            .map_err(|e| format!("{host:?} is not a host name: {e}"))?;
        let api = oauth.join("api/v3/").map_err(|e| e.to_string())?;
        Ok(Self { oauth, api })
    }

    /// Explicit base URLs (both `https://`), e.g. an emulator in tests.
    pub fn custom(oauth: &str, api: &str) -> Result<Self, String> {
        let parse = |s: &str| -> Result<Url, String> {
            let with_slash = if s.ends_with('/') {
                s.to_owned()
            } else {
                format!("{s}/")
            };
            let url = Url::parse(&with_slash).map_err(|e| format!("{s:?}: {e}"))?;
            if url.scheme() != "https" || url.host().is_none() {
                return Err(format!("{s:?} is not an https:// URL"));
            }
            Ok(url)
        };
        Ok(Self {
            oauth: parse(oauth)?,
            api: parse(api)?,
        })
    }

    /// `https://HOST/login/oauth/authorize`.
    pub fn authorize_url(&self) -> Url {
        self.oauth
            .join("login/oauth/authorize")
            .expect("relative URL")
    }

    /// `https://HOST/login/oauth/access_token`.
    pub fn token_url(&self) -> Url {
        self.oauth
            .join("login/oauth/access_token")
            .expect("relative URL")
    }
}

pub use crate::authn::external::AccessMode;

/// How the background refresh of organisations and teams runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshSettings {
    /// Groups older than this are refreshed.
    pub max_age: Duration,
    /// Up to this much is added at random to each user's next refresh, so
    /// users who logged in together are not refreshed together.
    pub jitter: Duration,
    /// How often the refresher looks for stale users.
    pub interval: Duration,
}

impl Default for RefreshSettings {
    fn default() -> Self {
        Self {
            max_age: Duration::from_secs(3600),
            jitter: Duration::from_secs(300),
            interval: Duration::from_secs(60),
        }
    }
}

/// The GitHub provider's settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct GithubConfig {
    /// The OAuth app's client id.
    pub client_id: String,
    /// The OAuth app's client secret.
    pub client_secret: SecretString,
    /// Where GitHub lives.
    pub endpoints: GithubEndpoints,
    /// PEM CA bundle to verify GitHub (Enterprise) with instead of the
    /// system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Scopes asked for (`read:org user:email`).
    pub scopes: Vec<String>,
    /// Who may log in.
    pub access_mode: AccessMode,
    /// Allowed principals for `required` and `restricted`: ids
    /// (`github_user://583231`, `github_org://1001`, `github_team://5001`)
    /// or display names (`octocat`, `acme`, `acme:platform`), the latter
    /// compared case-insensitively.
    pub allowed: Vec<String>,
    /// The public callback URL registered with the OAuth app; without it,
    /// `https://<Host of the login request>/paddock/v1/github/callback`.
    pub redirect_url: Option<Url>,
    /// 32 bytes keying the encryption of the state cookie (and of the
    /// token files of earlier versions, see `token_dir`).
    pub encryption_key: SecretString,
    /// Timeout of every request to GitHub.
    pub timeout: Duration,
    /// The HTTP proxy requests to GitHub go through (default: none; the
    /// binary's is `HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: OutboundProxy,
    /// Background refresh.
    pub refresh: RefreshSettings,
    /// Where an earlier version kept users' GitHub tokens, one file each
    /// sealed with `encryption_key` (the binary's `<data dir>/github-tokens`):
    /// moved into the vault the provider is given
    /// ([`ExternalProvider::keep_tokens_in`](crate::authn::external::ExternalProvider::keep_tokens_in)),
    /// then removed. Tokens are kept in that vault only.
    pub token_dir: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for GithubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GithubConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("endpoints", &self.endpoints)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[PEM]"))
            .field("scopes", &self.scopes)
            .field("access_mode", &self.access_mode)
            .field("allowed", &self.allowed)
            .field("redirect_url", &self.redirect_url)
            .field("encryption_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("proxy", &self.proxy)
            .field("refresh", &self.refresh)
            .field("token_dir", &self.token_dir)
            .finish()
    }
}

impl GithubConfig {
    /// github.com settings for an OAuth app, with the default scopes
    /// (`read:org user:email`), access mode `unrestricted` and a 10 s
    /// timeout. `encryption_key` is any secret string; it is stretched to a
    /// key with SHA-256.
    pub fn new(
        client_id: impl Into<String>,
        client_secret: SecretString,
        encryption_key: SecretString,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            endpoints: GithubEndpoints::github_com(),
            ca_pem: None,
            scopes: vec!["read:org".to_owned(), "user:email".to_owned()],
            access_mode: AccessMode::Unrestricted,
            allowed: Vec::new(),
            redirect_url: None,
            encryption_key,
            timeout: Duration::from_secs(10),
            proxy: OutboundProxy::default(),
            refresh: RefreshSettings::default(),
            token_dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enterprise_hosts_put_the_api_under_api_v3() {
        let e = GithubEndpoints::enterprise("ghe.example.com:8443").unwrap();
        assert_eq!(
            e.authorize_url().as_str(),
            "https://ghe.example.com:8443/login/oauth/authorize"
        );
        assert_eq!(
            e.token_url().as_str(),
            "https://ghe.example.com:8443/login/oauth/access_token"
        );
        assert_eq!(e.api.as_str(), "https://ghe.example.com:8443/api/v3/");
        for bad in ["", "ghe/x", "https://ghe", "a@b"] {
            assert!(GithubEndpoints::enterprise(bad).is_err(), "{bad}");
        }
        assert_eq!(
            GithubEndpoints::github_com().api.as_str(),
            "https://api.github.com/"
        );
        assert!(GithubEndpoints::custom("http://x", "https://y").is_err());
    }

    #[test]
    fn debug_redacts_secrets() {
        let config = GithubConfig::new(
            "id",
            SecretString::from("s3cr3t-value"),
            SecretString::from("k3y-value"),
        );
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("k3y"),
            "{debug}"
        );
    }
}
