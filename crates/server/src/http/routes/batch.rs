//! *(extension)* Batch reads: the values of many keys of one store in one
//! request, for tokens with the `reveal` action, each key recorded in the
//! audit log as a value read is.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use credstore_core::{Credential, CredentialKey, MAX_BATCH_KEYS};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::credentials::{live, secret_json, ValueKind};
use crate::audit::AuditOutcome;
use crate::http::access::{op, write_audit, write_audit_durable, ProjectStore};
use crate::http::body::{check_json_content_type, read_body};
use crate::http::json::timestamp;
use crate::http::openapi::{BatchReadErrors, ManageErrors, StoreNotFound, StorePath, TAG_STORES};
use crate::http::problem::ApiError;
use crate::runtime::state::AppState;

// ---------------------------------------------------------------- shapes

/// *(extension)* The body of *Read Credential Values*: the keys to read.
/// Unknown fields are refused (400).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchReadRequest {
    /// The keys, each answered in this order (a key given twice is answered
    /// twice): at most 1000, each 1 to 255 characters of `[a-zA-Z0-9-_.]`.
    #[schema(schema_with = keys_schema)]
    pub keys: Vec<String>,
}

/// The schema of `keys`: at most [`MAX_BATCH_KEYS`] keys, each by the key
/// rule of the create body.
fn keys_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(r"^[a-zA-Z0-9_.-]+$"))
        .min_length(Some(1))
        .max_length(Some(255));
    ArrayBuilder::new()
        .items(key)
        .max_items(Some(MAX_BATCH_KEYS))
        .description(Some(
            "The keys, each answered in this order (a key given twice is answered twice): at most 1000, each \
             1 to 255 characters of `[a-zA-Z0-9-_.]`.",
        ))
        .examples([serde_json::json!(["github-token", "db-password"])])
        .build()
}

/// *(extension)* One key of a batch read: its value, version, metadata and
/// times as *Read Credential Value* and *Get Credential Metadata* give
/// them, or `found: false` alone for a key that is not stored (never set,
/// deleted or expired). No `Debug`: it holds the value.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadEntry<'a> {
    /// The key, as asked.
    #[schema(value_type = String, example = "github-token")]
    pub key: &'a str,
    /// Whether the key is stored; when `false`, no other member is sent.
    pub found: bool,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_kind: Option<ValueKind>,
    /// The version of the value (what *Get Credential Metadata* sends as
    /// the `ETag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "3")]
    pub version: Option<&'a str>,
    /// The metadata given with the last write.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub metadata: Option<&'a BTreeMap<String, String>>,
    /// When the key was first set (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// When the key was last set (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// When the credential expires (RFC 3339, UTC); `null` when it never
    /// does.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2030-01-01T00:00:00.000Z")]
    pub expires_at: Option<Option<String>>,
}

/// *(extension)* The answer of *Read Credential Values*.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchReadResponse<'a> {
    /// The store's id.
    #[schema(value_type = String)]
    pub store_id: &'a str,
    /// One entry per key of the request, in its order.
    pub data: Vec<BatchReadEntry<'a>>,
}

/// The keys of a batch read's body, checked before any read.
///
/// # Errors
/// 400 for a content type other than JSON, malformed JSON, an unknown
/// field or a missing `keys`; 413 over the body limit; 422 naming `keys`
/// for more than [`MAX_BATCH_KEYS`] keys, or `keys[i]` for a key that breaks
/// the id rules.
async fn batch_keys(
    body: axum::body::Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Vec<CredentialKey>, ApiError> {
    let bytes = read_body(body, headers, limit).await?;
    check_json_content_type(headers)?;
    let request: BatchReadRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be an object with the one field keys (an array of keys): {e}"
        ))
    })?;
    if request.keys.len() > MAX_BATCH_KEYS {
        let why = format!("{} keys in one batch; at most {MAX_BATCH_KEYS}", request.keys.len());
        return Err(ApiError::invalid_field("keys", why));
    }
    request
        .keys
        .into_iter()
        .enumerate()
        .map(|(i, k)| CredentialKey::new(k).map_err(|e| ApiError::invalid_field(&format!("keys[{i}]"), e)))
        .collect()
}

// ---------------------------------------------------------------- handler

/// Read Credential Values (extension)
///
/// The values of many keys of one store in one request: one entry per key
/// of the body's `keys`, in their order, each with its value (text as
/// `value`, bytes as `valueBase64`), version, metadata and times, or
/// `found: false` for a key that is not stored. The store reads the batch
/// in one call (one query for SQLite and PostgreSQL, `BatchGetSecretValue`
/// for AWS Secrets Manager). At most 1000 keys; the keys are checked before
/// anything is read. Never cached (`Cache-Control: no-store`). Only for a
/// token with the `reveal` action, as *Read Credential Value*; every key is
/// recorded in the audit log as its value read would be (action `reveal`,
/// one record per key: `succeeded` with 200, or `failed` with 404 for a key
/// not stored) before any value is sent; when the records cannot be
/// written the answer is 503 and no value is sent. When the store fails,
/// nothing is sent and each key is recorded as `failed` with the status
/// answered.
#[utoipa::path(
    post,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials:batchRead",
    operation_id = "readCredentialValues",
    tag = TAG_STORES,
    params(StorePath),
    request_body(content = BatchReadRequest, content_type = "application/json"),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "One entry per key, in the order asked", body = BatchReadResponse,
            headers(
                ("Cache-Control" = String, description = "`no-store`: the answer holds secrets"),
            )),
        ManageErrors,
        StoreNotFound,
        BatchReadErrors,
    )
)]
pub(crate) async fn batch_read(
    State(state): State<AppState>,
    target: ProjectStore<op::Reveal>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let ProjectStore { project, id, store } = target;
    let keys = batch_keys(body, &headers, state.body_limit).await?;
    let read = store
        .get_many(&keys)
        .await
        .map(|answers| answers.into_iter().map(|c| live(store.as_ref(), c)).collect::<Vec<_>>())
        .map_err(ApiError::from);
    // Recorded before anything is sent, the last record on disk (which
    // takes every record written before it there too).
    let last = keys.len().saturating_sub(1);
    for (i, key) in keys.iter().enumerate() {
        let entry = project.audit.clone().key(key.as_str());
        let (outcome, status) = match &read {
            Ok(answers) if answers[i].is_some() => (AuditOutcome::Succeeded, 200),
            Ok(_) => (AuditOutcome::Failed, 404),
            Err(e) => (AuditOutcome::Failed, e.status.as_u16()),
        };
        if i == last && read.is_ok() {
            write_audit_durable(&state, &entry, outcome, Some(status)).await?;
        } else {
            write_audit(&state, &entry, outcome, Some(status))?;
        }
    }
    let answers = read?;
    respond(id.as_str(), &keys, &answers)
}

/// The answer: every value in zeroizing buffers, `Cache-Control: no-store`.
fn respond(
    store_id: &str,
    keys: &[CredentialKey],
    answers: &[Option<Credential>],
) -> Result<Response, ApiError> {
    let encoded: Vec<Option<Zeroizing<String>>> = answers
        .iter()
        .map(|a| {
            a.as_ref().filter(|c| !c.value.is_text()).map(|c| {
                use base64::Engine as _;
                let bytes = c.value.expose_secret();
                let mut out = Zeroizing::new(String::with_capacity(bytes.len().div_ceil(3) * 4));
                base64::engine::general_purpose::STANDARD.encode_string(bytes, &mut out);
                out
            })
        })
        .collect();
    let data = keys
        .iter()
        .zip(answers)
        .zip(&encoded)
        .map(|((key, answer), base64)| match answer {
            None => BatchReadEntry {
                key: key.as_str(),
                found: false,
                value: None,
                value_base64: None,
                value_kind: None,
                version: None,
                metadata: None,
                created_at: None,
                updated_at: None,
                expires_at: None,
            },
            Some(c) => BatchReadEntry {
                key: key.as_str(),
                found: true,
                value: c.value.expose_str().ok(),
                value_base64: base64.as_deref().map(String::as_str),
                value_kind: Some(ValueKind::of(&c.value)),
                version: Some(c.version.as_str()),
                metadata: Some(c.metadata.as_map()),
                created_at: Some(timestamp(c.created_at)),
                updated_at: Some(timestamp(c.updated_at)),
                expires_at: Some(c.expires_at.map(timestamp)),
            },
        })
        .collect();
    let secret_len = answers.iter().flatten().map(|c| c.value.len() * 2).sum::<usize>() + keys.len() * 300;
    let json = secret_json(&BatchReadResponse { store_id, data }, secret_len)?;
    let mut resp = Response::new(axum::body::Body::from(axum::body::Bytes::from_owner(json)));
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}
