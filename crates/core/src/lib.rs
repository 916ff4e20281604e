//! The core of credstore: one async trait for credential stores, and the
//! validated types every backend shares.
//!
//! - [`CredentialStore`]: get / conditional, versioned writes with metadata /
//!   has / delete / list, handles on [`Namespace`]s, and an availability
//!   probe that answers [`Availability`] instead of failing, and an
//!   optional [`ChangeFeed`] of what changed; where a store keeps them, a
//!   key's earlier versions ([`VersionInfo`], restore, [`PurgeTarget`]) and
//!   credentials that expire, decided by a [`Clock`]. One write
//!   method takes [`SetOptions`] ([`SetMode`]: upsert, create-only,
//!   replace-if-version); `set`, `create` and `replace` keep calls short.
//! - [`CredentialKey`], [`StoreId`]: ids that can only hold
//!   `^[a-zA-Z0-9\-_.]+$`, 1 to 255 bytes; [`Namespace`]: such segments
//!   joined by `/`; [`Version`]: the opaque version of a write.
//! - [`SecretValue`]: a redacted, zeroized value of bytes, usually text;
//!   [`Metadata`]: a validated string map with limits shared by every backend
//!   ([`MAX_VALUE_BYTES`] and friends).
//! - [`Capabilities`] with a [`Persistence`] class: what a store supports,
//!   held honest by the conformance suite.
//! - [`Error`]: one `#[non_exhaustive]`, `Clone` error enum whose variants
//!   name the store and keep the native cause; [`Error::is_retriable`].
//! - [`Layer`]s that stack on any store ([`layers::TraceLayer`],
//!   [`layers::TimeoutLayer`]) and [`StoreRegistry`]: stores by id, probed
//!   concurrently under a timeout.
//! - [`config`]: what a backend's `serde` settings need to open a store
//!   from a config file: relative paths and secrets named by source.
//!
//! Backends live in their own crates (`credstore-memory`, `credstore-sqlite`,
//! `credstore-keychain`, `credstore-aws`, `credstore-vault`);
//! `credstore-conformance` is the test suite every backend passes, yours
//! included.
//!
//! ```
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error};
//!
//! /// Copies a credential, refusing to overwrite one that exists.
//! async fn copy(from: &dyn CredentialStore, to: &dyn CredentialStore, key: &str) -> credstore_core::Result<bool> {
//!     let key = CredentialKey::new(key)?;
//!     let Some(cred) = from.get(&key).await? else { return Ok(false) };
//!     match to.create(&key, &cred.value, &cred.metadata).await {
//!         Ok(_) => Ok(true),
//!         Err(Error::PreconditionFailed { .. }) => Ok(false),
//!         Err(e) => Err(e),
//!     }
//! }
//! ```
#![warn(missing_docs)]

mod availability;
mod capabilities;
mod changes;
mod clock;
pub mod config;
pub mod error;
mod ext;
mod history;
mod id;
mod info;
mod layer;
pub mod layers;
mod list;
mod metadata;
mod namespace;
mod registry;
pub mod secret;
mod store;
mod uri;
mod version;
mod write;

pub use async_trait::async_trait;

pub use availability::{Availability, StoreStatus};
pub use capabilities::{Capabilities, Persistence};
pub use changes::{Change, ChangeFeed, ChangeHub, FeedEvent};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{BoxError, Error, IdKind, Result, Source};
pub use ext::CredentialStoreExt;
pub use history::{PurgeTarget, Retention, VersionInfo, VersionListOptions, VersionPage, VersionState};
pub use id::{is_id_byte, validate_id, CredentialKey, IdError, StoreId, MAX_ID_LEN};
pub use info::{StoreInfo, StoreKind, MAX_KIND_LEN};
pub use layer::{Layer, StoreExt};
pub use list::{ListCursor, ListOptions, ListPage, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use metadata::{
    check_value, Metadata, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_TOTAL_BYTES,
    MAX_METADATA_VALUE_BYTES, MAX_VALUE_BYTES,
};
pub use namespace::{Namespace, NamespaceError, MAX_NAMESPACE_LEN};
pub use registry::StoreRegistry;
pub use secret::SecretValue;
pub use store::{
    check_batch, get_many_concurrently, Credential, CredentialStore, BATCH_CONCURRENCY, MAX_BATCH_KEYS,
};
pub use uri::{SchemeRegistry, StoreScheme, StoreUri};
pub use version::{Version, MAX_VERSION_LEN};
pub use write::{SetMode, SetOptions, SetOutcome, WriteRequest};

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
