//! Where audit events go: a bounded queue drained by one background thread
//! that appends them to a file, rotating it by size (the logs' shared
//! [`LogWriter`]), or POSTs them to a webhook.
//!
//! The request path only ever puts an event's JSON line on the queue. The file is
//! written by a plain OS thread, not a task on one of the server's event
//! loops, so a slow disk never holds up a worker. When the queue is full,
//! [`OnFull`] decides: `Drop` counts the event and goes on (kube-apiserver's
//! batch webhook does the same, `plugin/pkg/audit/buffered/buffered.go`);
//! `Block` waits for room, which slows the request that wanted to log down
//! to the disk's pace — and, with it, every request on the same worker
//! thread. Drops are logged from the writer thread at most once every ten
//! seconds, never once per event (kubernetes/kubernetes#61280).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::{
        mpsc::{self, Receiver, SyncSender},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::webhook::{WebhookError, WebhookSink};
use crate::plugins::{
    metrics::QueueStats,
    queue::QueueCounters,
    writer::{LogWriter, Output},
};

pub use crate::plugins::writer::OnFull;

/// A file that is rotated by size: `path` is written; when the next event
/// would take it past `max_size_bytes` it becomes `path.1`, `path.1`
/// becomes `path.2`, and so on; files past `max_files` are deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSink {
    /// The file events are appended to (created with mode 0600).
    pub path: PathBuf,
    /// Rotate before the file grows past this many bytes (default 100 MiB).
    pub max_size_bytes: u64,
    /// Rotated files kept (default 5); 0 keeps none.
    pub max_files: usize,
}

impl FileSink {
    /// A sink writing to `path` with the default size and retention.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_size_bytes: 100 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// The queue's size and what to do when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    /// Events waiting to be written at most (default 10 000, as
    /// kube-apiserver's buffered backend).
    pub capacity: usize,
    /// Full-queue behaviour (default [`OnFull::Drop`]).
    pub on_full: OnFull,
}

impl Default for QueueOptions {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            on_full: OnFull::Drop,
        }
    }
}

/// The sending end of a sink: cheap to clone, shared by every worker.
/// When the last clone is dropped (the proxy shut down), the writer writes
/// what is still queued and the drop waits for it: no event is lost to a
/// clean exit.
#[derive(Debug, Clone)]
pub struct AuditSink {
    queue: Queue,
}

#[derive(Debug, Clone)]
enum Queue {
    /// The file sink: the logs' writer.
    File(LogWriter),
    /// The webhook sink: batches need their own loop.
    Channel(Channel),
}

/// A queue of events (each one's JSON) drained by the webhook's thread.
#[derive(Debug, Clone)]
pub(super) struct Channel {
    // Dropped before `writer`, so that the last clone's drop disconnects
    // the queue before it waits for the thread.
    sender: SyncSender<Bytes>,
    on_full: OnFull,
    /// Events lost: to a full queue, or a webhook batch that never got
    /// through.
    pub(super) counters: Arc<QueueCounters>,
    writer: Option<Arc<Writer>>,
}

/// Rate-limited reports from a sink's thread: drops at most every ten
/// seconds (never one line per event, kubernetes/kubernetes#61280), write
/// errors at most every minute.
#[derive(Debug, Default)]
pub(super) struct Report {
    dropped: u64,
    last_drop_report: Option<Instant>,
    last_error: Option<Instant>,
}

impl Report {
    /// Logs the drops since the last report, if it is time.
    pub(super) fn dropped(&mut self, counters: &QueueCounters) {
        let now = counters.dropped();
        if now != self.dropped && due(self.last_drop_report, Duration::from_secs(10)) {
            tracing::warn!(
                dropped = now - self.dropped,
                total = now,
                "audit events dropped: the sink cannot keep up"
            );
            self.dropped = now;
            self.last_drop_report = Some(Instant::now());
        }
    }

    /// Logs a failure to write to or deliver to `target`, if it is time.
    pub(super) fn error(&mut self, target: &str, error: &dyn std::fmt::Display) {
        if due(self.last_error, Duration::from_secs(60)) {
            tracing::error!(target = target, %error, "cannot write audit events");
            self.last_error = Some(Instant::now());
        }
    }
}

fn due(last: Option<Instant>, every: Duration) -> bool {
    last.is_none_or(|at| at.elapsed() >= every)
}

/// The writer thread, joined when the last sink clone goes.
#[derive(Debug)]
struct Writer(Option<std::thread::JoinHandle<()>>);

impl Drop for Writer {
    fn drop(&mut self) {
        if let Some(thread) = self.0.take() {
            let _ = thread.join();
        }
    }
}

impl AuditSink {
    /// Opens (or creates) the file and starts the thread that writes it.
    /// Fails when the file cannot be opened.
    pub fn file(file: FileSink, queue: QueueOptions) -> io::Result<Self> {
        let file = RotatingFile::open(file)?;
        let writer = LogWriter::start("paddock-audit", queue.capacity, queue.on_full, file)?;
        Ok(Self {
            queue: Queue::File(writer),
        })
    }

    /// Starts the thread that POSTs batches of events to `webhook`. Fails
    /// when the TLS setup (the CA bundle) or the thread cannot start.
    pub fn webhook(webhook: WebhookSink, queue: QueueOptions) -> Result<Self, WebhookError> {
        let client = webhook.client()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (mut channel, receiver) = Channel::new(queue);
        let counters = channel.counters.clone();
        let thread = std::thread::Builder::new()
            .name("paddock-audit-webhook".to_owned())
            .spawn(move || {
                super::webhook::deliver_events(receiver, webhook, client, counters, runtime);
            })?;
        channel.writer = Some(Arc::new(Writer(Some(thread))));
        Ok(Self {
            queue: Queue::Channel(channel),
        })
    }

    /// A sink and the receiving end of its queue, without a writer.
    #[cfg(test)]
    pub(super) fn channel(queue: QueueOptions) -> (Self, Receiver<Bytes>) {
        let (channel, receiver) = Channel::new(queue);
        let sink = Self {
            queue: Queue::Channel(channel),
        };
        (sink, receiver)
    }

    /// The webhook queue's counters.
    #[cfg(test)]
    pub(super) fn counters(&self) -> Arc<QueueCounters> {
        match &self.queue {
            Queue::Channel(channel) => channel.counters.clone(),
            Queue::File(_) => Arc::default(),
        }
    }

    /// Events dropped because the queue was full, since the sink started.
    pub fn dropped(&self) -> u64 {
        match &self.queue {
            Queue::File(writer) => writer.dropped(),
            Queue::Channel(channel) => channel.counters.dropped(),
        }
    }

    /// [`queued`](Self::queued) and [`dropped`](Self::dropped), live,
    /// without keeping the sink open.
    pub(super) fn stats(&self) -> Box<dyn QueueStats> {
        match &self.queue {
            Queue::File(writer) => Box::new(writer.stats()),
            Queue::Channel(channel) => Box::new(channel.counters.clone()),
        }
    }

    /// Events waiting to be written now.
    pub fn queued(&self) -> u64 {
        match &self.queue {
            Queue::File(writer) => writer.queued() as u64,
            Queue::Channel(channel) => channel.counters.queued(),
        }
    }

    /// Queues one event, whose JSON line (ending with a newline) `format`
    /// appends to the buffer it is given; never waits with
    /// [`OnFull::Drop`].
    pub(crate) fn send_with(&self, format: impl FnOnce(&mut Vec<u8>)) {
        match &self.queue {
            Queue::File(writer) => {
                writer.send_with(format);
            }
            Queue::Channel(channel) => {
                let mut line = Vec::with_capacity(1024);
                format(&mut line);
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                channel.send(line.into());
            }
        }
    }
}

impl Channel {
    fn new(queue: QueueOptions) -> (Self, Receiver<Bytes>) {
        let (sender, receiver) = mpsc::sync_channel(queue.capacity.max(1));
        let channel = Self {
            sender,
            on_full: queue.on_full,
            counters: Arc::default(),
            writer: None,
        };
        (channel, receiver)
    }

    fn send(&self, event: Bytes) {
        self.counters.offer(|| match self.on_full {
            // Full, or the thread is gone (it panicked): dropped either way.
            OnFull::Drop => self.sender.try_send(event).map_err(|_| ()),
            OnFull::Block => self.sender.send(event).map_err(|_| ()),
        });
    }
}

/// The file being written and its rotation.
struct RotatingFile {
    config: FileSink,
    out: Option<BufWriter<File>>,
    size: u64,
    report: Report,
}

impl RotatingFile {
    fn open(config: FileSink) -> io::Result<Self> {
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            config,
            out: Some(buffered(file)),
            size,
            report: Report::default(),
        })
    }

    /// Writes whole lines, rotating first whenever the next line would
    /// take the file past its size (a line larger than that gets a file of
    /// its own).
    fn write_lines(&mut self, mut lines: &[u8]) -> io::Result<()> {
        while !lines.is_empty() {
            let room = self.config.max_size_bytes.saturating_sub(self.size);
            let fit = if lines.len() as u64 <= room {
                lines.len()
            } else {
                // The lines that fit whole; at least one in an empty file.
                let within = &lines[..room as usize];
                match within.iter().rposition(|&b| b == b'\n') {
                    Some(end) => end + 1,
                    None if self.size > 0 => 0,
                    None => lines
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(lines.len(), |end| end + 1),
                }
            };
            if fit == 0 {
                self.rotate()?;
                continue;
            }
            self.append(&lines[..fit])?;
            lines = &lines[fit..];
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.out.is_none() {
            // A failed rotation left no file: try again.
            let file = open_append(&self.config.path)?;
            self.size = file.metadata()?.len();
            self.out = Some(buffered(file));
        }
        if let Some(out) = &mut self.out {
            out.write_all(bytes)?;
            self.size += bytes.len() as u64;
        }
        Ok(())
    }

    /// `path.{n-1}` → `path.{n}`, …, `path` → `path.1`; the oldest goes.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush()?;
        }
        let path = &self.config.path;
        let max = self.config.max_files;
        if max == 0 {
            fs::remove_file(path)?;
        } else {
            let _ = fs::remove_file(numbered(path, max));
            for n in (1..max).rev() {
                let from = numbered(path, n);
                if from.exists() {
                    fs::rename(&from, numbered(path, n + 1))?;
                }
            }
            fs::rename(path, numbered(path, 1))?;
        }
        self.out = Some(buffered(open_append(path)?));
        self.size = 0;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(out) = &mut self.out {
            if let Err(error) = out.flush() {
                self.report(&error);
            }
        }
    }

    fn report(&mut self, error: &io::Error) {
        let path = self.config.path.display().to_string();
        self.report.error(&path, error);
    }
}

impl Output for RotatingFile {
    fn write(&mut self, lines: &[u8]) {
        if let Err(error) = self.write_lines(lines) {
            self.report(&error);
        }
    }

    fn flush(&mut self) {
        RotatingFile::flush(self);
    }

    fn dropped(&mut self, new: u64, total: u64) {
        tracing::warn!(
            dropped = new,
            total,
            "audit events dropped: the sink cannot keep up"
        );
    }
}

fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// How much the file sink gathers per `write`: about 75 events at
/// `Metadata`. Every file it opens (the first, and each after a rotation)
/// gets the same buffer; the files opened after a rotation once got
/// `BufWriter`'s default 8 KiB, eight times the system calls.
const WRITE_SIZE: usize = 64 * 1024;

fn buffered(file: File) -> BufWriter<File> {
    BufWriter::with_capacity(WRITE_SIZE, file)
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::audit::event::tests::{sample_line as line, send_sample as send};

    fn lines(path: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let one = line("1").len() as u64;
        let mut file = RotatingFile::open(FileSink {
            path: path.clone(),
            // Two events per file.
            max_size_bytes: one * 2,
            max_files: 2,
        })
        .unwrap();
        // Three lines in one batch, then four: batches are split at lines.
        let batch = |ids: &[&str]| ids.iter().flat_map(|id| line(id)).collect::<Vec<u8>>();
        Output::write(&mut file, &batch(&["1", "2", "3"]));
        Output::write(&mut file, &batch(&["4", "5", "6", "7"]));
        file.flush();
        let ids = |p: &Path| {
            lines(p)
                .iter()
                .map(|e| e["auditID"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&path), ["7"]);
        let out = file.out.as_ref().expect("a file after rotating");
        assert_eq!(
            out.capacity(),
            WRITE_SIZE,
            "the same buffer after a rotation"
        );
        assert_eq!(ids(&numbered(&path, 1)), ["5", "6"]);
        assert_eq!(ids(&numbered(&path, 2)), ["3", "4"]);
        // "1" and "2" were in the third rotated file: gone.
        assert!(!numbered(&path, 3).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn an_existing_file_is_appended_to_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        fs::write(&path, "{\"auditID\":\"old\"}\n").unwrap();
        let mut file = RotatingFile::open(FileSink {
            path: path.clone(),
            max_size_bytes: 20,
            max_files: 0,
        })
        .unwrap();
        Output::write(&mut file, &line("new"));
        file.flush();
        // Rotated with nothing kept: the old line is gone, the new one written.
        assert_eq!(lines(&path).len(), 1);
        assert_eq!(lines(&path)[0]["auditID"], "new");
        assert!(!numbered(&path, 1).exists());
    }

    /// A queue nobody drains: with `Drop`, every event past its capacity is
    /// counted, and `send` returns at once.
    #[test]
    fn a_full_queue_drops_and_counts() {
        let (sink, receiver) = AuditSink::channel(QueueOptions {
            capacity: 2,
            on_full: OnFull::Drop,
        });
        for id in 0..5 {
            send(&sink, &id.to_string());
        }
        assert_eq!(sink.dropped(), 3);
        assert_eq!(sink.queued(), 2);
        assert_eq!(receiver.try_iter().count(), 2);
        // A clone shares the count.
        let clone = sink.clone();
        drop(receiver);
        send(&clone, "gone");
        assert_eq!(sink.dropped(), 4);
    }

    /// Everything queued is on disk once the last clone of a file sink is
    /// dropped: what a clean shutdown relies on.
    #[test]
    fn dropping_the_sink_writes_what_is_queued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let sink = AuditSink::file(
            FileSink::new(&path),
            QueueOptions {
                capacity: 1000,
                on_full: OnFull::Block,
            },
        )
        .unwrap();
        let clone = sink.clone();
        for id in 0..500 {
            send(&clone, &id.to_string());
        }
        drop(clone);
        drop(sink);
        let written = lines(&path);
        assert_eq!(written.len(), 500);
        assert_eq!(written[499]["auditID"], "499");
    }
}
