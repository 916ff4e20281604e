//! The cache and the store's change feed: another writer's change is read
//! fresh once the feed reports it, and the cache falls back to its TTL while
//! the feed is lost. The feed is the memory store's, or the mock's, whose
//! hub the tests drive; time is tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::fixtures::{key, ns};
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{
    CredentialStore, CredentialStoreExt, Metadata, Namespace, SecretValue, StoreId, Version,
};
use credstore_layers::{CacheLayer, CacheStats, CachedStore};
use credstore_memory::MemoryStore;

/// A mock with a change feed.
fn mock() -> MockStore {
    MockStore::new(StoreId::new("backend").expect("valid id"))
        .with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true))
}

async fn put(store: &dyn CredentialStore, name: &str, value: &str) -> Version {
    store.set(&key(name), &SecretValue::from(value), &Metadata::new()).await.expect("set").version
}

async fn text(store: &dyn CredentialStore, name: &str) -> Option<String> {
    store.get(&key(name)).await.expect("get").map(|c| c.value.expose_str().expect("text").to_owned())
}

/// Lets the feed's task run until `done` holds of the cache's counters,
/// failing with `what` if it does not within a thousand turns.
async fn until(cached: &CachedStore, what: &str, done: impl Fn(&CacheStats) -> bool) {
    for _ in 0..1000 {
        if done(&cached.stats()) {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("{what}: never happened; the cache's counters: {:?}", cached.stats());
}

/// Lets the cache's tasks run a few turns.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_value_overwritten_through_another_cache_is_read_fresh_once_the_feed_reports_it() {
    let memory = MemoryStore::new(StoreId::new("shared").expect("valid id"));
    let a = CacheLayer::new().build(Arc::new(memory.clone()));
    let b = CacheLayer::new().build(Arc::new(memory));
    put(&*a, "k", "v1").await;
    assert_eq!(text(&*b, "k").await.as_deref(), Some("v1"));

    put(&*a, "k", "v2").await;
    until(&b, "B drops its entry of k when the feed reports A's write", |s| s.feed_invalidations == 1).await;
    assert_eq!(text(&*b, "k").await.as_deref(), Some("v2"), "read fresh through B, long before its TTL");
    let stats = b.stats();
    assert_eq!((stats.loads, stats.feed_lost, stats.feed_live), (2, 0, true), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn without_a_feed_another_caches_write_is_served_stale_until_the_ttl() {
    let mock = MockStore::new(StoreId::new("backend").expect("valid id"));
    assert!(!mock.capabilities().change_feed);
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(60));
    let a = layer.build(Arc::new(mock.clone()));
    let b = layer.build(Arc::new(mock.clone()));
    put(&*a, "k", "v1").await;
    assert_eq!(text(&*b, "k").await.as_deref(), Some("v1"));
    put(&*a, "k", "v2").await;
    settle().await;
    assert_eq!(text(&*b, "k").await.as_deref(), Some("v1"), "stale: nothing tells B of A's write");
    let stats = b.stats();
    assert_eq!((stats.feed_live, stats.feed_invalidations, stats.feed_lost), (false, 0, 0), "{stats:?}");
    assert_eq!(mock.calls(Op::Subscribe), 0, "a store without a feed is never asked for one");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(text(&*b, "k").await.as_deref(), Some("v2"), "fresh at the TTL");
}

#[tokio::test(start_paused = true)]
async fn an_entry_already_at_the_reported_version_is_kept_and_a_miss_is_dropped_by_a_write() {
    let mock = mock();
    let v1 = put(&mock, "same", "v1").await;
    put(&mock, "other", "o1").await;
    let cached = CacheLayer::new().with_negative_ttl(Duration::from_secs(60)).build(Arc::new(mock.clone()));
    text(&*cached, "same").await;
    text(&*cached, "other").await;
    assert_eq!(text(&*cached, "absent").await, None);
    assert_eq!(text(&*cached, "absent").await, None, "the miss is remembered");
    assert_eq!(mock.calls(Op::Get), 3);

    // The feed reports `same` at the version it holds (as after the
    // cache's own write and read), then a change of `other`.
    let hub = mock.change_hub();
    hub.publish(&Namespace::root(), &key("same"), Some(&v1));
    hub.publish(&Namespace::root(), &key("absent"), None);
    hub.publish(&Namespace::root(), &key("other"), Some(&Version::from_counter(1000)));
    until(&cached, "the change of `other` is applied", |s| s.feed_invalidations == 1).await;
    assert_eq!(text(&*cached, "same").await.as_deref(), Some("v1"));
    assert_eq!(text(&*cached, "absent").await, None, "a delete of a key cached as missing keeps the miss");
    assert_eq!(mock.calls(Op::Get), 3, "kept entries cost no read");
    assert_eq!(text(&*cached, "other").await.as_deref(), Some("o1"));
    assert_eq!(mock.calls(Op::Get), 4, "the dropped entry is read again");

    // A write elsewhere of the key cached as missing drops the miss.
    put(&mock, "absent", "here now").await;
    until(&cached, "the write of `absent` is applied", |s| s.feed_invalidations == 2).await;
    assert_eq!(text(&*cached, "absent").await.as_deref(), Some("here now"));
}

#[tokio::test(start_paused = true)]
async fn changes_are_applied_to_the_namespace_they_were_made_in() {
    let memory = MemoryStore::new(StoreId::new("shared").expect("valid id"));
    let tenant = memory.with_namespace(&ns("tenant")).expect("ns");
    let writer = CacheLayer::new().build(tenant);
    let root = CacheLayer::new().build(Arc::new(memory.clone()));
    let cached_tenant = root.cached_namespace(&ns("tenant")).expect("ns");
    put(&memory, "k", "root").await;
    put(&*writer, "k", "t1").await;
    assert_eq!(text(&*root, "k").await.as_deref(), Some("root"));
    assert_eq!(text(&*cached_tenant, "k").await.as_deref(), Some("t1"));

    put(&*writer, "k", "t2").await;
    until(&root, "the tenant's write is applied", |s| s.feed_invalidations == 1).await;
    assert_eq!(cached_tenant.namespace_entries(), 0, "the tenant's entry of k is dropped");
    assert_eq!(root.namespace_entries(), 1, "the root's entry of k is another key");
    assert_eq!(text(&*cached_tenant, "k").await.as_deref(), Some("t2"));
}

#[tokio::test(start_paused = true)]
async fn a_read_under_way_when_the_feed_reports_a_change_does_not_put_its_answer_back() {
    let mock = mock();
    put(&mock, "k", "v1").await;
    let cached = CacheLayer::new().build(Arc::new(mock.clone()));
    assert_eq!(text(&*cached, "warm-up").await, None);
    assert!(cached.stats().feed_live);
    mock.set_latency(Duration::from_millis(100));
    mock.reset_calls();

    let read = text(&*cached, "k");
    let report = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        mock.change_hub().publish(&Namespace::root(), &key("k"), Some(&Version::from_counter(1000)));
        until(&cached, "the change is applied", |s| s.feed_invalidations == 1).await;
    };
    let (value, ()) = futures::future::join(read, report).await;
    assert_eq!(value.as_deref(), Some("v1"), "the caller gets the answer of its read");
    assert_eq!(cached.stats().entries, 0, "the superseded read cached nothing");
    text(&*cached, "k").await;
    assert_eq!(mock.calls(Op::Get), 2);
}

#[tokio::test(start_paused = true)]
async fn a_lost_feed_clears_the_cache_until_restored_and_is_counted() {
    let mock = mock();
    put(&mock, "a", "1").await;
    put(&*mock.with_namespace(&ns("t")).expect("ns"), "b", "2").await;
    let cached = CacheLayer::new().build(Arc::new(mock.clone()));
    let tenant = cached.cached_namespace(&ns("t")).expect("ns");
    text(&*cached, "a").await;
    text(&*tenant, "b").await;
    assert_eq!(cached.stats().entries, 2);
    assert!(cached.stats().feed_live);

    mock.change_hub().lost("connection reset");
    until(&cached, "the loss is applied", |s| s.feed_lost == 1).await;
    let stats = cached.stats();
    assert_eq!((stats.entries, stats.feed_live), (0, false), "every namespace dropped: {stats:?}");

    // Read meanwhile: cached, at TTL only.
    text(&*cached, "a").await;
    assert_eq!(cached.stats().entries, 1);
    mock.change_hub().restored();
    until(&cached, "the restoration is applied", |s| s.feed_live).await;
    let stats = cached.stats();
    assert_eq!((stats.entries, stats.feed_lost), (0, 1), "what was read while lost is dropped: {stats:?}");

    // Live again: changes are applied.
    text(&*cached, "a").await;
    put(&mock, "a", "1 again").await;
    until(&cached, "the change after the restoration", |s| s.feed_invalidations == 1).await;
    assert_eq!(text(&*cached, "a").await.as_deref(), Some("1 again"));
}

#[tokio::test(start_paused = true)]
async fn a_failed_subscription_is_retried_with_a_backoff_capped_at_five_seconds() {
    let mock = mock();
    put(&mock, "a", "1").await;
    mock.fail_next_op(Op::Subscribe, 1000, Fault::Unavailable);
    let cached = CacheLayer::new().build(Arc::new(mock.clone()));
    text(&*cached, "a").await;
    let stats = cached.stats();
    assert_eq!((stats.feed_live, stats.feed_lost), (false, 1), "{stats:?}");
    assert_eq!(cached.stats().entries, 1, "reads are cached meanwhile, at TTL");

    // 100 ms, 200 ms, ... 3.2 s, then every 5 s: about 17 attempts in a
    // minute (an uncapped doubling would make 10).
    for _ in 0..600 {
        tokio::time::advance(Duration::from_millis(100)).await;
        settle().await;
    }
    let attempts = mock.calls(Op::Subscribe);
    assert!((15..=19).contains(&attempts), "{attempts} attempts in 60 s");
    assert_eq!(cached.stats().feed_lost, 1, "one loss, however many attempts");

    mock.fail_next_op(Op::Subscribe, 0, Fault::Unavailable);
    tokio::time::advance(Duration::from_secs(5)).await;
    until(&cached, "the subscription succeeds", |s| s.feed_live).await;
    assert_eq!(cached.stats().entries, 0, "restored: what was read while lost is dropped");
}

#[tokio::test(start_paused = true)]
async fn the_feed_is_followed_once_per_cached_store_and_the_task_ends_with_its_last_handle() {
    let mock = mock();
    let hub = mock.change_hub().clone();
    let cached = CacheLayer::new().build(Arc::new(mock.clone()));
    settle().await;
    assert_eq!(hub.subscribers(), 0, "nothing before the first read");
    let tenant = cached.cached_namespace(&ns("t")).expect("ns");
    text(&*cached, "a").await;
    text(&*tenant, "b").await;
    assert_eq!((hub.subscribers(), mock.calls(Op::Subscribe)), (1, 1), "one feed for every handle");
    drop(cached);
    settle().await;
    assert_eq!(hub.subscribers(), 1, "a handle is left");
    drop(tenant);
    settle().await;
    assert_eq!(hub.subscribers(), 0, "the task ended with the last handle");
}
