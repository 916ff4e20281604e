//! Translation of SQLite, I/O and internal failures into
//! [`credstore_core::Error`], in one place.
//!
//! Messages name the store, the database file and what went wrong; they never
//! hold a value, a key or anything decrypted. SQLite's own messages are safe to
//! pass on: every value reaches SQLite as a bound parameter, and those never
//! appear in its error text.

use std::fmt;
use std::io;
use std::path::Path;

use credstore_core::{CredentialKey, Error, StoreId};
use rusqlite::ffi::ErrorCode;

/// A SQLite failure kept as plain data, so that the same failure can be
/// reported to every caller of a batch as the source of [`Error::Backend`].
#[derive(Debug, Clone)]
pub(crate) struct SqliteError {
    what: String,
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for SqliteError {}

/// The SQLite error code of `e`, if it is a failure reported by SQLite.
pub(crate) fn code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

/// Translates a SQLite error on the database at `path`.
pub(crate) fn from_sqlite(store: &StoreId, path: &Path, e: &rusqlite::Error) -> Error {
    let shown = path.display();
    match code(e) {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::unavailable(
            store,
            format!("database {shown} is locked by another connection or process and stayed locked past the busy timeout"),
        ),
        Some(ErrorCode::DiskFull) => Error::unavailable(
            store,
            format!("database {shown} is full: the disk or the configured size limit leaves no room; nothing was written"),
        ),
        Some(ErrorCode::ReadOnly) => Error::PermissionDenied {
            store: store.clone(),
            reason: format!("database {shown} is read-only: the file or its directory is not writable"),
        },
        Some(ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied) => Error::PermissionDenied {
            store: store.clone(),
            reason: format!("access to database {shown} was denied: {e}"),
        },
        Some(ErrorCode::CannotOpen) => Error::unavailable(
            store,
            format!(
                "cannot open database {shown} or its WAL files: the file is missing or its directory is not \
                 writable ({e})"
            ),
        ),
        Some(ErrorCode::NotADatabase) => Error::Config {
            store: store.clone(),
            reason: format!("{shown} is not a SQLite database (or its header is damaged); it was left untouched"),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Config {
            store: store.clone(),
            reason: format!("database {shown} is corrupt ({e}); restore it from a backup"),
        },
        Some(ErrorCode::SystemIoFailure | ErrorCode::FileLockingProtocolFailed) => {
            Error::unavailable(store, format!("I/O error on database {shown}: {e}"))
        }
        _ => Error::backend(store, SqliteError { what: format!("database {shown}: {e}") }),
    }
}

/// Translates an I/O error met while doing `what` (such as "create the
/// directory") on `path`.
pub(crate) fn from_io(store: &StoreId, path: &Path, what: &str, e: &io::Error) -> Error {
    let reason = format!("cannot {what} {}: {e}", path.display());
    match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            Error::PermissionDenied { store: store.clone(), reason }
        }
        io::ErrorKind::StorageFull | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            Error::unavailable(store, reason)
        }
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            Error::Config { store: store.clone(), reason }
        }
        _ => Error::backend(store, SqliteError { what: reason }),
    }
}

/// The integrity error for `key`: its row failed authentication.
pub(crate) fn integrity(store: &StoreId, key: &CredentialKey, reason: impl Into<String>) -> Error {
    Error::Integrity { store: store.clone(), key: key.clone(), reason: reason.into() }
}

/// The error of an opening with a key that does not match the database.
pub(crate) fn wrong_key(store: &StoreId, path: &Path) -> Error {
    Error::Config {
        store: store.clone(),
        reason: format!(
            "wrong master key: it does not open database {} (its sealed check value fails to authenticate)",
            path.display()
        ),
    }
}

/// The error of a store whose key was rotated by another process or handle
/// that does not share its memory.
pub(crate) fn rotated_elsewhere(store: &StoreId, path: &Path, ours: u32, on_disk: u32) -> Error {
    Error::Config {
        store: store.clone(),
        reason: format!(
            "the master key of database {} was rotated elsewhere (key version {on_disk}; this store holds \
             version {ours}); open it again with the new key",
            path.display()
        ),
    }
}

/// A copy of `e` for the other callers of a failed batch. Variants that
/// carry a boxed source are rebuilt from its message.
pub(crate) fn duplicate(store: &StoreId, e: &Error) -> Error {
    match e {
        Error::InvalidKey { what, shown, reason } => {
            Error::InvalidKey { what, shown: shown.clone(), reason: reason.clone() }
        }
        Error::InvalidInput { field, reason } => {
            Error::InvalidInput { field: field.clone(), reason: reason.clone() }
        }
        Error::Unavailable { store, reason } => {
            Error::Unavailable { store: store.clone(), reason: reason.clone() }
        }
        Error::PermissionDenied { store, reason } => {
            Error::PermissionDenied { store: store.clone(), reason: reason.clone() }
        }
        Error::Integrity { store, key, reason } => {
            Error::Integrity { store: store.clone(), key: key.clone(), reason: reason.clone() }
        }
        Error::Config { store, reason } => Error::Config { store: store.clone(), reason: reason.clone() },
        Error::Conflict { store, reason } => Error::Conflict { store: store.clone(), reason: reason.clone() },
        Error::Unsupported { store, operation } => Error::Unsupported { store: store.clone(), operation },
        Error::AlreadyRegistered { store } => Error::AlreadyRegistered { store: store.clone() },
        Error::Backend { store, source } => Error::backend(store, SqliteError { what: source.to_string() }),
        other => backend(store, other.to_string()),
    }
}

/// [`Error::Backend`] with a plain message.
pub(crate) fn backend(store: &StoreId, what: impl Into<String>) -> Error {
    Error::backend(store, SqliteError { what: what.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn busy_and_full_are_retriable_others_are_not() {
        let id = StoreId::new("s").unwrap();
        let p = Path::new("/x/y.db");
        let busy = from_sqlite(&id, p, &failure(rusqlite::ffi::SQLITE_BUSY));
        assert!(busy.is_retriable() && busy.to_string().contains("locked"), "{busy}");
        let full = from_sqlite(&id, p, &failure(rusqlite::ffi::SQLITE_FULL));
        assert!(full.is_retriable() && full.to_string().contains("full"), "{full}");
        let notadb = from_sqlite(&id, p, &failure(rusqlite::ffi::SQLITE_NOTADB));
        assert!(matches!(notadb, Error::Config { .. }) && notadb.to_string().contains("/x/y.db"), "{notadb}");
        let ro = from_sqlite(&id, p, &failure(rusqlite::ffi::SQLITE_READONLY));
        assert!(matches!(ro, Error::PermissionDenied { .. }), "{ro}");
        let other = from_sqlite(&id, p, &rusqlite::Error::QueryReturnedNoRows);
        assert!(matches!(other, Error::Backend { .. }), "{other}");
    }

    #[test]
    fn duplicates_keep_variant_and_message() {
        let id = StoreId::new("s").unwrap();
        let e = backend(&id, "boom");
        let d = duplicate(&id, &e);
        assert!(matches!(d, Error::Backend { .. }));
        assert_eq!(d.to_string(), e.to_string());
        let u = duplicate(&id, &Error::unavailable(&id, "gone"));
        assert!(u.is_retriable());
    }

    #[test]
    fn io_errors_map_by_kind() {
        let id = StoreId::new("s").unwrap();
        let p = Path::new("/d");
        let e = from_io(&id, p, "create", &io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(e, Error::PermissionDenied { .. }), "{e}");
        let e = from_io(&id, p, "create", &io::Error::from(io::ErrorKind::NotFound));
        assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("cannot create /d"), "{e}");
    }
}
