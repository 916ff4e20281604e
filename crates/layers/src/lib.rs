//! Layers for credstore stores in real deployments.
//!
//! Each is a [`credstore_core::Layer`], usable on its own or stacked with
//! [`StoreExt::with_layer`](credstore_core::StoreExt::with_layer) on any
//! `Arc<dyn CredentialStore>`; each keeps its behaviour on the handles
//! [`with_namespace`](credstore_core::CredentialStore::with_namespace)
//! returns.
//!
//! - [`CacheLayer`]: a read-through cache with TTL, LRU eviction, single
//!   flight, stale-if-error, negative caching, revalidation by version,
//!   invalidation by the store's change feed when it has one, and counters
//!   ([`CacheStats`]); with [`CacheBuilder`], a durable second tier that
//!   serves reads across restarts while the store is down, and prefetch at
//!   start.
//! - [`FallbackStore`] and [`FallbackLayer`]: a chain of stores; reads take
//!   the first hit, writes go to the first writable store.
//! - [`ReadOnlyLayer`]: refuses every write before any I/O.
//! - [`RetryLayer`]: bounded exponential backoff with jitter for retriable
//!   errors.
//!
//! Nothing here stores anything of its own on disk or on the wire, with one
//! exception: a cache given a durable tier ([`CacheLayer::durable`]) keeps
//! one envelope per key in that store, under the namespace
//! `cache/<store id>/<namespace>` ([`DURABLE_NAMESPACE`]); the envelope's
//! byte layout is documented under "Durable tier" on [`CacheLayer`], and
//! the file's is the tier's own (an encrypted SQLite store encrypts it like
//! any value). Otherwise a cache keeps values in memory only, as shared,
//! zeroizing [`SecretValue`](credstore_core::SecretValue) clones.
//!
//! A typical stack for a remote secret manager: a timeout per attempt,
//! retries, then the cache outermost so hits cost no I/O at all.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use credstore_core::{layers::TimeoutLayer, CredentialStore, CredentialStoreExt, Namespace, StoreExt};
//! use credstore_layers::{CacheLayer, RetryLayer};
//!
//! fn deploy(vault: Arc<dyn CredentialStore>) -> credstore_core::Result<Arc<dyn CredentialStore>> {
//!     let store = vault
//!         .with_layer(TimeoutLayer::new(Duration::from_secs(2)))
//!         .with_layer(RetryLayer::new())
//!         .with_layer(CacheLayer::new().with_ttl(Duration::from_secs(60)));
//!     // The tenant's handle has its own cache, over the same retries and timeouts.
//!     store.with_namespace(&Namespace::new("tenant_1")?)
//! }
//! ```
#![warn(missing_docs)]

mod cache;
mod fallback;
mod read_only;
mod retry;

pub use cache::{
    CacheBuilder, CacheLayer, CacheStats, CachedStore, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_STALE,
    DEFAULT_PREFETCH_JITTER, DEFAULT_TTL, DURABLE_NAMESPACE,
};
pub use fallback::{FallbackLayer, FallbackStore, FALLBACK_KIND};
pub use read_only::{ReadOnlyLayer, ReadOnlyStore, READ_ONLY_OPERATION};
pub use retry::{RetryLayer, RetryStore, RETRIED_PRECONDITION_NOTE};

/// The README's example compiles as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
