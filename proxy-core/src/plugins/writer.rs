//! One non-blocking writer for the logs: the access log and the audit
//! file sink put records in a bounded queue; one OS thread per log takes
//! them out in batches, formats them and writes them.
//!
//! The request path pays a lock held for a `Vec::push` and nothing else:
//! no formatting, no allocation in steady state (the queue is two vectors
//! swapped between the writer and the workers, each keeping its capacity),
//! no system call. The writer is not woken per record: after each batch it
//! sleeps [`BATCH_INTERVAL`] so the next one gathers, and a worker wakes it
//! only when it found it idle (the first record after a quiet spell) or
//! when the queue reaches half its capacity. At 50,000 requests a second
//! that is about 100 writes a second instead of 50,000.
//!
//! When the writer falls behind and the queue is full, [`OnFull`] decides:
//! `Drop` counts the record and returns at once (kube-apiserver's batch
//! backend does the same, `plugin/pkg/audit/buffered/buffered.go`); `Block`
//! waits for room, which holds up the request and its worker thread.
//!
//! When the last [`LogWriter`] clone is dropped, the thread writes what is
//! still queued and the drop waits for it: a clean exit loses nothing.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::metrics::QueueStats;

/// How long the writer lets records gather after writing a batch.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(10);

/// How often, at most, the writer reports drops (never once per record,
/// kubernetes/kubernetes#61280).
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// What to do with a record when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Wait for room: nothing is lost, but the request that produced the
    /// record (and its worker thread) waits for the disk.
    Block,
    /// Drop the record and count it: the request path never waits.
    #[default]
    Drop,
}

/// Where a writer's records go, on its own thread.
pub trait Output<R>: Send + 'static {
    /// Formats and writes (or buffers) one record.
    fn write(&mut self, record: R);
    /// The queue is empty for now: push what is buffered to the OS.
    fn flush(&mut self);
    /// Records were dropped since the last call (`total` since the start);
    /// called at most every ten seconds, from the writer thread.
    fn dropped(&mut self, new: u64, total: u64) {
        let _ = (new, total);
    }
}

/// The sending end: cheap to clone, shared by every worker.
pub struct LogWriter<R> {
    shared: Arc<Shared<R>>,
    // Dropped after `shared`'s clone: the last clone of this closes the
    // queue and waits for the thread.
    _thread: Option<Arc<Closer<R>>>,
}

impl<R> Clone for LogWriter<R> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            _thread: self._thread.clone(),
        }
    }
}

impl<R> std::fmt::Debug for LogWriter<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("capacity", &self.shared.capacity)
            .field("on_full", &self.shared.on_full)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

struct Shared<R> {
    queue: Mutex<Queue<R>>,
    /// The writer waits here for records.
    wake: Condvar,
    /// `Block` senders wait here for room.
    room: Condvar,
    capacity: usize,
    on_full: OnFull,
    dropped: AtomicU64,
}

/// What [`LogWriter::stats`] hands out: the queue without its thread.
struct WriterStats<R>(Arc<Shared<R>>);

impl<R: Send + 'static> QueueStats for WriterStats<R> {
    fn queued(&self) -> u64 {
        self.0.lock().items.len() as u64
    }

    fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

struct Queue<R> {
    items: Vec<R>,
    /// The writer found the queue empty and waits to be woken.
    parked: bool,
    /// Senders waiting for room.
    blocked: usize,
    /// No more records: the writer ends once the queue is empty.
    closed: bool,
}

/// Joins the thread when the last sender goes.
struct Closer<R> {
    shared: Arc<Shared<R>>,
    thread: Option<JoinHandle<()>>,
}

impl<R> Drop for Closer<R> {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl<R> Shared<R> {
    fn lock(&self) -> MutexGuard<'_, Queue<R>> {
        // Nothing panics while holding the lock but a failed allocation.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<R: Send + 'static> LogWriter<R> {
    /// Starts a thread named `name` writing to `output`, behind a queue of
    /// `capacity` records (at least 1).
    pub fn start(
        name: &str,
        capacity: usize,
        on_full: OnFull,
        output: impl Output<R>,
    ) -> std::io::Result<Self> {
        let mut writer = Self::unstarted(capacity, on_full);
        let shared = writer.shared.clone();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || run(&shared, output))?;
        writer._thread = Some(Arc::new(Closer {
            shared: writer.shared.clone(),
            thread: Some(thread),
        }));
        Ok(writer)
    }

    /// A queue without a thread: nothing takes records out but
    /// [`drain`](Self::drain). For tests.
    pub(crate) fn unstarted(capacity: usize, on_full: OnFull) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue {
                    items: Vec::new(),
                    parked: false,
                    blocked: 0,
                    closed: false,
                }),
                wake: Condvar::new(),
                room: Condvar::new(),
                capacity: capacity.max(1),
                on_full,
                dropped: AtomicU64::new(0),
            }),
            _thread: None,
        }
    }
}

impl<R> LogWriter<R> {
    /// Queues `record`; with [`OnFull::Drop`], never waits. False when it
    /// was dropped (and counted).
    pub fn send(&self, record: R) -> bool {
        let shared = &*self.shared;
        let mut queue = shared.lock();
        if queue.items.len() >= shared.capacity && shared.on_full == OnFull::Block {
            queue.blocked += 1;
            while queue.items.len() >= shared.capacity && !queue.closed {
                shared.wake.notify_one();
                queue = shared
                    .room
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.blocked -= 1;
        }
        if queue.items.len() >= shared.capacity || queue.closed {
            drop(queue);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        queue.items.push(record);
        let len = queue.items.len();
        let wake = (queue.parked && len == 1) || len == shared.capacity.div_ceil(2);
        drop(queue);
        if wake {
            shared.wake.notify_one();
        }
        true
    }

    /// Records dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The queue's depth and drops, for [`Metrics::queue`](super::metrics::Metrics::queue):
    /// reads them live without keeping the writer's thread running.
    pub fn stats(&self) -> impl QueueStats
    where
        R: Send + 'static,
    {
        WriterStats(self.shared.clone())
    }

    /// Records waiting to be written now.
    pub fn queued(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Takes every queued record out (what the writer thread does).
    #[cfg(test)]
    pub(crate) fn drain(&self) -> Vec<R> {
        let mut queue = self.shared.lock();
        let items = std::mem::take(&mut queue.items);
        self.shared.room.notify_all();
        items
    }
}

/// The writer thread: takes a batch, writes it, flushes, waits for the
/// next; ends when the queue is closed and empty.
fn run<R>(shared: &Shared<R>, mut output: impl Output<R>) {
    let mut batch = Vec::new();
    let mut wrote = false;
    let mut reported = 0;
    let mut last_report: Option<Instant> = None;
    loop {
        let mut queue = shared.lock();
        if wrote && !queue.closed && queue.items.len() < shared.capacity.div_ceil(2) {
            // Let the next batch gather; a sender at half capacity wakes us.
            queue = shared
                .wake
                .wait_timeout(queue, BATCH_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        while queue.items.is_empty() && !queue.closed {
            queue.parked = true;
            queue = shared
                .wake
                .wait_timeout(queue, REPORT_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            queue.parked = false;
            if queue.items.is_empty() {
                break;
            }
        }
        let closed = queue.closed;
        std::mem::swap(&mut batch, &mut queue.items);
        if queue.blocked > 0 {
            shared.room.notify_all();
        }
        drop(queue);
        wrote = !batch.is_empty();
        for record in batch.drain(..) {
            output.write(record);
        }
        if wrote {
            output.flush();
        }
        let total = shared.dropped.load(Ordering::Relaxed);
        if total != reported && last_report.is_none_or(|at| at.elapsed() >= REPORT_INTERVAL) {
            output.dropped(total - reported, total);
            reported = total;
            last_report = Some(Instant::now());
        }
        if closed && !wrote {
            // Closed, and the last batch was empty: nothing can arrive now.
            let queue = shared.lock();
            if queue.items.is_empty() {
                break;
            }
        }
    }
    let total = shared.dropped.load(Ordering::Relaxed);
    if total != reported {
        output.dropped(total - reported, total);
    }
}

/// Appends `at` in RFC 3339, UTC, with microseconds
/// (`2026-12-01T15:10:45.123456Z`): the logs' timestamps, and
/// `metav1.MicroTime` as kube-apiserver writes it. No allocation.
pub(crate) fn push_timestamp(buf: &mut Vec<u8>, at: SystemTime) {
    // `YYYY-MM-DDTHH:MM:SS.` changes once a second: computed then, and
    // copied for every other record of that second on this thread.
    thread_local! {
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        prefix = second_prefix(secs);
        SECOND.set((secs, prefix));
    }
    buf.extend_from_slice(&prefix);
    super::json::push_padded(buf, u64::from(since.subsec_micros()), 6);
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` since the Unix epoch.
fn second_prefix(secs: u64) -> [u8; 20] {
    // Days to a civil date: Howard Hinnant's `civil_from_days`
    // (https://howardhinnant.github.io/date_algorithms.html).
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = *b"0000-00-00T00:00:00.";
    for (at, width, value) in [
        (0, 4, year.clamp(0, 9999) as u64),
        (5, 2, month as u64),
        (8, 2, day as u64),
        (11, 2, secs / 3600 % 24),
        (14, 2, secs / 60 % 60),
        (17, 2, secs % 60),
    ] {
        let mut value = value;
        for digit in out[at..at + width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex as StdMutex;

    #[test]
    fn timestamps_match_rfc3339_with_microseconds() {
        let format = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        for nanos in [
            0u64,
            951_782_400_000_000_000, // 2000-02-29
            1_764_601_845_123_456_789,
            4_107_542_399_999_999_999, // 2100-02-28T23:59:59
            4_107_542_400_000_001_000, // 2100-03-01
        ] {
            // Twice in the same second: the second from this thread's cache.
            for at in [nanos, nanos - nanos % 1_000_000_000 + 999_999_000] {
                let at = UNIX_EPOCH + Duration::from_nanos(at);
                let mut buf = Vec::new();
                push_timestamp(&mut buf, at);
                let expected = time::OffsetDateTime::from(at).format(&format).unwrap();
                assert_eq!(String::from_utf8(buf).unwrap(), expected);
            }
        }
    }

    use super::*;

    /// Collects what it is given.
    #[derive(Clone, Default)]
    struct Collect(Arc<StdMutex<(Vec<u32>, usize, u64)>>);

    impl Output<u32> for Collect {
        fn write(&mut self, record: u32) {
            self.0.lock().unwrap().0.push(record);
        }
        fn flush(&mut self) {
            self.0.lock().unwrap().1 += 1;
        }
        fn dropped(&mut self, _new: u64, total: u64) {
            self.0.lock().unwrap().2 = total;
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let writer = LogWriter::unstarted(2, OnFull::Drop);
        let sent: Vec<bool> = (0..5).map(|n| writer.send(n)).collect();
        assert_eq!(sent, [true, true, false, false, false]);
        assert_eq!(writer.dropped(), 3);
        assert_eq!(writer.queued(), 2);
        assert_eq!(writer.drain(), [0, 1]);
        // A clone shares the queue and the count.
        let clone = writer.clone();
        assert!(clone.send(7));
        assert_eq!(writer.queued(), 1);
    }

    /// Everything sent is written, in order, by the time the last clone
    /// is dropped; senders on several threads, a small queue that blocks.
    #[test]
    fn dropping_the_last_clone_writes_everything_queued() {
        let out = Collect::default();
        let writer = LogWriter::start("test-writer", 8, OnFull::Block, out.clone()).unwrap();
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        assert!(writer.send(t * 1000 + n));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(writer);
        let (written, flushes, _) = out.0.lock().unwrap().clone();
        assert_eq!(written.len(), 4000);
        for t in 0..4 {
            let own: Vec<u32> = written.iter().copied().filter(|n| n / 1000 == t).collect();
            assert_eq!(own, (t * 1000..t * 1000 + 1000).collect::<Vec<_>>());
        }
        assert!(flushes >= 1);
    }

    /// A writer that is idle (parked) is woken by the first record.
    #[test]
    fn an_idle_writer_is_woken_by_the_next_record() {
        let out = Collect::default();
        let writer = LogWriter::start("test-writer", 100, OnFull::Drop, out.clone()).unwrap();
        for n in 0..3 {
            writer.send(n);
            let deadline = Instant::now() + Duration::from_secs(10);
            while out.0.lock().unwrap().0.len() <= n as usize {
                assert!(Instant::now() < deadline, "record {n} never written");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Drops are reported to the output from the writer thread.
    #[test]
    fn drops_are_reported_to_the_output() {
        let out = Collect::default();
        let writer = LogWriter::start("test-writer", 1, OnFull::Drop, out.clone()).unwrap();
        // The writer may take the first at once; some of the rest are lost.
        let dropped = (0..100).filter(|n| !writer.send(*n)).count() as u64;
        assert_eq!(writer.dropped(), dropped);
        drop(writer);
        let (written, _, reported) = out.0.lock().unwrap().clone();
        assert_eq!(written.len() as u64 + dropped, 100);
        assert_eq!(reported, dropped);
    }
}
