//! The real `paddock` binary wired to a [`GithubEmulator`] and a fake
//! apiserver, for end-to-end tests of GitHub logins.

use std::path::Path;

use super::{Directory, GithubEmulator, CLIENT_ID, CLIENT_SECRET};
use crate::{
    client::{Collected, Protocol, TestClient},
    fake_apiserver::{FakeApiConfig, FakeApiServer},
    kubectl::write_file,
    paddock::{upstream_args, Paddock},
};

/// Lets members of `acme`'s `team-001` (id 5001) read namespaces and pods
/// and ask who they are, in every cluster.
pub const TEAM_POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: github-viewer}
rules:
- apiGroups: [""]
  resources: [namespaces, pods]
  verbs: [get, list, watch]
- apiGroups: [authentication.k8s.io]
  resources: [selfsubjectreviews]
  verbs: [create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: acme-team-001-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: github-viewer}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: "github_team://5001"}
"#;

/// How the stack is set up.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Configure GitHub Enterprise mode (`host:`, API under `/api/v3`)
    /// instead of explicit github.com-style URLs.
    pub enterprise: bool,
    /// `accessMode`.
    pub access_mode: &'static str,
    /// `allowed`.
    pub allowed: Vec<String>,
    /// More `authentication.github` keys, each line indented four spaces
    /// (e.g. `    refresh: {maxAgeSeconds: 1}\n`).
    pub extra: String,
    /// More top-level sections of the configuration (e.g. `audit:`).
    pub sections: String,
    /// Environment variables for Paddock (say `HTTPS_PROXY`).
    pub env: Vec<(&'static str, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            enterprise: false,
            access_mode: "required",
            allowed: vec!["acme".to_owned()],
            extra: String::new(),
            sections: String::new(),
            env: Vec::new(),
        }
    }
}

/// The running stack. Everything stops when dropped.
#[derive(Debug)]
pub struct GithubStack {
    /// The downstream cluster.
    pub fake: FakeApiServer,
    /// GitHub.
    pub github: GithubEmulator,
    /// Paddock.
    pub paddock: Paddock,
    /// A client trusting Paddock's CA.
    pub client: TestClient,
    /// A client trusting the emulator's CA.
    pub github_client: TestClient,
    /// Files (config, policy, CA bundles).
    pub dir: tempfile::TempDir,
}

impl GithubStack {
    /// Starts the emulator with the standard fixture, the fake apiserver
    /// (pod `default/web-1`), and Paddock configured for GitHub with
    /// [`TEAM_POLICY`]; `bin` is the `paddock` binary.
    pub async fn start(bin: &Path, options: StackOptions) -> Self {
        let github = GithubEmulator::start(Directory::fixture())
            .await
            .expect("GitHub emulator");
        let fake = FakeApiServer::start(FakeApiConfig {
            pods: vec![("default".into(), "web-1".into())],
            ..FakeApiConfig::default()
        })
        .await
        .expect("fake apiserver");
        let dir = tempfile::tempdir().expect("tempdir");
        let config = write_config(dir.path(), &github, &options);
        let mut args = upstream_args(&fake, dir.path());
        args.push("--config".into());
        args.push(config);
        let env: Vec<(&str, &str)> = options
            .env
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let paddock = Paddock::start_with_env(bin, &args, &env);
        let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
        let github_client = TestClient::new(github.ca_pem().as_bytes(), Protocol::Http1, None);
        Self {
            fake,
            github,
            paddock,
            client,
            github_client,
            dir,
        }
    }

    /// An absolute URL on Paddock.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.paddock.url())
    }

    /// Logs in to Paddock with the GitHub access token `token`.
    pub async fn token_login(&self, token: &str) -> Collected {
        self.client
            .send_json(
                http::Method::POST,
                &self.url("/paddock/v1/login"),
                None,
                &serde_json::json!({"provider": "github", "token": token}),
            )
            .await
    }
}

fn write_config(dir: &Path, github: &GithubEmulator, options: &StackOptions) -> String {
    let yaml = config_yaml(dir, github, options);
    write_file(dir, "paddock.yaml", &yaml).display().to_string()
}

/// The `authentication.github` and `authorization` configuration for
/// `github` with [`TEAM_POLICY`], as YAML; writes the files it names (client
/// secret, CA, policy) into `dir`.
pub fn config_yaml(dir: &Path, github: &GithubEmulator, options: &StackOptions) -> String {
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).expect("policy dir");
    write_file(&policy, "github.yaml", TEAM_POLICY);
    let secret = write_file(dir, "github-client-secret", CLIENT_SECRET);
    let ca = write_file(dir, "github-ca.crt", github.ca_pem());
    let location = if options.enterprise {
        format!("    host: \"{}\"\n", github.host())
    } else {
        format!("    oauthUrl: \"{0}\"\n    apiUrl: \"{0}\"\n", github.url())
    };
    let allowed: Vec<String> = options.allowed.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "authentication:\n  github:\n    clientId: {CLIENT_ID}\n    clientSecretFile: {}\n{location}    caFile: {}\n    accessMode: {}\n    allowed: [{}]\n{}{}authorization:\n  policyDir: {}\n",
        secret.display(),
        ca.display(),
        options.access_mode,
        allowed.join(", "),
        options.extra,
        options.sections,
        policy.display(),
    )
}
