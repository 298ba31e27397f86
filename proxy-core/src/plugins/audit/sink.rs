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
//! thread. Events the file could not take (a full or failing disk) are
//! counted as dropped too. Drops are logged from the writer thread at most
//! once every ten seconds, never once per event
//! (kubernetes/kubernetes#61280).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        mpsc::{self, Receiver, SyncSender},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;

use super::webhook::{Closing, WebhookError, WebhookSink};
use crate::plugins::{
    metrics::QueueStats,
    queue::QueueCounters,
    writer::{count_lines, LogWriter, Output},
};

pub use crate::plugins::writer::OnFull;

/// A file that is rotated by size: `path` is written; when the next event
/// would take it past `max_size_bytes` it becomes `path.1`, `path.1`
/// becomes `path.2`, and so on; files past `max_files` are deleted. While
/// it cannot be written, opened or rotated, events are dropped and
/// counted; rotated files are never deleted by a rotation that failed.
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
/// When the last clone is dropped (the proxy shut down), the sink's thread
/// writes what is still queued and the drop waits for it: a file sink
/// loses no event to a clean exit; a webhook sink tries each batch once
/// more, for a few seconds in all, and counts the rest as dropped.
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

/// The webhook's thread, told to finish and joined when the last sink
/// clone goes.
#[derive(Debug)]
struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
    closing: Arc<Closing>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.closing.close();
        if let Some(thread) = self.thread.take() {
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
        let closing = Arc::new(Closing::default());
        let thread = std::thread::Builder::new()
            .name("paddock-audit-webhook".to_owned())
            .spawn({
                let closing = closing.clone();
                move || {
                    super::webhook::deliver_events(
                        receiver, webhook, client, counters, &closing, runtime,
                    );
                }
            })?;
        channel.writer = Some(Arc::new(Writer {
            thread: Some(thread),
            closing,
        }));
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

    /// Events lost since the sink started: to a full queue, a failed
    /// write or a delivery that never got through.
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

/// How often, at most, a file that could not be opened or rotated is
/// tried again; the lines meanwhile are dropped and counted. Each failed
/// attempt touches nothing rotated, so retrying destroys nothing.
const RETRY: Duration = Duration::from_secs(1);

/// The suffix of the live file while it is being rotated.
const STAGED: &str = "rotating";

/// The file being written and its rotation.
struct RotatingFile {
    config: FileSink,
    /// The live file; `None` after opening or rotating failed, until
    /// [`RETRY`] has passed.
    file: Option<File>,
    /// Whole lines not written yet: gathered up to [`WRITE_SIZE`], then
    /// written in one piece.
    pending: Vec<u8>,
    /// The live file's size, `pending` included.
    size: u64,
    /// A write failed partway through a line, so the file ends in part of
    /// one: the next write starts with a newline.
    torn: bool,
    /// When opening or rotating last failed.
    failed_at: Option<Instant>,
    /// Lines lost since the writer thread last asked.
    lost: u64,
    report: Report,
}

impl RotatingFile {
    fn open(config: FileSink) -> io::Result<Self> {
        let mut file = Self {
            config,
            file: None,
            pending: Vec::with_capacity(WRITE_SIZE),
            size: 0,
            torn: false,
            failed_at: None,
            lost: 0,
            report: Report::default(),
        };
        file.resume()?;
        Ok(file)
    }

    /// Writes whole lines, rotating first whenever the next line would
    /// take the file past its size (a line larger than that gets a file of
    /// its own). Lines that cannot be written are counted in `lost`.
    fn write_lines(&mut self, mut lines: &[u8]) {
        while !lines.is_empty() {
            if !self.ready() {
                self.lost += count_lines(lines);
                return;
            }
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
                if let Err(error) = self.rotate() {
                    self.failed(&error);
                }
                continue;
            }
            self.buffer(&lines[..fit]);
            lines = &lines[fit..];
        }
    }

    /// Whether a file is open to write to; after a failure, tries again
    /// once [`RETRY`] has passed.
    fn ready(&mut self) -> bool {
        if self.file.is_some() {
            return true;
        }
        if !due(self.failed_at, RETRY) {
            return false;
        }
        match self.resume() {
            Ok(()) => true,
            Err(error) => {
                self.failed(&error);
                false
            }
        }
    }

    /// Opens the live file, first finishing a rotation that a failure (or
    /// a crash) left halfway. A live file still too large is rotated by
    /// the next write.
    fn resume(&mut self) -> io::Result<()> {
        if suffixed(&self.config.path, STAGED).exists() {
            self.rotate()
        } else {
            self.reopen()
        }
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = open_append(&self.config.path)?;
        self.size = file.metadata()?.len();
        if self.size == 0 {
            // Nothing for a next line to be joined onto.
            self.torn = false;
        }
        self.file = Some(file);
        Ok(())
    }

    fn failed(&mut self, error: &io::Error) {
        self.file = None;
        self.failed_at = Some(Instant::now());
        self.report(error);
    }

    /// `path` → `path.1`, `path.1` → `path.2`, …; past `max_files` the
    /// oldest goes. The live file is moved aside (staged) first, and the
    /// rotated ones are touched only once that worked: a live file that
    /// is gone (deleted by hand) is simply created again, and a rotation
    /// that fails midway loses nothing (the next attempt finishes it).
    fn rotate(&mut self) -> io::Result<()> {
        self.write_pending();
        self.file = None;
        let path = &self.config.path;
        let staged = suffixed(path, STAGED);
        // A file staged by a rotation that failed after staging it is
        // retired first (staging the live file would overwrite it); the
        // live file, still too large, is rotated right after.
        if !staged.exists() {
            match fs::rename(path, &staged) {
                Err(error) if error.kind() == io::ErrorKind::NotFound => return self.reopen(),
                result => result?,
            }
        }
        let max = self.config.max_files;
        if max == 0 {
            fs::remove_file(&staged)?;
        } else {
            // Shifted up to the first free number; none free, the oldest
            // is overwritten.
            let free = (1..=max)
                .find(|&n| !suffixed(path, n).exists())
                .unwrap_or(max);
            for n in (1..free).rev() {
                fs::rename(suffixed(path, n), suffixed(path, n + 1))?;
            }
            fs::rename(&staged, suffixed(path, 1))?;
        }
        self.reopen()
    }

    /// Adds whole lines to the pending write; lines as large as the buffer
    /// are written as they are, not copied.
    fn buffer(&mut self, lines: &[u8]) {
        self.size += lines.len() as u64;
        if self.pending.len() + lines.len() > WRITE_SIZE {
            self.write_pending();
        }
        if lines.len() >= WRITE_SIZE {
            self.write_out(lines);
        } else {
            self.pending.extend_from_slice(lines);
        }
    }

    fn write_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.write_out(&pending);
        self.pending = pending;
        self.pending.clear();
    }

    /// Writes whole lines to the file; what could not be written is
    /// counted in `lost` and taken off `size`.
    fn write_out(&mut self, lines: &[u8]) {
        if lines.is_empty() {
            return;
        }
        let result = match &mut self.file {
            Some(file) => write_whole(file, &mut self.torn, lines),
            None => Err((0, io::ErrorKind::NotFound.into())),
        };
        if let Err((written, error)) = result {
            let rest = &lines[written..];
            self.lost += count_lines(rest);
            self.size = self.size.saturating_sub(rest.len() as u64);
            self.report(&error);
        }
    }

    fn report(&mut self, error: &io::Error) {
        let path = self.config.path.display().to_string();
        self.report.error(&path, error);
    }
}

/// Writes `lines` (whole lines) to `out`. A write that fails partway
/// through a line leaves part of it in the file; rather than cut it off
/// again (which fails on the same broken disk, and races with anyone else
/// appending), the next write starts with a newline: one corrupt line,
/// never an event joined onto it. `torn` carries that across calls. An
/// error comes with the bytes of `lines` written before it: the line they
/// end in and every one after it are lost.
fn write_whole(
    out: &mut impl Write,
    torn: &mut bool,
    lines: &[u8],
) -> Result<(), (usize, io::Error)> {
    if *torn {
        out.write_all(b"\n").map_err(|error| (0, error))?;
        *torn = false;
    }
    let mut written = 0;
    let error = loop {
        if written == lines.len() {
            return Ok(());
        }
        match out.write(&lines[written..]) {
            Ok(0) => break io::ErrorKind::WriteZero.into(),
            Ok(n) => written += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => break error,
        }
    };
    *torn = written > 0 && lines[written - 1] != b'\n';
    Err((written, error))
}

impl Output for RotatingFile {
    fn write(&mut self, lines: &[u8]) -> u64 {
        self.write_lines(lines);
        std::mem::take(&mut self.lost)
    }

    fn flush(&mut self) -> u64 {
        self.write_pending();
        std::mem::take(&mut self.lost)
    }

    fn dropped(&mut self, new: u64, total: u64) {
        tracing::warn!(
            dropped = new,
            total,
            "audit events dropped: the queue was full or the file could not be written"
        );
    }
}

/// `path.{suffix}`: `audit.log.1`, `audit.log.rotating`.
fn suffixed(path: &Path, suffix: impl std::fmt::Display) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{suffix}"));
    PathBuf::from(name)
}

/// How much the file sink gathers per `write`: about 75 events at
/// `Metadata`. One buffer, kept across rotations.
const WRITE_SIZE: usize = 64 * 1024;

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
        assert_eq!(ids(&path), ["7"]);
        assert_eq!(file.pending.capacity(), WRITE_SIZE, "one buffer throughout");
        assert_eq!(ids(&suffixed(&path, 1)), ["5", "6"]);
        assert_eq!(ids(&suffixed(&path, 2)), ["3", "4"]);
        // "1" and "2" were in the third rotated file: gone.
        assert!(!suffixed(&path, 3).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn ids(path: &Path) -> Vec<String> {
        lines(path)
            .iter()
            .map(|e| e["auditID"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Two events per file.
    fn small(path: &Path, max_files: usize) -> RotatingFile {
        RotatingFile::open(FileSink {
            path: path.to_owned(),
            max_size_bytes: line("1").len() as u64 * 2,
            max_files,
        })
        .unwrap()
    }

    /// The live file deleted by hand: the next rotation finds it gone,
    /// starts a new one and keeps the history. Rotating regardless once
    /// deleted every rotated file, one per batch, and wrote nothing more.
    #[test]
    fn a_deleted_live_file_is_created_again_and_history_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = small(&path, 3);
        for id in 1..=5 {
            assert_eq!(Output::write(&mut file, &line(&id.to_string())), 0);
            assert_eq!(file.flush(), 0);
        }
        fs::remove_file(&path).unwrap();
        for id in 6..=9 {
            assert_eq!(Output::write(&mut file, &line(&id.to_string())), 0);
            assert_eq!(file.flush(), 0);
        }
        // "6" still fitted the deleted file, and went with it.
        assert_eq!(ids(&path), ["9"]);
        assert_eq!(ids(&suffixed(&path, 1)), ["7", "8"]);
        assert_eq!(ids(&suffixed(&path, 2)), ["3", "4"]);
        assert_eq!(ids(&suffixed(&path, 3)), ["1", "2"]);
        assert!(!suffixed(&path, STAGED).exists());

        // Without history: removing the missing file failed every time.
        let path = dir.path().join("none.log");
        let mut file = small(&path, 0);
        Output::write(&mut file, &[line("1"), line("2")].concat());
        file.flush();
        fs::remove_file(&path).unwrap();
        for id in ["3", "4"] {
            assert_eq!(Output::write(&mut file, &line(id)), 0);
        }
        file.flush();
        assert_eq!(ids(&path), ["3", "4"]);
    }

    /// A rotation that fails after the live file was staged (here `.1` is
    /// a directory it cannot replace) loses the lines that do not fit,
    /// counted, deletes nothing, and is not tried again before [`RETRY`];
    /// then it is finished.
    #[test]
    fn a_failed_rotation_counts_lines_and_destroys_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = small(&path, 1);
        let blocker = suffixed(&path, 1);
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("keep"), "").unwrap();
        assert_eq!(
            Output::write(&mut file, &[line("1"), line("2")].concat()),
            0
        );
        assert_eq!(
            Output::write(&mut file, &[line("3"), line("4")].concat()),
            2
        );
        assert_eq!(ids(&suffixed(&path, STAGED)), ["1", "2"]);
        fs::remove_dir_all(&blocker).unwrap();
        assert_eq!(Output::write(&mut file, &line("5")), 1, "retried too soon");
        file.failed_at = None;
        assert_eq!(Output::write(&mut file, &line("6")), 0);
        file.flush();
        assert_eq!(ids(&path), ["6"]);
        assert_eq!(ids(&suffixed(&path, 1)), ["1", "2"]);
        assert!(!suffixed(&path, STAGED).exists());
    }

    /// A disk that takes nothing: every event is counted as dropped, the
    /// count the metrics report. Write errors were only logged.
    #[cfg(target_os = "linux")]
    #[test]
    fn events_the_disk_refuses_are_counted_as_dropped() {
        let sink = AuditSink::file(FileSink::new("/dev/full"), QueueOptions::default()).unwrap();
        let stats = sink.stats();
        for id in 0..5 {
            send(&sink, &id.to_string());
        }
        drop(sink);
        assert_eq!(stats.dropped(), 5);
    }

    /// Accepts `accept` bytes, then fails every write.
    struct Short {
        accept: usize,
        out: Vec<u8>,
    }

    impl Write for Short {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            if self.accept == 0 {
                return Err(io::Error::other("no space"));
            }
            let n = bytes.len().min(self.accept);
            self.accept -= n;
            self.out.extend_from_slice(&bytes[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A write that fails in the middle of a line: the next one starts on
    /// a line of its own instead of completing that one with another
    /// event.
    #[test]
    fn a_torn_line_is_never_joined_onto() {
        let mut out = Short {
            accept: 12,
            out: Vec::new(),
        };
        let mut torn = false;
        let failed = write_whole(&mut out, &mut torn, b"{\"a\":1}\n{\"b\":2}\n").unwrap_err();
        assert_eq!(failed.0, 12);
        assert!(torn);
        out.accept = 100;
        write_whole(&mut out, &mut torn, b"{\"c\":3}\n").unwrap();
        let written = String::from_utf8(out.out).unwrap();
        assert_eq!(written, "{\"a\":1}\n{\"b\"\n{\"c\":3}\n");
        assert!(!torn);
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
        assert!(!suffixed(&path, 1).exists());
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
