//! The listeners: accepting connections, TLS, HTTP/1.1 and HTTP/2 on one
//! port, and the bounds that keep a client from holding the server.
//!
//! | bound | setting | default |
//! | --- | --- | --- |
//! | accepted to a complete request head, TLS handshake included | `header_read_timeout_ms` | 10 s |
//! | kept-alive HTTP/1.1 connection waiting for its next request head | `header_read_timeout_ms` | 10 s |
//! | HTTP/2 connection with no request in flight | `idle_timeout_ms` | 60 s |
//! | open connections on the API listener | `max_connections` | 10,000, and below the open-file limit |
//! | open connections on the metrics listener | — | [`METRICS_MAX_CONNECTIONS`] |
//! | concurrent streams of one HTTP/2 connection | `http2_max_concurrent_streams` | 100 |
//!
//! A connection that sends half a request head (or half a TLS handshake,
//! or nothing) is closed when `header_read_timeout` has passed since it was
//! accepted. A request in flight is bounded by the request timeout, not by
//! these.
//!
//! # The connection cap
//! At `max_connections` open connections the listener stops accepting:
//! further connections wait in the kernel's listen queue (up to its
//! backlog, then the kernel refuses them) and are accepted, in order, as
//! open ones close. The cap is lowered at start to stay below the soft
//! open-file limit ([`connection_cap`]), which the `credstore` binary first
//! raises to the hard limit ([`raise_open_file_limit`]); both are logged.
//!
//! # HTTP/2
//! Besides the stream cap, hyper's defaults bound what a client can make
//! the server hold: at most 20 streams reset by the client before the
//! server saw them (the "rapid reset" pattern), 1,024 streams reset for
//! errors, 16 KiB of header list per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// The most connections the separate metrics listener holds at once.
pub const METRICS_MAX_CONNECTIONS: usize = 32;

/// Open files kept free of connections: `max(RESERVED_FILES, limit / 8)`
/// (store files and sockets, the audit log, the listeners).
pub const RESERVED_FILES: u64 = 64;

/// How long a connection closed for being idle may take to finish its
/// goodbye (an HTTP/2 GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The bounds of one listener's connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accepted (or from the previous answer on a kept-alive HTTP/1.1
    /// connection) to a complete request head, TLS handshake included.
    pub header_read_timeout: Duration,
    /// An HTTP/2 connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// The most concurrent streams of one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
}

/// The soft open-file limit after raising it, when it was changed: raises
/// the soft `RLIMIT_NOFILE` to the hard limit. `Ok(None)` when it already
/// was there.
///
/// # Errors
/// The limit cannot be read or set.
#[cfg(unix)]
pub fn raise_open_file_limit() -> std::io::Result<Option<(u64, u64)>> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    if soft >= hard {
        return Ok(None);
    }
    let raised = rlimit::increase_nofile_limit(hard)?;
    Ok((raised != soft).then_some((soft, raised)))
}

/// The soft open-file limit of the process, when it has one.
pub fn open_file_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        rlimit::getrlimit(rlimit::Resource::NOFILE)
            .ok()
            .map(|(soft, _)| soft)
            .filter(|&s| s != rlimit::INFINITY)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The connection cap of the API listener: `configured`, lowered to leave
/// `max(RESERVED_FILES, limit / 8)` open files and the metrics listener's
/// connections free under the open-file limit `limit` (at least 1).
pub fn connection_cap(configured: usize, limit: Option<u64>) -> usize {
    let Some(limit) = limit else { return configured };
    let reserved = RESERVED_FILES.max(limit / 8) + METRICS_MAX_CONNECTIONS as u64;
    let room = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    configured.min(room).max(1)
}

/// What one connection has been doing, for its idle watchdog.
#[derive(Debug)]
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the last request's start or end.
    last_ms: AtomicU64,
    answered: AtomicBool,
}

impl Activity {
    fn new(started: Instant) -> Self {
        Self {
            started,
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            answered: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// When the connection is due to be closed, if nothing happens
    /// meanwhile; `None` while a request is in flight.
    fn due(&self, limits: &Limits) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Some(if self.answered.load(Ordering::Relaxed) {
            last + limits.idle_timeout
        } else {
            self.started + limits.header_read_timeout
        })
    }
}

/// Counts a request in flight on its connection, from its head to its
/// answer.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn enter(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.answered.store(true, Ordering::Relaxed);
        activity.touch();
        Self(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One listener: its socket, TLS when configured, and the bounds of its
/// connections.
pub(crate) struct Listener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub limits: Limits,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("tls", &self.tls.is_some())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Listener {
    fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(self.limits.header_read_timeout);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.http2_max_concurrent_streams);
        builder
    }

    /// Serves `app` until `stop` turns true; then stops accepting, asks
    /// every open connection to finish (an HTTP/1.1 connection after its
    /// request in flight, an HTTP/2 one with a GOAWAY) and returns once all
    /// are closed.
    pub(crate) async fn serve(self, app: Router, mut stop: watch::Receiver<bool>) {
        let builder = Arc::new(self.builder());
        let limits = self.limits;
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let mut at_cap_logged = false;
        loop {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(p) => {
                    at_cap_logged = false;
                    p
                }
                Err(_) => {
                    if !at_cap_logged {
                        tracing::warn!(
                            max_connections = limits.max_connections,
                            "connection cap reached; new connections wait until open ones close"
                        );
                        at_cap_logged = true;
                    }
                    tokio::select! {
                        p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                        () = stopped(&mut stop) => break,
                    }
                }
            };
            let (stream, peer) = tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        accept_error(e).await;
                        continue;
                    }
                },
                () = stopped(&mut stop) => break,
            };
            let _ = stream.set_nodelay(true);
            let (builder, app, tls, stop) = (builder.clone(), app.clone(), self.tls.clone(), stop.clone());
            tokio::spawn(async move {
                connection(stream, peer, tls, &builder, app, limits, stop).await;
                drop(permit);
            });
        }
        drop(self.tcp);
        // Every connection task holds a permit until it ends.
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let _ = permits.acquire_many(all).await;
    }
}

/// An accept error: per-connection ones (the peer gave up) are skipped; the
/// rest (out of files, say) are logged and accepting pauses briefly, so
/// the loop does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// One connection: its TLS handshake, then HTTP until the client closes,
/// the watchdog finds it idle, or the server stops.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: &auto::Builder<TokioExecutor>,
    app: Router,
    limits: Limits,
    stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(Instant::now()));
    match tls {
        None => http(stream, peer, builder, app, &limits, activity, stop).await,
        Some(acceptor) => {
            let deadline = activity.started + limits.header_read_timeout;
            match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(stream, peer, builder, app, &limits, activity, stop).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake not done within header_read_timeout; closed"),
            }
        }
    }
}

async fn http<I>(
    io: I,
    peer: SocketAddr,
    builder: &auto::Builder<TokioExecutor>,
    app: Router,
    limits: &Limits,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let guard = InFlight::enter(&activity);
            let answer = app.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let response = answer.await;
                drop(guard);
                response
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    // Set once the connection has been asked to close: then it has at most
    // `CLOSE_GRACE` (when idle) or until the server's grace period is over.
    let mut closing: Option<Option<Instant>> = None;
    if *stop.borrow_and_update() {
        conn.as_mut().graceful_shutdown();
        closing = Some(None);
    }
    loop {
        let wake = match closing {
            Some(Some(by)) => Some(by),
            Some(None) => None,
            None => Some(activity.due(limits).unwrap_or_else(|| Instant::now() + limits.idle_timeout)),
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(wake) => {
                if closing.is_some() {
                    return;
                }
                let Some(due) = activity.due(limits) else { continue };
                if Instant::now() < due {
                    continue;
                }
                if !activity.answered.load(Ordering::Relaxed) {
                    tracing::debug!(%peer, "no complete request within header_read_timeout; closed");
                    return;
                }
                tracing::debug!(%peer, "idle past idle_timeout; closing");
                conn.as_mut().graceful_shutdown();
                closing = Some(Some(Instant::now() + CLOSE_GRACE));
            }
            changed = stop.changed(), if closing.is_none() => {
                if changed.is_err() || *stop.borrow() {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(None);
                }
            }
        }
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_file_limit() {
        // 1,024 files: 128 kept (an eighth), 32 for the metrics listener.
        assert_eq!(connection_cap(10_000, Some(1024)), 864);
        assert_eq!(connection_cap(500, Some(1024)), 500);
        // A large limit: the configured cap.
        assert_eq!(connection_cap(10_000, Some(1 << 20)), 10_000);
        // A tiny limit still serves one connection.
        assert_eq!(connection_cap(10_000, Some(50)), 1);
        assert_eq!(connection_cap(7, None), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_gives_a_new_connection_the_header_timeout_and_an_answered_one_the_idle_timeout() {
        let limits = Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
            http2_max_concurrent_streams: 1,
        };
        let a = Arc::new(Activity::new(Instant::now()));
        assert_eq!(a.due(&limits), Some(a.started + Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(3)).await;
        let guard = InFlight::enter(&a);
        assert_eq!(a.due(&limits), None, "never idle with a request in flight");
        tokio::time::advance(Duration::from_secs(100)).await;
        drop(guard);
        assert_eq!(a.due(&limits), Some(a.started + Duration::from_secs(103 + 60)));
    }
}
