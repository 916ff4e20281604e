//! The operational endpoints: liveness, readiness, metrics and this API's
//! OpenAPI document.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{AuditAction, AuditEntry};
use crate::http::access::{denied, unauthenticated};
use crate::http::json::json_ok;
use crate::http::openapi::{DocumentJson, MetricsErrors, ReadyzErrors, TAG_OPS};
use crate::http::problem::ApiError;
use crate::http::request::RequestId;
use crate::runtime::state::AppState;

/// The answer of `/healthz` and `/readyz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: String,
    /// How many stores answered their probe (readyz only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stores_available: Option<usize>,
    /// How many stores are served (readyz only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stores_total: Option<usize>,
}

/// Liveness
///
/// 200 while the process serves HTTP. No token needed.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = TAG_OPS,
    responses((status = 200, description = "The process is up", body = StatusResponse))
)]
pub(crate) async fn healthz() -> Response {
    json_ok(
        StatusCode::OK,
        &StatusResponse { status: "ok".into(), stores_available: None, stores_total: None },
    )
}

/// Readiness
///
/// 200 when the server is not shutting down and at least one store was
/// available at its last probe; 503 otherwise. Answered from the store
/// prober's last results, never waiting on a probe. No token needed; the
/// body gives counts only.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = TAG_OPS,
    responses(
        (status = 200, description = "Ready to serve", body = StatusResponse),
        ReadyzErrors,
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.is_shutting_down() {
        return Err(ApiError::unavailable("the server is shutting down"));
    }
    let statuses = state.status.snapshot();
    let total = statuses.len();
    let available = statuses.iter().filter(|s| s.last.availability.available).count();
    if available == 0 {
        return Err(ApiError::unavailable(format!("none of the {total} stores is available")));
    }
    let body = StatusResponse {
        status: "ready".into(),
        stores_available: Some(available),
        stores_total: Some(total),
    };
    Ok(json_ok(StatusCode::OK, &body))
}

/// Metrics (extension)
///
/// The server's metrics in the OpenMetrics text format, which Prometheus
/// scrapes: requests by route template and status, latency histograms,
/// store operations by store, operation and outcome, store availability
/// and probes. Needs a token with the `metrics` action (the admin token
/// has it); `metrics_listen` also serves it without a token on a separate
/// listener.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = TAG_OPS,
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The exposition", content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String),
        MetricsErrors,
    )
)]
pub(crate) async fn metrics(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audit = AuditEntry::new(&rid.0, AuditAction::Metrics);
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
    let token = state.auth.authenticate(&headers).map_err(|e| unauthenticated(&state, peer, &audit, e))?;
    let audit = audit.token(&token.name);
    token.check_metrics().map_err(|e| denied(&state, &audit, e))?;
    Ok(state.metrics.response())
}

/// OpenAPI document
///
/// This API's OpenAPI 3.1 document, generated from the code. No token needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapi",
    tag = TAG_OPS,
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub(crate) async fn openapi_json(Extension(DocumentJson(json)): Extension<DocumentJson>) -> Response {
    let mut resp = json.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
