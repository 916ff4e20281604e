//! A fast, concurrent in-memory [`CredentialStore`](credstore_core::CredentialStore).
//!
//! - Values live in zeroizing buffers: a value that is overwritten or deleted
//!   is wiped, and so is everything left when the store drops.
//! - Reads run in parallel; writes take a short exclusive lock. Nothing
//!   awaits while a lock is held.
//! - Never unavailable; not persistent: the data dies with the process.
//! - Optional read-through from environment variables (see
//!   [`MemoryConfig::env_prefix`]).
//! - [`MemoryStore::with_namespace`] gives handles on separate key spaces of
//!   one store, as the HTTP server uses for tenants and projects.
//!
//! ```
//! use credstore_core::{CredentialKey, CredentialStore, Metadata, SecretValue, StoreId};
//! use credstore_memory::MemoryStore;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
//! let store = MemoryStore::new(StoreId::new("memory-default")?);
//! let key = CredentialKey::new("stripe-api-key")?;
//! store.set(&key, &SecretValue::from("sk_live_123"), &Metadata::new()).await?;
//! let cred = store.get(&key).await?.expect("just set");
//! assert_eq!(cred.value.expose_secret(), "sk_live_123");
//! assert!(store.delete(&key).await?);
//! assert!(!store.delete(&key).await?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod store;

pub use config::MemoryConfig;
pub use store::MemoryStore;

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
