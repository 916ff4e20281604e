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

/// A native failure (SQLite's or the operating system's) kept as plain
/// text: the sanitized source attached to the errors of this crate. Its
/// text is SQLite's or the OS's message, which never holds a value (values
/// reach SQLite as bound parameters only).
#[derive(Debug, Clone)]
pub(crate) struct NativeError {
    what: String,
}

impl NativeError {
    pub(crate) fn of(e: &dyn fmt::Display) -> Self {
        Self { what: e.to_string() }
    }
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for NativeError {}

/// The SQLite error code of `e`, if it is a failure reported by SQLite.
pub(crate) fn code(e: &rusqlite::Error) -> Option<ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

/// Translates a SQLite error on the database at `path`; SQLite's message is
/// the error's source.
pub(crate) fn from_sqlite(store: &StoreId, path: &Path, e: &rusqlite::Error) -> Error {
    let shown = path.display();
    let err = match code(e) {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => Error::unavailable(
            store,
            format!("database {shown} is locked by another connection or process and stayed locked past the busy timeout"),
        ),
        Some(ErrorCode::DiskFull) => Error::unavailable(
            store,
            format!("database {shown} is full: the disk or the configured size limit leaves no room; nothing was written"),
        ),
        Some(ErrorCode::ReadOnly) => Error::permission_denied(
            store,
            format!("database {shown} is read-only: the file or its directory is not writable"),
        ),
        Some(ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied) => {
            Error::permission_denied(store, format!("access to database {shown} was denied: {e}"))
        }
        Some(ErrorCode::CannotOpen) => Error::unavailable(
            store,
            format!(
                "cannot open database {shown} or its WAL files: the file is missing or its directory is not \
                 writable ({e})"
            ),
        ),
        Some(ErrorCode::NotADatabase) => Error::config(
            store,
            format!("{shown} is not a SQLite database (or its header is damaged); it was left untouched"),
        ),
        Some(ErrorCode::DatabaseCorrupt) => {
            Error::config(store, format!("database {shown} is corrupt ({e}); restore it from a backup"))
        }
        Some(ErrorCode::SystemIoFailure | ErrorCode::FileLockingProtocolFailed) => {
            Error::unavailable(store, format!("I/O error on database {shown}: {e}"))
        }
        _ => return Error::backend(store, NativeError { what: format!("database {shown}: {e}") }),
    };
    err.with_source(NativeError::of(e))
}

/// Translates an I/O error met while doing `what` (such as "create the
/// directory") on `path`; the OS error is the source.
pub(crate) fn from_io(store: &StoreId, path: &Path, what: &str, e: &io::Error) -> Error {
    let reason = format!("cannot {what} {}: {e}", path.display());
    let err = match e.kind() {
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
            Error::permission_denied(store, reason)
        }
        io::ErrorKind::StorageFull | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
            Error::unavailable(store, reason)
        }
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory => {
            Error::config(store, reason)
        }
        _ => return Error::backend(store, NativeError { what: reason }),
    };
    err.with_source(NativeError::of(e))
}

/// The integrity error for `key`: its row failed authentication.
pub(crate) fn integrity(store: &StoreId, key: &CredentialKey, reason: impl Into<String>) -> Error {
    Error::integrity(store, key, reason)
}

/// The error of an opening with a key that does not match the database.
pub(crate) fn wrong_key(store: &StoreId, path: &Path) -> Error {
    Error::config(
        store,
        format!(
            "wrong master key: it does not open database {} (its sealed check value fails to authenticate)",
            path.display()
        ),
    )
}

/// [`wrong_key`], with the provider's reason for its refusal.
pub(crate) fn wrong_key_because(store: &StoreId, path: &Path, reason: &str) -> Error {
    Error::config(
        store,
        format!(
            "wrong master key: the key-encryption key does not open database {}: {reason}",
            path.display()
        ),
    )
}

/// The error of a store whose key was rotated by another process or handle
/// that does not share its memory.
pub(crate) fn rotated_elsewhere(store: &StoreId, path: &Path, ours: u32, on_disk: u32) -> Error {
    Error::config(
        store,
        format!(
            "the master key of database {} was rotated elsewhere (key version {on_disk}; this store holds \
             version {ours}); open it again with the new key",
            path.display()
        ),
    )
}

/// [`Error::Backend`] with a plain message.
pub(crate) fn backend(store: &StoreId, what: impl Into<String>) -> Error {
    Error::backend(store, NativeError { what: what.into() })
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
    fn native_causes_are_kept_as_sources() {
        use std::error::Error as _;
        let id = StoreId::new("s").unwrap();
        let busy = from_sqlite(&id, Path::new("/x/y.db"), &failure(rusqlite::ffi::SQLITE_BUSY));
        assert!(busy.source().is_some_and(|s| s.to_string().contains("locked")), "{busy:?}");
        let io = from_io(&id, Path::new("/d"), "create", &io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(io.source().is_some(), "{io:?}");
        let cloned = busy.clone();
        assert!(cloned.is_retriable() && cloned.to_string() == busy.to_string());
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
