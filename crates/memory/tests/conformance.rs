//! The conformance suite against `credstore-memory`.
//!
//! Every store is a namespace of one shared root store, reached through the
//! trait's `with_namespace`, so the isolation cases check namespaces of one
//! store rather than two separate maps, and the shared version counter is
//! exercised across namespaces. The cases about time get a fresh root on
//! their own clock, used through a namespace of it too.

use std::sync::Arc;

use credstore_conformance::NamespaceFactory;
use credstore_core::{CredentialStore, StoreId};
use credstore_memory::{MemoryConfig, MemoryStore};

fn id() -> StoreId {
    StoreId::new("memory-conformance").expect("valid id")
}

credstore_conformance::conformance_main!(Some(
    NamespaceFactory::new(Arc::new(MemoryStore::new(id())))
        .on_clock(|clock| Arc::new(MemoryStore::with_config(id(), MemoryConfig::new().clock(clock)))
            as Arc<dyn CredentialStore>)
));
