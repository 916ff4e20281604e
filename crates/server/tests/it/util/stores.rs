//! Misbehaving stores for the error-path tests, scripted with
//! [`MockStore`].

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{CredentialStore, StoreId};

/// A mock store `id` and the handle to serve.
pub fn mock(id: &str) -> (MockStore, Arc<dyn CredentialStore>) {
    let mock = MockStore::new(StoreId::new(id).unwrap());
    let store: Arc<dyn CredentialStore> = Arc::new(mock.clone());
    (mock, store)
}

/// A store whose probe never answers; its operations work.
pub fn hanging_probe(id: &str) -> Arc<dyn CredentialStore> {
    let (mock, store) = mock(id);
    mock.fail_next_op(Op::CheckAvailability, usize::MAX, Fault::Hang);
    store
}

/// A store whose every call, the probe included, takes `latency` first.
pub fn slow(id: &str, latency: Duration) -> (MockStore, Arc<dyn CredentialStore>) {
    let (mock, store) = mock(id);
    mock.set_latency(latency);
    (mock, store)
}

/// A store whose every call, the probe included, acts out `fault`.
pub fn faulty(id: &str, fault: Fault) -> Arc<dyn CredentialStore> {
    let (mock, store) = mock(id);
    mock.fail_next(usize::MAX, fault);
    store
}
