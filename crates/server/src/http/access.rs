//! Who may do what, where: the extractors that admit a `/manage` request
//! (or a console page) before its handler runs, and the audit records they
//! and the handlers write.
//!
//! A request is authenticated by its `Authorization: Bearer` token, else by
//! its session cookie ([`crate::auth::sessions`]), which stands for the
//! token it was signed in with; a cookie-authenticated request that changes
//! something must carry the session's CSRF token ([`check_csrf`]).
//!
//! - [`Project`]: the path's tenant and project checked, the token admitted
//!   for the route's [`Operation`], a refusal (401, 403) recorded, the
//!   namespace `{tenantId}/{projectId}` built.
//! - [`ProjectStore`]: a [`Project`] and the store `{id}`, as the store's
//!   handle on the project's namespace
//!   ([`with_namespace`](CredentialStore::with_namespace), cached).
//! - [`ProjectCredential`]: a [`ProjectStore`] and the checked `{key}`.
//! - [`ProjectVersion`]: a [`ProjectCredential`] and the checked
//!   `{version}`.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use credstore_core::{CredentialKey, CredentialStore, Error as StoreError, Namespace, StoreId, Version};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::failures::Verdict;
use crate::auth::sessions::{session_cookie, Session, CSRF_HEADER};
use crate::auth::{Action, Refusal, Scope, TokenEntry, TokenHash};
use crate::http::problem::ApiError;
use crate::http::request::RequestId;
use crate::ids::{namespace_error, project_namespace};
use crate::runtime::state::AppState;

// ---------------------------------------------------------------- ids

fn check_store_id(id: &str) -> Result<StoreId, ApiError> {
    StoreId::new(id).map_err(|e| match e {
        StoreError::InvalidKey { reason, .. } => ApiError::invalid_field("id", reason),
        other => ApiError::from(other),
    })
}

fn path_error(rejection: PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path parameters: {}", rejection.body_text()))
}

/// The 404 of a key that is not stored.
pub(crate) fn missing(key: &CredentialKey, store: &StoreId) -> ApiError {
    ApiError::not_found(format!("no credential '{key}' in store '{store}' for this tenant and project"))
}

// ---------------------------------------------------------------- operations

/// What a route does: the token action it needs and the audit action it is
/// recorded as. Implemented by the marker types of [`op`].
pub(crate) trait Operation: 'static {
    /// The action the token's scope must name.
    const ACTION: Action;
    /// The action of its audit records.
    const AUDIT: AuditAction;
}

/// The operations of the `/manage` routes, as type parameters of the
/// extractors.
pub(crate) mod op {
    use super::{Action, AuditAction, Operation};

    macro_rules! operations {
        ($($(#[$doc:meta])* $name:ident => $action:ident, $audit:ident;)*) => {$(
            $(#[$doc])*
            pub(crate) enum $name {}
            impl Operation for $name {
                const ACTION: Action = Action::$action;
                const AUDIT: AuditAction = AuditAction::$audit;
            }
        )*};
    }

    operations! {
        /// List Credential Stores.
        ListStores => View, ListStores;
        /// Create Credential in Store.
        Create => Edit, Create;
        /// List Credential Keys.
        ListCredentials => View, ListCredentials;
        /// Get Credential Metadata.
        ReadMetadata => View, ReadMetadata;
        /// Delete Credential.
        Delete => Edit, Delete;
        /// Read Credential Value, current or at a version.
        Reveal => Reveal, Reveal;
        /// List Credential Versions.
        ListVersions => View, ListVersions;
        /// Get Credential Version Metadata.
        ReadVersion => View, ReadMetadata;
        /// Restore Credential Version.
        Restore => Edit, Restore;
        /// Purge a version, or a key with its history.
        Purge => Purge, Purge;
    }
}

// ---------------------------------------------------------------- extractors

/// The ids of a `/manage` path, as sent (percent-decoded).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathIds {
    tenant_id: String,
    project_id: String,
    id: Option<String>,
    key: Option<String>,
    version: Option<String>,
}

impl PathIds {
    async fn of(parts: &mut Parts) -> Result<Self, ApiError> {
        let Path(ids) = Path::<PathIds>::from_request_parts(parts, &()).await.map_err(path_error)?;
        Ok(ids)
    }
}

/// An admitted project: the token may take `O`'s action in this tenant
/// and project, whose ids passed [`check_scope_id`].
///
/// Rejects, in this order: 400 for path parameters that are not UTF-8; 401
/// (recorded); 422 for `tenantId` or `projectId`; 403 (recorded); 503 when
/// a refusal cannot be recorded.
pub(crate) struct Project<O> {
    /// The tenant id of the path.
    pub(crate) tenant: String,
    /// The project id of the path.
    pub(crate) project: String,
    /// `{tenant}/{project}`.
    pub(crate) namespace: Namespace,
    /// The audit entry of this request: its id, `O`'s action, the token's
    /// name and the ids of the path.
    pub(crate) audit: AuditEntry,
    /// The stores on which the token's grants allow `O`'s action here.
    pub(crate) stores: Scope,
    /// The hash of the request's token (find its grants with
    /// [`crate::auth::Authenticator::by_hash`]).
    pub(crate) token: TokenHash,
    /// The session, when the request came with a session cookie.
    pub(crate) session: Option<Session>,
    op: PhantomData<fn() -> O>,
}

impl<O: Operation> Project<O> {
    fn admit(parts: &Parts, state: &AppState, ids: &PathIds) -> Result<Self, ApiError> {
        let request_id = parts.extensions.get::<RequestId>().map_or("", |r| r.0.as_str());
        let mut audit = AuditEntry::new(request_id, O::AUDIT).project(&ids.tenant_id, &ids.project_id);
        if let Some(id) = &ids.id {
            audit = audit.store(id);
        }
        if let Some(key) = &ids.key {
            audit = audit.key(key);
        }
        if let Some(version) = &ids.version {
            audit = audit.version(version);
        }
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(addr)| addr.ip());
        let (token, session) =
            authenticate(state, &parts.headers).map_err(|e| unauthenticated(state, peer, &audit, e))?;
        audit = audit.token(&token.name);
        if let Some(session) = &session {
            check_csrf(&parts.method, &parts.headers, parts.extensions.get::<FormCsrf>(), session)
                .map_err(|e| denied(state, &audit, e))?;
        }
        let namespace = project_namespace(&ids.tenant_id, &ids.project_id)?;
        let stores =
            token.check(&ids.tenant_id, &ids.project_id, O::ACTION).map_err(|e| denied(state, &audit, e))?;
        Ok(Self {
            tenant: ids.tenant_id.clone(),
            project: ids.project_id.clone(),
            namespace,
            audit,
            stores,
            token: token.hash,
            session,
            op: PhantomData,
        })
    }
}

impl<O: Operation> FromRequestParts<AppState> for Project<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ids = PathIds::of(parts).await?;
        Self::admit(parts, state, &ids)
    }
}

/// An admitted project's store `{id}`: its handle on the project's
/// namespace.
///
/// Rejects as [`Project`] does, then 422 for a bad store id, 403
/// (recorded) for a store none of the token's grants for the route's action
/// names (served or not, so a token learns nothing of other stores), 404
/// for a store not served, and 422 when the namespace is longer than the
/// store's cap.
pub(crate) struct ProjectStore<O> {
    /// The admitted project.
    pub(crate) project: Project<O>,
    /// The store's id.
    pub(crate) id: StoreId,
    /// The store's handle on the project's namespace.
    pub(crate) store: Arc<dyn CredentialStore>,
}

impl<O: Operation> ProjectStore<O> {
    /// The path's ids, the admitted project and the checked store id, in
    /// the order of the checks; the store is not looked up yet.
    async fn admit(parts: &mut Parts, state: &AppState) -> Result<(PathIds, Project<O>, StoreId), ApiError> {
        let ids = PathIds::of(parts).await?;
        let project = Project::<O>::admit(parts, state, &ids)?;
        let id = check_store_id(ids.id.as_deref().unwrap_or_default())?;
        Ok((ids, project, id))
    }

    fn open(project: Project<O>, state: &AppState, id: StoreId) -> Result<Self, ApiError> {
        if !project.stores.allows(id.as_str()) {
            return Err(denied(state, &project.audit, TokenEntry::store_forbidden(id.as_str(), O::ACTION)));
        }
        let store = match state.stores.handle(id.as_str(), &project.namespace) {
            None => return Err(ApiError::not_found(format!("no credential store with id '{id}'"))),
            Some(Ok(store)) => store,
            Some(Err(e)) => return Err(namespace_error(e, Some(&id)).into()),
        };
        Ok(Self { project, id, store })
    }
}

impl<O: Operation> FromRequestParts<AppState> for ProjectStore<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (_, project, id) = Self::admit(parts, state).await?;
        Self::open(project, state, id)
    }
}

/// An admitted project's store `{id}` and a checked `{key}`.
///
/// Rejects as [`ProjectStore`] does, with 422 for a bad key after the
/// store id and before the store lookup.
pub(crate) struct ProjectCredential<O> {
    /// The store.
    pub(crate) store: ProjectStore<O>,
    /// The key of the path.
    pub(crate) key: CredentialKey,
}

impl<O: Operation> FromRequestParts<AppState> for ProjectCredential<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (ids, project, id) = ProjectStore::admit(parts, state).await?;
        let key = CredentialKey::new(ids.key.unwrap_or_default())?;
        let store = ProjectStore::open(project, state, id)?;
        Ok(Self { store, key })
    }
}

/// An admitted project's store `{id}`, a checked `{key}` and a checked
/// `{version}`.
///
/// Rejects as [`ProjectCredential`] does, with 422 for a version that no
/// store can have (empty, over 128 bytes, or with a character outside
/// visible ASCII less `"` and `,`) after the key and before the store
/// lookup.
pub(crate) struct ProjectVersion<O> {
    /// The store and the key.
    pub(crate) credential: ProjectCredential<O>,
    /// The version of the path.
    pub(crate) version: Version,
}

impl<O: Operation> FromRequestParts<AppState> for ProjectVersion<O> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (ids, project, id) = ProjectStore::admit(parts, state).await?;
        let key = CredentialKey::new(ids.key.unwrap_or_default())?;
        let version = Version::new(ids.version.unwrap_or_default())?;
        let store = ProjectStore::open(project, state, id)?;
        Ok(Self { credential: ProjectCredential { store, key }, version })
    }
}

// ---------------------------------------------------------------- caller

/// The CSRF token a console form sent (its field `csrf`), which the
/// console puts in the request's extensions before the extractors run.
#[derive(Clone)]
pub(crate) struct FormCsrf(pub(crate) Zeroizing<String>);

/// The token of a request: its `Authorization: Bearer` token when it sends
/// that header, else the token its session cookie was signed in with (and
/// the session).
///
/// # Errors
/// 401 as for [`crate::auth::Authenticator::authenticate`]; 401 for a
/// session cookie that is unknown, has expired or was signed out.
pub(crate) fn authenticate<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
) -> Result<(&'s TokenEntry, Option<Session>), Refusal> {
    if !headers.contains_key(axum::http::header::AUTHORIZATION) {
        if let Some(cookie) = session_cookie(headers) {
            let refused = Refusal::Unauthenticated {
                detail:
                    "the session cookie is not valid: it has expired or was signed out; sign in again at \
                         /console/sign-in, or send the header Authorization: Bearer <token>",
                invalid_token: false,
            };
            let session = state.sessions.find(cookie).ok_or_else(|| refused.clone())?;
            let token = state.auth.by_hash(&session.token).ok_or(refused)?;
            return Ok((token, Some(session)));
        }
    }
    state.auth.authenticate(headers).map(|token| (token, None))
}

/// Refuses a request authenticated by `session` that changes something
/// (any method but GET, HEAD and OPTIONS) unless it carries the session's
/// CSRF token, in the `X-CSRF-Token` header or as the console form's
/// `csrf` field (`form`).
///
/// # Errors
/// 403 when the token is missing or is not the session's.
pub(crate) fn check_csrf(
    method: &Method,
    headers: &HeaderMap,
    form: Option<&FormCsrf>,
    session: &Session,
) -> Result<(), Refusal> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let presented = headers
        .get(CSRF_HEADER)
        .map(|v| v.to_str().unwrap_or_default())
        .or_else(|| form.map(|f| f.0.as_str()));
    match presented {
        Some(token) if session.csrf_matches(token) => Ok(()),
        Some(_) => Err(Refusal::Forbidden(
            "the CSRF token is not this session's; reload the page and try again; nothing was changed".into(),
        )),
        None => Err(Refusal::Forbidden(
            "a request that changes something with a session cookie needs the session's CSRF token, in the \
             X-CSRF-Token header (or the console form's csrf field); nothing was changed"
                .into(),
        )),
    }
}

// ---------------------------------------------------------------- audit

/// Records a refusal (401, 403) in the audit log; the refusal itself, or
/// 503 when it cannot be recorded.
pub(crate) fn denied(state: &AppState, audit: &AuditEntry, err: impl Into<ApiError>) -> ApiError {
    let err = err.into();
    match write_audit(state, audit, AuditOutcome::Denied, Some(err.status.as_u16())) {
        Ok(()) => err,
        Err(unwritable) => unwritable,
    }
}

/// Answers a request without a known token from `peer`: its 401, recorded,
/// while the peer is within its limit of such refusals
/// ([`crate::auth::failures`]); past it, 429 with `Retry-After`, recorded
/// for the first of a run only. The record holds
/// [`AuditEntry::anonymous`] of `audit`.
pub(crate) fn unauthenticated(
    state: &AppState,
    peer: Option<IpAddr>,
    audit: &AuditEntry,
    err: Refusal,
) -> ApiError {
    match state.auth_failures.note(peer) {
        Verdict::Refuse => denied(state, &audit.anonymous(), err),
        Verdict::Throttle { retry_after, first } => {
            let throttled = ApiError::too_many_requests(retry_after);
            if first {
                denied(state, &audit.anonymous(), throttled)
            } else {
                throttled
            }
        }
    }
}

/// Appends one record; 503 when it cannot be written.
pub(crate) fn write_audit(
    state: &AppState,
    audit: &AuditEntry,
    outcome: AuditOutcome,
    status: Option<u16>,
) -> Result<(), ApiError> {
    state.audit.append_entry(audit, outcome, status).map_err(|e| unwritable(state, &e))
}

/// Appends one record and waits until it is on disk (see the audit log's
/// durability); 503 when it cannot be written or synced.
pub(crate) async fn write_audit_durable(
    state: &AppState,
    audit: &AuditEntry,
    outcome: AuditOutcome,
    status: Option<u16>,
) -> Result<(), ApiError> {
    state.audit.append_durable(audit, outcome, status).await.map_err(|e| unwritable(state, &e))
}

fn unwritable(state: &AppState, e: &std::io::Error) -> ApiError {
    tracing::error!(error = %e, audit_log = state.audit.target(), "cannot write the audit log");
    ApiError::unavailable(
        "the audit log cannot be written, so the request was refused and nothing was changed",
    )
}

/// Carries out a mutation between its two audit records: `started` before,
/// on disk (503 and nothing done when it cannot be written), then `succeeded` or
/// `failed` with the status answered (a failure to write that one is
/// logged; the change is already made). A mutation cut off before the store
/// answered (the request timeout, or the client gone) is recorded
/// `abandoned`: the store may or may not have made the change.
pub(crate) async fn audited<T>(
    state: &AppState,
    audit: &AuditEntry,
    success: impl Fn(&T) -> StatusCode,
    mutation: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    write_audit_durable(state, audit, AuditOutcome::Started, None).await?;
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
