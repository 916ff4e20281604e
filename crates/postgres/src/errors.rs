//! Translation of the driver's, the pool's and internal failures into
//! [`credstore_core::Error`], in one place.
//!
//! Messages name the store and what went wrong; they never hold a value, a
//! password or anything decrypted. PostgreSQL's own messages are safe to
//! pass on: every value reaches the server as a bound parameter, and those
//! never appear in its error text; the password never reaches the server
//! (SCRAM), and the driver's errors do not repeat it.
//!
//! | Failure | Error |
//! |---|---|
//! | no free connection within the acquire timeout, a connection refused, reset or timed out, I/O, a statement past the client's timeout | [`Error::Unavailable`] (retriable) |
//! | SQLSTATE `40001` serialization failure, `40P01` deadlock, `57014` statement timeout, `57P01`–`57P03` shutdown, `53xxx` insufficient resources, `08xxx` connection exceptions | [`Error::Unavailable`] (retriable) |
//! | `28P01` wrong password, `28000` no such login, `42501` insufficient privilege | [`Error::PermissionDenied`] |
//! | `3D000` no such database; a TLS handshake that fails (a certificate not trusted or not for the host, a server without TLS) | [`Error::Config`] |
//! | anything else | [`Error::Backend`], the driver's error as its source |

use std::fmt;

use credstore_core::{CredentialKey, Error, StoreId};
use tokio_postgres::error::SqlState;

/// A driver or pool failure kept as plain text: the sanitized source
/// attached to this crate's errors.
#[derive(Debug, Clone)]
pub(crate) struct NativeError {
    what: String,
}

impl fmt::Display for NativeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for NativeError {}

/// The text of a driver error with its causes (the driver's `Display`
/// alone says "error communicating with the server" and hides the OS error).
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The TLS failure in `e`'s causes, if any: a certificate rustls refused,
/// or a server that offers no TLS.
fn tls_failure(e: &tokio_postgres::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(tls) = s.downcast_ref::<rustls::Error>() {
            return Some(tls.to_string());
        }
        if let Some(tls) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|i| i.downcast_ref::<rustls::Error>())
        {
            return Some(tls.to_string());
        }
        if s.to_string().contains("server does not support TLS") {
            return Some("the server does not offer TLS".to_owned());
        }
        source = s.source();
    }
    None
}

/// Whether an SQLSTATE is a passing condition worth retrying.
fn retriable(code: &SqlState) -> bool {
    let c = code.code();
    matches!(c, "40001" | "40P01" | "57014" | "57P01" | "57P02" | "57P03" | "55P03")
        || c.starts_with("08")
        || c.starts_with("53")
}

/// Translates a driver error met while doing `what` (such as "read a
/// credential").
pub(crate) fn from_pg(store: &StoreId, what: &str, e: &tokio_postgres::Error) -> Error {
    let detail = describe(e);
    let err = match e.code() {
        Some(code) if retriable(code) => {
            Error::unavailable(store, format!("PostgreSQL could not {what} now: {detail}"))
        }
        Some(code)
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
        {
            Error::permission_denied(store, format!("PostgreSQL refused the login: {detail}"))
        }
        Some(code) if *code == SqlState::INSUFFICIENT_PRIVILEGE => Error::permission_denied(
            store,
            format!(
                "PostgreSQL refused to {what}: the user lacks a privilege on the store's schema ({detail})"
            ),
        ),
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
            Error::config(store, format!("PostgreSQL has no such database: {detail}"))
        }
        Some(_) => {
            return Error::backend(
                store,
                NativeError { what: format!("PostgreSQL could not {what}: {detail}") },
            )
        }
        None if tls_failure(e).is_some() => Error::config(
            store,
            format!(
                "TLS to PostgreSQL failed ({}): with tls = \"verify-full\" the server must offer TLS with a \
                 certificate for its host name signed by ca_file (or a root the platform trusts)",
                tls_failure(e).unwrap_or_default()
            ),
        ),
        // No SQLSTATE: the connection (refused, reset, closed, timeout).
        None if e.as_db_error().is_none() => {
            Error::unavailable(store, format!("cannot reach PostgreSQL to {what}: {detail}"))
        }
        None => {
            return Error::backend(
                store,
                NativeError { what: format!("PostgreSQL could not {what}: {detail}") },
            )
        }
    };
    err.with_source(NativeError { what: detail })
}

/// Translates a failure to get a connection of the pool.
pub(crate) fn from_pool(store: &StoreId, what: &str, e: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Timeout(kind) => Error::unavailable(
            store,
            format!("no PostgreSQL connection to {what} in time ({kind:?} timeout): the pool is busy or the server does not answer"),
        ),
        PoolError::Backend(e) => from_pg(store, what, &e),
        PoolError::Closed => Error::unavailable(store, format!("cannot {what}: the store's pool is closed")),
        other => Error::backend(store, NativeError { what: format!("cannot get a PostgreSQL connection to {what}: {other}") }),
    }
}

/// The error of a statement the client gave up on after `after`.
pub(crate) fn timed_out(store: &StoreId, what: &str, after: std::time::Duration) -> Error {
    Error::unavailable(
        store,
        format!("PostgreSQL did not answer within {after:?} to {what}; a write may or may not have been committed"),
    )
}

/// The integrity error for `key`: its row failed authentication.
pub(crate) fn integrity(store: &StoreId, key: &CredentialKey, reason: impl Into<String>) -> Error {
    Error::integrity(store, key, reason)
}

/// [`Error::Backend`] with a plain message.
pub(crate) fn backend(store: &StoreId, what: impl Into<String>) -> Error {
    Error::backend(store, NativeError { what: what.into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_states_are_the_passing_ones() {
        for c in ["40001", "40P01", "57014", "57P01", "57P03", "08006", "53300"] {
            assert!(retriable(&SqlState::from_code(c)), "{c}");
        }
        for c in ["23505", "42501", "28P01", "42P01", "22001"] {
            assert!(!retriable(&SqlState::from_code(c)), "{c}");
        }
    }

    #[test]
    fn pool_timeouts_are_retriable_and_name_the_store() {
        let id = StoreId::new("pg").unwrap();
        let e = from_pool(
            &id,
            "read",
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait),
        );
        assert!(e.is_retriable() && e.to_string().contains("pg"), "{e}");
        let t = timed_out(&id, "write", std::time::Duration::from_secs(1));
        assert!(t.is_retriable(), "{t}");
    }
}
