//! The process's log subscriber: `tracing-subscriber`'s text or JSON
//! lines on standard error, filtered by `RUST_LOG` or the configured level.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::{RecordFields, VisitOutput},
    fmt::{
        format::{DefaultVisitor, Writer},
        FormatFields,
    },
};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set, else `level`, else
/// `info`; colours only on a terminal.
pub(crate) fn init(level: Option<&str>, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level.unwrap_or("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.fmt_fields(TextFields).init(),
    }
}

/// Writes fields exactly as `tracing-subscriber`'s `DefaultFields`, but
/// `name=value` without colours goes straight to the writer. The fmt layer
/// formats every span's fields when the span is created, so this runs for
/// each request's span (`request.id`, `http.method`, `http.path`):
/// `DefaultFields` paints each name with an empty style even when colours
/// are off, which cost more than the rest of the span.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TextFields;

impl<'w> FormatFields<'w> for TextFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = TextVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// See [`TextFields`]: the plain cases here, the others (colours, the
/// message, errors, raw identifiers) handed to `DefaultVisitor`.
struct TextVisitor<'w> {
    writer: Writer<'w>,
    is_empty: bool,
    result: fmt::Result,
}

impl TextVisitor<'_> {
    fn with_default(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        if self.result.is_err() {
            return;
        }
        let mut default = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut default);
        self.result = default.finish();
        // `DefaultVisitor` writes something for every field but `log.*`,
        // which never reach it.
        self.is_empty = false;
    }
}

impl Visit for TextVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.with_default(|v| v.record_str(field, value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.with_default(|v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        // `log.*`: the metadata of a `log` record, already on the line.
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        if self.writer.has_ansi_escapes() || name == "message" || name.starts_with("r#") {
            self.with_default(|v| v.record_debug(field, value));
            return;
        }
        if !std::mem::take(&mut self.is_empty) {
            self.result = self.writer.write_char(' ');
        }
        self.result = self
            .result
            .and_then(|()| self.writer.write_str(name))
            .and_then(|()| self.writer.write_char('='))
            .and_then(|()| write!(self.writer, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use tracing_subscriber::fmt::{format::DefaultFields, MakeWriter};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Self;

        fn make_writer(&'a self) -> Self {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer failed")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Spans and events with every kind of field, through `fields`.
    fn lines<N>(fields: N, ansi: bool) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buffer.clone())
            .with_ansi(ansi)
            .without_time()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let id = String::from("0badcafe-000000000001");
            let method = http::Method::GET;
            let span = tracing::info_span!(
                "request",
                request.id = %id,
                http.method = %method,
                http.path = %"/api/v1/pods",
            );
            let _entered = span.enter();
            let inner = tracing::info_span!("inner", count = 3_u64, r#type = "a \"b\"");
            let _inner = inner.enter();
            tracing::warn!("plain message");
            tracing::warn!(
                a = 1_i64,
                b = true,
                c = 1.5_f64,
                s = "quoted \u{1b}[31m",
                d = ?Some("x"),
                e = %"shown",
                "message {} with fields",
                7
            );
            let error = Outer(io::Error::other("inner failed"));
            tracing::error!(
                error = &error as &(dyn std::error::Error + 'static),
                "with a source"
            );
            let alone = io::Error::other("alone");
            tracing::error!(
                error = &alone as &(dyn std::error::Error + 'static),
                after = 2_u64
            );
            tracing::info!(message = "only a str message");
            inner.record("count", 4_u64);
            tracing::info!(r#loop = "raw", "after a record");
        });
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn text_fields_write_what_default_fields_write() {
        for ansi in [false, true] {
            let ours = lines(TextFields, ansi);
            assert_eq!(ours, lines(DefaultFields::new(), ansi), "ansi: {ansi}");
            assert!(ours.lines().count() >= 6, "{ours}");
        }
        let plain = lines(TextFields, false);
        assert!(
            plain.contains(
                "request{request.id=0badcafe-000000000001 http.method=GET http.path=/api/v1/pods}"
            ),
            "{plain}"
        );
    }
}
