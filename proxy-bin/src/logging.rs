//! The process's log subscriber: `tracing-subscriber`'s text or JSON
//! lines on standard error, filtered by `RUST_LOG` or the configured level.
//!
//! An event logged while a request is served shows the request's scope
//! (`request{request.id=… http.method=… http.path=…}`, or its `span` and
//! `spans` in JSON) as if its `request` span were entered: that span is at
//! `debug` level, so that a request that logs nothing costs nothing here
//! (see [`proxy_core::context::with_request_span`]).

use std::fmt;

use nu_ansi_term::{Color, Style};
use proxy_core::context::with_request_span;
use serde::ser::{SerializeMap, Serializer as _};
use tracing::{
    field::{Field, Visit},
    span::Attributes,
    Event, Level, Subscriber,
};
use tracing_subscriber::{
    field::{RecordFields, VisitOutput},
    filter::{LevelFilter, ParseError, Targets},
    fmt::{
        format::{DefaultVisitor, Format, Full, Json, JsonFields, Writer},
        time::{FormatTime, SystemTime},
        FmtContext, FormatEvent, FormatFields, FormattedFields,
    },
    layer::SubscriberExt,
    registry::LookupSpan,
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
        LogFormat::Json => registry
            .with(layer.json().event_format(JsonEvents::new(SystemTime)))
            .init(),
        LogFormat::Text => registry
            .with(
                layer
                    .event_format(TextEvents::new(SystemTime))
                    .fmt_fields(TextFields),
            )
            .init(),
    }
}

/// Calls `f` with the attributes of the `request` span of the request
/// being served, when the event `ctx` formats is logged in one and that
/// span is not in its scope (enabled, it shows itself).
fn request_scope<S, N, R>(
    ctx: &FmtContext<'_, S, N>,
    f: impl FnOnce(&Attributes<'_>) -> R,
) -> Option<R>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    with_request_span(|request| {
        let callsite = request.metadata().callsite();
        let entered = ctx
            .event_scope()
            .is_some_and(|mut scope| scope.any(|span| span.metadata().callsite() == callsite));
        (!entered).then(|| f(request))
    })
    .flatten()
}

/// `tracing-subscriber`'s full text format (timestamp, level, scope,
/// target, fields), with the scope of the request being served first.
struct TextEvents<T> {
    /// Timestamps, if shown.
    timer: Option<T>,
    /// The whole line, outside requests.
    full: Format<Full, T>,
    /// What follows the level.
    rest: Format<Full, ()>,
}

impl<T: FormatTime + Clone> TextEvents<T> {
    fn new(timer: T) -> Self {
        Self {
            timer: Some(timer.clone()),
            full: Format::default().with_timer(timer),
            rest: Format::default().without_time().with_level(false),
        }
    }
}

impl<S, N, T> FormatEvent<S, N> for TextEvents<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let request = request_scope(ctx, |request| {
            // What `Format<Full>` writes before and for a span.
            let ansi = writer.has_ansi_escapes();
            let style = |style: Style| if ansi { style } else { Style::new() };
            if let Some(timer) = &self.timer {
                let dimmed = style(Style::new().dimmed());
                write!(writer, "{}", dimmed.prefix())?;
                if timer.format_time(&mut writer).is_err() {
                    writer.write_str("<unknown time>")?;
                }
                write!(writer, "{} ", dimmed.suffix())?;
            }
            let (level, color) = match *event.metadata().level() {
                Level::TRACE => ("TRACE", Color::Purple),
                Level::DEBUG => ("DEBUG", Color::Blue),
                Level::INFO => (" INFO", Color::Green),
                Level::WARN => (" WARN", Color::Yellow),
                Level::ERROR => ("ERROR", Color::Red),
            };
            write!(writer, "{} ", style(color.normal()).paint(level))?;
            let bold = style(Style::new().bold());
            write!(
                writer,
                "{}{}",
                bold.paint(request.metadata().name()),
                bold.paint("{")
            )?;
            ctx.field_format().format_fields(writer.by_ref(), request)?;
            write!(
                writer,
                "{}{}",
                bold.paint("}"),
                style(Style::new().dimmed()).paint(":")
            )?;
            // The spans entered inside the request follow with theirs.
            if ctx.event_scope().is_none() {
                writer.write_char(' ')?;
            }
            self.rest.format_event(ctx, writer.by_ref(), event)
        });
        request.unwrap_or_else(|| self.full.format_event(ctx, writer, event))
    }
}

/// `tracing-subscriber`'s JSON format, with the request being served as
/// the root of `spans` (and as `span` if no other is entered).
struct JsonEvents<T> {
    /// The whole line, outside requests.
    full: Format<Json, T>,
    /// The line without `span` and `spans`.
    rest: Format<Json, T>,
}

impl<T: FormatTime + Clone> JsonEvents<T> {
    fn new(timer: T) -> Self {
        let full = Format::default().json().with_timer(timer);
        Self {
            rest: full.clone().with_current_span(false).with_span_list(false),
            full,
        }
    }
}

impl<S, T> FormatEvent<S, JsonFields> for JsonEvents<T>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    T: FormatTime,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let request = request_scope(ctx, |request| {
            let mut fields = FormattedFields::<JsonFields>::new(String::new());
            ctx.field_format()
                .format_fields(fields.as_writer(), request)?;
            let request = json_span(&fields, request.metadata().name())?;
            let mut line = String::new();
            self.rest.format_event(ctx, Writer::new(&mut line), event)?;
            let line = line.strip_suffix("}\n").ok_or(fmt::Error)?;
            // Where `Format<Json>` takes them from.
            let current = event
                .parent()
                .and_then(|id| ctx.span(id))
                .or_else(|| ctx.lookup_current());
            let span = match &current {
                Some(span) => span_json(span)?,
                None => request.clone(),
            };
            write!(writer, "{line},\"span\":{span},\"spans\":[{request}")?;
            if let Some(leaf) = ctx.lookup_current() {
                for span in leaf.scope().from_root() {
                    write!(writer, ",{}", span_json(&span)?)?;
                }
            }
            writer.write_str("]}\n")
        });
        request.unwrap_or_else(|| self.full.format_event(ctx, writer, event))
    }
}

/// A span as `Format<Json>` writes it: its recorded fields, then its name.
fn span_json<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Result<String, fmt::Error>
where
    S: for<'a> LookupSpan<'a>,
{
    let extensions = span.extensions();
    let fields = extensions
        .get::<FormattedFields<JsonFields>>()
        .ok_or(fmt::Error)?;
    json_span(fields, span.metadata().name())
}

/// `fields` (a JSON object) with `name` last, as `Format<Json>` writes a
/// span: parsed and written again.
fn json_span(fields: &str, name: &str) -> Result<String, fmt::Error> {
    let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(fields) else {
        return Err(fmt::Error);
    };
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    let mut map = serializer.serialize_map(None).map_err(|_| fmt::Error)?;
    for (key, value) in &fields {
        map.serialize_entry(key, value).map_err(|_| fmt::Error)?;
    }
    map.serialize_entry("name", name).map_err(|_| fmt::Error)?;
    map.end().map_err(|_| fmt::Error)?;
    String::from_utf8(out).map_err(|_| fmt::Error)
}

/// The filter a log filter string (`RUST_LOG`'s syntax) describes, or
/// `EnvFilter`'s error for it.
///
/// Without span directives (`[...]`, the usual `info` or
/// `paddock=debug,hyper=warn`) it is a [`Targets`]: the same decisions
/// for a fraction of the cost, since `EnvFilter` tracks span-scoped
/// directives on every span enter and exit, and a request enters its
/// span (when enabled) at every poll.
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
/// `name=value` without colours goes straight to the writer: it writes
/// every event's fields, every enabled span's when the span is created,
/// and the request's scope ([`TextEvents`]); `DefaultFields` paints each
/// name with an empty style even when colours are off, which cost more
/// than the rest of a span.
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

    /// Logs a few events in a request, one in a span of its own: in the
    /// request's real span if `span`, else only in the scope the trace
    /// layer gives its future, for the formatter to show.
    fn log_in_request(subscriber: impl tracing::Subscriber + Send + Sync + 'static, span: bool) {
        let context = Arc::new(proxy_core::context::RequestContext::new(
            "0badcafe-000000000001".to_owned(),
            http::Method::GET,
            "/api/v1/pods".to_owned(),
            None,
        ));
        let events = || {
            tracing::warn!("plain message");
            let inner = tracing::info_span!("inner", count = 3_u64);
            inner.in_scope(|| tracing::info!(a = 1_i64, s = "quoted \"x\"", "in a span"));
            tracing::error!(b = true, "after the span");
        };
        tracing::subscriber::with_default(subscriber, || {
            if span {
                tracing::info_span!(
                    "request",
                    request.id = %context.id,
                    http.method = %context.method,
                    http.path = %context.path,
                )
                .in_scope(events);
            } else {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                runtime.block_on(proxy_core::bench::in_request_scope(
                    context.clone(),
                    async { events() },
                ));
                // Outside the request, no request.
                tracing::info!("after the request");
            }
        });
    }

    /// The text lines of [`log_in_request`].
    fn text_lines(ansi: bool, span: bool) -> String {
        let buffer = Buffer::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buffer.clone())
            .with_ansi(ansi)
            .fmt_fields(TextFields);
        if span {
            let layer = layer.event_format(Format::default().with_timer(()));
            log_in_request(tracing_subscriber::registry().with(layer), span);
        } else {
            let layer = layer.event_format(TextEvents::new(()));
            log_in_request(tracing_subscriber::registry().with(layer), span);
        }
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// The JSON lines of [`log_in_request`].
    fn json_lines(span: bool) -> String {
        let buffer = Buffer::default();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(buffer.clone())
            .json();
        if span {
            let layer = layer.event_format(Format::default().json().with_timer(()));
            log_in_request(tracing_subscriber::registry().with(layer), span);
        } else {
            let layer = layer.event_format(JsonEvents::new(()));
            log_in_request(tracing_subscriber::registry().with(layer), span);
        }
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    /// `lines` without the last, which must be `last`, outside a request.
    fn but_last<'a>(lines: &'a str, last: &str) -> &'a str {
        let (rest, end) = lines.trim_end().rsplit_once('\n').unwrap();
        assert!(end.contains(last), "{end}");
        assert!(!end.contains("request{"), "{end}");
        assert!(!end.contains("\"span\""), "{end}");
        &lines[..rest.len() + 1]
    }

    #[test]
    fn text_lines_in_a_request_show_it_as_its_span_would() {
        for ansi in [false, true] {
            let ours = text_lines(ansi, false);
            let span = text_lines(ansi, true);
            assert_eq!(but_last(&ours, "after the request"), span, "ansi: {ansi}");
            assert_eq!(span.lines().count(), 3, "{span}");
        }
        let plain = text_lines(false, false);
        let scope =
            "request{request.id=0badcafe-000000000001 http.method=GET http.path=/api/v1/pods}";
        assert!(
            plain.contains(&format!(
                " WARN {scope}: paddock::logging::tests: plain message"
            )),
            "{plain}"
        );
        assert!(
            plain.contains(&format!(" INFO {scope}:inner{{count=3}}: ")),
            "{plain}"
        );
    }

    #[test]
    fn json_lines_in_a_request_show_it_as_its_span_would() {
        let ours = json_lines(false);
        let span = json_lines(true);
        assert_eq!(but_last(&ours, "after the request"), span);
        assert_eq!(span.lines().count(), 3, "{span}");
        let request = r#"{"http.method":"GET","http.path":"/api/v1/pods","request.id":"0badcafe-000000000001","name":"request"}"#;
        let first = ours.lines().next().unwrap();
        assert!(
            first.ends_with(&format!(r#","span":{request},"spans":[{request}]}}"#)),
            "{first}"
        );
        assert!(
            ours.contains(&format!(
                r#""spans":[{request},{{"count":3,"name":"inner"}}]"#
            )),
            "{ours}"
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
