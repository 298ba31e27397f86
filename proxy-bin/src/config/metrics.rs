//! `metrics:` — the Prometheus listener. Absent, there is none.

use std::net::SocketAddr;

use serde::Deserialize;

use super::Errors;

/// Where `metrics.listen` points when it is not set.
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9090";

/// `metrics:`. The listener serves `GET /metrics` over plain HTTP with no
/// authentication, so it listens on loopback unless
/// `dangerous.allowPublicMetrics` says otherwise.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Address to listen on (default 127.0.0.1:9090).
    listen: Option<String>,
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

/// The metrics listener, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckedMetrics {
    /// The address to bind.
    pub(crate) listen: SocketAddr,
    /// The address is not loopback (allowed by `dangerous.allowPublicMetrics`).
    pub(crate) public: bool,
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
        let public = !listen.ip().is_loopback();
        if public && !self.dangerous.allow_public_metrics {
            errors.push(
                "metrics.listen",
                format!(
                    "{listen} is not a loopback address: the metrics are served in clear \
                     with no authentication; listen on 127.0.0.1 or ::1, or set \
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
        Some(CheckedMetrics { listen, public })
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
        assert_eq!(check("{}\n").unwrap(), None);
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
