//! *List Credential Stores*: every store the server serves, with its last
//! probed availability.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Scope;
use crate::http::access::{op, Project};
use crate::http::openapi::{ManageErrors, ProjectPath, TAG_STORES};
use crate::http::problem::ApiError;
use crate::runtime::state::AppState;
pub use crate::runtime::status::{ListStoresResponse, StoreEntry};

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
    let body = stores_body(&state, &project.stores);
    let json = [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))];
    let mut resp = (StatusCode::OK, json, body).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The *List Credential Stores* body of the stores in `scope`: the
/// listing's, and the console's. Serialized once per probe result
/// (`StatusBoard::stores_body`), not per request, unless the token's grants
/// name only some stores.
pub(crate) fn stores_body(state: &AppState, scope: &Scope) -> axum::body::Bytes {
    match scope {
        Scope::All => state.status.stores_body(),
        Scope::Only(ids) => state.status.stores_body_of(|id| ids.contains(id)),
    }
}
