//! RBAC sync: Paddock's bindings written into each downstream cluster as
//! native `ClusterRole`/`ClusterRoleBinding`/`RoleBinding` objects, so the
//! API server reaches the decisions Paddock's policy reaches for callers
//! who come straight to it through the authorized cluster endpoint
//! (`paddock sidecar`). What is written: [`desired`].
//!
//! Level-triggered: every pass computes the whole desired set from the
//! store's snapshot and the compiled policy and makes the cluster's
//! labelled objects equal to it ([`Report`]), so a missed change, a
//! restart or an object edited or deleted by hand is repaired by the next
//! pass. Passes run every `interval` and as soon as the store changes.
//! Each cluster's last outcome is kept ([`RbacSync::status`]) and every
//! failure is logged at warn: a sync that fails is never silent.

mod apply;
pub mod desired;

pub use apply::Report;
pub use desired::{Desired, BINDING_LABEL, MANAGED_BY, MANAGED_BY_LABEL};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use policy::PolicySet;

use crate::store::{Revision, StoreView, Timestamp};
use crate::upstream::{ClusterConfig, UpstreamCredential};

/// The compiled policy as it is now (the authorizer's current set).
pub type CurrentPolicy = Arc<dyn Fn() -> Arc<PolicySet> + Send + Sync>;

/// Why a cluster could not be synchronised at all.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// No such cluster in this sync.
    #[error("cluster {0} is not synchronised")]
    UnknownCluster(String),
    /// The cluster's API could not be reached or refused the listing.
    #[error("cluster {cluster}: {message}")]
    Cluster {
        /// The cluster id.
        cluster: String,
        /// What failed.
        message: String,
    },
    /// A client for the cluster could not be built.
    #[error("cluster {cluster}: cannot build a client: {message}")]
    Client {
        /// The cluster id.
        cluster: String,
        /// What failed.
        message: String,
    },
}

/// One cluster's last pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStatus {
    /// When the last pass ran.
    pub last_attempt: Option<Timestamp>,
    /// When a pass last completed without any error.
    pub last_success: Option<Timestamp>,
    /// The store revision the last pass worked from.
    pub revision: Revision,
    /// What the last pass changed.
    pub last_report: Report,
    /// The last pass's failure, if it could not run at all.
    pub error: Option<String>,
    /// Bindings the last pass could not express, and why.
    pub skipped: Vec<String>,
}

/// The RBAC sync over a set of clusters.
pub struct RbacSync {
    view: Arc<StoreView>,
    policy: CurrentPolicy,
    clusters: BTreeMap<String, kube::Client>,
    interval: Duration,
    status: Mutex<BTreeMap<String, ClusterStatus>>,
}

impl std::fmt::Debug for RbacSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RbacSync")
            .field("clusters", &self.clusters.keys().collect::<Vec<_>>())
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl RbacSync {
    /// A sync of the store's bindings under `policy`, with no cluster yet
    /// and a full pass every 60 s.
    pub fn new(view: Arc<StoreView>, policy: CurrentPolicy) -> Self {
        Self {
            view,
            policy,
            clusters: BTreeMap::new(),
            interval: Duration::from_secs(60),
            status: Mutex::default(),
        }
    }

    /// Synchronises cluster `id` through `client`.
    pub fn cluster(mut self, id: &str, client: kube::Client) -> Self {
        self.clusters.insert(id.to_owned(), client);
        self
    }

    /// Time between full passes when nothing changes (drift repair).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Each cluster's last pass.
    pub fn status(&self) -> BTreeMap<String, ClusterStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One pass for `cluster`: computes the desired objects and applies them.
    pub async fn reconcile(&self, cluster: &str) -> Result<Report, SyncError> {
        let client = self
            .clusters
            .get(cluster)
            .ok_or_else(|| SyncError::UnknownCluster(cluster.to_owned()))?;
        let snap = self.view.snapshot();
        let desired = desired::desired(&snap, &(self.policy)(), cluster);
        let outcome = apply::apply(client, &desired)
            .await
            .map_err(|e| SyncError::Cluster {
                cluster: cluster.to_owned(),
                message: e.to_string(),
            });
        let now = Timestamp::now();
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let entry = status.entry(cluster.to_owned()).or_default();
        entry.last_attempt = Some(now);
        entry.revision = snap.revision();
        entry.skipped = desired.skipped;
        match &outcome {
            Ok(report) => {
                entry.error = None;
                entry.last_report = report.clone();
                if report.errors.is_empty() {
                    entry.last_success = Some(now);
                }
                for error in &report.errors {
                    tracing::warn!(cluster.id = %cluster, %error, "rbac sync: object not written");
                }
                if report.created + report.updated + report.deleted > 0 {
                    tracing::info!(cluster.id = %cluster, created = report.created,
                        updated = report.updated, deleted = report.deleted, "rbac sync applied");
                }
            }
            Err(error) => {
                entry.error = Some(error.to_string());
                tracing::warn!(cluster.id = %cluster, %error, "rbac sync failed");
            }
        }
        outcome
    }

    /// Runs passes for every cluster until the returned task is aborted:
    /// every `interval`, and within a quarter second of a store change.
    pub fn spawn(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut done_at: Option<Revision> = None;
            let mut last_full = tokio::time::Instant::now();
            loop {
                let revision = self.view.snapshot().revision();
                if done_at != Some(revision) || last_full.elapsed() >= self.interval {
                    last_full = tokio::time::Instant::now();
                    for cluster in self.clusters.keys() {
                        let _ = self.reconcile(cluster).await;
                    }
                    done_at = Some(revision);
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }
}

/// A `kube` client for `config`'s API server with Paddock's credential for
/// it (bearer token file or client certificate) and its CA.
pub fn kube_client(config: &ClusterConfig) -> Result<kube::Client, SyncError> {
    let fail = |message: String| SyncError::Client {
        cluster: config.id.clone(),
        message,
    };
    let url = config
        .server
        .parse()
        .map_err(|e| fail(format!("server URL: {e}")))?;
    let mut kc = kube::Config::new(url);
    if let Some(mut pem) = config.ca_pem.as_deref() {
        let certs: Result<Vec<Vec<u8>>, _> = rustls_pemfile::certs(&mut pem)
            .map(|c| c.map(|c| c.to_vec()))
            .collect();
        kc.root_cert = Some(certs.map_err(|e| fail(format!("CA bundle: {e}")))?);
    }
    kc.accept_invalid_certs = config.dangerous_skip_tls_verify;
    kc.connect_timeout = Some(config.connect_timeout);
    kc.read_timeout = Some(config.request_timeout);
    match &config.credential {
        UpstreamCredential::None => {}
        UpstreamCredential::BearerToken(token) => {
            use secrecy::ExposeSecret;
            kc.auth_info.token = Some(token.expose_secret().to_owned().into());
        }
        UpstreamCredential::BearerTokenFile(path) => {
            kc.auth_info.token_file = Some(path.display().to_string());
        }
        UpstreamCredential::ClientCertificate { cert_pem, key_pem } => {
            use base64::Engine;
            use secrecy::ExposeSecret;
            let b64 = base64::engine::general_purpose::STANDARD;
            kc.auth_info.client_certificate_data = Some(b64.encode(cert_pem));
            kc.auth_info.client_key_data =
                Some(b64.encode(key_pem.expose_secret().as_bytes()).into());
        }
        #[allow(unreachable_patterns)]
        _ => return Err(fail("unsupported credential for the RBAC sync".to_owned())),
    }
    kube::Client::try_from(kc).map_err(|e| fail(e.to_string()))
}
