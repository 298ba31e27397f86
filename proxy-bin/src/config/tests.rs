use super::*;

fn check(yaml: &str) -> Result<Checked, ConfigErrors> {
    Config::from_yaml(yaml)?.check()
}

#[test]
fn empty_file_is_the_embedded_defaults() {
    let config = check("").unwrap();
    assert!(config.clusters.is_empty());
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.authorization.mode, AuthorizationMode::Policy);
}

#[test]
fn errors_name_the_key_path() {
    let cases = [
        ("listen: nowhere", "listen"),
        ("workers: 0", "workers"),
        ("clusters:\n  - id: a\n    server: https://x\n    bogus: 1\n", "clusters[0].bogus"),
        ("clusters:\n  - id: a\n    server: https://x\n  - id: a\n    server: https://y\n", "clusters[1].id"),
        ("clusters:\n  - id: Bad_Id\n    server: https://x\n", "clusters[0].id"),
        ("clusters:\n  - id: a\n", "clusters[0].server"),
        ("clusters:\n  - id: a\n    server: ftp://x\n", "clusters[0].server"),
        ("clusters:\n  - id: a\n    server: https://x\n    caFile: /nonexistent/ca.crt\n", "clusters[0].caFile"),
        ("clusters:\n  - id: a\n    server: https://x\n    requestTimeoutSeconds: zero\n", "clusters[0].requestTimeoutSeconds"),
        ("clusters:\n  - {id: a, server: 'https://x', default: true}\n  - {id: b, server: 'https://y', default: true}\n", "clusters[1].default"),
        ("tls:\n  certFile: /etc/hostname\n", "tls.keyFile"),
        ("authorization: allow-everyone\n", "authorization"),
        ("authentication:\n  tokenFile: /nonexistent\n", "authentication.tokenFile"),
        ("authentication:\n  passwords: yes\n", "authentication.passwords"),
        ("authentication:\n  local:\n    passwordMinLength: 4\n", "authentication.local.passwordMinLength"),
        ("authentication:\n  tokens:\n    apiMaxTTLSeconds: 5\n", "authentication.tokens.apiMaxTTLSeconds"),
        ("authentication:\n  tokens:\n    forever: true\n", "authentication.tokens.forever"),
        ("logging:\n  level: '[[['\n", "logging.level"),
        ("unknownTopLevel: 1\n", "unknownTopLevel"),
        ("authorization:\n  mode: deny-all\n  policyDir: /tmp\n", "authorization.mode"),
        ("authorization:\n  mode: policy\n  policyDir: /nonexistent\n", "authorization.policyDir"),
        ("authorization:\n  mode: policy\n  polcyDir: /tmp\n", "authorization.polcyDir"),
        ("authorization:\n  mode: allow-everyone\n", "authorization.mode"),
        ("authorization:\n  managementCluster: Not_An_Id\n", "authorization.managementCluster"),
        ("clusters:\n  - id: a\n    server: http://x\n", "clusters[0].server"),
        ("clusters:\n  - id: a\n    server: https://x\n    dangerous: {allowPlaintxt: true}\n", "clusters[0].dangerous.allowPlaintxt"),
        ("authentication:\n  ldap:\n    - {name: corp, kind: openldap, servers: [ldaps://x], bindDn: x, bindPassword: p, userSearchBase: dc=x, bogus: 1}\n", "authentication.ldap[0].bogus"),
        ("authentication:\n  ldap:\n    - {name: corp, kind: openldap, servers: [ftp://x], bindDn: x, bindPassword: p, userSearchBase: dc=x}\n", "authentication.ldap[0].servers[0]"),
        ("dataDir: /etc/hostname\n", "dataDir"),
        ("clusters:\n  - id: a\n    server: https://x\n    directEndpoint: {server: 'http://x:6443'}\n", "clusters[0].directEndpoint.server"),
        ("clusters:\n  - id: a\n    server: https://x\nrbacSync: {clusters: [b]}\n", "rbacSync.clusters[0]"),
        ("clusters:\n  - id: a\n    server: https://x\nrbacSync: {clusters: [a], intervalSeconds: 0}\n", "rbacSync.intervalSeconds"),
        ("clusters:\n  - id: a\n    server: https://x\nauthorization: allow-authenticated\nrbacSync: {clusters: [a]}\n", "rbacSync"),
        ("rbacSync: {clusters: [], bogus: 1}\n", "rbacSync.bogus"),
        ("rbacSync: {clusters: []}\n", "rbacSync.clusters"),
        ("alerts:\n  rules: {rbacSyncFailingMinutes: 5}\n  receivers: [{name: a, url: 'https://x'}]\n", "alerts.rules.rbacSyncFailingMinutes"),
        ("rbacSync: {}\nalerts:\n  rules: {rbacSyncFailingMinutes: 0}\n  receivers: [{name: a, url: 'https://x'}]\n", "alerts.rules.rbacSyncFailingMinutes"),
        ("clusters:\n  - id: a\n    server: https://x\n    directEndpoint: {server: 'https://x:6443', caFile: /etc/hostname}\n", "clusters[0].directEndpoint.caFile"),
        ("clusters:\n  - id: a\n    server: https://x\n    directEndpoint: {server: 'https://x:6443', ca: x}\n", "clusters[0].directEndpoint.ca"),
    ];
    for (yaml, path) in cases {
        let errors = check(yaml).expect_err(yaml);
        assert!(errors.names(path), "{yaml}\n=> {errors}");
    }
}

#[test]
fn a_complete_config_loads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "not checked: skipTLSVerify").unwrap();
    let yaml = format!(
        "listen: 0.0.0.0:9443\nauthorization: allow-authenticated\nclusters:\n  - id: prod\n    default: true\n    server: https://10.0.0.1:6443\n    caFile: {}\n    dangerous:\n      skipTLSVerify: true\n",
        ca.display()
    );
    let config = check(&yaml).unwrap();
    assert_eq!(config.clusters[0].config.id, "prod");
    assert!(config.clusters[0].config.dangerous_skip_tls_verify);
    assert_eq!(
        config.authorization.mode,
        AuthorizationMode::AllowAuthenticated
    );
}

#[test]
fn github_settings_are_checked_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let base = format!(
        "authentication:\n  github:\n    clientId: abc\n    clientSecretFile: {}\n",
        secret.display()
    );
    check(&base).unwrap();
    let cases = [
        (
            "authentication:\n  github:\n    clientSecretFile: /etc/hostname\n".to_owned(),
            "authentication.github.clientId",
        ),
        (
            "authentication:\n  github:\n    clientId: abc\n".to_owned(),
            "authentication.github.clientSecretFile",
        ),
        (
            "authentication:\n  github:\n    clientId: abc\n    clientSecretEnv: PADDOCK_TEST_SURELY_UNSET\n".to_owned(),
            "authentication.github.clientSecretEnv",
        ),
        (format!("{base}    accessMode: open\n"), "authentication.github.accessMode"),
        (format!("{base}    accessMode: required\n"), "authentication.github.allowed"),
        (
            format!("{base}    accessMode: required\n    allowed: [\"github_team://x\"]\n"),
            "authentication.github.allowed[0]",
        ),
        (format!("{base}    host: \"ghe/x\"\n"), "authentication.github.host"),
        (format!("{base}    apiUrl: https://x\n"), "authentication.github.oauthUrl"),
        (format!("{base}    caFile: /nonexistent\n"), "authentication.github.caFile"),
        (
            format!("{base}    redirectUrl: http://p/paddock/v1/github/callback\n"),
            "authentication.github.redirectUrl",
        ),
        (format!("{base}    clientSecret: inline\n"), "authentication.github.clientSecret"),
    ];
    for (yaml, path) in cases {
        let errors = check(&yaml).expect_err(&yaml);
        assert!(errors.names(path), "{yaml}\n=> {errors}");
    }
    let debug = format!("{:?}", check(&base).unwrap());
    assert!(!debug.contains("s3cret"), "{debug}");
}

#[test]
fn oidc_settings_are_checked_with_their_key_paths() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let entry = format!(
        "  - name: corp\n    issuerUrl: https://idp.example/realms/ops\n    clientId: paddock\n    clientSecretFile: {}\n",
        secret.display()
    );
    let base = format!("authentication:\n  oidc:\n{entry}");
    check(&base).unwrap();
    let at = "authentication.oidc[0]";
    let cases = [
        (
            base.replace("name: corp", "name: Corp_1"),
            format!("{at}.name"),
        ),
        (
            base.replace("https://idp", "http://idp"),
            format!("{at}.issuerUrl"),
        ),
        (
            base.replace("clientId: paddock", "clientId: ''"),
            format!("{at}.clientId"),
        ),
        (
            format!("{base}    accessMode: required\n"),
            format!("{at}.allowed"),
        ),
        (
            format!("{base}    accessMode: open\n"),
            format!("{at}.accessMode"),
        ),
        (
            format!("{base}    allowed: [\"github_team://1\"]\n"),
            format!("{at}.allowed[0]"),
        ),
        (
            format!("{base}    caFile: /nonexistent\n"),
            format!("{at}.caFile"),
        ),
        (
            format!("{base}    leewaySeconds: 3600\n"),
            format!("{at}.leewaySeconds"),
        ),
        (
            format!("{base}    keyRefreshMinIntervalSeconds: 0\n"),
            format!("{at}.keyRefreshMinIntervalSeconds"),
        ),
        (
            format!("{base}    redirectUrl: https://p/paddock/v1/oidc/other/callback\n"),
            format!("{at}.redirectUrl"),
        ),
        (
            format!("{base}    clientSecret: inline\n"),
            format!("{at}.clientSecret"),
        ),
        (
            format!("{base}{entry}"),
            "authentication.oidc[1].name".to_owned(),
        ),
        (
            format!("{base}{}", entry.replace("name: corp", "name: cli")),
            "authentication.oidc[1].issuerUrl".to_owned(),
        ),
        (
            base.replace("name: corp", "name: local"),
            format!("{at}.name"),
        ),
    ];
    for (yaml, path) in cases {
        let errors = check(&yaml).expect_err(&yaml);
        assert!(errors.names(&path), "{yaml}\n=> {errors}");
    }
    let debug = format!("{:?}", check(&base).unwrap());
    assert!(!debug.contains("s3cret"), "{debug}");
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = "workers: 0\nlisten: nowhere\nauthentication:\n  tokenFile: /nonexistent\n  tokens: {apiMaxTTLSeconds: 5}\nclusters:\n  - id: a\n    server: http://x\n  - id: a\n    server: https://y\n    caFile: /nonexistent\n";
    let errors = check(yaml).unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "listen",
            "workers",
            "authentication.tokenFile",
            "authentication.tokens.apiMaxTTLSeconds",
            "clusters[0].server",
            "clusters[1].id",
            "clusters[1].caFile",
        ],
        "{errors}"
    );
}

#[test]
fn plaintext_needs_dangerous_allow_plaintext() {
    let checked = check(
        "clusters:\n  - id: a\n    server: http://x\n    dangerous: {allowPlaintext: true}\n",
    )
    .unwrap();
    assert_eq!(checked.clusters[0].config.server, "http://x");
}

#[test]
fn agents_are_checked_and_reach_the_server() {
    let errors = check("agents: {waitSeconds: 0, image: \"a b\"}\n").unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["agents.waitSeconds", "agents.image"], "{errors}");
    assert!(
        check("agents: {waitSecond: 3}\n").is_err(),
        "unknown keys are errors"
    );
    let checked = check("agents: {waitSeconds: 2, image: registry.example/paddock:1}\n").unwrap();
    assert_eq!(checked.agents.wait.as_secs(), 2);
    assert_eq!(checked.agents.image, "registry.example/paddock:1");
    let defaults = check("").unwrap();
    assert_eq!(defaults.agents.wait, proxy_core::tunnel::DEFAULT_AGENT_WAIT);
}

#[test]
fn limits_are_checked_and_reach_the_server() {
    let errors = check("limits: {idleTimeoutSeconds: 0, maxConnections: 0}\n").unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["limits.idleTimeoutSeconds", "limits.maxConnections"],
        "{errors}"
    );
    let checked = check("limits: {headerReadTimeoutSeconds: 5, maxConnections: 100}\n").unwrap();
    assert_eq!(checked.limits.header_read_timeout.as_secs(), 5);
    assert_eq!(checked.limits.max_connections, Some(100));
    assert_eq!(checked.limits.idle_timeout.as_secs(), 90);
}

#[test]
fn audit_is_checked_and_reaches_the_server() {
    use proxy_core::plugins::audit::{Attributes, Level, OnFull};

    let errors = check(
        "audit: {policyFile: /nonexistent/policy.yaml, queueSize: 0, file: {path: /nonexistent/dir/audit.log, maxSizeMB: 0}}\n",
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "audit.policyFile",
            "audit.queueSize",
            "audit.file.path",
            "audit.file.maxSizeMB"
        ],
        "{errors}"
    );
    assert!(check("audit: {}\n").unwrap_err().names("audit"));
    let errors = check(
        "audit: {webhook: {url: 'http://collector.example/audit', batchSize: 0, caFile: /nonexistent/ca.crt}}\n",
    )
    .unwrap_err();
    assert!(errors.names("audit.webhook.url"), "{errors}");
    let errors = check(
        "audit: {webhook: {url: 'https://collector.example/audit', batchSize: 0, caFile: /nonexistent/ca.crt, queueSize: 0}}\n",
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "audit.webhook.queueSize",
            "audit.webhook.caFile",
            "audit.webhook.batchSize"
        ],
        "{errors}"
    );
    assert!(check("audit: {file: {path: /tmp/a.log}, onFull: later}\n")
        .unwrap_err()
        .names("audit.onFull"));
    assert!(check("audit: {file: {path: /tmp/a.log, maxSize: 1}}\n")
        .unwrap_err()
        .names("audit.file.maxSize"));

    // The policy file is parsed at check time, its errors under its key.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Loud\n",
    )
    .unwrap();
    let log = dir.path().join("audit.log");
    let yaml = format!(
        "audit:\n  policyFile: {}\n  file: {{path: {}, maxSizeMB: 2, maxFiles: 3}}\n  queueSize: 7\n  onFull: block\n",
        policy.display(),
        log.display()
    );
    let errors = check(&yaml).unwrap_err();
    assert!(errors.names("audit.policyFile"), "{errors}");
    assert!(errors.to_string().contains("Loud"), "{errors}");

    std::fs::write(
        &policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n",
    )
    .unwrap();
    let audit = check(&yaml).unwrap().audit.unwrap();
    let (file, queue) = audit.file.unwrap();
    assert_eq!(file.path, log);
    assert_eq!(file.max_size_bytes, 2 * 1024 * 1024);
    assert_eq!(file.max_files, 3);
    assert_eq!(queue.capacity, 7);
    assert_eq!(queue.on_full, OnFull::Block);
    assert!(audit.webhook.is_none());
    let anything = Attributes::default();
    assert_eq!(audit.policy.decide(&anything).level, Level::RequestResponse);
    // Nothing is written at check time.
    assert!(!log.exists());

    // A webhook beside the file: its own queue settings over the shared ones.
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let webhook = format!(
        "audit:\n  queueSize: 7\n  onFull: block\n  webhook: {{url: 'http://127.0.0.1:9880/audit', caFile: {}, batchSize: 5, retries: 1, onFull: drop}}\n",
        ca.display()
    );
    let errors = check(&webhook).unwrap_err();
    assert!(errors.names("audit.webhook.caFile"), "{errors}");
    let pem = paddock_ca_pem();
    std::fs::write(&ca, pem).unwrap();
    let audit = check(&webhook).unwrap().audit.unwrap();
    let (webhook, queue) = audit.webhook.unwrap();
    assert_eq!(webhook.url, "http://127.0.0.1:9880/audit");
    assert_eq!(webhook.batch_size, 5);
    assert_eq!(webhook.retries, 1);
    assert_eq!(queue.capacity, 7);
    assert_eq!(queue.on_full, OnFull::Drop);
    assert!(audit.file.is_none());
    assert!(check("").unwrap().audit.is_none());
}

/// A CA certificate, PEM: the one Paddock generates for itself.
fn paddock_ca_pem() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    proxy_core::server::tls::ServerTls::self_signed(dir.path(), &[])
        .unwrap()
        .ca_pem
        .unwrap()
}

#[test]
fn global_role_rules_apply_in_the_default_management_cluster() {
    let checked = check("authorization: policy\n").unwrap();
    assert_eq!(
        checked
            .authorization
            .policy_source(None)
            .management_cluster
            .as_deref(),
        Some("local")
    );
    let checked = check("authorization: {mode: policy, managementCluster: mgmt}\n").unwrap();
    assert_eq!(
        checked
            .authorization
            .policy_source(None)
            .management_cluster
            .as_deref(),
        Some("mgmt")
    );
}

#[test]
fn providers_are_built_with_the_outbound_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let checked = check(&format!(
        "authentication:\n  github:\n    clientId: abc\n    clientSecretFile: {0}\n  oidc:\n  - name: corp\n    issuerUrl: https://idp.example/realms/ops\n    clientId: paddock\n    clientSecretFile: {0}\n",
        secret.display()
    ))
    .unwrap();
    let proxy = proxy_core::net::OutboundProxy::new("proxy.corp:3128", "internal").unwrap();
    let github = checked.authentication.github.as_ref().unwrap();
    let github = github.provider(dir.path(), &proxy).unwrap();
    assert_eq!(github.config().proxy, proxy);
    let oidc = checked.authentication.oidc[0]
        .provider("authentication.oidc[0]", dir.path(), &proxy)
        .unwrap();
    assert_eq!(oidc.config().proxy, proxy);
}
