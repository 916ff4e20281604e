//! The whole suite on `MockStore` as it comes, with its optional change
//! feed, history (a small retention with an age limit, recovery after a
//! delete) and expiry turned on, and a store on a clock for the cases about
//! time: every capability declared, so no case is skipped but the reopen
//! ones (it lives in the process) and the one for a store whose delete
//! destroys the history. Each store is a namespace of one shared mock, so
//! the isolation cases test something real.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::mock::MockStore;
use credstore_conformance::{conformance_main, NamespaceFactory};
use credstore_core::{Availability, Capabilities, CredentialStore, Retention, StoreId};

const CAPS: Capabilities = MockStore::DEFAULT_CAPABILITIES
    .with_change_feed(true)
    .with_versions(true)
    .with_recover_deleted(true)
    .with_expiry(true)
    .with_retention(Retention::versions(4).with_max_age(Some(Duration::from_secs(86_400))));

fn mock() -> MockStore {
    MockStore::new(StoreId::new("mock").expect("a valid id")).with_capabilities(CAPS)
}

fn factory() -> Option<NamespaceFactory> {
    let down = MockStore::new(StoreId::new("mock-down").expect("a valid id")).with_capabilities(CAPS);
    down.set_availability(Availability::down("connection refused (the mock is set down)"));
    let factory = NamespaceFactory::new(Arc::new(mock())).with_unreachable(Arc::new(down));
    Some(factory.on_clock(|clock| Arc::new(mock().with_clock(clock)) as Arc<dyn CredentialStore>))
}

conformance_main!(factory());
