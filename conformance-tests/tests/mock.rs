//! The whole suite on `MockStore` as it comes: every capability declared,
//! so no case is skipped. Each store is a namespace of one shared mock, so
//! the isolation cases test something real.

use std::sync::Arc;

use credstore_conformance::mock::MockStore;
use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{Availability, CredentialStore, Namespace, StoreId};

struct Factory {
    root: MockStore,
}

#[credstore_conformance::async_trait]
impl StoreFactory for Factory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let ns = Namespace::new(unique_name("case")).expect("a valid namespace");
        self.root.with_namespace(&ns).expect("with_namespace")
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        let down = MockStore::new(StoreId::new("mock-down").expect("a valid id"));
        down.set_availability(Availability::down("connection refused (the mock is set down)"));
        Some(Arc::new(down))
    }
}

fn factory() -> Option<Factory> {
    Some(Factory { root: MockStore::new(StoreId::new("mock").expect("a valid id")) })
}

conformance_main!(factory());
