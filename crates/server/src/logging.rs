//! Structured logs with `tracing`, to stderr, as text or JSON lines.
//!
//! The filter comes from `CREDSTORE_LOG` (then `RUST_LOG`), default `info`.
//! Log lines carry methods, paths, statuses, latencies, request ids, store
//! ids and keys: never a header, a body, a credential value or a token.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. Calling it again is harmless.
pub fn init(format: LogFormat) {
    let filter = std::env::var("CREDSTORE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.with_target(false).with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}
