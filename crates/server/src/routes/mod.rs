//! The HTTP handlers, by resource, and the JSON shapes they exchange.
//!
//! The routes of the Credential Stores API (shapes matched exactly):
//! - `GET  /manage/tenants/{tenantId}/projects/{projectId}/credential-stores`
//!   (`stores`)
//! - `POST /manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials`
//!   (`credentials`)
//!
//! Extensions (documented in `/openapi.json` like the rest):
//! - `GET    …/credential-stores/{id}/credentials` lists keys (never values), paginated
//! - `GET    …/credential-stores/{id}/credentials/{key}` reads metadata and timestamps (never the value)
//! - `GET    …/credential-stores/{id}/credentials/{key}/value` reads the value, only with the
//!   `reveal` action, which no token has unless the configuration grants it
//! - `DELETE …/credential-stores/{id}/credentials/{key}`
//! - `GET /healthz`, `GET /readyz`, `GET /openapi.json` (no token needed) (`ops`)
//! - `GET /metrics` (a token with the `metrics` action; see [`crate::metrics`])
//!
//! *List Credential Stores* and `/readyz` answer from the store prober's
//! last results ([`crate::status`]), never waiting on a probe. Creates and
//! deletes are recorded in the audit log before and after the store call,
//! every value read once before the value is sent, and every 401 and 403
//! too ([`crate::audit`]); a record that cannot be written is 503 before
//! anything changes or is revealed.
//!
//! Every `/manage` request is checked in this order, by the extractors of
//! `access` and `body` before the handler runs: path parameters that
//! are not UTF-8 (400), token (401), tenant and project ids (422), token
//! scope (403), store id and key (422), store (404), the namespace
//! `{tenantId}/{projectId}` against the store's cap (422); on a create then
//! the conditional headers, content type and body (400, 413), field rules
//! and what the store supports (422); then the store call (412 when a
//! condition does not hold, 503 when unavailable or over the store timeout,
//! which the store's [`TimeoutLayer`](credstore_core::layers::TimeoutLayer)
//! applies; see [`crate::state::Stores`]).
//!
//! Conditional and binary writes *(extensions)*: see
//! `conditional::write_condition` for `If-None-Match` / `If-Match` on a
//! create, `body::parse_create` for `valueBase64`. A create's answer, the
//! metadata read and the value read carry the credential's version as a
//! strong `ETag: "<version>"`.

use std::collections::BTreeMap;
use std::time::SystemTime;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::problem::PROBLEM_JSON;
use crate::state::AppState;

pub(crate) mod access;
pub(crate) mod body;
pub(crate) mod conditional;
pub(crate) mod credentials;
pub(crate) mod ops;
pub(crate) mod stores;

pub(crate) use access::{check_scope_id, project_namespace};
pub use body::{CreateBinaryCredential, CreateCredentialRequest, CreateTextCredential};
pub use credentials::{
    CreateCredentialResponse, CreatedCredential, CredentialInfo, CredentialInfoResponse, CredentialValue,
    CredentialValueResponse, KeyEntry, ListCredentialsResponse, ValueKind,
};
pub(crate) use ops::fallback;
pub use ops::StatusResponse;
pub use stores::{ListStoresResponse, StoreEntry};

/// The tag of the Credential Stores API's operations in the OpenAPI document.
pub(crate) const TAG_STORES: &str = "Credential Stores";
/// The tag of the operational endpoints.
pub(crate) const TAG_OPS: &str = "Operations";

/// The id pattern of core's ids (credential keys, metadata keys, store
/// ids): 1 to 255 characters of `[a-zA-Z0-9-_.]`.
pub(crate) const ID_PATTERN: &str = r"^[a-zA-Z0-9_.-]+$";

// The pattern of an id in a path is the id pattern less `.` and `..`,
// which are dot-segments (RFC 3986 §5.2.4) that clients remove from a URL
// and the server refuses as a tenant or project:
// `^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$`.

/// Path parameters of project-level routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the extractors of `access` read it.
pub(crate) struct ProjectPath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "tenantId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "tenant_123"
    )]
    tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "projectId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "project_456"
    )]
    project_id: String,
}

/// Path parameters of store-level routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the extractors of `access` read it.
pub(crate) struct StorePath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "tenantId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "tenant_123"
    )]
    tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "projectId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "project_456"
    )]
    project_id: String,
    /// Resource identifier: the credential store's id (1 to 255 characters
    /// of `[a-zA-Z0-9-_.]`, not `.` or `..`).
    #[param(
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "sqlite-default"
    )]
    id: String,
}

/// Path parameters of credential-level routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the extractors of `access` read it.
pub(crate) struct CredentialPath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "tenantId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "tenant_123"
    )]
    tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "projectId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "project_456"
    )]
    project_id: String,
    /// Resource identifier: the credential store's id (1 to 255 characters
    /// of `[a-zA-Z0-9-_.]`, not `.` or `..`).
    #[param(
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "sqlite-default"
    )]
    id: String,
    /// The credential key: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not
    /// `.` or `..` (a client removes those from a URL).
    #[param(
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "github-token"
    )]
    key: String,
}

/// Every route, documented by its handler's `#[utoipa::path]`.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stores::list_stores))
        .routes(routes!(credentials::create_credential, credentials::list_credentials))
        .routes(routes!(credentials::get_credential, credentials::delete_credential))
        .routes(routes!(credentials::read_value))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
}

/// A JSON answer that no cache keeps.
pub(crate) fn json_ok<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// RFC 3339 UTC with milliseconds.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

// ------------------------------------------------- shared error responses

/// One problem+json response of the OpenAPI document.
fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build()
        .into()
}

fn problems(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter().map(|(status, description)| (status.to_string(), problem(description))).collect()
}

/// The error answers every `/manage` route can give, declared once: 400
/// (path parameters that are not UTF-8), 401, 403, 422 (the ids of the
/// path), 500 and 503 (the request timeout, or an audit record that cannot
/// be written). Routes add their own (404, 409, 412, 413, and 400 and 422
/// for their query and body).
pub(crate) struct ManageErrors;

impl utoipa::IntoResponses for ManageErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problems(&[
            (400, "Bad Request: path parameters that are not UTF-8 once percent-decoded, or (per route) a bad query, header or body"),
            (401, "Missing or invalid bearer token (also recorded in the audit log)"),
            (403, "The token may not take this route's action in this tenant or project (also recorded in the audit log)"),
            (429, "Too many requests without a valid token from this address: `Retry-After` says when to try again (the first of a run is recorded in the audit log)"),
            (422, "An id of the path breaks the id rules (the detail names tenantId, projectId, id or key), tenantId/projectId are longer than the store's namespace cap, or (per route) a query or body field breaks its rules"),
            (500, "Internal Server Error (the cause is in the server log, never in the answer)"),
            (503, "The store is unavailable or over the store timeout (the detail says why), the request took longer than the request timeout, or the audit log cannot be written (nothing was changed or revealed)"),
        ])
    }
}

/// The answer of a route on one store (`{id}`) that names a store not
/// served, or a key that is not stored.
pub(crate) struct StoreNotFound;

impl utoipa::IntoResponses for StoreNotFound {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problems(&[(
            404,
            "No store with this id, or (on a route with {key}) no such credential in this tenant and project",
        )])
    }
}
