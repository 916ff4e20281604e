//! The HTTP handlers, by resource, and the JSON shapes they exchange;
//! `router` merges the routes of each resource.
//!
//! What each route answers is written once, where a client looks first:
//! the API-wide rules (tokens, isolation, errors, extensions) in the OpenAPI
//! document's description (`DESCRIPTION` in `http::openapi`), each route's own in
//! its handler's doc and `#[utoipa::path]` (the operation in the document),
//! and the operator's view (config, tokens, status, audit) in the crate
//! README. What only the code shows is here:
//!
//! Every `/manage` request is checked in this order, by the extractors of
//! `http::access` and `http::body` before the handler runs: path parameters that
//! are not UTF-8 (400), token or session cookie (401), a cookie request's
//! CSRF token (403), tenant and project ids (422), token scope (403), store
//! id, key and version (422), store (404), the namespace
//! `{tenantId}/{projectId}` against the store's cap (422); on a create then
//! the conditional headers, content type and body (400, 413), field rules
//! and what the store supports (422); then the store call (412 when a
//! condition does not hold, 503 when unavailable or over the store timeout,
//! which the store's [`TimeoutLayer`](credstore_core::layers::TimeoutLayer)
//! applies; see [`crate::state::Stores`]).

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::runtime::state::AppState;

pub(crate) mod batch;
pub(crate) mod credentials;
pub(crate) mod ops;
pub(crate) mod stores;
pub(crate) mod versions;

pub use super::body::{
    CreateBinaryCredential, CreateCredentialRequest, CreateTextCredential, RestoreCredentialRequest,
};
pub use batch::{BatchReadEntry, BatchReadRequest, BatchReadResponse};
pub use credentials::{
    CreateCredentialResponse, CreatedCredential, CredentialInfo, CredentialInfoResponse, CredentialValue,
    CredentialValueResponse, KeyEntry, ListCredentialsResponse, ValueKind,
};
pub use ops::StatusResponse;
pub use stores::{ListStoresResponse, StoreEntry};
pub use versions::{ListVersionsResponse, VersionDetail, VersionDetailResponse, VersionEntry};

/// Every route, documented by its handler's `#[utoipa::path]`.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stores::list_stores))
        .routes(routes!(credentials::create_credential, credentials::list_credentials))
        .routes(routes!(credentials::get_credential, credentials::delete_credential))
        .routes(routes!(credentials::read_value))
        .routes(routes!(batch::batch_read))
        .routes(routes!(versions::list_versions, versions::purge_key))
        .routes(routes!(versions::get_version, versions::purge_version))
        .routes(routes!(versions::read_version_value))
        .routes(routes!(versions::restore_version))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
}
