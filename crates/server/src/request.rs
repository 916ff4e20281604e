//! The outermost middleware: request ids, the request timeout, access logs,
//! and the guarantee that every error response is `application/problem+json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::problem::{ApiError, Problem};

/// The request id header, read from requests and always set on responses.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming `X-Request-ID` that is reused.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the current request, as an extension of every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Settings of [`request_context`].
#[derive(Debug, Clone)]
pub struct RequestSettings {
    /// How long a request may take before it is answered with 503.
    pub timeout: Duration,
}

/// Whether an incoming `X-Request-ID` is reused: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `[A-Za-z0-9._:-]`. Anything else is
/// replaced by a generated id (never rejected), so a hostile header cannot
/// inject text into logs or responses.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A new request id: `req_` and 24 random hex digits.
pub fn generate_request_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // Extremely unlikely; fall back to the clock, ids need only be unique-ish.
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_be_bytes()[4..]);
    }
    format!("req_{}", crate::auth::hex(&bytes))
}

/// The middleware: assigns the request id, applies the timeout, logs the
/// request (method, path, status, latency, request id; never headers or
/// bodies), and renders every error response as a [`Problem`].
pub async fn request_context(
    State(settings): State<Arc<RequestSettings>>,
    mut req: Request,
    next: Next,
) -> Response {
    let request_id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_valid_request_id(v))
        .map_or_else(generate_request_id, str::to_owned);
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(request_id.clone()));

    let span = tracing::info_span!("request", %method, path = %path, request_id = %request_id);
    let started = Instant::now();
    let response = async {
        match tokio::time::timeout(settings.timeout, next.run(req)).await {
            Ok(resp) => resp,
            Err(_) => ApiError::unavailable(format!(
                "the request did not complete within {} ms",
                settings.timeout.as_millis()
            ))
            .into_response(),
        }
    }
    .instrument(span.clone())
    .await;

    let mut response = render_problem(response, &path, &request_id);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_micros() as f64 / 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
    });
    response
}

/// Turns any error response (status 400 and up) into `application/problem+json`:
/// from its [`ApiError`] extension when a handler produced it, otherwise from
/// the status alone. Headers such as `Allow` and `WWW-Authenticate` stay.
pub fn render_problem(response: Response, instance: &str, request_id: &str) -> Response {
    let status = response.status();
    if status.as_u16() < 400 {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let detail = match parts.extensions.remove::<ApiError>() {
        Some(e) => e.detail,
        None => default_detail(status),
    };
    let (content_type, body) = Problem::new(status, detail, instance, request_id).into_body();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.insert(header::CONTENT_TYPE, content_type);
    parts.headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Response::from_parts(parts, Body::from(body))
}

fn default_detail(status: StatusCode) -> String {
    match status {
        StatusCode::NOT_FOUND => "no such route; see /openapi.json".to_owned(),
        StatusCode::METHOD_NOT_ALLOWED => {
            "this method is not allowed on this path; see the Allow header".to_owned()
        }
        StatusCode::INTERNAL_SERVER_ERROR => "an internal error occurred; see the server log".to_owned(),
        _ => crate::problem::title_for(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids() {
        assert!(is_valid_request_id("req_1234567890"));
        assert!(is_valid_request_id("a:b-c.d_e"));
        assert!(!is_valid_request_id(""));
        assert!(!is_valid_request_id("has space"));
        assert!(!is_valid_request_id("new\nline"));
        assert!(!is_valid_request_id(&"x".repeat(MAX_REQUEST_ID_LEN + 1)));
        let id = generate_request_id();
        assert!(is_valid_request_id(&id) && id.starts_with("req_") && id.len() == 28, "{id}");
        assert_ne!(generate_request_id(), id);
    }
}
