//! Structured logs with `tracing`, to stderr, as text or JSON lines.
//!
//! The filter comes from `CREDSTORE_LOG` (then `RUST_LOG`), default `info`.
//! Log lines carry methods, paths, statuses, latencies, request ids, store
//! ids and keys: never a header, a body, a credential value or a token.
//!
//! Lines are formatted on the calling thread and appended to a shared
//! buffer; one background thread writes that buffer to stderr in batches
//! (at most [`LINGER`] after the first line of a batch, or at once when
//! [`BATCH_BYTES`] are waiting), so a request never waits on a write to
//! stderr and a busy server makes one `write` per batch, not one per line.
//! No line is dropped: when more than [`BUFFERED_BYTES`] are waiting,
//! callers wait for the writer. [`flush`] writes what is queued; the
//! `credstore` binary calls it before it exits.
//!
//! (`tracing-appender`'s non-blocking writer, used before, hands each line
//! to its thread through a channel and wakes it for every line; under load
//! that cost more than the formatting. This writer batches instead.)

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::LogFormat;

/// How many bytes of formatted lines may wait for the writer thread before
/// a caller waits for it.
pub const BUFFERED_BYTES: usize = 8 * 1024 * 1024;

/// Waiting bytes past which the writer writes at once instead of lingering.
pub const BATCH_BYTES: usize = 64 * 1024;

/// How long the writer waits, after the first line of a batch, for more.
pub const LINGER: Duration = Duration::from_millis(5);

#[derive(Default)]
struct Queue {
    /// Lines not yet handed to the writer.
    buf: Vec<u8>,
    /// The writer sleeps until a first line arrives (a caller must wake it).
    writer_idle: bool,
    /// The writer lingers for more lines (a caller wakes it at
    /// [`BATCH_BYTES`]).
    writer_lingering: bool,
    /// Callers wait for room.
    callers_waiting: bool,
    /// [`flush`] was called: write what is queued and stop.
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes callers waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends one formatted line (or several), waking the writer only when
    /// it sleeps or a batch is full.
    fn push(&self, bytes: &[u8]) {
        let mut q = self.lock();
        while q.buf.len() >= BUFFERED_BYTES && !q.closed {
            q.callers_waiting = true;
            self.work.notify_one();
            q = self.room.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if q.closed {
            // After [`flush`]: the process is exiting; the line is not written.
            return;
        }
        let before = q.buf.len();
        q.buf.extend_from_slice(bytes);
        let wake = (q.writer_idle && before == 0)
            || (q.writer_lingering && before < BATCH_BYTES && q.buf.len() >= BATCH_BYTES);
        if wake {
            q.writer_idle = false;
            q.writer_lingering = false;
            drop(q);
            self.work.notify_one();
        }
    }

    /// The writer thread: takes the queued bytes in batches and writes them.
    fn run(&self, out: &mut dyn Write) {
        let mut spare = Vec::new();
        let mut q = self.lock();
        loop {
            if q.buf.is_empty() {
                if q.closed {
                    return;
                }
                q.writer_idle = true;
                q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                q.writer_idle = false;
                continue;
            }
            if q.buf.len() < BATCH_BYTES && !q.closed && !q.callers_waiting {
                q.writer_lingering = true;
                q = self.work.wait_timeout(q, LINGER).unwrap_or_else(|e| e.into_inner()).0;
                q.writer_lingering = false;
            }
            spare.clear();
            std::mem::swap(&mut q.buf, &mut spare);
            if std::mem::take(&mut q.callers_waiting) {
                self.room.notify_all();
            }
            drop(q);
            // Nowhere to report a failed write to stderr; the batch is lost.
            let _ = out.write_all(&spare);
            let _ = out.flush();
            // Keep the buffer's capacity, but not a burst's worth forever.
            if spare.capacity() > 4 * BATCH_BYTES {
                spare = Vec::new();
            }
            q = self.lock();
        }
    }
}

/// The [`MakeWriter`] of the subscriber: every line goes to the queue.
#[derive(Clone)]
struct QueueWriter(Arc<Shared>);

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for QueueWriter {
    type Writer = QueueWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The writer thread and its queue.
struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts a writer thread writing the queued lines to `out`.
fn start(out: impl Write + Send + 'static) -> std::io::Result<(QueueWriter, Worker)> {
    let shared =
        Arc::new(Shared { queue: Mutex::new(Queue::default()), work: Condvar::new(), room: Condvar::new() });
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new().name("credstore-log".into()).spawn(move || {
        let mut out = out;
        for_thread.run(&mut out);
    })?;
    Ok((QueueWriter(shared.clone()), Worker { shared, thread: Some(thread) }))
}

/// The writer thread's handle: dropping it writes every queued line.
static GUARD: Mutex<Option<Worker>> = Mutex::new(None);

/// The filter of [`init`]: the first of `CREDSTORE_LOG` and `RUST_LOG`
/// that is a valid filter, else `info`.
///
/// A filter of targets and levels only (`info`, `credstore_sqlite=debug,warn`)
/// becomes a [`Targets`] filter, which decides from the callsite alone. Only a
/// filter that needs [`EnvFilter`] (span or field directives such as
/// `[request{path=/healthz}]=debug`) gets one: `EnvFilter` takes a shared
/// lock each time a span is entered or exited, which every request does
/// with its `request` span on each poll.
#[cfg(test)]
fn filter(credstore_log: Option<String>, rust_log: Option<String>) -> (Option<Targets>, Option<EnvFilter>) {
    filter_or(credstore_log, rust_log, "info")
}

/// [`filter`] with `default` when neither variable holds a filter.
fn filter_or(
    credstore_log: Option<String>,
    rust_log: Option<String>,
    default: &str,
) -> (Option<Targets>, Option<EnvFilter>) {
    let spec = [credstore_log, rust_log]
        .into_iter()
        .flatten()
        .find(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| default.to_owned());
    match spec.parse::<Targets>() {
        Ok(targets) => (Some(targets), None),
        Err(_) => (None, Some(EnvFilter::new(spec))),
    }
}

/// The formatting layer of `format`, writing with `writer`.
fn format_layer<W>(format: LogFormat, writer: W) -> Box<dyn Layer<Registry> + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Json => layer.json().flatten_event(true).with_current_span(true).boxed(),
        LogFormat::Text => layer.with_target(false).with_ansi(std::io::stderr().is_terminal()).boxed(),
    }
}

/// Installs the global subscriber and starts the writer thread. Calling it
/// again is harmless (the first subscriber stays).
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// [`init`] with the filter `default` when `CREDSTORE_LOG` and `RUST_LOG`
/// hold none: the data commands (`get`, `set`, `ls`, `rm`, `run`) log
/// warnings and errors only, so a script's stderr holds what went wrong.
pub fn init_with_default(format: LogFormat, default: &str) {
    let mut guard = GUARD.lock().unwrap_or_else(|e| e.into_inner());
    if guard.is_some() {
        return;
    }
    let (targets, env) =
        filter_or(std::env::var("CREDSTORE_LOG").ok(), std::env::var("RUST_LOG").ok(), default);
    let (layer, worker) = match start(std::io::stderr()) {
        Ok((writer, worker)) => (format_layer(format, writer), Some(worker)),
        // No thread for the writer: log straight to stderr.
        Err(_) => (format_layer(format, std::io::stderr), None),
    };
    let installed = tracing_subscriber::registry().with(layer).with(targets).with(env).try_init();
    if installed.is_ok() {
        *guard = worker;
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
    fn plain_filters_are_targets_and_span_filters_stay_env_filters() {
        let (t, e) = filter(None, None);
        assert_eq!(t.unwrap().to_string(), "info");
        assert!(e.is_none());
        let (t, e) = filter(Some("credstore_sqlite=debug,warn".into()), Some("trace".into()));
        assert!(e.is_none());
        let t = t.unwrap();
        assert!(t.would_enable("credstore_sqlite::store", &tracing::Level::DEBUG));
        assert!(!t.would_enable("hyper", &tracing::Level::INFO));
        // An invalid CREDSTORE_LOG falls through to RUST_LOG.
        let (t, _) = filter(Some("=[bad".into()), Some("debug".into()));
        assert!(t.unwrap().would_enable("anything", &tracing::Level::DEBUG));
        let (t, e) = filter(Some("[request{path=/healthz}]=debug,info".into()), None);
        assert!(t.is_none());
        assert!(e.unwrap().to_string().contains("request"));
        let (t, _) = filter(Some("off".into()), None);
        assert!(!t.unwrap().would_enable("credstore", &tracing::Level::ERROR));
    }

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

    /// A writer that keeps what it is given, and counts its writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut s = self.0.lock().unwrap();
            s.0.extend_from_slice(buf);
            s.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_in_order_in_few_writes() {
        let sink = Sink::default();
        let (writer, worker) = start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(worker);
        let (bytes, writes) = std::mem::take(&mut *sink.0.lock().unwrap());
        let text = String::from_utf8(bytes).unwrap();
        assert_eq!(text.lines().count(), 80_000, "no line lost");
        for t in 0..4 {
            let prefix = format!("thread {t} line ");
            let mine: Vec<usize> =
                text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(|n| n.parse().unwrap()).collect();
            assert_eq!(mine, (0..20_000).collect::<Vec<_>>(), "thread {t}'s lines whole and in order");
        }
        assert!(writes < 80_000 / 10, "lines are batched: {writes} writes");
        // After the worker stopped, lines are dropped, never block.
        let mut w = writer;
        w.write_all(b"late\n").unwrap();
    }

    #[test]
    fn a_full_queue_makes_callers_wait_not_drop() {
        /// A slow writer: the queue fills up.
        struct Slow(Sink);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(Duration::from_millis(20));
                self.0.write(buf)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Sink::default();
        let (mut writer, worker) = start(Slow(sink.clone())).unwrap();
        let line = vec![b'x'; 1023];
        let lines = 3 * BUFFERED_BYTES / 1024;
        for _ in 0..lines {
            writer.write_all(&line).unwrap();
            writer.write_all(b"\n").unwrap();
        }
        drop(worker);
        let total = sink.0.lock().unwrap().0.len();
        assert_eq!(total, lines * 1024, "every byte written");
    }
}
