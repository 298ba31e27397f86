//! The replica on disk, so a sidecar restarted while the center is down
//! answers from its last state.
//!
//! One JSON file, `<data-dir>/replica.json`, mode 0600 (it holds the
//! cluster's verifier key), replaced atomically: written to a temporary
//! file in the same directory, fsynced, renamed over the old one, and the
//! directory fsynced, so a crash leaves either the old or the new file. A
//! file that cannot be read back (damaged, another cluster's, a newer
//! format) stops the sidecar with an error naming it; it is never discarded
//! or overwritten, so nothing is lost that an operator might need.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::replica::{Replica, ReplicaFile, FILE_FORMAT, FILE_FORMATS_READ};

/// The replica file's name in the data directory.
pub const REPLICA_FILE: &str = "replica.json";
/// When the replica was last known current (Unix milliseconds, text): the
/// replica file is only rewritten when something changes, this one while
/// the feed is quiet, so a sidecar restarted without the center knows its
/// real age.
pub const CURRENT_FILE: &str = "replica.current";

/// Why the replica file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiskError {
    /// Damaged, another cluster's, or a newer format: refused, left as is.
    #[error(
        "the replica file {path} cannot be used ({detail}); the sidecar will not start on it \
         and left it untouched: move it aside to start from the center again"
    )]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Reading or writing failed.
    #[error("replica file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Where a sidecar keeps its replica.
#[derive(Debug, Clone)]
pub struct ReplicaDisk {
    path: PathBuf,
}

impl ReplicaDisk {
    /// The replica file in `data_dir` (created, mode 0700, when missing).
    pub fn new(data_dir: &Path) -> Result<Self, DiskError> {
        crate::store::create_data_dir(data_dir).map_err(|source| DiskError::Io {
            path: data_dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            path: data_dir.join(REPLICA_FILE),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The persisted replica for `cluster` and when it was last known
    /// current (Unix milliseconds); an empty one (and 0) when there is no
    /// file yet.
    pub fn load(&self, cluster: &str) -> Result<(Replica, u64), DiskError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Replica::empty(cluster), 0))
            }
            Err(source) => return Err(self.io(source)),
        };
        let corrupt = |detail: String| DiskError::Corrupt {
            path: self.path.display().to_string(),
            detail,
        };
        let file: ReplicaFile =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not valid JSON: {e}")))?;
        if !FILE_FORMATS_READ.contains(&file.format) {
            return Err(corrupt(format!(
                "format {} is not {FILE_FORMAT} (written by another version of Paddock)",
                file.format
            )));
        }
        if file.cluster != cluster {
            return Err(corrupt(format!(
                "it holds cluster {}, not {cluster}",
                file.cluster
            )));
        }
        let heartbeat = fs::read_to_string(self.heartbeat_path())
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let current_at_ms = file.current_at_ms.max(heartbeat);
        let replica = Replica::from_file(file).map_err(|e| corrupt(e.to_string()))?;
        Ok((replica, current_at_ms))
    }

    /// Replaces the file with `replica`, last known current at
    /// `current_at_ms`, atomically and durably. Blocking.
    pub fn save(&self, replica: &Replica, current_at_ms: u64) -> Result<(), DiskError> {
        let bytes = serde_json::to_vec(&replica.to_file(current_at_ms))
            .map_err(|e| self.io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{REPLICA_FILE}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut opts = fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            fs::File::open(dir)?.sync_all()
        };
        write().map_err(|source| {
            let _ = fs::remove_file(&tmp);
            self.io(source)
        })
    }

    fn heartbeat_path(&self) -> PathBuf {
        self.path.with_file_name(CURRENT_FILE)
    }

    /// Records that the replica was current at `current_at_ms`. Blocking;
    /// a failure only makes a restarted sidecar think itself older.
    pub fn save_heartbeat(&self, current_at_ms: u64) -> Result<(), DiskError> {
        let path = self.heartbeat_path();
        let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&tmp, current_at_ms.to_string())
            .and_then(|()| fs::rename(&tmp, &path))
            .map_err(|source| self.io(source))
    }

    fn io(&self, source: std::io::Error) -> DiskError {
        DiskError::Io {
            path: self.path.display().to_string(),
            source,
        }
    }
}
