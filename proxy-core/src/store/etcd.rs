//! The etcd backend: several Paddock replicas share one etcd (v3 API).
//!
//! Layout under the configured prefix `P` (default `/paddock/`), readable with
//! `etcdctl get --prefix /paddock/`:
//!
//! * `P` + `meta`: `{"store":"paddock","schemaVersion":1}`, written once when
//!   the prefix is claimed. A prefix holding keys but no such record is
//!   someone else's data: [`EtcdStore::connect`] refuses it and writes nothing.
//! * `P` + `v1/<kind>/<id>`: one object, as versioned JSON
//!   `{"schemaVersion":1,"kind":"users","spec":{...}}` (the [`Object`]'s own serde
//!   form, so a type that gains a field needs no change here). Password and token
//!   records hold hashes only, as in the embedded store.
//! * `P` + `revision`: rewritten by every commit, in the commit's transaction.
//!   Its `mod_revision` is therefore the store's [`Revision`]: the etcd revision
//!   of the last commit under `P` (etcd's revision counts writes to every prefix,
//!   so Paddock's revisions are increasing but not contiguous).
//!
//! The contract of [`Store`], mapped onto etcd:
//!
//! * [`Store::commit`] is one etcd `Txn`: each [`Expect`] is a compare
//!   (`Absent`: `create_revision == 0`, because a missing key compares as a zero
//!   key-value; `Exists`: `create_revision > 0`; `Revision(r)`:
//!   `mod_revision == r`), the success branch holds the writes plus the revision
//!   marker, and the failure branch reads the guarded keys back to name the one
//!   that changed. etcd acknowledges a write once a majority has it on disk.
//! * [`Store::changes_since`] reads the marker (one linearizable read); when it
//!   moved, it opens a watch at `since + 1` and reads events up to the marker's
//!   revision, which the watch must deliver because the marker is in the watched
//!   range. A start revision etcd has compacted cancels the watch with a
//!   `compact_revision`: that is [`Changes::Compacted`], and the reader reloads.
//! * [`Store::load`] reads the prefix in pages pinned to the first page's
//!   revision, so a large store is one consistent snapshot.
//!
//! The etcd client reconnects its channel lazily but re-establishes no stream:
//! the change hint (a long-lived watch on the marker that wakes the
//! [`StoreView`](super::StoreView) poller at once) is re-created with backoff
//! whenever it ends, and every other call is a fresh request with a timeout. The
//! client asks etcd to require a leader, so a member cut off from the majority
//! fails requests instead of answering from a stale copy or hanging.
//!
//! The blocking [`Store`] methods run the client on this store's own small tokio
//! runtime, so they work from any thread, inside another runtime's blocking
//! pool included. As with any etcd client, a commit that fails with
//! [`StoreError::Unavailable`] (a timeout, a lost connection) may or may not
//! have been applied; callers re-read before retrying, and `Expect`
//! preconditions make a blind retry of a create fail rather than duplicate.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::{
    Changes, Event, Expect, Key, Loaded, Object, Op, Revision, Store, StoreError, Versioned,
};

/// The schema version written in the prefix's `meta` record and in every object.
pub const ETCD_SCHEMA_VERSION: u64 = 1;

/// The most ops one [`Store::commit`] may hold on etcd: etcd's default
/// `--max-txn-ops` (128) less the revision marker every commit also writes.
pub const MAX_COMMIT_OPS: usize = 127;

/// Keys per page when loading everything. Large, because etcd (3.4) counts
/// every key left in the range to answer each page, so a load costs about
/// n²/(2 × page) index steps: 2,000 per page made 1.1 M objects take 200 s,
/// 20,000 a few seconds. At a few hundred bytes per object a page is under
/// [`LOAD_MESSAGE_LIMIT`].
const LOAD_PAGE: i64 = 20_000;
/// The largest answer the client accepts (tonic's default is 4 MiB).
const LOAD_MESSAGE_LIMIT: usize = 64 << 20;

/// A PEM client certificate chain and its private key.
pub type ClientIdentity = (Vec<u8>, Arc<SecretBox<Vec<u8>>>);

/// TLS to etcd: the CA that signed the members' certificates and, when etcd
/// checks client certificates (`--client-cert-auth`), this replica's.
#[derive(Clone)]
pub struct EtcdTls {
    /// PEM CA bundle for the members' certificates.
    pub ca_pem: Vec<u8>,
    /// This replica's certificate and key, for etcd's `--client-cert-auth`.
    pub identity: Option<ClientIdentity>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls")
            .field("client_certificate", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

/// Where and how to reach etcd.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EtcdOptions {
    /// Client URLs of the members (`https://10.0.0.1:2379`, `http://127.0.0.1:2379`).
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix; it ends in `/`.
    pub prefix: String,
    /// TLS material, for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// Bound on every request (a commit, a read, a watch catching up).
    pub request_timeout: Duration,
    /// Bound on establishing a connection to a member.
    pub connect_timeout: Duration,
    /// A reader further behind than this many revisions reloads everything
    /// instead of replaying the changes. etcd hands a lagging watch about
    /// 10,000 revisions a second, so a long replay could never finish
    /// within the request timeout, and would hold every event in memory.
    pub max_replay: u64,
}

impl EtcdOptions {
    /// Options for `endpoints` with the default prefix `/paddock/`, no TLS, a
    /// 5 s request timeout and a 2 s connect timeout.
    pub fn new(endpoints: Vec<String>) -> Self {
        Self {
            endpoints,
            prefix: "/paddock/".to_owned(),
            tls: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            max_replay: 20_000,
        }
    }

    /// Sets the key prefix (a trailing `/` is added when missing).
    pub fn prefix(mut self, prefix: &str) -> Self {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        self.prefix = prefix;
        self
    }

    /// Sets the TLS material.
    pub fn tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }
}

/// The etcd store (see the module documentation for the layout).
pub struct EtcdStore {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    client: Client,
    options: EtcdOptions,
    hint: Arc<Notify>,
    election: std::sync::OnceLock<Arc<super::election::Election>>,
    counters: std::sync::OnceLock<Arc<super::etcd_counters::EtcdCounters>>,
    claims: std::sync::OnceLock<Arc<super::etcd_claims::EtcdClaims>>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.options.endpoints)
            .field("prefix", &self.options.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The prefix's claim record.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    store: String,
    schema_version: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoredRef<'a> {
    schema_version: u64,
    #[serde(flatten)]
    object: &'a Object,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    schema_version: u64,
    #[serde(flatten)]
    object: Object,
}

fn rev(r: i64) -> Revision {
    Revision(u64::try_from(r).unwrap_or(0))
}

fn etcd_rev(r: Revision) -> i64 {
    i64::try_from(r.0).unwrap_or(i64::MAX)
}

impl EtcdStore {
    /// Connects to etcd, checks that a member answers, and claims `prefix`:
    /// an empty prefix gets Paddock's `meta` record; one that already has it is
    /// used (a newer schema is refused); one holding anything else is refused
    /// and left untouched. Blocking.
    ///
    /// No member answering is [`StoreError::Unreachable`], naming the endpoints.
    pub fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Unreachable {
                endpoints: String::new(),
                detail: "no etcd endpoints given".into(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("paddock-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable {
                detail: format!("cannot start the etcd client's runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let mut connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3))
            .with_keep_alive_while_idle(true)
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            let mut config = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config =
                    config.identity(etcd_client::Identity::from_pem(cert, key.expose_secret()));
            }
            connect = connect.with_tls(config);
        }
        let endpoints = options.endpoints.clone();
        let shown = endpoints.join(",");
        let client = wait_on(
            &handle,
            options.connect_timeout + options.request_timeout,
            async move {
                Client::connect(endpoints, Some(connect))
                    .await
                    .map_err(|e| StoreError::Unavailable {
                        detail: e.to_string(),
                    })
            },
        )
        .map_err(|e| StoreError::Unreachable {
            endpoints: shown.clone(),
            detail: match e {
                StoreError::Unavailable { detail } => detail,
                other => other.to_string(),
            },
        })?;
        let store = Self {
            runtime: Some(runtime),
            handle,
            client,
            options,
            hint: Arc::new(Notify::new()),
            election: std::sync::OnceLock::new(),
            counters: std::sync::OnceLock::new(),
            claims: std::sync::OnceLock::new(),
        };
        // The channel connects lazily: one read proves a member answers (and
        // that it has a leader).
        store.revision().map_err(|e| StoreError::Unreachable {
            endpoints: shown,
            detail: e.to_string(),
        })?;
        store.claim()?;
        store.spawn_hint();
        Ok(store)
    }

    /// The prefix, e.g. `/paddock/`.
    pub fn prefix(&self) -> &str {
        &self.options.prefix
    }

    /// The endpoints, as configured.
    pub fn endpoints(&self) -> &[String] {
        &self.options.endpoints
    }

    /// A clone of the client (it shares the connections), for the leases and
    /// elections the replicas coordinate with.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The runtime the client runs on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    fn meta_key(&self) -> String {
        format!("{}meta", self.options.prefix)
    }

    fn marker_key(&self) -> String {
        format!("{}revision", self.options.prefix)
    }

    fn object_key(&self, key: &Key) -> String {
        format!("{}v1/{}", self.options.prefix, key.encode())
    }

    fn objects_prefix(&self) -> String {
        format!("{}v1/", self.options.prefix)
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Unavailable {
            detail: format!("etcd {}: {e}", self.options.endpoints.join(",")),
        }
    }

    /// Runs `f` on the store's runtime and waits for it, within the request
    /// timeout.
    fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        match wait_on(&self.handle, self.options.request_timeout, f) {
            Err(StoreError::Unavailable { detail }) => Err(self.unavailable(detail)),
            other => other,
        }
    }

    /// Writes the `meta` record into an empty prefix, or checks the one there.
    fn claim(&self) -> Result<(), StoreError> {
        let mut kv = self.client.kv_client();
        let meta_key = self.meta_key();
        let marker_key = self.marker_key();
        let prefix = self.options.prefix.clone();
        let shown = format!("etcd prefix {prefix}");
        let found = self.run(async move {
            let meta = kv.get(meta_key.as_str(), None).await.map_err(unavail)?;
            if let Some(kv) = meta.kvs().first() {
                return Ok(Some(kv.value().to_vec()));
            }
            let any = kv
                .get(
                    prefix.as_str(),
                    Some(GetOptions::new().with_prefix().with_limit(1)),
                )
                .await
                .map_err(unavail)?;
            if let Some(first) = any.kvs().first() {
                return Err(StoreError::Corrupt {
                    path: format!("etcd prefix {prefix}"),
                    detail: format!(
                        "it holds keys that are not a Paddock store (first: {:?}) and no \
                         Paddock meta record; choose another store.prefix",
                        String::from_utf8_lossy(first.key())
                    ),
                });
            }
            let record = serde_json::to_vec(&Meta {
                store: "paddock".into(),
                schema_version: ETCD_SCHEMA_VERSION,
            })
            .map_err(|e| StoreError::Unavailable {
                detail: e.to_string(),
            })?;
            // Create-if-absent, so two replicas starting at once agree; the
            // loser reads the winner's record.
            let txn = Txn::new()
                .when([
                    Compare::create_revision(prefix.as_str(), CompareOp::Equal, 0).with_prefix(),
                ])
                .and_then([
                    TxnOp::put(meta_key.as_str(), record, None),
                    TxnOp::put(marker_key.as_str(), marker_value(), None),
                ]);
            let resp = kv.txn(txn).await.map_err(unavail)?;
            if resp.succeeded() {
                return Ok(None);
            }
            let meta = kv.get(meta_key.as_str(), None).await.map_err(unavail)?;
            Ok(meta.kvs().first().map(|kv| kv.value().to_vec()))
        })?;
        let Some(bytes) = found else {
            tracing::info!(prefix = %self.options.prefix, "claimed an empty etcd prefix for the store");
            return Ok(());
        };
        let meta: Meta = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: shown.clone(),
            detail: format!("its meta record is not Paddock's: {e}"),
        })?;
        if meta.store != "paddock" {
            return Err(StoreError::Corrupt {
                path: shown,
                detail: format!("its meta record names the store {:?}", meta.store),
            });
        }
        if meta.schema_version > ETCD_SCHEMA_VERSION {
            return Err(StoreError::NewerVersion {
                path: shown,
                found: meta.schema_version.to_string(),
                supported: ETCD_SCHEMA_VERSION.to_string(),
            });
        }
        Ok(())
    }

    /// Wakes [`Store::change_hint`]'s waiter whenever the marker changes: a
    /// long-lived watch, re-created with backoff when its stream ends (the client
    /// does not resume streams by itself).
    fn spawn_hint(&self) {
        let client = self.client.clone();
        let key = self.marker_key();
        let hint = Arc::downgrade(&self.hint);
        self.handle.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                let Some(notify) = hint.upgrade() else { return };
                let mut watch = client.watch_client();
                match watch.watch(key.as_str(), None).await {
                    Ok(mut stream) => {
                        // Something may have changed while no watch was open.
                        notify.notify_one();
                        drop(notify);
                        // Until the stream ends or fails.
                        while let Ok(Some(resp)) = stream.message().await {
                            backoff = Duration::from_millis(100);
                            if resp.canceled() {
                                break;
                            }
                            if !resp.events().is_empty() {
                                let Some(notify) = hint.upgrade() else { return };
                                notify.notify_one();
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "etcd change watch failed"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
    }

    fn decode(&self, kv: &KeyValue) -> Result<Option<(Key, Versioned)>, StoreError> {
        let raw = String::from_utf8_lossy(kv.key());
        let Some(rest) = raw.strip_prefix(&self.objects_prefix()) else {
            return Ok(None);
        };
        let key = Key::decode(rest).ok_or_else(|| StoreError::Decode {
            key: raw.to_string(),
            detail: "unknown kind".into(),
        })?;
        let stored: Stored =
            serde_json::from_slice(kv.value()).map_err(|e| StoreError::Decode {
                key: raw.to_string(),
                detail: e.to_string(),
            })?;
        if stored.schema_version > ETCD_SCHEMA_VERSION {
            return Err(StoreError::Decode {
                key: raw.to_string(),
                detail: format!(
                    "written with schema {} by a newer Paddock",
                    stored.schema_version
                ),
            });
        }
        Ok(Some((
            key,
            Versioned {
                revision: rev(kv.mod_revision()),
                object: stored.object,
            },
        )))
    }
}

/// One kind of key the replicas coordinate with (counters, claims), under
/// `<prefix><kind>/`, each named by the SHA-256 of its name in hex: names
/// (usernames, addresses, user ids) are neither listed in clear nor limited
/// in the characters they may hold. Requests on them are blocking, within
/// the store's timeout.
pub(super) struct HashedKeys {
    client: Client,
    handle: tokio::runtime::Handle,
    prefix: String,
    timeout: Duration,
    kind: &'static str,
}

impl HashedKeys {
    pub(super) fn new(store: &EtcdStore, kind: &'static str) -> Self {
        Self {
            client: store.client(),
            handle: store.handle().clone(),
            prefix: format!("{}{kind}/", store.prefix()),
            timeout: store.options.request_timeout,
            kind,
        }
    }

    /// The key of `name`.
    pub(super) fn key(&self, name: &str) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(name.as_bytes());
        format!("{}{}", self.prefix, hex::encode(digest))
    }

    /// A clone of the store's client.
    pub(super) fn client(&self) -> Client {
        self.client.clone()
    }

    /// The store's runtime.
    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs the request `f` on the store's runtime, blocking this thread.
    pub(super) fn block<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let kind = self.kind;
        wait_on(&self.handle, self.timeout, async move {
            f.await.map_err(|e| unavailable(kind, e))
        })
    }

    /// An `Unavailable` error about these keys.
    pub(super) fn unavailable(&self, e: impl std::fmt::Display) -> StoreError {
        unavailable(self.kind, e)
    }
}

fn unavailable(kind: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        detail: format!("{kind}: {e}"),
    }
}

impl std::fmt::Debug for HashedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashedKeys")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// This process among the replicas, `<hostname>/<pid>`: the value of the
/// keys it holds (the election's, its claims), for whoever reads them.
pub(super) fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}/{}", host.trim(), std::process::id())
}

/// Runs `f` on `handle` within `timeout` and blocks this thread until it is
/// done. Unlike `Runtime::block_on` it works from inside another runtime (a
/// server opening its store at start), because the future runs on the store's
/// own threads.
pub(super) fn wait_on<T, F>(
    handle: &tokio::runtime::Handle,
    timeout: Duration,
    f: F,
) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let result = match tokio::time::timeout(timeout, f).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable {
                detail: format!("no answer within {timeout:?}"),
            }),
        };
        let _ = tx.send(result);
    });
    rx.recv().unwrap_or_else(|_| {
        Err(StoreError::Unavailable {
            detail: "the etcd client stopped".into(),
        })
    })
}

fn unavail(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable {
        detail: e.to_string(),
    }
}

fn marker_value() -> Vec<u8> {
    br#"{"note":"rewritten by every commit; its mod_revision is the store's revision"}"#.to_vec()
}

fn encode(object: &Object) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredRef {
        schema_version: ETCD_SCHEMA_VERSION,
        object,
    })
    .map_err(|e| StoreError::Unavailable {
        detail: e.to_string(),
    })
}

fn compare(key: &str, expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::create_revision(key, CompareOp::Equal, 0)),
        Expect::Exists => Some(Compare::create_revision(key, CompareOp::Greater, 0)),
        Expect::Revision(r) => Some(Compare::mod_revision(key, CompareOp::Equal, etcd_rev(r))),
    }
}

impl Store for EtcdStore {
    fn revision(&self) -> Result<Revision, StoreError> {
        let mut kv = self.client.kv_client();
        let key = self.marker_key();
        self.run(async move {
            let resp = kv.get(key, None).await.map_err(unavail)?;
            Ok(resp
                .kvs()
                .first()
                .map_or(Revision(0), |kv| rev(kv.mod_revision())))
        })
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let prefix = self.options.prefix.clone();
        let end = prefix_end(prefix.as_bytes());
        // Page by page, each within the request timeout (a large store takes
        // longer than one request may), all pinned to the first page's revision.
        let marker = self.marker_key();
        let mut revision = Revision(0);
        let mut objects = Vec::new();
        let mut start = prefix.into_bytes();
        let mut at = 0;
        loop {
            let mut kv = self
                .client
                .kv_client()
                .max_decoding_message_size(LOAD_MESSAGE_LIMIT);
            let (key, range_end) = (start.clone(), end.clone());
            let mut resp = self.run(async move {
                let mut options = GetOptions::new()
                    .with_range(range_end)
                    .with_limit(LOAD_PAGE);
                if at != 0 {
                    options = options.with_revision(at);
                }
                kv.get(key, Some(options)).await.map_err(unavail)
            })?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            let more = resp.more();
            let page = resp.take_kvs();
            let Some(last) = page.last() else { break };
            start = last.key().to_vec();
            start.push(0);
            // Decoded page by page: the raw page is dropped before the next.
            for kv in &page {
                if kv.key() == marker.as_bytes() {
                    revision = rev(kv.mod_revision());
                } else if let Some((_, v)) = self.decode(kv)? {
                    objects.push(v);
                }
            }
            if !more {
                break;
            }
        }
        Ok(Loaded { revision, objects })
    }

    fn changes_since(&self, since: Revision) -> Result<Changes, StoreError> {
        let current = self.revision()?;
        if current == since {
            return Ok(Changes::Events {
                revision: since,
                events: Vec::new(),
            });
        }
        if current < since {
            // The reader is ahead of the store (etcd restored from a backup).
            return Ok(Changes::Compacted);
        }
        if current.0 - since.0 > self.options.max_replay {
            // Too far behind to replay in time: a reload reads only what is.
            return Ok(Changes::Compacted);
        }
        let mut watch = self.client.watch_client();
        let prefix = self.options.prefix.clone();
        let upto = etcd_rev(current);
        let from = etcd_rev(since) + 1;
        let collected = self.run(async move {
            let options = WatchOptions::new().with_prefix().with_start_revision(from);
            let mut stream = watch.watch(prefix, Some(options)).await.map_err(unavail)?;
            let mut events: Vec<etcd_client::Event> = Vec::new();
            loop {
                let Some(resp) = stream.message().await.map_err(unavail)? else {
                    return Err(StoreError::Unavailable {
                        detail: "the watch ended early".into(),
                    });
                };
                if resp.compact_revision() != 0 {
                    return Ok(None);
                }
                if resp.canceled() {
                    return Err(StoreError::Unavailable {
                        detail: format!("watch canceled: {}", resp.cancel_reason()),
                    });
                }
                let mut done = false;
                for e in resp.events() {
                    let r = e.kv().map_or(0, KeyValue::mod_revision);
                    if r > upto {
                        done = true;
                        continue;
                    }
                    if r == upto {
                        done = true;
                    }
                    events.push(e.clone());
                }
                if done {
                    return Ok(Some(events));
                }
            }
        })?;
        let Some(raw) = collected else {
            return Ok(Changes::Compacted);
        };
        let objects = self.objects_prefix();
        let mut folded: BTreeMap<Key, Option<Versioned>> = BTreeMap::new();
        for e in &raw {
            let Some(kv) = e.kv() else { continue };
            match e.event_type() {
                EventType::Put => {
                    if let Some((key, v)) = self.decode(kv)? {
                        folded.insert(key, Some(v));
                    }
                }
                EventType::Delete => {
                    let raw = String::from_utf8_lossy(kv.key());
                    if let Some(key) = raw.strip_prefix(&objects).and_then(Key::decode) {
                        folded.insert(key, None);
                    }
                }
            }
        }
        Ok(Changes::Events {
            revision: current,
            events: folded
                .into_iter()
                .map(|(key, value)| Event { key, value })
                .collect(),
        })
    }

    fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        if ops.len() > MAX_COMMIT_OPS {
            return Err(StoreError::Unavailable {
                detail: format!(
                    "a commit of {} ops exceeds etcd's transaction limit ({MAX_COMMIT_OPS})",
                    ops.len()
                ),
            });
        }
        let mut compares = Vec::new();
        let mut writes = Vec::with_capacity(ops.len() + 1);
        let mut guarded = Vec::new();
        for op in &ops {
            let (key, expect) = match op {
                Op::Put { object, expect } => {
                    let key = self.object_key(&object.key());
                    writes.push(TxnOp::put(key.as_str(), encode(object)?, None));
                    (key, *expect)
                }
                Op::Delete { key, expect } => {
                    let key = self.object_key(key);
                    writes.push(TxnOp::delete(key.as_str(), None));
                    (key, *expect)
                }
            };
            if let Some(c) = compare(&key, expect) {
                compares.push(c);
                guarded.push((key, expect));
            }
        }
        writes.push(TxnOp::put(self.marker_key(), marker_value(), None));
        let reads: Vec<TxnOp> = guarded
            .iter()
            .map(|(key, _)| TxnOp::get(key.as_str(), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(writes).or_else(reads);
        let mut kv = self.client.kv_client();
        let resp = self.run(async move { kv.txn(txn).await.map_err(unavail) })?;
        if resp.succeeded() {
            return Ok(rev(resp.header().map_or(0, |h| h.revision())));
        }
        // Name the first precondition that failed, as the embedded store does.
        for ((key, expect), read) in guarded.iter().zip(resp.op_responses()) {
            let TxnOpResponse::Get(get) = read else {
                continue;
            };
            let current = get.kvs().first().map(|kv| rev(kv.mod_revision()));
            let ok = match (expect, current) {
                (Expect::Any, _) => true,
                (Expect::Absent, c) => c.is_none(),
                (Expect::Exists, c) => c.is_some(),
                (Expect::Revision(r), c) => c == Some(*r),
            };
            if !ok {
                let shown = key
                    .strip_prefix(&self.objects_prefix())
                    .unwrap_or(key)
                    .to_owned();
                return Err(StoreError::Conflict {
                    key: shown,
                    expected: format!("{expect:?}, found {current:?}"),
                });
            }
        }
        Err(StoreError::Conflict {
            key: guarded.first().map(|(k, _)| k.clone()).unwrap_or_default(),
            expected: "preconditions held when read back: changed concurrently".into(),
        })
    }

    fn change_hint(&self) -> Option<Arc<Notify>> {
        Some(self.hint.clone())
    }

    fn shared_counters(&self) -> Option<Arc<dyn super::SharedCounters>> {
        let counters = self
            .counters
            .get_or_init(|| Arc::new(super::etcd_counters::EtcdCounters::new(self)));
        Some(counters.clone())
    }

    fn claims(&self) -> Option<Arc<dyn super::Claims>> {
        let claims = self
            .claims
            .get_or_init(|| Arc::new(super::etcd_claims::EtcdClaims::new(self)));
        Some(claims.clone())
    }

    fn leadership(&self) -> Option<Arc<dyn super::Leadership>> {
        let election = self.election.get_or_init(|| {
            super::election::Election::start(
                &self.handle,
                self.client.clone(),
                format!("{}election/jobs", self.options.prefix),
                replica_name(),
            )
        });
        Some(election.clone())
    }
}

/// The end of the key range of everything starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}
