//! The HTTP handlers, by resource, and the JSON shapes they exchange;
//! `router` merges the routes of each resource.
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
//! - `GET /metrics` (a token with the `metrics` action; see [`crate::runtime::metrics`])
//!
//! *List Credential Stores* and `/readyz` answer from the store prober's
//! last results ([`crate::runtime::status`]), never waiting on a probe. Creates and
//! deletes are recorded in the audit log before and after the store call,
//! every value read once before the value is sent, and every 401 and 403
//! too ([`crate::audit`]); a record that cannot be written is 503 before
//! anything changes or is revealed.
//!
//! Every `/manage` request is checked in this order, by the extractors of
//! `http::access` and `http::body` before the handler runs: path parameters that
//! are not UTF-8 (400), token (401), tenant and project ids (422), token
//! scope (403), store id and key (422), store (404), the namespace
//! `{tenantId}/{projectId}` against the store's cap (422); on a create then
//! the conditional headers, content type and body (400, 413), field rules
//! and what the store supports (422); then the store call (412 when a
//! condition does not hold, 503 when unavailable or over the store timeout,
//! which the store's [`TimeoutLayer`](credstore_core::layers::TimeoutLayer)
//! applies; see [`crate::runtime::state::Stores`]).
//!
//! Conditional and binary writes *(extensions)*: see
//! `conditional::write_condition` for `If-None-Match` / `If-Match` on a
//! create, `body::parse_create` for `valueBase64`. A create's answer, the
//! metadata read and the value read carry the credential's version as a
//! strong `ETag: "<version>"`.

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::runtime::state::AppState;

pub(crate) mod credentials;
pub(crate) mod ops;
pub(crate) mod stores;

pub use super::body::{CreateBinaryCredential, CreateCredentialRequest, CreateTextCredential};
pub use credentials::{
    CreateCredentialResponse, CreatedCredential, CredentialInfo, CredentialInfoResponse, CredentialValue,
    CredentialValueResponse, KeyEntry, ListCredentialsResponse, ValueKind,
};
pub use ops::StatusResponse;
pub use stores::{ListStoresResponse, StoreEntry};

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
