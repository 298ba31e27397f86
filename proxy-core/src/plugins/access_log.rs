//! The access log: one line per request, never a credential, written off
//! the request path.
//!
//! The worker formats the line, in the same shape as Paddock's other log
//! lines (`tracing-subscriber`'s text or JSON format), into the log's
//! buffer (see [`LogWriter`]); the log's own thread writes batches of lines
//! to standard error. When that thread falls behind, lines are dropped and
//! counted ([`AccessLog::dropped`]), never a worker blocked.

use std::{
    io::{self, Write},
    time::{Duration, SystemTime},
};

use http::StatusCode;

use super::{
    json,
    writer::{self, LogWriter, OnFull, Output},
};
use crate::{
    context::RequestContext,
    plugin::{AccessRecord, Phases, Plugin},
};

/// Lines waiting to be written at most: about 8 MB; a disk or pipe that
/// cannot take them costs lines, not memory.
const QUEUE_CAPACITY: usize = 32 * 1024;

/// The line format, as `logging.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AccessLogFormat {
    /// `tracing-subscriber`'s text format (without colours).
    #[default]
    Text,
    /// `tracing-subscriber`'s JSON format, one object per line.
    Json,
}

/// Logs every finished request as one line of target `paddock::access`
/// at level `INFO`: method, path (no query), cluster, user, the
/// impersonated user when `--as` was used, decision, status, bytes,
/// duration. On when the `tracing` filter enables `paddock::access` at
/// `INFO` (the default `info` does; `warn` turns it off).
#[derive(Debug, Clone)]
pub struct AccessLog {
    writer: LogWriter,
    format: AccessLogFormat,
}

impl Default for AccessLog {
    /// Text lines to standard error.
    fn default() -> Self {
        Self::new(AccessLogFormat::Text)
    }
}

impl AccessLog {
    /// Lines in `format` to standard error.
    pub fn new(format: AccessLogFormat) -> Self {
        Self::with_output(format, io::stderr())
    }

    /// Lines in `format` to `out`. Panics when the writer thread cannot
    /// start (the system is out of threads).
    pub fn with_output(format: AccessLogFormat, out: impl Write + Send + 'static) -> Self {
        let writer = LogWriter::start("paddock-access", QUEUE_CAPACITY, OnFull::Drop, Lines(out))
            .expect("cannot start the access log's thread");
        Self { writer, format }
    }

    /// Lines dropped since the start: the writer could not keep up, or
    /// writing failed.
    pub fn dropped(&self) -> u64 {
        self.writer.dropped()
    }

    /// Lines waiting and lines dropped, read live without keeping the log
    /// open: for [`Metrics::queue`](super::metrics::Metrics::queue).
    pub fn queue_stats(&self) -> impl super::metrics::QueueStats {
        self.writer.stats()
    }
}

impl Plugin for AccessLog {
    fn name(&self) -> &'static str {
        "access-log"
    }

    fn phases(&self) -> Phases {
        Phases::LOG
    }

    fn on_log(&self, record: &AccessRecord<'_>) {
        if !tracing::enabled!(target: "paddock::access", tracing::Level::INFO) {
            return;
        }
        let line = Line {
            context: record.context,
            at: SystemTime::now(),
            status: record.status,
            bytes: record.bytes,
            complete: record.complete,
            duration: record.duration,
        };
        self.writer.send_with(|buf| match self.format {
            AccessLogFormat::Text => text(buf, &line),
            AccessLogFormat::Json => json(buf, &line),
        });
    }
}

/// What a line is made of.
struct Line<'a> {
    context: &'a RequestContext,
    at: SystemTime,
    status: StatusCode,
    bytes: u64,
    complete: bool,
    duration: Duration,
}

/// The writer thread's end: each batch of lines in one write.
struct Lines<W>(W);

impl<W: Write + Send + 'static> Output for Lines<W> {
    fn write(&mut self, lines: &[u8]) -> u64 {
        // Nowhere to report a failure to write the log itself but the
        // drop count; how much of the batch got out is unknown.
        match self.0.write_all(lines) {
            Ok(()) => 0,
            Err(_) => writer::count_lines(lines),
        }
    }

    fn flush(&mut self) -> u64 {
        let _ = self.0.flush();
        0
    }

    fn dropped(&mut self, new: u64, total: u64) {
        tracing::warn!(
            dropped = new,
            total,
            "access log lines dropped: the log cannot keep up"
        );
    }
}

/// The fields, as both formats name them.
struct Fields<'a> {
    user: &'a str,
    acting_as: &'a str,
    decision: &'a str,
    cluster: &'a str,
}

impl<'a> Fields<'a> {
    fn of(context: &'a RequestContext) -> Self {
        Self {
            user: context.identity().map_or("-", |i| i.user.as_str()),
            acting_as: context.impersonated().map_or("-", |i| i.user.as_str()),
            decision: match context.decision() {
                Some(d) if d.allowed => "allow",
                Some(_) => "deny",
                None => "-",
            },
            cluster: context.cluster().unwrap_or("-"),
        }
    }
}

/// `2026-12-01T16:23:17.123456Z  INFO paddock::access: request kind="access" ...`
fn text(buf: &mut Vec<u8>, line: &Line) {
    let context = line.context;
    let f = Fields::of(context);
    writer::push_timestamp(buf, line.at);
    buf.extend_from_slice(b"  INFO paddock::access: request kind=\"access\" request.id=");
    buf.extend_from_slice(context.id.as_bytes());
    buf.extend_from_slice(b" http.method=");
    buf.extend_from_slice(context.method.as_str().as_bytes());
    buf.extend_from_slice(b" http.path=");
    quoted_if_needed(buf, &context.path);
    for (name, value) in [
        (" cluster.id=", f.cluster),
        (" auth.user=", f.user),
        (" auth.acting_as=", f.acting_as),
        (" authz.decision=", f.decision),
    ] {
        buf.extend_from_slice(name.as_bytes());
        quoted(buf, value);
    }
    buf.extend_from_slice(b" http.status=");
    json::push_u64(buf, line.status.as_u16().into());
    buf.extend_from_slice(b" http.bytes=");
    json::push_u64(buf, line.bytes);
    buf.extend_from_slice(if line.complete {
        b" http.complete=true duration_ms="
    } else {
        b" http.complete=false duration_ms="
    });
    json::push_millis(buf, line.duration);
    buf.push(b'\n');
}

/// `{"timestamp":"...","level":"INFO","fields":{"message":"request",...},"target":"paddock::access"}`
fn json(buf: &mut Vec<u8>, line: &Line) {
    let context = line.context;
    let f = Fields::of(context);
    buf.extend_from_slice(b"{\"timestamp\":\"");
    writer::push_timestamp(buf, line.at);
    buf.extend_from_slice(
        b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"kind\":\"access\"",
    );
    for (name, value) in [
        ("request.id", context.id.as_str()),
        ("http.method", context.method.as_str()),
        ("http.path", context.path.as_str()),
        ("cluster.id", f.cluster),
        ("auth.user", f.user),
        ("auth.acting_as", f.acting_as),
        ("authz.decision", f.decision),
    ] {
        buf.extend_from_slice(b",\"");
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(b"\":");
        json::push_str(buf, value);
    }
    buf.extend_from_slice(b",\"http.status\":");
    json::push_u64(buf, line.status.as_u16().into());
    buf.extend_from_slice(b",\"http.bytes\":");
    json::push_u64(buf, line.bytes);
    buf.extend_from_slice(if line.complete {
        b",\"http.complete\":true,\"duration_ms\":"
    } else {
        b",\"http.complete\":false,\"duration_ms\":"
    });
    json::push_millis(buf, line.duration);
    buf.extend_from_slice(b"},\"target\":\"paddock::access\"}\n");
}

/// `value` in double quotes, escaped as Rust's `Debug` for `str` would
/// for anything a log reader could mistake for the end of the field.
fn quoted(buf: &mut Vec<u8>, value: &str) {
    buf.push(b'"');
    // Names and words: copied whole, not pushed a byte at a time.
    let special = |word| {
        json::has_less(word, 0x20)
            | json::has_byte(word, 0x7f)
            | json::has_byte(word, b'"')
            | json::has_byte(word, b'\\')
    };
    if !json::any_word(value.as_bytes(), special) {
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'"');
        return;
    }
    for &b in value.as_bytes() {
        match b {
            b'"' => buf.extend_from_slice(b"\\\""),
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            0..0x20 | 0x7f => {
                let _ = write!(buf, "\\u{{{b:x}}}");
            }
            _ => buf.push(b),
        }
    }
    buf.push(b'"');
}

/// A path as it is (a request target has no spaces or quotes), quoted
/// should one ever carry them.
fn quoted_if_needed(buf: &mut Vec<u8>, value: &str) {
    // Anything but visible ASCII other than `"` and `\`.
    let special = |word| {
        json::has_less(word, 0x21)
            | json::has_high(word)
            | json::has_byte(word, 0x7f)
            | json::has_byte(word, b'"')
            | json::has_byte(word, b'\\')
    };
    if !json::any_word(value.as_bytes(), special) {
        buf.extend_from_slice(value.as_bytes());
    } else {
        quoted(buf, value);
    }
}

#[cfg(test)]
mod tests;
