//! The whole conformance suite on a cache over `credstore-memory`.
//!
//! One cached root store is shared by every store of the factory: each is a
//! namespace handle of it, so namespaces go through the cache's own
//! `with_namespace` (one cache per namespace). Negative caching is on, so
//! the suite also checks that a remembered miss never hides a write. The
//! cases about time get a cache over a fresh memory store on their clock:
//! the cache must never serve a credential past its `expires_at` by it.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::NamespaceFactory;
use credstore_core::{Layer, StoreId};
use credstore_layers::CacheLayer;
use credstore_memory::{MemoryConfig, MemoryStore};

fn id() -> StoreId {
    StoreId::new("cache-over-memory").expect("valid id")
}

fn cache() -> CacheLayer {
    CacheLayer::new().with_negative_ttl(Duration::from_secs(5))
}

fn factory() -> Option<NamespaceFactory> {
    let memory = Arc::new(MemoryStore::new(id()));
    let on_clock =
        |clock| cache().layer(Arc::new(MemoryStore::with_config(id(), MemoryConfig::new().clock(clock))));
    Some(NamespaceFactory::new(cache().layer(memory)).on_clock(on_clock))
}

credstore_conformance::conformance_main!(factory());
