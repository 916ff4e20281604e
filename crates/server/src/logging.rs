//! Structured logs with `tracing`, to stderr, as text or JSON lines.
//!
//! The filter comes from `CREDSTORE_LOG` (then `RUST_LOG`), default `info`.
//! Log lines carry methods, paths, statuses, latencies, request ids, store
//! ids and keys: never a header, a body, a credential value or a token.
//!
//! Lines are formatted on the calling thread and handed to one background
//! thread that writes them to stderr ([`tracing_appender::non_blocking()`]),
//! so a request never waits on a write to stderr. No line is dropped: when
//! the writer falls more than [`BUFFERED_LINES`] lines behind, callers wait
//! for it. [`flush`] writes what is queued; the `credstore` binary calls it
//! before it exits.

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// How many formatted lines may wait for the writer thread before a caller
/// waits for it.
pub const BUFFERED_LINES: usize = 64 * 1024;

/// The writer thread's guard: dropping it writes every queued line.
static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the global subscriber and starts the writer thread. Calling it
/// again is harmless (the first subscriber stays).
pub fn init(format: LogFormat) {
    let filter = std::env::var("CREDSTORE_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let mut guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_some() {
        return;
    }
    let (writer, worker) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("credstore-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Text => builder.with_target(false).with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if installed.is_ok() {
        *guard = Some(worker);
    }
}

/// Writes every queued log line to stderr and stops the writer thread;
/// later log lines are not written. Call it once, just before the process
/// exits.
pub fn flush() {
    let worker = GUARD.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(worker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_is_idempotent_and_flush_stops_the_writer() {
        init(LogFormat::Text);
        let first = GUARD.lock().unwrap().is_some();
        init(LogFormat::Json);
        assert_eq!(GUARD.lock().unwrap().is_some(), first);
        tracing::info!("a line before the flush");
        flush();
        assert!(GUARD.lock().unwrap().is_none());
    }
}
