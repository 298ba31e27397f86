//! A real OpenID provider for the tests: the npm package `oidc-provider`
//! (pinned in `tests/oidc/package-lock.json`, installed by `tests/run.sh`
//! with `npm ci`), run headless by `tests/oidc/provider.mjs` on a loopback
//! port over TLS from a test CA, with its own signing keys, one client and
//! the users given. Stopped on drop; restartable on the same port with
//! another key list (a key rotation) or stopped for good (provider down).

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::{json, Value};

use crate::{
    client::{Protocol, TestClient},
    tls::TestCa,
};

/// The client Paddock logs in as.
pub const CLIENT_ID: &str = "paddock";
/// Its secret.
pub const CLIENT_SECRET: &str = "paddock-oidc-client-secret-for-tests";

/// A user of the provider.
#[derive(Debug, Clone)]
pub struct TestUser {
    /// Login name, also `sub`.
    pub login: &'static str,
    /// Password (for the password grant).
    pub password: &'static str,
    /// The `groups` claim.
    pub groups: Vec<&'static str>,
    /// Refused by the provider.
    pub disabled: bool,
}

/// The standard users: `alice` (groups `ops`, `devs`), `bob` (`devs`) and
/// `dave` (disabled at the provider).
pub fn users() -> Vec<TestUser> {
    vec![
        TestUser {
            login: "alice",
            password: "alice's long password",
            groups: vec!["ops", "devs"],
            disabled: false,
        },
        TestUser {
            login: "bob",
            password: "bob's long password",
            groups: vec!["devs"],
            disabled: false,
        },
        TestUser {
            login: "dave",
            password: "dave's long password",
            groups: vec!["ops"],
            disabled: true,
        },
    ]
}

/// The directory of `provider.mjs` and its `node_modules`.
pub fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `oidc-provider`.
#[derive(Debug)]
pub struct OidcProvider {
    child: Option<Child>,
    port: u16,
    ca_pem: String,
    dir: tempfile::TempDir,
    users: Vec<TestUser>,
    redirect_uris: Vec<String>,
    keys: Vec<(String, String)>,
}

impl OidcProvider {
    /// Picks the provider's port now (Paddock's configuration needs the
    /// issuer before the provider, which needs Paddock's callback, starts).
    pub fn prepare(users: Vec<TestUser>) -> Self {
        let modules = provider_dir().join("node_modules").join("oidc-provider");
        assert!(
            modules.exists(),
            "{} is missing: run `npm ci` in {} (tests/run.sh does; needs Node.js and npm: apt-get install nodejs npm)",
            modules.display(),
            provider_dir().display()
        );
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("tempdir");
        ca.issue_server(&["127.0.0.1"]).write(dir.path(), "tls");
        Self {
            child: None,
            port: free_port(),
            ca_pem: ca.pem().to_owned(),
            dir,
            users,
            redirect_uris: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn issuer(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The CA of its TLS certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Where its signing keys are (`<kid>.pem`, `<kid>.pub.pem`, `<kid>.jwk.json`).
    pub fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    /// The private key `kid`, PKCS#8 PEM.
    pub fn private_key(&self, kid: &str) -> Vec<u8> {
        std::fs::read(self.keys_dir().join(format!("{kid}.pem"))).expect("private key")
    }

    /// The public key `kid`, SPKI PEM.
    pub fn public_key(&self, kid: &str) -> Vec<u8> {
        std::fs::read(self.keys_dir().join(format!("{kid}.pub.pem"))).expect("public key")
    }

    /// Changes a user at the provider (groups, disabled) without a restart.
    pub fn set_user(&mut self, login: &str, groups: &[&'static str], disabled: bool) {
        let user = self
            .users
            .iter_mut()
            .find(|u| u.login == login)
            .expect("a known user");
        user.groups = groups.to_vec();
        user.disabled = disabled;
        self.write_config(&self.keys.clone());
    }

    fn write_config(&self, keys: &[(String, String)]) -> PathBuf {
        let users: serde_json::Map<String, Value> = self
            .users
            .iter()
            .map(|u| {
                (
                    u.login.to_owned(),
                    json!({
                        "password": u.password,
                        "email": format!("{}@example.com", u.login),
                        "name": format!("{} Example", u.login),
                        "groups": u.groups,
                        "disabled": u.disabled,
                    }),
                )
            })
            .collect();
        let config = json!({
            "port": self.port,
            "certFile": self.dir.path().join("tls.crt"),
            "keyFile": self.dir.path().join("tls.key"),
            "keysDir": self.keys_dir(),
            "keys": keys.iter().map(|(kid, kty)| json!({"kid": kid, "kty": kty})).collect::<Vec<_>>(),
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": self.redirect_uris,
            }],
            "users": users,
        });
        let path = self.dir.path().join("provider.json");
        let tmp = self.dir.path().join("provider.json.tmp");
        std::fs::write(&tmp, config.to_string()).expect("provider config");
        std::fs::rename(&tmp, &path).expect("provider config");
        path
    }

    /// Starts (or restarts) it publishing `keys` (`(kid, "RSA"|"EC")`, the
    /// first signs), accepting `redirect_uris`; waits until it serves.
    pub fn start(&mut self, keys: &[(&str, &str)], redirect_uris: &[String]) {
        self.stop();
        self.redirect_uris = redirect_uris.to_vec();
        self.keys = keys
            .iter()
            .map(|(kid, kty)| ((*kid).to_owned(), (*kty).to_owned()))
            .collect();
        let path = self.write_config(&self.keys.clone());
        let log = std::fs::File::create(self.dir.path().join("provider.log")).expect("log");
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .arg(&path)
            .current_dir(provider_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start node ({e}): apt-get install nodejs npm"));
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("LISTENING") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        // Node loads oidc-provider's module graph in a few seconds on a
        // quiet machine; a loaded CI runner has taken over 20.
        let deadline = Instant::now() + Duration::from_secs(60);
        while rx.recv_timeout(Duration::from_millis(100)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("oidc-provider exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider did not start within 60 s:\n{}",
                self.log()
            );
        }
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("provider.log")).unwrap_or_default()
    }

    /// Stops it (the provider is down until [`start`](Self::start)).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client trusting its CA.
    pub fn client(&self) -> TestClient {
        TestClient::new(self.ca_pem.as_bytes(), Protocol::Http1, None)
    }

    /// The password grant at the token endpoint: the answer's JSON and status.
    pub async fn password_grant(&self, login: &str, password: &str) -> (u16, Value) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "password")
            .append_pair("username", login)
            .append_pair("password", password)
            .append_pair("scope", "openid email profile groups")
            .finish();
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        let request = Request::post(format!("{}/token", self.issuer()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from(body)))
            .expect("request");
        let answer = self.client().fetch(request).await;
        (
            answer.status(),
            serde_json::from_slice(&answer.body).unwrap_or(Value::Null),
        )
    }

    /// An ID token for `login` from the provider itself (password grant).
    pub async fn id_token(&self, login: &str) -> String {
        let user = self
            .users
            .iter()
            .find(|u| u.login == login)
            .expect("a known user");
        let (status, answer) = self.password_grant(login, user.password).await;
        assert_eq!(status, 200, "{answer}");
        answer["id_token"].as_str().expect("id_token").to_owned()
    }

    /// The configuration file's directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Lets members of `oidc_group://ops` read namespaces and pods and ask who
/// they are, in every cluster.
pub const OPS_POLICY: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: oidc-viewer}
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
metadata: {name: oidc-ops-views}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: oidc-viewer}
subjects:
- {kind: Group, apiGroup: rbac.authorization.k8s.io, name: "oidc_group://ops"}
"#;

/// The provider's name in Paddock's configuration.
pub const PROVIDER: &str = "corp";

/// The real `paddock` binary with one OIDC provider (`corp`, password
/// grant on, user names from `email`), the fake apiserver (pod
/// `default/web-1`) and [`OPS_POLICY`]. Everything stops when dropped.
#[derive(Debug)]
pub struct OidcStack {
    /// The downstream cluster.
    pub fake: crate::fake_apiserver::FakeApiServer,
    /// The OpenID provider, serving keys `rsa-1` (signing) and `ec-1`.
    pub idp: OidcProvider,
    /// Paddock.
    pub paddock: crate::paddock::Paddock,
    /// A client trusting Paddock's CA.
    pub client: TestClient,
    /// Files (config, policy, CA bundles).
    pub dir: tempfile::TempDir,
}

impl OidcStack {
    /// Starts the stack; `bin` is the `paddock` binary, `extra` more keys
    /// of the provider's entry (each line indented four spaces).
    pub async fn start(bin: &Path, extra: &str) -> Self {
        Self::start_with_env(bin, extra, &[]).await
    }

    /// [`OidcStack::start`] with Paddock's environment variables `env` (say
    /// `HTTPS_PROXY`) set.
    pub async fn start_with_env(bin: &Path, extra: &str, env: &[(&str, &str)]) -> Self {
        use crate::kubectl::write_file;
        let mut idp = OidcProvider::prepare(users());
        let fake =
            crate::fake_apiserver::FakeApiServer::start(crate::fake_apiserver::FakeApiConfig {
                pods: vec![("default".into(), "web-1".into())],
                ..Default::default()
            })
            .await
            .expect("fake apiserver");
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = dir.path().join("policy");
        std::fs::create_dir_all(&policy).expect("policy dir");
        write_file(&policy, "oidc.yaml", OPS_POLICY);
        let secret = write_file(dir.path(), "oidc-client-secret", CLIENT_SECRET);
        let ca = write_file(dir.path(), "oidc-ca.crt", idp.ca_pem());
        let yaml = format!(
            "authentication:\n  oidc:\n  - name: {PROVIDER}\n    displayName: Corp SSO\n    issuerUrl: {}\n    clientId: {CLIENT_ID}\n    clientSecretFile: {}\n    caFile: {}\n    scopes: [openid, email, profile, groups]\n    usernameClaim: email\n    passwordGrant: true\n    keyRefreshMinIntervalSeconds: 1\n{extra}authorization:\n  policyDir: {}\n",
            idp.issuer(),
            secret.display(),
            ca.display(),
            policy.display(),
        );
        let config = write_file(dir.path(), "paddock.yaml", &yaml);
        let mut args = crate::paddock::upstream_args(&fake, dir.path());
        args.push("--config".into());
        args.push(config.display().to_string());
        let paddock = crate::paddock::Paddock::start_with_env(bin, &args, env);
        idp.start(
            &[("rsa-1", "RSA"), ("ec-1", "EC")],
            &[format!(
                "{}/paddock/v1/oidc/{PROVIDER}/callback",
                paddock.url()
            )],
        );
        let client = TestClient::new(&paddock.ca_pem(), Protocol::Http1, None);
        Self {
            fake,
            idp,
            paddock,
            client,
            dir,
        }
    }

    /// An absolute URL on Paddock.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.paddock.url())
    }

    /// Restarts the provider with `keys` (a rotation), same port and client.
    pub fn rotate(&mut self, keys: &[(&str, &str)]) {
        let uris = self.idp.redirect_uris.clone();
        self.idp.start(keys, &uris);
    }
}
