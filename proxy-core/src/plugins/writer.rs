//! One non-blocking writer for the logs: the access log and the audit
//! file sink append their records (formatted lines) to a bounded buffer;
//! one OS thread per log takes them out in batches and writes them.
//!
//! A record is formatted on the thread that produces it, while the
//! request's context is still in that core's cache, straight into the
//! buffer: the request path pays an uncontended lock, the formatting and
//! nothing else (no allocation in steady state, no system call). Nothing of
//! the request crosses to the writer's thread, so the request's memory is
//! freed where it was allocated. Handing the context to the writer to
//! format there cost more in all: the writer read it from another core's
//! cache, and its frees reached the worker's allocator as remote frees.
//!
//! The buffer is split in stripes, one per core, and a thread always uses
//! the same one: the workers (one per core by default) do not share a
//! lock, and a thread's records stay in the order it produced them.
//! Records of different threads may be written out of order by up to one
//! batch. The writer is not woken per record: after each batch it sleeps
//! [`BATCH_INTERVAL`] so the next one gathers, and a producer wakes it only
//! when it found it idle (the first record after a quiet spell) or when its
//! stripe reaches half its capacity. Under load that is 20 batches a
//! second, each stripe's records handed to the output in one write.
//!
//! When the writer falls behind and a stripe is full, [`OnFull`] decides:
//! `Drop` counts the record and returns at once (kube-apiserver's batch
//! backend does the same, `plugin/pkg/audit/buffered/buffered.go`); `Block`
//! waits for room, which holds up the request and its worker thread.
//!
//! Records the output could not write (a full or failing disk) are counted
//! with the dropped ones: the drop count is every record that never got
//! out.
//!
//! When the last [`LogWriter`] clone is dropped, the thread writes what is
//! still queued and the drop waits for it: a clean exit loses nothing.

use std::{
    cell::Cell,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Condvar, Mutex, MutexGuard, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::metrics::QueueStats;

/// How long the writer lets records gather after writing a batch: a line
/// reaches the file at most this late. Each wake-up of the writer costs
/// the workers more than its system calls (it takes a core from one of
/// them): at 10 ms, Paddock with its logs used 2–3% more CPU per request.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(50);

/// How often, at most, the writer reports drops (never once per record,
/// kubernetes/kubernetes#61280).
const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// A stripe's buffer keeps at least this much capacity between batches,
/// and at most a quarter more than the batch just written: a steady load
/// fills it without growing it (each growth copies the stripe), while a
/// burst's memory is given back once a smaller batch follows.
const KEPT_CAPACITY: usize = 256 * 1024;

/// A worker's formatting buffer ([`LogWriter::send_with`]) keeps at most
/// this much capacity after a record.
const LINE_KEPT: usize = 64 * 1024;

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
pub trait Output: Send + 'static {
    /// Writes (or buffers) `records`: one or more whole records, as their
    /// producers formatted them, each ending with a newline. Returns the
    /// records lost: not written, now or from what was buffered before.
    fn write(&mut self, records: &[u8]) -> u64;
    /// Nothing is queued for now: push what is buffered to the OS. Returns
    /// the records lost, as [`write`](Self::write).
    fn flush(&mut self) -> u64;
    /// Records were dropped since the last call (`total` since the start);
    /// called at most every ten seconds, from the writer thread.
    fn dropped(&mut self, new: u64, total: u64) {
        let _ = (new, total);
    }
}

/// The sending end: cheap to clone, shared by every worker.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
    // Dropped after `shared`'s clone: the last clone of this closes the
    // queue and waits for the thread.
    _thread: Option<Arc<Closer>>,
}

impl std::fmt::Debug for LogWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogWriter")
            .field("stripes", &self.shared.stripes.len())
            .field("stripe_capacity", &self.shared.stripe_capacity)
            .field("on_full", &self.shared.on_full)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

struct Shared {
    stripes: Box<[Stripe]>,
    /// Records a stripe holds at most.
    stripe_capacity: usize,
    on_full: OnFull,
    dropped: AtomicU64,
    /// The writer found every stripe empty and waits to be woken.
    parked: AtomicBool,
    /// The last sender is gone: the writer ends once the stripes are empty.
    closed: AtomicBool,
    /// The writer waits on `wake` holding this. Taken after a stripe's
    /// lock is released, never while holding one.
    wake_lock: Mutex<()>,
    wake: Condvar,
}

/// One producer thread's share of the queue, on cache lines of its own.
#[repr(align(128))]
struct Stripe {
    queue: Mutex<Queue>,
    /// `Block` senders wait here for room.
    room: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Whole records, each ending with a newline.
    bytes: Vec<u8>,
    records: usize,
    /// Senders waiting for room.
    blocked: usize,
}

/// What [`LogWriter::stats`] hands out: the queue without its thread.
struct WriterStats(Arc<Shared>);

impl QueueStats for WriterStats {
    fn queued(&self) -> u64 {
        self.0.queued() as u64
    }

    fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// Joins the thread when the last sender goes.
struct Closer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.notify();
        for stripe in &*self.shared.stripes {
            let _queue = stripe.lock();
            stripe.room.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks but a failed allocation.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Stripe {
    /// The stripe's queue. A formatter that panicked left part of its
    /// record behind (and the lock poisoned): that part is cut off here,
    /// so the buffer holds whole records only.
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|poisoned| {
            let mut queue = poisoned.into_inner();
            let whole = queue.bytes.iter().rposition(|&b| b == b'\n');
            queue.bytes.truncate(whole.map_or(0, |end| end + 1));
            self.queue.clear_poison();
            queue
        })
    }
}

impl Shared {
    /// This thread's stripe: threads are numbered the first time they send
    /// a record (to any writer), so the workers, which send nearly all of
    /// them, get stripes of their own.
    fn stripe(&self) -> &Stripe {
        static THREADS: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static THREAD: usize = THREADS.fetch_add(1, Ordering::Relaxed);
        }
        let index = THREAD.with(|n| *n);
        &self.stripes[index % self.stripes.len()]
    }

    fn queued(&self) -> usize {
        self.stripes.iter().map(|s| s.lock().records).sum()
    }

    /// Wakes the writer. Never called holding a stripe's lock.
    fn notify(&self) {
        let _wake = lock(&self.wake_lock);
        self.wake.notify_one();
    }
}

impl LogWriter {
    /// Starts a thread named `name` writing to `output`, behind a queue of
    /// `capacity` records split evenly between its stripes (one per core):
    /// a thread can fill its stripe's share.
    pub fn start(
        name: &str,
        capacity: usize,
        on_full: OnFull,
        output: impl Output,
    ) -> std::io::Result<Self> {
        // One stripe per core: the workers' default number.
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mut writer = Self::new(capacity, on_full, cores);
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

    /// A queue of one stripe without a thread: nothing takes records out
    /// but [`drain`](Self::drain). For tests.
    #[cfg(test)]
    pub(crate) fn unstarted(capacity: usize, on_full: OnFull) -> Self {
        Self::new(capacity, on_full, 1)
    }

    /// A queue of `stripes` (at most `capacity`) without a thread.
    fn new(capacity: usize, on_full: OnFull, stripes: usize) -> Self {
        let stripes = stripes.clamp(1, capacity.max(1));
        Self {
            shared: Arc::new(Shared {
                stripes: (0..stripes)
                    .map(|_| Stripe {
                        queue: Mutex::default(),
                        room: Condvar::new(),
                    })
                    .collect(),
                stripe_capacity: capacity.max(1).div_ceil(stripes),
                on_full,
                dropped: AtomicU64::new(0),
                parked: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake_lock: Mutex::new(()),
                wake: Condvar::new(),
            }),
            _thread: None,
        }
    }

    /// Queues one record, which `format` appends to the buffer it is given
    /// (whole lines, each ending with a newline); with [`OnFull::Drop`],
    /// never waits. False when it was dropped (and counted).
    pub fn send_with(&self, format: impl FnOnce(&mut Vec<u8>)) -> bool {
        // Formatted in this thread's buffer, which stays in its core's
        // cache, and copied into the stripe in one piece. Formatted
        // straight into the stripe, whose buffer the writer thread took
        // away since (a fresh one, or one back from the disk), a record
        // stalled on every new cache line, under the stripe's lock.
        thread_local! {
            static LINE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let shared = &*self.shared;
        // No room: not formatted at all, so a dropped record costs the
        // worker nearly nothing when the writer falls behind.
        if shared.on_full == OnFull::Drop
            && shared.stripe().lock().records >= shared.stripe_capacity
        {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            format(line);
            let sent = self.send(line);
            // One large record (an audit event with its objects) does not
            // keep its memory on every thread that wrote one.
            if line.capacity() > LINE_KEPT {
                *line = Vec::new();
            }
            sent
        })
    }

    /// Queues `record` (whole lines, each ending with a newline).
    pub fn send(&self, record: &[u8]) -> bool {
        let shared = &*self.shared;
        let stripe = shared.stripe();
        let capacity = shared.stripe_capacity;
        let mut queue = stripe.lock();
        if queue.records >= capacity && shared.on_full == OnFull::Block {
            queue.blocked += 1;
            drop(queue);
            shared.notify();
            queue = stripe.lock();
            // The writer empties the stripe and signals `room` under its
            // lock, so it cannot signal between this check and the wait.
            while queue.records >= capacity && !shared.closed.load(Ordering::SeqCst) {
                queue = stripe
                    .room
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.blocked -= 1;
        }
        if queue.records >= capacity {
            drop(queue);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        queue.bytes.extend_from_slice(record);
        queue.records += 1;
        let records = queue.records;
        drop(queue);
        // Read after the record is in: a writer that parks after checking
        // this stripe set `parked` first, and is woken here.
        if (records == 1 && shared.parked.load(Ordering::SeqCst)) || records == capacity.div_ceil(2)
        {
            shared.notify();
        }
        true
    }

    /// Records dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The queue's depth and drops, for [`Metrics::queue`](super::metrics::Metrics::queue):
    /// reads them live without keeping the writer's thread running.
    pub fn stats(&self) -> impl QueueStats {
        WriterStats(self.shared.clone())
    }

    /// Records waiting to be written now.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }

    /// Takes every queued record out (what the writer thread does), as
    /// text.
    #[cfg(test)]
    pub(crate) fn drain(&self) -> String {
        let mut out = Vec::new();
        for stripe in &*self.shared.stripes {
            let mut queue = stripe.lock();
            out.append(&mut queue.bytes);
            queue.records = 0;
            stripe.room.notify_all();
        }
        String::from_utf8(out).expect("records are text")
    }
}

/// The writer thread: takes a batch, writes it, flushes, waits for the
/// next; ends when the last sender is gone and the queue is empty.
fn run(shared: &Shared, mut output: impl Output) {
    let mut batch = Vec::new();
    let mut wrote = false;
    let mut reported = 0;
    let mut last_report: Option<Instant> = None;
    loop {
        let wake = lock(&shared.wake_lock);
        if wrote && !shared.closed.load(Ordering::SeqCst) {
            // Let the next batch gather; a sender at half capacity wakes us.
            let _ = shared.wake.wait_timeout(wake, BATCH_INTERVAL);
        } else if !shared.closed.load(Ordering::SeqCst) {
            // Park. A sender that adds a record after we looked at its
            // stripe finds `parked` set, and needs `wake_lock` to wake us:
            // not before we wait.
            shared.parked.store(true, Ordering::SeqCst);
            if shared.queued() == 0 {
                let _ = shared.wake.wait_timeout(wake, REPORT_INTERVAL);
            }
            shared.parked.store(false, Ordering::Relaxed);
        } else {
            drop(wake);
        }
        // No sender is left once closed: this drain is the last if empty.
        let last = shared.closed.load(Ordering::SeqCst);
        wrote = false;
        for stripe in &*shared.stripes {
            let mut queue = stripe.lock();
            if queue.records == 0 {
                continue;
            }
            std::mem::swap(&mut batch, &mut queue.bytes);
            queue.records = 0;
            if queue.blocked > 0 {
                stripe.room.notify_all();
            }
            drop(queue);
            let lost = output.write(&batch);
            shared.dropped.fetch_add(lost, Ordering::Relaxed);
            let keep = kept_capacity(batch.len());
            batch.clear();
            batch.shrink_to(keep);
            wrote = true;
        }
        if wrote {
            let lost = output.flush();
            shared.dropped.fetch_add(lost, Ordering::Relaxed);
        }
        let total = shared.dropped.load(Ordering::Relaxed);
        if total != reported && last_report.is_none_or(|at| at.elapsed() >= REPORT_INTERVAL) {
            output.dropped(total - reported, total);
            reported = total;
            last_report = Some(Instant::now());
        }
        if last && !wrote {
            break;
        }
    }
    let total = shared.dropped.load(Ordering::Relaxed);
    if total != reported {
        output.dropped(total - reported, total);
    }
}

/// The lines in `bytes`: the records in a slice of whole records, each one
/// line (the access log's and the audit file's).
pub(crate) fn count_lines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

/// The capacity a buffer keeps after a batch of `written` bytes: see
/// [`KEPT_CAPACITY`].
fn kept_capacity(written: usize) -> usize {
    KEPT_CAPACITY.max(written + written / 4)
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

    /// Collects what it is given: lines, flushes, the drops reported.
    #[derive(Clone, Default)]
    struct Collect(Arc<StdMutex<(Vec<String>, usize, u64)>>);

    impl Output for Collect {
        fn write(&mut self, records: &[u8]) -> u64 {
            assert_eq!(records.last(), Some(&b'\n'), "whole records only");
            let text = std::str::from_utf8(records).unwrap();
            let mut collected = self.0.lock().unwrap();
            collected.0.extend(text.lines().map(str::to_owned));
            0
        }
        fn flush(&mut self) -> u64 {
            self.0.lock().unwrap().1 += 1;
            0
        }
        fn dropped(&mut self, _new: u64, total: u64) {
            self.0.lock().unwrap().2 = total;
        }
    }

    fn line(n: u32) -> Vec<u8> {
        format!("{n}\n").into_bytes()
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let writer = LogWriter::unstarted(2, OnFull::Drop);
        let sent: Vec<bool> = (0..5).map(|n| writer.send(&line(n))).collect();
        assert_eq!(sent, [true, true, false, false, false]);
        assert_eq!(writer.dropped(), 3);
        assert_eq!(writer.queued(), 2);
        assert_eq!(writer.drain(), "0\n1\n");
        // A clone shares the queue and the count.
        let clone = writer.clone();
        assert!(clone.send(&line(7)));
        assert_eq!(writer.queued(), 1);
    }

    /// Threads on different stripes each fill their own share of the
    /// capacity, and neither loses records to the other.
    #[test]
    fn threads_fill_stripes_of_their_own() {
        let writer = LogWriter::new(4, OnFull::Drop, 2);
        // Threads are numbered across the process: take two that landed on
        // different stripes.
        let mut sent = [None, None];
        while sent.iter().any(Option::is_none) {
            let writer = writer.clone();
            let (stripe, results) = std::thread::spawn(move || {
                let stripe = writer.shared.stripe() as *const Stripe as usize;
                let first = &writer.shared.stripes[0] as *const Stripe as usize;
                let index = usize::from(stripe != first);
                let results: Vec<bool> = if writer.shared.stripes[index].lock().records == 0 {
                    (0..3).map(|n| writer.send(&line(n))).collect()
                } else {
                    Vec::new()
                };
                (index, results)
            })
            .join()
            .unwrap();
            if !results.is_empty() {
                sent[stripe] = Some(results);
            }
        }
        assert_eq!(
            sent,
            [Some(vec![true, true, false]), Some(vec![true, true, false])]
        );
        assert_eq!(writer.queued(), 4);
        assert_eq!(writer.dropped(), 2);
    }

    /// Everything sent is written, each thread's records in order, by the
    /// time the last clone is dropped; senders on several threads, a
    /// small queue that blocks.
    #[test]
    fn dropping_the_last_clone_writes_everything_queued() {
        let out = Collect::default();
        let writer = LogWriter::start("test-writer", 8, OnFull::Block, out.clone()).unwrap();
        let threads: Vec<_> = (0..4u32)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        assert!(writer.send(&line(t * 1000 + n)));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(writer);
        let (written, flushes, _) = out.0.lock().unwrap().clone();
        let written: Vec<u32> = written.iter().map(|l| l.parse().unwrap()).collect();
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
            writer.send(&line(n));
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
        let dropped = (0..100).filter(|n| !writer.send(&line(*n))).count() as u64;
        assert_eq!(writer.dropped(), dropped);
        drop(writer);
        let (written, _, reported) = out.0.lock().unwrap().clone();
        assert_eq!(written.len() as u64 + dropped, 100);
        assert_eq!(reported, dropped);
    }

    /// A formatter that panics leaves no part of its record behind: the
    /// next record starts on a line of its own.
    #[test]
    fn a_panicking_formatter_leaves_whole_records() {
        let writer = LogWriter::unstarted(10, OnFull::Drop);
        assert!(writer.send(b"first\n"));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            writer.send_with(|buf| {
                buf.extend_from_slice(b"half a re");
                panic!("formatting failed");
            })
        }));
        assert!(panicked.is_err());
        assert!(writer.send(b"second\n"));
        assert_eq!(writer.queued(), 2);
        assert_eq!(writer.drain(), "first\nsecond\n");
    }

    /// A record whose formatting was refused (full queue) never runs its
    /// formatter: a dropped record costs the worker nothing.
    #[test]
    fn a_dropped_record_is_never_formatted() {
        let writer = LogWriter::unstarted(1, OnFull::Drop);
        assert!(writer.send_with(|buf| buf.extend_from_slice(b"kept\n")));
        assert!(!writer.send_with(|_| panic!("formatted a dropped record")));
        assert_eq!(writer.drain(), "kept\n");
    }

    /// A steady load's batches fit the buffer they are written into
    /// without growing it; a burst's capacity is kept only until a smaller
    /// batch follows.
    #[test]
    fn buffers_keep_what_the_last_batch_needed() {
        assert_eq!(kept_capacity(0), KEPT_CAPACITY);
        assert_eq!(kept_capacity(KEPT_CAPACITY / 2), KEPT_CAPACITY);
        let steady = 4 * KEPT_CAPACITY;
        assert!(kept_capacity(steady) >= steady);
        assert!(kept_capacity(steady) <= steady + steady / 4);
        assert_eq!(kept_capacity(1000), KEPT_CAPACITY, "a burst is given back");
    }
}
