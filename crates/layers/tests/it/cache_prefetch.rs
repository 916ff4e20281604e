//! Prefetch at start: which keys, in which batches, when (tokio's paused
//! clock, so the jitter's bound is exact), and that they are hits after.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::layers::{Around, Call, CallFuture, Operation};
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreExt, StoreId,
};
use credstore_layers::{CacheLayer, DEFAULT_PREFETCH_JITTER};
use tokio::time::Instant;

fn mock() -> MockStore {
    MockStore::new(StoreId::new("backend").expect("valid id"))
}

async fn put(store: &dyn CredentialStore, name: &str) {
    store
        .set(&key(name), &SecretValue::from(format!("value of {name}")), &Metadata::new())
        .await
        .expect("set");
}

/// Records when each batch read and listing reached the store.
#[derive(Debug, Clone, Default)]
struct Calls(Arc<Mutex<Vec<(Operation, Instant)>>>);

impl Around for Calls {
    async fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: impl CallFuture<'a, T>,
    ) -> credstore_core::Result<T> {
        self.0.lock().expect("lock").push((call.operation, Instant::now()));
        op.await
    }
}

fn recorded(mock: &MockStore, calls: &Calls) -> Arc<dyn CredentialStore> {
    let store: Arc<dyn CredentialStore> = Arc::new(mock.clone());
    store.with_layer(calls.clone())
}

impl Calls {
    fn of(&self, operation: Operation) -> Vec<Instant> {
        self.0.lock().expect("lock").iter().filter(|(op, _)| *op == operation).map(|(_, at)| *at).collect()
    }
}

#[tokio::test(start_paused = true)]
async fn prefetched_keys_are_hits_without_touching_the_store() {
    let mock = mock();
    for name in ["app.a", "app.b", "db.user", "db.password", "other"] {
        put(&mock, name).await;
    }
    let cached = CacheLayer::new()
        .prefetch_keys([key("app.a"), key("app.b"), key("missing")])
        .prefetch_prefix("db.")
        .expect("a valid prefix")
        .build(Arc::new(mock.clone()));
    assert_eq!(
        cached.prefetch().await.expect("prefetch"),
        4,
        "the two listed keys that exist and the two under db."
    );
    assert_eq!(cached.stats().prefetched, 4);

    mock.reset_calls();
    for name in ["app.a", "app.b", "db.user", "db.password"] {
        let found = cached.get(&key(name)).await.expect("get").expect("present");
        assert_eq!(found.value.expose_str().expect("text"), format!("value of {name}"));
    }
    assert_eq!(mock.total_calls(), 0, "every prefetched key is a hit");
    assert_eq!(cached.stats().hits, 4);
    cached.get(&key("other")).await.expect("get");
    assert_eq!(mock.calls(Op::Get), 1, "a key not prefetched is read");
}

#[tokio::test(start_paused = true)]
async fn prefetch_reads_in_batches_of_at_most_max_batch_keys_within_the_jitter() {
    let mock = mock();
    let names: Vec<String> = (0..2500).map(|i| format!("k{i:04}")).collect();
    for name in &names {
        put(&mock, name).await;
    }
    let calls = Calls::default();
    let jitter = Duration::from_secs(30);
    let cached = CacheLayer::new()
        .with_max_entries(3000)
        .prefetch_prefix("k")
        .expect("prefix")
        .prefetch_jitter(jitter)
        .build(recorded(&mock, &calls));
    let start = Instant::now();
    assert_eq!(cached.prefetch().await.expect("prefetch"), 2500);

    let batches = calls.of(Operation::GetMany);
    assert_eq!(batches.len(), 3, "2,500 keys in three batches (a batch over 1,000 keys is refused)");
    assert_eq!(mock.calls(Op::Get), 2500, "each key read once");
    let mut times = calls.of(Operation::List);
    times.extend(&batches);
    assert!(
        times.iter().all(|t| *t - start <= jitter),
        "every read starts within the jitter: {:?}",
        offsets(start, &times)
    );
    assert!(times.iter().any(|t| *t > start), "not all at once at start: {:?}", offsets(start, &times));
    assert!(batches.windows(2).all(|w| w[0] <= w[1]));
}

fn offsets(start: Instant, times: &[Instant]) -> Vec<Duration> {
    times.iter().map(|t| *t - start).collect()
}

#[tokio::test(start_paused = true)]
async fn prefetch_without_jitter_reads_at_once_and_the_default_jitter_is_a_second() {
    assert_eq!(DEFAULT_PREFETCH_JITTER, Duration::from_secs(1));
    let mock = mock();
    put(&mock, "a").await;
    let calls = Calls::default();
    let cached = CacheLayer::new()
        .prefetch_keys([key("a")])
        .prefetch_jitter(Duration::ZERO)
        .build(recorded(&mock, &calls));
    let start = Instant::now();
    assert_eq!(cached.prefetch().await.expect("prefetch"), 1);
    assert_eq!(calls.of(Operation::GetMany), [start]);
}

#[tokio::test(start_paused = true)]
async fn prefetch_is_capped_at_max_entries_and_a_bad_prefix_is_refused_before_any_io() {
    let err = CacheLayer::new().prefetch_prefix("a/b").expect_err("no key holds a slash");
    assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "prefix"), "{err:?}");

    let mock = mock();
    for i in 0..10 {
        put(&mock, &format!("k{i}")).await;
    }
    let keys: Vec<CredentialKey> = (0..10).map(|i| key(&format!("k{i}"))).collect();
    let cached = CacheLayer::new().with_max_entries(4).prefetch_keys(keys).build(Arc::new(mock.clone()));
    mock.reset_calls();
    assert_eq!(cached.prefetch().await.expect("prefetch"), 4);
    assert_eq!(mock.calls(Op::Get), 4, "no key read that could not be kept");
    assert_eq!(cached.stats().evictions, 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_prefetch_returns_the_stores_error_and_nothing_planned_is_a_no_op() {
    let mock = mock();
    put(&mock, "a").await;
    let none = CacheLayer::new().build(Arc::new(mock.clone()));
    mock.reset_calls();
    assert_eq!(none.prefetch().await.expect("nothing to do"), 0);
    assert_eq!(mock.total_calls(), 0);

    let cached = CacheLayer::new().prefetch_keys([key("a")]).build(Arc::new(mock.clone()));
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    let err = cached.prefetch().await.expect_err("the store is down");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(cached.stats().entries, 0);
}

#[test]
fn settings_given_after_the_tier_or_the_prefetch_apply_too() {
    let builder = CacheLayer::new()
        .prefetch_keys([key("a")])
        .with_ttl(Duration::from_secs(7))
        .with_max_stale(Duration::from_secs(9))
        .with_max_entries(5);
    let settings = builder.settings();
    assert_eq!(
        (settings.ttl(), settings.max_stale(), settings.max_entries()),
        (Duration::from_secs(7), Duration::from_secs(9), 5)
    );
    assert_eq!(builder.prefetched_keys(), [key("a")]);
    assert_eq!((builder.prefetched_prefix(), builder.jitter()), (None, DEFAULT_PREFETCH_JITTER));
    assert!(builder.durable_tier().is_none());
}
