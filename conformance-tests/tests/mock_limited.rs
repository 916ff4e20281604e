//! The suite on a `MockStore` that declares, and really refuses, no list,
//! no metadata, no binary values, no create-only and no replace-if-version
//! writes and no change feed, and is never unavailable: the gated cases show
//! as ignored with their capability, and the `capabilities_*` cases check
//! the refusals.
//! Its reopen gives a new, empty mock, as a process-only store may.

use std::sync::Arc;

use credstore_conformance::mock::MockStore;
use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{CredentialStore, StoreId};

fn limited() -> MockStore {
    let caps = MockStore::DEFAULT_CAPABILITIES
        .with_list(false)
        .with_metadata(false)
        .with_binary(false)
        .with_create_only(false)
        .with_replace_if_version(false)
        .with_can_be_unavailable(false)
        .with_change_feed(false);
    MockStore::new(StoreId::new(unique_name("limited")).expect("a valid id")).with_capabilities(caps)
}

struct Factory;

#[credstore_conformance::async_trait]
impl StoreFactory for Factory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        Arc::new(limited())
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        drop(store);
        Some(Arc::new(limited()))
    }
}

conformance_main!(Some(Factory));
