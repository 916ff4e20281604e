//! The core of credstore: one async trait for credential stores, and the
//! validated types every backend shares.
//!
//! - [`CredentialStore`]: get / set with metadata / has / delete / list, and
//!   an availability probe that answers [`Availability`] instead of failing.
//! - [`CredentialKey`], [`StoreId`]: ids that can only hold
//!   `^[a-zA-Z0-9\-_.]+$`, 1 to 255 bytes.
//! - [`SecretValue`]: a redacted, zeroized value; [`Metadata`]: a validated
//!   string map with limits shared by every backend ([`MAX_VALUE_BYTES`] and
//!   friends).
//! - [`Error`]: one `#[non_exhaustive]` error enum; [`Error::is_retriable`].
//! - [`StoreRegistry`]: stores by id, probed concurrently under a timeout;
//!   [`TracedStore`]: a `tracing` span on every operation.
//!
//! Backends live in their own crates (`credstore-memory`, `credstore-sqlite`,
//! `credstore-aws`, `credstore-vault`); `credstore-conformance` is the test
//! suite every backend passes, yours included.
//!
//! ```
//! use credstore_core::{CredentialKey, CredentialStore, Metadata, SecretValue};
//!
//! async fn copy(from: &dyn CredentialStore, to: &dyn CredentialStore, key: &str) -> credstore_core::Result<bool> {
//!     let key = CredentialKey::new(key)?;
//!     let Some(cred) = from.get(&key).await? else { return Ok(false) };
//!     to.set(&key, &cred.value, &cred.metadata).await?;
//!     Ok(true)
//! }
//! ```
#![warn(missing_docs)]

mod availability;
mod capabilities;
pub mod error;
mod id;
mod metadata;
mod registry;
pub mod secret;
mod store;
mod traced;

pub use async_trait::async_trait;

pub use availability::{Availability, StoreStatus};
pub use capabilities::Capabilities;
pub use error::{BoxError, Error, Result};
pub use id::{is_id_byte, validate_id, validate_namespace, CredentialKey, IdError, StoreId, MAX_ID_LEN};
pub use metadata::{
    check_value, Metadata, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_TOTAL_BYTES,
    MAX_METADATA_VALUE_BYTES, MAX_VALUE_BYTES,
};
pub use registry::StoreRegistry;
pub use secret::SecretValue;
pub use store::{
    Credential, CredentialStore, ListCursor, ListOptions, ListPage, SetOutcome, StoreKind, DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
};
pub use traced::TracedStore;
