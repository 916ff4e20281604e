//! What the OpenAPI 3.1 document declares once for every route: the
//! API's description, tags and security scheme, the path parameters and
//! the shared error answers. The router ([`crate::http`]) builds the
//! document from these and the handlers' `#[utoipa::path]` annotations, so
//! every route is documented by construction.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::IntoParams;

use super::problem::{Problem, ProblemError, PROBLEM_JSON};

const DESCRIPTION: &str = "\
The Credential Stores API over every credstore backend (memory, encrypted SQLite, \
HashiCorp Vault / OpenBao, AWS Secrets Manager, or a custom store).

**Authentication.** Every `/manage` route needs `Authorization: Bearer <token>`. Tokens are \
compared in constant time against stored SHA-256 hashes and are scoped to tenants, projects \
and actions (`view`: list stores, list keys, read metadata; `edit`: create and delete; \
`reveal`: read values, which no token has unless the configuration grants it, the admin \
token included). \
Session cookies (`cookieAuth`, `better-auth.*` cookies) are not supported: a request with \
only a cookie gets 401.

**Isolation.** Credentials live in a namespace per tenant and project inside each store, \
`{tenantId}/{projectId}`: the same key under two projects is two credentials, and no request \
under one tenant or project can see, list, overwrite or delete another's. `tenantId` and \
`projectId` follow the id pattern `^[a-zA-Z0-9\\-_.]+$` (1 to 255 bytes) and may not be `.` \
or `..`. Together, with the `/` between them, they fit every store's namespace cap of 512 \
bytes. A store with a smaller cap of its own answers 422 naming `tenantId and projectId` \
and its cap when the namespace is longer: AWS Secrets Manager keeps 256 bytes of each \
secret name for the configured prefix and the namespace together (so 256 bytes without a \
prefix, 247 with the prefix `prod/app`).

**Errors** are always `application/problem+json` with exactly the members `code`, `detail`, \
`instance` (the request path), `requestId` (also in the `X-Request-ID` header), `status`, \
`title` and `error: {code, message}`. A valid incoming `X-Request-ID` (1 to 128 characters \
of `[A-Za-z0-9._:-]`) is reused; otherwise one is generated. A store call that does not \
answer within the store timeout is 503. 412 (`precondition_failed`) is the answer to a \
conditional write whose condition does not hold; nothing is changed.

**Conditional writes** *(extension)*. On *Create Credential in Store*, `If-None-Match: *` \
creates only (412 when the key exists); `If-Match: \"<version>\"` replaces only that version \
(412 when the key is missing or at another version); `If-Match: *` replaces only an existing \
key (412 when it is missing); a weak tag `W/\"…\"` in `If-Match` never matches (strong \
comparison, 412). A list of tags, any other `If-None-Match`, a malformed tag, both headers at \
once, or either header on a delete is 400. A store that does not declare create-only or \
replace-if-version writes answers 422 naming the store and the header, and changes nothing. \
Without these headers a create creates or overwrites, as the Credential Stores API does. The \
create's answer and *Get Credential Metadata* carry the credential's version as a strong \
`ETag: \"<version>\"` (the metadata read also as `version`); versions are opaque and change on \
every write. Reads ignore conditional headers.

**Binary values** *(extension)*. A create body gives exactly one of `value` (a JSON string, \
stored as text) and `valueBase64` (standard padded base64, RFC 4648 §4, unused bits zero, at \
most 65,536 bytes once decoded): both is 422 naming the two fields, neither is 400 (missing \
field), bad base64 or more than 65,536 decoded bytes is 422 naming `valueBase64`. A store that \
holds no binary values answers 422. Decoded bytes that are UTF-8 are stored as text. *Get \
Credential Metadata* says which kind a value is: `valueKind` `text` or `binary`.

**Store status.** A background prober probes every store every `probe_interval_ms` \
(process setting, default 10000, jittered by ±10 %), each probe bounded by `probe_timeout_ms` \
(default 3000). *List Credential Stores* and `/readyz` answer from the last results at once \
and never wait for a probe; a result older than `probe_staleness_ms` (default 30000) is \
probed again, once however many requests find it stale, for the answers after it. Each \
store entry keeps exactly `available`, `id`, `reason` and `type`, and adds `checkedAt` \
(extension): when that availability was probed.

**Value read** *(extension)*. `GET …/credentials/{key}/value` answers the value (text as \
`value`, bytes as `valueBase64`) with its version (also the `ETag`) and `Cache-Control: \
no-store`, only to a token with the `reveal` action. It lets a service in any language read \
its credentials from the server over localhost. No other route ever returns a value.

**Audit.** Every create and delete is written to the audit log before it is carried out and \
again with its outcome; every value read is written once, with its outcome, before the value \
is sent; every 401 and 403 is written too. A request whose record cannot be written is \
answered 503 before anything changes or is revealed.

**Metrics.** `GET /metrics` (OpenMetrics text, scraped by Prometheus) needs a token with the \
`metrics` action (the admin token has it), or is served without a token on a separate \
listener (`metrics_listen`).

**Extensions** beyond the two operations *List Credential Stores* and *Create Credential in \
Store*: listing keys, reading metadata, reading a value (`reveal`), deleting a credential, 200 \
on overwrite, `checkedAt`, \
conditional writes (`If-None-Match`, `If-Match`, `ETag`), `valueBase64`, `version` and \
`valueKind`, `/healthz`, `/readyz`, `/metrics`, `/openapi.json`, and the statuses 409, 412, 413 \
and 503.";

/// The static part of the document: info, tags, security schemes.
#[derive(OpenApi)]
#[openapi(
    info(title = "Credential Stores API", description = DESCRIPTION, license(name = "MIT OR Apache-2.0")),
    tags(
        (name = TAG_STORES, description = "Operations for managing credential stores"),
        (name = TAG_OPS, description = "Health, readiness, metrics and this document"),
    ),
    components(schemas(Problem, ProblemError)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "Bearer token authentication. Set the Authorization header to \"Bearer <token>\".",
                    ))
                    .build(),
            ),
        );
    }
}

/// The rendered document, handed to the route that serves it as a request
/// extension.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DocumentJson(pub &'static str);

/// The tag of the Credential Stores API's operations in the OpenAPI document.
pub(crate) const TAG_STORES: &str = "Credential Stores";
/// The tag of the operational endpoints.
pub(crate) const TAG_OPS: &str = "Operations";

/// Path parameters of project-level routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the extractors of `access` read it.
pub(crate) struct ProjectPath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "tenantId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "tenant_123"
    )]
    tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "projectId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "project_456"
    )]
    project_id: String,
}

/// Path parameters of store-level routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the extractors of `access` read it.
pub(crate) struct StorePath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "tenantId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "tenant_123"
    )]
    tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "projectId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "project_456"
    )]
    project_id: String,
    /// Resource identifier: the credential store's id (1 to 255 characters
    /// of `[a-zA-Z0-9-_.]`, not `.` or `..`).
    #[param(
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "sqlite-default"
    )]
    id: String,
}

/// Path parameters of credential-level routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Documents the path; the extractors of `access` read it.
pub(crate) struct CredentialPath {
    /// Tenant identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "tenantId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "tenant_123"
    )]
    tenant_id: String,
    /// Project identifier: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`.
    #[param(
        rename = "projectId",
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "project_456"
    )]
    project_id: String,
    /// Resource identifier: the credential store's id (1 to 255 characters
    /// of `[a-zA-Z0-9-_.]`, not `.` or `..`).
    #[param(
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "sqlite-default"
    )]
    id: String,
    /// The credential key: 1 to 255 characters of `[a-zA-Z0-9-_.]`, not
    /// `.` or `..` (a client removes those from a URL).
    #[param(
        pattern = r"^(?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_-][a-zA-Z0-9_.-]*|\.{3,})$",
        min_length = 1,
        max_length = 255,
        example = "github-token"
    )]
    key: String,
}

// ------------------------------------------------- shared error responses

/// One problem+json response of the OpenAPI document.
fn problem(description: &str) -> RefOr<utoipa::openapi::Response> {
    ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build())
        .build()
        .into()
}

fn problems(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter().map(|(status, description)| (status.to_string(), problem(description))).collect()
}

/// The error answers every `/manage` route can give, declared once: 400
/// (path parameters that are not UTF-8), 401, 403, 422 (the ids of the
/// path), 500 and 503 (the request timeout, or an audit record that cannot
/// be written). Routes add their own (404, 409, 412, 413, and 400 and 422
/// for their query and body).
pub(crate) struct ManageErrors;

impl utoipa::IntoResponses for ManageErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problems(&[
            (400, "Bad Request: path parameters that are not UTF-8 once percent-decoded, or (per route) a bad query, header or body"),
            (401, "Missing or invalid bearer token (also recorded in the audit log)"),
            (403, "The token may not take this route's action in this tenant or project (also recorded in the audit log)"),
            (429, "Too many requests without a valid token from this address: `Retry-After` says when to try again (the first of a run is recorded in the audit log)"),
            (422, "An id of the path breaks the id rules (the detail names tenantId, projectId, id or key), tenantId/projectId are longer than the store's namespace cap, or (per route) a query or body field breaks its rules"),
            (500, "Internal Server Error (the cause is in the server log, never in the answer)"),
            (503, "The store is unavailable or over the store timeout (the detail says why), the request took longer than the request timeout, or the audit log cannot be written (nothing was changed or revealed)"),
        ])
    }
}

/// The answer of a route on one store (`{id}`) that names a store not
/// served, or a key that is not stored.
pub(crate) struct StoreNotFound;

impl utoipa::IntoResponses for StoreNotFound {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        problems(&[(
            404,
            "No store with this id, or (on a route with {key}) no such credential in this tenant and project",
        )])
    }
}
