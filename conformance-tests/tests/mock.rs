//! The whole suite on `MockStore` as it comes, with its optional change
//! feed turned on: every capability declared, so no case is skipped but the
//! reopen ones (it lives in the process). Each store is a namespace of one
//! shared mock, so the isolation cases test something real.

use std::sync::Arc;

use credstore_conformance::mock::MockStore;
use credstore_conformance::{conformance_main, NamespaceFactory};
use credstore_core::{Availability, StoreId};

fn factory() -> Option<NamespaceFactory> {
    let down = MockStore::new(StoreId::new("mock-down").expect("a valid id"));
    down.set_availability(Availability::down("connection refused (the mock is set down)"));
    let caps = MockStore::DEFAULT_CAPABILITIES.with_change_feed(true);
    let root = MockStore::new(StoreId::new("mock").expect("a valid id")).with_capabilities(caps);
    Some(NamespaceFactory::new(Arc::new(root)).with_unreachable(Arc::new(down)))
}

conformance_main!(factory());
