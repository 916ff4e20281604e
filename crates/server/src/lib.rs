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

pub mod auth;
pub mod cli;
pub mod config;
pub mod logging;
pub mod migrate;
pub mod openapi;
pub mod problem;
pub mod request;
pub mod routes;
pub mod shutdown;
pub mod state;
pub mod stores;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{middleware, Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;

pub use config::Settings;

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use crate::auth::Authenticator;
use crate::request::RequestSettings;
use crate::routes::OpenApiJson;
use crate::state::{AppState, Stores};

/// The whole HTTP application: routes, fallback, panic catching, and the
/// request middleware (ids, timeout, logs, problem+json).
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    let (router, doc) = openapi::api_router();
    let json = doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned());
    router
        .fallback(routes::fallback)
        .with_state(state)
        .layer(Extension(OpenApiJson(Arc::new(json))))
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn_with_state(
            Arc::new(RequestSettings { timeout: request_timeout }),
            request::request_context,
        ))
}

/// A bound server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: tokio::net::TcpListener,
    state: AppState,
    request_timeout: Duration,
    grace: Duration,
}

impl Server {
    /// Binds `settings.listen` and prepares to serve `stores` to the tokens
    /// `auth` knows. The store timeout is the one `stores` were built with
    /// ([`Stores::new`]).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(settings: &Settings, stores: Stores, auth: Authenticator) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(settings.listen).await?;
        let state = AppState {
            stores: Arc::new(stores),
            auth: Arc::new(auth),
            probe_timeout: settings.probe_timeout,
            body_limit: settings.body_limit,
            shutting_down: Arc::new(AtomicBool::new(false)),
        };
        Ok(Self {
            listener,
            state,
            request_timeout: settings.request_timeout,
            grace: settings.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state (stores and tokens).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting connections
    /// and waits for the requests in flight, at most the grace period.
    ///
    /// # Behavior
    /// A request acknowledged before `run` returns was fully handled: its
    /// store call returned before the answer was sent.
    ///
    /// # Errors
    /// An I/O error of the listener.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self { listener, state, request_timeout, grace } = self;
        let flag = state.shutting_down.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let signal = async move {
            shutdown.await;
            flag.store(true, Ordering::SeqCst);
            let _ = started_tx.send(());
        };
        let app = app(state, request_timeout);
        let serve = axum::serve(listener, app).with_graceful_shutdown(signal).into_future();
        tokio::pin!(serve);
        let grace_over = async {
            if started_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = &mut serve => {
                tracing::info!("server stopped");
                result
            }
            () = grace_over => {
                tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; stopping with requests in flight");
                Ok(())
            }
        }
    }
}
