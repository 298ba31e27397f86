//! `authentication:`: the static token file, local users, token lifetimes,
//! and the LDAP, GitHub and OpenID Connect providers (their own files).

use std::{path::PathBuf, time::Duration};

use proxy_core::{
    accounts::{local::PasswordPolicy, AccountsOptions},
    authn::{ldap::LdapConfig, token_file::TokenFileAuthenticator},
};
use serde::Deserialize;

use super::{github::GithubSection, ldap::LdapSection, oidc::OidcSection, Errors};

/// `authentication:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuthenticationConfig {
    /// Static tokens, Kubernetes `--token-auth-file` format.
    pub(crate) token_file: Option<PathBuf>,
    /// Local users.
    #[serde(default)]
    pub(crate) local: LocalUsersConfig,
    /// Lifetimes of the tokens Paddock issues.
    #[serde(default)]
    pub(crate) tokens: TokenLifetimes,
    /// Active Directory and OpenLDAP directories, one entry each, logged in
    /// to by their `name`.
    #[serde(default)]
    pub(crate) ldap: Vec<LdapSection>,
    /// GitHub / GitHub Enterprise logins.
    pub(crate) github: Option<GithubSection>,
    /// OpenID Connect providers, one entry each, logged in to by their `name`.
    #[serde(default)]
    pub(crate) oidc: Vec<OidcSection>,
}

/// `authentication.local:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LocalUsersConfig {
    /// Shortest password accepted (default 12, at least 8).
    pub(crate) password_min_length: Option<usize>,
}

/// `authentication.tokens:` — seconds; each at least 60.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TokenLifetimes {
    /// Browser and login sessions (default 16 h).
    #[serde(rename = "sessionTTLSeconds")]
    pub(crate) session_ttl_seconds: Option<u64>,
    /// A session unused for this long ends (default 16 h).
    pub(crate) session_idle_seconds: Option<u64>,
    /// Longest lifetime of an API token (default 90 days).
    #[serde(rename = "apiMaxTTLSeconds")]
    pub(crate) api_max_ttl_seconds: Option<u64>,
    /// Lifetime of a downloaded kubeconfig's token (default 30 days).
    #[serde(rename = "kubeconfigTTLSeconds")]
    pub(crate) kubeconfig_ttl_seconds: Option<u64>,
}

/// `authentication:`, checked.
#[derive(Debug)]
pub(crate) struct CheckedAuthentication {
    /// The static token file, which parsed.
    pub(crate) token_file: Option<PathBuf>,
    /// Password policy and token lifetimes.
    pub(crate) accounts: AccountsOptions,
    /// The directories, each validated.
    pub(crate) ldap: Vec<LdapConfig>,
    /// GitHub logins, validated.
    pub(crate) github: Option<GithubSection>,
    /// OpenID Connect providers, validated.
    pub(crate) oidc: Vec<OidcSection>,
}

impl AuthenticationConfig {
    pub(super) fn check(&self, errors: &mut Errors) -> Option<CheckedAuthentication> {
        let before = errors.len();
        if let Some(file) = &self.token_file {
            const AT: &str = "authentication.tokenFile";
            if let Some(text) = errors.read_text(AT, file) {
                errors.ok(AT, TokenFileAuthenticator::from_csv(&text));
            }
        }
        if let Some(n) = self.local.password_min_length {
            if !(8..=256).contains(&n) {
                errors.push(
                    "authentication.local.passwordMinLength",
                    "must be between 8 and 256",
                );
            }
        }
        let lifetimes = &self.tokens;
        for (key, value) in [
            ("sessionTTLSeconds", lifetimes.session_ttl_seconds),
            ("sessionIdleSeconds", lifetimes.session_idle_seconds),
            ("apiMaxTTLSeconds", lifetimes.api_max_ttl_seconds),
            ("kubeconfigTTLSeconds", lifetimes.kubeconfig_ttl_seconds),
        ] {
            if value.is_some_and(|v| v < 60) {
                errors.push(
                    format!("authentication.tokens.{key}"),
                    "must be at least 60",
                );
            }
        }
        let mut ldap = Vec::new();
        for (index, section) in self.ldap.iter().enumerate() {
            let at = format!("authentication.ldap[{index}]");
            let taken = section.name == proxy_core::accounts::local::PROVIDER
                || self.ldap[..index].iter().any(|d| d.name == section.name);
            if taken {
                errors.push(
                    format!("{at}.name"),
                    format!("{:?} is taken: provider names must be unique", section.name),
                );
            }
            let config = section.to_config();
            match config.validate() {
                Ok(_) => ldap.push(config),
                Err(e) => errors.push(format!("{at}.{}", e.key), e.message),
            }
        }
        if let Some(github) = &self.github {
            github.check(errors);
        }
        for (index, section) in self.oidc.iter().enumerate() {
            let at = format!("authentication.oidc[{index}]");
            let name = section.name.as_str();
            let taken = name == proxy_core::accounts::local::PROVIDER
                || (self.github.is_some() && name == "github")
                || self.ldap.iter().any(|d| d.name == name)
                || self.oidc[..index].iter().any(|o| o.name == name);
            if taken {
                errors.push(
                    format!("{at}.name"),
                    format!("{name:?} is taken: provider names must be unique"),
                );
            }
            // A bearer JWT goes to the provider its `iss` names: a second
            // provider of the same issuer would never see one.
            if let Some(first) = self.oidc[..index]
                .iter()
                .position(|o| o.issuer_url == section.issuer_url)
            {
                errors.push(
                    format!("{at}.issuerUrl"),
                    format!(
                        "{:?} is already authentication.oidc[{first}]'s issuer; \
                         list this client's id under that provider's audiences instead",
                        section.issuer_url
                    ),
                );
            }
            section.check(&at, errors);
        }
        (errors.len() == before).then(|| CheckedAuthentication {
            token_file: self.token_file.clone(),
            accounts: self.accounts_options(),
            ldap,
            github: self.github.clone(),
            oidc: self.oidc.clone(),
        })
    }

    /// The password policy and token lifetimes.
    fn accounts_options(&self) -> AccountsOptions {
        let mut options = AccountsOptions::default();
        if let Some(n) = self.local.password_min_length {
            options.password_policy = PasswordPolicy::with_min_length(n);
        }
        let policy = &mut options.token_policy;
        let secs = Duration::from_secs;
        if let Some(s) = self.tokens.session_ttl_seconds {
            policy.session_ttl = secs(s);
        }
        if let Some(s) = self.tokens.session_idle_seconds {
            policy.session_idle = Some(secs(s));
        }
        if let Some(s) = self.tokens.api_max_ttl_seconds {
            policy.api_max_ttl = Some(secs(s));
            policy.api_default_ttl = policy.api_default_ttl.min(secs(s));
        }
        if let Some(s) = self.tokens.kubeconfig_ttl_seconds {
            policy.kubeconfig_default_ttl = secs(s);
            policy.kubeconfig_max_ttl = Some(secs(s));
        }
        options
    }
}
