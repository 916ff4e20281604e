//! A fast, concurrent in-memory [`CredentialStore`](credstore_core::CredentialStore)
//! for credstore.
//!
//! - Values live in zeroizing buffers: a value that is overwritten or deleted
//!   is wiped, and so is everything left when the store drops. Text and
//!   binary values are kept as is, byte for byte.
//! - Reads run in parallel; writes take a short exclusive lock per
//!   namespace. Nothing awaits while a lock is held.
//! - [`CredentialStore::with_namespace`](credstore_core::CredentialStore::with_namespace)
//!   gives handles on separate key spaces of one store (nested: `a` then `b`
//!   is `a/b`), as the HTTP server uses for tenants and projects; namespaces
//!   follow [`credstore_core::Namespace`] with its 512-byte cap. A
//!   namespace takes memory only while it holds keys or has handles: reads
//!   on ever new namespaces (a client probing tenants) leave nothing behind.
//! - Every write gets a version from one counter shared by all namespaces of
//!   the store, so a version is never handed out twice, not even to a key
//!   that was deleted and created again. Create-only and replace-if-version
//!   writes are checked and applied under the namespace's write lock:
//!   atomic.
//! - Separation: each [`MemoryStore::new`] makes a storage of its own, so
//!   two memory stores never share keys, whatever their ids; only a store's
//!   clones and its namespace handles share them.
//! - Optional read-through from environment variables on the root namespace
//!   (see [`MemoryConfig::env_prefix`]); such credentials have the version
//!   `env`.
//! - A change feed, in process:
//!   [`subscribe`](credstore_core::CredentialStore::subscribe) on a handle
//!   reports every successful write and delete made through any handle of
//!   the same store (its clones and namespace handles) in that handle's
//!   namespace and the namespaces nested in it: the key, its namespace
//!   relative to the handle, and the version the write returned (`None` for
//!   a delete). Never a value. Writes refused by their condition, deletes
//!   of a missing key and the environment read-through report nothing. The
//!   changes of one key come in the order of their versions. Another
//!   process, or another `MemoryStore`, sees none of them. A subscriber
//!   that falls more than 1,024 changes behind is told with
//!   [`FeedEvent::Lost`](credstore_core::FeedEvent::Lost) and goes on with
//!   the newest; the feed ends when the last handle of the store is dropped.
//!
//! - A history of each key, in memory too: every write adds a version and
//!   the store keeps each key's newest versions within its
//!   [`Retention`](credstore_core::Retention) ([`MemoryConfig::retention`];
//!   by default [`DEFAULT_RETENTION`], the 10 newest, no age limit). Versions
//!   past the count go on the next write of the key; those superseded longer
//!   ago than the age limit, by the store's clock, are hidden from every
//!   read at once and go on the next write. A dropped version's value is
//!   wiped. [`get_version`](credstore_core::CredentialStore::get_version)
//!   reads any kept version,
//!   [`list_versions`](credstore_core::CredentialStore::list_versions)
//!   lists them newest first, and
//!   [`restore`](credstore_core::CredentialStoreExt::restore) writes one
//!   back as a new version (reported by the feed as any write).
//! - A delete keeps the history, its last version marked
//!   [`Deleted`](credstore_core::VersionState::Deleted), so a create-only
//!   restore recovers the key;
//!   [`purge`](credstore_core::CredentialStore::purge) destroys the key with
//!   its history (reported by the feed as a delete, with no version) or one
//!   earlier version (not reported: the current value is unchanged); an
//!   expired newest version is not current and can be purged too, the key
//!   staying absent.
//! - [`get_many`](credstore_core::CredentialStore::get_many) reads every
//!   key under one acquisition of the namespace's read lock: its answers
//!   are one snapshot, never half of a concurrent writer's changes.
//! - Expiry: a write may carry an `expires_at`; from then on, by the
//!   store's clock ([`MemoryConfig::clock`], the system clock by default),
//!   the key reads as absent and its version lists as
//!   [`Expired`](credstore_core::VersionState::Expired).
//!
//! # Capabilities
//! Everything ([`Capabilities::full`](credstore_core::Capabilities::full))
//! but persistence: [`Persistence::Process`](credstore_core::Persistence::Process),
//! the data dies with the process; and `can_be_unavailable: false`, the
//! store is always available. Also the optional
//! [`change_feed`](credstore_core::Capabilities::change_feed), in process,
//! [`versions`](credstore_core::Capabilities::versions) with the configured
//! [`retention`](credstore_core::Capabilities::retention),
//! [`recover_deleted`](credstore_core::Capabilities::recover_deleted) and
//! [`expiry`](credstore_core::Capabilities::expiry).
//!
//! ```
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
//! use credstore_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
//! let store = MemoryStore::new(StoreId::new("memory-default")?);
//! let key = CredentialKey::new("stripe-api-key")?;
//! store.set(&key, &SecretValue::from("sk_live_123"), &Metadata::new()).await?;
//! let cred = store.get(&key).await?.expect("just set");
//! assert_eq!(cred.value.expose_str()?, "sk_live_123");
//! assert!(store.delete(&key).await?);
//! assert!(!store.delete(&key).await?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod store;
#[cfg(feature = "serde")]
mod uri;

#[cfg(feature = "serde")]
pub use config::MemorySettings;
pub use config::{MemoryConfig, DEFAULT_RETENTION};
pub use store::MemoryStore;
#[cfg(feature = "serde")]
pub use uri::MemoryScheme;

/// The memory store's [`StoreKind`](credstore_core::StoreKind): `memory`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("memory");

/// The README's example, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
