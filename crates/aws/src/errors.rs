//! Translates AWS SDK errors into [`credstore_core::Error`], in one place.
//!
//! Service errors are matched by their error *code* (`ProvideErrorMetadata::code`),
//! never by the SDK's generated variants (and so never by the deprecated
//! `Unhandled` variant): the same code means the same thing whichever
//! operation returned it, and codes the SDK does not model (`AccessDenied`
//! from a proxy, `InvalidClientTokenId`) are handled too.
//!
//! | what | becomes |
//! | --- | --- |
//! | `ResourceNotFoundException` | absent (the caller decides: `None`, `false`) |
//! | `AccessDeniedException`, `AccessDenied`, other HTTP 401/403 | [`Error::PermissionDenied`] "access denied" |
//! | `UnrecognizedClientException`, `InvalidClientTokenId`, `InvalidSignatureException`, `SignatureDoesNotMatch`, `ExpiredToken(Exception)`, `IncompleteSignature`, `MissingAuthenticationToken` | [`Error::PermissionDenied`] "invalid credentials" |
//! | `ThrottlingException`, `TooManyRequestsException`, `RequestLimitExceeded`, `InternalServiceError`, `InternalFailure`, `ServiceUnavailable`, other HTTP 429/5xx | [`Error::Unavailable`] |
//! | timeouts, connection and DNS failures, cut-off responses | [`Error::Unavailable`] |
//! | HTTP 3xx (a redirect, never followed) | [`Error::Config`] naming the target's origin |
//! | `DecryptionFailure`, `EncryptionFailure` (the KMS key) | [`Error::Config`] |
//! | anything else | [`Error::Backend`] |
//!
//! Every error carries an [`AwsError`] as its [`source`](std::error::Error::source):
//! the operation, the service's error code and message (or the connection
//! failure), and the HTTP status; `{:#}` or a walk of the chain shows it.
//!
//! Neither the message nor the source ever quotes a request: for operations
//! that carry a value, validation messages are withheld, since a service may
//! echo the input; credentials are never part of an SDK error's text.
//!
//! A refused conditional write is not translated here: the store reads the
//! secret again to tell a failed condition
//! ([`Error::PreconditionFailed`]) from a real failure.

use std::fmt;
use std::time::Duration;

use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use credstore_core::{Error, StoreId};

/// Where requests go, for messages.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub store: StoreId,
    /// The service, as messages name it: `AWS Secrets Manager`, `AWS KMS`.
    pub service: &'static str,
    /// The endpoint as the user would recognize it.
    pub endpoint: String,
    /// Whether the endpoint was given explicitly (no region resolution).
    pub overridden: bool,
    pub region: String,
    pub timeout: Duration,
}

/// What the caller needs to branch on; everything else is in `error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `ResourceNotFoundException`: the secret (or version) does not exist.
    NotFound,
    /// `ResourceExistsException`: a secret with this name already exists.
    Exists,
    /// `InvalidRequestException`: the secret's state forbids the call, most
    /// often because it is scheduled for deletion.
    InvalidRequest,
    /// `InvalidParameterException`: among others, what
    /// `UpdateSecretVersionStage` answers when the label is not on the
    /// version to remove it from.
    InvalidParameter,
    /// Any other failure.
    Other,
}

/// A translated failure.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: Kind,
    pub error: Error,
}

impl Failure {
    pub(crate) fn is(&self, kind: Kind) -> bool {
        self.kind == kind
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        f.error
    }
}

/// A Secrets Manager or KMS error as kept in the [`source`](std::error::Error::source)
/// of every error this crate returns: the operation, the service's error code
/// and message (or what failed on the way), and the HTTP status. It holds no
/// request data and no credentials.
#[derive(Debug, Clone)]
pub struct AwsError {
    operation: &'static str,
    code: Option<String>,
    message: Option<String>,
    status: Option<u16>,
}

impl AwsError {
    /// The operation, such as `CreateSecret` or (KMS) `Decrypt`.
    pub fn operation(&self) -> &str {
        self.operation
    }

    /// The service's error code, such as `LimitExceededException`.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The service's message, or what failed on the way (connection,
    /// timeout); withheld for validation errors of requests that carry a
    /// value.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The HTTP status of the response, when there was one.
    pub fn status(&self) -> Option<u16> {
        self.status
    }
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed", self.operation)?;
        if let Some(code) = &self.code {
            write!(f, ": {code}")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        if let Some(status) = self.status {
            write!(f, " (HTTP {status})")?;
        }
        Ok(())
    }
}

impl std::error::Error for AwsError {}

#[cfg(feature = "kms")]
impl AwsError {
    /// The cause of a failed `operation` as the service answered it.
    pub(crate) fn new(
        operation: &'static str,
        code: Option<String>,
        message: Option<String>,
        status: Option<u16>,
    ) -> Self {
        Self { operation, code, message, status }
    }
}

const NOT_FOUND: &[&str] = &["ResourceNotFoundException"];
const EXISTS: &[&str] = &["ResourceExistsException"];
const INVALID_REQUEST: &[&str] = &["InvalidRequestException"];
const INVALID_PARAMETER: &[&str] = &["InvalidParameterException"];
const DENIED: &[&str] =
    &["AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "AuthorizationError"];
const BAD_CREDENTIALS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "InvalidAccessKeyId",
];
const UNAVAILABLE: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "InternalServiceError",
    "InternalServiceErrorException",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];
const KMS: &[&str] = &["DecryptionFailure", "EncryptionFailure"];
/// Codes whose messages may quote the request's fields.
const MAY_QUOTE_INPUT: &[&str] =
    &["ValidationException", "InvalidParameterException", "SerializationException"];

/// Translates an SDK error of `operation`. `carries_value` is true for
/// operations whose request holds a secret value.
pub(crate) fn translate<E>(
    target: &Target,
    operation: &'static str,
    carries_value: bool,
    err: SdkError<E, HttpResponse>,
) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let store = &target.store;
    let cause = |message: String| AwsError {
        operation,
        code: None,
        message: Some(message),
        status: err.raw_response().map(|r| r.status().as_u16()),
    };
    if let Some(raw) = err.raw_response().filter(|r| (300..400).contains(&r.status().as_u16())) {
        // The SDK's HTTP client follows no redirect: the answer comes back
        // as it is. Say so, naming where it pointed.
        let status = raw.status().as_u16();
        let origin = raw.headers().get("location").and_then(|l| origin_of(&target.endpoint, l));
        let to = origin.map(|o| format!(" to {o}")).unwrap_or_default();
        let reason = format!(
            "{} at {} answered {operation} with HTTP {status}, a redirect{to}; the store follows no \
             redirect, so neither the signed request nor its body went there: set the endpoint to the \
             service itself",
            target.service, target.endpoint
        );
        let error = Error::config(store, reason).with_source(AwsError {
            operation,
            code: None,
            message: Some(format!("HTTP {status} redirect{to} not followed")),
            status: Some(status),
        });
        return Failure { kind: Kind::Other, error };
    }
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let mut code = service.err().code().map(str::to_owned);
            let mut message = service.err().message().map(str::to_owned);
            if code.is_none() {
                // An error in XML (a proxy, an IAM check in front of the
                // service): the JSON protocol parser finds no code in it.
                let body = service.raw().body().bytes().map(String::from_utf8_lossy).unwrap_or_default();
                code = xml_element(&body, "Code");
                message = message.or_else(|| xml_element(&body, "Message"));
            }
            service_failure(target, operation, carries_value, code, message, Some(status))
        }
        SdkError::TimeoutError(_) => {
            let reason = timeout_reason(target);
            let error = Error::unavailable(store, &reason).with_source(cause(reason));
            Failure { kind: Kind::Other, error }
        }
        SdkError::DispatchFailure(dispatch) => {
            let detail = format!("{}", DisplayErrorContext(&err));
            let reason =
                if dispatch.is_timeout() { timeout_reason(target) } else { connect_reason(target, &detail) };
            Failure { kind: Kind::Other, error: Error::unavailable(store, reason).with_source(cause(detail)) }
        }
        SdkError::ResponseError(response) => {
            let status = response.raw().status().as_u16();
            let detail = format!("{}", DisplayErrorContext(&err));
            let reason = format!(
                "unreadable response (HTTP {status}) from {} at {}: {detail}",
                target.service, target.endpoint,
            );
            Failure { kind: Kind::Other, error: Error::unavailable(store, reason).with_source(cause(detail)) }
        }
        SdkError::ConstructionFailure(_) => {
            let detail = format!("{}", DisplayErrorContext(&err));
            let reason = format!("cannot build the {operation} request: {detail}");
            Failure { kind: Kind::Other, error: Error::config(store, reason).with_source(cause(detail)) }
        }
        // `SdkError` is non-exhaustive.
        _ => {
            let error = cause(format!("{}", DisplayErrorContext(&err)));
            Failure { kind: Kind::Other, error: Error::backend(store, error) }
        }
    }
}

/// Translates a service's answer by its error code and HTTP status.
pub(crate) fn service_failure(
    target: &Target,
    operation: &'static str,
    carries_value: bool,
    code: Option<String>,
    message: Option<String>,
    status: Option<u16>,
) -> Failure {
    let store = &target.store;
    let code_str = code.as_deref().unwrap_or("");
    let is = |codes: &[&str]| codes.contains(&code_str);
    let message = if carries_value && is(MAY_QUOTE_INPUT) {
        Some("(message withheld: it may quote the request)".to_owned())
    } else {
        message
    };
    let what = match (&code, &message) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.clone(),
        (None, Some(m)) => m.clone(),
        (None, None) => format!("HTTP {}", status.unwrap_or(0)),
    };
    let kind = if is(NOT_FOUND) {
        Kind::NotFound
    } else if is(EXISTS) {
        Kind::Exists
    } else if is(INVALID_REQUEST) {
        Kind::InvalidRequest
    } else if is(INVALID_PARAMETER) {
        Kind::InvalidParameter
    } else {
        Kind::Other
    };
    let source = AwsError { operation, code: code.clone(), message, status };
    let error = if is(BAD_CREDENTIALS) {
        Error::permission_denied(store, format!("invalid AWS credentials ({what})"))
    } else if is(DENIED) || (kind == Kind::Other && matches!(status, Some(401 | 403))) {
        Error::permission_denied(store, format!("access denied to {operation} ({what})"))
    } else if is(UNAVAILABLE) || matches!(status, Some(429 | 500..=599)) {
        Error::unavailable(
            store,
            format!("{} at {} could not serve {operation} now ({what})", target.service, target.endpoint),
        )
    } else if is(KMS) {
        Error::config(store, format!("the KMS key cannot be used for {operation} ({what})"))
    } else {
        return Failure { kind, error: Error::backend(store, source) };
    };
    Failure { kind, error: error.with_source(source) }
}

/// The origin (scheme, host, port) a `Location` header points to, resolved
/// against the endpoint; never its path or query, which may carry anything.
fn origin_of(endpoint: &str, location: &str) -> Option<String> {
    let target = url::Url::parse(endpoint).ok()?.join(location).ok()?;
    match target.origin() {
        origin @ url::Origin::Tuple(..) => Some(origin.ascii_serialization()),
        url::Origin::Opaque(_) => Some(format!("a {}: URL", target.scheme())),
    }
}

/// The text of the first `<tag>…</tag>` in an XML error body, when short and plain.
fn xml_element(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{tag}>"))?;
    let text = body[start..start + len].trim();
    (!text.is_empty() && text.len() <= 1024 && !text.contains('<')).then(|| text.to_owned())
}

fn timeout_reason(target: &Target) -> String {
    format!("no answer from {} at {} within {:?}", target.service, target.endpoint, target.timeout)
}

fn connect_reason(target: &Target, detail: &str) -> String {
    let lower = detail.to_ascii_lowercase();
    let dns = lower.contains("dns error")
        || lower.contains("failed to lookup address")
        || lower.contains("name or service not known")
        || lower.contains("no address associated");
    if dns && !target.overridden {
        format!(
            "cannot resolve {} for region {:?}: unknown region, or no DNS ({detail})",
            target.endpoint, target.region
        )
    } else if lower.contains("connection refused") {
        format!("cannot reach {} at {}: connection refused", target.service, target.endpoint)
    } else {
        format!("cannot reach {} at {}: {detail}", target.service, target.endpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirects_origin_is_named_without_its_path_query_or_credentials() {
        let endpoint = "https://secretsmanager.eu-west-1.amazonaws.com";
        assert_eq!(
            origin_of(endpoint, "http://user:pw@evil.example:8080/x?token=SECRET").as_deref(),
            Some("http://evil.example:8080")
        );
        assert_eq!(
            origin_of(endpoint, "/elsewhere?token=SECRET").as_deref(),
            Some("https://secretsmanager.eu-west-1.amazonaws.com")
        );
        assert_eq!(origin_of(endpoint, "data:text/plain,SECRET").as_deref(), Some("a data: URL"));
    }

    fn target() -> Target {
        Target {
            store: StoreId::new("aws").unwrap(),
            service: "AWS Secrets Manager",
            endpoint: "https://secretsmanager.xx-nowhere-1.amazonaws.com".into(),
            overridden: false,
            region: "xx-nowhere-1".into(),
            timeout: Duration::from_secs(2),
        }
    }

    fn fail(code: &str, status: u16) -> Failure {
        service_failure(
            &target(),
            "GetSecretValue",
            false,
            Some(code.into()),
            Some("msg".into()),
            Some(status),
        )
    }

    #[test]
    fn codes_map_to_kinds_and_errors() {
        assert!(fail("ResourceNotFoundException", 400).is(Kind::NotFound));
        assert!(fail("ResourceExistsException", 400).is(Kind::Exists));
        assert!(fail("InvalidRequestException", 400).is(Kind::InvalidRequest));
        assert!(fail("InvalidParameterException", 400).is(Kind::InvalidParameter));
        for code in ["AccessDeniedException", "AccessDenied", "SomethingNew"] {
            let e = fail(code, 403).error;
            assert!(
                matches!(&e, Error::PermissionDenied { reason, .. } if reason.contains("access denied")),
                "{e}"
            );
        }
        for code in ["UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch"] {
            let e = fail(code, 400).error;
            assert!(
                matches!(&e, Error::PermissionDenied { reason, .. } if reason.contains("invalid AWS credentials"))
            );
        }
        for (code, status) in [("ThrottlingException", 400), ("InternalServiceError", 500), ("Whatever", 503)]
        {
            let e = fail(code, status).error;
            assert!(e.is_retriable(), "{code}: {e}");
        }
        assert!(matches!(fail("DecryptionFailure", 400).error, Error::Config { .. }));
        let e = fail("LimitExceededException", 400).error;
        assert!(matches!(e, Error::Backend { .. }) && !e.is_retriable());
        assert!(e.to_string().contains("LimitExceededException"), "{e}");
    }

    #[test]
    fn runtime_errors_carry_the_native_cause() {
        use std::error::Error as _;
        for (code, status) in [("AccessDeniedException", 403), ("ThrottlingException", 400)] {
            let e = fail(code, status).error;
            let source = e.source().expect("a source");
            assert_eq!(source.to_string(), format!("GetSecretValue failed: {code}: msg (HTTP {status})"));
            // The shared source is the `Arc` itself; the `AwsError` is inside it.
            let shared = match &e {
                Error::PermissionDenied { source, .. } | Error::Unavailable { source, .. } => source.clone(),
                other => panic!("{other:?}"),
            };
            let aws = shared.expect("a source");
            let aws = aws.downcast_ref::<AwsError>().expect("an AwsError");
            assert_eq!(
                (aws.operation(), aws.code(), aws.status()),
                ("GetSecretValue", Some(code), Some(status))
            );
            assert_eq!(aws.message(), Some("msg"));
        }
    }

    #[test]
    fn validation_messages_of_value_requests_are_withheld() {
        let f = service_failure(
            &target(),
            "UpdateSecret",
            true,
            Some("ValidationException".into()),
            Some("Value 'hunter2' at 'secretString' failed".into()),
            Some(400),
        );
        assert!(!format!("{} {:?}", f.error, f.error).contains("hunter2"));
        let chain = std::error::Error::source(&f.error).map(|s| format!("{s} {s:?}")).unwrap_or_default();
        assert!(!chain.contains("hunter2"), "{chain}");
    }

    #[test]
    fn codes_from_xml_bodies() {
        let body = "<?xml version=\"1.0\"?><ErrorResponse><Error><Code>InvalidClientTokenId</Code>\
                    <Message>The security token included in the request is invalid.</Message></Error></ErrorResponse>";
        assert_eq!(xml_element(body, "Code").as_deref(), Some("InvalidClientTokenId"));
        assert!(xml_element(body, "Message").unwrap().starts_with("The security token"));
        assert_eq!(xml_element(body, "Missing"), None);
        assert_eq!(xml_element("<Code></Code>", "Code"), None);
    }

    #[test]
    fn dns_failures_name_the_region() {
        let reason = connect_reason(&target(), "dns error: failed to lookup address information");
        assert!(reason.contains("unknown region") && reason.contains("xx-nowhere-1"), "{reason}");
        let reason = connect_reason(&target(), "tcp connect error: Connection refused (os error 111)");
        assert!(reason.ends_with("connection refused"), "{reason}");
    }
}
