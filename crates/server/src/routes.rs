//! The HTTP handlers and the JSON shapes they exchange.
//!
//! The routes of the Credential Stores API (shapes matched exactly):
//! - `GET  /manage/tenants/{tenantId}/projects/{projectId}/credential-stores`
//! - `POST /manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials`
//!
//! Extensions (documented in `/openapi.json` like the rest):
//! - `GET    …/credential-stores/{id}/credentials` lists keys (never values), paginated
//! - `GET    …/credential-stores/{id}/credentials/{key}` reads metadata and timestamps (never the value)
//! - `DELETE …/credential-stores/{id}/credentials/{key}`
//! - `GET /healthz`, `GET /readyz`, `GET /openapi.json` (no token needed)
//! - `GET /metrics` (a token with the `metrics` action; see [`crate::metrics`])
//!
//! *List Credential Stores* and `/readyz` answer from the store prober's
//! last results ([`crate::status`]), never waiting on a probe. Creates and
//! deletes are recorded in the audit log before and after the store call,
//! and every 401 and 403 is recorded too ([`crate::audit`]); a record that
//! cannot be written is 503 before anything changes.
//!
//! Every request is checked in this order: token (401), path ids (422),
//! token scope (403), store (404), the namespace `{tenantId}/{projectId}`
//! against the store's cap (422), content type, conditional headers and body
//! (400, 413), field rules and what the store supports (422), then the store
//! call (412 when a condition does not hold, 503 when unavailable or over
//! the store timeout, which the store's
//! [`TimeoutLayer`](credstore_core::layers::TimeoutLayer) applies; see
//! [`crate::state::Stores`]).
//!
//! Conditional and binary writes *(extensions)*: see [`write_condition`]
//! for `If-None-Match` / `If-Match` on a create, [`parse_create`] for
//! `valueBase64`. A create's answer and the metadata read carry the
//! credential's version as a strong `ETag: "<version>"`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use credstore_core::{
    validate_id, CredentialKey, CredentialStore, Error as StoreError, ListCursor, ListOptions, Metadata,
    Namespace, NamespaceError, SecretValue, SetOptions, SetOutcome, StoreId, Version,
};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use zeroize::Zeroizing;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::{Action, TokenEntry};
use crate::problem::{ApiError, Problem};
use crate::request::RequestId;
use crate::state::AppState;

/// The tag of the Credential Stores API's operations in the OpenAPI document.
pub const TAG_STORES: &str = "Credential Stores";
/// The tag of the operational endpoints.
pub const TAG_OPS: &str = "Operations";

// ---------------------------------------------------------------- shapes

/// One store in the list of credential stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreEntry {
    /// Whether the store answered its availability probe in time.
    pub available: bool,
    /// The store's id.
    #[schema(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "sqlite-default")]
    pub id: String,
    /// Why the store is unavailable ("no answer within 3000 ms", "vault is
    /// sealed"). Always a string: the empty string `""` when `available` is
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

/// The body of *Create Credential in Store*: a text value in `value`, or
/// *(extension)* a binary value in `valueBase64`; exactly one of the two.
/// Unknown fields are refused (400).
// No `Debug` on these shapes: they hold the value.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documents the body; the handler parses it by hand for precise errors.
pub enum CreateCredentialRequest {
    /// A text value, as in the Credential Stores API.
    Text(CreateTextCredential),
    /// A binary value, base64-encoded (extension).
    Binary(CreateBinaryCredential),
}

/// A create body with a text `value` (the Credential Stores API's shape).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Documents the body; the handler parses it by hand for precise errors.
pub struct CreateTextCredential {
    /// The credential key: 1 to 255 characters of `[a-zA-Z0-9-_.]`.
    #[schema(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "string")]
    key: String,
    /// The credential value: any string of at most 65,536 bytes (UTF-8),
    /// stored as a text value. Never returned by any endpoint.
    #[schema(example = "string")]
    value: String,
    /// The metadata for the credential: at most 16 entries; keys follow the
    /// id pattern and are at most 64 bytes; values are at most 256 bytes of
    /// text without control characters; keys and values together at most
    /// 900 bytes. Omitted or `null` is empty.
    #[schema(required = false, nullable = true)]
    metadata: Option<BTreeMap<String, String>>,
}

/// *(extension)* A create body with a binary value in `valueBase64`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // Documents the body; the handler parses it by hand for precise errors.
pub struct CreateBinaryCredential {
    /// The credential key: 1 to 255 characters of `[a-zA-Z0-9-_.]`.
    #[schema(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "signing-key")]
    key: String,
    /// *(extension)* The value's bytes in standard, padded base64 (RFC 4648
    /// §4: `A-Z a-z 0-9 + /`, `=` padding, no line breaks or spaces, unused
    /// bits zero), at most 65,536 bytes once decoded (87,384 characters).
    /// Bytes that are UTF-8 text are stored as a text value (`valueKind`
    /// `text`), any others as a binary value (`binary`). Never returned by
    /// any endpoint.
    #[schema(
        pattern = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$",
        max_length = 87384,
        example = "3q2+7w=="
    )]
    value_base64: String,
    /// The metadata for the credential, as with a text value.
    #[schema(required = false, nullable = true)]
    metadata: Option<BTreeMap<String, String>>,
}

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

/// The answer of *Get Credential Metadata*.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialInfoResponse {
    /// The credential's metadata and timestamps.
    pub data: CredentialInfo,
}

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

/// Path parameters of project-level routes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct ProjectPath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "tenant_123")]
    pub tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "project_456")]
    pub project_id: String,
}

/// Path parameters of store-level routes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct StorePath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "tenant_123")]
    pub tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "project_456")]
    pub project_id: String,
    /// Resource identifier: the credential store's id.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "sqlite-default")]
    pub id: String,
}

/// Path parameters of credential-level routes.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct CredentialPath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "tenant_123")]
    pub tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "project_456")]
    pub project_id: String,
    /// Resource identifier: the credential store's id.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "sqlite-default")]
    pub id: String,
    /// The credential key.
    #[param(pattern = r"^[a-zA-Z0-9\-_.]+$", min_length = 1, max_length = 255, example = "github-token")]
    pub key: String,
}

/// Query parameters of the key listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only keys starting with this prefix.
    pub prefix: Option<String>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
    /// Keys per page, 1 to 1000; default 100.
    pub limit: Option<usize>,
}

// ---------------------------------------------------------------- checks

/// Checks a tenant or project id (and token scopes in the config): one
/// segment of a [`Namespace`], that is the id pattern
/// `^[a-zA-Z0-9\-_.]+$`, 1 to 255 bytes, and not `.` or `..`.
///
/// # Errors
/// 422 naming `field` and the rule.
pub fn check_scope_id(field: &str, id: &str) -> Result<(), ApiError> {
    validate_id(id).map_err(|e| ApiError::invalid_field(field, e))?;
    if id == "." || id == ".." {
        return Err(ApiError::invalid_field(field, "must not be '.' or '..'"));
    }
    Ok(())
}

/// The namespace of a tenant's project in every store: `{tenant}/{project}`,
/// built with core's [`Namespace`] after each id passed
/// [`check_scope_id`].
///
/// # Errors
/// 422 naming `tenantId` or `projectId` and the rule.
pub fn project_namespace(tenant: &str, project: &str) -> Result<Namespace, ApiError> {
    check_scope_id("tenantId", tenant)?;
    check_scope_id("projectId", project)?;
    Namespace::new(format!("{tenant}/{project}")).map_err(|e| namespace_error(e, None))
}

/// A 422 for an [`StoreError::InvalidNamespace`] of a project namespace:
/// a bad segment names `tenantId` or `projectId`; a namespace longer than
/// `store` holds names both, with the store's cap.
fn namespace_error(err: StoreError, store: Option<&StoreId>) -> ApiError {
    let StoreError::InvalidNamespace { shown, reason } = &err else { return ApiError::from(err) };
    let field = |index: &usize| if *index == 0 { "tenantId" } else { "projectId" };
    match reason {
        NamespaceError::Segment { index, reason } => ApiError::invalid_field(field(index), reason),
        NamespaceError::DotSegment { index, .. } => {
            ApiError::invalid_field(field(index), "must not be '.' or '..'")
        }
        NamespaceError::TooLong { len, max } => {
            let store = store.map(|s| format!(" of store '{s}'")).unwrap_or_default();
            ApiError::invalid_field(
                "tenantId and projectId",
                format!(
                    "together they make the namespace {shown} of {len} bytes; the namespaces{store} hold at \
                     most {max} bytes"
                ),
            )
        }
        _ => ApiError::from(err),
    }
}

fn check_store_id(id: &str) -> Result<StoreId, ApiError> {
    StoreId::new(id).map_err(|e| match e {
        credstore_core::Error::InvalidKey { reason, .. } => ApiError::invalid_field("id", reason),
        other => ApiError::from(other),
    })
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path parameters: {}", rejection.body_text()))
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

// ---------------------------------------------------------------- conditions

/// The condition of a create, from its `If-Match` / `If-None-Match`
/// headers (RFC 9110 §13.1). See [`write_condition`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// No conditional header: create or overwrite, as the Credential Stores
    /// API does.
    None,
    /// `If-None-Match: *`: create only if the key is absent.
    Absent,
    /// `If-Match: *`: overwrite only if the key exists, whatever its version.
    Exists,
    /// `If-Match: "<version>"`: overwrite only this version.
    Version(Version),
    /// `If-Match` with an entity tag that no credential can have (a weak
    /// tag `W/"…"`, which never matches under the strong comparison
    /// `If-Match` uses, or a tag that is not a version this server makes):
    /// the condition is false whatever is stored. Holds the reason.
    Never(&'static str),
}

impl WriteCondition {
    /// The capability the condition needs, named for an error message.
    fn needs(&self, caps: &credstore_core::Capabilities) -> Option<(&'static str, &'static str)> {
        match self {
            WriteCondition::None => None,
            WriteCondition::Absent if !caps.create_only => Some(("create-only writes", "If-None-Match")),
            WriteCondition::Exists | WriteCondition::Version(_) | WriteCondition::Never(_)
                if !caps.replace_if_version =>
            {
                Some(("replace-if-version writes", "If-Match"))
            }
            _ => None,
        }
    }
}

/// The one header value of `name`, trimmed; `None` when absent.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &header::HeaderName,
) -> Result<Option<&'h [u8]>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "{} is sent more than once; send one {} header with one entity tag",
            canonical(name),
            canonical(name)
        )));
    }
    Ok(Some(first.as_bytes().trim_ascii()))
}

fn canonical(name: &header::HeaderName) -> &'static str {
    if name == header::IF_MATCH {
        "If-Match"
    } else {
        "If-None-Match"
    }
}

/// Reads the conditional headers of a create:
///
/// | header | meaning |
/// | --- | --- |
/// | none | create or overwrite (the Credential Stores API's behaviour) |
/// | `If-None-Match: *` | create only; 412 when the key exists |
/// | `If-Match: "<version>"` | overwrite only that version (the strong `ETag` the server sent); 412 when the key is missing or at another version |
/// | `If-Match: *` | overwrite only if the key exists, whatever its version; 412 when it is missing |
/// | `If-Match: W/"…"` | a weak tag never matches (strong comparison): 412 |
///
/// # Errors
/// 400 for both headers at once, a header sent twice, a list of tags, a
/// value that is not an entity tag or `*`, and an `If-None-Match` other
/// than `*`.
pub fn write_condition(headers: &HeaderMap) -> Result<WriteCondition, ApiError> {
    let if_match = single_header(headers, &header::IF_MATCH)?;
    let if_none_match = single_header(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (None, None) => Ok(WriteCondition::None),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "send If-Match or If-None-Match, not both: If-None-Match: * creates only, If-Match replaces only",
        )),
        (None, Some(b"*")) => Ok(WriteCondition::Absent),
        (None, Some(_)) => Err(ApiError::bad_request(
            "If-None-Match supports only * on a create (create only if the key is absent); entity tags and \
             lists are not supported",
        )),
        (Some(b"*"), None) => Ok(WriteCondition::Exists),
        (Some(tag), None) => if_match_tag(tag),
    }
}

/// One `If-Match` entity tag: `"<version>"`, or a weak `W/"…"`.
fn if_match_tag(tag: &[u8]) -> Result<WriteCondition, ApiError> {
    let (weak, quoted) = match tag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    };
    // RFC 9110 §8.8.3: DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
    let inner = quoted
        .strip_prefix(b"\"")
        .and_then(|q| q.strip_suffix(b"\""))
        .filter(|i| i.iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80));
    let Some(inner) = inner else {
        let what = if tag.contains(&b',') {
            "If-Match takes one entity tag; lists are not supported"
        } else {
            "If-Match must be * or one entity tag in double quotes, as the ETag header gives it: \
             If-Match: \"<version>\""
        };
        return Err(ApiError::bad_request(what));
    };
    if weak {
        return Ok(WriteCondition::Never(
            "If-Match has a weak entity tag (W/\"…\"), which never matches: If-Match uses the strong \
             comparison; send the ETag exactly as the server gave it (a proxy may have weakened it)",
        ));
    }
    match std::str::from_utf8(inner).ok().and_then(|v| Version::new(v).ok()) {
        Some(version) => Ok(WriteCondition::Version(version)),
        None => Ok(WriteCondition::Never(
            "If-Match names an entity tag that is not a version of this server, so no credential has it",
        )),
    }
}

/// How many times `If-Match: *` reads the current version and replaces it
/// before it gives up on a key that keeps changing (409).
const EXISTS_ATTEMPTS: usize = 3;

/// Writes `input` under `condition`; a condition that does not hold is
/// 412 and changes nothing.
async fn conditional_set(
    store: &dyn CredentialStore,
    input: &CreateInput,
    condition: &WriteCondition,
) -> Result<SetOutcome, ApiError> {
    let (key, value, meta) = (&input.key, &input.value, &input.metadata);
    let failed = |reason: &str| ApiError::from(StoreError::precondition_failed(store.id(), key, reason));
    let options = match condition {
        WriteCondition::None => SetOptions::new(),
        WriteCondition::Absent => SetOptions::create_only(),
        WriteCondition::Version(v) => SetOptions::replace(v.clone()),
        WriteCondition::Never(reason) => return Err(failed(reason)),
        WriteCondition::Exists => {
            // A replace at the version just read: atomic against a delete
            // (412) and a concurrent write (read again).
            for _ in 0..EXISTS_ATTEMPTS {
                let Some(current) = store.version(key).await? else {
                    return Err(failed("the key does not exist (If-Match: *)"));
                };
                match store.set_opts(key, value, meta, &SetOptions::replace(current)).await {
                    Err(StoreError::PreconditionFailed { .. }) => continue,
                    other => return other.map_err(ApiError::from),
                }
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "credential '{key}' changed under {EXISTS_ATTEMPTS} attempts in a row to replace it \
                     (If-Match: *); nothing was changed; retry"
                ),
            ));
        }
    };
    Ok(store.set_opts(key, value, meta, &options).await?)
}

/// The strong `ETag` of `version`: `"<version>"`.
fn etag(version: &Version) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

/// Refuses conditional headers on a route that makes no conditional
/// writes (delete), rather than ignoring a condition the client relies on.
///
/// # Errors
/// 400 when `If-Match` or `If-None-Match` is present.
fn no_condition(headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
        if headers.contains_key(&name) {
            return Err(ApiError::bad_request(format!(
                "{} is not supported on {what}: conditional writes are creates only",
                canonical(&name)
            )));
        }
    }
    Ok(())
}

/// Authenticates, validates the path ids and checks the token scope;
/// returns the project's namespace and the token. A 401 or 403 is recorded
/// in the audit log (`audit` names the request); when that record cannot
/// be written the answer is 503 instead.
fn admit<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    audit: &mut AuditEntry,
    tenant: &str,
    project: &str,
    action: Action,
) -> Result<(Namespace, &'a TokenEntry), ApiError> {
    let token = match state.auth.authenticate(headers) {
        Ok(t) => t,
        Err(e) => return Err(denied(state, audit, e)),
    };
    audit.token = Some(token.name.clone());
    let ns = project_namespace(tenant, project)?;
    token.check(tenant, project, action).map_err(|e| denied(state, audit, e))?;
    Ok((ns, token))
}

/// Records a refusal (401, 403) in the audit log; the refusal itself, or
/// 503 when it cannot be recorded.
fn denied(state: &AppState, audit: &AuditEntry, err: ApiError) -> ApiError {
    match write_audit(state, audit, AuditOutcome::Denied, Some(err.status.as_u16())) {
        Ok(()) => err,
        Err(unwritable) => unwritable,
    }
}

/// Appends one record; 503 when it cannot be written.
fn write_audit(
    state: &AppState,
    audit: &AuditEntry,
    outcome: AuditOutcome,
    status: Option<u16>,
) -> Result<(), ApiError> {
    state.audit.append(&audit.record(outcome, status)).map_err(|e| {
        tracing::error!(error = %e, audit_log = state.audit.target(), "cannot write the audit log");
        ApiError::unavailable(
            "the audit log cannot be written, so the request was refused and nothing was changed",
        )
    })
}

/// Carries out a mutation between its two audit records: `started` before
/// (503 and nothing done when it cannot be written), then `succeeded` or
/// `failed` with the status answered (a failure to write that one is
/// logged; the change is already made). A mutation cut off before the store
/// answered (the request timeout, or the client gone) is recorded
/// `abandoned`: the store may or may not have made the change.
async fn audited<T>(
    state: &AppState,
    audit: &AuditEntry,
    success: impl Fn(&T) -> StatusCode,
    mutation: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    write_audit(state, audit, AuditOutcome::Started, None)?;
    let mut pending = Pending { state, audit, open: true };
    let result = mutation.await;
    pending.open = false;
    let (outcome, status) = match &result {
        Ok(v) => (AuditOutcome::Succeeded, success(v)),
        Err(e) => (AuditOutcome::Failed, e.status),
    };
    // Already logged by write_audit; the answer stays the mutation's.
    let _ = write_audit(state, audit, outcome, Some(status.as_u16()));
    result
}

/// Records `abandoned` when a mutation's future is dropped mid-way.
struct Pending<'a> {
    state: &'a AppState,
    audit: &'a AuditEntry,
    open: bool,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = write_audit(self.state, self.audit, AuditOutcome::Abandoned, None);
        }
    }
}

/// The audit entry of a project route.
fn audit_entry(rid: &RequestId, action: AuditAction, tenant: &str, project: &str) -> AuditEntry {
    AuditEntry::new(&rid.0, action).project(tenant, project)
}

/// The handle of store `id` on namespace `ns` (the store's
/// `with_namespace`, cached; it keeps the store's timeout and tracing
/// layers).
fn project_store(
    state: &AppState,
    id: &StoreId,
    ns: &Namespace,
) -> Result<Arc<dyn CredentialStore>, ApiError> {
    match state.stores.handle(id.as_str(), ns) {
        None => Err(ApiError::not_found(format!("no credential store with id '{id}'"))),
        Some(Ok(store)) => Ok(store),
        Some(Err(e)) => Err(namespace_error(e, Some(id))),
    }
}

fn json_ok<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

// ---------------------------------------------------------------- handlers

/// List Credential Stores
///
/// Every store the server serves, with the availability its background
/// prober found last and when (`checkedAt`, an extension). The answer never
/// waits for a probe, so one dead backend never stalls the list; a result
/// older than `probe_staleness_ms` is probed again for later answers. The
/// list is the same for every project; credentials inside each store are
/// per project.
#[utoipa::path(
    get,
    path = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores",
    operation_id = "listCredentialStores",
    tag = TAG_STORES,
    params(ProjectPath),
    security(("bearerAuth" = [])),
    responses(
        (status = 200, description = "The stores and their availability", body = ListStoresResponse),
        (status = 400, description = "Bad Request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not view this tenant or project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not Found", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "tenantId or projectId breaks the id rules", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal Server Error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "A refusal (401, 403) could not be written to the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_stores(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    path: Result<Path<ProjectPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(p) = path.map_err(path_error)?;
    let mut audit = audit_entry(&rid, AuditAction::ListStores, &p.tenant_id, &p.project_id);
    admit(&state, &headers, &mut audit, &p.tenant_id, &p.project_id, Action::View)?;
    let data = state
        .status
        .snapshot()
        .into_iter()
        .map(|s| {
            let a = s.last.availability;
            StoreEntry {
                available: a.available,
                id: s.id.to_string(),
                reason: if a.available { String::new() } else { a.reason.unwrap_or_default() },
                kind: s.kind.to_string(),
                checked_at: timestamp(s.last.checked_at),
            }
        })
        .collect();
    Ok(json_ok(StatusCode::OK, &ListStoresResponse { data }))
}

/// Create Credential in Store
///
/// Stores `value` under `key` in store `id`, in the namespace of this tenant
/// and project. Answers 201 when the key is new and 200 when it existed and
/// was overwritten (value and metadata replaced, `createdAt` kept). The value
/// is never returned by any endpoint.
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
        (status = 400, description = "Malformed JSON, wrong content type, missing or mistyped fields (neither value nor valueBase64), or a malformed or unsupported If-Match / If-None-Match", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not edit this tenant or project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No store with this id", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A concurrent change got in the way; retry", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "*(extension)* The If-None-Match or If-Match condition did not hold: the key exists (create only), is missing, or is at another version; nothing was changed", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is over the body limit", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A key, id or metadata breaks the rules; the value is over 65,536 bytes; both value and valueBase64 are given; valueBase64 is not standard padded base64 or decodes to over 65,536 bytes; the store holds no binary values, or cannot honour the conditional header; or tenantId/projectId is longer than the store's namespace cap. The detail names the field", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal Server Error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable (the detail says why), or the audit log cannot be written (nothing was changed)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_credential(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    path: Result<Path<StorePath>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let Path(p) = path.map_err(path_error)?;
    let mut audit = audit_entry(&rid, AuditAction::Create, &p.tenant_id, &p.project_id).store(&p.id);
    let (ns, _) = admit(&state, &headers, &mut audit, &p.tenant_id, &p.project_id, Action::Edit)?;
    let store_id = check_store_id(&p.id)?;
    let store = project_store(&state, &store_id, &ns)?;
    check_json_content_type(&headers)?;
    let condition = write_condition(&headers)?;
    let bytes = read_body(body, &headers, state.body_limit).await?;
    let input = parse_create(&bytes)?;
    drop(bytes);
    let caps = store.capabilities();
    if !input.value.is_text() && !caps.binary {
        // Refused here, as the store would, but before any store call.
        return Err(StoreError::unsupported(store.id(), "binary values").into());
    }
    if let Some((writes, header)) = condition.needs(&caps) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "credential store '{store_id}' does not support {writes}, so the {header} condition cannot \
                 be honoured; nothing was changed (send the create without {header})"
            ),
        ));
    }
    let audit = audit.key(input.key.as_str());
    let created = |o: &SetOutcome| if o.created { StatusCode::CREATED } else { StatusCode::OK };
    let outcome =
        audited(&state, &audit, created, conditional_set(store.as_ref(), &input, &condition)).await?;
    let location = format!(
        "/manage/tenants/{}/projects/{}/credential-stores/{}/credentials/{}",
        p.tenant_id, p.project_id, store_id, input.key
    );
    let body = CreateCredentialResponse {
        data: CreatedCredential {
            created_at: timestamp(outcome.created_at),
            key: input.key.to_string(),
            store_id: store_id.to_string(),
        },
    };
    let status = if outcome.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut resp = json_ok(status, &body);
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(tag) = etag(&outcome.version) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    Ok(resp)
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
        (status = 400, description = "A query parameter of the wrong type", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not view this tenant or project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No store with this id", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad id, prefix, cursor or limit, or tenantId/projectId longer than the store's namespace cap", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal Server Error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or a refusal could not be written to the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn list_credentials(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    path: Result<Path<StorePath>, PathRejection>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(p) = path.map_err(path_error)?;
    let mut audit = audit_entry(&rid, AuditAction::ListCredentials, &p.tenant_id, &p.project_id).store(&p.id);
    let (ns, _) = admit(&state, &headers, &mut audit, &p.tenant_id, &p.project_id, Action::View)?;
    let store_id = check_store_id(&p.id)?;
    let store = project_store(&state, &store_id, &ns)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(format!("bad query: {}", e.body_text())))?;
    let mut opts = ListOptions::new();
    if let Some(prefix) = q.prefix {
        opts = opts.with_prefix(prefix)?;
    }
    if let Some(limit) = q.limit {
        opts = opts.with_limit(limit)?;
    }
    if let Some(cursor) = q.cursor {
        opts = opts.with_cursor(Some(ListCursor::parse(&cursor)?));
    }
    let page = store.list(&opts).await?;
    let body = ListCredentialsResponse {
        data: page.keys.into_iter().map(|k| KeyEntry { key: k.to_string() }).collect(),
        next_cursor: page.next_cursor.map(|c| c.to_string()),
    };
    Ok(json_ok(StatusCode::OK, &body))
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
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not view this tenant or project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such store, or no such credential in this project", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad id or key, or tenantId/projectId longer than the store's namespace cap", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal Server Error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or a refusal could not be written to the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_credential(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    path: Result<Path<CredentialPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(p) = path.map_err(path_error)?;
    let mut audit =
        audit_entry(&rid, AuditAction::ReadMetadata, &p.tenant_id, &p.project_id).store(&p.id).key(&p.key);
    let (ns, _) = admit(&state, &headers, &mut audit, &p.tenant_id, &p.project_id, Action::View)?;
    let store_id = check_store_id(&p.id)?;
    let key = CredentialKey::new(p.key.as_str())?;
    let store = project_store(&state, &store_id, &ns)?;
    let Some(cred) = store.get(&key).await? else {
        return Err(missing(&key, &store_id));
    };
    let body = CredentialInfoResponse {
        data: CredentialInfo {
            key: key.to_string(),
            store_id: store_id.to_string(),
            metadata: cred.metadata.as_map().clone(),
            created_at: timestamp(cred.created_at),
            updated_at: timestamp(cred.updated_at),
            version: cred.version.to_string(),
            value_kind: if cred.value.is_text() { ValueKind::Text } else { ValueKind::Binary },
        },
    };
    let mut resp = json_ok(StatusCode::OK, &body);
    if let Some(tag) = etag(&cred.version) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    Ok(resp)
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
        (status = 400, description = "If-Match or If-None-Match was sent: deletes are never conditional, so the header is refused rather than ignored", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not edit this tenant or project", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such store, or no such credential in this project", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A bad id or key, or tenantId/projectId longer than the store's namespace cap", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal Server Error", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The store is unavailable, or the audit log cannot be written (nothing was changed)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_credential(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    path: Result<Path<CredentialPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(p) = path.map_err(path_error)?;
    let mut audit =
        audit_entry(&rid, AuditAction::Delete, &p.tenant_id, &p.project_id).store(&p.id).key(&p.key);
    let (ns, _) = admit(&state, &headers, &mut audit, &p.tenant_id, &p.project_id, Action::Edit)?;
    let store_id = check_store_id(&p.id)?;
    let key = CredentialKey::new(p.key.as_str())?;
    let store = project_store(&state, &store_id, &ns)?;
    no_condition(&headers, "a delete")?;
    audited(&state, &audit, |_| StatusCode::NO_CONTENT, async {
        if store.delete(&key).await? {
            Ok(())
        } else {
            Err(missing(&key, &store_id))
        }
    })
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn missing(key: &CredentialKey, store: &StoreId) -> ApiError {
    ApiError::not_found(format!("no credential '{key}' in store '{store}' for this tenant and project"))
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
pub async fn healthz() -> Response {
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
        (status = 503, description = "Shutting down, or no store is available", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
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
        (status = 401, description = "Missing or invalid bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token lacks the `metrics` action", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The refusal could not be written to the audit log", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let audit = AuditEntry::new(&rid.0, AuditAction::Metrics);
    let token = state.auth.authenticate(&headers).map_err(|e| denied(&state, &audit, e))?;
    let audit = audit.token(&token.name);
    token.check_metrics().map_err(|e| denied(&state, &audit, e))?;
    Ok(state.metrics.response())
}

/// The OpenAPI document, as served.
#[derive(Debug, Clone)]
pub struct OpenApiJson(pub Arc<String>);

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
pub async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    let mut resp = (*doc.0).clone().into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The answer to a path no route matches.
pub async fn fallback() -> ApiError {
    ApiError::not_found("no such route; see /openapi.json")
}

// ---------------------------------------------------------------- body

/// Checks that the request declares a JSON body: `application/json` or
/// `application/<anything>+json`, parameters allowed.
///
/// # Errors
/// 400 naming the content type received.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::bad_request("missing Content-Type; send Content-Type: application/json"));
    };
    let essence = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let ok = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json") && !essence.contains(' '));
    if ok {
        Ok(())
    } else {
        let shown: String = essence.chars().take(64).collect();
        Err(ApiError::bad_request(format!("Content-Type {shown:?} is not supported; send application/json")))
    }
}

/// Reads the body into a zeroizing buffer, at most `limit` bytes.
///
/// # Errors
/// 413 past the limit (at once when `Content-Length` says so); 400 when the
/// body cannot be read.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    // Reserve up front so the buffer (which holds the secret) rarely moves.
    let mut buf = Zeroizing::new(Vec::with_capacity(declared.map_or(8 * 1024, |n| n as usize)));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ApiError::bad_request("the request body could not be read"))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        if buf.capacity() < buf.len() + chunk.len() {
            // Grow by hand so the old buffer is zeroized, not just freed.
            let mut bigger =
                Zeroizing::new(Vec::with_capacity((buf.len() + chunk.len()).max(buf.capacity() * 2)));
            bigger.extend_from_slice(&buf);
            buf = bigger;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

/// A validated create request.
pub struct CreateInput {
    /// The key.
    pub key: CredentialKey,
    /// The value.
    pub value: SecretValue,
    /// The metadata.
    pub metadata: Metadata,
}

const CREATE_FIELDS: [&str; 4] = ["key", "value", "valueBase64", "metadata"];

/// The most characters of a `valueBase64` whose bytes fit
/// [`credstore_core::MAX_VALUE_BYTES`] (87,384 for 65,536 bytes).
pub const MAX_VALUE_BASE64_CHARS: usize = credstore_core::MAX_VALUE_BYTES.div_ceil(3) * 4;

/// Parses and validates a create body. Error messages never echo the body.
///
/// The value is `value` (a JSON string, stored as text) or `valueBase64`
/// (standard padded base64, stored as the bytes it decodes to); exactly
/// one of the two.
///
/// # Errors
/// 400 for malformed JSON, a non-object, unknown, missing or mistyped
/// fields (neither `value` nor `valueBase64` is a missing field); 422 for
/// both value fields at once, and for a key, value, `valueBase64` (not
/// base64, or over 65,536 bytes once decoded) or metadata that breaks the
/// rules.
pub fn parse_create(bytes: &[u8]) -> Result<CreateInput, ApiError> {
    let parsed: Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "ends too early",
            _ => "is not valid JSON",
        };
        ApiError::bad_request(format!("the body {what} (line {}, column {})", e.line(), e.column()))
    })?;
    let Value::Object(mut map) = parsed else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object with the fields key, value (or valueBase64) and metadata",
        ));
    };
    if let Some(unknown) = map.keys().find(|k| !CREATE_FIELDS.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(64).collect();
        return Err(ApiError::bad_request(format!(
            "unknown field {shown:?}; the fields are key, value (or valueBase64) and metadata"
        )));
    }
    let mut string_field = |name: &str| match map.remove(name) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::bad_request(format!("the field {name} must be a string"))),
        None => Ok(None),
    };
    let key = string_field("key")?.ok_or_else(|| ApiError::bad_request("missing field key"))?;
    // Zeroized when dropped: they hold the value.
    let text = string_field("value")?.map(Zeroizing::new);
    let base64 = string_field("valueBase64")?.map(Zeroizing::new);
    if text.is_none() && base64.is_none() {
        return Err(ApiError::bad_request("missing field value (or valueBase64 for a binary value)"));
    }
    let metadata = match map.remove("metadata") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k, s);
                    }
                    _ => {
                        let shown: String = k.chars().take(64).collect();
                        return Err(ApiError::bad_request(format!(
                            "metadata value {shown:?} must be a string"
                        )));
                    }
                }
            }
            out
        }
        Some(_) => return Err(ApiError::bad_request("the field metadata must be an object of strings")),
    };
    let key = CredentialKey::new(key).map_err(|e| match e {
        credstore_core::Error::InvalidKey { reason, .. } => ApiError::invalid_field("key", reason),
        other => ApiError::from(other),
    })?;
    let value = match (text, base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "value and valueBase64",
                "give exactly one of the two: value for text, valueBase64 for bytes",
            ))
        }
        // A JSON string is UTF-8 text: the value is a text `SecretValue`.
        (Some(mut text), None) => SecretValue::from_text(std::mem::take(&mut *text)),
        (None, Some(encoded)) => {
            let bytes = decode_base64(&encoded, credstore_core::MAX_VALUE_BYTES)
                .map_err(|why| ApiError::invalid_field("valueBase64", why))?;
            SecretValue::from_bytes(bytes)
        }
        (None, None) => unreachable!("checked above"),
    };
    credstore_core::check_value(&value)?;
    let metadata = Metadata::try_from(metadata)?;
    Ok(CreateInput { key, value, metadata })
}

/// Decodes standard, padded base64 (RFC 4648 §4) of at most `limit`
/// bytes, strictly: no whitespace, padding only at the end and only as
/// needed, unused bits zero (so every byte string has exactly one
/// encoding). The size is checked from the length before anything is
/// decoded.
///
/// # Errors
/// Why the text is refused; never any of its characters (they are the
/// secret).
pub fn decode_base64(text: &str, limit: usize) -> Result<Vec<u8>, String> {
    let input = text.as_bytes();
    if !input.len().is_multiple_of(4) {
        return Err(format!(
            "is not padded base64: its length {} is not a multiple of 4 (standard base64 with = padding)",
            input.len()
        ));
    }
    let padding = input.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err("is not base64: at most two = pad the end".into());
    }
    let decoded_len = input.len() / 4 * 3 - padding;
    if decoded_len > limit {
        return Err(format!("decodes to {decoded_len} bytes; the limit is {limit}"));
    }
    // The standard engine is strict: canonical padding, unused bits zero, no
    // whitespace. Decoding goes into a zeroizing buffer, so a refused input
    // leaves no partly decoded secret behind.
    use base64::Engine as _;
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(decoded_len));
    match base64::engine::general_purpose::STANDARD.decode_vec(input, &mut out) {
        Ok(()) => Ok(std::mem::take(&mut *out)),
        Err(base64::DecodeError::InvalidByte(offset, _)) => Err(format!(
            "is not standard base64: the character at offset {offset} is outside A-Z, a-z, 0-9, + and / \
             (or is = before the end)"
        )),
        Err(base64::DecodeError::InvalidLastSymbol(..)) => {
            Err("is not canonical base64: the unused bits before the = padding must be zero".into())
        }
        Err(_) => Err("is not standard, padded base64".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(body: &str) -> u16 {
        match parse_create(body.as_bytes()) {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn create_bodies() {
        assert_eq!(status(r#"{"key":"a","value":"v"}"#), 200);
        assert_eq!(status(r#"{"key":"a","value":"","metadata":null}"#), 200);
        assert_eq!(status(r#"{"key":"a","value":"v","metadata":{"owner":"me"}}"#), 200);
        for bad in [
            "",
            "{",
            "[]",
            "\"s\"",
            r#"{"value":"v"}"#,
            r#"{"key":"a"}"#,
            r#"{"key":1,"value":"v"}"#,
            r#"{"key":"a","value":2}"#,
            r#"{"key":"a","value":"v","metadata":[]}"#,
            r#"{"key":"a","value":"v","metadata":{"x":1}}"#,
            r#"{"key":"a","value":"v","extra":1}"#,
        ] {
            assert_eq!(status(bad), 400, "{bad}");
        }
        for bad in [
            r#"{"key":"a b","value":"v"}"#,
            r#"{"key":"","value":"v"}"#,
            r#"{"key":"a","value":"v","metadata":{"bad key":"x"}}"#,
            r#"{"key":"a","value":"v","metadata":{"k":"line\nbreak"}}"#,
        ] {
            assert_eq!(status(bad), 422, "{bad}");
        }
        let big = format!(r#"{{"key":"a","value":"{}"}}"#, "x".repeat(credstore_core::MAX_VALUE_BYTES + 1));
        let err = parse_create(big.as_bytes()).err().unwrap();
        assert_eq!(err.status, 422);
        assert!(err.detail.contains("value") && !err.detail.contains("xxxx"), "{}", err.detail);
    }

    #[test]
    fn binary_bodies() {
        let input = parse_create(br#"{"key":"a","valueBase64":"3q2+7w=="}"#).unwrap();
        assert_eq!(input.value.expose_secret(), [0xde, 0xad, 0xbe, 0xef]);
        assert!(!input.value.is_text());
        let input = parse_create(br#"{"key":"a","valueBase64":"aGk=","metadata":{"k":"v"}}"#).unwrap();
        assert!(input.value.is_text(), "UTF-8 bytes are a text value");
        assert_eq!(input.value.expose_str().unwrap(), "hi");
        assert_eq!(status(r#"{"key":"a","valueBase64":""}"#), 200);
        assert_eq!(status(r#"{"key":"a","valueBase64":7}"#), 400);
        assert_eq!(status(r#"{"key":"a"}"#), 400);
        let both = parse_create(br#"{"key":"a","value":"v","valueBase64":"dg=="}"#).err().unwrap();
        assert_eq!(both.status, 422);
        assert!(both.detail.starts_with("invalid value and valueBase64:"), "{}", both.detail);
        for bad in
            ["dg", "dg=", "d===", "dg==dg==", "dh==", "ZmC=", "Zm9v YmFy", "Zm9v\\nYmFy", "Zm9v-_8=", "=AAA"]
        {
            let body = format!(r#"{{"key":"a","valueBase64":"{bad}"}}"#);
            let err = parse_create(body.as_bytes()).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.status, 422, "{bad}");
            assert!(err.detail.starts_with("invalid valueBase64:"), "{bad}: {}", err.detail);
        }
        let max = credstore_core::MAX_VALUE_BYTES;
        let ok = format!(r#"{{"key":"a","valueBase64":"{}"}}"#, "AAAA".repeat(max / 3) + "AA==");
        assert_eq!(parse_create(ok.as_bytes()).map(|i| i.value.len()).ok(), Some(max));
        assert_eq!(MAX_VALUE_BASE64_CHARS, 87_384);
        let over = format!(r#"{{"key":"a","valueBase64":"{}"}}"#, "AAAA".repeat(max / 3) + "AAA=");
        let err = parse_create(over.as_bytes()).err().unwrap();
        assert_eq!(err.status, 422);
        assert!(err.detail.contains("65537 bytes; the limit is 65536"), "{}", err.detail);
    }

    #[test]
    fn base64_round_trips_every_length() {
        // RFC 4648 §10 test vectors, and the bytes 0..=255.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode_base64(encoded, 100).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        let encoded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
        assert_eq!(decode_base64(encoded, 256).unwrap(), all);
        assert!(decode_base64(encoded, 255).unwrap_err().contains("256 bytes"));
        let err = decode_base64("c2VjcmV0!A==", 100).unwrap_err();
        assert!(err.contains("offset 8") && !err.contains('!'), "{err}");
    }

    fn condition(pairs: &[(&str, &str)]) -> Result<WriteCondition, ApiError> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        write_condition(&h)
    }

    #[test]
    fn conditional_headers() {
        let v = |s: &str| WriteCondition::Version(Version::new(s).unwrap());
        assert_eq!(condition(&[]).unwrap(), WriteCondition::None);
        assert_eq!(condition(&[("if-none-match", "*")]).unwrap(), WriteCondition::Absent);
        assert_eq!(condition(&[("if-match", "*")]).unwrap(), WriteCondition::Exists);
        assert_eq!(condition(&[("if-match", "\"3\"")]).unwrap(), v("3"));
        assert_eq!(condition(&[("if-match", " \"a-b_c.9\" ")]).unwrap(), v("a-b_c.9"));
        for never in ["W/\"3\"", "\"\"", "\"a,b\""] {
            assert!(
                matches!(condition(&[("if-match", never)]).unwrap(), WriteCondition::Never(_)),
                "{never}"
            );
        }
        let bad = |pairs: &[(&str, &str)], expect: &str| {
            let e = condition(pairs).unwrap_err();
            assert_eq!(e.status, 400, "{pairs:?}");
            assert!(e.detail.contains(expect), "{pairs:?}: {}", e.detail);
        };
        bad(&[("if-match", "\"1\", \"2\"")], "lists are not supported");
        bad(&[("if-match", "3")], "double quotes");
        bad(&[("if-match", "\"a b\"")], "double quotes");
        bad(&[("if-match", "")], "double quotes");
        bad(&[("if-match", "\"1\""), ("if-match", "\"2\"")], "more than once");
        bad(&[("if-none-match", "\"3\"")], "only *");
        bad(&[("if-none-match", "W/\"3\"")], "only *");
        bad(&[("if-none-match", "*"), ("if-match", "\"3\"")], "not both");
    }

    #[test]
    fn errors_never_echo_the_value() {
        let err = parse_create(br#"{"key":"a","value":12345678}"#).err().unwrap();
        assert!(!err.detail.contains("12345678"), "{}", err.detail);
        let err = parse_create(br#"{"key":"a","value":"topsecret"#).err().unwrap();
        assert!(!err.detail.contains("topsecret"), "{}", err.detail);
    }

    #[test]
    fn scope_ids() {
        assert!(check_scope_id("tenantId", "tenant_123").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(256)] {
            assert_eq!(check_scope_id("tenantId", bad).unwrap_err().status, 422, "{bad:?}");
        }
    }

    #[test]
    fn project_namespaces() {
        assert_eq!(
            project_namespace("tenant_123", "project_456").unwrap().as_str(),
            "tenant_123/project_456"
        );
        let e = project_namespace("..", "p").unwrap_err();
        assert!(e.status == 422 && e.detail.starts_with("invalid tenantId:"), "{}", e.detail);
        let e = project_namespace("t", "a b").unwrap_err();
        assert!(e.status == 422 && e.detail.starts_with("invalid projectId:"), "{}", e.detail);
        let longest = project_namespace(&"t".repeat(255), &"p".repeat(255)).unwrap();
        assert_eq!(longest.as_str().len(), 511, "every pair of valid ids fits core's cap");
        let too_long = longest.check_len(300).unwrap_err();
        let e = namespace_error(too_long, Some(&StoreId::new("aws").unwrap()));
        assert!(e.detail.starts_with("invalid tenantId and projectId:"), "{}", e.detail);
        assert!(
            e.detail.contains("511 bytes") && e.detail.contains("store 'aws' hold at most 300"),
            "{}",
            e.detail
        );
    }

    #[test]
    fn content_types() {
        let mut h = HeaderMap::new();
        assert!(check_json_content_type(&h).is_err());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_json_content_type(&h).is_ok(), "{ok}");
        }
        for bad in ["text/plain", "application/x-www-form-urlencoded", "json", "application/jsonx"] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(bad));
            assert!(check_json_content_type(&h).is_err(), "{bad}");
        }
    }
}
