//! The authenticator conformance suite: one set of cases every login
//! provider passes (local users, directories, OpenID Connect providers'
//! password grant), run through [`Accounts::login`], the entry point
//! the login endpoint uses.
//!
//! A provider's test implements [`ConformanceTarget`] over a real backend
//! and calls [`run`].

use std::{net::IpAddr, sync::Arc, time::Duration};

use proxy_core::{accounts::Accounts, authn::AuthnError};
use secrecy::SecretString;

/// A provider under test, with users prepared in its real backend.
pub trait ConformanceTarget {
    /// The accounts the provider is registered with.
    fn accounts(&self) -> &Arc<Accounts>;
    /// The provider's name in logins.
    fn provider(&self) -> &str;
    /// A user who may log in, and their password.
    fn valid_user(&self) -> (String, String);
    /// A user the backend reports as disabled, and their (correct) password.
    fn disabled_user(&self) -> (String, String);
    /// Makes the backend unreachable for good. Returns `false` when the
    /// provider has no backend that can be down (local users live in the
    /// in-memory snapshot of the store); the unavailable case is then not
    /// applicable and [`run`] says so in its report.
    fn stop_backend(&mut self) -> bool;
}

/// What [`run`] checked.
#[derive(Debug, Default)]
pub struct Report {
    /// The cases that ran.
    pub passed: Vec<&'static str>,
    /// The cases that do not apply to this provider, with why.
    pub not_applicable: Vec<(&'static str, &'static str)>,
}

fn client(n: u8) -> IpAddr {
    // A different address per case keeps the per-address throttle out of the way.
    IpAddr::from([10, 99, 0, n])
}

async fn login(
    target: &impl ConformanceTarget,
    username: &str,
    password: &str,
    n: u8,
) -> Result<String, AuthnError> {
    let password = SecretString::from(password);
    target
        .accounts()
        .login(
            target.provider(),
            proxy_core::accounts::LoginCredential::Password {
                username,
                password: &password,
            },
            client(n),
        )
        .await
        .map(|logged_in| logged_in.user.id)
}

fn store_revision(target: &impl ConformanceTarget) -> u64 {
    target.accounts().view().snapshot().revision().0
}

/// Runs every case against `target`; panics naming the first that fails.
pub async fn run(mut target: impl ConformanceTarget) -> Report {
    let mut report = Report::default();
    let (user, password) = target.valid_user();

    let id = login(&target, &user, &password, 1)
        .await
        .unwrap_or_else(|e| panic!("the valid user {user} cannot log in: {e:?}"));
    let again = login(&target, &user, &password, 1)
        .await
        .expect("second login");
    assert_eq!(id, again, "a second login must find the same user");
    report
        .passed
        .push("valid credentials log in, twice to the same user");

    assert!(
        matches!(login(&target, &user, "", 2).await, Err(AuthnError::Invalid)),
        "an empty password must be rejected as invalid"
    );
    report.passed.push("empty password rejected");

    let wrong = format!("{password}-wrong");
    assert!(
        matches!(
            login(&target, &user, &wrong, 3).await,
            Err(AuthnError::Invalid)
        ),
        "a wrong password must be invalid"
    );
    report.passed.push("wrong password is invalid");

    assert!(
        matches!(
            login(&target, "no-such-user-4f2a", &password, 4).await,
            Err(AuthnError::Invalid)
        ),
        "an unknown user must be invalid"
    );
    report.passed.push("unknown user is invalid");

    let (disabled, disabled_password) = target.disabled_user();
    assert!(
        matches!(
            login(&target, &disabled, &disabled_password, 5).await,
            Err(AuthnError::Invalid)
        ),
        "a disabled user must be invalid"
    );
    report.passed.push("disabled user is invalid");

    // A login abandoned half-way (the client went away) writes nothing.
    let before = store_revision(&target);
    let abandoned = tokio::time::timeout(
        Duration::from_micros(1),
        login(&target, &user, &password, 6),
    )
    .await;
    drop(abandoned);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A login of a known user may update that user (groups, display name),
    // but never leaves a partial write: the store is at the revision before,
    // or at one complete commit after it, and the user still logs in.
    let after = store_revision(&target);
    assert!(
        after <= before + 1,
        "an abandoned login made {} commits",
        after - before
    );
    login(&target, &user, &password, 6)
        .await
        .expect("logging in after an abandoned login");
    report
        .passed
        .push("a cancelled login leaves no half-written state");

    if target.stop_backend() {
        let down = login(&target, &user, &password, 7).await;
        assert!(
            matches!(down, Err(AuthnError::Unavailable { .. })),
            "a backend that is down must be unavailable (503), not invalid (401): {down:?}"
        );
        // Rejected before any I/O: with the backend down it is still invalid.
        assert!(
            matches!(login(&target, &user, "", 8).await, Err(AuthnError::Invalid)),
            "an empty password must be rejected before the backend is asked"
        );
        report
            .passed
            .push("backend down is unavailable, not invalid");
        report
            .passed
            .push("empty password rejected before any backend I/O");
    } else {
        report.not_applicable.push((
            "backend down is unavailable",
            "the provider has no backend that can be down",
        ));
    }
    report
}
