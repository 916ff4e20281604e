//! The encrypted PostgreSQL [`CredentialStore`](credstore_core::CredentialStore):
//! credentials shared by every process that opens the same schema, sealed by
//! the application before they reach the database.
//!
//! ```no_run
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
//! use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = PostgresConfig::new("db.internal")
//!         .user("credstore")
//!         .password(SecretValue::from(std::env::var("PGPASSWORD")?))
//!         .database("secrets")
//!         .master_key(MasterKey::from_env("CREDSTORE_MASTER_KEY")?);
//!     let store = PostgresStore::open(StoreId::new("team-pg")?, config).await?;
//!     let name = CredentialKey::new("stripe-api-key")?;
//!     store.create(&name, &SecretValue::from("sk_live_123"), &Metadata::new()).await?;
//!     assert_eq!(store.get(&name).await?.expect("just set").value.expose_str()?, "sk_live_123");
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]

mod config;
mod errors;
mod feed;
mod layout;
mod store;
mod tls;

#[cfg(feature = "serde")]
pub use config::{KeySource, PostgresSettings};
pub use config::{
    PostgresConfig, TlsMode, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PORT, DEFAULT_SCHEMA, DEFAULT_STATEMENT_TIMEOUT, MAX_SCHEMA_LEN,
};
pub use credstore_seal::{KeyFile, KeyProvider, MasterKey};
pub use store::{PostgresStore, PROBE_TIMEOUT};

/// The kind of every store of this crate: `postgres`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("postgres");
