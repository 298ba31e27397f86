//! The embedded backend: one redb file in the data directory.
//!
//! Layout (redb tables):
//!
//! * `meta` (`&str → u64`): `schema_version`, `revision` (last commit),
//!   `log_floor` (the change log holds every revision above it).
//! * `objects` (`&str → &[u8]`): `<kind>/<id>` → JSON `{"rev":N,"object":{...}}`.
//! * `changes` (`u64 → &str`): revision → JSON array of the keys it wrote; the
//!   change feed. The last [`CHANGE_LOG_RETAIN`] revisions are kept.
//!
//! Every commit is a redb write transaction with [`Durability::Immediate`]: when
//! [`Store::commit`] returns, the data is on stable storage, and a crash at any
//! point leaves either the previous or the new commit (redb's copy-on-write
//! B-trees and checksummed, double-buffered commit slots).
//!
//! Sharing with the CLI: by default the file is opened in redb's
//! `ConcurrencyMode::MultiWriter`, so a running server and `paddock user ...` can
//! both have it open; write transactions are serialised across processes by file
//! byte-range locks, and the server notices other processes' commits by polling
//! [`Store::revision`] (one tiny read transaction). [`Sharing::Exclusive`] keeps
//! redb's whole-file lock instead; a second process then gets
//! [`StoreError::Locked`] with a message pointing at the admin API.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use redb::{
    ConcurrencyMode, Database, DatabaseError, Durability, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, TableDefinition, TableHandle,
};
use serde::{Deserialize, Serialize};

use super::{
    Changes, Event, Expect, Key, Loaded, Object, Op, Revision, Store, StoreError, Versioned,
};

/// The schema version this build writes. Older files are migrated by explicit code
/// in `MIGRATIONS`; newer ones are refused.
pub const SCHEMA_VERSION: u64 = 1;

/// How many revisions the change log keeps by default. A reader further behind
/// reloads everything.
pub const CHANGE_LOG_RETAIN: u64 = 10_000;

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const OBJECTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("objects");
const CHANGES: TableDefinition<'_, u64, &str> = TableDefinition::new("changes");

const K_SCHEMA: &str = "schema_version";
const K_REVISION: &str = "revision";
const K_LOG_FLOOR: &str = "log_floor";

/// A migration from schema `n` to `n + 1` is `MIGRATIONS[n - 1]`. Each runs in the
/// same write transaction that records the new version.
type Migration = fn(&redb::WriteTransaction) -> Result<(), StoreError>;
const MIGRATIONS: &[Migration] = &[];

/// How the file is shared between processes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Sharing {
    /// Several processes (the server, CLI invocations) may open the file at once;
    /// writes are serialised by byte-range locks. The default.
    #[default]
    MultiProcess,
    /// This process locks the whole file; others get [`StoreError::Locked`].
    Exclusive,
}

/// Options for [`EmbeddedStore::open`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmbeddedOptions {
    /// How the file is shared between processes.
    pub sharing: Sharing,
    /// Revisions kept in the change log ([`CHANGE_LOG_RETAIN`] by default, at
    /// least 1).
    pub change_log_retain: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            sharing: Sharing::default(),
            change_log_retain: CHANGE_LOG_RETAIN,
        }
    }
}

impl EmbeddedOptions {
    /// Sets [`EmbeddedOptions::change_log_retain`].
    pub fn change_log_retain(mut self, revisions: u64) -> Self {
        self.change_log_retain = revisions.max(1);
        self
    }

    /// Sets [`EmbeddedOptions::sharing`].
    pub fn sharing(mut self, sharing: Sharing) -> Self {
        self.sharing = sharing;
        self
    }
}

/// The embedded store: one redb file.
pub struct EmbeddedStore {
    db: Database,
    path: PathBuf,
    retain: u64,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct StoredRef<'a> {
    rev: u64,
    object: &'a Object,
}

#[derive(Deserialize)]
struct Stored {
    rev: u64,
    object: Object,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        detail: e.to_string(),
    }
}

impl EmbeddedStore {
    /// The file name used inside a data directory.
    pub const FILE_NAME: &'static str = "paddock.redb";

    /// Opens (creating if needed) `<dir>/paddock.redb`, creating `dir` with mode
    /// 0700 if it does not exist (see [`create_data_dir`]).
    pub fn open_in_dir(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        create_data_dir(dir).map_err(|e| StoreError::Unavailable {
            detail: format!("cannot create data directory {}: {e}", dir.display()),
        })?;
        Self::open(&dir.join(Self::FILE_NAME), options)
    }

    /// Opens the store file at `path`, creating and initialising it when it does not
    /// exist.
    ///
    /// An existing file is first probed read-only, with redb's full integrity check
    /// and a read of every entry: a damaged file, an empty one, a file that is not a
    /// Paddock store, or one written by a newer schema or redb format is refused
    /// without writing a byte. A file left open by a crash (`kill -9`) fails the
    /// read-only probe as needing recovery; it is then opened for writing, which runs
    /// redb's recovery (it rolls back to the last durable commit, never further), and
    /// read in full before anything else is written.
    ///
    /// A new file is built under a temporary name and linked into place when
    /// initialised, so a crash during creation never leaves an empty or
    /// half-written `path` behind (an empty one is refused, never re-created: it
    /// may be a store whose contents were lost).
    pub fn open(path: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        let shown = path.display().to_string();
        // redb may panic on a file damaged outside redb (debug builds assert on
        // damaged pages; reads of a damaged page hit `unreachable!`): every step
        // that reads the file runs under the guard.
        guard_panics(&shown, || Self::open_guarded(path, &shown, &options))?
    }

    fn open_guarded(
        path: &Path,
        shown: &str,
        options: &EmbeddedOptions,
    ) -> Result<Self, StoreError> {
        let mode = match options.sharing {
            Sharing::MultiProcess => ConcurrencyMode::MultiWriter,
            Sharing::Exclusive => ConcurrencyMode::ExclusiveWriter,
        };
        match fs::metadata(path) {
            Ok(meta) if meta.len() == 0 => {
                return Err(StoreError::Corrupt {
                    path: shown.to_string(),
                    detail: "the file is empty".into(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Self::create_file(path, mode, options.change_log_retain)?;
            }
            Err(e) => {
                return Err(StoreError::Unavailable {
                    detail: format!("{shown}: {e}"),
                })
            }
        }
        let verified = Self::probe(path, mode)?;
        let mut builder = Database::builder();
        builder.set_concurrency_mode(mode);
        let db = builder.open(path).map_err(|e| map_db_error(shown, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Hashes only, but still nobody else's business.
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        }
        let store = Self {
            db,
            path: path.to_path_buf(),
            retain: options.change_log_retain.max(1),
        };
        if !verified {
            let txn = store.db.begin_read().map_err(|e| map_storage(shown, e))?;
            read_everything(shown, &txn)?;
        }
        store.init_or_migrate()?;
        Ok(store)
    }

    /// Creates and initialises a new store at `<path>.new-<pid>` and links it
    /// to `path` (unless another process created `path` meanwhile: then that
    /// one is used).
    fn create_file(path: &Path, mode: ConcurrencyMode, retain: u64) -> Result<(), StoreError> {
        let shown = path.display().to_string();
        let io_error = |e: std::io::Error| StoreError::Unavailable {
            detail: format!("cannot create {shown}: {e}"),
        };
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".new-{}", std::process::id()));
        let temporary = PathBuf::from(name);
        let _ = fs::remove_file(&temporary);
        let mut file = fs::OpenOptions::new();
        file.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        file.open(&temporary).map_err(io_error)?;
        let created = (|| {
            let mut builder = Database::builder();
            builder.set_concurrency_mode(mode);
            let db = builder
                .create(&temporary)
                .map_err(|e| map_db_error(&shown, e))?;
            Self {
                db,
                path: temporary.clone(),
                retain,
            }
            .init_or_migrate()
        })();
        let linked = created.and_then(|()| match fs::hard_link(&temporary, path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_error(e)),
        });
        let _ = fs::remove_file(&temporary);
        linked?;
        // The new name must survive a crash too.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = fs::File::open(parent).and_then(|dir| dir.sync_all());
        }
        Ok(())
    }

    /// Read-only checks that never modify the file; `Ok(true)` when every
    /// entry was read, `Ok(false)` when the file needs redb's recovery first.
    ///
    /// First with redb's full integrity check. redb reports both "damaged" and
    /// "not closed cleanly" as needing a repair, which a read-only open refuses;
    /// a second read-only open that trusts the clean-shutdown flag tells them
    /// apart: if it succeeds, the file was closed cleanly and is damaged.
    fn probe(path: &Path, mode: ConcurrencyMode) -> Result<bool, StoreError> {
        let shown = path.display().to_string();
        let ro_open = |verify: bool| {
            let mut builder = Database::builder();
            builder.set_concurrency_mode(mode);
            builder.set_check_integrity_on_open(verify);
            builder.open_read_only(path)
        };
        let ro = match ro_open(true) {
            Ok(ro) => ro,
            Err(DatabaseError::RepairAborted) => match ro_open(false) {
                Ok(_) => {
                    return Err(StoreError::Corrupt {
                        path: shown,
                        detail: "integrity check failed".into(),
                    })
                }
                // Not closed cleanly (crash): the writable open recovers it.
                Err(DatabaseError::RepairAborted) => return Ok(false),
                Err(e) => return Err(map_db_error(&shown, e)),
            },
            Err(e) => return Err(map_db_error(&shown, e)),
        };
        let txn = ro.begin_read().map_err(|e| map_storage(&shown, e))?;
        check_schema(&shown, &txn)?;
        read_everything(&shown, &txn)?;
        Ok(true)
    }

    fn init_or_migrate(&self) -> Result<(), StoreError> {
        let shown = self.path.display().to_string();
        // Cheap read first: nothing to write for an up-to-date file.
        {
            let txn = self.db.begin_read().map_err(|e| map_storage(&shown, e))?;
            if check_schema(&shown, &txn)? == Some(SCHEMA_VERSION) {
                return Ok(());
            }
        }
        let mut txn = self.db.begin_write().map_err(|e| map_storage(&shown, e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(unavailable)?;
        // Re-check inside the write transaction: another process may have
        // initialised or migrated it meanwhile.
        let found = check_schema_w(&shown, &txn)?;
        match found {
            None => {
                let mut meta = txn.open_table(META).map_err(unavailable)?;
                meta.insert(K_SCHEMA, SCHEMA_VERSION).map_err(unavailable)?;
                meta.insert(K_REVISION, 0).map_err(unavailable)?;
                meta.insert(K_LOG_FLOOR, 0).map_err(unavailable)?;
                drop(meta);
                txn.open_table(OBJECTS).map_err(unavailable)?;
                txn.open_table(CHANGES).map_err(unavailable)?;
            }
            Some(v) if v == SCHEMA_VERSION => {}
            Some(v) => {
                for (i, m) in MIGRATIONS
                    .iter()
                    .enumerate()
                    .skip(usize::try_from(v).unwrap_or(usize::MAX).saturating_sub(1))
                {
                    m(&txn)?;
                    tracing::info!(from = i + 1, to = i + 2, "migrated store schema");
                }
                let mut meta = txn.open_table(META).map_err(unavailable)?;
                meta.insert(K_SCHEMA, SCHEMA_VERSION).map_err(unavailable)?;
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_meta(
        meta: &impl ReadableTable<&'static str, u64>,
        key: &str,
    ) -> Result<u64, StoreError> {
        Ok(meta
            .get(key)
            .map_err(unavailable)?
            .map(|g| g.value())
            .unwrap_or(0))
    }
}

/// Creates `dir` and its missing parents with mode 0700 (the data directory
/// holds the store, keys and secrets); an existing directory is left as it is.
pub fn create_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Reads every entry of every table, so that a damaged page is found (as an
/// error or a panic, both caught by [`guard_panics`]) before anything is
/// written rather than later on the request path.
fn read_everything(path: &str, txn: &redb::ReadTransaction) -> Result<(), StoreError> {
    fn all<K: redb::Key + 'static, V: redb::Value + 'static>(
        path: &str,
        txn: &redb::ReadTransaction,
        table: TableDefinition<'_, K, V>,
    ) -> Result<(), StoreError> {
        let table = match txn.open_table(table) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(map_storage(path, e)),
        };
        for row in table.iter().map_err(|e| map_storage(path, e))? {
            let (key, value) = row.map_err(|e| map_storage(path, e))?;
            let _ = (key.value(), value.value());
        }
        Ok(())
    }
    all(path, txn, META)?;
    all(path, txn, OBJECTS)?;
    all(path, txn, CHANGES)
}

/// redb may panic on a file damaged outside redb (it says so for opens that trust
/// the clean-shutdown flag, and debug builds assert on damaged pages): report that
/// as corruption instead of taking the process down, and without the panic
/// message (and backtrace) the panic hook would print before the clean error.
fn guard_panics<T>(path: &str, f: impl FnOnce() -> T) -> Result<T, StoreError> {
    let result = {
        let _quiet = QuietPanics::new();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
    };
    result.map_err(|p| {
        let detail = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the file could not be read".into());
        StoreError::Corrupt {
            path: path.to_string(),
            detail,
        }
    })
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, panics on this thread skip the panic hook. The hook is
/// wrapped once per process; other threads' panics are reported as before.
struct QuietPanics {
    was: bool,
}

impl QuietPanics {
    fn new() -> Self {
        static WRAP: std::sync::Once = std::sync::Once::new();
        WRAP.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !QUIET.with(std::cell::Cell::get) {
                    previous(info);
                }
            }));
        });
        Self {
            was: QUIET.with(|quiet| quiet.replace(true)),
        }
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET.with(|quiet| quiet.set(self.was));
    }
}

/// `Ok(None)`: a fresh file (no tables). `Ok(Some(v))`: schema `v`, supported.
fn check_schema(path: &str, txn: &redb::ReadTransaction) -> Result<Option<u64>, StoreError> {
    let tables: Vec<String> = txn
        .list_tables()
        .map_err(|e| map_storage(path, e))?
        .map(|t| t.name().to_string())
        .collect();
    if tables.is_empty() {
        return Ok(None);
    }
    let meta = match txn.open_table(META) {
        Ok(m) => m,
        Err(e) => {
            return Err(StoreError::Corrupt {
                path: path.to_string(),
                detail: format!("no Paddock metadata table (tables: {tables:?}): {e}"),
            })
        }
    };
    let v = meta
        .get(K_SCHEMA)
        .map_err(|e| map_storage(path, e))?
        .map(|g| g.value());
    schema_verdict(path, v)
}

fn check_schema_w(path: &str, txn: &redb::WriteTransaction) -> Result<Option<u64>, StoreError> {
    let n = txn.list_tables().map_err(|e| map_storage(path, e))?.count();
    if n == 0 {
        return Ok(None);
    }
    let meta = txn.open_table(META).map_err(|e| StoreError::Corrupt {
        path: path.to_string(),
        detail: format!("no Paddock metadata table: {e}"),
    })?;
    let v = meta
        .get(K_SCHEMA)
        .map_err(|e| map_storage(path, e))?
        .map(|g| g.value());
    schema_verdict(path, v)
}

fn schema_verdict(path: &str, v: Option<u64>) -> Result<Option<u64>, StoreError> {
    match v {
        None => Err(StoreError::Corrupt {
            path: path.to_string(),
            detail: "no schema version recorded".into(),
        }),
        Some(0) => Err(StoreError::Corrupt {
            path: path.to_string(),
            detail: "schema version 0".into(),
        }),
        Some(v) if v > SCHEMA_VERSION => Err(StoreError::NewerVersion {
            path: path.to_string(),
            found: v.to_string(),
            supported: SCHEMA_VERSION.to_string(),
        }),
        Some(v) => Ok(Some(v)),
    }
}

fn map_storage(path: &str, e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(detail) => StoreError::Corrupt {
            path: path.to_string(),
            detail,
        },
        redb::Error::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_string(),
        },
        other => unavailable(other),
    }
}

fn map_db_error(path: &str, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
            path: path.to_string(),
        },
        DatabaseError::LockProtocolMismatch => StoreError::Unavailable {
            detail: format!(
                "{path} is open in another process running an incompatible version of Paddock"
            ),
        },
        DatabaseError::UpgradeRequired(v) => StoreError::Corrupt {
            path: path.to_string(),
            detail: format!("old redb file format {v}, which Paddock never wrote"),
        },
        DatabaseError::Storage(redb::StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt {
                path: path.to_string(),
                detail: io.to_string(),
            }
        }
        DatabaseError::Storage(redb::StorageError::Io(io)) => StoreError::Unavailable {
            detail: format!("{path}: {io}"),
        },
        DatabaseError::Storage(s) => {
            let detail = s.to_string();
            // How redb reports a file format newer than it knows.
            match detail.split_once("Expected file format version <= ") {
                Some((_, rest)) => StoreError::NewerVersion {
                    path: path.to_string(),
                    found: format!(
                        "redb file format {}",
                        rest.rsplit("found ").next().unwrap_or("?")
                    ),
                    supported: format!(
                        "redb file format {}",
                        rest.split(',').next().unwrap_or("?")
                    ),
                },
                None => StoreError::Corrupt {
                    path: path.to_string(),
                    detail,
                },
            }
        }
        other => StoreError::Corrupt {
            path: path.to_string(),
            detail: other.to_string(),
        },
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<Versioned, StoreError> {
    let s: Stored = serde_json::from_slice(bytes).map_err(|e| StoreError::Decode {
        key: key.to_string(),
        detail: e.to_string(),
    })?;
    Ok(Versioned {
        revision: Revision(s.rev),
        object: s.object,
    })
}

fn encode(rev: u64, object: &Object) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&StoredRef { rev, object }).map_err(unavailable)
}

impl Store for EmbeddedStore {
    fn revision(&self) -> Result<Revision, StoreError> {
        let shown = self.path.display().to_string();
        let txn = self.db.begin_read().map_err(|e| map_storage(&shown, e))?;
        let meta = txn.open_table(META).map_err(unavailable)?;
        Ok(Revision(Self::read_meta(&meta, K_REVISION)?))
    }

    fn load(&self) -> Result<Loaded, StoreError> {
        let shown = self.path.display().to_string();
        let txn = self.db.begin_read().map_err(|e| map_storage(&shown, e))?;
        let meta = txn.open_table(META).map_err(unavailable)?;
        let revision = Revision(Self::read_meta(&meta, K_REVISION)?);
        let objects = txn.open_table(OBJECTS).map_err(unavailable)?;
        let mut out = Vec::with_capacity(usize::try_from(objects.len().unwrap_or(0)).unwrap_or(0));
        for row in objects.iter().map_err(unavailable)? {
            let (k, v) = row.map_err(unavailable)?;
            out.push(decode(k.value(), v.value())?);
        }
        Ok(Loaded {
            revision,
            objects: out,
        })
    }

    fn changes_since(&self, since: Revision) -> Result<Changes, StoreError> {
        let shown = self.path.display().to_string();
        let txn = self.db.begin_read().map_err(|e| map_storage(&shown, e))?;
        let meta = txn.open_table(META).map_err(unavailable)?;
        let revision = Self::read_meta(&meta, K_REVISION)?;
        let floor = Self::read_meta(&meta, K_LOG_FLOOR)?;
        if since.0 == revision {
            return Ok(Changes::Events {
                revision: Revision(revision),
                events: Vec::new(),
            });
        }
        if since.0 < floor || since.0 > revision {
            return Ok(Changes::Compacted);
        }
        let changes = txn.open_table(CHANGES).map_err(unavailable)?;
        let mut keys = BTreeSet::new();
        for row in changes.range(since.0 + 1..=revision).map_err(unavailable)? {
            let (rev, v) = row.map_err(unavailable)?;
            let list: Vec<String> =
                serde_json::from_str(v.value()).map_err(|e| StoreError::Decode {
                    key: format!("changes/{}", rev.value()),
                    detail: e.to_string(),
                })?;
            keys.extend(list);
        }
        let objects = txn.open_table(OBJECTS).map_err(unavailable)?;
        let mut events = Vec::with_capacity(keys.len());
        for k in keys {
            let Some(key) = Key::decode(&k) else {
                return Err(StoreError::Decode {
                    key: k,
                    detail: "unknown kind".into(),
                });
            };
            let value = match objects.get(k.as_str()).map_err(unavailable)? {
                Some(v) => Some(decode(&k, v.value())?),
                None => None,
            };
            events.push(Event { key, value });
        }
        Ok(Changes::Events {
            revision: Revision(revision),
            events,
        })
    }

    fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let shown = self.path.display().to_string();
        let mut txn = self.db.begin_write().map_err(|e| map_storage(&shown, e))?;
        txn.set_durability(Durability::Immediate)
            .map_err(unavailable)?;
        let rev;
        {
            let mut meta = txn.open_table(META).map_err(unavailable)?;
            rev = Self::read_meta(&meta, K_REVISION)? + 1;
            let mut objects = txn.open_table(OBJECTS).map_err(unavailable)?;
            let mut written = Vec::with_capacity(ops.len());
            for op in &ops {
                let key = op.key().encode();
                let expect = match op {
                    Op::Put { expect, .. } | Op::Delete { expect, .. } => *expect,
                };
                let current = match objects.get(key.as_str()).map_err(unavailable)? {
                    Some(v) => Some(decode(&key, v.value())?.revision),
                    None => None,
                };
                let ok = match (expect, current) {
                    (Expect::Any, _) => true,
                    (Expect::Absent, c) => c.is_none(),
                    (Expect::Exists, c) => c.is_some(),
                    (Expect::Revision(r), c) => c == Some(r),
                };
                if !ok {
                    // Dropping the transaction aborts it: nothing is written.
                    return Err(StoreError::Conflict {
                        key,
                        expected: format!("{expect:?}, found {current:?}"),
                    });
                }
                match op {
                    Op::Put { object, .. } => {
                        objects
                            .insert(key.as_str(), encode(rev, object)?.as_slice())
                            .map_err(unavailable)?;
                    }
                    Op::Delete { .. } => {
                        objects.remove(key.as_str()).map_err(unavailable)?;
                    }
                }
                written.push(key);
            }
            let mut changes = txn.open_table(CHANGES).map_err(unavailable)?;
            let list = serde_json::to_string(&written).map_err(unavailable)?;
            changes.insert(rev, list.as_str()).map_err(unavailable)?;
            meta.insert(K_REVISION, rev).map_err(unavailable)?;
            // Keep the log bounded: drop what falls out of the window.
            if rev > self.retain {
                let floor = rev - self.retain;
                let old_floor = Self::read_meta(&meta, K_LOG_FLOOR)?;
                if floor > old_floor {
                    for r in old_floor + 1..=floor {
                        changes.remove(r).map_err(unavailable)?;
                    }
                    meta.insert(K_LOG_FLOOR, floor).map_err(unavailable)?;
                }
            }
        }
        txn.commit().map_err(unavailable)?;
        Ok(Revision(rev))
    }
}
