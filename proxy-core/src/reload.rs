//! Re-reading files that change under a running proxy (token files,
//! upstream credentials), by polling their metadata: works the same on
//! every filesystem, including Kubernetes' symlink-swapped Secret volumes.

use std::{
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use tokio::task::JoinHandle;

/// How often watched files are checked.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn fingerprint(path: &Path) -> Option<Fingerprint> {
    use std::os::unix::fs::MetadataExt;
    // `metadata` follows symlinks, so a swapped `..data` link is noticed.
    let meta = std::fs::metadata(path).ok()?;
    Some(Fingerprint {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// A background task that calls `reload` with the file's new contents
/// whenever it changes. A failed read or a rejected content is logged and
/// the previous state is kept. Dropping the handle stops the watch.
#[derive(Debug)]
pub struct FileWatch {
    task: JoinHandle<()>,
}

impl FileWatch {
    /// Starts watching `path` (already loaded once by the caller).
    pub fn spawn<F>(path: impl Into<PathBuf>, interval: Duration, reload: F) -> Self
    where
        F: Fn(&[u8]) -> Result<(), String> + Send + 'static,
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
                match tokio::fs::read(&path).await {
                    Ok(contents) => match reload(&contents) {
                        Ok(()) => tracing::info!(file = %path.display(), "reloaded"),
                        Err(error) => tracing::warn!(
                            file = %path.display(), %error, "reload failed, keeping the previous contents"
                        ),
                    },
                    Err(error) => {
                        tracing::warn!(file = %path.display(), %error, "cannot read changed file");
                    }
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
