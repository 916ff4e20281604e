//! Errors as `application/problem+json`, in the exact shape of the
//! Credential Stores API:
//!
//! ```json
//! {"code":"not_found","detail":"…","instance":"/manage/…","requestId":"req_…",
//!  "status":404,"title":"Not Found","error":{"code":"not_found","message":"…"}}
//! ```
//!
//! Handlers return [`ApiError`]. Its response carries the error as an
//! extension and no body; the request middleware
//! ([`crate::http::request::request_context`]) renders the body, because only it
//! knows the request path (`instance`) and the request id. Every other error
//! response (axum's own 404/405, a timeout, a panic) is rendered by the same
//! middleware from its status, so no error ever leaves the server in another
//! format.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use credstore_core::{Error as StoreError, IdKind};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Refusal;
use crate::ids::IdError;
use crate::runtime::failure::FailureCategory;

/// The media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error answer of the API: a status, a machine-readable `code` and a
/// human-readable `detail`.
///
/// `detail` is shown to the client: it never holds a secret value or a token,
/// and for 500s it is generic (the cause is logged, see
/// [`ApiError::internal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub detail: String,
    /// Extra response headers, such as `WWW-Authenticate`.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), headers: Vec::new() }
    }

    /// 400 Bad Request: malformed JSON, wrong content type, missing or
    /// mistyped fields.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401 Unauthorized with a `WWW-Authenticate: Bearer` challenge.
    /// `invalid_token` adds `error="invalid_token"` (a token was sent but
    /// is not known).
    pub fn unauthorized(detail: impl Into<String>, invalid_token: bool) -> Self {
        let challenge = if invalid_token {
            r#"Bearer realm="credstore", error="invalid_token""#
        } else {
            r#"Bearer realm="credstore""#
        };
        let mut e = Self::new(StatusCode::UNAUTHORIZED, detail);
        e.headers.push((header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge)));
        e
    }

    /// 403 Forbidden: the token is valid but not allowed here.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404 Not Found.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 422 Unprocessable Entity for `field`, saying `why`.
    pub fn invalid_field(field: &str, why: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, format!("invalid {field}: {why}"))
    }

    /// 413 Content Too Large.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is over the limit of {limit} bytes"),
        )
    }

    /// 412 Precondition Failed: a conditional write's condition did not
    /// hold; nothing was changed.
    pub fn precondition_failed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, detail)
    }

    /// 429 Too Many Requests, with `Retry-After` in whole seconds: a peer
    /// that sent too many missing or unknown tokens.
    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let secs = retry_after.as_secs().max(1);
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many requests without a valid token from this address; retry after {secs} s"),
        );
        if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
            e.headers.push((header::RETRY_AFTER, value));
        }
        e
    }

    /// 503 Service Unavailable.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }

    /// 500 with a generic detail; `cause` goes to the log only.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "an internal error occurred; see the server log")
    }

    /// Translates a store error into an API error: the one place that
    /// decides which status each [`credstore_core::Error`] gets.
    ///
    /// | error | status |
    /// | --- | --- |
    /// | `InvalidKey` (field `id` or `key`), `InvalidNamespace`, `InvalidInput`, `Unsupported` | 422 |
    /// | `VersionNotFound` (a version the store does not keep: never written, purged, or past the retention) | 404 |
    /// | `NotText` (a binary value asked for as text; field `value`) | 422 |
    /// | `PreconditionFailed` (a conditional write's condition did not hold) | 412 |
    /// | `Unavailable` (a timeout included), `Config`, `PermissionDenied` (of the backend, not the caller) | 503, the store and a [`FailureCategory`] only; cause logged |
    /// | `Conflict` | 409 |
    /// | `Integrity`, `Backend`, anything else | 500, cause logged |
    ///
    /// A 503 of a store says which store and what kind of failure
    /// (`store 'vault-prod' is unavailable (timeout)`), never the backend's
    /// own words, which may hold file paths, addresses or the backend's
    /// messages: those are logged, in the request's span, so under its
    /// request id (the answer's `requestId`).
    ///
    /// Handlers map an `InvalidNamespace` of a project's namespace
    /// themselves, to name `tenantId` and `projectId`.
    pub fn from_store(err: StoreError) -> Self {
        match &err {
            StoreError::InvalidKey { kind, reason, .. } => {
                let field = match kind {
                    IdKind::StoreId => "id",
                    _ => "key",
                };
                Self::invalid_field(field, reason)
            }
            StoreError::InvalidNamespace { shown, reason } => {
                Self::invalid_field("namespace", format!("{shown} {reason}"))
            }
            // The HTTP API spells the field in camel case.
            StoreError::InvalidInput { field, reason } if field == "expires_at" => {
                Self::invalid_field("expiresAt", reason)
            }
            StoreError::InvalidInput { field, reason } => Self::invalid_field(field, reason),
            StoreError::VersionNotFound { .. } => Self::not_found(err.to_string()),
            StoreError::NotText { .. } => Self::invalid_field("value", &err),
            StoreError::Unsupported { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()),
            StoreError::PreconditionFailed { .. } => Self::precondition_failed(err.to_string()),
            StoreError::Unavailable { store, .. }
            | StoreError::Config { store, .. }
            | StoreError::PermissionDenied { store, .. } => {
                let category = FailureCategory::of_error(&err).unwrap_or(FailureCategory::Unreachable);
                tracing::warn!(store = %store, category = category.as_str(), error = %err, "store unavailable");
                Self::unavailable(format!(
                    "store '{store}' is unavailable ({}); the cause is in the server log under this requestId",
                    category.as_str()
                ))
            }
            StoreError::Conflict { .. } => Self::new(StatusCode::CONFLICT, err.to_string()),
            _ => Self::internal(&err),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        Self::from_store(err)
    }
}

/// 422 naming the field, or the store error's answer.
impl From<IdError> for ApiError {
    fn from(err: IdError) -> Self {
        match err {
            IdError::Invalid { field, reason } => Self::invalid_field(field, reason),
            IdError::Store(err) => Self::from_store(err),
        }
    }
}

/// 401 with its `WWW-Authenticate` challenge, or 403.
impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Unauthenticated { detail, invalid_token } => Self::unauthorized(detail, invalid_token),
            Refusal::Forbidden(detail) => Self::forbidden(detail),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status, self.detail)
    }
}

impl std::error::Error for ApiError {}

/// The response of an [`ApiError`]: its status and headers, with the error
/// itself as an extension for the middleware to render.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = self.status.into_response();
        for (name, value) in &self.headers {
            resp.headers_mut().insert(name.clone(), value.clone());
        }
        resp.extensions_mut().insert(self);
        resp
    }
}

/// The body of every error response (`application/problem+json`, after RFC
/// 9457), exactly as the Credential Stores API shapes it. No other member
/// is ever added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "code": "not_found",
    "detail": "no credential store with id 'resource_789'",
    "instance": "/manage/tenants/tenant_123/projects/project_456/credential-stores/resource_789/credentials",
    "requestId": "req_6f1c2a9e0b7d4c3a8e5f1029",
    "status": 404,
    "title": "Not Found",
    "error": {"code": "not_found", "message": "no credential store with id 'resource_789'"}
}))]
pub struct Problem {
    /// A machine-readable code derived from the status: `bad_request`,
    /// `unauthorized`, `forbidden`, `not_found`, `method_not_allowed`,
    /// `conflict`, `precondition_failed`, `payload_too_large`,
    /// `unprocessable_entity`, `internal_server_error`, `service_unavailable`.
    pub code: String,
    /// What went wrong with this request, for a person. For 422 it names the
    /// field and the rule; for 500 it is generic.
    pub detail: String,
    /// The path of the request that failed.
    pub instance: String,
    /// The request id, also sent in the `X-Request-ID` response header.
    pub request_id: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// The standard reason phrase of the status.
    pub title: String,
    /// The same error in the `{code, message}` form; `message` equals `detail`.
    pub error: ProblemError,
}

/// The `error` member of a [`Problem`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ProblemError {
    /// Same as the problem's `code`.
    pub code: String,
    /// Same as the problem's `detail`.
    pub message: String,
}

/// The `code` of a status: its reason phrase in snake case
/// (`404` → `not_found`).
pub fn code_for(status: StatusCode) -> String {
    match status {
        // RFC 9110 renamed 413; keep the widely known code.
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large".to_owned(),
        _ => title_for(status)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect(),
    }
}

/// The `title` of a status: its canonical reason phrase.
pub fn title_for(status: StatusCode) -> String {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => "Payload Too Large".to_owned(),
        _ => status.canonical_reason().unwrap_or("Error").to_owned(),
    }
}

impl Problem {
    /// The problem for `status` with `detail`, about the request at `instance`.
    pub fn new(status: StatusCode, detail: impl Into<String>, instance: &str, request_id: &str) -> Self {
        let code = code_for(status);
        let detail = detail.into();
        Self {
            code: code.clone(),
            detail: detail.clone(),
            instance: instance.to_owned(),
            request_id: request_id.to_owned(),
            status: status.as_u16(),
            title: title_for(status),
            error: ProblemError { code, message: detail },
        }
    }

    /// The `Content-Type` value and the JSON bytes of this problem.
    pub fn into_body(self) -> (HeaderValue, Vec<u8>) {
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        (HeaderValue::from_static(PROBLEM_JSON), body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_titles_follow_the_credential_stores_api() {
        let cases = [
            (400, "bad_request", "Bad Request"),
            (401, "unauthorized", "Unauthorized"),
            (403, "forbidden", "Forbidden"),
            (404, "not_found", "Not Found"),
            (405, "method_not_allowed", "Method Not Allowed"),
            (409, "conflict", "Conflict"),
            (412, "precondition_failed", "Precondition Failed"),
            (413, "payload_too_large", "Payload Too Large"),
            (422, "unprocessable_entity", "Unprocessable Entity"),
            (500, "internal_server_error", "Internal Server Error"),
            (503, "service_unavailable", "Service Unavailable"),
        ];
        for (status, code, title) in cases {
            let s = StatusCode::from_u16(status).unwrap();
            assert_eq!(code_for(s), code);
            assert_eq!(title_for(s), title);
        }
    }

    #[test]
    fn body_has_exactly_the_members_of_the_credential_stores_api() {
        let p = Problem::new(StatusCode::BAD_REQUEST, "Bad Request", "/conversations/123", "req_1234567890");
        let v: serde_json::Value = serde_json::from_slice(&p.into_body().1).unwrap();
        let expected = serde_json::json!({
            "code": "bad_request",
            "detail": "Bad Request",
            "instance": "/conversations/123",
            "requestId": "req_1234567890",
            "status": 400,
            "title": "Bad Request",
            "error": {"code": "bad_request", "message": "Bad Request"}
        });
        assert_eq!(v, expected);
    }

    #[test]
    fn unavailable_stores_answer_a_category_never_the_cause() {
        let id = credstore_core::StoreId::new("vault-prod").unwrap();
        let cases = [
            (StoreError::unavailable(&id, "connection refused at http://10.1.2.3:8200"), "unreachable"),
            (StoreError::unavailable(&id, "no answer within 10000 ms"), "timeout"),
            (StoreError::permission_denied(&id, "token rejected by http://10.1.2.3:8200"), "refused"),
            (StoreError::config(&id, "cannot read /var/lib/credstore/vault.token"), "misconfigured"),
        ];
        for (err, category) in cases {
            let e = ApiError::from_store(err);
            assert_eq!(e.status, 503);
            assert!(
                e.detail.starts_with(&format!("store 'vault-prod' is unavailable ({category})")),
                "{}",
                e.detail
            );
            assert!(!e.detail.contains("10.1.2.3") && !e.detail.contains("/var/lib"), "{}", e.detail);
        }
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let id = credstore_core::StoreId::new("s").unwrap();
        assert_eq!(ApiError::from_store(StoreError::unavailable(&id, "down")).status, 503);
        assert_eq!(
            ApiError::from_store(StoreError::InvalidInput { field: "value".into(), reason: "big".into() })
                .status,
            422
        );
        let e = ApiError::from_store(StoreError::backend(&id, "disk on fire"));
        assert_eq!(e.status, 500);
        assert!(!e.detail.contains("fire"));
        let e = ApiError::from_store(credstore_core::CredentialKey::new("a b").unwrap_err());
        assert_eq!(e.status, 422);
        assert!(e.detail.starts_with("invalid key:"), "{}", e.detail);
        let e = ApiError::from_store(credstore_core::StoreId::new("a b").unwrap_err());
        assert_eq!(e.status, 422);
        assert!(e.detail.starts_with("invalid id:"), "{}", e.detail);
        let e = ApiError::from_store(credstore_core::Namespace::new("a/../b").unwrap_err());
        assert_eq!(e.status, 422);
        assert!(e.detail.starts_with("invalid namespace:") && e.detail.contains("\"..\""), "{}", e.detail);
        let key = credstore_core::CredentialKey::new("k").unwrap();
        let e = ApiError::from_store(StoreError::precondition_failed(&id, &key, "the key exists"));
        assert_eq!(e.status, 412);
        assert!(e.detail.contains("the key exists") && e.detail.contains("'k'"), "{}", e.detail);
        let not_text = credstore_core::SecretValue::from(vec![0xff]).expose_str().unwrap_err();
        let e = ApiError::from_store(not_text);
        assert_eq!(e.status, 422);
        assert!(e.detail.starts_with("invalid value:") && e.detail.contains("binary"), "{}", e.detail);
        let e = ApiError::from_store(StoreError::conflict(&id, "race"));
        assert_eq!(e.status, 409);
        let e = ApiError::from_store(StoreError::permission_denied(&id, "policy says no"));
        assert_eq!(e.status, 503);
        assert_eq!(
            e.detail,
            "store 's' is unavailable (refused); the cause is in the server log under this requestId"
        );
        let e = ApiError::from_store(StoreError::unsupported(&id, "create-only writes"));
        assert_eq!(e.status, 422);
        let version = credstore_core::Version::new("7").unwrap();
        let e = ApiError::from_store(StoreError::VersionNotFound {
            store: id.clone(),
            key: key.clone(),
            version,
        });
        assert_eq!(e.status, 404);
        assert!(e.detail.contains("'7'") && e.detail.contains("'k'"), "{}", e.detail);
        let e = ApiError::from_store(StoreError::InvalidInput {
            field: "expires_at".into(),
            reason: "past".into(),
        });
        assert_eq!((e.status.as_u16(), e.detail.as_str()), (422, "invalid expiresAt: past"));
        let e = ApiError::from_store(StoreError::integrity(&id, &key, "tag mismatch"));
        assert_eq!(e.status, 500);
        assert!(!e.detail.contains("tag mismatch"));
    }

    #[test]
    fn refusals_are_401_with_a_challenge_or_403() {
        let e =
            ApiError::from(Refusal::Unauthenticated { detail: "missing bearer token", invalid_token: false });
        assert_eq!((e.status.as_u16(), e.detail.as_str()), (401, "missing bearer token"));
        assert_eq!(
            e.headers,
            [(header::WWW_AUTHENTICATE, HeaderValue::from_static(r#"Bearer realm="credstore""#))]
        );
        let e = ApiError::from(Refusal::Unauthenticated { detail: "unknown", invalid_token: true });
        let challenge = HeaderValue::from_static(r#"Bearer realm="credstore", error="invalid_token""#);
        assert_eq!(e.headers, [(header::WWW_AUTHENTICATE, challenge)]);
        let e = ApiError::from(Refusal::Forbidden("not here".into()));
        assert_eq!((e.status.as_u16(), e.detail.as_str(), e.headers.len()), (403, "not here", 0));
    }

    #[test]
    fn bad_ids_are_422_naming_the_field() {
        let e = ApiError::from(crate::ids::check_scope_id("tenantId", "..").unwrap_err());
        assert_eq!(
            (e.status.as_u16(), e.detail.as_str()),
            (422, "invalid tenantId: must not be '.' or '..'")
        );
    }
}
