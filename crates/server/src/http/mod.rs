//! The HTTP application: the [`routes`] of each resource merged into one
//! router with the OpenAPI document built from them, wrapped in the request
//! middleware ([`request`]). The modules below are its parts, none of which
//! names this one back: the extractors that admit a request ([`access`],
//! with the create body's [`body`] parser and its [`conditional`] headers),
//! errors as problem+json ([`problem`]), the JSON answers ([`json`]), the
//! document's shared declarations ([`openapi`]) and the web [`console`]
//! with its sign-in.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::{middleware, Extension, Router};
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::runtime::metrics::Metrics;
use crate::runtime::state::AppState;
use openapi::{ApiDoc, DocumentJson};
use problem::ApiError;
use request::RequestSettings;

pub(crate) mod access;
pub(crate) mod body;
pub(crate) mod conditional;
pub(crate) mod console;
pub(crate) mod json;
pub(crate) mod openapi;
pub(crate) mod problem;
pub(crate) mod request;
pub mod routes;

/// The whole HTTP application: routes, fallback, panic catching and,
/// outermost, the request middleware (ids, timeout, logs, problem+json, and
/// the request metrics, counted with the status answered, so timeouts and
/// panics are counted as such).
pub fn app(state: AppState, request_timeout: Duration) -> Router {
    let router = served_router().merge(console::router());
    let metrics = state.metrics.clone();
    router.fallback(fallback).with_state(state).layer(CatchPanicLayer::new()).layer(
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
    Router::new().route("/metrics", axum::routing::get(serve)).fallback(fallback).with_state(metrics).layer(
        middleware::from_fn_with_state(
            Arc::new(RequestSettings { timeout: request_timeout, metrics: None }),
            request::request_context,
        ),
    )
}

/// The answer to a path no route matches.
async fn fallback() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

/// Every route with its documentation.
fn api_router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) =
        OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::router()).split_for_parts();
    openapi::add_cookie_auth(&mut doc);
    (router, doc)
}

/// The OpenAPI 3.1 document of this server as `/openapi.json` serves it
/// (pretty JSON), rendered once per process: it depends only on the code.
pub(crate) fn document_json() -> &'static str {
    JSON.get_or_init(|| render(&api_router().1))
}

/// The router with its document, which is rendered for `/openapi.json` now
/// unless it already was, so the server does not build the document twice;
/// the route serving it finds it in a request extension.
fn served_router() -> axum::Router<AppState> {
    let (router, doc) = api_router();
    let json = JSON.get_or_init(|| render(&doc));
    router.layer(Extension(DocumentJson(json)))
}

static JSON: OnceLock<String> = OnceLock::new();

fn render(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
}
