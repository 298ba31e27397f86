//! `clusters:`: the downstream API servers, resolved at load into the
//! [`ClusterConfig`]s the proxy runs on.

use std::{path::PathBuf, time::Duration};

use proxy_core::upstream::{ClusterConfig, UpstreamCredential, UpstreamError};
use secrecy::SecretString;
use serde::Deserialize;

use super::Errors;

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
    /// Seconds allowed to connect: TCP, TLS and the HTTP/2 handshake
    /// (default 5).
    pub(crate) connect_timeout_seconds: Option<u64>,
    /// Settings that weaken security; each says so in the log.
    #[serde(default)]
    pub(crate) dangerous: DangerousCluster,
    /// The API server as users reach it directly, authenticated by a
    /// `paddock sidecar` (downloaded kubeconfigs gain `<id>-direct`).
    pub(crate) direct_endpoint: Option<DirectEndpointEntry>,
}

/// `clusters[].directEndpoint:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct DirectEndpointEntry {
    /// `https://<api server>:6443`.
    pub(crate) server: String,
    /// Its CA bundle, put into kubeconfigs.
    #[serde(rename = "caFile")]
    pub(crate) ca_file: Option<PathBuf>,
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

/// A cluster, resolved and checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedCluster {
    /// What the proxy runs on.
    pub(crate) config: ClusterConfig,
    /// Served at `/` too.
    pub(crate) default: bool,
}

/// Why an `http://` API server is refused.
pub(crate) const PLAINTEXT_REFUSED: &str = "http:// sends Paddock's credential and the \
     caller's identity in clear; use https:// (or set dangerous.allowPlaintext: true)";

pub(super) fn check(entries: &[ClusterEntry], errors: &mut Errors) -> Option<Vec<CheckedCluster>> {
    let before = errors.len();
    let mut checked = Vec::new();
    let mut defaults = 0;
    for (index, entry) in entries.iter().enumerate() {
        let at = |key: &str| format!("clusters[{index}].{key}");
        if let Err(message) = validate_cluster_id(&entry.id) {
            errors.push(at("id"), message);
        } else if entries[..index].iter().any(|c| c.id == entry.id) {
            errors.push(at("id"), format!("duplicate cluster id {:?}", entry.id));
        }
        defaults += usize::from(entry.default);
        if entry.default && defaults > 1 {
            errors.push(at("default"), "only one cluster can be the default");
        }
        for (key, value) in [
            ("requestTimeoutSeconds", entry.request_timeout_seconds),
            ("connectTimeoutSeconds", entry.connect_timeout_seconds),
        ] {
            if value == Some(0) {
                errors.push(at(key), "must be at least 1");
            }
        }
        if let Some(config) = resolve(entry, &at, errors) {
            checked.push(CheckedCluster {
                config,
                default: entry.default,
            });
        }
    }
    (errors.len() == before).then_some(checked)
}

/// The cluster's server, CA and credential, from the entry's own keys or
/// its kubeconfig, read and checked.
fn resolve(
    entry: &ClusterEntry,
    at: &dyn Fn(&str) -> String,
    errors: &mut Errors,
) -> Option<ClusterConfig> {
    let before = errors.len();
    let mut cluster = match (&entry.server, &entry.kubeconfig) {
        (Some(server), None) => {
            let uri = server.parse::<http::Uri>().ok();
            let scheme = uri.as_ref().and_then(http::Uri::scheme_str);
            if !matches!(scheme, Some("https" | "http"))
                || uri.as_ref().and_then(http::Uri::host).is_none()
            {
                errors.push(at("server"), format!("{server:?} is not an https:// URL"));
                return None;
            }
            ClusterConfig::new(entry.id.clone(), server.clone())
        }
        (None, Some(kubeconfig)) => {
            if entry.ca_file.is_some()
                || entry.token_file.is_some()
                || entry.client_cert_file.is_some()
                || entry.client_key_file.is_some()
            {
                errors.push(
                    at("kubeconfig"),
                    "cannot be combined with caFile, tokenFile or clientCertFile",
                );
            }
            errors.ok(
                &at("kubeconfig"),
                ClusterConfig::from_kubeconfig(
                    entry.id.clone(),
                    &kubeconfig.file,
                    kubeconfig.context.as_deref(),
                ),
            )?
        }
        (Some(_), Some(_)) => {
            errors.push(at("server"), "set either server or kubeconfig, not both");
            return None;
        }
        (None, None) => {
            errors.push(at("server"), "required (or kubeconfig)");
            return None;
        }
    };
    let server_key = if entry.kubeconfig.is_some() {
        "kubeconfig"
    } else {
        "server"
    };
    let plaintext = cluster.server.to_ascii_lowercase().starts_with("http://");
    if plaintext && !entry.dangerous.allow_plaintext {
        errors.push(at(server_key), PLAINTEXT_REFUSED);
    }
    if let Some(ca) = &entry.ca_file {
        cluster.ca_pem = errors.read(&at("caFile"), ca);
    }
    if let Some(file) = &entry.token_file {
        cluster.credential = UpstreamCredential::BearerTokenFile(file.clone());
    }
    // The token file, whether named here or in the kubeconfig, must hold a token.
    if let UpstreamCredential::BearerTokenFile(file) = &cluster.credential {
        let key = at(if entry.kubeconfig.is_some() {
            "kubeconfig"
        } else {
            "tokenFile"
        });
        if let Some(token) = errors.read_text(&key, file) {
            if token.trim().is_empty() {
                errors.push(key, format!("{} is empty", file.display()));
            }
        }
    }
    match (&entry.client_cert_file, &entry.client_key_file) {
        (Some(cert), Some(key)) => {
            if entry.token_file.is_some() {
                errors.push(
                    at("tokenFile"),
                    "use either tokenFile or a client certificate, not both",
                );
            }
            let cert_pem = errors.read(&at("clientCertFile"), cert);
            let key_pem = errors.read_text(&at("clientKeyFile"), key);
            if let (Some(cert_pem), Some(key_pem)) = (cert_pem, key_pem) {
                cluster.credential = UpstreamCredential::ClientCertificate {
                    cert_pem,
                    key_pem: SecretString::from(key_pem),
                };
            }
        }
        (None, None) => {}
        _ => errors.push(
            at("clientKeyFile"),
            "clientCertFile and clientKeyFile go together",
        ),
    }
    if entry.dangerous.skip_tls_verify {
        cluster.dangerous_skip_tls_verify = true;
    }
    if let Some(secs) = entry.request_timeout_seconds {
        cluster.request_timeout = Duration::from_secs(secs);
    }
    if let Some(secs) = entry.connect_timeout_seconds {
        cluster.connect_timeout = Duration::from_secs(secs);
    }
    if let Some(direct) = &entry.direct_endpoint {
        let uri = direct.server.parse::<http::Uri>().ok();
        if uri.as_ref().and_then(http::Uri::scheme_str) != Some("https")
            || uri.as_ref().and_then(http::Uri::host).is_none()
        {
            errors.push(
                at("directEndpoint.server"),
                format!("{:?} is not an https:// URL", direct.server),
            );
        }
        let ca_pem = direct
            .ca_file
            .as_ref()
            .and_then(|f| errors.read(&at("directEndpoint.caFile"), f));
        if let Some(pem) = &ca_pem {
            if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                errors.push(at("directEndpoint.caFile"), "holds no PEM certificate");
            }
        }
        cluster.direct_endpoint = Some(proxy_core::kubeconfig::DirectEndpoint {
            server: direct.server.clone(),
            ca_pem,
        });
    }
    if errors.len() > before {
        return None;
    }
    if let Err(error) = cluster.check() {
        let key = match &error {
            _ if entry.kubeconfig.is_some() => "kubeconfig",
            UpstreamError::Url { .. } => "server",
            UpstreamError::Tls { message, .. }
                if message.contains("client") && entry.client_cert_file.is_some() =>
            {
                "clientCertFile"
            }
            _ => "caFile",
        };
        errors.push(at(key), error.to_string());
        return None;
    }
    Some(cluster)
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
