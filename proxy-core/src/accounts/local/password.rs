//! Password hashing (argon2id, PHC strings) and the password policy.
//!
//! The core functions are synchronous and slow on purpose (tens of milliseconds):
//! async callers use the `_async` wrappers, which run them on
//! `tokio::task::spawn_blocking`, at most one per core at a time.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use crate::authn::tokens::os_random_string;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordParams {
    /// Memory in KiB. Default 19456 (19 MiB, OWASP's minimum for t=2).
    pub m_kib: u32,
    /// Iterations. Default 2.
    pub t: u32,
    /// Parallelism. Default 1.
    pub p: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::OWASP_MIN
    }
}

impl PasswordParams {
    /// OWASP's minimum for argon2id: m=19 MiB, t=2, p=1.
    pub const OWASP_MIN: Self = Self {
        m_kib: 19_456,
        t: 2,
        p: 1,
    };

    /// Custom parameters.
    pub fn new(m_kib: u32, t: u32, p: u32) -> Self {
        Self { m_kib, t, p }
    }

    fn at_least_owasp(self) -> bool {
        self.m_kib >= Self::OWASP_MIN.m_kib && self.t >= Self::OWASP_MIN.t && self.p >= 1
    }
}

/// Errors from hashing or from the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// Parameters weaker than OWASP's minimum.
    #[error("argon2id parameters below OWASP's minimum (m=19456 KiB, t=2, p=1)")]
    WeakParams,
    /// Parameters argon2 rejects.
    #[error("invalid argon2id parameters: {0}")]
    InvalidParams(String),
    /// Shorter than the policy's minimum (counted in characters).
    #[error("the password must be at least {min} characters long")]
    TooShort {
        /// The minimum.
        min: usize,
    },
    /// Longer than the policy's maximum.
    #[error("the password must be at most {max} characters long")]
    TooLong {
        /// The maximum.
        max: usize,
    },
    /// The password is the username.
    #[error("the password must not equal the username")]
    EqualsUsername,
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// The outcome of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verification {
    /// The password matches.
    Match {
        /// The stored hash uses other parameters than the current ones: store a
        /// new hash now that the password is known.
        needs_rehash: bool,
    },
    /// It does not (or there was no user: the dummy hash was checked).
    Mismatch,
}

impl Verification {
    /// Whether it matched.
    pub fn is_match(self) -> bool {
        matches!(self, Verification::Match { .. })
    }
}

/// Hashes and verifies passwords with argon2id.
pub struct PasswordHasher {
    argon: Argon2<'static>,
    params: PasswordParams,
    // The hash checked for unknown users, with the same parameters, so their
    // response time matches a known user's.
    dummy: String,
    // Permits for the `_async` wrappers, one per core: each hash holds
    // `m_kib` of memory, and anyone can start one (a login, even for an
    // unknown user), so without a bound concurrent logins from many
    // addresses could take hundreds of blocking threads and gigabytes.
    running: Arc<tokio::sync::Semaphore>,
    #[cfg(test)]
    gauge: test_gauge::Gauge,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// A hasher with `params`, which must be at least OWASP's minimum.
    pub fn new(params: PasswordParams) -> Result<Self, PasswordError> {
        if !params.at_least_owasp() {
            return Err(PasswordError::WeakParams);
        }
        Self::build(params)
    }

    /// A hasher with any parameters, including insecure ones: for tests only.
    pub fn dangerous_with_params(params: PasswordParams) -> Result<Self, PasswordError> {
        Self::build(params)
    }

    fn build(params: PasswordParams) -> Result<Self, PasswordError> {
        let p = Params::new(params.m_kib, params.t, params.p, None)
            .map_err(|e| PasswordError::InvalidParams(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut me = Self {
            argon,
            params,
            dummy: String::new(),
            running: Arc::new(tokio::sync::Semaphore::new(cores)),
            #[cfg(test)]
            gauge: test_gauge::Gauge::default(),
        };
        let dummy_pw = SecretString::from(os_random_string(b"abcdefghijklmnopqrstuvwxyz", 32));
        me.dummy = me.hash(&dummy_pw)?;
        Ok(me)
    }

    /// The parameters new hashes use.
    pub fn params(&self) -> PasswordParams {
        self.params
    }

    /// A PHC string for `password`, with a fresh 128-bit salt from the OS.
    pub fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let mut salt = [0u8; 16];
        crate::authn::tokens::os_random(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
        self.argon
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// Verifies `password` against `phc`, or against the dummy hash when `phc` is
    /// `None` (unknown user), so both take the same time. The final comparison is
    /// constant-time (inside argon2's `Output`). A malformed stored hash never
    /// matches.
    pub fn verify(&self, phc: Option<&str>, password: &SecretString) -> Verification {
        let (stored, real) = match phc {
            Some(p) => (p, true),
            None => (self.dummy.as_str(), false),
        };
        let Ok(parsed) = PasswordHash::new(stored) else {
            // Still spend the time, so a damaged record does not stand out.
            let _ = self.verify(None, password);
            return Verification::Mismatch;
        };
        let ok = self
            .argon
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        if !(ok && real) {
            return Verification::Mismatch;
        }
        let needs_rehash = parsed.algorithm.as_str() != "argon2id"
            || Params::try_from(&parsed).map_or(true, |p| {
                (p.m_cost(), p.t_cost(), p.p_cost())
                    != (self.params.m_kib, self.params.t, self.params.p)
            });
        Verification::Match { needs_rehash }
    }

    /// [`PasswordHasher::verify`] on the blocking pool, once a core is free.
    pub async fn verify_async(
        self: &Arc<Self>,
        phc: Option<String>,
        password: SecretString,
    ) -> Verification {
        self.on_blocking_pool(move |me| me.verify(phc.as_deref(), &password))
            .await
            .unwrap_or(Verification::Mismatch)
    }

    /// [`PasswordHasher::hash`] on the blocking pool, once a core is free.
    pub async fn hash_async(
        self: &Arc<Self>,
        password: SecretString,
    ) -> Result<String, PasswordError> {
        self.on_blocking_pool(move |me| me.hash(&password))
            .await
            .map_err(PasswordError::Hash)?
    }

    /// Runs `work` on the blocking pool holding a permit, which goes with
    /// it: a caller that gives up (a client that hangs up) does not free
    /// its core while the hash still runs.
    async fn on_blocking_pool<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Self) -> T + Send + 'static,
    ) -> Result<T, String> {
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| e.to_string())?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            #[cfg(test)]
            let _running = me.gauge.enter();
            work(&me)
        })
        .await
        .map_err(|e| e.to_string())
    }
}

/// Rules a new password must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PasswordPolicy {
    /// Minimum length in characters (Rancher's `password-min-length`). Default 12.
    pub min_length: usize,
    /// Maximum length in characters (bounds hashing work). Default 1024.
    pub max_length: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 1024,
        }
    }
}

impl PasswordPolicy {
    /// A policy with a custom minimum length.
    pub fn with_min_length(min_length: usize) -> Self {
        Self {
            min_length,
            ..Self::default()
        }
    }

    /// Checks `password` for `username`.
    pub fn check(&self, username: &str, password: &SecretString) -> Result<(), PasswordError> {
        let pw = password.expose_secret();
        let n = pw.chars().count();
        if n < self.min_length {
            return Err(PasswordError::TooShort {
                min: self.min_length,
            });
        }
        if n > self.max_length {
            return Err(PasswordError::TooLong {
                max: self.max_length,
            });
        }
        if pw.eq_ignore_ascii_case(username) {
            return Err(PasswordError::EqualsUsername);
        }
        Ok(())
    }
}

#[cfg(test)]
mod test_gauge {
    use std::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    /// How many hashes run at once, and the most that ever did.
    #[derive(Debug, Default, Clone)]
    pub(super) struct Gauge(Arc<(AtomicUsize, AtomicUsize)>);

    impl Gauge {
        pub(super) fn enter(&self) -> impl Drop {
            let now = self.0 .0.fetch_add(1, Ordering::SeqCst) + 1;
            self.0 .1.fetch_max(now, Ordering::SeqCst);
            Leave(self.0.clone())
        }

        pub(super) fn peak(&self) -> usize {
            self.0 .1.load(Ordering::SeqCst)
        }
    }

    struct Leave(Arc<(AtomicUsize, AtomicUsize)>);

    impl Drop for Leave {
        fn drop(&mut self) {
            self.0 .0.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logins start hashes of 19 MiB each, unauthenticated: however many
    /// arrive at once, no more hash at a time than there are cores.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_hashes_run_at_once_than_there_are_cores() {
        let hasher = Arc::new(PasswordHasher::new(PasswordParams::default()).unwrap());
        let logins: Vec<_> = (0..16)
            .map(|i| {
                let hasher = hasher.clone();
                tokio::spawn(async move {
                    hasher
                        .verify_async(None, SecretString::from(format!("guess {i}")))
                        .await
                })
            })
            .collect();
        for login in logins {
            assert_eq!(login.await.unwrap(), Verification::Mismatch);
        }
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let peak = hasher.gauge.peak();
        assert!(
            (1..=cores).contains(&peak),
            "{peak} hashes at once on {cores} cores"
        );
    }
}
