//! The conformance suite against `credstore-memory`.
//!
//! Every store is a namespace of one shared root store, reached through the
//! trait's `with_namespace`, so the isolation cases check namespaces of one
//! store rather than two separate maps, and the shared version counter is
//! exercised across namespaces.

use std::sync::Arc;

use credstore_conformance::NamespaceFactory;
use credstore_core::StoreId;
use credstore_memory::MemoryStore;

credstore_conformance::conformance_main!(Some(NamespaceFactory::new(Arc::new(MemoryStore::new(
    StoreId::new("memory-conformance").expect("valid id")
)))));
