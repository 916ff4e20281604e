//! *List Credential Stores*: every store the server serves, with its last
//! probed availability.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::access::{op, Project};
use super::{ManageErrors, ProjectPath, TAG_STORES};
use crate::auth::Scope;
use crate::problem::ApiError;
use crate::state::AppState;

/// One store in the list of credential stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreEntry {
    /// Whether the store answered its availability probe in time.
    pub available: bool,
    /// The store's id.
    #[schema(pattern = r"^[a-zA-Z0-9_.-]+$", min_length = 1, max_length = 255, example = "sqlite-default")]
    pub id: String,
    /// Why the store is unavailable, as a category: `unreachable`,
    /// `timeout`, `refused` or `misconfigured` (the cause is in the server
    /// log). Always a string: the empty string `""` when `available` is
    /// true.
    #[schema(example = "")]
    pub reason: String,
    /// The backend: `memory`, `encrypted-sqlite`, `vault`,
    /// `aws-secrets-manager`, `keychain`, or a custom store's kind.
    #[serde(rename = "type")]
    #[schema(example = "memory")]
    pub kind: String,
    /// *(extension)* When the availability above was probed (RFC 3339,
    /// UTC). A background prober probes each store every
    /// `probe_interval_ms` (default 10000, jittered by ±10 %); a result
    /// older than `probe_staleness_ms` (default 30000) is probed again when
    /// a request finds it, and the answer never waits for a probe.
    #[serde(rename = "checkedAt")]
    #[schema(example = "2025-01-01T12:00:00.000Z")]
    pub checked_at: String,
}

/// The answer of *List Credential Stores*.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListStoresResponse {
    /// Every store the server serves, in configuration order.
    pub data: Vec<StoreEntry>,
}

/// List Credential Stores
///
/// Every store the server serves, with the availability its background
/// prober found last and when (`checkedAt`, an extension). The answer never
/// waits for a probe, so one dead backend never stalls the list; a result
/// older than `probe_staleness_ms` is probed again for later answers. The
/// list is the same for every project, less the stores the token's grants
/// do not name for `view` there; credentials inside each store are per
/// project.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores",
    operation_id = "listCredentialStores",
    tag = TAG_STORES,
    params(ProjectPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The stores and their availability", body = ListStoresResponse),
        ManageErrors,
    )
)]
pub(crate) async fn list_stores(
    State(state): State<AppState>,
    project: Project<op::ListStores>,
) -> Result<Response, ApiError> {
    // Serialized once per probe result (`StatusBoard::stores_body`), not per
    // request, unless the token's grants name only some stores.
    let body = match &project.stores {
        Scope::All => state.status.stores_body(),
        Scope::Only(ids) => state.status.stores_body_of(|id| ids.contains(id)),
    };
    let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    let mut resp = (StatusCode::OK, json, body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
