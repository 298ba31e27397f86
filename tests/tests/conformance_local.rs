//! The authenticator conformance suite against local users in a real
//! embedded store.

use std::sync::Arc;

use paddock_tests::conformance::{self, ConformanceTarget};
use proxy_core::{
    accounts::{local, Accounts, AccountsOptions},
    store::Timestamp,
};
use secrecy::SecretString;

struct Local {
    accounts: Arc<Accounts>,
    _dir: tempfile::TempDir,
}

impl ConformanceTarget for Local {
    fn accounts(&self) -> &Arc<Accounts> {
        &self.accounts
    }
    fn provider(&self) -> &str {
        local::PROVIDER
    }
    fn valid_user(&self) -> (String, String) {
        ("carol".into(), "carol's long password".into())
    }
    fn disabled_user(&self) -> (String, String) {
        ("dave".into(), "dave's long password".into())
    }
    fn stop_backend(&mut self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_users_pass_the_authenticator_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let accounts = Arc::new(Accounts::open(dir.path(), AccountsOptions::default()).unwrap());
    for (name, password) in [
        ("carol", "carol's long password"),
        ("dave", "dave's long password"),
    ] {
        local::add_user(
            accounts.view(),
            accounts.password_hasher(),
            accounts.password_policy(),
            name,
            "",
            &SecretString::from(password),
            Timestamp::now(),
        )
        .unwrap();
    }
    local::set_enabled(accounts.view(), "dave", false).unwrap();
    let report = conformance::run(Local {
        accounts,
        _dir: dir,
    })
    .await;
    assert_eq!(report.passed.len(), 6, "{report:?}");
}
