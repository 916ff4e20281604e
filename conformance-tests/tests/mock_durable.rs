//! The suite on `MockStore` declared durable, with a reopen that hands back
//! a new handle over the same data, as reopening a file would: this runs the
//! reopen cases, so the suite's own persistence cases are exercised.

use std::sync::Arc;

use credstore_conformance::mock::MockStore;
use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{CredentialStore, CredentialStoreExt, Namespace, Persistence, StoreId};

struct Factory {
    root: MockStore,
}

#[credstore_conformance::async_trait]
impl StoreFactory for Factory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let ns = Namespace::new(unique_name("case")).expect("a valid namespace");
        self.root.with_namespace(&ns).expect("with_namespace")
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let ns = store.namespace().clone();
        drop(store);
        Some(self.root.clone().with_namespace(&ns).expect("with_namespace"))
    }
}

fn factory() -> Option<Factory> {
    let caps =
        MockStore::DEFAULT_CAPABILITIES.with_persistence(Persistence::Durable).with_can_be_unavailable(false);
    let root = MockStore::new(StoreId::new("mock-durable").expect("a valid id")).with_capabilities(caps);
    Some(Factory { root })
}

conformance_main!(factory());
