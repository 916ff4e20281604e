//! The one error type of every credstore backend.

use crate::{CredentialKey, IdError, StoreId};

/// A boxed error from a backend's own client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, credstore_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a credential store.
///
/// No variant carries a secret value: messages name stores, keys, fields and
/// sizes only. Backends translate their native errors into these variants in
/// their own `errors.rs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A credential key or store id breaks the id rules. Raised before any I/O.
    #[error("invalid {what} {shown}: {reason}")]
    InvalidKey {
        /// `"credential key"` or `"store id"`.
        what: &'static str,
        /// The rejected string, escaped and shortened for display.
        shown: String,
        /// The rule that failed.
        reason: IdError,
    },

    /// Some other input breaks a rule: a value over the size limit, bad
    /// metadata, a malformed list cursor. Raised before any I/O.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The field at fault, such as `value`, `metadata.owner` or `cursor`.
        field: String,
        /// Why it was rejected, without the offending value if it is secret.
        reason: String,
    },

    /// The store cannot be reached or used right now: the server is down or
    /// sealed, the request timed out, the database is locked. Retriable.
    #[error("credential store '{store}' is unavailable: {reason}")]
    Unavailable {
        /// The store.
        store: StoreId,
        /// What is wrong, in plain words.
        reason: String,
    },

    /// The backend refused the caller's credentials or permissions.
    #[error("credential store '{store}' denied permission: {reason}")]
    PermissionDenied {
        /// The store.
        store: StoreId,
        /// What was refused.
        reason: String,
    },

    /// Stored data failed authentication: it was tampered with, corrupted or
    /// moved. The store never returns a value in this case.
    #[error("integrity check failed in credential store '{store}' for key '{key}': {reason}")]
    Integrity {
        /// The store.
        store: StoreId,
        /// The credential whose data failed.
        key: CredentialKey,
        /// What failed.
        reason: String,
    },

    /// The store was opened or configured wrongly: a wrong master key, a
    /// missing mount, an unreadable file. Not retriable until fixed.
    #[error("credential store '{store}' is misconfigured: {reason}")]
    Config {
        /// The store.
        store: StoreId,
        /// What is wrong.
        reason: String,
    },

    /// A concurrent change got in the way; retrying may succeed.
    #[error("conflict in credential store '{store}': {reason}")]
    Conflict {
        /// The store.
        store: StoreId,
        /// What conflicted.
        reason: String,
    },

    /// The store does not support this operation; see
    /// [`crate::Capabilities`].
    #[error("credential store '{store}' does not support {operation}")]
    Unsupported {
        /// The store.
        store: StoreId,
        /// The operation, such as `list`.
        operation: &'static str,
    },

    /// A store with this id is already registered in a [`crate::StoreRegistry`].
    #[error("a credential store with id '{store}' is already registered")]
    AlreadyRegistered {
        /// The duplicate id.
        store: StoreId,
    },

    /// Any other failure of the backend; `source` is its native error.
    #[error("credential store '{store}' failed: {source}")]
    Backend {
        /// The store.
        store: StoreId,
        /// The backend's own error.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether the same call may succeed if retried later: true for
    /// [`Error::Unavailable`] and [`Error::Conflict`].
    pub fn is_retriable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Conflict { .. })
    }

    /// Builds [`Error::Backend`] from any error.
    pub fn backend(store: &StoreId, source: impl Into<BoxError>) -> Self {
        Error::Backend { store: store.clone(), source: source.into() }
    }

    /// Builds [`Error::Unavailable`].
    pub fn unavailable(store: &StoreId, reason: impl Into<String>) -> Self {
        Error::Unavailable { store: store.clone(), reason: reason.into() }
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
        assert!(Error::unavailable(&id, "down").is_retriable());
        assert!(Error::Conflict { store: id.clone(), reason: "race".into() }.is_retriable());
        assert!(!Error::PermissionDenied { store: id.clone(), reason: "no".into() }.is_retriable());
        assert!(!Error::backend(&id, "boom").is_retriable());
    }

    #[test]
    fn long_keys_are_shortened_in_messages() {
        let err = crate::CredentialKey::new("x".repeat(300)).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
        assert!(err.contains("300 bytes"), "{err}");
    }
}
