//! Values the cases, and your own tests, build again and again: a key, a
//! namespace and metadata from literals.
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
