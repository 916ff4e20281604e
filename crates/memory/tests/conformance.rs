//! The conformance suite against `credstore-memory`.

use std::sync::Arc;

use credstore_conformance::{conformance_suite, unique_name, StoreFactory};
use credstore_core::{CredentialStore, StoreId};
use credstore_memory::MemoryStore;

/// Each store is a namespace of one shared root store, so the isolation case
/// checks namespaces rather than two separate maps.
struct MemoryFactory {
    root: MemoryStore,
}

fn factory() -> Option<MemoryFactory> {
    Some(MemoryFactory { root: MemoryStore::new(StoreId::new("memory-conformance").unwrap()) })
}

#[credstore_core::async_trait]
impl StoreFactory for MemoryFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        Arc::new(self.root.with_namespace(&unique_name("ns")).expect("namespace"))
    }
}

conformance_suite!(factory());
