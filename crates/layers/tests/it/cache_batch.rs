//! `get_many` through the cache: hits from memory, the misses in one batch
//! read of the store, its answers cached; counted with the mock's counters
//! and a layer that records the batch reads reaching the store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::layers::{Around, Call, CallFuture, Operation};
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreExt, StoreId,
};
use credstore_layers::CacheLayer;

/// Records which operations reached the store.
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<Vec<Operation>>>);

impl Around for Calls {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: impl CallFuture<'a, T>,
    ) -> credstore_core::Result<T> {
        self.0.lock().expect("lock").push(call.operation);
        op.await
    }
}

impl Calls {
    fn reset(&self) {
        self.0.lock().expect("lock").clear();
    }

    fn count(&self, operation: Operation) -> usize {
        self.0.lock().expect("lock").iter().filter(|op| **op == operation).count()
    }
}

fn setup() -> (MockStore, Calls, Arc<credstore_layers::CachedStore>) {
    let mock = MockStore::new(StoreId::new("backend").expect("valid id"));
    let calls = Calls::default();
    let store: Arc<dyn CredentialStore> = Arc::new(mock.clone());
    let cached = CacheLayer::new().with_ttl(Duration::from_secs(60)).build(store.with_layer(calls.clone()));
    (mock, calls, cached)
}

async fn put(store: &dyn CredentialStore, name: &str) {
    store
        .set(&key(name), &SecretValue::from(format!("value of {name}")), &Metadata::new())
        .await
        .expect("set");
}

fn texts(found: &[Option<credstore_core::Credential>]) -> Vec<Option<String>> {
    found.iter().map(|c| c.as_ref().map(|c| c.value.expose_str().expect("text").to_owned())).collect()
}

#[tokio::test(start_paused = true)]
async fn get_many_answers_hits_from_memory_and_reads_only_the_misses_in_one_batch() {
    let (mock, calls, cached) = setup();
    for name in ["a", "b", "c"] {
        put(&mock, name).await;
    }
    cached.get(&key("a")).await.expect("get"); // `a` is cached
    mock.reset_calls();
    calls.reset();

    let keys: Vec<CredentialKey> = ["a", "b", "missing", "c", "b"].into_iter().map(key).collect();
    let found = cached.get_many(&keys).await.expect("get_many");
    let expected = [Some("value of a"), Some("value of b"), None, Some("value of c"), Some("value of b")]
        .map(|v| v.map(String::from));
    assert_eq!(texts(&found), expected, "in the order asked, duplicates answered twice");
    assert_eq!(calls.count(Operation::GetMany), 1, "the misses in one batch read");
    assert_eq!(calls.count(Operation::Get), 0, "no read of a single key");
    assert_eq!(
        mock.calls(Op::Get),
        3,
        "the mock's batch read its three missed keys, each once (`a` not among them)"
    );
    let stats = cached.stats();
    assert_eq!(
        (stats.hits, stats.misses, stats.loads),
        (1, 1 + 4, 1 + 1),
        "`a` hit, four misses, one load for the batch: {stats:?}"
    );

    // Its answers are cached: the same batch again reaches nothing.
    mock.reset_calls();
    let again = cached.get_many(&keys).await.expect("get_many");
    assert_eq!(texts(&again), expected);
    assert_eq!(mock.calls(Op::Get), 1, "only the missing key again (no negative caching by default)");
    assert_eq!((calls.count(Operation::GetMany), calls.count(Operation::Get)), (2, 0));
}

#[tokio::test(start_paused = true)]
async fn a_batch_that_fails_with_a_retriable_error_serves_stale_values_per_key() {
    let (mock, _calls, cached) = setup();
    put(&mock, "a").await;
    cached.get(&key("a")).await.expect("get");
    tokio::time::advance(Duration::from_secs(61)).await;
    mock.fail_next(10, Fault::Unavailable);
    let found = cached.get_many(&[key("a")]).await.expect("served stale");
    assert_eq!(texts(&found), [Some("value of a".to_owned())]);
    assert_eq!(cached.stats().stale_served, 1);

    mock.clear_faults();
    mock.fail_next(1, Fault::PermissionDenied);
    let err = cached.get_many(&[key("a")]).await.expect_err("not masked");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
}

#[tokio::test(start_paused = true)]
async fn a_batch_over_max_batch_keys_is_refused_before_any_io() {
    let (mock, calls, cached) = setup();
    let keys: Vec<CredentialKey> =
        (0..=credstore_core::MAX_BATCH_KEYS).map(|i| key(&format!("k{i}"))).collect();
    let err = cached.get_many(&keys).await.expect_err("too many");
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "keys"), "{err:?}");
    assert_eq!((mock.total_calls(), calls.count(Operation::GetMany)), (0, 0));
}
