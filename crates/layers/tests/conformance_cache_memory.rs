//! The whole conformance suite on a cache over `credstore-memory`.
//!
//! One cached root store is shared by every store of the factory: each is a
//! namespace handle of it, so namespaces go through the cache's own
//! `with_namespace` (one cache per namespace). Negative caching is on, so
//! the suite also checks that a remembered miss never hides a write.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::NamespaceFactory;
use credstore_core::{Layer, StoreId};
use credstore_layers::CacheLayer;
use credstore_memory::MemoryStore;

fn factory() -> Option<NamespaceFactory> {
    let memory = Arc::new(MemoryStore::new(StoreId::new("cache-over-memory").expect("valid id")));
    let cache = CacheLayer::new().with_negative_ttl(Duration::from_secs(5));
    Some(NamespaceFactory::new(cache.layer(memory)))
}

credstore_conformance::conformance_main!(factory());
