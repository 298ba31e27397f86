//! `authentication.oidc:`: OpenID Connect providers (Keycloak, Okta, Azure
//! AD, Dex, …), one entry each, validated at load, and the providers built
//! from them.
//!
//! ```yaml
//! authentication:
//!   oidc:
//!   - name: keycloak                 # logins, the callback path, principals' provider
//!     displayName: Keycloak          # "Sign in with Keycloak"
//!     issuerUrl: https://keycloak.example.com/realms/ops
//!     clientId: paddock
//!     clientSecretFile: /etc/paddock/keycloak-secret   # or clientSecretEnv: NAME
//!     caFile: /etc/paddock/keycloak-ca.crt
//!     scopes: [openid, email, profile, groups]
//!     usernameClaim: preferred_username   # default sub
//!     usernamePrefix: "keycloak:"    # default "<issuerUrl>#" ("" for email); "-" for none
//!     groupsClaim: groups            # default groups
//!     groupsPrefix: ""
//!     requiredClaims: {hd: example.com}
//!     audiences: [kubelogin]         # accepted besides clientId
//!     accessMode: restricted         # unrestricted | restricted | required
//!     allowed: [ops, "oidc_group://platform"]
//!     redirectUrl: https://paddock.example.com/paddock/v1/oidc/keycloak/callback
//!     encryptionKeyFile: /etc/paddock/oidc-key   # default: <dataDir>/oidc-key
//!     passwordGrant: false           # POST /paddock/v1/login with a password
//!     timeoutSeconds: 10
//!     leewaySeconds: 30
//!     keyRefreshMinIntervalSeconds: 10
//!     refresh: {maxAgeSeconds: 3600, jitterSeconds: 300, intervalSeconds: 60}
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use proxy_core::authn::{
    external::{AccessMode, RefreshSchedule},
    oidc::{OidcConfig, OidcProvider},
};
use proxy_core::net::OutboundProxy;
use serde::Deserialize;

use super::{github::RefreshSection, ConfigError, Errors};

/// One entry of `authentication.oidc:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct OidcSection {
    /// The provider's name.
    #[serde(default)]
    pub(crate) name: String,
    /// The sign-in button's label (default: the name).
    pub(crate) display_name: Option<String>,
    /// The issuer URL, exactly as the provider spells it.
    #[serde(default)]
    pub(crate) issuer_url: String,
    /// The client id.
    #[serde(default)]
    pub(crate) client_id: String,
    /// File holding the client secret.
    pub(crate) client_secret_file: Option<PathBuf>,
    /// Environment variable holding the client secret.
    pub(crate) client_secret_env: Option<String>,
    /// CA bundle to verify the provider with.
    #[serde(rename = "caFile")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Scopes (default openid, email, profile).
    pub(crate) scopes: Option<Vec<String>>,
    /// The claim naming the user (default sub).
    pub(crate) username_claim: Option<String>,
    /// Prefix of user names.
    pub(crate) username_prefix: Option<String>,
    /// The claim holding groups (default groups).
    pub(crate) groups_claim: Option<String>,
    /// Prefix of group names.
    pub(crate) groups_prefix: Option<String>,
    /// Claims every token must carry with these values.
    #[serde(default)]
    pub(crate) required_claims: BTreeMap<String, String>,
    /// Audiences accepted besides the client id.
    #[serde(default)]
    pub(crate) audiences: Vec<String>,
    /// `unrestricted` (default), `restricted` or `required`.
    pub(crate) access_mode: Option<String>,
    /// Allowed users and groups (principal ids or names).
    #[serde(default)]
    pub(crate) allowed: Vec<String>,
    /// The callback URL registered with the provider.
    pub(crate) redirect_url: Option<String>,
    /// Key for the state cookie and stored refresh tokens.
    pub(crate) encryption_key_file: Option<PathBuf>,
    /// Accept password logins through the provider's password grant.
    #[serde(default)]
    pub(crate) password_grant: bool,
    /// Seconds per request to the provider (default 10).
    pub(crate) timeout_seconds: Option<u64>,
    /// Clock skew tolerated for exp and nbf (default 30, at most 300).
    pub(crate) leeway_seconds: Option<u64>,
    /// Unknown key ids fetch the key set at most this often (default 10).
    pub(crate) key_refresh_min_interval_seconds: Option<u64>,
    /// Background refresh of groups.
    #[serde(default)]
    pub(crate) refresh: RefreshSection,
}

fn error(at: &str, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: format!("{at}.{key}"),
        message: message.into(),
    }
}

impl OidcSection {
    /// Checks everything before a port is bound (the secret and CA are read
    /// here), recording each error under `at` (`authentication.oidc[0]`).
    pub(crate) fn check(&self, at: &str, errors: &mut Errors) {
        let mut push = |e: ConfigError| errors.push(e.path, e.message);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 63
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            push(error(
                at,
                "name",
                "required: lower-case letters, digits and '-', at most 63",
            ));
        }
        match url::Url::parse(&self.issuer_url) {
            Err(e) => push(error(
                at,
                "issuerUrl",
                format!("{:?}: {e}", self.issuer_url),
            )),
            Ok(url)
                if url.scheme() != "https" || url.query().is_some() || url.fragment().is_some() =>
            {
                push(error(
                    at,
                    "issuerUrl",
                    "must be an https:// URL without query or fragment",
                ));
            }
            Ok(_) => {}
        }
        if self.client_id.trim().is_empty() {
            push(error(at, "clientId", "required"));
        }
        if let Err(e) = super::secrets::client_secret(
            at,
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        ) {
            push(e);
        }
        if let Err(e) = self.ca_pem(at) {
            push(e);
        }
        match self.access_mode(at) {
            Ok(AccessMode::Required) if self.allowed.is_empty() => push(error(
                at,
                "allowed",
                "accessMode required needs at least one allowed user or group",
            )),
            Ok(_) => {}
            Err(e) => push(e),
        }
        for (index, entry) in self.allowed.iter().enumerate() {
            let valid = match entry.split_once("://") {
                Some((kind, id)) => matches!(kind, "oidc_user" | "oidc_group") && !id.is_empty(),
                None => !entry.trim().is_empty(),
            };
            if !valid {
                push(error(
                    at,
                    &format!("allowed[{index}]"),
                    format!("{entry:?} is not a name, an oidc_user:// or an oidc_group:// id"),
                ));
            }
        }
        if let Some(url) = &self.redirect_url {
            let path = format!("/paddock/v1/oidc/{}/callback", self.name);
            match url::Url::parse(url) {
                Err(e) => push(error(at, "redirectUrl", format!("{url:?}: {e}"))),
                Ok(parsed) if parsed.scheme() != "https" || parsed.path() != path => {
                    push(error(
                        at,
                        "redirectUrl",
                        format!("must be https://<paddock host>{path}"),
                    ));
                }
                Ok(_) => {}
            }
        }
        if let Err(e) =
            super::secrets::check_encryption_key(at, self.encryption_key_file.as_deref())
        {
            push(e);
        }
        if let Some(scopes) = &self.scopes {
            if scopes.iter().any(|s| s.is_empty() || s.contains(' ')) {
                push(error(at, "scopes", "a scope is one word"));
            }
        }
        for (key, value, range) in [
            ("timeoutSeconds", self.timeout_seconds, 1..=300),
            ("leewaySeconds", self.leeway_seconds, 0..=300),
            (
                "keyRefreshMinIntervalSeconds",
                self.key_refresh_min_interval_seconds,
                1..=3600,
            ),
            (
                "refresh.maxAgeSeconds",
                self.refresh.max_age_seconds,
                1..=u64::MAX,
            ),
            (
                "refresh.intervalSeconds",
                self.refresh.interval_seconds,
                1..=u64::MAX,
            ),
        ] {
            if value.is_some_and(|v| !range.contains(&v)) {
                push(error(
                    at,
                    key,
                    format!("must be between {} and {}", range.start(), range.end()),
                ));
            }
        }
        for (key, value) in [
            ("usernameClaim", &self.username_claim),
            ("groupsClaim", &self.groups_claim),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                push(error(at, key, "must not be empty"));
            }
        }
    }

    fn ca_pem(&self, at: &str) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(ca) = &self.ca_file else {
            return Ok(None);
        };
        let pem = std::fs::read(ca)
            .map_err(|e| error(at, "caFile", format!("cannot read {}: {e}", ca.display())))?;
        proxy_core::authn::https::HttpClient::new(
            Some(&pem),
            Duration::from_secs(1),
            OutboundProxy::default(),
        )
        .map_err(|e| error(at, "caFile", e))?;
        Ok(Some(pem))
    }

    fn access_mode(&self, at: &str) -> Result<AccessMode, ConfigError> {
        self.access_mode
            .as_deref()
            .map_or(Ok(AccessMode::Unrestricted), str::parse)
            .map_err(|e: String| error(at, "accessMode", e))
    }

    /// The provider, reached through `proxy`; the state cookie's key comes
    /// from `encryptionKeyFile`, else from (or is created in)
    /// `<data_dir>/oidc-key`. Refresh tokens are kept in the store; those
    /// earlier versions kept in `<data_dir>/oidc-tokens/<name>` are moved
    /// there.
    pub(crate) fn provider(
        &self,
        at: &str,
        data_dir: &Path,
        proxy: &OutboundProxy,
    ) -> Result<Arc<OidcProvider>, ConfigError> {
        let key = super::secrets::encryption_key(
            at,
            self.encryption_key_file.as_deref(),
            &data_dir.join("oidc-key"),
        )?;
        let secret = super::secrets::client_secret(
            at,
            self.client_secret_file.as_deref(),
            self.client_secret_env.as_deref(),
        )?;
        let mut config = OidcConfig::new(
            self.name.clone(),
            self.issuer_url.clone(),
            self.client_id.trim(),
            secret,
            key,
        );
        if let Some(display) = &self.display_name {
            config.display_name.clone_from(display);
        }
        config.ca_pem = self.ca_pem(at)?;
        config.proxy = proxy.clone();
        if let Some(scopes) = &self.scopes {
            config.scopes.clone_from(scopes);
        }
        if let Some(claim) = &self.username_claim {
            config.username_claim.clone_from(claim);
        }
        config.username_prefix.clone_from(&self.username_prefix);
        if let Some(claim) = &self.groups_claim {
            config.groups_claim = Some(claim.clone());
        }
        if let Some(prefix) = &self.groups_prefix {
            config.groups_prefix.clone_from(prefix);
        }
        config.required_claims.clone_from(&self.required_claims);
        config.audiences.clone_from(&self.audiences);
        config.access_mode = self.access_mode(at)?;
        config.allowed.clone_from(&self.allowed);
        if let Some(url) = &self.redirect_url {
            config.redirect_url =
                Some(url::Url::parse(url).map_err(|e| error(at, "redirectUrl", e.to_string()))?);
        }
        config.password_grant = self.password_grant;
        let secs = Duration::from_secs;
        if let Some(s) = self.timeout_seconds {
            config.timeout = secs(s);
        }
        if let Some(s) = self.leeway_seconds {
            config.leeway = secs(s);
        }
        if let Some(s) = self.key_refresh_min_interval_seconds {
            config.key_refresh_min_interval = secs(s);
        }
        let defaults = config.refresh;
        config.refresh = RefreshSchedule {
            max_age: self.refresh.max_age_seconds.map_or(defaults.max_age, secs),
            jitter: self.refresh.jitter_seconds.map_or(defaults.jitter, secs),
            interval: self
                .refresh
                .interval_seconds
                .map_or(defaults.interval, secs),
            grace: None,
        };
        config.token_dir = Some(data_dir.join("oidc-tokens").join(&self.name));
        let provider = OidcProvider::new(config).map_err(|e| error(at, "caFile", e))?;
        Ok(Arc::new(provider))
    }
}
