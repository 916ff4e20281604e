//! Translation of vaultrs / rustify / reqwest errors into
//! [`credstore_core::Error`], in one place.
//!
//! The raw errors are never passed on as they are: some of them (a response
//! that failed to parse, a serde error) can carry response bodies, and so
//! secret values, in their `Debug` or `Display`. Every failure is first
//! reduced to a [`Failure`] holding only a status, the server's own error
//! strings, and network error descriptions.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use credstore_core::{Error, StoreId};
use vaultrs::error::ClientError;

/// What went wrong with one request, stripped of anything that could hold a
/// secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// 404 with an empty error list, or with no parseable body: no such
    /// secret (or folder). Both shapes vaultrs produces.
    NotFound,
    /// 404 "no handler for route": the mount does not exist.
    MountMissing,
    /// 403, or an AppRole login refused.
    Denied(String),
    /// Not reachable, timed out, sealed, standby, 5xx, 429: retriable.
    Unavailable(String),
    /// The store cannot work with this server as configured.
    Config(String),
    /// Anything else: a 4xx we do not expect, an unexpected response.
    Other(String),
}

impl Failure {
    pub(crate) fn is_retriable(&self) -> bool {
        matches!(self, Failure::Unavailable(_))
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

/// A backend error with a sanitized message, the `source` of
/// [`Error::Backend`].
#[derive(Debug)]
pub(crate) struct VaultError(pub String);

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for VaultError {}

impl Ctx<'_> {
    /// The credstore error for a failure.
    pub(crate) fn error(&self, failure: Failure) -> Error {
        let store = self.store.clone();
        match failure {
            Failure::NotFound => {
                Error::backend(self.store, VaultError("vault answered 404 not found".into()))
            }
            Failure::MountMissing => Error::Config { store, reason: self.mount_missing() },
            Failure::Denied(reason) => Error::PermissionDenied { store, reason },
            Failure::Unavailable(reason) => Error::Unavailable { store, reason },
            Failure::Config(reason) => Error::Config { store, reason },
            Failure::Other(msg) => Error::backend(self.store, VaultError(msg)),
        }
    }

    pub(crate) fn mount_missing(&self) -> String {
        format!("mount '{}' does not exist at {}", self.mount, self.address)
    }

    /// The error for an operation that ran past the timeout.
    pub(crate) fn timed_out(&self) -> Failure {
        Failure::Unavailable(format!("no answer from {} within {:?}", self.address, self.timeout))
    }

    /// Classifies a vaultrs error.
    pub(crate) fn classify(&self, e: &ClientError) -> Failure {
        match e {
            ClientError::APIError { code, errors } => self.status(*code, Some(errors)),
            ClientError::RestClientError { source } => self.classify_rest(source),
            ClientError::JsonParseError { source } => Failure::Other(format!(
                "unexpected response from vault: {:?} error at line {} column {}",
                source.classify(),
                source.line(),
                source.column()
            )),
            ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
                Failure::Other("vault answered without the expected data".into())
            }
            ClientError::InvalidUpdateParameter => Failure::Other(e.to_string()),
            ClientError::RestClientBuildError { .. }
            | ClientError::ParseCertificateError { .. }
            | ClientError::FileReadError { .. }
            | ClientError::FileNotFoundError { .. }
            | ClientError::FileWriteError { .. } => Failure::Config(e.to_string()),
            // The Display texts of the remaining variants are fixed strings.
            _ => Failure::Other(e.to_string()),
        }
    }

    fn classify_rest(&self, e: &rustify::errors::ClientError) -> Failure {
        use rustify::errors::ClientError as R;
        match e {
            // The body is not passed on: it could be anything.
            R::ServerResponseError { code, .. } => self.status(*code, None),
            R::RequestError { .. } | R::ResponseError { .. } => self.network_failure(e),
            R::ResponseParseError { .. } | R::ResponseConversionError { .. } => {
                Failure::Other("vault sent a response that could not be parsed".into())
            }
            // Fixed Display strings; sources hold no response data.
            _ => Failure::Other(e.to_string()),
        }
    }

    /// Classifies an HTTP status with the server's error strings, if any.
    pub(crate) fn status(&self, code: u16, errors: Option<&[String]>) -> Failure {
        let said = errors.map(|e| e.join("; ")).filter(|s| !s.is_empty());
        let msg = |default: &str| said.clone().unwrap_or_else(|| default.to_owned());
        let mentions =
            |needle: &str| said.as_deref().is_some_and(|s| s.to_ascii_lowercase().contains(needle));
        match code {
            404 if mentions("no handler for route") => Failure::MountMissing,
            404 => Failure::NotFound,
            403 => Failure::Denied(msg("permission denied")),
            503 if mentions("sealed") || said.is_none() => Failure::Unavailable("vault is sealed".into()),
            429 => Failure::Unavailable(format!(
                "vault is in standby or rate limiting (HTTP 429): {}",
                msg("no detail")
            )),
            // A performance standby that has not caught up yet.
            412 => Failure::Unavailable(format!("vault is not ready (HTTP 412): {}", msg("no detail"))),
            400 if mentions("check-and-set") => Failure::Config(format!(
                "mount '{}' requires check-and-set (cas_required), which this store does not use",
                self.mount
            )),
            500..=599 => Failure::Unavailable(format!("vault answered HTTP {code}: {}", msg("no detail"))),
            _ => Failure::Other(format!("vault answered HTTP {code}: {}", msg("no detail"))),
        }
    }

    /// A failure below HTTP: retriable, except a TLS certificate the
    /// configured roots do not trust, which retrying cannot fix.
    pub(crate) fn network_failure(&self, e: &(dyn StdError + 'static)) -> Failure {
        let reason = self.network(e);
        if tls_rejected(e) {
            Failure::Config(reason)
        } else {
            Failure::Unavailable(reason)
        }
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
        assert_eq!(
            c.status(403, Some(&["permission denied".into()])),
            Failure::Denied("permission denied".into())
        );
        assert_eq!(
            c.status(503, Some(&["Vault is sealed".into()])),
            Failure::Unavailable("vault is sealed".into())
        );
        for code in [429, 500, 502, 503, 412] {
            assert!(c.status(code, Some(&["x".into()])).is_retriable(), "{code}");
        }
        assert!(!c.status(400, Some(&["bad".into()])).is_retriable());
        assert!(matches!(
            c.status(400, Some(&["check-and-set parameter required".into()])),
            Failure::Config(_)
        ));
        assert!(matches!(c.error(Failure::MountMissing), Error::Config { .. }));
        assert!(c.error(Failure::Unavailable("x".into())).is_retriable());
        assert!(matches!(c.error(Failure::Denied("x".into())), Error::PermissionDenied { .. }));
    }

    #[test]
    fn parse_errors_do_not_echo_values() {
        let id = StoreId::new("v").unwrap();
        let source = serde_json::from_str::<u64>("\"hunter2\"").unwrap_err();
        assert!(source.to_string().contains("hunter2"), "serde does echo values, hence the care");
        let f = ctx(&id).classify(&ClientError::JsonParseError { source });
        let err = ctx(&id).error(f);
        assert!(!format!("{err} {err:?}").contains("hunter2"));
        let raw = rustify::errors::ClientError::ResponseParseError {
            source: std::io::Error::other("x").into(),
            content: Some("{\"value\":\"hunter2\"}".into()),
        };
        let err = ctx(&id).error(ctx(&id).classify(&ClientError::RestClientError { source: raw }));
        assert!(!format!("{err} {err:?}").contains("hunter2"));
    }
}
