//! The conformance suite against `credstore-memory`.
//!
//! Every store is a namespace of one shared root store, reached through the
//! trait's `with_namespace`, so the isolation cases check namespaces of one
//! store rather than two separate maps, and the shared version counter is
//! exercised across namespaces.

use std::sync::Arc;

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{CredentialStore, Namespace, StoreId};
use credstore_memory::MemoryStore;

struct MemoryFactory {
    root: MemoryStore,
}

fn factory() -> Option<MemoryFactory> {
    Some(MemoryFactory { root: MemoryStore::new(StoreId::new("memory-conformance").expect("valid id")) })
}

#[credstore_conformance::async_trait]
impl StoreFactory for MemoryFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let ns = Namespace::new(unique_name("ns")).expect("valid namespace");
        self.root.with_namespace(&ns).expect("namespace")
    }
}

credstore_conformance::conformance_main!(factory());
