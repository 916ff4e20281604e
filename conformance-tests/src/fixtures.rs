//! Values the cases, and your own tests, build again and again: a key, a
//! namespace and metadata from literals, and a buffer to capture logs in.
//!
//! Each panics with the offending literal when it is invalid, so a typo in a
//! test reads as the test's mistake, not the store's.
//!
//! ```
//! use credstore_conformance::fixtures::{key, meta, ns};
//!
//! let k = key("api-token");
//! let tenant = ns("tenant_a/project_1");
//! let m = meta([("owner", "billing")]);
//! assert_eq!(k.as_str(), "api-token");
//! assert_eq!(tenant.as_str(), "tenant_a/project_1");
//! assert_eq!(m.len(), 1);
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use credstore_core::{CredentialKey, Metadata, Namespace};

/// The key `s`; panics, naming it, when it is not a valid key.
pub fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap_or_else(|e| panic!("test key {s:?} is invalid: {e}"))
}

/// The namespace `s`; panics, naming it, when it is not a valid namespace.
pub fn ns(s: &str) -> Namespace {
    Namespace::new(s).unwrap_or_else(|e| panic!("test namespace {s:?} is invalid: {e}"))
}

/// Metadata of `entries`; panics when an entry breaks a metadata limit.
pub fn meta<const N: usize>(entries: [(&str, &str); N]) -> Metadata {
    Metadata::try_from(entries).unwrap_or_else(|e| panic!("test metadata {entries:?} is invalid: {e}"))
}

/// Log output kept in memory, for tests that search what was logged (for a
/// secret value, say). Clones share one buffer: give one to the
/// subscriber's writer, for instance
/// `tracing_subscriber::fmt().with_writer(move || capture.clone())`, and
/// read the buffer through another.
///
/// ```
/// use std::io::Write;
/// use credstore_conformance::fixtures::LogCapture;
///
/// let capture = LogCapture::default();
/// let mut writer = capture.clone();
/// writer.write_all(b"stored key api-token\n").unwrap();
/// assert_eq!(capture.text(), "stored key api-token\n");
/// ```
#[derive(Clone, Debug, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

impl LogCapture {
    /// Everything written so far; panics when it is not UTF-8.
    pub fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
        String::from_utf8(bytes).expect("log output is UTF-8")
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
