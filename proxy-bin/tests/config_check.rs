//! `paddock config check` and `paddock serve` agree: on every broken
//! configuration both exit 64 with the same errors, one line each, naming
//! every bad key; on a good one `config check` exits 0 and `serve` binds.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use paddock_tests::{
    kubectl::write_file,
    paddock::{run_to_exit, Paddock},
    tls::TestCa,
};

fn paddock() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paddock"));
    paddock_tests::paddock::without_proxy_env(&mut command);
    command
}

fn bin() -> &'static Path {
    env!("CARGO_BIN_EXE_paddock").as_ref()
}

const POLICY: &str = "apiVersion: management.cattle.io/v3\nkind: Project\nmetadata: {name: p-dev, namespace: prod}\nspec: {clusterName: prod, namespaces: [dev-a]}\n---\napiVersion: management.cattle.io/v3\nkind: ProjectRoleTemplateBinding\nmetadata: {name: prtb-alice, namespace: p-dev}\nprojectName: prod:p-dev\nuserPrincipalName: alice\nroleTemplateName: project-member\n";

/// The files a good configuration refers to, and the configuration.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = TestCa::new();
        ca.issue_server(&["127.0.0.1"]).write(d, "tls");
        write_file(d, "clients-ca.crt", ca.pem());
        write_file(d, "cluster-ca.crt", ca.pem());
        write_file(d, "ldap-ca.crt", ca.pem());
        write_file(d, "cluster-token", "paddock-token\n");
        write_file(d, "ldap-password", "s3cret\n");
        write_file(d, "tokens.csv", "alice-token,alice,1,\"developers\"\n");
        write_file(d, "bad-tokens.csv", "alice-token,alice\n");
        write_file(d, "not-pem", "this is not PEM\n");
        write_file(
            d,
            "kubeconfig",
            "apiVersion: v1\nkind: Config\ncurrent-context: c\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\nusers:\n- name: u\n  user: {token: t}\n",
        );
        for (name, yaml) in [("policy", POLICY), ("bad-policy", "kind: [unclosed\n")] {
            std::fs::create_dir(d.join(name)).unwrap();
            write_file(&d.join(name), "policy.yaml", yaml);
        }
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A configuration using every section, every file present and valid.
    fn good_yaml(&self) -> String {
        GOOD.replace("D/", &format!("{}/", self.path().display()))
    }

    fn write(&self, yaml: &str) -> PathBuf {
        write_file(self.path(), "paddock.yaml", yaml)
    }
}

const GOOD: &str = "\
workers: 2
tls:
  certFile: D/tls.crt
  keyFile: D/tls.key
  clientCAFile: D/clients-ca.crt
authentication:
  tokenFile: D/tokens.csv
  ldap:
    - name: corp
      kind: openldap
      servers: [ldaps://127.0.0.1:1]
      caFile: D/ldap-ca.crt
      bindDn: cn=paddock,dc=example
      bindPasswordFile: D/ldap-password
      userSearchBase: dc=example
authorization:
  mode: policy
  policyDir: D/policy
clusters:
  - id: prod
    default: true
    server: https://127.0.0.1:1
    caFile: D/cluster-ca.crt
    tokenFile: D/cluster-token
  - id: staging
    kubeconfig: {file: D/kubeconfig}
";

/// The error lines ("  <key path>: <message>") of a refused configuration.
fn error_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(str::to_owned)
        .collect()
}

/// What is broken, the edits that break the good configuration, and the
/// keys the errors must name (one error each).
type Case = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

#[test]
fn config_check_and_serve_refuse_the_same_configurations_with_the_same_errors() {
    let fixture = Fixture::new();
    let cases: &[Case] = &[
        (
            "certificate file not PEM",
            &[("D/tls.crt", "D/not-pem")],
            &["tls.certFile"],
        ),
        (
            "client CA not PEM",
            &[("D/clients-ca.crt", "D/not-pem")],
            &["tls.clientCAFile"],
        ),
        (
            "unknown top-level key",
            &[("workers:", "wrokers:")],
            &["wrokers"],
        ),
        (
            "unknown key in tls",
            &[("  keyFile:", "  keyFiel:")],
            &["tls.keyFiel"],
        ),
        (
            "unknown key inside the authorization map",
            &[("  policyDir:", "  polcyDir:")],
            &["authorization.polcyDir"],
        ),
        (
            "unknown key inside authentication.ldap[0]",
            &[("bindPasswordFile:", "bindPasswrodFile:")],
            &["authentication.ldap[0].bindPasswrodFile"],
        ),
        (
            "unknown key inside clusters[1].kubeconfig",
            &[("{file: D/kubeconfig}", "{file: D/kubeconfig, contxt: c}")],
            &["clusters[1].kubeconfig.contxt"],
        ),
        (
            "missing token file",
            &[("D/tokens.csv", "D/missing.csv")],
            &["authentication.tokenFile"],
        ),
        (
            "malformed token file",
            &[("D/tokens.csv", "D/bad-tokens.csv")],
            &["authentication.tokenFile"],
        ),
        (
            "unreadable policy directory",
            &[("D/policy", "D/no-such-policy")],
            &["authorization.policyDir"],
        ),
        (
            "invalid policy YAML",
            &[("D/policy", "D/bad-policy")],
            &["authorization.policyDir"],
        ),
        (
            "http:// cluster",
            &[("server: https://127.0.0.1:1", "server: http://127.0.0.1:1")],
            &["clusters[0].server"],
        ),
        (
            "zero workers",
            &[("workers: 2", "workers: 0")],
            &["workers"],
        ),
        (
            "cluster CA not PEM",
            &[("D/cluster-ca.crt", "D/not-pem")],
            &["clusters[0].caFile"],
        ),
        (
            "missing LDAP password file",
            &[("D/ldap-password", "D/missing-password")],
            &["authentication.ldap[0].bindPasswordFile"],
        ),
        (
            "kubeconfig context that does not exist",
            &[(
                "{file: D/kubeconfig}",
                "{file: D/kubeconfig, context: nope}",
            )],
            &["clusters[1].kubeconfig"],
        ),
        (
            "several errors at once",
            &[
                ("workers: 2", "workers: 0"),
                ("D/tls.crt", "D/not-pem"),
                ("D/tokens.csv", "D/missing.csv"),
                ("D/ldap-password", "D/missing-password"),
                ("D/policy", "D/bad-policy"),
                ("server: https://127.0.0.1:1", "server: http://127.0.0.1:1"),
                (
                    "{file: D/kubeconfig}",
                    "{file: D/kubeconfig, context: nope}",
                ),
            ],
            &[
                "workers",
                "tls.certFile",
                "authentication.tokenFile",
                "authentication.ldap[0].bindPasswordFile",
                "authorization.policyDir",
                "clusters[0].server",
                "clusters[1].kubeconfig",
            ],
        ),
    ];
    let data = fixture.path().join("data");
    for (what, edits, keys) in cases {
        let mut yaml = GOOD.to_owned();
        for (from, to) in *edits {
            assert!(yaml.contains(from), "{what}: {from:?} is not in the config");
            yaml = yaml.replace(from, to);
        }
        let yaml = yaml.replace("D/", &format!("{}/", fixture.path().display()));
        let config = fixture.write(&yaml);
        let check = run_to_exit(paddock().args(["config", "check", "--config"]).arg(&config));
        let serve = run_to_exit(
            paddock()
                .args(["serve", "--listen", "127.0.0.1:0", "--config"])
                .arg(&config)
                .arg("--data-dir")
                .arg(&data),
        );
        for (command, output) in [("config check", &check), ("serve", &serve)] {
            assert_eq!(
                output.status.code(),
                Some(64),
                "{what}: {command}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let lines = error_lines(&check);
        assert_eq!(lines, error_lines(&serve), "{what}: the two disagree");
        assert_eq!(
            lines.len(),
            keys.len(),
            "{what}: expected one error for each of {keys:?}, got {lines:#?}"
        );
        for key in *keys {
            assert!(
                lines.iter().any(|l| l.starts_with(&format!("  {key}: "))),
                "{what}: no error names {key}: {lines:#?}"
            );
        }
        assert!(!data.exists(), "{what}: serve touched the data directory");
    }
}

#[test]
fn the_authorization_typo_lists_the_keys_it_expected() {
    let fixture = Fixture::new();
    let config = fixture.write(&fixture.good_yaml().replace("  policyDir:", "  polcyDir:"));
    let output = run_to_exit(paddock().args(["config", "check", "--config"]).arg(&config));
    let lines = error_lines(&output);
    assert_eq!(lines.len(), 1, "{lines:?}");
    for expected in [
        "authorization.polcyDir",
        "mode",
        "policyDir",
        "managementCluster",
        "line 18",
    ] {
        assert!(lines[0].contains(expected), "{expected}: {lines:?}");
    }
}

#[test]
fn a_good_configuration_passes_config_check_and_serve_binds() {
    let fixture = Fixture::new();
    let config = fixture.write(&fixture.good_yaml());
    let check = run_to_exit(paddock().args(["config", "check", "--config"]).arg(&config));
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("valid (2 cluster(s)"),
        "{check:?}"
    );
    // Waits for "paddock listening" and a TCP connect.
    let paddock = Paddock::start(bin(), &["--config".into(), config.display().to_string()]);
    assert!(paddock.port() > 0);
}

/// `config check` compiles the policy as `serve` does: the policy files
/// together with the store's projects and bindings, and a damaged store
/// fails it as it fails `serve`.
#[test]
fn config_check_reads_the_store_serve_will_read() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let created = run_to_exit(paddock().args([
        "project",
        "create",
        "--data-dir",
        data.to_str().unwrap(),
        "--cluster",
        "prod",
        "web",
        "--namespace",
        "web",
    ]));
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8_lossy(&created.stdout);
    // "created project web (prod:p-xxxxxxxx)"
    let project = stdout
        .trim()
        .rsplit_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_owned();
    let policy = dir.path().join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(
        policy.join("web.yaml"),
        format!(
            "apiVersion: management.cattle.io/v3\nkind: ProjectRoleTemplateBinding\nmetadata: {{name: prtb-web, namespace: {}}}\nprojectName: {project}\nuserPrincipalName: alice\nroleTemplateName: project-member\n",
            project.split(':').nth(1).unwrap()
        ),
    )
    .unwrap();
    let config = write_file(
        dir.path(),
        "paddock.yaml",
        &format!(
            "dataDir: {}\nauthorization: {{mode: policy, policyDir: {}}}\n",
            data.display(),
            policy.display()
        ),
    );
    let check =
        |config: &Path| run_to_exit(paddock().args(["config", "check", "--config"]).arg(config));
    let checked = check(&config);
    assert!(checked.status.success(), "{checked:?}");

    // A damaged store: refused by config check, as serve refuses it.
    let store = data.join("paddock.redb");
    std::fs::write(&store, b"").unwrap();
    let refused = check(&config);
    assert_eq!(refused.status.code(), Some(64), "{refused:?}");
    assert!(
        error_lines(&refused).iter().any(|l| l.contains("dataDir")),
        "{refused:?}"
    );
    assert!(
        std::fs::read(&store).unwrap().is_empty(),
        "the store was touched"
    );
}
