//! The suite on `MockStore` declared durable, with a reopen that hands back
//! a new handle over the same data, as reopening a file would: this runs the
//! reopen cases, so the suite's own persistence cases are exercised. It
//! keeps every version, and a delete destroys a key's history (no
//! `recover_deleted`): the cases for that run here, the retention case is
//! skipped (no `max_versions` small enough to write past), and so are the
//! cases about time, as its factory builds no store on a clock.

use std::sync::Arc;

use credstore_conformance::mock::MockStore;
use credstore_conformance::{conformance_main, NamespaceFactory};
use credstore_core::{Persistence, StoreId};

fn factory() -> Option<NamespaceFactory> {
    let caps = MockStore::DEFAULT_CAPABILITIES
        .with_persistence(Persistence::Durable)
        .with_can_be_unavailable(false)
        .with_change_feed(true)
        .with_versions(true)
        .with_retention(credstore_core::Retention::UNBOUNDED);
    let root = MockStore::new(StoreId::new("mock-durable").expect("a valid id")).with_capabilities(caps);
    Some(NamespaceFactory::new(Arc::new(root)).reopen_by_handle(true))
}

conformance_main!(factory());
