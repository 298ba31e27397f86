//! The process's log subscriber: `tracing-subscriber`'s text or JSON
//! lines on standard error, filtered by `RUST_LOG` or the configured level.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing_subscriber::{
    field::{RecordFields, VisitOutput},
    filter::{LevelFilter, ParseError, Targets},
    fmt::{
        format::{DefaultVisitor, Writer},
        FormatFields,
    },
    layer::SubscriberExt,
    util::SubscriberInitExt,
    Layer, Registry,
};

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` if set and valid, else
/// `level`, else `info`; colours only on a terminal.
pub(crate) fn init(level: Option<&str>, format: LogFormat) {
    use std::io::IsTerminal;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|var| parse_filter(&var).ok())
        .unwrap_or_else(|| {
            let level = level.unwrap_or("info");
            // The configured level was checked with the configuration; an
            // invalid one keeps its valid directives, as before.
            parse_filter(level)
                .unwrap_or_else(|_| Box::new(tracing_subscriber::EnvFilter::new(level)))
        });
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry.with(layer.json()).init(),
        LogFormat::Text => registry.with(layer.fmt_fields(TextFields)).init(),
    }
}

/// The filter a log filter string (`RUST_LOG`'s syntax) describes, or
/// `EnvFilter`'s error for it.
///
/// Without span directives (`[...]`, the usual `info` or
/// `paddock=debug,hyper=warn`) it is a [`Targets`]: the same decisions
/// for a fraction of the cost, since `EnvFilter` tracks span-scoped
/// directives on every span enter and exit, and each request enters its
/// span at every poll.
pub(crate) fn parse_filter(
    filter: &str,
) -> Result<Box<dyn Layer<Registry> + Send + Sync>, ParseError> {
    let env = tracing_subscriber::EnvFilter::try_new(filter)?;
    Ok(match static_targets(filter) {
        Some(targets) => Box::new(targets),
        None => Box::new(env),
    })
}

/// `filter` as `Targets` if each of its directives is a plain `level`,
/// `target` or `target=level` (read as `EnvFilter` reads them); `None`
/// for anything else (spans, fields, spaces), left to `EnvFilter`.
fn static_targets(filter: &str) -> Option<Targets> {
    let mut targets = Targets::new();
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | ':' | '_' | '.'))
    };
    for directive in filter.split(',').filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            Some((target, level)) => {
                if target.is_empty() || !plain(target) || !plain(level) {
                    return None;
                }
                // `EnvFilter` reads `target=` as every level.
                let level = match level {
                    "" => LevelFilter::TRACE,
                    level => level.parse().ok()?,
                };
                targets = targets.with_target(target, level);
            }
            None if !plain(directive) => return None,
            None => match directive.parse::<LevelFilter>() {
                Ok(level) => targets = targets.with_default(level),
                // A bare target enables every level for it.
                Err(_) => targets = targets.with_target(directive, LevelFilter::TRACE),
            },
        }
    }
    Some(targets)
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

    /// Records the target and level of every span and event it is shown.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let meta = attrs.metadata();
            let line = format!("span {} {}", meta.target(), meta.level());
            self.0.lock().unwrap().push(line);
        }

        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let meta = event.metadata();
            let line = format!("event {} {}", meta.target(), meta.level());
            self.0.lock().unwrap().push(line);
        }
    }

    /// What passes `filter`, of a span and an event at each level for a few
    /// targets.
    fn passed(filter: Box<dyn Layer<Registry> + Send + Sync>) -> Vec<String> {
        macro_rules! at_every_level {
            ($($target:literal),*) => {$(
                tracing::trace_span!(target: $target, "s").in_scope(|| tracing::trace!(target: $target, "e"));
                tracing::debug_span!(target: $target, "s").in_scope(|| tracing::debug!(target: $target, "e"));
                tracing::info_span!(target: $target, "s").in_scope(|| tracing::info!(target: $target, "e"));
                tracing::warn_span!(target: $target, "s").in_scope(|| tracing::warn!(target: $target, "e"));
                tracing::error_span!(target: $target, "s").in_scope(|| tracing::error!(target: $target, "e"));
            )*};
        }
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            at_every_level!(
                "paddock",
                "paddock::serve",
                "paddock::access",
                "paddock_core::upstream",
                "hyper",
                "hyper::proto::h1",
                "h2",
                "rustls"
            );
        });
        let seen = seen.0.lock().unwrap().clone();
        seen
    }

    #[test]
    fn targets_filter_as_env_filter_does() {
        for filter in [
            "info",
            "WARN",
            "3",
            "off",
            "",
            "paddock=debug,hyper=warn",
            "paddock::serve=info,warn",
            "debug,hyper=off,h2=error",
            "paddock",
            "hyper=,info",
            "paddock=debug,paddock=error",
            "paddock_core=trace,paddock=info,error,",
            "paddock::access=off,paddock=trace,rustls=5",
        ] {
            let targets = static_targets(filter).unwrap_or_else(|| panic!("{filter:?}"));
            let env = tracing_subscriber::EnvFilter::try_new(filter).unwrap();
            let ours = passed(Box::new(targets));
            assert_eq!(ours, passed(Box::new(env)), "{filter:?}");
            assert!(parse_filter(filter).is_ok(), "{filter:?}");
        }
        // The comparison compares something: some pass, some do not.
        let some = passed(Box::new(
            static_targets("paddock=debug,hyper=warn").unwrap(),
        ));
        assert!(
            some.contains(&"event paddock::serve DEBUG".to_owned()),
            "{some:?}"
        );
        assert!(!some.contains(&"event hyper INFO".to_owned()), "{some:?}");
    }

    #[test]
    fn span_directives_and_odd_spellings_stay_with_env_filter() {
        for filter in [
            "paddock[request]=debug",
            "[{request.id}]=trace",
            "paddock =debug",
            " info",
        ] {
            assert!(static_targets(filter).is_none(), "{filter:?}");
            assert!(parse_filter(filter).is_ok(), "{filter:?}");
        }
        for filter in ["[[[", "paddock=loud", "a=b=c"] {
            let ours = parse_filter(filter)
                .err()
                .unwrap_or_else(|| panic!("{filter:?}"));
            let env = tracing_subscriber::EnvFilter::try_new(filter).unwrap_err();
            assert_eq!(ours.to_string(), env.to_string(), "{filter:?}");
        }
    }
}
