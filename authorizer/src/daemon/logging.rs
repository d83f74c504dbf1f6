//! The daemon's log: to stderr, human-readable text or one JSON object per line
//! (`log_format`), at `info` unless `AUTHORIZER_LOG` gives a filter (`debug`,
//! `authorizer=debug`, ... in the syntax of `tracing_subscriber::EnvFilter`).
//!
//! Must never: receive a PAN (the code logs [`crate::link::translate::MaskedPan`] only), track
//! data, a PIN block, a key or a PIN; nothing here can filter them out, so nothing may log them.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// The environment variable of the log filter (not a secret; the level only).
pub const FILTER_ENV: &str = "AUTHORIZER_LOG";

/// Installs the global subscriber. Call once, before the first log line.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env(FILTER_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        // Colours only for a person at a terminal: never in journald or a log file.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .init(),
    }
}
