//! The Kubernetes manifest that installs an agent in its cluster
//! (`GET /paddock/v1/clusters/<id>/agent.yaml`): `kubectl apply -f` of it
//! imports the cluster, as Rancher's import command does.
//!
//! The agent's ServiceAccount may impersonate users, groups, uids and
//! extras (what Paddock's impersonation headers need,
//! `k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`), and nothing
//! else: every request it forwards is decided by the cluster's RBAC for the
//! impersonated identity.

use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

/// The namespace the agent runs in.
pub const NAMESPACE: &str = "paddock-system";
/// The name of its ServiceAccount, Secret and Deployment.
pub const NAME: &str = "paddock-agent";
/// Where the Secret is mounted in the agent's container.
const SECRET_DIR: &str = "/etc/paddock-agent";

/// What a manifest is made of.
#[derive(Debug)]
#[non_exhaustive]
pub struct Manifest<'a> {
    /// Paddock's URL as the agent reaches it, `https://paddock.example`.
    pub server: &'a str,
    /// The registration token; without it the Secret is left out (create
    /// it with `kubectl -n paddock-system create secret generic
    /// paddock-agent --from-literal=token=<token>`).
    pub token: Option<&'a SecretString>,
    /// The CA that signed Paddock's certificate, pinned by the agent.
    pub ca_pem: Option<&'a [u8]>,
    /// The container image.
    pub image: &'a str,
}

impl<'a> Manifest<'a> {
    /// A manifest for an agent connecting to `server` with `image`.
    pub fn new(server: &'a str, image: &'a str) -> Self {
        Self {
            server,
            token: None,
            ca_pem: None,
            image,
        }
    }

    /// The YAML documents, `---`-separated.
    pub fn render(&self) -> String {
        let mut args = vec![
            json!("agent"),
            json!("--server"),
            json!(self.server),
            json!("--token-file"),
            json!(format!("{SECRET_DIR}/token")),
        ];
        let mut secret_data = serde_json::Map::new();
        if let Some(token) = self.token {
            secret_data.insert("token".into(), json!(token.expose_secret()));
        }
        if let Some(ca) = self.ca_pem {
            args.push(json!("--ca-file"));
            args.push(json!(format!("{SECRET_DIR}/ca.crt")));
            secret_data.insert("ca.crt".into(), json!(String::from_utf8_lossy(ca)));
        }
        let labels = json!({ "app.kubernetes.io/name": NAME });
        let mut documents = vec![
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": { "name": NAMESPACE },
            }),
            json!({
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": { "name": NAME, "namespace": NAMESPACE },
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": { "name": "paddock-agent-impersonator" },
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["users", "groups", "serviceaccounts"],
                        "verbs": ["impersonate"],
                    },
                    {
                        "apiGroups": ["authentication.k8s.io"],
                        "resources": ["userextras/*", "uids"],
                        "verbs": ["impersonate"],
                    },
                ],
            }),
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": { "name": "paddock-agent-impersonator" },
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "paddock-agent-impersonator",
                },
                "subjects": [
                    { "kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE },
                ],
            }),
        ];
        if self.token.is_some() {
            documents.push(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": { "name": NAME, "namespace": NAMESPACE },
                "type": "Opaque",
                "stringData": Value::Object(secret_data),
            }));
        }
        documents.push(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": { "name": NAME, "namespace": NAMESPACE, "labels": labels },
            "spec": {
                "replicas": 1,
                "selector": { "matchLabels": labels },
                "template": {
                    "metadata": { "labels": labels },
                    "spec": {
                        "serviceAccountName": NAME,
                        "containers": [{
                            "name": "agent",
                            "image": self.image,
                            "args": args,
                            "volumeMounts": [
                                { "name": "secret", "mountPath": SECRET_DIR, "readOnly": true },
                            ],
                            "resources": {
                                "requests": { "cpu": "50m", "memory": "32Mi" },
                                "limits": { "memory": "256Mi" },
                            },
                            "securityContext": {
                                "runAsNonRoot": true,
                                "runAsUser": 65532,
                                "readOnlyRootFilesystem": true,
                                "allowPrivilegeEscalation": false,
                                "capabilities": { "drop": ["ALL"] },
                            },
                        }],
                        "volumes": [
                            { "name": "secret", "secret": { "secretName": NAME } },
                        ],
                    },
                },
            },
        }));
        documents
            .iter()
            .map(|d| serde_norway::to_string(d).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("---\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_the_token_only_when_given() {
        let token = SecretString::from("edge.s3cret".to_owned());
        let mut manifest = Manifest::new("https://paddock.example", "paddock:1");
        let without = manifest.render();
        assert!(!without.contains("kind: Secret"));
        manifest.token = Some(&token);
        manifest.ca_pem = Some(b"-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n");
        let with = manifest.render();
        assert!(with.contains("kind: Secret"));
        assert!(with.contains("edge.s3cret"));
        assert!(with.contains("--ca-file"));
        assert_eq!(with.matches("\n---\n").count() + 1, 6, "{with}");
        for document in with.split("\n---\n") {
            let _: serde_json::Value = serde_norway::from_str(document).unwrap();
        }
    }
}
