//! Re-reading files and directories that change under a running proxy
//! (token files, upstream credentials, policy directories), by polling their
//! metadata: works the same on every filesystem, including Kubernetes'
//! symlink-swapped Secret and ConfigMap volumes.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use tokio::task::JoinHandle;

/// How often watched files are checked.
pub(crate) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// A file's fingerprint, or for a directory those of all its entries.
fn fingerprint(path: &Path) -> Option<Vec<(PathBuf, Fingerprint)>> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(vec![(path.to_owned(), file_fingerprint(&meta))]);
    }
    let mut entries: Vec<(PathBuf, Fingerprint)> = std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            // `metadata` follows symlinks, so a swapped `..data` link is noticed.
            let meta = std::fs::metadata(entry.path()).ok()?;
            Some((entry.path(), file_fingerprint(&meta)))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Some(entries)
}

fn file_fingerprint(meta: &std::fs::Metadata) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    }
}

/// A background task that calls `reload` whenever the file, or anything in
/// the directory, changes. A failed reload is logged and the caller keeps
/// its previous state. Dropping the handle stops the watch.
#[derive(Debug)]
pub(crate) struct FileWatch {
    task: JoinHandle<()>,
}

impl FileWatch {
    /// Starts watching `path` (already loaded once by the caller).
    pub(crate) fn spawn<F>(path: impl Into<PathBuf>, interval: Duration, reload: F) -> Self
    where
        F: Fn(&Path) -> Result<(), String> + Send + 'static,
    {
        let path = path.into();
        let mut last = fingerprint(&path);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let current = fingerprint(&path);
                if current == last || current.is_none() {
                    continue;
                }
                last = current;
                match reload(&path) {
                    Ok(()) => tracing::info!(path = %path.display(), "reloaded"),
                    Err(error) => tracing::warn!(
                        path = %path.display(), %error, "reload failed, keeping the previous version"
                    ),
                }
            }
        });
        Self { task }
    }
}

impl Drop for FileWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}
