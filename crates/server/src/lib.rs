//! `credstore-server`: the Credential Stores API over HTTP, and the
//! `credstore` CLI, over every credstore backend.
//!
//! `cargo run --release -p credstore-server` serves the Credential Stores API
//! on `127.0.0.1:8080` with two embedded stores, `memory-default` and
//! `sqlite-default` (encrypted SQLite in `./credstore-data`), and prints a
//! generated admin token once. See the crate README for the routes, the
//! config file and the CLI.
//!
//! The library exposes the pieces so tests and embedders can run the server
//! in-process:
//!
//! Any [`CredentialStore`](credstore_core::CredentialStore) can be served,
//! a custom one included: each request works on the store's handle for the
//! namespace `{tenantId}/{projectId}`
//! ([`with_namespace`](credstore_core::CredentialStore::with_namespace)).
//!
//! ```no_run
//! use std::sync::Arc;
//! use credstore_core::{CredentialStore, CredentialStoreExt, StoreId};
//! use credstore_memory::MemoryStore;
//! use credstore_server::{auth::{Authenticator, TokenEntry, TokenHash}, state::Stores, Server, Settings};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::defaults("127.0.0.1:0".parse()?, "./data");
//! let memory: Arc<dyn CredentialStore> = Arc::new(MemoryStore::new(StoreId::new("memory-default")?));
//! // Every call of every store is bounded by the store timeout.
//! let stores = Stores::new(vec![memory], settings.store_timeout)?;
//! let auth = Authenticator::new(vec![TokenEntry::admin(TokenHash::of("a-long-admin-token"))]);
//! let server = Server::bind(&settings, stores, auth).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(credstore_server::shutdown::signal()).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! The modules follow the server's concerns, each depending only on those
//! listed before it (`scripts/check-module-cycles` keeps it so):
//! - `ids`: the rules of the ids of a request's path and the namespace
//!   `{tenantId}/{projectId}` they make;
//! - [`audit`] and [`auth`] (tokens, grants, the [`auth_failures`]
//!   limit and the console's [`sessions`](auth::sessions)): what is
//!   recorded, and who may do what;
//! - [`config`]: the config file and environment settings ([`Settings`]), with
//!   the [`backends`] table that maps a store's `type` to its constructor;
//! - `runtime`: what runs the server: the [`listener`], [`tls`],
//!   [`shutdown`], the served [`stores`] and their shared [`state`], the
//!   store prober ([`status`]) and the [`metrics`];
//! - `http`: the HTTP application ([`app`]): the [`routes`] of each
//!   resource, their extractors, errors as problem+json, the OpenAPI
//!   document, and the web console at `/console/`;
//! - [`cli`]: the `credstore` binary's commands (serve, get, set, ls, rm, run, migrate,
//!   rotate-key…).
//!
//! [`Server`], at the crate root, binds the listeners and serves the application.
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
mod http;
mod ids;
mod runtime;

pub use auth::failures as auth_failures;
pub use config::backends;
pub use config::keys;
pub use http::{app, metrics_app, routes};
pub use runtime::{listener, metrics, shutdown, state, status, stores, tls};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use config::Settings;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use crate::audit::AuditLog;
use crate::auth::failures::AuthFailures;
use crate::auth::sessions::Sessions;
use crate::auth::Authenticator;
use crate::runtime::listener::{Limits, Listener};
use crate::runtime::state::{AppState, SharedState, Stores};
use crate::runtime::status::{ProbeObserver, ProbeSettings, StatusBoard};
use crate::runtime::tls::{Tls, TlsError};

/// Why a server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// An address cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Plaintext on an address other hosts can reach, without
    /// `allow_plaintext`.
    #[error(
        "{setting} = \"{addr}\" is not a loopback address and no TLS is configured, so tokens and \
         credential values would cross the network in clear: set tls = {{ cert_file = \"…\", key_file = \"…\" }} \
         (or CREDSTORE_TLS_CERT_FILE and CREDSTORE_TLS_KEY_FILE), or allow_plaintext = true when a \
         TLS-terminating proxy is the server's only client"
    )]
    Plaintext {
        /// `listen` or `metrics_listen`.
        setting: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// The TLS files cannot be served.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: Listener,
    metrics_listener: Option<Listener>,
    tls: Option<Tls>,
    state: AppState,
    request_timeout: Duration,
    grace: Duration,
}

impl Server {
    /// Binds `settings.listen` (and `settings.metrics_listen`, when set)
    /// and prepares to serve `stores` to the tokens `auth` knows. The store
    /// timeout is the one `stores` were built with ([`Stores::new`]).
    ///
    /// # Behavior
    /// Reads and checks the TLS files when `settings.tls` is set
    /// ([`tls`]); refuses plaintext on a non-loopback address unless
    /// `settings.allow_plaintext`. Caps the connections below the open-file
    /// limit ([`listener::connection_cap`]). Probes every store once,
    /// concurrently, each bounded by `settings.probe_timeout`, and starts
    /// the store probers ([`status`]); opens the audit log of
    /// `settings.audit_log` lazily ([`AuditLog::new`]).
    ///
    /// # Errors
    /// Plaintext on a non-loopback address, unusable TLS files, or an
    /// address that cannot be bound.
    pub async fn bind(settings: &Settings, stores: Stores, auth: Authenticator) -> Result<Self, BindError> {
        if settings.tls.is_none() && !settings.allow_plaintext {
            let listens = [("listen", Some(settings.listen)), ("metrics_listen", settings.metrics_listen)];
            for (setting, addr) in listens {
                if let Some(addr) = addr.filter(|a| !a.ip().is_loopback()) {
                    return Err(BindError::Plaintext { setting, addr });
                }
            }
        }
        let tls = settings.tls.as_ref().map(Tls::new).transpose()?;
        let acceptor = tls.as_ref().map(|t| tokio_rustls::TlsAcceptor::from(t.config.clone()));
        let file_limit = listener::open_file_limit();
        let cap = listener::connection_cap(settings.max_connections, file_limit);
        if cap < settings.max_connections {
            tracing::warn!(
                max_connections = settings.max_connections,
                open_file_limit = file_limit,
                cap,
                "max_connections lowered to stay below the open-file limit"
            );
        }
        let limits = Limits {
            header_read_timeout: settings.header_read_timeout,
            idle_timeout: settings.idle_timeout,
            max_connections: cap,
            http2_max_concurrent_streams: settings.http2_max_concurrent_streams,
        };
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr).await.map_err(|source| BindError::Listen { addr, source })
        };
        let listener = Listener { tcp: bind(settings.listen).await?, tls: acceptor.clone(), limits };
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(Listener {
                tcp: bind(addr).await?,
                tls: acceptor,
                limits: Limits { max_connections: listener::METRICS_MAX_CONNECTIONS.min(cap), ..limits },
            }),
            None => None,
        };
        let metrics = stores.metrics().clone();
        let observer: ProbeObserver = {
            let metrics = metrics.clone();
            Arc::new(move |id, result, took| {
                metrics.observe_probe(id, result.availability.available, took.as_secs_f64())
            })
        };
        let probes = ProbeSettings {
            interval: settings.probe_interval,
            staleness: settings.probe_staleness,
            timeout: settings.probe_timeout,
        };
        let status =
            StatusBoard::start(stores.registry().iter().cloned().collect(), probes, Some(observer)).await;
        let state = AppState::new(SharedState {
            stores: Arc::new(stores),
            auth: Arc::new(auth),
            status,
            audit: Arc::new(AuditLog::new(&settings.audit_log).with_rotation(settings.audit_rotation)),
            sessions: Arc::new(Sessions::new(settings.sessions, tls.is_some())),
            auth_failures: AuthFailures::new(settings.auth_failure_limit),
            metrics,
            probe_timeout: settings.probe_timeout,
            body_limit: settings.body_limit,
            shutting_down: Arc::new(AtomicBool::new(false)),
        });
        tracing::info!(
            tls = tls.is_some(),
            client_certificates = settings.tls.as_ref().is_some_and(|t| t.client_ca_file.is_some()),
            max_connections = cap,
            open_file_limit = file_limit,
            header_read_timeout_ms = settings.header_read_timeout.as_millis() as u64,
            idle_timeout_ms = settings.idle_timeout.as_millis() as u64,
            "connection limits"
        );
        Ok(Self {
            listener,
            metrics_listener,
            tls,
            state,
            request_timeout: settings.request_timeout,
            grace: settings.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.tcp.local_addr().expect("a bound listener has an address")
    }

    /// The address of the separate metrics listener, when
    /// `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.tcp.local_addr().ok())
    }

    /// The shared state (stores, tokens, store status, audit log, metrics).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Whether the listeners serve TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `shutdown` resolves, then stops accepting connections
    /// and waits for the requests in flight, at most the grace period.
    ///
    /// # Behavior
    /// A request acknowledged before `run` returns was fully handled: its
    /// store call returned before the answer was sent. The metrics listener
    /// stops with the main one, and the store probers when `run` returns.
    /// SIGHUP reopens the audit log and, with TLS, reloads the certificate
    /// ([`tls`]); both are listened for when `run` is called, before the
    /// future it returns is first polled, so a SIGHUP sent once `run` has
    /// returned never takes the default action (ending the process). Call
    /// it inside a tokio runtime.
    ///
    /// # Errors
    /// Listening for SIGHUP cannot start.
    pub fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = std::io::Result<()>> + Send {
        let Self { listener, metrics_listener, tls, state, request_timeout, grace } = self;
        #[cfg(unix)]
        let reloader = tls.as_ref().map(Tls::reload_on_sighup).transpose();
        #[cfg(not(unix))]
        let _ = tls;
        let reopen_audit = reopen_audit_on_sighup(state.audit.clone());
        async move {
            #[cfg(unix)]
            let reloader = reloader?;
            Self::serve(listener, metrics_listener, state, request_timeout, grace, shutdown, reopen_audit)
                .await;
            #[cfg(unix)]
            if let Some(task) = reloader {
                task.abort();
            }
            Ok(())
        }
    }

    async fn serve(
        listener: listener::Listener,
        metrics_listener: Option<listener::Listener>,
        state: AppState,
        request_timeout: Duration,
        grace: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
        reopen_audit: Option<tokio::task::JoinHandle<()>>,
    ) {
        let flag = state.shutting_down.clone();
        let status = state.status.clone();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_task = metrics_listener.map(|l| {
            let app = metrics_app(state.metrics.clone(), request_timeout);
            tokio::spawn(l.serve(app, stop_rx.clone()))
        });
        let app = app(state, request_timeout);
        let serve = listener.serve(app, stop_rx);
        tokio::pin!(serve);
        let shutdown = async move {
            shutdown.await;
            flag.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
            stop_tx
        };
        let stopped = tokio::select! {
            () = &mut serve => None,
            stop_tx = shutdown => Some(stop_tx),
        };
        if stopped.is_some() {
            tokio::select! {
                () = &mut serve => tracing::info!("server stopped"),
                () = tokio::time::sleep(grace) => tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "grace period over; stopping with requests in flight"
                ),
            }
        }
        status.shutdown().await;
        for task in metrics_task.into_iter().chain(reopen_audit) {
            task.abort();
            let _ = task.await;
        }
    }
}

/// On every SIGHUP, closes the audit log so that the next record opens its
/// path again (after an external tool rotated it). `None` when signals
/// cannot be listened to (the log then never reopens; said in the log).
fn reopen_audit_on_sighup(audit: Arc<AuditLog>) -> Option<tokio::task::JoinHandle<()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(mut hangups) => Some(tokio::spawn(async move {
                while hangups.recv().await.is_some() {
                    audit.reopen();
                    tracing::info!(audit_log = audit.target(), "SIGHUP: the audit log is reopened");
                }
            })),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; the audit log is not reopened on it");
                None
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = audit;
        None
    }
}
