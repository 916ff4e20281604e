//! What a platform call can fail with, and its translation into
//! [`credstore_core::Error`], in one place.
//!
//! Platform errors are reduced to a [`Failure`]: a kind, a plain reason and
//! a sanitized source. No platform error that could carry secret bytes
//! (a D-Bus reply body, a decoding error over a payload) is passed on.

use std::fmt;

use credstore_core::{BoxError, CredentialKey, Error, StoreId};

/// The kind of a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) enum Kind {
    /// The platform cannot serve now: no provider, locked, quota, refused
    /// system call, no answer in time. Retriable.
    Unavailable,
    /// The platform refused the caller.
    Denied,
    /// A create-only write found the key present.
    Exists,
    /// The store is configured wrongly for this platform.
    Config,
    /// Anything else.
    Other,
}

/// A failed platform call, stripped of anything that could hold a secret.
#[derive(Debug)]
pub(crate) struct Failure {
    pub kind: Kind,
    pub reason: String,
    pub source: Option<BoxError>,
}

impl Failure {
    pub(crate) fn new(kind: Kind, reason: impl Into<String>) -> Self {
        Self { kind, reason: reason.into(), source: None }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The credstore error for this failure of an operation on `key`.
    pub(crate) fn into_error(self, store: &StoreId, key: Option<&CredentialKey>) -> Error {
        let err = match (self.kind, key) {
            (Kind::Unavailable, _) => Error::unavailable(store, self.reason),
            (Kind::Denied, _) => Error::permission_denied(store, self.reason),
            (Kind::Exists, Some(key)) => {
                return Error::precondition_failed(store, key, "the key exists (create-only write)")
            }
            (Kind::Config, _) => Error::config(store, self.reason),
            (Kind::Exists | Kind::Other, _) => {
                return Error::backend(store, PlatformError(self.reason, self.source.map(Into::into)))
            }
        };
        match self.source {
            Some(source) => err.with_source(source),
            None => err,
        }
    }
}

/// The `source` of [`Error::Backend`]: a sanitized message and cause.
#[derive(Debug)]
pub(crate) struct PlatformError(pub String, pub Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>);

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PlatformError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A cause given by text only, when the native error cannot be kept.
#[derive(Debug)]
#[cfg_attr(
    not(any(feature = "secret-service", target_os = "macos", target_os = "windows")),
    allow(dead_code)
)]
pub(crate) struct Cause(pub String);

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Cause {}

/// The result of a platform call.
pub(crate) type PResult<T> = std::result::Result<T, Failure>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_typed_errors_with_sources() {
        use std::error::Error as _;
        let id = StoreId::new("k").unwrap();
        let key = CredentialKey::new("a").unwrap();
        let e = Failure::new(Kind::Unavailable, "locked")
            .with_source(Cause("native".into()))
            .into_error(&id, None);
        assert!(matches!(e, Error::Unavailable { .. }) && e.is_retriable());
        assert_eq!(e.source().unwrap().to_string(), "native");
        let e = Failure::new(Kind::Exists, "x").into_error(&id, Some(&key));
        assert!(matches!(e, Error::PreconditionFailed { .. }));
        let e = Failure::new(Kind::Other, "boom").with_source(Cause("why".into())).into_error(&id, None);
        assert!(matches!(e, Error::Backend { .. }));
        assert_eq!(e.source().unwrap().source().unwrap().to_string(), "why");
    }
}
