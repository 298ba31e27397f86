//! The authenticator conformance suite against an OpenID Connect provider:
//! Paddock's OIDC provider with its password grant, in front of a real
//! `oidc-provider` (npm, started by the test) whose users are `alice`
//! (valid) and `dave` (disabled at the provider).

use std::sync::Arc;

use paddock_tests::{
    conformance::{self, ConformanceTarget},
    oidc::{users, OidcProvider, CLIENT_ID, CLIENT_SECRET},
};
use proxy_core::{
    accounts::{Accounts, AccountsOptions},
    authn::oidc::{OidcConfig, OidcProvider as Provider},
};
use secrecy::SecretString;

struct Oidc {
    accounts: Arc<Accounts>,
    idp: OidcProvider,
    _dir: tempfile::TempDir,
}

impl ConformanceTarget for Oidc {
    fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }
    fn provider(&self) -> &str {
        "corp"
    }
    fn valid_user(&self) -> (String, String) {
        ("alice".into(), "alice's long password".into())
    }
    fn disabled_user(&self) -> (String, String) {
        ("dave".into(), "dave's long password".into())
    }
    fn stop_backend(&mut self) -> bool {
        self.idp.stop();
        true
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_passes_the_authenticator_conformance_suite() {
    let mut idp = OidcProvider::prepare(users());
    idp.start(
        &[("rsa-1", "RSA")],
        &["https://127.0.0.1:1/paddock/v1/oidc/corp/callback".to_owned()],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut config = OidcConfig::new(
        "corp",
        idp.issuer(),
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        SecretString::from("a key for the sealed refresh tokens"),
    );
    config.ca_pem = Some(idp.ca_pem().as_bytes().to_vec());
    config.password_grant = true;
    config.scopes.push("groups".into());
    config.token_dir = Some(dir.path().join("oidc-tokens"));
    let provider = Arc::new(Provider::new(config).unwrap());
    let accounts = Arc::new(
        Accounts::open(&dir.path().join("data"), AccountsOptions::default())
            .unwrap()
            .with_oidc(provider),
    );
    let report = conformance::run(Oidc {
        accounts,
        idp,
        _dir: dir,
    })
    .await;
    assert_eq!(report.passed.len(), 8, "{report:?}");
}
