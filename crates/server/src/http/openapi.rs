//! What the OpenAPI 3.1 document declares once for every route: the
//! API's description, tags and security scheme, the path parameters and
//! the shared error answers. The router ([`crate::http`]) builds the
//! document from these and the handlers' `#[utoipa::path]` annotations, so
//! every route is documented by construction.

use std::collections::BTreeMap;

use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{Modify, OpenApi};

use credstore_core::{MAX_ID_LEN, MAX_VERSION_LEN};
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Required, ResponseBuilder};
use utoipa::IntoParams;

use super::problem::{Problem, ProblemError, PROBLEM_JSON};
use crate::ids::{PATH_ID_PATTERN, PATH_ID_RULE};

const DESCRIPTION: &str = "\
The Credential Stores API over every credstore backend (memory, encrypted SQLite, \
HashiCorp Vault / OpenBao, AWS Secrets Manager, or a custom store).

**Authentication.** Every `/manage` route needs `Authorization: Bearer <token>` (`bearerAuth`) \
or a console session cookie (`cookieAuth`). Tokens are \
compared in constant time against stored SHA-256 hashes and are scoped to tenants, projects \
and actions (`view`: list stores, list keys, read metadata and versions; `edit`: create, \
delete and restore; `purge`: destroy a version or a key with its history; `reveal`: read \
values, current or earlier, which no token has unless the configuration grants it, the \
admin token included). \
A session cookie, `better-auth.session_token`, is issued by the console's sign-in \
(`POST /console/sign-in` with the form field `token`) for a known token and stands for it: \
the same grants, the same audit records naming the token. It is `HttpOnly`, \
`SameSite=Strict`, `Secure` under TLS, and ends after an idle timeout, at the end of its \
lifetime, or on sign-out (`POST /console/sign-out`). A request authenticated by the cookie \
that changes something (`POST`, `PUT`, `PATCH`, `DELETE`) must send the session's CSRF token in \
the `X-CSRF-Token` header, or is refused with 403 and nothing changes. A request with an \
unknown, expired or signed-out cookie gets 401. With both, the bearer token is used.

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

**Conditional writes** *(extension)*. *Create Credential in Store* takes `If-None-Match: *` \
(create only) or `If-Match` (replace only a version, or only an existing key): its two header \
parameters state the rules, its 412 and 422 answers what a failed condition or a store \
without such writes answers; nothing is changed then. *Restore Credential Version* takes \
the same headers and needs one of them (428 otherwise). A conditional header on a delete or \
a purge is 400; reads ignore them. Versions are opaque, change on every write, and come \
back as a strong `ETag: \"<version>\"` from the create, the restore and the metadata read.

**Binary values** *(extension)*. A create body gives `valueBase64` (bytes) instead of \
`value` (text): the request body's schema states the rules. *Get Credential Metadata* says \
which kind a value is (`valueKind`).

**Store status.** A background prober probes every store every `probe_interval_ms` \
(process setting, default 10000, jittered by ±10 %), each probe bounded by `probe_timeout_ms` \
(default 3000). *List Credential Stores* and `/readyz` answer from the last results at once \
and never wait for a probe; a result older than `probe_staleness_ms` (default 30000) is \
probed again, once however many requests find it stale, for the answers after it. Each \
store entry keeps exactly `available`, `id`, `reason` and `type`, and adds `checkedAt` \
(extension): when that availability was probed.

**Value read** *(extension)*. *Read Credential Value* and *Read Credential Version Value* \
answer a value, only to a token with the `reveal` action; no other route ever returns a value.

**History and expiry** *(extension)*. On a store that keeps versions, *List Credential \
Versions* lists a key's kept versions newest first, each `current`, `previous`, `deleted` or \
`expired`; *Restore Credential Version* writes one back, conditional on the current version \
(`If-Match`) to undo a rotation, or on the key's absence (`If-None-Match: *`) to recover a \
deleted key; without a condition it answers 428. *Purge Credential Version* and *Purge \
Credential* destroy a version, or a key with its whole history, for good. A create may set \
`expiresAt`: from then on the credential reads as absent and its version is listed as \
`expired`. A store without versions or expiry answers 422.

**Audit.** Every create, delete, restore and purge is written to the audit log before it is \
carried out and again with its outcome; every value read is written once, with its outcome, \
before the value \
is sent; every 401 and 403 is written too. A request whose record cannot be written is \
answered 503 before anything changes or is revealed.

**Metrics.** `GET /metrics` (OpenMetrics text, scraped by Prometheus) needs a token with the \
`metrics` action (the admin token has it), or is served without a token on a separate \
listener (`metrics_listen`).

**Extensions** beyond the two operations *List Credential Stores* and *Create Credential in \
Store*: listing keys, reading metadata, reading a value (`reveal`), deleting a credential, 200 \
on overwrite, `checkedAt`, \
conditional writes (`If-None-Match`, `If-Match`, `ETag`), `valueBase64`, `version` and \
`valueKind`, `expiresAt`, the versions routes (list, read, value, restore, purge), `/healthz`, \
`/readyz`, `/metrics`, `/openapi.json`, and the statuses 409, 412, 413, 428 and 503.";

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
        components.add_security_scheme(
            "cookieAuth",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::sessions::SESSION_COOKIE,
                "A console session (`POST /console/sign-in`), standing for the token it was signed in \
                 with. A request that changes something needs the session's CSRF token in the \
                 `X-CSRF-Token` header.",
            ))),
        );
    }
}

/// Lets every `/manage` operation of `doc` take the `cookieAuth` scheme
/// as well as its `bearerAuth`: once the routes are merged, so that no
/// route can be left out.
pub(crate) fn add_cookie_auth(doc: &mut utoipa::openapi::OpenApi) {
    for (_, item) in doc.paths.paths.iter_mut().filter(|(p, _)| p.starts_with("/manage/")) {
        let ops =
            [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head];
        for op in ops.into_iter().flatten() {
            op.security.get_or_insert_with(Vec::new).push(SecurityRequirement::new("cookieAuth", [""; 0]));
        }
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

// ------------------------------------------------------ path parameters

/// One id of a route's path: its name, what it names, an example.
struct PathId(&'static str, &'static str, &'static str);

const TENANT_ID: PathId = PathId("tenantId", "Tenant identifier", "tenant_123");
const PROJECT_ID: PathId = PathId("projectId", "Project identifier", "project_456");
const STORE_ID: PathId = PathId("id", "Resource identifier: the credential store's id", "sqlite-default");
const KEY: PathId = PathId("key", "The credential key", "github-token");
const VERSION: PathId =
    PathId("version", "*(extension)* The version, as the `ETag` or a version listing gives it", "3");

impl PathId {
    /// The parameter, with the path-id rule of [`crate::ids`] (which every
    /// id of a path is checked against) as its schema. A version is at
    /// most 128 characters, and every backend's versions are of the id
    /// characters; the server takes any version a store can make
    /// (percent-encoded where a path needs it).
    fn parameter(&self) -> Parameter {
        let PathId(name, what, example) = *self;
        let (max, rule) = if name == "version" {
            (MAX_VERSION_LEN, "1 to 128 characters of `[a-zA-Z0-9-_.]`, not `.` or `..`, as every store makes them (any visible ASCII but `\"` and `,` is taken, percent-encoded)".to_owned())
        } else {
            (MAX_ID_LEN, PATH_ID_RULE.to_owned())
        };
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(max))
            .min_length(Some(1))
            .pattern(Some(PATH_ID_PATTERN));
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .description(Some(format!("{what}: {rule}.")))
            .required(Required::True)
            .schema(Some(schema))
            .example(Some(example.into()))
            .build()
    }
}

/// Declares a route's path parameters for `params(..)`: each id in the
/// order of the path.
macro_rules! path_params {
    ($($(#[$doc:meta])* $name:ident = [$($id:ident),+];)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl IntoParams for $name {
            fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
                vec![$($id.parameter()),+]
            }
        }
    )+};
}

path_params! {
    /// `{tenantId}/{projectId}`: project-level routes.
    ProjectPath = [TENANT_ID, PROJECT_ID];
    /// And the store `{id}`: store-level routes.
    StorePath = [TENANT_ID, PROJECT_ID, STORE_ID];
    /// And the credential `{key}`: credential-level routes.
    CredentialPath = [TENANT_ID, PROJECT_ID, STORE_ID, KEY];
    /// And the `{version}`: the routes of one version.
    VersionPath = [TENANT_ID, PROJECT_ID, STORE_ID, KEY, VERSION];
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

/// Problem+json responses by status, for `problem_responses!`.
pub(crate) fn problems(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
    list.iter().map(|(status, description)| (status.to_string(), problem(description))).collect()
}

/// Declares sets of error answers (each a problem+json [`Problem`]) for a
/// route's `responses(..)`: `Name = [404 => "why", ..];`. A route lists
/// [`ManageErrors`] first and then its own set, whose statuses replace the
/// shared ones' descriptions.
macro_rules! problem_responses {
    ($($(#[$doc:meta])* $name:ident = [$($status:literal => $description:expr),+ $(,)?];)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses(
            ) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
                $crate::http::openapi::problems(&[$(($status, $description)),+])
            }
        }
    )+};
}

problem_responses! {
    /// The error answers every `/manage` route can give, declared once: 400
    /// (path parameters that are not UTF-8), 401, 403, 429, 422 (the ids of
    /// the path), 500 and 503 (the request timeout, or an audit record that
    /// cannot be written). Routes add their own (404, 409, 412, 413, and 400
    /// and 422 for their query and body).
    ManageErrors = [
        400 => "Bad Request: path parameters that are not UTF-8 once percent-decoded, or (per route) a bad query, header or body",
        401 => "Missing or invalid bearer token (also recorded in the audit log)",
        403 => "The token may not take this route's action in this tenant or project (also recorded in the audit log)",
        429 => "Too many requests without a valid token from this address: `Retry-After` says when to try again (the first of a run is recorded in the audit log)",
        422 => "An id of the path breaks the id rules (the detail names tenantId, projectId, id or key), tenantId/projectId are longer than the store's namespace cap, or (per route) a query or body field breaks its rules",
        500 => "Internal Server Error (the cause is in the server log, never in the answer)",
        503 => "The store is unavailable or over the store timeout (the detail says why), the request took longer than the request timeout, or the audit log cannot be written (nothing was changed or revealed)",
    ];
    /// The answer of a route on one store (`{id}`) that names a store not
    /// served, or a key that is not stored.
    StoreNotFound = [
        404 => "No store with this id, or (on a route with {key}) no such credential in this tenant and project",
    ];
    // The error answers of each route beyond `ManageErrors`.
    /// The create's own error answers.
    CreateErrors = [
        400 => "Malformed JSON, wrong content type, unknown, missing or mistyped fields (neither value nor valueBase64), a malformed or unsupported If-Match / If-None-Match, or path parameters that are not UTF-8",
        409 => "A concurrent change got in the way; retry",
        412 => "*(extension)* The If-None-Match or If-Match condition did not hold: the key exists (create only), is missing, or is at another version; nothing was changed",
        413 => "The body is over the body limit",
        422 => "A key, id or metadata breaks the rules; the value is over 65,536 bytes; both value and valueBase64 are given; valueBase64 is not standard padded base64 or decodes to over 65,536 bytes; the store holds no binary values, or cannot honour the conditional header; or tenantId/projectId is longer than the store's namespace cap. The detail names the field",
    ];
    /// The listing's own error answers.
    ListErrors = [
        400 => "A query parameter of the wrong type (limit not an integer), or path parameters that are not UTF-8",
        422 => "A bad id, prefix, cursor or limit, or tenantId/projectId longer than the store's namespace cap",
    ];
    /// The delete's own error answers.
    DeleteErrors = [
        400 => "If-Match or If-None-Match was sent: deletes are never conditional, so the header is refused rather than ignored; or path parameters that are not UTF-8",
    ];
    /// The value read's own error answers.
    ReadValueErrors = [
        403 => "The token lacks the `reveal` action (no token has it unless the configuration grants it, the admin token included), or may not use this tenant or project",
    ];
    /// The batch read's own error answers.
    BatchReadErrors = [
        400 => "Malformed JSON, wrong content type, an unknown field or no keys array, or path parameters that are not UTF-8",
        403 => "The token lacks the `reveal` action (no token has it unless the configuration grants it, the admin token included), or may not use this tenant, project or store",
        413 => "The body is over the body limit",
        422 => "More than 1000 keys (the detail names keys), a key that breaks the id rules (the detail names keys[i]), a bad id, or tenantId/projectId longer than the store's namespace cap; nothing was read",
    ];
    /// The answer of a route on one version that names a store not served
    /// or a version not kept.
    VersionNotFound = [
        404 => "No store with this id, or no such version of this credential kept in this tenant and project: never written, purged, or past the store's retention",
    ];
    /// The error answers of the routes that read versions, beyond `ManageErrors`.
    ListVersionsErrors = [
        400 => "A query parameter of the wrong type (limit not an integer), or path parameters that are not UTF-8",
        422 => "A bad id, key, version, cursor or limit; the store keeps no version history; or tenantId/projectId longer than the store's namespace cap",
    ];
    /// The restore's own error answers.
    RestoreErrors = [
        400 => "A malformed or unsupported If-Match / If-None-Match, both at once; a body that is not JSON, has an unknown field or an expiresAt that is not a string; or path parameters that are not UTF-8",
        409 => "A concurrent change got in the way of `If-Match: *`; retry",
        412 => "The condition did not hold: the key is at another version or missing (If-Match), or exists (If-None-Match: *); nothing was changed",
        413 => "The body is over the body limit",
        422 => "A bad id, key or version; an expiresAt that is not an RFC 3339 time or not in the store's future, or a store without expiry; the store keeps no version history, or cannot honour the conditional header; or tenantId/projectId longer than the store's namespace cap",
        428 => "Neither If-Match nor If-None-Match was sent: a restore is always conditional; nothing was changed",
    ];
    /// The purge of a key's own error answers.
    PurgeErrors = [
        400 => "If-Match or If-None-Match was sent: purges are never conditional, so the header is refused rather than ignored; or path parameters that are not UTF-8",
        403 => "The token lacks the `purge` action (`edit` is not enough), or may not use this tenant, project or store",
    ];
    /// The purge of a version's own error answers.
    PurgeVersionErrors = [
        400 => "If-Match or If-None-Match was sent: purges are never conditional, so the header is refused rather than ignored; or path parameters that are not UTF-8",
        403 => "The token lacks the `purge` action (`edit` is not enough), or may not use this tenant, project or store",
        409 => "The version is the current one: write a new version first, then purge this one; nothing was changed",
        422 => "A bad id, key or version; the store keeps no version history; or tenantId/projectId longer than the store's namespace cap",
    ];
    /// The readiness answer when not ready.
    ReadyzErrors = [
        503 => "Shutting down, or no store is available",
    ];
    /// The error answers of `/metrics`.
    MetricsErrors = [
        401 => "Missing or invalid bearer token",
        403 => "The token lacks the `metrics` action",
        429 => "Too many requests without a valid token from this address (see `Retry-After`)",
        503 => "The refusal could not be written to the audit log",
    ];
}
