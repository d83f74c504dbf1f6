//! The daemon's log: to stderr, human-readable text or one JSON object per line
//! (`log_format`), at `info` unless `AUTHORIZER_LOG` gives a filter (`debug`,
//! `authorizer=debug`, ... in the syntax of `tracing_subscriber::EnvFilter`). Every JSON line
//! starts with the `instance` (the configuration's `instance_id`), so that lines of several
//! instances on one host, or in one log store, can be told apart.
//!
//! Must never: receive a PAN (the code logs [`crate::link::translate::MaskedPan`] only), track
//! data, a PIN block, a key or a PIN; nothing here can filter them out, so nothing may log them.

use std::fmt;
use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// The environment variable of the log filter (not a secret; the level only).
pub const FILTER_ENV: &str = "AUTHORIZER_LOG";

/// Installs the global subscriber. Call once, before the first log line. `instance`: the
/// `instance_id`, first field of every JSON line.
pub fn init(format: LogFormat, instance: &str) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        // Colours only for a person at a terminal: never in journald or a log file.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false);
            builder
                .json()
                .event_format(WithInstance {
                    inner: json,
                    // `instance_id` is printable ASCII; serde_json quotes and escapes it.
                    prefix: format!(
                        "{{\"instance\":{},",
                        serde_json::to_string(instance).unwrap_or_else(|_| "\"?\"".into())
                    ),
                })
                .init()
        }
    }
}

/// A JSON event format with `"instance":"…"` as the first field of every object.
struct WithInstance<F> {
    inner: F,
    /// `{"instance":"auth-a",`: replaces the object's opening brace.
    prefix: String,
}

impl<S, N, F> FormatEvent<S, N> for WithInstance<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(256);
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                writer.write_str(&self.prefix)?;
                writer.write_str(rest)
            }
            None => writer.write_str(&line),
        }
    }
}
