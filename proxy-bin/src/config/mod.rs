//! The configuration file (YAML): its whole schema, one file per section,
//! and the one validation that `paddock config check` and `paddock serve`
//! share, so that a configuration `config check` accepts is one `serve`
//! starts with.
//!
//! [`Config`] is what the file says. [`Config::check`] turns it into a
//! [`Checked`] configuration: TLS material parsed, the policy compiled, the
//! token file parsed, clusters resolved (kubeconfig read, CA parsed,
//! credentials readable), every referenced file read. It reports every error
//! it finds, each with its key path (`clusters[1].caFile: ...`), not just the
//! first. A structural error (an unknown key, a string where a number
//! belongs) stops the YAML parser, so it comes alone, with its key path and
//! line.

mod agents;
mod alerts;
mod audit;
mod authentication;
mod authorization;
mod clusters;
mod github;
mod ldap;
mod limits;
mod logging;
mod metrics;
mod oidc;
mod rbac_sync;
mod secrets;
mod store;
mod tls;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

pub(crate) use self::{
    agents::{AgentsConfig, CheckedAgents},
    alerts::{AlertsConfig, CheckedAlerts, HealthConfig},
    audit::{AuditConfig, CheckedAudit},
    authentication::{AuthenticationConfig, CheckedAuthentication},
    authorization::{AuthorizationConfig, AuthorizationMode, CheckedAuthorization},
    clusters::{CheckedCluster, ClusterEntry, DangerousCluster, KubeconfigRef},
    limits::LimitsConfig,
    logging::{LogFormat, LoggingConfig},
    metrics::{CheckedMetrics, MetricsConfig},
    rbac_sync::{CheckedRbacSync, RbacSyncConfig},
    store::{Backend, CheckedStore, OpenError, StoreConfig},
    tls::{CheckedTls, TlsConfig},
};

/// Where `listen` points when it is not set.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Where Paddock keeps its state when `dataDir` is not set.
pub(crate) const DEFAULT_DATA_DIR: &str = "paddock-data";

/// The whole configuration file, as written. Keys are camelCase, like
/// Kubernetes'.
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
    /// Where the state lives: the data directory's file, or etcd.
    #[serde(default)]
    pub(crate) store: StoreConfig,
    /// Seconds in-flight requests get to finish on shutdown (default 30).
    pub(crate) shutdown_grace_seconds: Option<u64>,
    /// Threads serving connections, each with its own event loop and
    /// upstream connections (default: one per core).
    pub(crate) workers: Option<usize>,
    /// Client timeouts and the connection cap.
    #[serde(default)]
    pub(crate) limits: LimitsConfig,
    /// Identity providers.
    #[serde(default)]
    pub(crate) authentication: AuthenticationConfig,
    /// How requests are authorized.
    #[serde(default)]
    pub(crate) authorization: AuthorizationConfig,
    /// Downstream clusters.
    #[serde(default)]
    pub(crate) clusters: Vec<ClusterEntry>,
    /// Clusters reached through `paddock agent`.
    #[serde(default)]
    pub(crate) agents: AgentsConfig,
    /// Log output.
    #[serde(default)]
    pub(crate) logging: LoggingConfig,
    /// The Prometheus listener; none when absent.
    pub(crate) metrics: Option<MetricsConfig>,
    /// The Kubernetes-format audit log; off when absent.
    pub(crate) audit: Option<AuditConfig>,
    /// The clusters' health checks; off when absent.
    pub(crate) cluster_health: Option<HealthConfig>,
    /// Alert hooks; off when absent.
    pub(crate) alerts: Option<AlertsConfig>,
    /// `rbacSync:`; absent disables it.
    #[serde(default)]
    pub(crate) rbac_sync: Option<RbacSyncConfig>,
}

/// A configuration that passed [`Config::check`]: everything `serve` needs,
/// read, parsed and resolved. Building the server from it can still fail
/// only on the machine's state (the store, the port, generating the
/// self-signed certificate), never on the configuration.
#[derive(Debug)]
pub(crate) struct Checked {
    /// The address to bind.
    pub(crate) listen: SocketAddr,
    /// The data directory.
    pub(crate) data_dir: PathBuf,
    /// The listener's certificate.
    pub(crate) tls: CheckedTls,
    /// The store backend and the token pepper.
    pub(crate) store: CheckedStore,
    /// How long in-flight requests get on shutdown.
    pub(crate) shutdown_grace: Option<Duration>,
    /// Server threads.
    pub(crate) workers: Option<usize>,
    /// Client timeouts and the connection cap.
    pub(crate) limits: proxy_core::server::ConnectionLimits,
    /// Identity providers and account settings.
    pub(crate) authentication: CheckedAuthentication,
    /// How requests are authorized.
    pub(crate) authorization: CheckedAuthorization,
    /// The downstream clusters, resolved.
    pub(crate) clusters: Vec<CheckedCluster>,
    /// Agent clusters' settings.
    pub(crate) agents: CheckedAgents,
    /// Log output.
    pub(crate) logging: LoggingConfig,
    /// The Prometheus listener, if any.
    pub(crate) metrics: Option<CheckedMetrics>,
    /// The audit log, when configured.
    pub(crate) audit: Option<CheckedAudit>,
    /// The clusters' health checks, when configured.
    pub(crate) health: Option<proxy_core::health::HealthOptions>,
    /// Alert hooks, when configured.
    pub(crate) alerts: Option<CheckedAlerts>,
    /// The RBAC sync, when configured.
    pub(crate) rbac_sync: Option<CheckedRbacSync>,
}

impl Checked {
    /// The id of the cluster served at `/`, if any.
    pub(crate) fn default_cluster(&self) -> Option<&str> {
        self.clusters
            .iter()
            .find(|c| c.default)
            .map(|c| c.config.id.as_str())
    }
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

/// Every error found in a configuration, in file order. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigErrors(pub(crate) Vec<ConfigError>);

impl ConfigErrors {
    /// Whether one of the errors is about `path`.
    #[cfg(test)]
    pub(crate) fn names(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

/// One error per line, each indented under the caller's
/// "invalid configuration:" heading.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            write!(f, "\n  {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self(vec![error])
    }
}

/// Collects the errors of one validation run.
#[derive(Debug, Default)]
pub(crate) struct Errors(Vec<ConfigError>);

impl Errors {
    /// Records that `path` is wrong.
    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// The value, or `None` with the error recorded at `path`.
    pub(crate) fn ok<T, E: fmt::Display>(&mut self, path: &str, result: Result<T, E>) -> Option<T> {
        result.map_err(|e| self.push(path, e.to_string())).ok()
    }

    /// The contents of `file`, or `None` with the error recorded at `path`.
    pub(crate) fn read(&mut self, path: &str, file: &Path) -> Option<Vec<u8>> {
        let result =
            std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()));
        self.ok(path, result)
    }

    /// `file` as text, or `None` with the error recorded at `path`.
    pub(crate) fn read_text(&mut self, path: &str, file: &Path) -> Option<String> {
        String::from_utf8(self.read(path, file)?)
            .map_err(|_| self.push(path, format!("{} is not UTF-8 text", file.display())))
            .ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Config {
    /// Reads and checks a configuration file.
    pub(crate) fn load(path: &Path) -> Result<Checked, ConfigErrors> {
        Self::read(path)?.check()
    }

    /// The checked configuration of a command that works on the data
    /// directory: `file` when given (else the defaults), with `data_dir`
    /// over its `dataDir`.
    pub(crate) fn for_data_dir(
        file: Option<&Path>,
        data_dir: Option<&Path>,
    ) -> Result<Checked, ConfigErrors> {
        let mut config = match file {
            Some(file) => Self::read(file)?,
            None => Self::default(),
        };
        if let Some(dir) = data_dir {
            config.data_dir = Some(dir.to_owned());
        }
        config.check()
    }

    /// Reads and parses a configuration file, without checking it.
    pub(crate) fn read(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Ok(Self::from_yaml(&text)?)
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
            ConfigError { path, message }
        })
    }

    /// Checks everything that can be checked before binding a port, and
    /// returns the configuration `serve` builds from, or every error found.
    pub(crate) fn check(&self) -> Result<Checked, ConfigErrors> {
        let mut errors = Errors::default();
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                errors.push(
                    "listen",
                    format!("{listen:?} is not an address like 127.0.0.1:8443"),
                );
            })
            .ok();
        let data_dir = self
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        if data_dir.exists() && !data_dir.is_dir() {
            errors.push(
                "dataDir",
                format!("{} is not a directory", data_dir.display()),
            );
        }
        if let Some(n) = self.workers {
            if !(1..=1024).contains(&n) {
                errors.push("workers", "must be between 1 and 1024");
            }
        }
        let limits = self.limits.check(&mut errors);
        let tls = self.tls.check(&data_dir, &mut errors);
        let store_config = self.store.check(&mut errors);
        let authentication = self.authentication.check(&mut errors);
        // etcd is not asked at check time: `serve` reports it unreachable.
        let store = match self.store.backend {
            Backend::Embedded => existing_store(&data_dir, &mut errors),
            Backend::Etcd => None,
        };
        let authorization = self.authorization.check(store, &mut errors);
        let clusters = clusters::check(&self.clusters, &mut errors);
        let agents = self.agents.check(&mut errors);
        self.logging.check(&mut errors);
        let metrics = self
            .metrics
            .as_ref()
            .map(|metrics| metrics.check(listen, &mut errors));
        let audit = self.audit.as_ref().map(|a| a.check(&mut errors));
        let health = self.cluster_health.as_ref().map(|h| h.check(&mut errors));
        let alerts = self
            .alerts
            .as_ref()
            .map(|a| a.check(self.rbac_sync.is_some(), &mut errors));
        let known: Vec<&str> = self.clusters.iter().map(|c| c.id.as_str()).collect();
        let policy = authorization
            .as_ref()
            .is_some_and(|a| a.mode == AuthorizationMode::Policy);
        let rbac_sync = self
            .rbac_sync
            .as_ref()
            .map(|r| r.check(&known, policy, &mut errors));
        match (
            listen,
            tls,
            store_config,
            authentication,
            authorization,
            clusters,
        ) {
            (
                Some(listen),
                Some(tls),
                Some(store),
                Some(authentication),
                Some(authorization),
                Some(clusters),
            ) if errors.len() == 0 => Ok(Checked {
                listen,
                data_dir,
                tls,
                store,
                shutdown_grace: self.shutdown_grace_seconds.map(Duration::from_secs),
                workers: self.workers,
                limits,
                authentication,
                authorization,
                clusters,
                agents,
                logging: self.logging.clone(),
                metrics: metrics.flatten(),
                audit: audit.flatten(),
                health,
                alerts: alerts.flatten(),
                rbac_sync: rbac_sync.flatten(),
            }),
            _ => Err(ConfigErrors(errors.0)),
        }
    }
}

/// The data directory's store, when there is one, read as `serve` will
/// read it: a damaged store fails the check as it would fail `serve`.
/// Nothing is created or written.
fn existing_store(
    data_dir: &Path,
    errors: &mut Errors,
) -> Option<std::sync::Arc<proxy_core::store::StoreView>> {
    use proxy_core::store::{EmbeddedOptions, EmbeddedStore, StoreView};
    let path = data_dir.join(EmbeddedStore::FILE_NAME);
    if !path.exists() {
        return None;
    }
    let view = EmbeddedStore::open(&path, EmbeddedOptions::default())
        .and_then(|store| StoreView::new(std::sync::Arc::new(store)));
    errors.ok("dataDir", view)
}

#[cfg(test)]
mod tests;
