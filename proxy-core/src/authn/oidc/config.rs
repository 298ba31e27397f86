//! What an OpenID Connect provider is built from: the issuer and the
//! client, how claims become a Kubernetes user name and groups (the rules
//! of kube-apiserver's `--oidc-*` flags), who may log in, and how keys and
//! groups are refreshed.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use secrecy::SecretString;
use url::Url;

use crate::authn::external::{AccessMode, RefreshSchedule};
use crate::net::OutboundProxy;

/// One OpenID Connect provider's settings.
#[derive(Clone)]
#[non_exhaustive]
pub struct OidcConfig {
    /// The provider's name in logins, on the sign-in page's button and in
    /// the callback path (`/paddock/v1/oidc/<name>/callback`).
    pub name: String,
    /// What the sign-in button says after "Sign in with".
    pub display_name: String,
    /// The issuer, exactly as the provider's discovery document and tokens
    /// spell it (`https://keycloak.example.com/realms/ops`): an `https://`
    /// URL, compared as a string.
    pub issuer: String,
    /// The client id Paddock logs in with; always an allowed audience.
    pub client_id: String,
    /// The client secret (`client_secret_basic`).
    pub client_secret: SecretString,
    /// PEM CA bundle to verify the provider with instead of the system roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Scopes asked for; `openid` is always sent.
    pub scopes: Vec<String>,
    /// The claim naming the user (`sub`, `email`, `preferred_username`).
    pub username_claim: String,
    /// Prefix of user names; `None` follows kube-apiserver: `<issuer>#`
    /// unless the claim is `email`. `Some("")` is no prefix.
    pub username_prefix: Option<String>,
    /// The claim holding the groups (a string or a list of strings); `None`:
    /// no groups.
    pub groups_claim: Option<String>,
    /// Prefix of group names (`oidc_group://<prefix><name>`).
    pub groups_prefix: String,
    /// Claims every token must carry with exactly these string values.
    pub required_claims: BTreeMap<String, String>,
    /// Audiences accepted besides `client_id` (another client's tokens,
    /// such as kubelogin's).
    pub audiences: Vec<String>,
    /// Who may log in.
    pub access_mode: AccessMode,
    /// Allowed principals for `required` and `restricted`: ids
    /// (`oidc_user://…`, `oidc_group://ops`) or names (a user name, a
    /// group name), names compared case-insensitively.
    pub allowed: Vec<String>,
    /// The public callback URL registered with the provider; without it
    /// `https://<Host of the login request>/paddock/v1/oidc/<name>/callback`.
    pub redirect_url: Option<Url>,
    /// Keys the state cookie (and the token files of earlier versions,
    /// see `token_dir`).
    pub encryption_key: SecretString,
    /// Timeout of every request to the provider.
    pub timeout: Duration,
    /// The HTTP proxy requests to the provider (discovery, keys, tokens)
    /// go through (default: none; the binary's is `HTTPS_PROXY`/`NO_PROXY`).
    pub proxy: OutboundProxy,
    /// Tolerated clock difference for `exp` and `nbf`.
    pub leeway: Duration,
    /// An unknown key id fetches the key set again at most this often, so
    /// tokens with made-up `kid`s cannot make Paddock hammer the provider.
    pub key_refresh_min_interval: Duration,
    /// Keys older than this are fetched again in the background.
    pub key_max_age: Duration,
    /// Background refresh of users' groups with their refresh tokens.
    pub refresh: RefreshSchedule,
    /// Where an earlier version kept users' refresh tokens, one file each
    /// sealed with `encryption_key` (the binary's `<data dir>/oidc-tokens/<name>`):
    /// moved into the vault the provider is given
    /// ([`ExternalProvider::keep_tokens_in`](crate::authn::external::ExternalProvider::keep_tokens_in)),
    /// then removed. Refresh tokens are kept in that vault only.
    pub token_dir: Option<PathBuf>,
    /// Accept `{"provider": name, "username", "password"}` logins through
    /// the provider's password grant (Keycloak's "direct access grants").
    pub password_grant: bool,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcConfig")
            .field("name", &self.name)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "[PEM]"))
            .field("scopes", &self.scopes)
            .field("username_claim", &self.username_claim)
            .field("username_prefix", &self.username_prefix)
            .field("groups_claim", &self.groups_claim)
            .field("groups_prefix", &self.groups_prefix)
            .field("required_claims", &self.required_claims)
            .field("audiences", &self.audiences)
            .field("access_mode", &self.access_mode)
            .field("allowed", &self.allowed)
            .field("redirect_url", &self.redirect_url)
            .field("encryption_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("proxy", &self.proxy)
            .field("password_grant", &self.password_grant)
            .finish_non_exhaustive()
    }
}

impl OidcConfig {
    /// Settings for client `client_id` at `issuer`, with the defaults:
    /// scopes `openid email profile`, user name from `sub` prefixed with
    /// `<issuer>#`, groups from `groups`, access `unrestricted`, a 10 s
    /// timeout, 30 s leeway, key refreshes at most every 10 s, groups
    /// refreshed hourly.
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        encryption_key: SecretString,
    ) -> Self {
        let name = name.into();
        Self {
            display_name: name.clone(),
            name,
            issuer: issuer.into(),
            client_id: client_id.into(),
            client_secret,
            ca_pem: None,
            scopes: ["openid", "email", "profile"].map(str::to_owned).to_vec(),
            username_claim: "sub".to_owned(),
            username_prefix: None,
            groups_claim: Some("groups".to_owned()),
            groups_prefix: String::new(),
            required_claims: BTreeMap::new(),
            audiences: Vec::new(),
            access_mode: AccessMode::Unrestricted,
            allowed: Vec::new(),
            redirect_url: None,
            encryption_key,
            timeout: Duration::from_secs(10),
            proxy: OutboundProxy::default(),
            leeway: Duration::from_secs(30),
            key_refresh_min_interval: Duration::from_secs(10),
            key_max_age: Duration::from_secs(3600),
            refresh: RefreshSchedule {
                max_age: Duration::from_secs(3600),
                jitter: Duration::from_secs(300),
                interval: Duration::from_secs(60),
                grace: None,
            },
            token_dir: None,
            password_grant: false,
        }
    }

    /// The prefix put before user names: the configured one, else
    /// kube-apiserver's default (`<issuer>#`, none for `email`).
    pub fn effective_username_prefix(&self) -> String {
        match &self.username_prefix {
            Some(prefix) if prefix == "-" => String::new(),
            Some(prefix) => prefix.clone(),
            None if self.username_claim == "email" => String::new(),
            None => format!("{}#", self.issuer),
        }
    }
}
