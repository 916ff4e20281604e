//! Translation of vaultrs / rustify / reqwest errors into
//! [`credstore_core::Error`], in one place.
//!
//! The raw errors are never passed on as they are: some of them (a response
//! that failed to parse, a serde error) can carry response bodies, and so
//! secret values, in their `Debug` or `Display`. Every failure is first
//! reduced to a [`Failure`] holding only a status, the server's own error
//! strings, and network error descriptions; the native cause travels on as
//! a [`Cause`], a chain of such sanitized messages, which becomes the
//! `source()` of the returned error.
//!
//! KV v2's check-and-set answers are told apart here: "did not match the
//! current version" is [`Failure::CasMismatch`], which the store turns into
//! `PreconditionFailed` for conditional writes; "required" is
//! [`Failure::CasRequired`].

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{CredentialKey, Error, StoreId};
use vaultrs::error::ClientError;

/// What went wrong with one request, stripped of anything that could hold a
/// secret. Variants that come from a native error keep it as a sanitized
/// [`Cause`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 404 with an empty error list, or with no parseable body: no such
    /// secret (or folder). Both shapes vaultrs produces.
    NotFound,
    /// 404 "no handler for route": the mount does not exist.
    MountMissing,
    /// 400 "check-and-set parameter did not match the current version": a
    /// write with `cas` found another current version.
    CasMismatch,
    /// 400 "check-and-set parameter required": the mount or key requires
    /// `cas` and the write had none.
    CasRequired,
    /// A conditional write's condition does not hold (decided by the store,
    /// not by Vault).
    Precondition(String),
    /// 403, or an AppRole login refused.
    Denied(String, Option<Cause>),
    /// Not reachable, timed out, sealed, standby, 5xx, 429: retriable.
    Unavailable(String, Option<Cause>),
    /// The store cannot work with this server as configured.
    Config(String, Option<Cause>),
    /// Anything else: a 4xx we do not expect, an unexpected response.
    Other(String, Option<Cause>),
}

impl Failure {
    pub(crate) fn is_retriable(&self) -> bool {
        matches!(self, Failure::Unavailable(..))
    }

    /// [`Failure::Other`] without a native cause.
    pub(crate) fn other(reason: impl Into<String>) -> Self {
        Failure::Other(reason.into(), None)
    }

    /// [`Failure::Config`] without a native cause.
    pub(crate) fn config(reason: impl Into<String>) -> Self {
        Failure::Config(reason.into(), None)
    }
}

/// What the translation needs to know about the store.
#[derive(Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub store: &'a StoreId,
    pub address: &'a str,
    pub mount: &'a str,
    pub timeout: Duration,
}

/// A native error reduced to text that holds no secret: the server's status
/// and error strings, or the description of a network failure, and the
/// sanitized cause below it. The `source` of the errors this crate returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cause {
    message: String,
    source: Option<Arc<Cause>>,
}

impl Cause {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), source: None }
    }

    /// A chain, outermost first; `None` when `messages` is empty.
    fn chain(messages: Vec<String>) -> Option<Self> {
        messages
            .into_iter()
            .rev()
            .fold(None, |inner, message| Some(Cause { message, source: inner.map(Arc::new) }))
    }

    pub(crate) fn with_source(mut self, source: Option<Cause>) -> Self {
        self.source = source.map(Arc::new);
        self
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|c| c as &(dyn StdError + 'static))
    }
}

impl Ctx<'_> {
    /// The credstore error for a failure; `key` names the credential of a
    /// failed precondition.
    pub(crate) fn error(&self, failure: Failure, key: Option<&CredentialKey>) -> Error {
        let store = self.store;
        let sourced = |e: Error, cause: Option<Cause>| match cause {
            Some(c) => e.with_source(c),
            None => e,
        };
        match failure {
            Failure::NotFound => Error::backend(store, Cause::new("vault answered 404 not found")),
            Failure::MountMissing => Error::config(store, self.mount_missing()),
            Failure::CasMismatch => Error::conflict(store, "the key was written concurrently; try again")
                .with_source(Cause::new(CAS_MISMATCH)),
            Failure::CasRequired => Error::config(store, self.cas_required()),
            Failure::Precondition(reason) => match key {
                Some(key) => Error::precondition_failed(store, key, reason),
                None => Error::backend(store, Cause::new(reason)),
            },
            Failure::Denied(reason, c) => sourced(Error::permission_denied(store, reason), c),
            Failure::Unavailable(reason, c) => sourced(Error::unavailable(store, reason), c),
            Failure::Config(reason, c) => sourced(Error::config(store, reason), c),
            Failure::Other(msg, c) => Error::backend(store, Cause::new(msg).with_source(c)),
        }
    }

    pub(crate) fn mount_missing(&self) -> String {
        format!("mount '{}' does not exist at {}", self.mount, self.address)
    }

    fn cas_required(&self) -> String {
        format!("mount '{}' requires check-and-set (cas_required) for a write that had none", self.mount)
    }

    /// The error for an operation that ran past the timeout.
    pub(crate) fn timed_out(&self) -> Failure {
        Failure::Unavailable(format!("no answer from {} within {:?}", self.address, self.timeout), None)
    }

    /// Classifies a vaultrs error.
    pub(crate) fn classify(&self, e: &ClientError) -> Failure {
        match e {
            ClientError::APIError { code, errors } => self.status(*code, Some(errors)),
            ClientError::RestClientError { source } => self.classify_rest(source),
            ClientError::JsonParseError { source } => {
                // serde's own message can quote the data: only its category and place.
                let what = format!(
                    "{:?} JSON error at line {} column {}",
                    source.classify(),
                    source.line(),
                    source.column()
                );
                Failure::Other(format!("unexpected response from vault: {what}"), Some(Cause::new(what)))
            }
            ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
                Failure::other("vault answered without the expected data")
            }
            ClientError::InvalidUpdateParameter => Failure::other(e.to_string()),
            ClientError::RestClientBuildError { .. }
            | ClientError::ParseCertificateError { .. }
            | ClientError::FileReadError { .. }
            | ClientError::FileNotFoundError { .. }
            | ClientError::FileWriteError { .. } => Failure::Config(e.to_string(), None),
            // The Display texts of the remaining variants are fixed strings.
            _ => Failure::other(e.to_string()),
        }
    }

    fn classify_rest(&self, e: &rustify::errors::ClientError) -> Failure {
        use rustify::errors::ClientError as R;
        match e {
            // The body is not passed on: it could be anything.
            R::ServerResponseError { code, .. } => self.status(*code, None),
            R::RequestError { .. } | R::ResponseError { .. } => self.network_failure(e),
            R::ResponseParseError { .. } | R::ResponseConversionError { .. } => {
                Failure::other("vault sent a response that could not be parsed")
            }
            // Fixed Display strings; sources hold no response data.
            _ => Failure::other(e.to_string()),
        }
    }

    /// Classifies an HTTP status with the server's error strings, if any.
    pub(crate) fn status(&self, code: u16, errors: Option<&[String]>) -> Failure {
        let said = errors.map(|e| e.join("; ")).filter(|s| !s.is_empty());
        let msg = |default: &str| said.clone().unwrap_or_else(|| default.to_owned());
        let mentions =
            |needle: &str| said.as_deref().is_some_and(|s| s.to_ascii_lowercase().contains(needle));
        let cause = Some(Cause::new(match &said {
            Some(s) => format!("HTTP {code}: {s}"),
            None => format!("HTTP {code}"),
        }));
        match code {
            404 if mentions("no handler for route") => Failure::MountMissing,
            404 => Failure::NotFound,
            403 => Failure::Denied(msg("permission denied"), cause),
            503 if mentions("sealed") || said.is_none() => {
                Failure::Unavailable("vault is sealed".into(), cause)
            }
            429 => Failure::Unavailable(
                format!("vault is in standby or rate limiting (HTTP 429): {}", msg("no detail")),
                cause,
            ),
            // A performance standby that has not caught up yet.
            412 => {
                Failure::Unavailable(format!("vault is not ready (HTTP 412): {}", msg("no detail")), cause)
            }
            // A KV mount that was just created (or upgraded) says so for a
            // moment, then resumes: retriable.
            400 if mentions(KV_UPGRADING) => Failure::Unavailable(
                format!("mount '{}' is upgrading to KV version 2; it resumes shortly", self.mount),
                cause,
            ),
            400 if mentions("check-and-set") && mentions("did not match") => Failure::CasMismatch,
            400 if mentions("check-and-set") => Failure::CasRequired,
            500..=599 => {
                Failure::Unavailable(format!("vault answered HTTP {code}: {}", msg("no detail")), cause)
            }
            // A redirect the HTTP client could not even read a target from.
            300..=399 => Failure::Config(self.redirect(code, None), cause),
            _ => Failure::Other(format!("vault answered HTTP {code}: {}", msg("no detail")), cause),
        }
    }

    /// A failure below HTTP: retriable, except a TLS certificate the
    /// configured roots do not trust, which retrying cannot fix.
    pub(crate) fn network_failure(&self, e: &(dyn StdError + 'static)) -> Failure {
        let cause = network_cause(e);
        if let Some(r) = redirect_refused(e) {
            return Failure::Config(self.redirect(r.status, Some(&r.origin)), cause);
        }
        let reason = self.network(e);
        if tls_rejected(e) {
            Failure::Config(reason, cause)
        } else {
            Failure::Unavailable(reason, cause)
        }
    }

    /// The reason of a redirect the store did not follow, to `origin` when
    /// it is known (never the full target: its path and query may carry
    /// anything).
    fn redirect(&self, code: u16, origin: Option<&str>) -> String {
        let to = origin.map(|o| format!(" to {o}")).unwrap_or_default();
        format!(
            "vault at {} answered HTTP {code}, a redirect{to}; the store follows no redirect, so neither \
             the token nor the request went there: set the address to the server that answers (the \
             active node, or a load balancer that forwards to it)",
            self.address
        )
    }

    /// Describes a failure below HTTP: refused, timed out, TLS, DNS.
    pub(crate) fn network(&self, e: &(dyn StdError + 'static)) -> String {
        let mut timed_out = false;
        let mut connect = false;
        let mut io: Option<&std::io::Error> = None;
        let mut innermost: Option<String> = None;
        let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(r) = err.downcast_ref::<reqwest::Error>() {
                timed_out |= r.is_timeout();
                connect |= r.is_connect();
            } else if let Some(i) = err.downcast_ref::<std::io::Error>() {
                io.get_or_insert(i);
                timed_out |= i.kind() == std::io::ErrorKind::TimedOut;
            } else if err.downcast_ref::<rustify::errors::ClientError>().is_none() {
                // hyper, rustls and io errors describe the connection only.
                innermost = Some(err.to_string());
            }
            cur = err.source();
        }
        let addr = self.address;
        if io.is_some_and(|i| i.kind() == std::io::ErrorKind::ConnectionRefused) {
            format!("connection refused at {addr}")
        } else if timed_out {
            format!("no answer from {addr} within {:?}", self.timeout)
        } else {
            let detail = io.map(ToString::to_string).or(innermost).unwrap_or_else(|| "network error".into());
            if connect {
                format!("cannot connect to {addr}: {detail}")
            } else {
                format!("request to {addr} failed: {detail}")
            }
        }
    }
}

/// Vault's words (lowercased) for a KV mount in its upgrade to version 2.
const KV_UPGRADING: &str = "upgrading from non-versioned to versioned data";

/// Vault's words for a `cas` that did not match.
const CAS_MISMATCH: &str = "check-and-set parameter did not match the current version";

/// The network layers of an error chain as a [`Cause`]: reqwest, hyper, io
/// and rustls errors describe the connection (a URL at most, never a header
/// or a body). The rustify and vaultrs layers are left out: they can hold
/// response bodies.
fn network_cause(e: &(dyn StdError + 'static)) -> Option<Cause> {
    let mut messages: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let skip = err.downcast_ref::<rustify::errors::ClientError>().is_some()
            || err.downcast_ref::<ClientError>().is_some()
            || err.downcast_ref::<serde_json::Error>().is_some();
        if !skip {
            let text = err.to_string();
            if messages.last() != Some(&text) {
                messages.push(text);
            }
        }
        cur = err.source();
    }
    Cause::chain(messages)
}

/// The error of one request, as [`Connection::call_with`](crate::client::Connection::call_with)
/// sees it: what it means, and whether it certainly was not carried out.
pub(crate) trait RequestError {
    /// The failure it is, with no secret in it.
    fn failure(&self, ctx: &Ctx<'_>) -> Failure;

    /// Whether the request certainly did not reach Vault's storage (see
    /// [`not_applied`]); only then is a conditional write sent again.
    fn not_applied(&self) -> bool;
}

impl RequestError for ClientError {
    fn failure(&self, ctx: &Ctx<'_>) -> Failure {
        ctx.classify(self)
    }

    fn not_applied(&self) -> bool {
        not_applied(self)
    }
}

/// A raw request's failure, already classified. It never counts as "not
/// applied": raw requests are only ever sent with
/// [`Retry::Always`](crate::client::Retry::Always).
impl RequestError for Failure {
    fn failure(&self, _: &Ctx<'_>) -> Failure {
        self.clone()
    }

    fn not_applied(&self) -> bool {
        false
    }
}

/// Whether a failed request certainly did not reach Vault's storage: the
/// connection was never made, or the server refused it before handling it
/// (sealed, standby, rate limited). Conditional writes are retried only
/// then, so that a retry can never meet its own first attempt's write.
pub(crate) fn not_applied(e: &ClientError) -> bool {
    use rustify::errors::ClientError as R;
    let refused_status = |code: u16| matches!(code, 412 | 429 | 503);
    match e {
        ClientError::APIError { code: 400, errors } => {
            errors.iter().any(|e| e.to_ascii_lowercase().contains(KV_UPGRADING))
        }
        ClientError::APIError { code, .. } => refused_status(*code),
        ClientError::RestClientError { source: R::ServerResponseError { code, .. } } => refused_status(*code),
        ClientError::RestClientError { source: r @ R::RequestError { .. } } => {
            let mut cur: Option<&(dyn StdError + 'static)> = Some(r);
            while let Some(err) = cur {
                if err.downcast_ref::<reqwest::Error>().is_some_and(|r| r.is_connect())
                    || err
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|i| i.kind() == std::io::ErrorKind::ConnectionRefused)
                {
                    return true;
                }
                cur = err.source();
            }
            false
        }
        _ => false,
    }
}

/// The redirect the HTTP client refused, if that is what failed.
fn redirect_refused<'e>(e: &'e (dyn StdError + 'static)) -> Option<&'e RedirectRefused> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref() {
            return Some(r);
        }
        cur = err.source();
    }
    None
}

/// Whether the chain holds a rustls certificate error (rustls errors travel
/// inside `io::Error`s, whose `source` skips them).
fn tls_rejected(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        // io::Errors may nest, each hiding the next from `source`.
        let mut inner = err;
        while let Some(next) = inner.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            inner = next;
        }
        if matches!(inner.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        cur = err.source();
    }
    false
}

/// A redirect the client refused to follow: no request goes to another
/// origin, nor to the same one, so neither the token nor a written value
/// can be sent anywhere but the configured address (see the crate docs,
/// "Redirects"). Holds the target's origin only (scheme, host, port): its
/// path and query may carry anything.
#[derive(Debug)]
pub(crate) struct RedirectRefused {
    pub status: u16,
    pub origin: String,
}

impl RedirectRefused {
    pub(crate) fn new(status: u16, target: &url::Url) -> Self {
        let origin = match target.origin() {
            url::Origin::Tuple(..) => target.origin().ascii_serialization(),
            url::Origin::Opaque(_) => format!("a {}: URL", target.scheme()),
        };
        Self { status, origin }
    }
}

impl std::fmt::Display for RedirectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} redirect to {} not followed", self.status, self.origin)
    }
}

impl std::error::Error for RedirectRefused {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(id: &StoreId) -> Ctx<'_> {
        Ctx { store: id, address: "http://127.0.0.1:1", mount: "secret", timeout: Duration::from_secs(2) }
    }

    #[test]
    fn statuses() {
        let id = StoreId::new("v").unwrap();
        let c = ctx(&id);
        assert_eq!(c.status(404, Some(&[])), Failure::NotFound);
        assert_eq!(c.status(404, None), Failure::NotFound);
        assert_eq!(
            c.status(404, Some(&["no handler for route \"x/data/k\". route entry not found.".into()])),
            Failure::MountMissing
        );
        assert!(matches!(
            c.status(403, Some(&["permission denied".into()])),
            Failure::Denied(r, Some(_)) if r == "permission denied"
        ));
        assert!(matches!(
            c.status(503, Some(&["Vault is sealed".into()])),
            Failure::Unavailable(r, _) if r == "vault is sealed"
        ));
        for code in [429, 500, 502, 503, 412] {
            assert!(c.status(code, Some(&["x".into()])).is_retriable(), "{code}");
        }
        assert!(!c.status(400, Some(&["bad".into()])).is_retriable());
        assert_eq!(
            c.status(400, Some(&["check-and-set parameter required for this call".into()])),
            Failure::CasRequired
        );
        assert_eq!(c.status(400, Some(&[CAS_MISMATCH.into()])), Failure::CasMismatch);
        // A redirect whose target the client could not read: not followed, not retried.
        assert!(matches!(c.status(307, None), Failure::Config(r, _) if r.contains("HTTP 307, a redirect;")));
        assert!(
            !Failure::CasMismatch.is_retriable(),
            "a mismatch is decided by the caller, not retried blindly"
        );
        assert!(matches!(c.error(Failure::MountMissing, None), Error::Config { .. }));
        assert!(c.error(Failure::Unavailable("x".into(), None), None).is_retriable());
        assert!(matches!(c.error(Failure::Denied("x".into(), None), None), Error::PermissionDenied { .. }));
        let key = CredentialKey::new("k").unwrap();
        assert!(matches!(
            c.error(Failure::Precondition("exists".into()), Some(&key)),
            Error::PreconditionFailed { key: k, reason, .. } if k == key && reason == "exists"
        ));
        assert!(c.error(Failure::CasMismatch, None).is_retriable(), "an upsert's lost race is a Conflict");
    }

    #[test]
    fn errors_carry_the_servers_words_as_their_source() {
        use std::error::Error as _;
        let id = StoreId::new("v").unwrap();
        let c = ctx(&id);
        let err = c.error(c.status(503, Some(&["Vault is sealed".into()])), None);
        assert_eq!(err.source().unwrap().to_string(), "HTTP 503: Vault is sealed");
        let err = c.error(c.status(418, None), None);
        assert!(matches!(err, Error::Backend { .. }));
        let chain: Vec<String> =
            std::iter::successors(err.source(), |e| (*e).source()).map(ToString::to_string).collect();
        assert_eq!(chain, ["vault answered HTTP 418: no detail", "HTTP 418"]);
        let chained = Cause::chain(vec!["outer".into(), "inner".into()]).unwrap();
        assert_eq!(chained.source().unwrap().to_string(), "inner");
        assert!(Cause::chain(Vec::new()).is_none());
    }

    #[test]
    fn parse_errors_do_not_echo_values() {
        let id = StoreId::new("v").unwrap();
        let source = serde_json::from_str::<u64>("\"hunter2\"").unwrap_err();
        assert!(source.to_string().contains("hunter2"), "serde does echo values, hence the care");
        let f = ctx(&id).classify(&ClientError::JsonParseError { source });
        let err = ctx(&id).error(f, None);
        assert!(!format!("{err} {err:#} {err:?}").contains("hunter2"));
        let raw = rustify::errors::ClientError::ResponseParseError {
            source: std::io::Error::other("x").into(),
            content: Some("{\"value\":\"hunter2\"}".into()),
        };
        let err = ctx(&id).error(ctx(&id).classify(&ClientError::RestClientError { source: raw }), None);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }

    #[test]
    fn only_refusals_before_handling_count_as_not_applied() {
        let api = |code| ClientError::APIError { code, errors: vec![] };
        for code in [412, 429, 503] {
            assert!(not_applied(&api(code)), "{code}");
        }
        for code in [500, 502, 400] {
            assert!(!not_applied(&api(code)), "{code}");
        }
        let upgrading = ClientError::APIError {
            code: 400,
            errors: vec!["Upgrading from non-versioned to versioned data. This backend will be unavailable for a brief period and will resume service shortly.".into()],
        };
        assert!(not_applied(&upgrading));
        let id = StoreId::new("v").unwrap();
        assert!(ctx(&id).classify(&upgrading).is_retriable());
    }
}
