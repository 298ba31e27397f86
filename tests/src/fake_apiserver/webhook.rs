//! Bearer tokens authenticated through a token-review webhook, as
//! kube-apiserver does with `--authentication-token-webhook-config-file`
//! and `--authentication-token-webhook-version`
//! (`staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/webhook/webhook.go`):
//!
//! * the config file is a kubeconfig; the webhook is its cluster's `server`,
//!   POSTed to as is;
//! * the request is a `TokenReview` in the configured version, and the
//!   answer must be one in the same version;
//! * `authenticated: false` means "not this user" (401 to the caller); a
//!   non-2xx answer or a transport error is a webhook failure (also 401 to
//!   the caller, since no other authenticator accepts the token);
//! * an authenticated user gets `system:authenticated` added.
//!
//! Unlike kube-apiserver, the fake caches nothing: it behaves like
//! `--authentication-token-webhook-cache-ttl=0s` without the apiserver's
//! fixed 10 s cache of successful token authentications, so a test sees
//! the webhook's own answer every time.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::{json, Value};

use super::UserInfo;

/// A configured token webhook.
#[derive(Debug, Clone)]
pub struct TokenWebhook {
    server: http::Uri,
    version: &'static str,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl TokenWebhook {
    /// Reads a webhook config file (kubeconfig format) and the version to
    /// speak (`v1` or `v1beta1`, kube-apiserver's default). Only `http://`
    /// servers (a sidecar on loopback, as Rancher configures it).
    pub fn from_config_file(path: &Path, version: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let config: Value = serde_norway::from_str(&text)?;
        let current = config["current-context"].as_str().unwrap_or_default();
        let contexts = config["contexts"].as_array().cloned().unwrap_or_default();
        let cluster_name = contexts
            .iter()
            .find(|c| c["name"] == current)
            .and_then(|c| c["context"]["cluster"].as_str().map(str::to_owned))
            .ok_or_else(|| anyhow::anyhow!("no context {current:?} in {}", path.display()))?;
        let clusters = config["clusters"].as_array().cloned().unwrap_or_default();
        let server = clusters
            .iter()
            .find(|c| c["name"] == cluster_name.as_str())
            .and_then(|c| c["cluster"]["server"].as_str().map(str::to_owned))
            .ok_or_else(|| anyhow::anyhow!("no cluster {cluster_name:?} in {}", path.display()))?;
        anyhow::ensure!(
            server.starts_with("http://"),
            "the fake speaks plain HTTP to webhooks only, not {server}"
        );
        let version = match version {
            "v1" => "authentication.k8s.io/v1",
            "v1beta1" => "authentication.k8s.io/v1beta1",
            other => anyhow::bail!("unknown webhook version {other}"),
        };
        Ok(Self {
            server: server.parse()?,
            version,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    /// Asks the webhook about `token`: the user, `Ok(None)` when it says
    /// not authenticated, `Err` on a webhook failure.
    pub(super) async fn review(&self, token: &str) -> Result<Option<UserInfo>, String> {
        let body = json!({
            "apiVersion": self.version, "kind": "TokenReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"token": token}, "status": {"user": {}},
        });
        let request = http::Request::post(self.server.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(30),
            self.client.request(request),
        )
        .await
        .map_err(|_| "webhook timed out".to_owned())?
        .map_err(|e| format!("webhook unreachable: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("webhook answered {status}"));
        }
        let review: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if review["apiVersion"] != self.version || review["kind"] != "TokenReview" {
            return Err(format!(
                "webhook answered {} {}, not a {} TokenReview",
                review["apiVersion"], review["kind"], self.version
            ));
        }
        if review["status"]["authenticated"] != true {
            return Ok(None);
        }
        let user = &review["status"]["user"];
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut groups = strings(&user["groups"]);
        groups.push("system:authenticated".to_owned());
        let extra = user["extra"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
            .unwrap_or_default();
        Ok(Some(UserInfo {
            username: user["username"].as_str().unwrap_or_default().to_owned(),
            uid: user["uid"].as_str().map(str::to_owned),
            groups,
            extra,
        }))
    }
}
