//! Pluggable credential stores in one dependency: the
//! [`CredentialStore`] trait and its types (re-exported from
//! `credstore-core`), the [`layers`], each backend crate under its cargo
//! feature, and [`open`]: a store from one string.
//!
//! ```sh
//! cargo add credstore                       # memory: and sqlite: stores
//! cargo add credstore --features vault,aws  # and vault+https:, aws-sm:
//! cargo add tokio --features macros,rt
//! ```
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # std::env::set_current_dir(dir.path()).unwrap();
//! # std::env::set_var("APP_KEY", &*credstore::sqlite::MasterKey::generate().to_base64().unwrap());
//! use credstore::{CredentialKey, CredentialStoreExt, Metadata, SecretValue};
//!
//! // An encrypted SQLite file in the current directory, its master key (the
//! // base64 of 32 bytes) in the environment variable APP_KEY.
//! let store = credstore::open("sqlite:app.db?master_key_env=APP_KEY").await?;
//! let key = CredentialKey::new("stripe-api-key")?;
//! store.set(&key, &SecretValue::from("sk_live_123"), &Metadata::new()).await?;
//! let read = store.get(&key).await?.expect("just written");
//! assert_eq!(read.value.expose_str()?, "sk_live_123");
//!
//! // In memory, for tests and scratch work.
//! let scratch = credstore::open("memory:").await?;
//! assert!(scratch.get(&key).await?.is_none());
//! # Ok(()) }
//! ```
//!
//! # Store URIs
//!
//! `scheme:[//[user@]host[:port]][path][?name=value&...]`. Each backend
//! crate owns its scheme ([`StoreScheme`]) and reads the URI into the same
//! settings a `credstore-server` config file has: **every setting of a
//! backend is a query parameter of the same name**, and a parameter no one
//! knows is an error naming it (a misspelt setting never falls back to a
//! default silently). `id=...` names the store (the backend's kind by
//! default).
//!
//! | feature | scheme | example | the backend's settings |
//! |---|---|---|---|
//! | `memory` (default) | `memory:` | `memory:?env_prefix=APP_` | `credstore_memory::MemoryScheme` |
//! | `sqlite` (default) | `sqlite:` | `sqlite:data/app.db?master_key_env=APP_KEY`, `sqlite:///var/lib/app.db?passphrase_file=/run/secrets/p` | `credstore_sqlite::SqliteScheme` |
//! | `vault` | `vault+https:`, `vault+http:` | `vault+https://vault.internal:8200/secret?token_env=VAULT_TOKEN&prefix=team` | `credstore_vault::VaultScheme` |
//! | `aws` | `aws-sm:` | `aws-sm://eu-west-1?prefix=team`, `aws-sm://us-east-1?endpoint=http://127.0.0.1:5000` | `credstore_aws::AwsScheme` |
//! | `postgres` | `postgres:`, `postgresql:` | `postgres://app@db.internal/creds?password_env=PGPASSWORD&master_key_env=APP_KEK` | `credstore_postgres::PostgresScheme` |
//! | `keychain` | `keychain:` | `keychain:`, `keychain:?platform=keyutils&keyring=user` | `credstore_keychain::KeychainScheme` |
//!
//! Relative paths (`sqlite:app.db`, `master_key_file=app.key`) start at the
//! current directory for [`open`], at [`ConfigContext::base_dir`] for
//! [`open_with`]. `sqlite:` takes the path after the colon:
//! `sqlite:///var/lib/app.db` is absolute, while in `sqlite://data/app.db`
//! the first segment is a URI host, read as the start of the relative path
//! `data/app.db`.
//!
//! ## No secrets in a URI
//!
//! A URI ends up in shell history, process listings and logs, so one that
//! holds a secret is refused before anything is opened: a password in the
//! user part (`postgres://app:pw@db`), or a parameter whose last `_`-part is
//! `password`, `token`, `secret`, `key` or `passphrase`. The error names the
//! two ways to give it: `{name}_env=VARIABLE` (an environment variable) or
//! `{name}_file=PATH` (a file; surrounding whitespace is dropped).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let refused = credstore::open("sqlite:app.db?master_key=c2VjcmV0").await.unwrap_err();
//! assert!(refused.to_string().contains("master_key_env=VAR"));
//! assert!(!refused.to_string().contains("c2VjcmV0"));
//! # }
//! ```
//!
//! ## Layers as parameters
//!
//! These parameters are taken by this crate before the backend reads the
//! URI, and wrap the opened store in layers of [`layers`]:
//!
//! | parameter | layer | what it does |
//! |---|---|---|
//! | `cache_ttl=30s` | [`CacheLayer`](layers::CacheLayer)`::with_ttl` | a read-through cache: a value read is served from memory for that long (`250ms`, `30s`, `5m`, `1h`, `1d`, or a bare number of seconds; more than zero), with the cache's other defaults |
//! | `read_only` (or `read_only=true`) | [`ReadOnlyLayer`](layers::ReadOnlyLayer) | every write and delete fails with [`Error::Unsupported`] before any I/O |
//! | `retries=N` | [`RetryLayer`](layers::RetryLayer)`::with_max_attempts(N + 1)` | a call that fails with a retriable error is retried up to N times (0 to 10), with jittered exponential backoff within the layer's 10 s budget |
//!
//! They stack as the layers' docs advise: retries next to the store, the
//! cache over them (a hit costs no I/O, a miss is retried), read-only
//! outermost.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore::Result<()> {
//! use credstore::{CredentialKey, CredentialStoreExt, Error, Metadata, SecretValue};
//!
//! let store = credstore::open("memory:?read_only&cache_ttl=5m").await?;
//! let key = CredentialKey::new("api-token")?;
//! let err = store.set(&key, &SecretValue::from("x"), &Metadata::new()).await.unwrap_err();
//! assert!(matches!(err, Error::Unsupported { .. }));
//! # Ok(()) }
//! ```
//!
//! # A scheme of your own
//!
//! [`schemes`] is the registry of this build's schemes; register yours in it
//! and open URIs with [`open_with`] (the layer parameters work for it too):
//!
//! ```
//! use std::sync::Arc;
//! use credstore::config::ConfigContext;
//! use credstore::memory::{MemoryConfig, MemoryStore};
//! use credstore::{async_trait, CredentialStore, Result, StoreScheme, StoreUri};
//!
//! /// `team:?greeting=...`: here a memory store stands in for the team's
//! /// own backend.
//! #[derive(Debug)]
//! struct TeamScheme;
//!
//! #[async_trait]
//! impl StoreScheme for TeamScheme {
//!     fn schemes(&self) -> &[&'static str] {
//!         &["team"]
//!     }
//!
//!     async fn open(&self, mut uri: StoreUri, _ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
//!         let id = uri.take_store_id("team")?;
//!         let prefix = uri.take("env_prefix").unwrap_or_else(|| "TEAM_".into());
//!         uri.finish()?; // a parameter left over is an error naming it
//!         Ok(Arc::new(MemoryStore::with_config(id, MemoryConfig::new().env_prefix(prefix))))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
//! let mut schemes = credstore::schemes();
//! schemes.register(TeamScheme)?;
//! let ctx = ConfigContext::new(".");
//! let store = credstore::open_with(&schemes, "team:?id=team-a&read_only", &ctx).await?;
//! assert_eq!(store.info().id().as_str(), "team-a");
//! let err = credstore::open_with(&schemes, "team:?colour=blue", &ctx).await.unwrap_err();
//! assert!(err.to_string().contains("colour"));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

use std::sync::Arc;

pub use credstore_core::*;

use credstore_core::config::ConfigContext;

pub mod layers {
    //! Layers that wrap any store: `credstore-core`'s ([`TraceLayer`],
    //! [`TimeoutLayer`], [`Around`]) and `credstore-layers`' ([`CacheLayer`],
    //! [`FallbackLayer`], [`ReadOnlyLayer`], [`RetryLayer`]), stacked with
    //! [`StoreExt::with_layer`](crate::StoreExt::with_layer).

    pub use credstore_core::layers::*;
    pub use credstore_layers::*;
}

/// `memory:` stores: the `credstore-memory` crate (the `memory` feature).
#[cfg(feature = "memory")]
pub use credstore_memory as memory;

/// `sqlite:` stores: the `credstore-sqlite` crate (the `sqlite` feature).
#[cfg(feature = "sqlite")]
pub use credstore_sqlite as sqlite;

/// `vault+https:` stores: the `credstore-vault` crate (the `vault`
/// feature).
#[cfg(feature = "vault")]
pub use credstore_vault as vault;

/// `aws-sm:` stores: the `credstore-aws` crate (the `aws` feature).
#[cfg(feature = "aws")]
pub use credstore_aws as aws;

/// `postgres:` stores: the `credstore-postgres` crate (the `postgres`
/// feature).
#[cfg(feature = "postgres")]
pub use credstore_postgres as postgres;

/// `keychain:` stores: the `credstore-keychain` crate (the `keychain`
/// feature).
#[cfg(feature = "keychain")]
pub use credstore_keychain as keychain;

/// The most retries `retries=N` asks for.
const MAX_RETRIES: u32 = 10;

/// Every scheme this build has, by feature: `memory:`, `sqlite:`,
/// `vault+http:` and `vault+https:`, `aws-sm:`, `postgres:` and
/// `postgresql:`, `keychain:`. Register your own in it and open with
/// [`open_with`].
pub fn schemes() -> SchemeRegistry {
    #[allow(unused_mut)]
    let mut registry = SchemeRegistry::new();
    // Each backend registers scheme names of its own: none can be taken.
    let taken = "the backends' scheme names are distinct";
    #[cfg(feature = "memory")]
    registry.register(credstore_memory::MemoryScheme).expect(taken);
    #[cfg(feature = "sqlite")]
    registry.register(credstore_sqlite::SqliteScheme).expect(taken);
    #[cfg(feature = "vault")]
    registry.register(credstore_vault::VaultScheme).expect(taken);
    #[cfg(feature = "aws")]
    registry.register(credstore_aws::AwsScheme).expect(taken);
    #[cfg(feature = "postgres")]
    registry.register(credstore_postgres::PostgresScheme).expect(taken);
    #[cfg(feature = "keychain")]
    registry.register(credstore_keychain::KeychainScheme).expect(taken);
    let _ = taken;
    registry
}

/// Opens the store `uri` names with [`schemes`], relative paths from the
/// current directory and `*_env` secrets from the process environment; the
/// layer parameters (see the crate docs) wrap it.
///
/// # Errors
/// As [`open_with`].
pub async fn open(uri: &str) -> Result<Arc<dyn CredentialStore>> {
    let ctx = ConfigContext::new(std::env::current_dir().unwrap_or_default());
    open_with(&schemes(), uri, &ctx).await
}

/// Opens the store `uri` names with the scheme `registry` has for it,
/// relative paths from [`ConfigContext::base_dir`] and `*_env` secrets
/// looked up through `ctx`, wrapped in the layers its parameters ask for.
///
/// # Errors
/// [`Error::InvalidInput`] before anything is opened: on `uri` when it is
/// not a URI or no scheme is registered for it (the message lists those
/// that are); on `uri.{name}` for a secret written into it (the message
/// names `{name}_env` and `{name}_file`), a parameter no one knows, or a
/// value that does not parse. Otherwise the backend's errors of opening a
/// store, such as [`Error::Config`] naming the store.
pub async fn open_with(
    registry: &SchemeRegistry,
    uri: &str,
    ctx: &ConfigContext,
) -> Result<Arc<dyn CredentialStore>> {
    let mut uri = StoreUri::parse(uri)?;
    let layers = take_layers(&mut uri)?;
    let store = registry.open_uri(uri, ctx).await?;
    Ok(layers.iter().fold(store, |store, layer| layer.layer(store)))
}

/// Takes the layer parameters out of `uri`, before its scheme sees it: the
/// layers they ask for, innermost first.
fn take_layers(uri: &mut StoreUri) -> Result<Vec<Arc<dyn Layer>>> {
    let invalid = |name: &str, reason: &str| Error::InvalidInput {
        field: format!("uri.{name}"),
        reason: reason.into(),
    };
    let mut stack: Vec<Arc<dyn Layer>> = Vec::new();
    match uri.take_parsed::<u32>("retries")? {
        None | Some(0) => {}
        Some(n) if n > MAX_RETRIES => {
            return Err(invalid("retries", &format!("is at most {MAX_RETRIES}, not {n}")));
        }
        Some(n) => stack.push(Arc::new(layers::RetryLayer::new().with_max_attempts(n + 1))),
    }
    match uri.take_duration("cache_ttl")? {
        None => {}
        Some(ttl) if ttl.is_zero() => {
            return Err(invalid("cache_ttl", "must be more than zero; leave it out for no cache"));
        }
        Some(ttl) => stack.push(Arc::new(layers::CacheLayer::new().with_ttl(ttl))),
    }
    if uri.take_bool("read_only")?.unwrap_or(false) {
        stack.push(Arc::new(layers::ReadOnlyLayer::new()));
    }
    Ok(stack)
}

/// The README's example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
