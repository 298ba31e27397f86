//! Kubeconfig files that point `kubectl` at Paddock.

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// A kubeconfig with one cluster, user and context named after `cluster_id`:
/// the server is `<base_url>/k8s/clusters/<cluster_id>`, the credential
/// `token`, and `ca_pem` (when given) the CA kubectl trusts.
///
/// ```
/// use secrecy::SecretString;
/// let yaml = proxy_core::kubeconfig::render(
///     "https://paddock.example:8443", "prod", "alice", &SecretString::from("t-1:s"), None);
/// assert!(yaml.contains("server: https://paddock.example:8443/k8s/clusters/prod"));
/// ```
pub fn render(
    base_url: &str,
    cluster_id: &str,
    username: &str,
    token: &SecretString,
    ca_pem: Option<&[u8]>,
) -> String {
    let mut cluster = serde_json::json!({
        "server": format!("{}/k8s/clusters/{cluster_id}", base_url.trim_end_matches('/')),
    });
    if let Some(ca) = ca_pem {
        cluster["certificate-authority-data"] =
            base64::engine::general_purpose::STANDARD.encode(ca).into();
    }
    let user = format!("{username}@{cluster_id}");
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": cluster_id, "cluster": cluster }],
        "users": [{ "name": user, "user": { "token": token.expose_secret() } }],
        "contexts": [{ "name": cluster_id, "context": { "cluster": cluster_id, "user": user } }],
        "current-context": cluster_id,
    });
    // A JSON value of strings always serialises.
    serde_norway::to_string(&config).unwrap_or_default()
}
