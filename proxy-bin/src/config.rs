//! The configuration file (YAML), validated once at load, before any port
//! is bound. Every error names the key path it is about.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

/// The whole configuration file. Keys are camelCase, like Kubernetes'.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct Config {
    /// Address to listen on (default 127.0.0.1:8443).
    pub(crate) listen: Option<String>,
    /// Where Paddock keeps its state (default ./paddock-data).
    pub(crate) data_dir: Option<PathBuf>,
    /// The listener's TLS.
    #[serde(default)]
    pub(crate) tls: TlsConfig,
    /// Seconds in-flight requests get to finish on shutdown (default 30).
    pub(crate) shutdown_grace_seconds: Option<u64>,
    /// Threads serving connections, each with its own event loop and
    /// upstream connections (default: one per core).
    pub(crate) workers: Option<usize>,
    /// Identity providers.
    #[serde(default)]
    pub(crate) authentication: AuthenticationConfig,
    /// How requests are authorized.
    #[serde(default, deserialize_with = "authorization")]
    pub(crate) authorization: AuthorizationConfig,
    /// Downstream clusters.
    #[serde(default)]
    pub(crate) clusters: Vec<ClusterEntry>,
    /// Log output.
    #[serde(default)]
    pub(crate) logging: LoggingConfig,
}

/// `tls:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct TlsConfig {
    /// Server certificate chain (PEM). Without it a self-signed CA is generated in the data dir.
    pub(crate) cert_file: Option<PathBuf>,
    /// Server private key (PEM).
    pub(crate) key_file: Option<PathBuf>,
    /// CA for client certificates; enables client-certificate authentication.
    #[serde(rename = "clientCAFile")]
    pub(crate) client_ca_file: Option<PathBuf>,
    /// Extra DNS names / IPs for the generated certificate.
    #[serde(default)]
    pub(crate) extra_names: Vec<String>,
}

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
    pub(crate) ldap: Vec<proxy_core::authn::ldap::LdapConfig>,
    /// GitHub / GitHub Enterprise logins (see [`crate::github`]).
    pub(crate) github: Option<crate::github::GithubSection>,
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

/// `authorization:` — a mode name (`policy`, the default; `deny-all`,
/// `allow-authenticated`) or a map with `mode` and the policy settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct AuthorizationConfig {
    /// How requests are authorized.
    #[serde(default)]
    pub(crate) mode: AuthorizationMode,
    /// Directory of RBAC / Rancher policy YAML (mode `policy`), reloaded on change.
    pub(crate) policy_dir: Option<PathBuf>,
    /// The management cluster's id: where global roles' own rules apply.
    pub(crate) management_cluster: Option<String>,
}

/// The authorization mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum AuthorizationMode {
    /// Deny every proxied request.
    DenyAll,
    /// Allow any authenticated caller everything.
    AllowAuthenticated,
    /// Kubernetes RBAC and Rancher's role model: the built-in roles, the
    /// role bindings made through the store (the bootstrap admin's among
    /// them) and, when set, the files of `policyDir`. The default.
    #[default]
    Policy,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "deny-all" => Ok(Self::DenyAll),
            "allow-authenticated" => Ok(Self::AllowAuthenticated),
            "policy" => Ok(Self::Policy),
            other => Err(format!(
                "unknown authorization mode {other:?} (expected deny-all, allow-authenticated or policy)"
            )),
        }
    }
}

fn authorization<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<AuthorizationConfig, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Mode(String),
        Full(AuthorizationConfig),
    }
    match Form::deserialize(deserializer)? {
        Form::Mode(mode) => Ok(AuthorizationConfig {
            mode: mode.parse().map_err(serde::de::Error::custom)?,
            ..AuthorizationConfig::default()
        }),
        Form::Full(config) => Ok(config),
    }
}

/// One entry of `clusters:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ClusterEntry {
    /// The id in `/k8s/clusters/<id>`.
    pub(crate) id: String,
    /// Serve this cluster at `/` too.
    #[serde(default)]
    pub(crate) default: bool,
    /// API server URL (or use `kubeconfig`).
    pub(crate) server: Option<String>,
    /// CA bundle to verify the API server.
    #[serde(rename = "caFile")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Paddock's bearer token for this cluster, re-read when it changes.
    pub(crate) token_file: Option<PathBuf>,
    /// Paddock's client certificate for this cluster.
    pub(crate) client_cert_file: Option<PathBuf>,
    /// Its key.
    pub(crate) client_key_file: Option<PathBuf>,
    /// Take server, CA and credential from a kubeconfig instead.
    pub(crate) kubeconfig: Option<KubeconfigRef>,
    /// Seconds allowed for ordinary requests' response headers (default 60).
    pub(crate) request_timeout_seconds: Option<u64>,
    /// Seconds allowed to connect (default 5).
    pub(crate) connect_timeout_seconds: Option<u64>,
    /// Settings that weaken security; each says so in the log.
    #[serde(default)]
    pub(crate) dangerous: DangerousCluster,
}

/// `clusters[].kubeconfig:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct KubeconfigRef {
    /// The kubeconfig file.
    pub(crate) file: PathBuf,
    /// The context (default: its current-context).
    pub(crate) context: Option<String>,
}

/// `clusters[].dangerous:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DangerousCluster {
    /// Do not verify the API server's certificate.
    #[serde(default, rename = "skipTLSVerify")]
    pub(crate) skip_tls_verify: bool,
    /// Allow an `http://` server: Paddock's bearer token and the caller's
    /// impersonation headers then cross the network in clear.
    #[serde(default)]
    pub(crate) allow_plaintext: bool,
}

/// `logging:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct LoggingConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub(crate) format: LogFormat,
    /// A tracing filter such as `info` or `paddock=debug` (`RUST_LOG` wins).
    pub(crate) level: Option<String>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration error: the key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    /// Dotted key path, e.g. `clusters[0].server`; empty for the whole file.
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

fn error(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.into(),
        message: message.into(),
    }
}

impl Config {
    /// Reads and validates a configuration file.
    pub(crate) fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| error("", format!("cannot read {}: {e}", path.display())))?;
        let config = Self::from_yaml(&text)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses YAML, naming the key path of any type error or unknown key.
    pub(crate) fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let deserializer = serde_norway::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.into_inner().to_string();
            // serde_norway prefixes its own path ("clusters[0]: ..."); ours is
            // more precise. Its " at line L column C" suffix is kept.
            let message = match message.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') => rest.to_owned(),
                _ => message,
            };
            error(path, message)
        })
    }

    /// Checks everything that can be checked before binding a port:
    /// addresses parse, referenced files are readable, cluster ids are
    /// unique, at most one cluster is the default.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            listen.parse::<SocketAddr>().map_err(|_| {
                error(
                    "listen",
                    format!("{listen:?} is not an address like 127.0.0.1:8443"),
                )
            })?;
        }
        if let Some(n) = self.workers {
            if !(1..=1024).contains(&n) {
                return Err(error("workers", "must be between 1 and 1024"));
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(cert), Some(key)) => {
                readable("tls.certFile", cert)?;
                readable("tls.keyFile", key)?;
            }
            (Some(_), None) => {
                return Err(error("tls.keyFile", "required when tls.certFile is set"))
            }
            (None, Some(_)) => {
                return Err(error("tls.certFile", "required when tls.keyFile is set"))
            }
            (None, None) => {}
        }
        if let Some(ca) = &self.tls.client_ca_file {
            readable("tls.clientCAFile", ca)?;
        }
        if let Some(file) = &self.authentication.token_file {
            readable("authentication.tokenFile", file)?;
        }
        if let Some(n) = self.authentication.local.password_min_length {
            if !(8..=256).contains(&n) {
                return Err(error(
                    "authentication.local.passwordMinLength",
                    "must be between 8 and 256",
                ));
            }
        }
        for (index, directory) in self.authentication.ldap.iter().enumerate() {
            let at = format!("authentication.ldap[{index}]");
            directory
                .validate()
                .map_err(|e| error(format!("{at}.{}", e.key), e.message))?;
            if directory.name == proxy_core::authn::local::PROVIDER
                || self.authentication.ldap[..index]
                    .iter()
                    .any(|d| d.name == directory.name)
            {
                return Err(error(
                    format!("{at}.name"),
                    format!(
                        "{:?} is taken: provider names must be unique",
                        directory.name
                    ),
                ));
            }
        }
        let lifetimes = &self.authentication.tokens;
        for (key, value) in [
            ("sessionTTLSeconds", lifetimes.session_ttl_seconds),
            ("sessionIdleSeconds", lifetimes.session_idle_seconds),
            ("apiMaxTTLSeconds", lifetimes.api_max_ttl_seconds),
            ("kubeconfigTTLSeconds", lifetimes.kubeconfig_ttl_seconds),
        ] {
            if value.is_some_and(|v| v < 60) {
                return Err(error(
                    format!("authentication.tokens.{key}"),
                    "must be at least 60",
                ));
            }
        }
        if let Some(github) = &self.authentication.github {
            github.validate()?;
        }
        let mut defaults = 0;
        for (index, cluster) in self.clusters.iter().enumerate() {
            let at = |key: &str| format!("clusters[{index}].{key}");
            validate_cluster_id(&cluster.id).map_err(|m| error(at("id"), m))?;
            if self.clusters[..index].iter().any(|c| c.id == cluster.id) {
                return Err(error(
                    at("id"),
                    format!("duplicate cluster id {:?}", cluster.id),
                ));
            }
            defaults += usize::from(cluster.default);
            if defaults > 1 {
                return Err(error(at("default"), "only one cluster can be the default"));
            }
            match (&cluster.server, &cluster.kubeconfig) {
                (Some(server), None) => {
                    let uri: http::Uri = server
                        .parse()
                        .map_err(|_| error(at("server"), format!("{server:?} is not a URL")))?;
                    if !matches!(uri.scheme_str(), Some("https" | "http")) || uri.host().is_none() {
                        return Err(error(
                            at("server"),
                            format!("{server:?} is not an https:// URL"),
                        ));
                    }
                    if uri.scheme_str() == Some("http") && !cluster.dangerous.allow_plaintext {
                        return Err(error(at("server"), PLAINTEXT_REFUSED));
                    }
                }
                (None, Some(kubeconfig)) => {
                    readable(&at("kubeconfig.file"), &kubeconfig.file)?;
                    if cluster.ca_file.is_some()
                        || cluster.token_file.is_some()
                        || cluster.client_cert_file.is_some()
                    {
                        return Err(error(
                            at("kubeconfig"),
                            "cannot be combined with caFile, tokenFile or clientCertFile",
                        ));
                    }
                }
                (Some(_), Some(_)) => {
                    return Err(error(
                        at("server"),
                        "set either server or kubeconfig, not both",
                    ))
                }
                (None, None) => return Err(error(at("server"), "required (or kubeconfig)")),
            }
            for (key, file) in [
                ("caFile", &cluster.ca_file),
                ("tokenFile", &cluster.token_file),
                ("clientCertFile", &cluster.client_cert_file),
                ("clientKeyFile", &cluster.client_key_file),
            ] {
                if let Some(file) = file {
                    readable(&at(key), file)?;
                }
            }
            if cluster.client_cert_file.is_some() != cluster.client_key_file.is_some() {
                return Err(error(
                    at("clientKeyFile"),
                    "clientCertFile and clientKeyFile go together",
                ));
            }
            if cluster.token_file.is_some() && cluster.client_cert_file.is_some() {
                return Err(error(
                    at("tokenFile"),
                    "use either tokenFile or a client certificate, not both",
                ));
            }
            for (key, value) in [
                ("requestTimeoutSeconds", cluster.request_timeout_seconds),
                ("connectTimeoutSeconds", cluster.connect_timeout_seconds),
            ] {
                if value == Some(0) {
                    return Err(error(at(key), "must be at least 1"));
                }
            }
        }
        match (&self.authorization.mode, &self.authorization.policy_dir) {
            (AuthorizationMode::Policy, Some(dir)) => {
                if !dir.is_dir() {
                    return Err(error(
                        "authorization.policyDir",
                        format!("{} is not a readable directory", dir.display()),
                    ));
                }
            }
            (_, Some(_)) => {
                return Err(error("authorization.mode", "policyDir needs mode: policy"))
            }
            (_, None) => {}
        }
        if let Some(level) = &self.logging.level {
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| error("logging.level", e.to_string()))?;
        }
        Ok(())
    }
}

/// Why an `http://` API server is refused.
pub(crate) const PLAINTEXT_REFUSED: &str = "http:// sends Paddock's credential and the \
     caller's identity in clear; use https:// (or set dangerous.allowPlaintext: true)";

fn readable(path: &str, file: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(file)
        .map(drop)
        .map_err(|e| error(path, format!("cannot read {}: {e}", file.display())))
}

/// Cluster ids appear in URLs: lower-case letters, digits, `-` and `.`.
pub(crate) fn validate_cluster_id(id: &str) -> Result<(), String> {
    let valid = !id.is_empty()
        && id.len() <= 63
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && id.as_bytes()[0].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{id:?} is not a valid cluster id (lower-case letters, digits, '-' and '.', at most 63)"
        ))
    }
}

#[cfg(test)]
mod tests;
