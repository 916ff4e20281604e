//! The router and its OpenAPI 3.1 document, built together from the
//! handlers' `#[utoipa::path]` annotations, so every route is documented by
//! construction.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::problem::{Problem, ProblemError};
use crate::routes::{self, TAG_OPS, TAG_STORES};
use crate::state::AppState;

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

/// Every route with its documentation; `/openapi.json` serves the document
/// this returns.
pub fn api_router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes::router()).split_for_parts()
}

/// The OpenAPI 3.1 document of this server.
pub fn document() -> utoipa::openapi::OpenApi {
    api_router().1
}

/// The document as `/openapi.json` serves it (pretty JSON), rendered once
/// per process: it depends only on the code.
pub fn document_json() -> &'static str {
    JSON.get_or_init(|| render(&document()))
}

/// The router with its document, which is rendered for `/openapi.json` now
/// unless it already was, so the server does not build the document twice.
pub fn served_router() -> axum::Router<AppState> {
    let (router, doc) = api_router();
    JSON.get_or_init(|| render(&doc));
    router
}

static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn render(doc: &utoipa::openapi::OpenApi) -> String {
    doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned())
}
