//! The one middleware every request goes through: request ids, the request
//! timeout, access logs, request metrics, and the guarantee that every error
//! response is `application/problem+json`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::http::problem::{ApiError, Problem};
use crate::runtime::metrics::{Metrics, UNMATCHED_ROUTE};

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
    /// Where every answered request is counted (method, matched route,
    /// status, latency), when requests are counted.
    pub metrics: Option<Arc<Metrics>>,
}

/// Whether an incoming `X-Request-ID` is reused: 1 to
/// [`MAX_REQUEST_ID_LEN`] characters of `[A-Za-z0-9._:-]`. Anything else is
/// replaced by a generated id (never rejected), so a hostile header cannot
/// inject text into logs or responses.
pub fn is_valid_request_id(id: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// The random half of every id this process generates: 48 bits, drawn once.
fn process_prefix() -> u64 {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        let draw = getrandom::u64().unwrap_or_else(|_| {
            // Extremely unlikely; fall back to the clock and the pid, ids
            // need only be unique-ish across processes.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        });
        draw & 0xffff_ffff_ffff
    })
}

/// A new request id: `req_` and 24 hex digits, 12 drawn at random once per
/// process and 12 counting the ids it generated, so ids never repeat
/// within a process (before 2^48 requests) and hardly ever across
/// processes, without a system call per request.
pub fn generate_request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff_ffff;
    let bits = (u128::from(process_prefix()) << 48) | u128::from(n);
    let mut id = [0u8; 28];
    id[..4].copy_from_slice(b"req_");
    for (i, digit) in id[4..].iter_mut().enumerate() {
        *digit = HEX[((bits >> (4 * (23 - i))) & 0xf) as usize];
    }
    // Only ASCII was written.
    String::from_utf8_lossy(&id).into_owned()
}

/// The longest path written to the access log, in bytes.
pub const MAX_LOGGED_PATH: usize = 256;

/// A request's path as the access log writes it: at most
/// [`MAX_LOGGED_PATH`] bytes, a longer one cut and followed by `…` and its
/// length, so that no client can make a log line long.
struct LoggedPath<'a>(&'a str);

impl std::fmt::Display for LoggedPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.get(..MAX_LOGGED_PATH) {
            Some(head) if head.len() < self.0.len() => write!(f, "{head}…({} bytes)", self.0.len()),
            // A URI path is ASCII, so the cut always falls on a boundary.
            _ => f.write_str(self.0),
        }
    }
}

/// The middleware: assigns the request id, applies the timeout, logs the
/// request (method, path, status, latency, request id; never headers or
/// bodies), renders every error response as a [`Problem`], and counts the
/// request with the status answered (so timeouts and caught panics are
/// counted as the 503 and 500 they became).
///
/// One middleware rather than a stack of them: each `from_fn` layer costs a
/// boxed future and a service clone per request.
pub async fn request_context(
    State(settings): State<Arc<RequestSettings>>,
    mut req: Request,
    next: Next,
) -> Response {
    // The id, and the same bytes as the response header: an incoming id's
    // header value is shared, not copied.
    let (request_id, header_value) =
        match req.headers().get(&X_REQUEST_ID).filter(|v| v.to_str().is_ok_and(is_valid_request_id)) {
            Some(v) => (String::from_utf8_lossy(v.as_bytes()).into_owned(), Some(v.clone())),
            None => (generate_request_id(), None),
        };
    // Cheap clones: the URI's parts share the request's bytes.
    let uri = req.uri().clone();
    let path = uri.path();
    let method = req.method().clone();
    // The route as matched (`/manage/tenants/{tenantId}/…`), never the raw
    // path, so the metrics' label values stay few.
    let route = req.extensions().get::<MatchedPath>().cloned();
    req.extensions_mut().insert(RequestId(request_id.clone()));

    let span = tracing::info_span!("request", %method, path = %LoggedPath(path), request_id = %request_id);
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

    let mut response = render_problem(response, path, &request_id);
    let header_value = match header_value {
        Some(v) => Some(v),
        None => HeaderValue::from_maybe_shared(axum::body::Bytes::from(request_id)).ok(),
    };
    if let Some(v) = header_value {
        response.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    if let Some(metrics) = &settings.metrics {
        let route = route.as_ref().map_or(UNMATCHED_ROUTE, MatchedPath::as_str);
        metrics.observe_request(method.as_str(), route, status, elapsed.as_secs_f64());
    }
    let latency_ms = elapsed.as_micros() as f64 / 1000.0;
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, latency_ms, "request failed");
        } else {
            tracing::info!(status, latency_ms, "request");
        }
    });
    response
}

/// Marks a response whose body is already meant for a person (a console
/// page), which [`render_problem`] leaves as it is whatever its status.
#[derive(Debug, Clone, Copy)]
pub struct RenderedPage;

/// Turns any error response (status 400 and up) into `application/problem+json`:
/// from its [`ApiError`] extension when a handler produced it, otherwise from
/// the status alone. Headers such as `Allow` and `WWW-Authenticate` stay. A
/// console page ([`RenderedPage`]) is left as it is.
pub fn render_problem(response: Response, instance: &str, request_id: &str) -> Response {
    let status = response.status();
    if status.as_u16() < 400 || response.extensions().get::<RenderedPage>().is_some() {
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
        _ => crate::http::problem::title_for(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logged_paths_are_cut_at_256_bytes() {
        let short = "/manage/tenants/t/projects/p/credential-stores";
        assert_eq!(LoggedPath(short).to_string(), short);
        let long = format!("/manage/tenants/{}", "%01".repeat(1000));
        let logged = LoggedPath(&long).to_string();
        assert_eq!(logged, format!("{}…(3016 bytes)", &long[..MAX_LOGGED_PATH]));
    }

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
        // One process prefix, then a count: unique, and all valid.
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| generate_request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|i| is_valid_request_id(i) && i.len() == 28 && i[..16] == id[..16]));
    }
}
