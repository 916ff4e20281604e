//! *(extension)* A credential's history: list its kept versions, read one
//! version's metadata or (`reveal`) its value, restore one as a new write,
//! and purge a version or the key with its whole history.
//!
//! Every route answers 422 (`Unsupported`) on a store that keeps no
//! versions, before any store call where the route writes; a version the
//! store does not keep (never written, purged, past the retention) is 404.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error as StoreError, PurgeTarget, Version,
    VersionInfo, VersionListOptions, MAX_PAGE_SIZE,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::credentials::{
    check_expiry, reveal, write_status, written, CreateCredentialResponse, CredentialValueResponse,
};
use crate::http::access::{audited, missing, op, ProjectCredential, ProjectStore, ProjectVersion};
use crate::http::body::{restore_expiry, RestoreCredentialRequest};
use crate::http::conditional::{conditional_restore, no_condition, WriteCondition};
use crate::http::json::{json_ok, timestamp};
use crate::http::openapi::{
    CredentialPath, ListVersionsErrors, ManageErrors, PurgeErrors, PurgeVersionErrors, ReadValueErrors,
    RestoreErrors, StoreNotFound, VersionNotFound, VersionPath, TAG_STORES,
};
use crate::http::problem::ApiError;
use crate::runtime::state::AppState;

// ---------------------------------------------------------------- shapes

/// *(extension)* One kept version of a credential: its state, times and
/// metadata; never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionEntry {
    /// The version, as the `ETag` and `version` of the metadata read give
    /// it.
    #[schema(example = "3")]
    pub version: String,
    /// Where it stands: `current` (what the metadata and value reads
    /// answer), `previous` (overwritten by a later write), `deleted` (the
    /// version that was current when the key was deleted: restore it with
    /// `If-None-Match: *` to recover the key) or `expired` (its `expiresAt`
    /// has passed).
    #[schema(schema_with = state_schema)]
    pub state: String,
    /// When this version was written (RFC 3339, UTC).
    #[schema(example = "2025-01-01T12:00:00.000Z")]
    pub written_at: String,
    /// When it expires or expired (RFC 3339, UTC); `null` when never.
    pub expires_at: Option<String>,
    /// The metadata written with it.
    pub metadata: BTreeMap<String, String>,
}

/// The schema of `state`: one of the four names.
fn state_schema() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["current", "previous", "deleted", "expired"]))
        .description(Some(
            "Where the version stands: `current` (what the metadata and value reads answer), `previous` \
             (overwritten by a later write), `deleted` (the version that was current when the key was \
             deleted: restore it with `If-None-Match: *` to recover the key) or `expired` (its `expiresAt` \
             has passed).",
        ))
        .examples([serde_json::json!("current")])
        .into()
}

impl VersionEntry {
    fn of(info: VersionInfo) -> Self {
        Self {
            version: info.version.to_string(),
            state: info.state.as_str().to_owned(),
            written_at: timestamp(info.written_at),
            expires_at: info.expires_at.map(timestamp),
            metadata: info.metadata.as_map().clone(),
        }
    }
}

/// *(extension)* A page of a credential's versions, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListVersionsResponse {
    /// Versions, newest first.
    pub data: Vec<VersionEntry>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// *(extension)* One version of a credential, with the key and store it
/// belongs to.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionDetail {
    /// The key.
    pub key: String,
    /// The store's id.
    pub store_id: String,
    /// The version.
    #[serde(flatten)]
    pub entry: VersionEntry,
}

/// *(extension)* The answer of *Get Credential Version*.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionDetailResponse {
    /// The version's state, times and metadata.
    pub data: VersionDetail,
}

/// The pattern of a version cursor: `v1`, then the version's bytes in hex
/// (visible ASCII less `"` and `,`); the cursor parameter's (checked by a
/// test against the document).
#[cfg(test)]
const CURSOR_PATTERN: &str = r"^v1(?:2[13-9a-bA-B]|2[d-fD-F]|[3-6][0-9a-fA-F]|7[0-9a-eA-E])+$";

/// Query parameters of the version listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct VersionQuery {
    /// The `nextCursor` of the previous page (opaque; it names the last
    /// version of that page). A cursor whose version is no longer kept
    /// gives an empty last page.
    #[param(
        pattern = r"^v1(?:2[13-9a-bA-B]|2[d-fD-F]|[3-6][0-9a-fA-F]|7[0-9a-eA-E])+$",
        min_length = 4,
        max_length = 258
    )]
    cursor: Option<String>,
    /// Versions per page, 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000, example = 100)]
    limit: Option<usize>,
}

/// The cursor that resumes after `version`.
fn cursor_of(version: &Version) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + 2 * version.as_str().len());
    out.push_str("v1");
    for b in version.as_str().bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

/// The version a cursor resumes after.
///
/// # Errors
/// 422 naming `cursor` when it is not one this server gives.
fn parse_cursor(cursor: &str) -> Result<Version, ApiError> {
    let bad = || ApiError::invalid_field("cursor", "is not a nextCursor of this listing");
    let hex = cursor.strip_prefix("v1").filter(|h| !h.is_empty() && h.len() % 2 == 0).ok_or_else(bad)?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    String::from_utf8(bytes).ok().and_then(|text| Version::new(text).ok()).ok_or_else(bad)
}

/// The kept version `version` of `key`, found in the listing (so its state
/// comes with it and its value is never read).
async fn find_version(
    store: &dyn CredentialStore,
    key: &CredentialKey,
    version: &Version,
) -> Result<Option<VersionInfo>, StoreError> {
    let mut options = VersionListOptions::new().with_limit(MAX_PAGE_SIZE)?;
    loop {
        let page = store.list_versions(key, &options).await?;
        if let Some(found) = page.versions.into_iter().find(|v| &v.version == version) {
            return Ok(Some(found));
        }
        match page.next_cursor {
            Some(next) => options = options.after(Some(next)),
            None => return Ok(None),
        }
    }
}

fn not_kept(store: &dyn CredentialStore, key: &CredentialKey, version: &Version) -> ApiError {
    StoreError::VersionNotFound { store: store.id().clone(), key: key.clone(), version: version.clone() }
        .into()
}

/// 422 before any store call when the store keeps no versions.
fn needs_versions(store: &dyn CredentialStore) -> Result<(), ApiError> {
    if store.capabilities().versions {
        Ok(())
    } else {
        Err(StoreError::unsupported(store.id(), "version history").into())
    }
}

// ---------------------------------------------------------------- handlers

/// List Credential Versions (extension)
///
/// The versions of `key` the store keeps, newest first, one page at a time:
/// each with its state (`current`, `previous`, `deleted`, `expired`), when
/// it was written, when it expires and its metadata. Never values. A key
/// with no kept version (never written, or purged) gives an empty list.
/// How many versions are kept, and for how long, is the store's retention.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions",
    operation_id = "listCredentialVersions",
    tag = TAG_STORES,
    params(CredentialPath, VersionQuery),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of versions, newest first", body = ListVersionsResponse),
        ManageErrors,
        StoreNotFound,
        ListVersionsErrors,
    )
)]
pub(crate) async fn list_versions(
    target: ProjectCredential<op::ListVersions>,
    query: Result<Query<VersionQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let ProjectCredential { store: ProjectStore { store, .. }, key } = target;
    let body = versions_page(store.as_ref(), &key, q.cursor, q.limit).await?;
    Ok(json_ok(StatusCode::OK, &body))
}

/// One page of `key`'s versions, newest first, after `cursor` (a
/// `nextCursor`), at most `limit`: the listing's, and the console's.
///
/// # Errors
/// 422 for a cursor or limit out of the rules; the store's error.
pub(crate) async fn versions_page(
    store: &dyn CredentialStore,
    key: &CredentialKey,
    cursor: Option<String>,
    limit: Option<usize>,
) -> Result<ListVersionsResponse, ApiError> {
    let mut opts = VersionListOptions::new();
    if let Some(limit) = limit {
        opts = opts.with_limit(limit)?;
    }
    if let Some(cursor) = cursor {
        opts = opts.after(Some(parse_cursor(&cursor)?));
    }
    let page = store.list_versions(key, &opts).await?;
    Ok(ListVersionsResponse {
        data: page.versions.into_iter().map(VersionEntry::of).collect(),
        next_cursor: page.next_cursor.as_ref().map(cursor_of),
    })
}

/// Get Credential Version (extension)
///
/// One kept version of `key`: its state, when it was written, when it
/// expires and its metadata. Never its value.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}",
    operation_id = "getCredentialVersion",
    tag = TAG_STORES,
    params(VersionPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The version's state, times and metadata", body = VersionDetailResponse),
        ManageErrors,
        VersionNotFound,
        ListVersionsErrors,
    )
)]
pub(crate) async fn get_version(target: ProjectVersion<op::ReadVersion>) -> Result<Response, ApiError> {
    let ProjectVersion {
        credential: ProjectCredential { store: ProjectStore { id, store, .. }, key },
        version,
    } = target;
    let Some(info) = find_version(store.as_ref(), &key, &version).await? else {
        return Err(not_kept(store.as_ref(), &key, &version));
    };
    let body = VersionDetailResponse {
        data: VersionDetail { key: key.to_string(), store_id: id.to_string(), entry: VersionEntry::of(info) },
    };
    Ok(json_ok(StatusCode::OK, &body))
}

/// Read Credential Version Value (extension)
///
/// The value of one kept version of `key`, in the shape of *Read Credential
/// Value* (`updatedAt` is when this version was written; the `ETag` is this
/// version). Only for a token with the `reveal` action; every read is
/// recorded in the audit log (action `reveal`, with the version) before the
/// value is sent, and when the record cannot be written the answer is 503
/// and the value is not sent. Deleted and expired versions are read as
/// well: the history keeps them for a restore.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}/value",
    operation_id = "readCredentialVersionValue",
    tag = TAG_STORES,
    params(VersionPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The version's value", body = CredentialValueResponse,
            headers(
                ("ETag" = String, description = "This version, as a strong entity tag `\"<version>\"`"),
                ("Cache-Control" = String, description = "`no-store`: the answer holds a secret"),
            )),
        ManageErrors,
        VersionNotFound,
        ReadValueErrors,
    )
)]
pub(crate) async fn read_version_value(
    State(state): State<AppState>,
    target: ProjectVersion<op::Reveal>,
) -> Result<Response, ApiError> {
    let ProjectVersion {
        credential: ProjectCredential { store: ProjectStore { project, id, store }, key },
        version,
    } = target;
    let read = match store.get_version(&key, &version).await {
        Ok(Some(cred)) => Ok(cred),
        Ok(None) => Err(not_kept(store.as_ref(), &key, &version)),
        Err(e) => Err(ApiError::from(e)),
    };
    reveal(&state, &project.audit, &id, read).await
}

/// Restore Credential Version (extension)
///
/// Writes the value and metadata of a kept version of `key` back as a new
/// write, with a new version (the `ETag`); the version restored stays in
/// the history. The write expires at the body's `expiresAt`, or never
/// (without a body, or with `null`), whenever the version restored did.
/// Needs a condition, so that a rotation racing the restore is never lost:
/// - `If-Match: "<version>"`, the current version (the `ETag` of the
///   metadata read): undo a bad rotation; 412 when the key is at another
///   version or missing, and nothing changes;
/// - `If-None-Match: *`: recover a deleted (or expired) key, only while it
///   is absent; 412 when it exists;
/// - `If-Match: *`: restore over whatever version is current.
///
/// Without a condition the answer is 428 and nothing changes. 201 when the
/// key was absent (recovered), 200 when it was overwritten. Recorded in the
/// audit log (action `restore`, with the version) before and after.
#[utoipa::path(
    post,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}/restore",
    operation_id = "restoreCredentialVersion",
    tag = TAG_STORES,
    params(
        VersionPath,
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"[!#-~]*")$"#, example = "\"3\"",
            description = "`\"<version>\"`, the current version (its strong `ETag`): restore only over that version; 412 when the key is missing or at another version. `*`: only over an existing key, whatever its version. A weak tag `W/\"…\"` never matches: 412. A list of tags or anything else is 400; so is sending it with `If-None-Match`. One of `If-Match` and `If-None-Match` is required (428)."),
        ("If-None-Match" = Option<String>, Header, pattern = r"^\*$", example = "*",
            description = "`*`: restore only while the key is absent (recover a deleted or expired key); 412 when it exists. No other form is supported (400)."),
    ),
    request_body(content = Option<RestoreCredentialRequest>, content_type = "application/json",
        description = "Optional: `expiresAt`, when the restored write expires (as on a create). No body: never."),
    security(("bearerAuth" = [])),
    responses(
        (status = 201, description = "The key was absent and is recovered at a new version", body = CreateCredentialResponse,
            headers(
                ("Location" = String, description = "The credential's metadata URL"),
                ("ETag" = String, description = "The new version, as a strong entity tag `\"<version>\"`"),
            )),
        (status = 200, description = "The version was written over the current one, at a new version", body = CreateCredentialResponse,
            headers(
                ("Location" = String, description = "The credential's metadata URL"),
                ("ETag" = String, description = "The new version, as a strong entity tag `\"<version>\"`"),
            )),
        ManageErrors,
        VersionNotFound,
        RestoreErrors,
    )
)]
pub(crate) async fn restore_version(
    State(state): State<AppState>,
    target: ProjectVersion<op::Restore>,
    condition: WriteCondition,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let ProjectVersion {
        credential: ProjectCredential { store: ProjectStore { project, id, store }, key },
        version,
    } = target;
    needs_versions(store.as_ref())?;
    if condition == WriteCondition::None {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "a restore needs If-Match: \"<current version>\" (undo a rotation) or If-None-Match: * (recover a \
             deleted key), so that a concurrent write is never overwritten unseen; nothing was changed",
        ));
    }
    let expires_at = restore_expiry(body, &headers, state.body_limit).await?;
    let outcome =
        restore_in(&state, &project.audit, store.as_ref(), &key, &version, &condition, expires_at).await?;
    Ok(written(&project.tenant, &project.project, &id, &key, &outcome))
}

/// Writes the kept `version` of `key` back under `condition`, between its
/// two audit records, expiring at `expires_at`; refused before any store
/// call when the store cannot honour the condition or the expiry. The
/// restore's, and the console's.
pub(crate) async fn restore_in(
    state: &AppState,
    audit: &crate::audit::AuditEntry,
    store: &dyn CredentialStore,
    key: &CredentialKey,
    version: &Version,
    condition: &WriteCondition,
    expires_at: Option<std::time::SystemTime>,
) -> Result<credstore_core::SetOutcome, ApiError> {
    condition.supported_by(store, "the restore")?;
    check_expiry(store, expires_at)?;
    audited(state, audit, write_status, conditional_restore(store, key, version, condition, expires_at)).await
}

/// Purge Credential Version (extension)
///
/// Destroys one kept version of `key` that is not the current one, so that
/// no copy of its value stays readable in the store: the way to be rid of
/// a leaked value once it was rotated away from. The other versions stay.
/// The current version cannot be purged (409): write a new one first, then
/// purge this one. Needs the `purge` action (`edit` is not enough);
/// recorded in the audit log (action `purge`, with the version) before and
/// after.
#[utoipa::path(
    delete,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}",
    operation_id = "purgeCredentialVersion",
    tag = TAG_STORES,
    params(VersionPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "The version is destroyed"),
        ManageErrors,
        VersionNotFound,
        PurgeVersionErrors,
    )
)]
pub(crate) async fn purge_version(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: ProjectVersion<op::Purge>,
) -> Result<Response, ApiError> {
    let ProjectVersion {
        credential: ProjectCredential { store: ProjectStore { project, store, .. }, key },
        version,
    } = target;
    no_condition(&headers, "a purge")?;
    needs_versions(store.as_ref())?;
    audited(&state, &project.audit, |_| StatusCode::NO_CONTENT, async {
        match store.purge(&key, &PurgeTarget::Version(version.clone())).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(not_kept(store.as_ref(), &key, &version)),
            Err(StoreError::PreconditionFailed { .. }) => Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "version '{version}' is the current version of credential '{key}'; write a new version \
                     first, then purge this one; nothing was changed"
                ),
            )),
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Purge Credential (extension)
///
/// Destroys `key` with every version the store keeps of it, current,
/// previous, deleted and expired, so that nothing of it stays readable in
/// the store; the key can then be set again as new. Unlike *Delete
/// Credential*, which a store that keeps deleted keys recoverable lets you
/// undo, a purge cannot be undone. On a store without versions it is a
/// delete. Needs the `purge` action (`edit` is not enough); recorded in the
/// audit log (action `purge`) before and after.
#[utoipa::path(
    delete,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions",
    operation_id = "purgeCredential",
    tag = TAG_STORES,
    params(CredentialPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "The key and its history are destroyed"),
        ManageErrors,
        StoreNotFound,
        PurgeErrors,
    )
)]
pub(crate) async fn purge_key(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: ProjectCredential<op::Purge>,
) -> Result<Response, ApiError> {
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    no_condition(&headers, "a purge")?;
    audited(&state, &project.audit, |_| StatusCode::NO_CONTENT, async {
        if store.purge(&key, &PurgeTarget::Key).await? {
            Ok(())
        } else {
            Err(missing(&key, &id))
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_the_four_the_document_names() {
        use credstore_core::VersionState;
        let doc: serde_json::Value = serde_json::from_str(crate::http::document_json()).unwrap();
        let names = &doc["components"]["schemas"]["VersionEntry"]["properties"]["state"]["enum"];
        let states =
            [VersionState::Current, VersionState::Previous, VersionState::Deleted, VersionState::Expired];
        assert_eq!(*names, serde_json::json!(states.map(VersionState::as_str)));
    }

    #[test]
    fn cursors_round_trip_and_match_their_pattern() {
        for text in ["1", "42", "9f3c0a1b2c3d4e5f", "a!#+-./:~", "0123456789abcdef0123456789abcdef"] {
            let v = Version::new(text).unwrap();
            let cursor = cursor_of(&v);
            assert_eq!(parse_cursor(&cursor).unwrap(), v);
            assert!(cursor.starts_with("v1") && cursor.len() == 2 + 2 * text.len(), "{cursor}");
        }
        let doc: serde_json::Value = serde_json::from_str(crate::http::document_json()).unwrap();
        let template = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions";
        let params = doc["paths"][template]["get"]["parameters"].as_array().unwrap();
        let cursor = params.iter().find(|p| p["name"] == "cursor").unwrap();
        assert_eq!(cursor["schema"]["pattern"], CURSOR_PATTERN);
        for bad in ["", "v1", "v10", "v1zz", "c131", "v120", "v122", "v12c"] {
            assert_eq!(parse_cursor(bad).unwrap_err().status, 422, "{bad}");
        }
    }
}
