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
//! use credstore_core::{CredentialStore, StoreId};
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
#![warn(missing_docs)]

pub mod audit;
pub mod auth;
pub mod auth_failures;
pub mod backends;
pub mod cli;
pub mod config;
mod environment;
mod logging;
pub mod metrics;
mod migrate;
mod openapi;
mod problem;
mod request;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod status;
pub mod stores;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{middleware, Router};
use tower_http::catch_panic::CatchPanicLayer;

pub use config::Settings;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use crate::audit::AuditLog;
use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::request::RequestSettings;
use crate::state::{AppState, SharedState, Stores};
use crate::status::{ProbeObserver, ProbeSettings, StatusBoard};

/// The whole HTTP application: routes, fallback, panic catching and,
/// outermost, the request middleware (ids, timeout, logs, problem+json, and
/// the request metrics, counted with the status answered, so timeouts and
/// panics are counted as such).
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    let router = openapi::served_router();
    let metrics = state.metrics.clone();
    router.fallback(routes::fallback).with_state(state).layer(CatchPanicLayer::new()).layer(
        middleware::from_fn_with_state(
            Arc::new(RequestSettings { timeout: request_timeout, metrics: Some(metrics) }),
            request::request_context,
        ),
    )
}

/// The application of the separate metrics listener (`metrics_listen`):
/// `GET /metrics` without a token, and problem+json 404s for anything else.
pub fn metrics_app(metrics: Arc<Metrics>, request_timeout: Duration) -> Router {
    let serve = |axum::extract::State(m): axum::extract::State<Arc<Metrics>>| async move { m.response() };
    Router::new()
        .route("/metrics", axum::routing::get(serve))
        .fallback(routes::fallback)
        .with_state(metrics)
        .layer(middleware::from_fn_with_state(
            Arc::new(RequestSettings { timeout: request_timeout, metrics: None }),
            request::request_context,
        ))
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    metrics_listener: Option<tokio::net::TcpListener>,
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
    /// Probes every store once, concurrently, each bounded by
    /// `settings.probe_timeout`, and starts the store probers
    /// ([`status`]); opens the audit log of `settings.audit_log` lazily
    /// ([`AuditLog::new`]).
    ///
    /// # Errors
    /// An address cannot be bound.
    pub async fn bind(settings: &Settings, stores: Stores, auth: Authenticator) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let metrics_listener = match settings.metrics_listen {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await?),
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
            auth_failures: auth_failures::AuthFailures::new(settings.auth_failure_limit),
            metrics,
            probe_timeout: settings.probe_timeout,
            body_limit: settings.body_limit,
            shutting_down: Arc::new(AtomicBool::new(false)),
        });
        Ok(Self {
            listener,
            metrics_listener,
            state,
            request_timeout: settings.request_timeout,
            grace: settings.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The address of the separate metrics listener, when
    /// `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The shared state (stores, tokens, store status, audit log, metrics).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting connections
    /// and waits for the requests in flight, at most the grace period.
    ///
    /// # Behavior
    /// A request acknowledged before `run` returns was fully handled: its
    /// store call returned before the answer was sent. The metrics listener
    /// stops with the main one, and the store probers when `run` returns.
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, metrics_listener, state, request_timeout, grace } = self;
        let flag = state.shutting_down.clone();
        let status = state.status.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            flag.store(true, Ordering::SeqCst);
            let _ = started_tx.send(());
            let _ = stop_tx.send(true);
        };
        let metrics_task = metrics_listener.map(|l| {
            let app = metrics_app(state.metrics.clone(), request_timeout);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(l, app).with_graceful_shutdown(stopped).await {
                    tracing::error!(error = %e, "the metrics listener failed");
                }
            })
        });
        let reopen_audit = reopen_audit_on_sighup(state.audit.clone());
        let app = app(state, request_timeout);
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve = axum::serve(listener, app).with_graceful_shutdown(signal).into_future();
        tokio::pin!(serve);
        let grace_over = async {
            if started_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let result = tokio::select! {
            result = &mut serve => {
                tracing::info!("server stopped");
                result
            }
            () = grace_over => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; stopping with requests in flight");
                Ok(())
            }
        };
        status.shutdown().await;
        for task in metrics_task.into_iter().chain(reopen_audit) {
            task.abort();
            let _ = task.await;
        }
        result
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
