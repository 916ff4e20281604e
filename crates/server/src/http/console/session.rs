//! Signing in and out of the console: `GET /console/sign-in` (the form),
//! `POST /console/sign-in` (the form field `token`, checked as a bearer
//! token is, the refusals counted by the same per-address limit) and
//! `POST /console/sign-out`. Both posts are recorded in the audit log
//! (actions `sign-in` and `sign-out`, naming the token).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_page, html_page, layout, same_origin, see_other, Form};
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::sessions::session_cookie;
use crate::auth::Refusal;
use crate::http::access::{check_csrf, unauthenticated, write_audit, FormCsrf};
use crate::http::problem::ApiError;
use crate::http::request::RequestId;
use crate::runtime::state::AppState;

/// The query of the sign-in page.
#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    /// Set when a page sent the browser here because its session ended.
    ended: Option<String>,
}

fn sign_in_form(message: Option<&str>) -> Markup {
    layout(
        "Sign in",
        None,
        &[],
        html! {
            @if let Some(m) = message {
                div.notice.error role="alert" { p { (m) } }
            }
            form.card method="post" action="/console/sign-in" {
                label for="token" { "Token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                p.hint {
                    "The token you use with the Credential Stores API. Its grants decide what you can see and do here."
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /console/sign-in`: the form, or the console when already signed in.
pub(crate) async fn sign_in_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SignInQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if session_cookie(&headers).is_some_and(|c| state.sessions.find(c).is_some()) {
        return see_other("/console/");
    }
    let ended = query.is_ok_and(|Query(q)| q.ended.is_some());
    let message = ended.then_some("Your session has ended. Sign in again.");
    html_page(StatusCode::OK, sign_in_form(message))
}

/// `POST /console/sign-in`: a known token gets a new session cookie (the
/// session the request came with, if any, ends) and goes to the console
/// (303); an unknown one gets the form again with 401, or 429 past the
/// address's limit of refusals.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    uri: Uri,
    form: Option<Extension<Form>>,
) -> Response {
    if !same_origin(&headers, &uri) {
        return error_page(ApiError::forbidden("a sign-in posted from another site is refused"), None);
    }
    let audit = AuditEntry::new(&rid.0, AuditAction::SignIn);
    let token = form.as_ref().and_then(|Extension(f)| f.get("token")).map(str::trim).unwrap_or_default();
    let Some(entry) = state.auth.find(token).filter(|_| !token.is_empty()) else {
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr.ip());
        let refusal = Refusal::Unauthenticated { detail: "the token is not valid", invalid_token: true };
        let err = unauthenticated(&state, peer, &audit, refusal);
        let message = if err.status == StatusCode::UNAUTHORIZED {
            "That token is not valid.".to_owned()
        } else {
            err.detail.clone()
        };
        let mut resp = html_page(err.status, sign_in_form(Some(&message)));
        if let Some(retry) = err.headers.iter().find(|(n, _)| n == header::RETRY_AFTER) {
            resp.headers_mut().insert(header::RETRY_AFTER, retry.1.clone());
        }
        return resp;
    };
    // A session the browser still held ends: a sign-in never leaves two.
    if let Some(previous) = session_cookie(&headers) {
        state.sessions.end(previous);
    }
    let issued = match state.sessions.issue(entry.hash) {
        Ok(issued) => issued,
        Err(e) => return error_page(ApiError::internal(&e), None),
    };
    if let Err(e) = write_audit(&state, &audit.token(&entry.name), AuditOutcome::Succeeded, Some(303)) {
        state.sessions.end(&issued.cookie);
        return error_page(e, None);
    }
    let mut resp = see_other("/console/");
    match HeaderValue::from_str(&state.sessions.set_cookie(&issued.cookie)) {
        Ok(v) => {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        Err(e) => return error_page(ApiError::internal(&e), None),
    }
    resp
}

/// `POST /console/sign-out`: ends the session (with its CSRF token; 403
/// without), clears the cookie and goes to the sign-in page.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    Extension(rid): Extension<RequestId>,
    headers: HeaderMap,
    csrf: Option<Extension<FormCsrf>>,
) -> Response {
    if let Some(cookie) = session_cookie(&headers) {
        if let Some(session) = state.sessions.find(cookie) {
            let name = state.auth.by_hash(&session.token).map_or("", |t| t.name.as_str());
            let audit = AuditEntry::new(&rid.0, AuditAction::SignOut).token(name);
            let form = csrf.as_ref().map(|Extension(f)| f);
            if let Err(refused) = check_csrf(&Method::POST, &headers, form, &session) {
                let _ = write_audit(&state, &audit, AuditOutcome::Denied, Some(403));
                return error_page(refused.into(), None);
            }
            state.sessions.end(cookie);
            let _ = write_audit(&state, &audit, AuditOutcome::Succeeded, Some(303));
        }
    }
    let mut resp = see_other("/console/sign-in");
    if let Ok(v) = HeaderValue::from_str(&state.sessions.clear_cookie()) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
