use super::*;
use crate::{
    accounts::AccountsOptions,
    authn::{
        external::{AccountGate, CredentialKind, ExternalUser, LoginCredential, Principal},
        tokens::Pepper,
        AuthnError, BoxFuture,
    },
    store::Store,
};

#[cfg(feature = "etcd")]
use crate::store::tests::etcd_server;

/// A provider whose refreshes wait until the test lets them answer.
struct Slow {
    started: tokio::sync::Notify,
    answer: tokio::sync::Semaphore,
}

fn octocat() -> ExternalUser {
    ExternalUser {
        provider: "slow".into(),
        principal: Principal::new("slow_user://1", "octocat"),
        username: "octocat".into(),
        display_name: "octocat".into(),
        email: None,
        groups: vec![Principal::new("slow_group://1", "one")],
        locator: None,
    }
}

impl ExternalProvider for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn credential_kind(&self) -> CredentialKind {
        CredentialKind::Token
    }
    fn login<'a>(
        &'a self,
        _: LoginCredential<'a>,
        _: AccountGate<'a>,
    ) -> BoxFuture<'a, Result<ExternalUser, AuthnError>> {
        Box::pin(async { Err(AuthnError::Invalid) })
    }
    fn refresh_schedule(&self) -> crate::authn::external::RefreshSchedule {
        crate::authn::external::RefreshSchedule {
            max_age: Duration::from_secs(3600),
            jitter: Duration::ZERO,
            interval: Duration::from_secs(3600),
            grace: None,
        }
    }
    fn refresh<'a>(
        &'a self,
        _: &'a KnownUser,
    ) -> BoxFuture<'a, Result<ExternalUser, RefreshError>> {
        Box::pin(async {
            self.started.notify_one();
            self.answer.acquire().await.unwrap().forget();
            Ok(octocat())
        })
    }
}

/// A replica: accounts over `store` with a [`Slow`] provider.
fn replica(store: Arc<dyn Store>, dir: &std::path::Path) -> (Arc<Accounts>, Arc<Slow>) {
    let slow = Arc::new(Slow {
        started: tokio::sync::Notify::new(),
        answer: tokio::sync::Semaphore::new(0),
    });
    let accounts = Accounts::new(
        store,
        &Pepper::from_bytes([1; 32]),
        dir,
        AccountsOptions::default(),
    )
    .unwrap()
    .with_provider(slow.clone());
    (Arc::new(accounts), slow)
}

/// `first` refreshes octocat and is held in the provider; meanwhile a
/// refresh on `second` (the same accounts, or another replica's) is
/// `Busy`; once `first` is done, `second` may refresh.
async fn one_refresh_of_a_user_at_a_time(
    first: (Arc<Accounts>, Arc<Slow>),
    second: (Arc<Accounts>, Arc<Slow>),
) {
    let user = first.0.upsert_external(&octocat()).unwrap();
    // The second replica's snapshot follows the first's commit.
    for _ in 0..100 {
        if second.0.view().refresh().is_ok()
            && second
                .0
                .view()
                .with_snapshot(|s| s.user(&user.id).is_some())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (accounts, slow) = first.clone();
    let id = user.id.clone();
    let running = tokio::spawn(async move { accounts.refresh_user(&id).await });
    slow.started.notified().await;
    // Not claimed: it would wait in the provider, held like the first.
    let meanwhile = tokio::time::timeout(Duration::from_secs(10), second.0.refresh_user(&user.id))
        .await
        .expect("a second refresh of the same user ran");
    assert_eq!(meanwhile, vec![("slow".to_owned(), Outcome::Busy)]);
    first.1.answer.add_permits(1);
    assert_eq!(
        running.await.unwrap(),
        vec![("slow".to_owned(), Outcome::Refreshed { groups: 1 })]
    );
    second.1.answer.add_permits(1);
    assert_eq!(
        second.0.refresh_user(&user.id).await,
        vec![("slow".to_owned(), Outcome::Refreshed { groups: 1 })]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_refresh_of_a_user_at_a_time_on_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::EmbeddedStore::open_in_dir(dir.path(), Default::default()).unwrap();
    let one = replica(Arc::new(store), dir.path());
    one_refresh_of_a_user_at_a_time(one.clone(), one).await;
}

#[cfg(feature = "etcd")]
#[tokio::test(flavor = "multi_thread")]
async fn one_refresh_of_a_user_at_a_time_across_replicas() {
    let etcd = etcd_server::EtcdCluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let connect = || {
        let options = crate::store::EtcdOptions::new(etcd.endpoints());
        Arc::new(crate::store::EtcdStore::connect(options).unwrap()) as Arc<dyn Store>
    };
    let (a, b) = (
        replica(connect(), dir.path()),
        replica(connect(), dir.path()),
    );
    one_refresh_of_a_user_at_a_time(a, b).await;
}

#[test]
fn jitter_is_stable_and_bounded() {
    let window = Duration::from_secs(300);
    assert_eq!(jitter("u-abc", window), jitter("u-abc", window));
    assert!(jitter("u-abc", window) < 300);
    assert_eq!(jitter("u-abc", Duration::ZERO), 0);
    let spread: std::collections::BTreeSet<u64> =
        (0..50).map(|n| jitter(&format!("u-{n}"), window)).collect();
    assert!(spread.len() > 30, "{spread:?}");
}
