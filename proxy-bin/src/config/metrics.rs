//! `metrics:` — the Prometheus listener. Absent, there is none.
//!
//! ```yaml
//! metrics:
//!   listen: 10.0.0.5:9090
//!   tls: {certFile: /etc/paddock/metrics.crt, keyFile: /etc/paddock/metrics.key}
//!   bearerTokenFile: /etc/paddock/metrics-token   # Prometheus' authorization.credentials_file
//! ```

use std::{net::SocketAddr, path::PathBuf};

use proxy_core::{plugins::metrics::ListenerOptions, server::tls::ServerTls};
use secrecy::SecretString;
use serde::Deserialize;

use super::Errors;

/// Where `metrics.listen` points when it is not set.
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

/// `metrics:`. The listener serves `GET /metrics`, over plain HTTP with no
/// authentication unless `tls` and `bearerTokenFile` are set; without both
/// it listens on loopback unless `dangerous.allowPublicMetrics` says
/// otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Address to listen on (default 127.0.0.1:9090).
    listen: Option<String>,
    /// Serve over TLS with this certificate.
    tls: Option<MetricsTls>,
    /// A file holding the token scrapers must send as `Authorization: Bearer`.
    bearer_token_file: Option<PathBuf>,
    /// What is refused unless asked for.
    #[serde(default)]
    dangerous: DangerousMetrics,
}

/// `metrics.dangerous:`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DangerousMetrics {
    /// Listen on an address other hosts can reach: anyone there reads the
    /// metrics (clusters, resources, request rates), in clear.
    #[serde(default)]
    allow_public_metrics: bool,
}

/// `metrics.tls:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MetricsTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// The metrics listener, checked.
#[derive(Debug, Clone)]
pub(crate) struct CheckedMetrics {
    /// The address to bind.
    pub(crate) listen: SocketAddr,
    /// The address is not loopback and the listener is neither TLS nor
    /// authenticated (allowed by `dangerous.allowPublicMetrics`).
    pub(crate) public: bool,
    /// TLS and the bearer token.
    pub(crate) options: ListenerOptions,
}

impl MetricsConfig {
    /// The listener, or `None` with the errors recorded; `main` is the
    /// proxy's own address, which the metrics cannot share.
    pub(super) fn check(
        &self,
        main: Option<SocketAddr>,
        errors: &mut Errors,
    ) -> Option<CheckedMetrics> {
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_METRICS_LISTEN);
        let Ok(listen) = listen.parse::<SocketAddr>() else {
            errors.push(
                "metrics.listen",
                format!("{listen:?} is not an address like {DEFAULT_METRICS_LISTEN}"),
            );
            return None;
        };
        let before = errors.len();
        let mut options = ListenerOptions::default();
        if let Some(tls) = &self.tls {
            let cert = errors.read("metrics.tls.certFile", &tls.cert_file);
            let key = errors.read("metrics.tls.keyFile", &tls.key_file);
            if let (Some(cert_chain_pem), Some(key_pem)) = (cert, key) {
                let server = ServerTls {
                    cert_chain_pem,
                    key_pem: key_pem.into(),
                    client_ca_pem: None,
                    ca_pem: None,
                };
                options.tls = errors.ok("metrics.tls.certFile", server.server_config());
            }
        }
        if let Some(file) = &self.bearer_token_file {
            match errors.read_text("metrics.bearerTokenFile", file) {
                Some(token) if token.trim().is_empty() => {
                    errors.push("metrics.bearerTokenFile", "the file is empty");
                }
                Some(token) => {
                    options.bearer_token = Some(SecretString::from(token.trim().to_owned()));
                }
                None => {}
            }
        }
        if errors.len() != before {
            return None;
        }
        let protected = options.tls.is_some() && options.bearer_token.is_some();
        let public = !listen.ip().is_loopback() && !protected;
        if public && !self.dangerous.allow_public_metrics {
            errors.push(
                "metrics.listen",
                format!(
                    "{listen} is not a loopback address: the metrics are served in clear \
                     with no authentication; listen on 127.0.0.1 or ::1, set metrics.tls \
                     and metrics.bearerTokenFile, or set \
                     metrics.dangerous.allowPublicMetrics: true"
                ),
            );
            return None;
        }
        if main == Some(listen) && listen.port() != 0 {
            errors.push(
                "metrics.listen",
                format!("{listen} is the proxy's own listen address"),
            );
            return None;
        }
        Some(CheckedMetrics {
            listen,
            public,
            options,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ConfigErrors};
    use super::*;

    fn check(yaml: &str) -> Result<Option<CheckedMetrics>, ConfigErrors> {
        Config::from_yaml(yaml)?
            .check()
            .map(|checked| checked.metrics)
    }

    fn error_paths(yaml: &str) -> Vec<String> {
        let errors = check(yaml).unwrap_err();
        errors.0.iter().map(|e| e.path.clone()).collect()
    }

    #[test]
    fn metrics_are_off_unless_configured_and_on_loopback_by_default() {
        assert!(check("{}\n").unwrap().is_none());
        let on = check("metrics: {}\n").unwrap().unwrap();
        assert_eq!(on.listen, DEFAULT_METRICS_LISTEN.parse().unwrap());
        let v6 = check("metrics: {listen: '[::1]:9100'}\n").unwrap().unwrap();
        assert!(!v6.public);
    }

    #[test]
    fn a_public_listen_address_needs_the_dangerous_opt_in() {
        for address in ["0.0.0.0:9090", "'[::]:9090'", "192.0.2.7:9090"] {
            assert_eq!(
                error_paths(&format!("metrics: {{listen: {address}}}\n")),
                ["metrics.listen"],
                "{address}"
            );
        }
        let public =
            check("metrics:\n  listen: 0.0.0.0:9090\n  dangerous: {allowPublicMetrics: true}\n")
                .unwrap()
                .unwrap();
        assert!(public.public);
    }

    #[test]
    fn tls_and_a_bearer_token_make_a_public_listener_acceptable() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ServerTls::self_signed(dir.path(), &[]).unwrap();
        let cert = dir.path().join("m.crt");
        let key = dir.path().join("m.key");
        let token = dir.path().join("token");
        std::fs::write(&cert, &tls.cert_chain_pem).unwrap();
        std::fs::write(&key, secrecy::ExposeSecret::expose_secret(&tls.key_pem)).unwrap();
        std::fs::write(&token, "s3cret\n").unwrap();
        let yaml = |extra: &str| {
            format!(
                "metrics:\n  listen: 0.0.0.0:9090\n  tls: {{certFile: {}, keyFile: {}}}\n{extra}",
                cert.display(),
                key.display()
            )
        };
        let checked = check(&yaml(&format!("  bearerTokenFile: {}\n", token.display())))
            .unwrap()
            .unwrap();
        assert!(!checked.public);
        assert!(checked.options.tls.is_some());
        assert!(!format!("{checked:?}").contains("s3cret"));
        // TLS alone is not enough off loopback.
        assert_eq!(error_paths(&yaml("")), ["metrics.listen"]);
        assert_eq!(
            error_paths(&format!(
                "metrics:\n  tls: {{certFile: {}, keyFile: /nonexistent}}\n  bearerTokenFile: /nonexistent\n",
                cert.display()
            )),
            ["metrics.tls.keyFile", "metrics.bearerTokenFile"]
        );
    }

    #[test]
    fn bad_metrics_keys_are_named() {
        assert_eq!(
            error_paths("metrics: {listen: localhost}\n"),
            ["metrics.listen"]
        );
        assert_eq!(
            error_paths("listen: 127.0.0.1:9443\nmetrics: {listen: 127.0.0.1:9443}\n"),
            ["metrics.listen"]
        );
        let unknown = check("metrics: {port: 9090}\n").unwrap_err().to_string();
        assert!(
            unknown.contains("metrics") && unknown.contains("port"),
            "{unknown}"
        );
        let unknown = check("metrics: {dangerous: {allowPublic: true}}\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("allowPublic"), "{unknown}");
    }
}
