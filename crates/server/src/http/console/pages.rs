//! The console's pages.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::{html_page, layout, see_other, Viewer};
use crate::auth::sessions::{session_cookie, Session};
use crate::auth::TokenEntry;
use crate::runtime::state::AppState;

/// The token and session of a request's session cookie, when it has a live
/// one.
fn signed_in<'s>(state: &'s AppState, headers: &HeaderMap) -> Option<(&'s TokenEntry, Session)> {
    let session = state.sessions.find(session_cookie(headers)?)?;
    let token = state.auth.by_hash(&session.token)?;
    Some((token, session))
}

/// `GET /console/`: who is signed in.
pub(crate) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((token, session)) = signed_in(&state, &headers) else {
        return see_other("/console/sign-in");
    };
    let viewer = Viewer { name: &token.name, csrf: session.csrf() };
    let body = html! {
        p { "You are signed in with the token " strong { (token.name) } "." }
    };
    html_page(StatusCode::OK, layout("Console", Some(&viewer), &[], body))
}
