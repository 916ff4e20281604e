//! The create body: its content type, its size and its rules, all checked
//! by the [`CreateBody`] extractor before the handler runs: the body is read
//! into a zeroizing buffer here and parsed by [`parse`]; its shape in the
//! OpenAPI document is in [`schema`].
//!
//! What this cannot reach: hyper's own read buffers, which hold the body
//! as it arrived and are freed without being wiped.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};
use futures::StreamExt;
use zeroize::Zeroizing;

use crate::http::problem::ApiError;
use crate::runtime::state::AppState;
pub(crate) use parse::{parse_create, CreateInput};
pub use schema::{
    CreateBinaryCredential, CreateCredentialRequest, CreateTextCredential, RestoreCredentialRequest,
};

pub(crate) mod parse;
pub mod schema;

/// A create body, checked: `Content-Type` JSON, at most the body limit,
/// parsed and validated by [`parse_create`].
///
/// Rejects with 400 (content type, malformed body), 413 (over the body
/// limit) and 422 (field rules).
pub(crate) struct CreateBody(pub(crate) CreateInput);

impl FromRequest<AppState> for CreateBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        check_json_content_type(&parts.headers)?;
        let bytes = read_body(body, &parts.headers, state.body_limit).await?;
        parse_create(&bytes).map(CreateBody)
    }
}

/// The optional body of a restore: `{"expiresAt": …}`, `null`, or nothing.
///
/// # Errors
/// 400 for a content type other than JSON (when there is a body),
/// malformed JSON, an unknown field or an `expiresAt` that is not a string;
/// 413 over the body limit; 422 for an `expiresAt` that is not an RFC 3339
/// time.
pub(crate) async fn restore_expiry(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Option<std::time::SystemTime>, ApiError> {
    let bytes = read_body(body, headers, limit).await?;
    if bytes.is_empty() {
        return Ok(None);
    }
    check_json_content_type(headers)?;
    // `null` is no body.
    let body: Option<RestoreCredentialRequest> = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be an object with the one optional field expiresAt (an RFC 3339 time or null): \
             {e}"
        ))
    })?;
    body.and_then(|b| b.expires_at)
        .map(|t| crate::http::json::parse_time(&t).map_err(|why| ApiError::invalid_field("expiresAt", why)))
        .transpose()
}

/// Checks that the request declares a JSON body: `application/json` or
/// `application/<anything>+json`, parameters allowed.
///
/// # Errors
/// 400 naming the content type received.
pub(crate) fn check_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::bad_request("missing Content-Type; send Content-Type: application/json"));
    };
    let essence = ct.to_str().unwrap_or("").split(';').next().unwrap_or("").trim();
    let starts = |prefix: &str| essence.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    let ends = |suffix: &str| {
        essence.len() >= suffix.len()
            && essence.get(essence.len() - suffix.len()..).is_some_and(|s| s.eq_ignore_ascii_case(suffix))
    };
    let ok = essence.eq_ignore_ascii_case("application/json")
        || (starts("application/") && ends("+json") && !essence.contains(' '));
    if ok {
        Ok(())
    } else {
        let shown: String = essence.to_ascii_lowercase().chars().take(64).collect();
        Err(ApiError::bad_request(format!("Content-Type {shown:?} is not supported; send application/json")))
    }
}

/// Reads the body into a zeroizing buffer, at most `limit` bytes.
///
/// The buffer is sized by `Content-Length` when given, else by the first
/// chunk; when it must grow, the old one is zeroized.
///
/// # Errors
/// 413 past the limit (at once when `Content-Length` says so); 400 when the
/// body cannot be read.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    // Sized up front so the buffer (which holds the secret) rarely moves.
    let mut buf = Zeroizing::new(Vec::with_capacity(declared.map_or(0, |n| n as usize)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
