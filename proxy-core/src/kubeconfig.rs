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
    render_with_direct(base_url, cluster_id, username, token, ca_pem, None)
}

/// A cluster's API server reached directly, where a `paddock sidecar`
/// authenticates Paddock's cluster-scoped tokens (the authorized cluster
/// endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectEndpoint {
    /// `https://<api server>:6443`.
    pub server: String,
    /// The API server's CA (PEM); the system roots when absent.
    pub ca_pem: Option<Vec<u8>>,
}

/// [`render`], plus, when the cluster has a [`DirectEndpoint`], a second
/// cluster and context named `<cluster_id>-direct` that use the same
/// (cluster-scoped) token against the API server itself. The current
/// context stays the one through Paddock.
///
/// ```
/// use proxy_core::kubeconfig::{render_with_direct, DirectEndpoint};
/// use secrecy::SecretString;
/// let direct = DirectEndpoint { server: "https://10.0.0.1:6443".into(), ca_pem: None };
/// let yaml = render_with_direct("https://paddock.example", "prod", "alice",
///     &SecretString::from("t-1:s"), None, Some(&direct));
/// assert!(yaml.contains("name: prod-direct"));
/// assert!(yaml.contains("server: https://10.0.0.1:6443"));
/// assert!(yaml.contains("current-context: prod\n"));
/// ```
pub fn render_with_direct(
    base_url: &str,
    cluster_id: &str,
    username: &str,
    token: &SecretString,
    ca_pem: Option<&[u8]>,
    direct: Option<&DirectEndpoint>,
) -> String {
    let cluster = |server: String, ca: Option<&[u8]>| {
        let mut cluster = serde_json::json!({ "server": server });
        if let Some(ca) = ca {
            cluster["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        cluster
    };
    let user = format!("{username}@{cluster_id}");
    let mut clusters = vec![serde_json::json!({
        "name": cluster_id,
        "cluster": cluster(
            format!("{}/k8s/clusters/{cluster_id}", base_url.trim_end_matches('/')),
            ca_pem,
        ),
    })];
    let mut contexts = vec![
        serde_json::json!({ "name": cluster_id, "context": { "cluster": cluster_id, "user": user } }),
    ];
    if let Some(direct) = direct {
        let name = format!("{cluster_id}-direct");
        clusters.push(serde_json::json!({
            "name": name,
            "cluster": cluster(direct.server.clone(), direct.ca_pem.as_deref()),
        }));
        contexts.push(
            serde_json::json!({ "name": name, "context": { "cluster": name, "user": user } }),
        );
    }
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{ "name": user, "user": { "token": token.expose_secret() } }],
        "contexts": contexts,
        "current-context": cluster_id,
    });
    // A JSON value of strings always serialises.
    serde_norway::to_string(&config).unwrap_or_default()
}
