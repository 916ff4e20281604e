//! The one error type of every credstore backend.
//!
//! [`Error`] is `Clone`: native causes are kept as a shared [`Source`], so one
//! failure can be handed to many waiters (a group commit, a single-flight
//! cache) without rebuilding it.

use std::fmt;
use std::sync::Arc;

use crate::{CredentialKey, IdError, NamespaceError, StoreId, Version};

/// A backend's native error, shared so that [`Error`] can be cloned.
///
/// Backends put only sanitized errors here: a cause whose `Display` and
/// `source()` chain hold no secret value, token or key material.
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A boxed error from a backend's own client library, as accepted by
/// [`Error::backend`] and [`Error::with_source`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, credstore_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which kind of identifier an [`Error::InvalidKey`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// A [`CredentialKey`].
    CredentialKey,
    /// A [`StoreId`].
    StoreId,
}

impl IdKind {
    /// How messages name it: `credential key` or `store id`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::CredentialKey => "credential key",
            IdKind::StoreId => "store id",
        }
    }
}

impl fmt::Display for IdKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong with a credential store.
///
/// No variant carries a secret value: messages name stores, keys, fields and
/// sizes only. Backends translate their native errors into these variants in
/// their own `errors.rs`, and may attach the native cause as a sanitized
/// [`Source`] ([`Error::with_source`]); `source()` then walks to it.
///
/// Input errors ([`Error::InvalidKey`], [`Error::InvalidNamespace`],
/// [`Error::InvalidInput`]) are raised before any I/O.
///
/// `Debug` is written for people: the variant's name, its message and the
/// chain of causes, so that `fn main() -> credstore_core::Result<()>` prints
/// `Error: InvalidKey: invalid credential key "my key!": ...`.
#[derive(Clone)]
#[non_exhaustive]
pub enum Error {
    /// A credential key or store id breaks the id rules.
    InvalidKey {
        /// Which identifier it is.
        kind: IdKind,
        /// The rejected string, escaped and shortened for display.
        shown: String,
        /// The rule that failed.
        reason: IdError,
    },

    /// A namespace breaks the namespace rules, or is longer than the
    /// store that was asked for it can hold.
    InvalidNamespace {
        /// The rejected namespace, escaped and shortened for display.
        shown: String,
        /// The rule that failed.
        reason: NamespaceError,
    },

    /// Some other input breaks a rule: a value over the size limit, bad
    /// metadata, a malformed list cursor or version.
    InvalidInput {
        /// The field at fault, such as `value`, `metadata.owner` or `cursor`.
        field: String,
        /// Why it was rejected, without the offending value if it is secret.
        reason: String,
    },

    /// A value that is not UTF-8 was read as text
    /// ([`SecretValue::expose_str`](crate::SecretValue::expose_str)). The
    /// value is intact; read it as bytes instead.
    NotText {
        /// The length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },

    /// The store cannot be reached or used right now: the server is down or
    /// sealed, the request timed out, the database is locked. Retriable.
    Unavailable {
        /// The store.
        store: StoreId,
        /// What is wrong, in plain words.
        reason: String,
        /// The native cause, if any.
        source: Option<Source>,
    },

    /// The backend refused the caller's credentials or permissions.
    PermissionDenied {
        /// The store.
        store: StoreId,
        /// What was refused.
        reason: String,
        /// The native cause, if any.
        source: Option<Source>,
    },

    /// Stored data failed authentication: it was tampered with, corrupted or
    /// moved. The store never returns a value in this case.
    Integrity {
        /// The store.
        store: StoreId,
        /// The credential whose data failed.
        key: CredentialKey,
        /// What failed.
        reason: String,
        /// The native cause, if any.
        source: Option<Source>,
    },

    /// The store was opened or configured wrongly: a wrong master key, a
    /// missing mount, an unreadable file. Not retriable until fixed.
    Config {
        /// The store.
        store: StoreId,
        /// What is wrong.
        reason: String,
        /// The native cause, if any.
        source: Option<Source>,
    },

    /// A concurrent change got in the way of an unconditional operation;
    /// retrying may succeed. Compare [`Error::PreconditionFailed`].
    Conflict {
        /// The store.
        store: StoreId,
        /// What conflicted.
        reason: String,
        /// The native cause, if any.
        source: Option<Source>,
    },

    /// A conditional write's condition did not hold: the key exists for a
    /// create-only write, or its current version is not the expected one.
    /// Nothing was changed. Not retriable: the caller must read again and
    /// decide.
    PreconditionFailed {
        /// The store.
        store: StoreId,
        /// The key written.
        key: CredentialKey,
        /// Which condition failed.
        reason: String,
    },

    /// A version the operation needs is not kept: the key never had it, or
    /// it is past the retention or purged. Nothing was changed. Not
    /// retriable.
    VersionNotFound {
        /// The store.
        store: StoreId,
        /// The key.
        key: CredentialKey,
        /// The version asked for.
        version: Version,
    },

    /// The store does not support this operation; see
    /// [`crate::Capabilities`].
    Unsupported {
        /// The store.
        store: StoreId,
        /// The operation, such as `list` or `create-only writes`.
        operation: &'static str,
    },

    /// A store with this id is already registered in a [`crate::StoreRegistry`].
    AlreadyRegistered {
        /// The duplicate id.
        store: StoreId,
    },

    /// Any other failure of the backend; `source` is its native error.
    Backend {
        /// The store.
        store: StoreId,
        /// The backend's own error.
        source: Source,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidKey { kind, shown, reason } => write!(f, "invalid {kind} {shown}: {reason}"),
            Error::InvalidNamespace { shown, reason } => write!(f, "invalid namespace {shown}: {reason}"),
            Error::InvalidInput { field, reason } => write!(f, "invalid {field}: {reason}"),
            Error::NotText { valid_up_to } => {
                write!(f, "the value is binary, not UTF-8 text (invalid byte at offset {valid_up_to})")
            }
            Error::Unavailable { store, reason, .. } => {
                write!(f, "credential store '{store}' is unavailable: {reason}")
            }
            Error::PermissionDenied { store, reason, .. } => {
                write!(f, "credential store '{store}' denied permission: {reason}")
            }
            Error::Integrity { store, key, reason, .. } => {
                write!(f, "integrity check failed in credential store '{store}' for key '{key}': {reason}")
            }
            Error::Config { store, reason, .. } => {
                write!(f, "credential store '{store}' is misconfigured: {reason}")
            }
            Error::Conflict { store, reason, .. } => {
                write!(f, "conflict in credential store '{store}': {reason}")
            }
            Error::PreconditionFailed { store, key, reason } => {
                write!(f, "precondition failed in credential store '{store}' for key '{key}': {reason}")
            }
            Error::VersionNotFound { store, key, version } => {
                write!(f, "credential store '{store}' keeps no version '{version}' of key '{key}'")
            }
            Error::Unsupported { store, operation } => {
                write!(f, "credential store '{store}' does not support {operation}")
            }
            Error::AlreadyRegistered { store } => {
                write!(f, "a credential store with id '{store}' is already registered")
            }
            Error::Backend { store, source } => write!(f, "credential store '{store}' failed: {source}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Error::InvalidKey { .. } => "InvalidKey",
            Error::InvalidNamespace { .. } => "InvalidNamespace",
            Error::InvalidInput { .. } => "InvalidInput",
            Error::NotText { .. } => "NotText",
            Error::Unavailable { .. } => "Unavailable",
            Error::PermissionDenied { .. } => "PermissionDenied",
            Error::Integrity { .. } => "Integrity",
            Error::Config { .. } => "Config",
            Error::Conflict { .. } => "Conflict",
            Error::PreconditionFailed { .. } => "PreconditionFailed",
            Error::VersionNotFound { .. } => "VersionNotFound",
            Error::Unsupported { .. } => "Unsupported",
            Error::AlreadyRegistered { .. } => "AlreadyRegistered",
            Error::Backend { .. } => "Backend",
        };
        write!(f, "{name}: {self}")?;
        // `Backend`'s message already ends with its source.
        let mut cause = match self {
            Error::Backend { source, .. } => source.source(),
            _ => std::error::Error::source(self),
        };
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// `source()` is the native error itself (not the shared handle around it),
/// so `downcast_ref` to the backend's error type works.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = match self {
            Error::Unavailable { source, .. }
            | Error::PermissionDenied { source, .. }
            | Error::Integrity { source, .. }
            | Error::Config { source, .. }
            | Error::Conflict { source, .. } => source.as_ref()?,
            Error::Backend { source, .. } => source,
            _ => return None,
        };
        Some(&**source)
    }
}

impl Error {
    /// Whether the same call may succeed if retried later: true for
    /// [`Error::Unavailable`] and [`Error::Conflict`] only.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Conflict { .. })
    }

    /// The store this error names, if it names one.
    pub fn store(&self) -> Option<&StoreId> {
        match self {
            Error::Unavailable { store, .. }
            | Error::PermissionDenied { store, .. }
            | Error::Integrity { store, .. }
            | Error::Config { store, .. }
            | Error::Conflict { store, .. }
            | Error::PreconditionFailed { store, .. }
            | Error::VersionNotFound { store, .. }
            | Error::Unsupported { store, .. }
            | Error::AlreadyRegistered { store }
            | Error::Backend { store, .. } => Some(store),
            Error::InvalidKey { .. }
            | Error::InvalidNamespace { .. }
            | Error::InvalidInput { .. }
            | Error::NotText { .. } => None,
        }
    }

    /// Builds [`Error::Backend`] from any error.
    pub fn backend(store: &StoreId, source: impl Into<BoxError>) -> Self {
        Error::Backend { store: store.clone(), source: Arc::from(source.into()) }
    }

    /// Builds [`Error::Unavailable`] without a source.
    pub fn unavailable(store: &StoreId, reason: impl Into<String>) -> Self {
        Error::Unavailable { store: store.clone(), reason: reason.into(), source: None }
    }

    /// Builds [`Error::PermissionDenied`] without a source.
    pub fn permission_denied(store: &StoreId, reason: impl Into<String>) -> Self {
        Error::PermissionDenied { store: store.clone(), reason: reason.into(), source: None }
    }

    /// Builds [`Error::Config`] without a source.
    pub fn config(store: &StoreId, reason: impl Into<String>) -> Self {
        Error::Config { store: store.clone(), reason: reason.into(), source: None }
    }

    /// Builds [`Error::Conflict`] without a source.
    pub fn conflict(store: &StoreId, reason: impl Into<String>) -> Self {
        Error::Conflict { store: store.clone(), reason: reason.into(), source: None }
    }

    /// Builds [`Error::Integrity`] without a source.
    pub fn integrity(store: &StoreId, key: &CredentialKey, reason: impl Into<String>) -> Self {
        Error::Integrity { store: store.clone(), key: key.clone(), reason: reason.into(), source: None }
    }

    /// Builds [`Error::PreconditionFailed`].
    pub fn precondition_failed(store: &StoreId, key: &CredentialKey, reason: impl Into<String>) -> Self {
        Error::PreconditionFailed { store: store.clone(), key: key.clone(), reason: reason.into() }
    }

    /// Builds [`Error::Unsupported`].
    pub fn unsupported(store: &StoreId, operation: &'static str) -> Self {
        Error::Unsupported { store: store.clone(), operation }
    }

    /// Attaches `source` as the native cause of a runtime variant
    /// (`Unavailable`, `PermissionDenied`, `Integrity`, `Config`,
    /// `Conflict`, `Backend`); other variants are returned unchanged.
    ///
    /// The caller guarantees that `source` holds no secret.
    ///
    /// ```
    /// use credstore_core::{Error, StoreId};
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    /// let err = Error::unavailable(&StoreId::new("vault")?, "connection refused").with_source(io);
    /// assert_eq!(std::error::Error::source(&err).unwrap().to_string(), "refused");
    /// # Ok::<(), Error>(())
    /// ```
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        let new: Source = Arc::from(source.into());
        match &mut self {
            Error::Unavailable { source, .. }
            | Error::PermissionDenied { source, .. }
            | Error::Integrity { source, .. }
            | Error::Config { source, .. }
            | Error::Conflict { source, .. } => *source = Some(new),
            Error::Backend { source, .. } => *source = new,
            _ => {}
        }
        self
    }
}

/// Renders a possibly hostile string for an error message: escaped, and cut
/// to 64 characters.
pub(crate) fn shown(s: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = s.chars().take(MAX).collect();
    if s.chars().count() > MAX {
        out.push('…');
    }
    format!("{out:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_variants() {
        let id = StoreId::new("s").unwrap();
        let key = CredentialKey::new("k").unwrap();
        assert!(Error::unavailable(&id, "down").is_retriable());
        assert!(Error::conflict(&id, "race").is_retriable());
        assert!(!Error::permission_denied(&id, "no").is_retriable());
        assert!(!Error::backend(&id, "boom").is_retriable());
        assert!(!Error::precondition_failed(&id, &key, "exists").is_retriable());
        assert!(!Error::NotText { valid_up_to: 0 }.is_retriable());
    }

    #[test]
    fn long_keys_are_shortened_in_messages() {
        let err = crate::CredentialKey::new("x".repeat(300)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("300 bytes"), "{err}");
    }

    #[test]
    fn sources_are_kept_shared_and_cloned() {
        use std::error::Error as _;
        let id = StoreId::new("s").unwrap();
        let err = Error::config(&id, "bad file")
            .with_source(std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"));
        let clone = err.clone();
        assert_eq!(clone.source().unwrap().to_string(), "no such file");
        let io = clone
            .source()
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .expect("downcasts to the native type");
        assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(clone.to_string(), err.to_string());
        assert_eq!(clone.store(), Some(&id));
        // Variants without a source ignore one.
        let input = Error::InvalidInput { field: "value".into(), reason: "too long".into() }.with_source("x");
        assert!(input.source().is_none());
    }
}
