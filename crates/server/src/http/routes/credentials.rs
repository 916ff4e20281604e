//! The credentials of a store in one tenant's project: create, list keys,
//! read metadata, delete, and *(opt-in)* read the value.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use credstore_core::{
    Credential, CredentialKey, CredentialStore, CredentialStoreExt, Error as StoreError, ListCursor,
    ListOptions, SetOutcome, StoreId,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{AuditEntry, AuditOutcome};
use crate::http::access::{
    audited, missing, op, write_audit, write_audit_durable, ProjectCredential, ProjectStore,
};
use crate::http::body::{CreateBody, CreateCredentialRequest, CreateInput};
use crate::http::conditional::{conditional_set, etag, no_condition, WriteCondition};
use crate::http::json::{json_ok, timestamp};
use crate::http::openapi::{
    CreateErrors, CredentialPath, DeleteErrors, ListErrors, ManageErrors, ReadValueErrors, StoreNotFound,
    StorePath, TAG_STORES,
};
use crate::http::problem::ApiError;
use crate::runtime::state::AppState;
use zeroize::Zeroizing;

// ---------------------------------------------------------------- shapes

/// The credential just created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedCredential {
    /// When the key was first set (RFC 3339, UTC). Kept when an existing
    /// key is overwritten.
    #[schema(example = "2025-01-01T12:00:00.000Z")]
    pub created_at: String,
    /// The key.
    pub key: String,
    /// The store's id.
    pub store_id: String,
}

/// The answer of *Create Credential in Store*.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateCredentialResponse {
    /// The credential.
    pub data: CreatedCredential,
}

/// One key in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeyEntry {
    /// The credential key.
    pub key: String,
}

/// A page of keys of one store in one project.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListCredentialsResponse {
    /// Keys in ascending byte order; never values.
    pub data: Vec<KeyEntry>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// A credential's metadata and timestamps; never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialInfo {
    /// The key.
    pub key: String,
    /// The store's id.
    pub store_id: String,
    /// The metadata given with the last write.
    pub metadata: BTreeMap<String, String>,
    /// When the key was first set (RFC 3339, UTC).
    pub created_at: String,
    /// When the key was last set (RFC 3339, UTC).
    pub updated_at: String,
    /// *(extension)* The version of the last write, also sent as the strong
    /// `ETag` `"<version>"`; opaque, changes on every write. Send it back in
    /// `If-Match` to replace exactly this version.
    #[schema(example = "3")]
    pub version: String,
    /// *(extension)* Whether the value is UTF-8 text (`text`: set with
    /// `value`, or with `valueBase64` whose bytes are UTF-8) or not
    /// (`binary`).
    pub value_kind: ValueKind,
    /// *(extension)* When the credential expires (RFC 3339, UTC), as the
    /// create's `expiresAt` set it; `null` when it never does.
    #[schema(example = "2030-01-01T00:00:00.000Z")]
    pub expires_at: Option<String>,
}

/// *(extension)* The kind of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// UTF-8 text.
    Text,
    /// Bytes that are not UTF-8.
    Binary,
}

impl ValueKind {
    /// The kind of `value`.
    pub fn of(value: &credstore_core::SecretValue) -> Self {
        if value.is_text() {
            ValueKind::Text
        } else {
            ValueKind::Binary
        }
    }
}

/// The answer of *Get Credential Metadata*.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialInfoResponse {
    /// The credential's metadata and timestamps.
    pub data: CredentialInfo,
}

/// *(extension)* A credential's value, as the value read answers it.
///
/// Exactly one of `value` (a text value) and `valueBase64` (a binary
/// value, standard padded base64) is present. No `Debug`: it holds the
/// value.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialValue<'a> {
    /// The key.
    #[schema(value_type = String)]
    pub key: &'a str,
    /// The store's id.
    #[schema(value_type = String)]
    pub store_id: &'a str,
    /// The value, when it is text (`valueKind` `text`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub value: Option<&'a str>,
    /// The value's bytes in standard, padded base64, when it is not UTF-8
    /// (`valueKind` `binary`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "3q2+7w==")]
    pub value_base64: Option<&'a str>,
    /// Which of the two the value is.
    pub value_kind: ValueKind,
    /// The version of the value, also sent as the strong `ETag`.
    #[schema(value_type = String, example = "3")]
    pub version: &'a str,
    /// When the key was first set (RFC 3339, UTC).
    pub created_at: String,
    /// When the key was last set (RFC 3339, UTC).
    pub updated_at: String,
}

/// *(extension)* The answer of *Read Credential Value*.
#[derive(Serialize, ToSchema)]
pub struct CredentialValueResponse<'a> {
    /// The credential's value and version.
    pub data: CredentialValue<'a>,
}

/// Query parameters of the key listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only keys starting with this prefix: empty, or 1 to 255 characters
    /// of `[a-zA-Z0-9-_.]`.
    #[param(pattern = r"^[a-zA-Z0-9_.-]*$", max_length = 255, example = "github-")]
    prefix: Option<String>,
    /// The `nextCursor` of the previous page (opaque; it names the last
    /// key of that page).
    #[param(
        pattern = r"^c1(?:2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aAfF]|6[1-9a-fA-F]|7[0-9aA])+$",
        min_length = 4,
        max_length = 512
    )]
    cursor: Option<String>,
    /// Keys per page, 1 to 1000; default 100.
    #[param(minimum = 1, maximum = 1000, example = 100)]
    limit: Option<usize>,
}

// ---------------------------------------------------------------- handlers

/// Create Credential in Store
///
/// Stores `value` under `key` in store `id`, in the namespace of this tenant
/// and project. Answers 201 when the key is new and 200 when it existed and
/// was overwritten (value and metadata replaced, `createdAt` kept). The value
/// is returned only by the value read, to a token with the `reveal` action.
///
/// Extensions: `valueBase64` instead of `value` stores bytes; `If-None-Match:
/// *` creates only (412 when the key exists); `If-Match: "<version>"`
/// replaces only that version and `If-Match: *` only an existing key (412
/// otherwise). A failed condition changes nothing. Both answers carry the
/// new version as a strong `ETag`.
#[utoipa::path(
    post,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials",
    operation_id = "createCredential",
    tag = TAG_STORES,
    params(
        StorePath,
        ("If-None-Match" = Option<String>, Header, pattern = r"^\*$", example = "*",
            description = "*(extension)* `*`: create only; 412 when the key exists. No other form is supported (400). Not with `If-Match` (400). A store without create-only writes answers 422."),
        ("If-Match" = Option<String>, Header, pattern = r#"^(\*|(W/)?"[!#-~]*")$"#, example = "\"3\"",
            description = "*(extension)* `\"<version>\"` (the strong `ETag` of the credential): replace only that version; 412 when the key is missing or at another version. `*`: replace only an existing key, whatever its version; 412 when it is missing. A weak tag `W/\"…\"` never matches (strong comparison): 412. A list of tags or anything else is 400; so is sending it with `If-None-Match`. A store without replace-if-version writes answers 422."),
    ),
    request_body(content = CreateCredentialRequest, content_type = "application/json",
        description = "`key` and exactly one of `value` (text) and `valueBase64` (bytes, extension); `metadata` optional. Both value fields at once is 422; neither is 400."),
    security(("bearerAuth" = [])),
    responses(
        (status = 201, description = "Created", body = CreateCredentialResponse,
            headers(
                ("Location" = String, description = "The credential's metadata URL"),
                ("ETag" = String, description = "*(extension)* The new version, as a strong entity tag `\"<version>\"`; send it in `If-Match` to replace exactly this version"),
            )),
        (status = 200, description = "An existing credential was overwritten (extension)", body = CreateCredentialResponse,
            headers(
                ("Location" = String, description = "The credential's metadata URL"),
                ("ETag" = String, description = "*(extension)* The new version, as a strong entity tag `\"<version>\"`"),
            )),
        ManageErrors,
        StoreNotFound,
        CreateErrors,
    )
)]
pub(crate) async fn create_credential(
    State(state): State<AppState>,
    target: ProjectStore<op::Create>,
    condition: WriteCondition,
    CreateBody(input): CreateBody,
) -> Result<Response, ApiError> {
    let ProjectStore { project, id, store } = target;
    let outcome = write_credential(&state, project.audit, store.as_ref(), &input, &condition).await?;
    Ok(written(&project.tenant, &project.project, &id, &input.key, &outcome))
}

/// Writes `input` under `condition`, between its two audit records
/// (`audit` with the key): refused before any store call when the store
/// takes no binary value, no expiry of it, or not the condition. The
/// create's, and the console's create and replace.
pub(crate) async fn write_credential(
    state: &AppState,
    audit: AuditEntry,
    store: &dyn CredentialStore,
    input: &CreateInput,
    condition: &WriteCondition,
) -> Result<SetOutcome, ApiError> {
    if !input.value.is_text() && !store.capabilities().binary {
        // Refused here, as the store would, but before any store call.
        return Err(StoreError::unsupported(store.id(), "binary values").into());
    }
    check_expiry(store, input.expires_at)?;
    condition.supported_by(store, "the create")?;
    let audit = audit.key(input.key.as_str());
    audited(state, &audit, write_status, conditional_set(store, input, condition)).await
}

/// 201 when a write created the key, 200 when it overwrote it.
pub(super) fn write_status(outcome: &SetOutcome) -> StatusCode {
    if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// The answer to a write (a create, a restore): its [`write_status`], the
/// created credential, its `Location` and its new version as the `ETag`.
pub(super) fn written(
    tenant: &str,
    project: &str,
    id: &credstore_core::StoreId,
    key: &credstore_core::CredentialKey,
    outcome: &SetOutcome,
) -> Response {
    let body = CreateCredentialResponse {
        data: CreatedCredential {
            created_at: timestamp(outcome.created_at),
            key: key.to_string(),
            store_id: id.to_string(),
        },
    };
    let mut resp = json_ok(write_status(outcome), &body);
    if let Ok(v) = HeaderValue::try_from(location(tenant, project, id.as_str(), key.as_str())) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(tag) = etag(&outcome.version) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    resp
}

/// Refuses an `expiresAt` as the store's own check would
/// (`WriteRequest::new`), by its clock, but before the audit record and
/// any store call: 422 when the store declares no expiry, or when the time
/// is not in its future.
pub(crate) fn check_expiry(
    store: &dyn credstore_core::CredentialStore,
    expires_at: Option<std::time::SystemTime>,
) -> Result<(), ApiError> {
    let Some(expires_at) = expires_at else { return Ok(()) };
    if !store.capabilities().expiry {
        return Err(StoreError::unsupported(store.id(), "expiring credentials").into());
    }
    if expires_at <= store.info().now() {
        return Err(ApiError::invalid_field(
            "expiresAt",
            format!(
                "is not in the future of credential store '{}': the credential would be written expired",
                store.id()
            ),
        ));
    }
    Ok(())
}

/// `cred` unless it is past its `expires_at` by the store's clock: a store
/// never returns such a credential, but a read-through cache in front of it
/// may still hold one (`cache = { .. }`), and the API answers it as absent
/// from the instant it expires.
pub(crate) fn live(
    store: &dyn credstore_core::CredentialStore,
    cred: Option<credstore_core::Credential>,
) -> Option<credstore_core::Credential> {
    cred.filter(|c| c.expires_at.is_none_or(|at| at > store.info().now()))
}

/// The metadata URL of a credential (every id is of `[a-zA-Z0-9-_.]`, so
/// nothing needs encoding).
fn location(tenant: &str, project: &str, store: &str, key: &str) -> String {
    const PARTS: [&str; 4] = ["/manage/tenants/", "/projects/", "/credential-stores/", "/credentials/"];
    let ids = [tenant, project, store, key];
    let len = PARTS.iter().chain(&ids).map(|s| s.len()).sum();
    let mut out = String::with_capacity(len);
    for (part, id) in PARTS.iter().zip(ids) {
        out.push_str(part);
        out.push_str(id);
    }
    out
}

/// List Credential Keys (extension)
///
/// The keys of store `id` in this tenant and project, in ascending order,
/// one page at a time. Never values.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials",
    operation_id = "listCredentials",
    tag = TAG_STORES,
    params(StorePath, ListQuery),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "A page of keys", body = ListCredentialsResponse),
        ManageErrors,
        StoreNotFound,
        ListErrors,
    )
)]
pub(crate) async fn list_credentials(
    target: ProjectStore<op::ListCredentials>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let body = list_page(target.store.as_ref(), q.prefix, q.cursor, q.limit).await?;
    Ok(json_ok(StatusCode::OK, &body))
}

/// One page of keys: those starting with `prefix`, after `cursor` (a
/// `nextCursor`), at most `limit`. The listing's, and the console's.
///
/// # Errors
/// 422 for a prefix, cursor or limit out of the rules; the store's error.
pub(crate) async fn list_page(
    store: &dyn CredentialStore,
    prefix: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
) -> Result<ListCredentialsResponse, ApiError> {
    let mut opts = ListOptions::new();
    if let Some(prefix) = prefix {
        opts = opts.with_prefix(prefix)?;
    }
    if let Some(limit) = limit {
        opts = opts.with_limit(limit)?;
    }
    if let Some(cursor) = cursor {
        opts = opts.with_cursor(Some(ListCursor::parse(&cursor)?));
    }
    let page = store.list(&opts).await?;
    Ok(ListCredentialsResponse {
        data: page.keys.into_iter().map(|k| KeyEntry { key: k.to_string() }).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    })
}

/// Get Credential Metadata (extension)
///
/// A credential's metadata, timestamps, version (also the strong `ETag`) and
/// value kind (`text` or `binary`). Never its value.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}",
    operation_id = "getCredential",
    tag = TAG_STORES,
    params(CredentialPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The credential's metadata, version and value kind", body = CredentialInfoResponse,
            headers(("ETag" = String, description = "*(extension)* The credential's version, as a strong entity tag `\"<version>\"`; send it in `If-Match` on a create to replace exactly this version"))),
        ManageErrors,
        StoreNotFound,
    )
)]
pub(crate) async fn get_credential(
    target: ProjectCredential<op::ReadMetadata>,
) -> Result<Response, ApiError> {
    let ProjectCredential { store: ProjectStore { id, store, .. }, key } = target;
    let cred = current(store.as_ref(), &id, &key).await?;
    let body = CredentialInfoResponse { data: info_of(&id, &key, &cred) };
    let mut resp = json_ok(StatusCode::OK, &body);
    if let Some(tag) = etag(&cred.version) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    Ok(resp)
}

/// The credential `key` as stored now, unless it has expired: the
/// metadata read's and the value read's.
///
/// # Errors
/// 404 when it is missing or expired; the store's error.
pub(crate) async fn current(
    store: &dyn CredentialStore,
    id: &StoreId,
    key: &CredentialKey,
) -> Result<Credential, ApiError> {
    live(store, store.get(key).await?).ok_or_else(|| missing(key, id))
}

/// The metadata read's answer for `cred`: never its value.
pub(crate) fn info_of(id: &StoreId, key: &CredentialKey, cred: &Credential) -> CredentialInfo {
    CredentialInfo {
        key: key.to_string(),
        store_id: id.to_string(),
        metadata: cred.metadata.as_map().clone(),
        created_at: timestamp(cred.created_at),
        updated_at: timestamp(cred.updated_at),
        version: cred.version.to_string(),
        value_kind: ValueKind::of(&cred.value),
        expires_at: cred.expires_at.map(timestamp),
    }
}

/// The metadata of each of `keys` (`None` for one missing or expired), in
/// one batch read ([`CredentialStore::get_many`]): the console's listing.
///
/// # Errors
/// The store's error.
pub(crate) async fn infos(
    store: &dyn CredentialStore,
    id: &StoreId,
    keys: &[CredentialKey],
) -> Result<Vec<(CredentialKey, Option<CredentialInfo>)>, ApiError> {
    let creds = store.get_many(keys).await?;
    Ok(keys
        .iter()
        .zip(creds)
        .map(|(key, cred)| {
            let info = live(store, cred).map(|c| info_of(id, key, &c));
            (key.clone(), info)
        })
        .collect())
}

/// Delete Credential (extension)
///
/// Deletes a credential, value and metadata, from this tenant and project.
#[utoipa::path(
    delete,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}",
    operation_id = "deleteCredential",
    tag = TAG_STORES,
    params(CredentialPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 204, description = "Deleted"),
        ManageErrors,
        StoreNotFound,
        DeleteErrors,
    )
)]
pub(crate) async fn delete_credential(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: ProjectCredential<op::Delete>,
) -> Result<Response, ApiError> {
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    no_condition(&headers, "a delete")?;
    delete_in(&state, &project.audit, &id, store.as_ref(), &key).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes `key` between its two audit records: the delete's, and the
/// console's.
///
/// # Errors
/// 404 when the key is missing; the store's error; 503 when the audit log
/// cannot be written (nothing is deleted).
pub(crate) async fn delete_in(
    state: &AppState,
    audit: &AuditEntry,
    id: &StoreId,
    store: &dyn CredentialStore,
    key: &CredentialKey,
) -> Result<(), ApiError> {
    audited(state, audit, |_| StatusCode::NO_CONTENT, async {
        if store.delete(key).await? {
            Ok(())
        } else {
            Err(missing(key, id))
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            location("t", "p", "memory-default", "k.1"),
            "/manage/tenants/t/projects/p/credential-stores/memory-default/credentials/k.1"
        );
    }
}

/// Read Credential Value (extension)
///
/// A credential's value (text as `value`, bytes as `valueBase64`) and its
/// version (also the strong `ETag`), never cached (`Cache-Control:
/// no-store`). Only for a token with the `reveal` action, which no token
/// has unless the configuration grants it (the admin token included). Every
/// read is recorded in the audit log (action `reveal`, never the value)
/// before the value is sent; when the record cannot be written the answer
/// is 503 and the value is not sent.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/value",
    operation_id = "readCredentialValue",
    tag = TAG_STORES,
    params(CredentialPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The credential's value and version", body = CredentialValueResponse,
            headers(
                ("ETag" = String, description = "The credential's version, as a strong entity tag `\"<version>\"`"),
                ("Cache-Control" = String, description = "`no-store`: the answer holds a secret"),
            )),
        ManageErrors,
        StoreNotFound,
        ReadValueErrors,
    )
)]
pub(crate) async fn read_value(
    State(state): State<AppState>,
    target: ProjectCredential<op::Reveal>,
) -> Result<Response, ApiError> {
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    let read = current(store.as_ref(), &id, &key).await;
    reveal(&state, &project.audit, &id, read).await
}

/// Answers a value read (current or at a version): records it, on disk,
/// before anything is sent, then sends the value (`Cache-Control:
/// no-store`, the version as the `ETag`) from a zeroizing buffer.
pub(crate) async fn reveal(
    state: &AppState,
    audit: &crate::audit::AuditEntry,
    id: &credstore_core::StoreId,
    read: Result<credstore_core::Credential, ApiError>,
) -> Result<Response, ApiError> {
    let cred = record_reveal(state, audit, read).await?;
    let encoded = (!cred.value.is_text()).then(|| {
        use base64::Engine as _;
        let bytes = cred.value.expose_secret();
        let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
        base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut out);
        out
    });
    let body = CredentialValueResponse {
        data: CredentialValue {
            key: cred.key.as_str(),
            store_id: id.as_str(),
            value: cred.value.expose_str().ok(),
            value_base64: encoded.as_deref().map(String::as_str),
            value_kind: ValueKind::of(&cred.value),
            version: cred.version.as_str(),
            created_at: timestamp(cred.created_at),
            updated_at: timestamp(cred.updated_at),
        },
    };
    let json = secret_json(&body, cred.value.len())?;
    let mut resp = Response::new(axum::body::Body::from(axum::body::Bytes::from_owner(json)));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(tag) = etag(&cred.version) {
        headers.insert(header::ETAG, tag);
    }
    Ok(resp)
}

/// Records a value read (`read`, its outcome) in the audit log, on disk
/// when it succeeded, before the value is shown to anyone: the value
/// reads', and the console's reveal.
///
/// # Errors
/// The read's error, recorded; 503 when the record cannot be written (the
/// value is then not returned).
pub(crate) async fn record_reveal(
    state: &AppState,
    audit: &crate::audit::AuditEntry,
    read: Result<Credential, ApiError>,
) -> Result<Credential, ApiError> {
    let (outcome, status) = match &read {
        Ok(_) => (AuditOutcome::Succeeded, StatusCode::OK),
        Err(e) => (AuditOutcome::Failed, e.status),
    };
    // Recorded, on disk, before anything is sent: no value leaves unrecorded.
    match outcome {
        AuditOutcome::Succeeded => write_audit_durable(state, audit, outcome, Some(status.as_u16())).await?,
        _ => write_audit(state, audit, outcome, Some(status.as_u16()))?,
    }
    read
}

/// Serializes an answer that holds a secret into a zeroizing buffer, grown
/// by hand so no copy of it is left behind; the response body owns the
/// buffer and zeroizes it when dropped.
pub(crate) fn secret_json<T: Serialize>(body: &T, secret_len: usize) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    struct Writer(Zeroizing<Vec<u8>>);
    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if self.0.capacity() < self.0.len() + bytes.len() {
                let mut bigger = Zeroizing::new(Vec::with_capacity((self.0.len() + bytes.len()) * 2));
                bigger.extend_from_slice(&self.0);
                self.0 = bigger;
            }
            self.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Room for the base64 of the value and the other members.
    let mut writer = Writer(Zeroizing::new(Vec::with_capacity(secret_len.div_ceil(3) * 4 + 1024)));
    serde_json::to_writer(&mut writer, body).map_err(|e| ApiError::internal(&e))?;
    Ok(writer.0)
}
