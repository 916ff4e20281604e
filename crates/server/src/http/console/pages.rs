//! The console's pages: a project's stores, a store's credentials, one
//! credential with its versions, and the forms that create, replace,
//! delete, reveal and restore. Each is admitted by the extractors of the
//! Credential Stores API's route that does the same thing
//! ([`crate::http::access`], so the same grants, refusals and audit
//! records) and calls the same functions as that route's handler.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Extension;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId, Version,
};
use maud::{html, Markup};
use serde::Deserialize;

use super::{error_page, html_page, layout, see_other, Form, Viewer};
use crate::auth::sessions::{session_cookie, Session};
use crate::auth::{Action, Scope, TokenEntry};
use crate::http::access::{op, Project, ProjectCredential, ProjectStore, ProjectVersion};
use crate::http::body::CreateInput;
use crate::http::conditional::WriteCondition;
use crate::http::problem::ApiError;
use crate::http::routes::credentials::{self, CredentialInfo};
use crate::http::routes::stores::{self, ListStoresResponse};
use crate::http::routes::versions::{self, ListVersionsResponse};
use crate::ids::check_scope_id;
use crate::runtime::state::AppState;

/// Keys per page of a store's listing.
const PAGE: usize = 25;

/// Versions shown on a credential's page.
const VERSIONS_SHOWN: usize = 20;

/// Seconds a revealed value stays on screen.
pub(crate) const REVEAL_SECONDS: u32 = 10;

// ---------------------------------------------------------------- who and where

/// The token and session of a request's session cookie, when it has a live
/// one.
fn signed_in<'s>(state: &'s AppState, headers: &HeaderMap) -> Option<(&'s TokenEntry, Session)> {
    let session = state.sessions.find(session_cookie(headers)?)?;
    let token = state.auth.by_hash(&session.token)?;
    Some((token, session))
}

/// An error page, with the header of whoever is signed in.
fn fail(state: &AppState, headers: &HeaderMap, err: ApiError) -> Response {
    match signed_in(state, headers) {
        Some((token, session)) => error_page(err, Some(&Viewer { name: &token.name, csrf: session.csrf() })),
        None => error_page(err, None),
    }
}

/// The admitted request's token and what the page needs of it.
struct Who<'a> {
    token: &'a TokenEntry,
    csrf: String,
}

impl<'a> Who<'a> {
    fn of<O>(state: &'a AppState, project: &Project<O>) -> Result<Self, ApiError> {
        let token = state
            .auth
            .by_hash(&project.token)
            .ok_or_else(|| ApiError::unauthorized("the token is no longer known", true))?;
        let csrf = project.session.as_ref().map(|s| s.csrf().to_owned()).unwrap_or_default();
        Ok(Self { token, csrf })
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer { name: &self.token.name, csrf: &self.csrf }
    }

    fn may(&self, here: &Here, store: &str, action: Action) -> bool {
        self.token.allows(&here.tenant, &here.project, Some(store), action)
    }
}

/// The tenant and project of a page.
struct Here {
    tenant: String,
    project: String,
}

impl Here {
    fn of<O>(project: &Project<O>) -> Self {
        Self { tenant: project.tenant.clone(), project: project.project.clone() }
    }

    // Every id in these links passed the id rules ([a-zA-Z0-9-_.]), so
    // none needs encoding.
    fn project_url(&self) -> String {
        format!("/console/tenants/{}/projects/{}", self.tenant, self.project)
    }

    fn store_url(&self, store: &str) -> String {
        format!("{}/stores/{store}", self.project_url())
    }

    fn credential_url(&self, store: &str, key: &str) -> String {
        format!("{}/credentials/{key}", self.store_url(store))
    }

    fn crumbs(&self, store: Option<&str>, key: Option<&str>) -> Vec<(String, String)> {
        let mut crumbs = vec![
            ("/console/".to_owned(), "Console".to_owned()),
            (self.project_url(), format!("{} / {}", self.tenant, self.project)),
        ];
        if let Some(store) = store {
            crumbs.push((self.store_url(store), store.to_owned()));
            if let Some(key) = key {
                crumbs.push((self.credential_url(store, key), key.to_owned()));
            }
        }
        crumbs
    }
}

fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

fn notice_ok(text: &str) -> Markup {
    html! { div.notice.ok role="status" { p { (text) } } }
}

fn notice_error(text: &str) -> Markup {
    html! { div.notice.error role="alert" { p { (text) } } }
}

// ---------------------------------------------------------------- home

/// `GET /console/`: who is signed in, their grants, and a project to open.
pub(crate) async fn home(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some((token, session)) = signed_in(&state, &headers) else {
        return see_other("/console/sign-in");
    };
    let viewer = Viewer { name: &token.name, csrf: session.csrf() };
    let scope = |s: &Scope| match s {
        Scope::All => "any".to_owned(),
        Scope::Only(ids) => ids.iter().cloned().collect::<Vec<_>>().join(", "),
    };
    let mut shortcuts = Vec::new();
    for grant in &token.grants {
        if let (Scope::Only(tenants), Scope::Only(projects)) = (&grant.tenants, &grant.projects) {
            for t in tenants {
                for p in projects {
                    if shortcuts.len() < 50
                        && check_scope_id("tenantId", t).is_ok()
                        && check_scope_id("projectId", p).is_ok()
                    {
                        shortcuts.push(Here { tenant: t.clone(), project: p.clone() });
                    }
                }
            }
        }
    }
    let body = html! {
        form.card method="get" action="/console/project" {
            h2 { "Open a project" }
            div.row {
                div { label for="tenant" { "Tenant" } input #tenant type="text" name="tenant" required autocomplete="off"; }
                div { label for="project" { "Project" } input #project type="text" name="project" required autocomplete="off"; }
            }
            button type="submit" { "Open" }
        }
        @if !shortcuts.is_empty() {
            h2 { "Your projects" }
            ul { @for here in &shortcuts { li { a href=(here.project_url()) { (here.tenant) " / " (here.project) } } } }
        }
        h2 { "What this token may do" }
        table {
            thead { tr { th { "Tenants" } th { "Projects" } th { "Stores" } th { "Actions" } } }
            tbody {
                @for grant in &token.grants {
                    tr {
                        td data-label="Tenants" { (scope(&grant.tenants)) }
                        td data-label="Projects" { (scope(&grant.projects)) }
                        td data-label="Stores" { (scope(&grant.stores)) }
                        td data-label="Actions" { (grant.actions.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")) }
                    }
                }
            }
        }
    };
    html_page(StatusCode::OK, layout("Console", Some(&viewer), &[], body))
}

/// The query of the project form.
#[derive(Deserialize)]
pub(crate) struct OpenProject {
    tenant: String,
    project: String,
}

/// `GET /console/project?tenant=…&project=…`: to the project's page.
pub(crate) async fn open_project(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<OpenProject>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return fail(&state, &headers, ApiError::bad_request("give a tenant and a project"));
    };
    let (tenant, project) = (q.tenant.trim(), q.project.trim());
    if let Err(e) = check_scope_id("tenantId", tenant).and_then(|()| check_scope_id("projectId", project)) {
        return fail(&state, &headers, e.into());
    }
    see_other(&Here { tenant: tenant.to_owned(), project: project.to_owned() }.project_url())
}

// ---------------------------------------------------------------- stores

/// A project's page: its stores, their availability and last check.
pub(crate) async fn stores(
    State(state): State<AppState>,
    headers: HeaderMap,
    project: Result<Project<op::ListStores>, ApiError>,
) -> Response {
    let project = match project {
        Ok(p) => p,
        Err(e) => return fail(&state, &headers, e),
    };
    let who = match Who::of(&state, &project) {
        Ok(w) => w,
        Err(e) => return error_page(e, None),
    };
    let here = Here::of(&project);
    let list: ListStoresResponse = match serde_json::from_slice(&stores::stores_body(&state, &project.stores))
    {
        Ok(list) => list,
        Err(e) => return error_page(ApiError::internal(&e), Some(&who.viewer())),
    };
    let body = html! {
        @if list.data.is_empty() {
            p.empty { "No store is open to this token in this project." }
        } @else {
            table {
                thead { tr { th { "Store" } th { "Type" } th { "Availability" } th { "Last checked" } } }
                tbody {
                    @for s in &list.data {
                        tr {
                            td data-label="Store" { a href=(here.store_url(&s.id)) { (s.id) } }
                            td data-label="Type" { (s.kind) }
                            td data-label="Availability" {
                                @if s.available { span.badge.up { "available" } }
                                @else { span.badge.down { "unavailable" } " " (s.reason) }
                            }
                            td data-label="Last checked" { time datetime=(s.checked_at) { (s.checked_at) } }
                        }
                    }
                }
            }
        }
    };
    let title = format!("Stores of {} / {}", here.tenant, here.project);
    html_page(StatusCode::OK, layout(&title, Some(&who.viewer()), &here.crumbs(None, None), body))
}

// ---------------------------------------------------------------- credentials

/// The query of a store's page.
#[derive(Deserialize, Default)]
pub(crate) struct ListPage {
    prefix: Option<String>,
    cursor: Option<String>,
    deleted: Option<String>,
}

/// A store's page: a page of its credentials (with a prefix filter), each
/// with its metadata, version and times; and the create form.
pub(crate) async fn credentials(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectStore<op::ListCredentials>, ApiError>,
    query: Result<Query<ListPage>, QueryRejection>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let who = match Who::of(&state, &target.project) {
        Ok(w) => w,
        Err(e) => return error_page(e, None),
    };
    let here = Here::of(&target.project);
    let prefix = q.prefix.filter(|p| !p.is_empty());
    let page =
        match credentials::list_page(target.store.as_ref(), prefix.clone(), q.cursor.clone(), Some(PAGE))
            .await
        {
            Ok(page) => page,
            Err(e) => return error_page(e, Some(&who.viewer())),
        };
    let keys: Vec<CredentialKey> = page.data.iter().filter_map(|k| CredentialKey::new(&k.key).ok()).collect();
    let infos = match credentials::infos(target.store.as_ref(), &target.id, &keys).await {
        Ok(infos) => infos,
        Err(e) => return error_page(e, Some(&who.viewer())),
    };
    let id = target.id.as_str();
    let next = page.next_cursor.as_ref().map(|c| {
        let mut url = format!("{}?cursor={c}", here.store_url(id));
        if let Some(p) = &prefix {
            url.push_str("&prefix=");
            url.push_str(p);
        }
        url
    });
    let can_edit = who.may(&here, id, Action::Edit);
    let body = html! {
        @if let Some(key) = &q.deleted { (notice_ok(&format!("Credential '{key}' was deleted."))) }
        form.card method="get" action=(here.store_url(id)) role="search" {
            label for="prefix" { "Keys starting with" }
            input #prefix type="text" name="prefix" value=(prefix.as_deref().unwrap_or("")) autocomplete="off";
            button.secondary type="submit" { "Filter" }
        }
        @if infos.is_empty() {
            p.empty {
                @if let Some(p) = &prefix { "No credential key starts with '" (p) "'." }
                @else { "This store holds no credentials for this project yet." }
            }
        } @else {
            table {
                thead { tr { th { "Key" } th { "Version" } th { "Updated" } th { "Created" } th { "Metadata" } } }
                tbody {
                    @for (key, info) in &infos {
                        tr {
                            td data-label="Key" { a href=(here.credential_url(id, key.as_str())) { (key.as_str()) } }
                            @if let Some(info) = info {
                                td data-label="Version" { code { (info.version) } }
                                td data-label="Updated" { (info.updated_at) }
                                td data-label="Created" { (info.created_at) }
                                td data-label="Metadata" { (metadata_list(&info.metadata)) }
                            } @else {
                                td colspan="4" { span.empty { "deleted or expired since it was listed" } }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if q.cursor.is_some() {
                a href=(match &prefix { Some(p) => format!("{}?prefix={p}", here.store_url(id)), None => here.store_url(id) }) { "First page" }
            }
            @if let Some(next) = &next { a href=(next) { "Next page" } }
        }
        @if can_edit {
            form.card method="post" action=(here.store_url(id)) {
                h2 { "New credential" }
                (csrf_field(&who.csrf))
                label for="key" { "Key" }
                input #key type="text" name="key" required autocomplete="off" pattern="[a-zA-Z0-9_.\\-]+" maxlength="255";
                p.hint { "Letters, digits, '-', '_' and '.'." }
                label for="value" { "Value" }
                input #value type="password" name="value" required autocomplete="new-password";
                p.hint { "Sent once; never shown back here." }
                label for="metadata" { "Metadata" }
                textarea #metadata name="metadata" placeholder="owner=payments" {}
                p.hint { "One name=value a line." }
                button type="submit" { "Create" }
            }
        }
    };
    let title = format!("Credentials in {id}");
    html_page(StatusCode::OK, layout(&title, Some(&who.viewer()), &here.crumbs(Some(id), None), body))
}

fn metadata_list(metadata: &BTreeMap<String, String>) -> Markup {
    html! {
        @if metadata.is_empty() { span.empty { "none" } }
        @else { ul.meta { @for (k, v) in metadata { li { code { (k) } " = " code { (v) } } } } }
    }
}

/// The metadata of a form's `metadata` field: `name=value` lines.
fn parse_metadata(text: &str) -> Result<Metadata, ApiError> {
    let mut metadata = Metadata::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once('=') else {
            return Err(ApiError::invalid_field("metadata", "each line is name=value"));
        };
        metadata.insert(name.trim(), value.trim())?;
    }
    Ok(metadata)
}

/// The value and metadata of a create or replace form.
fn form_input(form: &Form, key: CredentialKey) -> Result<CreateInput, ApiError> {
    let value = form.get("value").unwrap_or_default();
    if value.is_empty() {
        return Err(ApiError::invalid_field("value", "is empty"));
    }
    let value = SecretValue::from_text(value.to_owned());
    credstore_core::check_value(&value)?;
    let metadata = parse_metadata(form.get("metadata").unwrap_or_default())?;
    Ok(CreateInput { key, value, metadata, expires_at: None })
}

/// `POST` on a store's page: creates a credential (only when the key is
/// new), then shows it.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectStore<op::Create>, ApiError>,
    form: Option<Extension<Form>>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let form = form.map(|Extension(f)| f).unwrap_or_default();
    let here = Here::of(&target.project);
    let key_text = form.get("key").unwrap_or_default().trim().to_owned();
    let input = match CredentialKey::new(&key_text).map_err(ApiError::from).and_then(|k| form_input(&form, k))
    {
        Ok(input) => input,
        Err(e) => return fail(&state, &headers, e),
    };
    let written = credentials::write_credential(
        &state,
        target.project.audit.clone(),
        target.store.as_ref(),
        &input,
        &WriteCondition::Absent,
    )
    .await;
    match written {
        Ok(_) => see_other(&format!("{}?notice=created", here.credential_url(target.id.as_str(), &key_text))),
        Err(e) if e.status == StatusCode::PRECONDITION_FAILED => {
            let e = ApiError::precondition_failed(format!(
                "A credential '{key_text}' already exists in store '{}'; nothing was changed. Open it to replace its value.",
                target.id
            ));
            fail(&state, &headers, e)
        }
        Err(e) => fail(&state, &headers, e),
    }
}

// ---------------------------------------------------------------- one credential

/// The query of a credential's page.
#[derive(Deserialize, Default)]
pub(crate) struct CredentialQuery {
    notice: Option<String>,
}

/// What a credential's page shows besides the credential.
#[derive(Default)]
struct Extras<'a> {
    ok: Option<&'static str>,
    error: Option<String>,
    revealed: Option<(&'a str, &'a str)>,
}

/// A credential's page.
pub(crate) async fn credential(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectCredential<op::ReadMetadata>, ApiError>,
    query: Result<Query<CredentialQuery>, QueryRejection>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let ok = match q.notice.as_deref() {
        Some("created") => Some("Created."),
        Some("replaced") => Some("The value was replaced."),
        Some("restored") => Some("The version was restored as a new version."),
        _ => None,
    };
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    credential_page(
        &state,
        &project,
        &id,
        store.as_ref(),
        &key,
        Extras { ok, ..Extras::default() },
        StatusCode::OK,
    )
    .await
}

async fn credential_page<O>(
    state: &AppState,
    project: &Project<O>,
    id: &StoreId,
    store: &dyn CredentialStore,
    key: &CredentialKey,
    extras: Extras<'_>,
    status: StatusCode,
) -> Response {
    let who = match Who::of(state, project) {
        Ok(w) => w,
        Err(e) => return error_page(e, None),
    };
    let info = match credentials::current(store, id, key).await {
        Ok(cred) => credentials::info_of(id, key, &cred),
        Err(e) => return error_page(e, Some(&who.viewer())),
    };
    let here = Here::of(project);
    let history = if store.capabilities().versions {
        versions::versions_page(store, key, None, Some(VERSIONS_SHOWN)).await.ok()
    } else {
        None
    };
    let body = detail(&here, &who, id.as_str(), &info, history.as_ref(), &extras);
    let title = format!("Credential {key}");
    let markup =
        layout(&title, Some(&who.viewer()), &here.crumbs(Some(id.as_str()), Some(key.as_str())), body);
    match extras.revealed {
        // Hidden again: the page reloads without the value.
        Some((_, value)) => page_with_refresh(
            &here.credential_url(id.as_str(), key.as_str()),
            with_secret(status, &markup.into_string(), value),
        ),
        None => html_page(status, markup),
    }
}

/// The page `html` with `value`, escaped, inside its empty
/// `id="revealed"` element, written into one zeroizing buffer of the exact
/// size (no copy of the value left behind by a growing string), which the
/// answer's body owns and zeroizes when it is dropped. No attribute or
/// text of the page can hold `id="revealed">` unescaped, so the first one
/// is the element's.
fn with_secret(status: StatusCode, html: &str, value: &str) -> Response {
    const MARK: &str = "id=\"revealed\">";
    let at = html.find(MARK).map_or(html.len(), |i| i + MARK.len());
    let escape = |b: u8| -> Option<&'static [u8]> {
        match b {
            b'&' => Some(b"&amp;"),
            b'<' => Some(b"&lt;"),
            b'>' => Some(b"&gt;"),
            b'"' => Some(b"&quot;"),
            b'\'' => Some(b"&#39;"),
            _ => None,
        }
    };
    let escaped_len: usize = value.bytes().map(|b| escape(b).map_or(1, <[u8]>::len)).sum();
    let mut body = zeroize::Zeroizing::new(Vec::with_capacity(html.len() + escaped_len));
    body.extend_from_slice(&html.as_bytes()[..at]);
    for b in value.bytes() {
        match escape(b) {
            Some(entity) => body.extend_from_slice(entity),
            None => body.push(b),
        }
    }
    body.extend_from_slice(&html.as_bytes()[at..]);
    let mut resp = axum::response::IntoResponse::into_response((
        status,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        axum::body::Body::from(axum::body::Bytes::from_owner(body)),
    ));
    resp.extensions_mut().insert(crate::http::request::RenderedPage);
    resp
}

/// Adds `Refresh` to a page, which reloads `url` (the page without the
/// value) after [`REVEAL_SECONDS`].
fn page_with_refresh(url: &str, mut page: Response) -> Response {
    if let Ok(v) = axum::http::HeaderValue::try_from(format!("{REVEAL_SECONDS}; url={url}")) {
        page.headers_mut().insert(axum::http::HeaderName::from_static("refresh"), v);
    }
    page
}

fn detail(
    here: &Here,
    who: &Who<'_>,
    id: &str,
    info: &CredentialInfo,
    history: Option<&ListVersionsResponse>,
    extras: &Extras<'_>,
) -> Markup {
    let url = here.credential_url(id, &info.key);
    let can_edit = who.may(here, id, Action::Edit);
    let can_reveal = who.may(here, id, Action::Reveal);
    let metadata_text: String = info.metadata.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    html! {
        @if let Some(ok) = extras.ok { (notice_ok(ok)) }
        @if let Some(error) = &extras.error { (notice_error(error)) }
        section.card aria-labelledby="facts" {
            h2 #facts { "Details" }
            dl.facts {
                dt { "Key" } dd { code { (info.key) } }
                dt { "Store" } dd { (info.store_id) }
                dt { "Version" } dd { code #version { (info.version) } }
                dt { "Kind" } dd { (match info.value_kind { credentials::ValueKind::Text => "text", credentials::ValueKind::Binary => "binary" }) }
                dt { "Created" } dd { (info.created_at) }
                dt { "Updated" } dd { (info.updated_at) }
                dt { "Expires" } dd { (info.expires_at.as_deref().unwrap_or("never")) }
                dt { "Metadata" } dd { (metadata_list(&info.metadata)) }
            }
        }
        @if let Some((kind, _)) = extras.revealed {
            section.card aria-labelledby="value-title" {
                h2 #value-title { "Value" }
                @if kind == "binary" { p.hint { "Binary; shown as base64." } }
                // Empty here: the value goes straight into the answer's
                // zeroizing buffer (`with_secret`).
                pre.secret #revealed {}
                p.hint { "Hidden again in " (REVEAL_SECONDS) " seconds. This read was recorded in the audit log." }
                p { a href=(url) { "Hide now" } }
            }
        }
        div.actions {
            @if can_reveal && extras.revealed.is_none() {
                form.card method="post" action=(format!("{url}/reveal")) {
                    h2 { "Value" }
                    p.hint { "Shown for " (REVEAL_SECONDS) " seconds; every read is recorded in the audit log." }
                    (csrf_field(&who.csrf))
                    button.secondary type="submit" { "Reveal value" }
                }
            }
            @if can_edit {
                form.card method="post" action=(format!("{url}/replace")) {
                    h2 { "Replace the value" }
                    (csrf_field(&who.csrf))
                    input type="hidden" name="version" value=(info.version);
                    label for="value" { "New value" }
                    input #value type="password" name="value" required autocomplete="new-password";
                    label for="metadata" { "Metadata" }
                    textarea #metadata name="metadata" { (metadata_text) }
                    p.hint { "One name=value a line. Replaces version " code { (info.version) } " only: if it changed meanwhile, nothing is written." }
                    button type="submit" { "Replace" }
                }
                div.card {
                    h2 { "Delete" }
                    p { a href=(format!("{url}/delete")) { "Delete this credential…" } }
                }
            }
        }
        @if let Some(history) = history {
            h2 { "Versions" }
            @if history.data.is_empty() {
                p.empty { "No version is kept." }
            } @else {
                table {
                    thead { tr { th { "Version" } th { "State" } th { "Written" } th { "Metadata" } th { span { "Restore" } } } }
                    tbody {
                        @for v in &history.data {
                            tr {
                                td data-label="Version" { code { (v.version) } }
                                td data-label="State" { (v.state) }
                                td data-label="Written" { (v.written_at) }
                                td data-label="Metadata" { (metadata_list(&v.metadata)) }
                                td data-label="Restore" {
                                    @if can_edit && v.state != "current" {
                                        form.inline method="post" action=(format!("{url}/versions/{}/restore", v.version)) {
                                            (csrf_field(&who.csrf))
                                            input type="hidden" name="current" value=(info.version);
                                            button.secondary type="submit" aria-label=(format!("Restore version {}", v.version)) { "Restore" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The version a form names.
fn form_version(form: &Form, field: &str) -> Result<Version, ApiError> {
    Ok(Version::new(form.get(field).unwrap_or_default())?)
}

/// The message of a replace or restore whose version on screen is no
/// longer current.
fn conflict(on_screen: &str) -> String {
    format!(
        "This credential changed since the page showed version {on_screen}; nothing was changed. \
         Here is what it holds now: check it and try again."
    )
}

/// A credential's page, as a form posted from it sees it.
struct CredentialPage<'a, O> {
    state: &'a AppState,
    headers: &'a HeaderMap,
    project: &'a Project<O>,
    id: &'a StoreId,
    key: &'a CredentialKey,
}

impl<O> CredentialPage<'_, O> {
    /// Where a write at the version on screen (a replace, a restore) goes:
    /// back to the page with `notice` when it was written, the page again
    /// with the conflict message when the version moved on (412), the
    /// error page otherwise.
    async fn after_write<T>(
        &self,
        store: &dyn CredentialStore,
        written: Result<T, ApiError>,
        on_screen: &Version,
        notice: &str,
    ) -> Response {
        match written {
            Ok(_) => see_other(&format!(
                "{}?notice={notice}",
                Here::of(self.project).credential_url(self.id.as_str(), self.key.as_str())
            )),
            Err(e) if e.status == StatusCode::PRECONDITION_FAILED => {
                let extras = Extras { error: Some(conflict(on_screen.as_str())), ..Extras::default() };
                credential_page(
                    self.state,
                    self.project,
                    self.id,
                    store,
                    self.key,
                    extras,
                    StatusCode::PRECONDITION_FAILED,
                )
                .await
            }
            Err(e) => fail(self.state, self.headers, e),
        }
    }
}

/// `POST …/replace`: replaces the value at the version on screen.
pub(crate) async fn replace(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectCredential<op::Create>, ApiError>,
    form: Option<Extension<Form>>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let form = form.map(|Extension(f)| f).unwrap_or_default();
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    let (version, input) =
        match form_version(&form, "version").and_then(|v| Ok((v, form_input(&form, key.clone())?))) {
            Ok(parsed) => parsed,
            Err(e) => return fail(&state, &headers, e),
        };
    let condition = WriteCondition::Version(version.clone());
    let written =
        credentials::write_credential(&state, project.audit.clone(), store.as_ref(), &input, &condition)
            .await;
    let page = CredentialPage { state: &state, headers: &headers, project: &project, id: &id, key: &key };
    page.after_write(store.as_ref(), written, &version, "replaced").await
}

/// `GET …/delete`: the confirmation step.
pub(crate) async fn confirm_delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectCredential<op::Delete>, ApiError>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let who = match Who::of(&state, &target.store.project) {
        Ok(w) => w,
        Err(e) => return error_page(e, None),
    };
    let here = Here::of(&target.store.project);
    let (id, key) = (target.store.id.as_str(), target.key.as_str());
    let url = here.credential_url(id, key);
    let body = html! {
        form.card method="post" action=(format!("{url}/delete")) {
            p { "Delete the credential " code { (key) } " from store " strong { (id) } " for " (here.tenant) " / " (here.project) "?" }
            p.hint { "Its value and metadata go. A store that keeps versions keeps the last one as deleted, which the Credential Stores API's restore (If-None-Match: *) brings back." }
            (csrf_field(&who.csrf))
            div.pager {
                button.danger type="submit" { "Delete" }
                a href=(url) { "Cancel" }
            }
        }
    };
    let title = format!("Delete {key}?");
    html_page(StatusCode::OK, layout(&title, Some(&who.viewer()), &here.crumbs(Some(id), Some(key)), body))
}

/// `POST …/delete`: deletes, then shows the store.
pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectCredential<op::Delete>, ApiError>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    match credentials::delete_in(&state, &project.audit, &id, store.as_ref(), &key).await {
        Ok(()) => see_other(&format!("{}?deleted={key}", Here::of(&project).store_url(id.as_str()))),
        Err(e) => fail(&state, &headers, e),
    }
}

/// `POST …/reveal`: the credential's page with its value, recorded in the
/// audit log as the value read is, hidden again after [`REVEAL_SECONDS`].
pub(crate) async fn reveal(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectCredential<op::Reveal>, ApiError>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let ProjectCredential { store: ProjectStore { project, id, store }, key } = target;
    let read = credentials::current(store.as_ref(), &id, &key).await;
    let cred = match credentials::record_reveal(&state, &project.audit, read).await {
        Ok(cred) => cred,
        Err(e) => return fail(&state, &headers, e),
    };
    let encoded;
    let revealed = match cred.value.expose_str() {
        Ok(text) => ("text", text),
        Err(_) => {
            use base64::Engine as _;
            encoded = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD.encode(cred.value.expose_secret()),
            );
            ("binary", encoded.as_str())
        }
    };
    let extras = Extras { revealed: Some(revealed), ..Extras::default() };
    credential_page(&state, &project, &id, store.as_ref(), &key, extras, StatusCode::OK).await
}

/// `POST …/versions/{version}/restore`: writes the version back over the
/// version on screen.
pub(crate) async fn restore(
    State(state): State<AppState>,
    headers: HeaderMap,
    target: Result<ProjectVersion<op::Restore>, ApiError>,
    form: Option<Extension<Form>>,
) -> Response {
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(&state, &headers, e),
    };
    let form = form.map(|Extension(f)| f).unwrap_or_default();
    let ProjectVersion {
        credential: ProjectCredential { store: ProjectStore { project, id, store }, key },
        version,
    } = target;
    let current = match form_version(&form, "current") {
        Ok(v) => v,
        Err(e) => return fail(&state, &headers, e),
    };
    let condition = WriteCondition::Version(current.clone());
    let written =
        versions::restore_in(&state, &project.audit, store.as_ref(), &key, &version, &condition, None).await;
    let page = CredentialPage { state: &state, headers: &headers, project: &project, id: &id, key: &key };
    page.after_write(store.as_ref(), written, &current, "restored").await
}
