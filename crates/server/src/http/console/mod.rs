//! The web console at `/console/`: server-rendered HTML pages over the
//! same extractors and store calls as the Credential Stores API's handlers
//! (never HTTP to itself), signed in with a token ([`session`]).
//!
//! No script at all: every page works with forms and links; a revealed
//! value is hidden again by a `<meta http-equiv="refresh">` that reloads
//! the page without it. Every answer carries a strict
//! Content-Security-Policy ([`CSP`]: only this server's own style sheet,
//! forms posted only to this origin, never framed), `Cache-Control:
//! no-store`, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//! same-origin`; the style sheet is served from the binary.
//!
//! A console `POST` is an `application/x-www-form-urlencoded` form read
//! whole (at most the body limit) into zeroizing buffers before the
//! extractors run ([`read_form`]), so that its `csrf` field can admit it as
//! the `X-CSRF-Token` header admits an API request.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use zeroize::Zeroizing;

use crate::http::access::FormCsrf;
use crate::http::body::read_body;
use crate::http::problem::{title_for, ApiError};
use crate::http::request::RenderedPage;
use crate::runtime::state::AppState;

mod pages;
mod session;

/// The Content-Security-Policy of every console answer: nothing but this
/// origin's style sheet and forms; no script, no frame, no plugin.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; \
                              form-action 'self'; frame-ancestors 'none'";

/// The console's style sheet.
const STYLE: &str = include_str!("console.css");

/// The console's routes.
pub(crate) fn router() -> Router<AppState> {
    let project = "/console/tenants/{tenantId}/projects/{projectId}";
    let store = "/console/tenants/{tenantId}/projects/{projectId}/stores/{id}";
    let credential = "/console/tenants/{tenantId}/projects/{projectId}/stores/{id}/credentials/{key}";
    Router::new()
        .route("/console", get(|| async { see_other("/console/") }))
        .route("/console/", get(pages::home))
        .route("/console/project", get(pages::open_project))
        .route("/console/assets/console.css", get(style))
        .route("/console/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/console/sign-out", axum::routing::post(session::sign_out))
        .route(project, get(pages::stores))
        .route(store, get(pages::credentials).post(pages::create))
        .route(credential, get(pages::credential))
        .route(&format!("{credential}/replace"), axum::routing::post(pages::replace))
        .route(&format!("{credential}/delete"), get(pages::confirm_delete).post(pages::delete))
        .route(&format!("{credential}/reveal"), axum::routing::post(pages::reveal))
        .route(&format!("{credential}/versions/{{version}}/restore"), axum::routing::post(pages::restore))
        .route_layer(middleware::from_fn(read_form))
        .layer(middleware::from_fn(secure_headers))
}

async fn style() -> Response {
    let mut resp = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response();
    resp.extensions_mut().insert(Cacheable);
    resp
}

/// Marks an answer that holds no credential data (the style sheet), which
/// may be cached.
#[derive(Clone, Copy)]
struct Cacheable;

/// Sets the console's headers on every answer, and marks it a page so the
/// request middleware leaves an error page as it is.
async fn secure_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let cacheable = resp.extensions().get::<Cacheable>().is_some();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Not no-referrer: under it a browser sends `Origin: null` even on
    // its own forms, which the sign-in must tell from another site's.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    let cache = if cacheable { "public, max-age=3600" } else { "no-store" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    resp.extensions_mut().insert(RenderedPage);
    resp
}

// ---------------------------------------------------------------- forms

/// The fields of a console form, decoded into zeroizing strings.
#[derive(Clone, Default)]
pub(crate) struct Form(Arc<Vec<(String, Zeroizing<String>)>>);

impl Form {
    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Decodes an `application/x-www-form-urlencoded` body; each value is
    /// moved (not copied) into a zeroizing string when it had to be
    /// decoded, and copied into one when it did not.
    fn parse(bytes: &[u8]) -> Self {
        let fields = form_urlencoded::parse(bytes)
            .map(|(name, value)| (name.into_owned(), Zeroizing::new(value.into_owned())))
            .collect();
        Self(Arc::new(fields))
    }
}

/// Reads a console `POST`'s form before the extractors run: its fields
/// become a [`Form`] extension and its `csrf` a [`FormCsrf`]. Anything but
/// a form is 415; a body over the limit 413.
async fn read_form(req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let is_form = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.trim_start().to_ascii_lowercase().starts_with("application/x-www-form-urlencoded")
    });
    if !is_form {
        let e = ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "the console takes HTML forms only");
        return error_page(e, None);
    }
    let limit = FORM_LIMIT;
    let bytes = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(e) => return error_page(e, None),
    };
    let form = Form::parse(&bytes);
    drop(bytes);
    if let Some(csrf) = form.get("csrf") {
        parts.extensions.insert(FormCsrf(Zeroizing::new(csrf.to_owned())));
    }
    parts.extensions.insert(form);
    next.run(Request::from_parts(parts, Body::empty())).await
}

/// The largest console form: a value of 65,536 bytes percent-encoded three
/// times over, and room for the other fields.
const FORM_LIMIT: usize = 3 * credstore_core::MAX_VALUE_BYTES + 64 * 1024;

// ---------------------------------------------------------------- answers

/// `303 See Other` to `location`.
pub(crate) fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::try_from(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A page with `status`.
pub(crate) fn html_page(status: StatusCode, markup: Markup) -> Response {
    let mut resp =
        (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response();
    resp.extensions_mut().insert(RenderedPage);
    resp
}

/// Who is signed in, for the page header.
pub(crate) struct Viewer<'a> {
    /// The token's name.
    pub(crate) name: &'a str,
    /// The session's CSRF token, for the sign-out form.
    pub(crate) csrf: &'a str,
}

/// The page layout: a header with the signed-in token and sign-out, a
/// title, breadcrumbs and the body.
pub(crate) fn layout(
    title: &str,
    viewer: Option<&Viewer<'_>>,
    crumbs: &[(String, String)],
    body: Markup,
) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · credstore" }
                link rel="stylesheet" href="/console/assets/console.css";
            }
            body {
                header.top {
                    a.brand href="/console/" { "credstore" }
                    @if let Some(v) = viewer {
                        span.who { "Signed in as " strong { (v.name) } }
                        form.inline method="post" action="/console/sign-out" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main {
                    @if !crumbs.is_empty() {
                        nav.crumbs aria-label="Breadcrumb" {
                            ol {
                                @for (href, label) in crumbs {
                                    li { a href=(href) { (label) } }
                                }
                            }
                        }
                    }
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A console answer to an error: 401 goes to the sign-in page (the session
/// ended); anything else is a page with the problem's title and detail,
/// with the error's status (and its `Retry-After`).
pub(crate) fn error_page(err: ApiError, viewer: Option<&Viewer<'_>>) -> Response {
    if err.status == StatusCode::UNAUTHORIZED {
        return see_other("/console/sign-in?ended=1");
    }
    let title = title_for(err.status);
    let body = html! {
        div.notice.error role="alert" {
            p { (err.detail) }
        }
        p { a href="/console/" { "Back to the console" } }
    };
    let mut resp = html_page(err.status, layout(&title, viewer, &[], body));
    for (name, value) in err.headers {
        if name != header::WWW_AUTHENTICATE {
            resp.headers_mut().insert(name, value);
        }
    }
    resp
}

/// Whether a request's `Origin`, when it sends one, is this server's own
/// (its `Host`, or the authority of an HTTP/2 request): a form posted from
/// another site is refused.
pub(crate) fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let Some(host) = host else { return false };
    origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}
