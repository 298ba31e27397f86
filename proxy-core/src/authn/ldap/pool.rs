//! Connections: one pool per server, tried in list order.
//!
//! A pooled connection is always bound as the service account. A login binds
//! it as the user, so the provider re-binds it as the service account before
//! it goes back ([`Conn::release`] refuses anything else); a connection
//! dropped without `release` (an error, a timeout, a cancelled login) is
//! closed, never reused. Idle connections are closed after
//! `pool.idleTimeoutSeconds` and probed with a root DSE read after
//! `pool.healthCheckAfterSeconds`.
//!
//! ldap3 0.12 decodes replies with `expect`: a malformed reply panics, in the
//! connection's driver task (`decode_inner` in `protocol.rs`) or in the
//! caller's (`LdapResultExt::from` in `result.rs`, `SearchEntry::construct`
//! in `search.rs`). Every ldap3 call here runs under [`contained`], so such a
//! reply is a transport error (the directory is unavailable, 503) on a
//! connection that is never reused, never a panicking login or refresh task.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::FutureExt as _;

use ldap3::{
    adapters::{Adapter, EntriesOnly, PagedResults},
    LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchEntry, SearchOptions, StdStream,
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::config::{Settings, Transport};

/// What a panic inside ldap3 is reported as.
const MALFORMED: &str = "the directory sent a reply that could not be decoded";

/// Runs an ldap3 future, turning a panic inside it into a transport error.
async fn contained<T>(work: impl Future<Output = T>) -> Result<T, OpError> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|_| OpError::Transport(MALFORMED.into()))
}

/// `SearchEntry::construct` for each raw entry, a panic on a malformed one
/// being a transport error.
fn construct(entries: Vec<ldap3::ResultEntry>) -> Result<Vec<SearchEntry>, OpError> {
    std::panic::catch_unwind(|| entries.into_iter().map(SearchEntry::construct).collect())
        .map_err(|_| OpError::Transport(MALFORMED.into()))
}

/// The page size of every multi-entry search (AD's default MaxPageSize).
pub(crate) const PAGE_SIZE: i32 = 1000;

/// After a failed connect a server is tried last for this long.
const DOWN_COOL_OFF: Duration = Duration::from_secs(5);

/// What went wrong with a directory operation.
#[derive(Debug)]
pub(crate) enum OpError {
    /// Connection, TLS, timeout, protocol: try elsewhere / unavailable.
    Transport(String),
    /// The server answered with a non-success result code.
    Result { rc: u32, text: String },
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(m) => f.write_str(m),
            Self::Result { rc, text } => write!(f, "result code {rc}: {text}"),
        }
    }
}

/// Why no connection could be had.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// Every server failed; the message describes the last failure.
    Unavailable(String),
    /// A server refused the service account.
    ServiceBindRefused(String),
}

struct ServerPool {
    url: String,
    transport: Transport,
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    down_since: Mutex<Option<Instant>>,
}

struct Idle {
    ldap: ldap3::Ldap,
    idle_since: Instant,
}

/// The connection pools of one provider.
pub(crate) struct Pool {
    settings: Arc<Settings>,
    servers: Vec<Arc<ServerPool>>,
}

impl Pool {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        let servers = settings
            .servers
            .iter()
            .map(|s| {
                Arc::new(ServerPool {
                    url: s.url.clone(),
                    transport: s.transport,
                    idle: Mutex::new(Vec::new()),
                    permits: Arc::new(Semaphore::new(settings.pool.max_size)),
                    down_since: Mutex::new(None),
                })
            })
            .collect();
        Self { settings, servers }
    }

    /// A connection bound as the service account: an idle one if a healthy
    /// one is there, else a new one; servers in list order, the ones that
    /// failed in the last seconds last.
    pub(crate) async fn get(&self) -> Result<Conn, PoolError> {
        self.get_inner(true).await
    }

    /// Like [`Pool::get`] but always opens a new connection (used to retry
    /// after a pooled connection broke, and by benchmarks).
    pub(crate) async fn get_fresh(&self) -> Result<Conn, PoolError> {
        self.get_inner(false).await
    }

    async fn get_inner(&self, reuse: bool) -> Result<Conn, PoolError> {
        let now = Instant::now();
        let mut order: Vec<&Arc<ServerPool>> = self.servers.iter().collect();
        // Stable: keeps list order within "up" and within "recently down".
        order.sort_by_key(|s| {
            lock(&s.down_since).is_some_and(|t| now.duration_since(t) < DOWN_COOL_OFF)
        });
        let mut last = String::from("no server configured");
        for server in order {
            match self.get_from(server, reuse).await {
                Ok(conn) => {
                    *lock(&server.down_since) = None;
                    return Ok(conn);
                }
                Err(PoolError::Unavailable(message)) => {
                    tracing::warn!(
                        auth.provider = %self.settings.name,
                        ldap.server = %server.url,
                        error = %message,
                        "directory server unavailable, trying the next one"
                    );
                    *lock(&server.down_since) = Some(Instant::now());
                    last = format!("{}: {message}", server.url);
                }
                Err(e @ PoolError::ServiceBindRefused(_)) => return Err(e),
            }
        }
        Err(PoolError::Unavailable(last))
    }

    async fn get_from(&self, server: &Arc<ServerPool>, reuse: bool) -> Result<Conn, PoolError> {
        let timeout = self.settings.operation_timeout;
        let permit = tokio::time::timeout(timeout, server.permits.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::Unavailable("every pooled connection is busy".into()))?
            .map_err(|_| PoolError::Unavailable("pool closed".into()))?;
        if reuse {
            let health_after = Duration::from_secs(self.settings.pool.health_check_after_seconds);
            while let Some(mut idle) = self.take_idle(server) {
                if idle.idle_since.elapsed() < health_after || probe(&mut idle.ldap, timeout).await
                {
                    return Ok(Conn {
                        ldap: idle.ldap,
                        server: server.clone(),
                        service_bound: true,
                        broken: false,
                        reused: true,
                        timeout,
                        max_idle: self.settings.pool.max_idle,
                        _permit: permit,
                    });
                }
                tracing::debug!(ldap.server = %server.url, "dropping a stale pooled connection");
            }
        }
        self.connect(server, permit).await
    }

    fn take_idle(&self, server: &ServerPool) -> Option<Idle> {
        let max_age = Duration::from_secs(self.settings.pool.idle_timeout_seconds);
        let mut idle = lock(&server.idle);
        while let Some(mut conn) = idle.pop() {
            if conn.idle_since.elapsed() < max_age && !conn.ldap.is_closed() {
                return Some(conn);
            }
        }
        None
    }

    async fn connect(
        &self,
        server: &Arc<ServerPool>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Conn, PoolError> {
        let s = &self.settings;
        // The TCP connection is opened here, not by ldap3: with TCP_NODELAY
        // (without it the StartTLS and TLS handshakes stall on delayed ACKs,
        // ~40 ms per new connection) and under the connect timeout.
        let host_port = server
            .url
            .split_once("://")
            .map(|(_, hp)| hp)
            .unwrap_or(&server.url);
        let tcp =
            tokio::time::timeout(s.connect_timeout, tokio::net::TcpStream::connect(host_port))
                .await
                .map_err(|_| PoolError::Unavailable("connect timed out".into()))?
                .map_err(|e| PoolError::Unavailable(format!("connect failed: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tcp = tcp
            .into_std()
            .map_err(|e| PoolError::Unavailable(format!("connect failed: {e}")))?;
        let mut conn_settings = LdapConnSettings::new()
            .set_conn_timeout(s.connect_timeout)
            .set_std_stream(StdStream::Tcp(tcp));
        if server.transport != Transport::Plain {
            if let Some(tls) = &s.tls {
                conn_settings = conn_settings.set_config(tls.clone());
            }
            conn_settings = conn_settings.set_starttls(server.transport == Transport::StartTls);
        }
        // StartTLS and the TLS handshake get one more connect timeout.
        let opened = tokio::time::timeout(
            s.connect_timeout,
            contained(LdapConnAsync::with_settings(conn_settings, &server.url)),
        )
        .await
        .map_err(|_| PoolError::Unavailable("TLS setup timed out".into()))?
        .map_err(|e| PoolError::Unavailable(e.to_string()))?
        .map_err(|e| PoolError::Unavailable(format!("connect failed: {e}")))?;
        let (driver, ldap) = opened;
        let url = server.url.clone();
        tokio::spawn(async move {
            // A panic ends the task like an error: the pending operations'
            // answers are dropped and their callers see a transport error.
            match contained(driver.drive()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(ldap.server = %url, error = %e, "directory connection ended");
                }
                Err(e) => {
                    tracing::warn!(ldap.server = %url, error = %e, "directory connection ended");
                }
            }
        });
        let mut conn = Conn {
            ldap,
            server: server.clone(),
            service_bound: false,
            broken: false,
            reused: false,
            timeout: s.operation_timeout,
            max_idle: s.pool.max_idle,
            _permit: permit,
        };
        match conn.bind(&s.bind_dn, &s.bind_password).await {
            Ok(()) => {
                conn.service_bound = true;
                Ok(conn)
            }
            Err(OpError::Transport(m)) => Err(PoolError::Unavailable(m)),
            Err(OpError::Result { rc, text }) => Err(PoolError::ServiceBindRefused(format!(
                "the service account bind was refused (result code {rc}: {text})"
            ))),
        }
    }

    /// Binds `conn` as the service account again (after a user bind).
    pub(crate) async fn rebind_service(&self, conn: &mut Conn) -> Result<(), OpError> {
        conn.service_bound = false;
        conn.bind(&self.settings.bind_dn, &self.settings.bind_password)
            .await?;
        conn.service_bound = true;
        Ok(())
    }
}

/// One connection, checked out of its server's pool.
pub(crate) struct Conn {
    ldap: ldap3::Ldap,
    server: Arc<ServerPool>,
    service_bound: bool,
    /// A transport error or timeout happened: the connection's state is
    /// unknown (a late answer may still arrive), so it is never reused.
    broken: bool,
    reused: bool,
    timeout: Duration,
    max_idle: usize,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    fn note<T>(&mut self, result: Result<T, OpError>) -> Result<T, OpError> {
        if matches!(result, Err(OpError::Transport(_))) {
            self.broken = true;
        }
        result
    }

    /// Whether this connection came out of the idle list (a failure on it
    /// may be a connection the server dropped: worth one retry).
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// The server URL, for logs.
    pub(crate) fn server(&self) -> &str {
        &self.server.url
    }

    /// Returns the connection to the idle list, if it is bound as the
    /// service account and saw no transport error; otherwise it is closed.
    pub(crate) fn release(mut self) {
        if !self.service_bound || self.broken || self.ldap.is_closed() {
            return;
        }
        let mut idle = lock(&self.server.idle);
        if idle.len() < self.max_idle {
            idle.push(Idle {
                ldap: self.ldap,
                idle_since: Instant::now(),
            });
        }
    }

    /// A simple bind. The password is sent as given: never escaped, never
    /// logged. The connection counts as not service-bound from here on.
    pub(crate) async fn bind(&mut self, dn: &str, password: &SecretString) -> Result<(), OpError> {
        self.service_bound = false;
        let res = tokio::time::timeout(
            self.timeout,
            contained(self.ldap.simple_bind(dn, password.expose_secret())),
        )
        .await
        .map_err(|_| OpError::Transport("bind timed out".into()))
        .and_then(|r| r)
        .and_then(|r| r.map_err(|e| OpError::Transport(format!("bind failed: {e}"))))
        .and_then(check);
        self.note(res)
    }

    /// A search returning at most a few entries (no paging).
    pub(crate) async fn search_small(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
        size_limit: i32,
    ) -> Result<(Vec<SearchEntry>, bool), OpError> {
        let ldap = self
            .ldap
            .with_search_options(SearchOptions::new().sizelimit(size_limit));
        let res = tokio::time::timeout(
            self.timeout,
            contained(ldap.search(base, scope, filter, attrs)),
        )
        .await
        .map_err(|_| OpError::Transport("search timed out".into()))
        .and_then(|r| r)
        .and_then(|r| r.map_err(|e| OpError::Transport(format!("search failed: {e}"))));
        let res = self.note(res)?;
        let (entries, result) = (res.0, res.1);
        // 4 = sizeLimitExceeded: more entries than asked for.
        let truncated = result.rc == 4;
        if !truncated {
            check(result)?;
        }
        let entries = construct(entries);
        Ok((self.note(entries)?, truncated))
    }

    /// A subtree (or other) search fetched in pages of [`PAGE_SIZE`],
    /// referrals ignored. The timeout applies to the whole search.
    pub(crate) async fn search_paged(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[&str],
    ) -> Result<Vec<SearchEntry>, OpError> {
        let attrs: Vec<String> = attrs.iter().map(|a| (*a).to_owned()).collect();
        let ldap = &mut self.ldap;
        let work = async move {
            let adapters: Vec<Box<dyn Adapter<'_, String, Vec<String>>>> = vec![
                Box::new(EntriesOnly::new()),
                Box::new(PagedResults::new(PAGE_SIZE)),
            ];
            let mut stream = ldap
                .streaming_search_with(adapters, base, scope, filter, attrs)
                .await
                .map_err(|e| OpError::Transport(format!("search failed: {e}")))?;
            let mut entries = Vec::new();
            while let Some(entry) = stream
                .next()
                .await
                .map_err(|e| OpError::Transport(format!("search failed: {e}")))?
            {
                entries.push(entry);
            }
            check(stream.finish().await)?;
            construct(entries)
        };
        let res = tokio::time::timeout(self.timeout, contained(work))
            .await
            .map_err(|_| OpError::Transport("search timed out".into()))
            .and_then(|r| r)
            .and_then(|r| r);
        self.note(res)
    }
}

/// A cheap liveness check: read the root DSE.
async fn probe(ldap: &mut ldap3::Ldap, timeout: Duration) -> bool {
    let ldap = ldap.with_search_options(SearchOptions::new().sizelimit(1));
    matches!(
        tokio::time::timeout(
            timeout,
            contained(ldap.search("", Scope::Base, "(objectClass=*)", vec!["1.1"]))
        )
        .await,
        Ok(Ok(Ok(ref r))) if r.1.rc == 0
    )
}

fn check(result: LdapResult) -> Result<(), OpError> {
    if result.rc == 0 {
        Ok(())
    } else {
        Err(OpError::Result {
            rc: result.rc,
            text: result.text,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
