//! The read-through cache against the suite's scriptable mock store: what
//! reaches the backend, when, and what the counters say. Time is tokio's
//! paused clock, so TTLs and staleness are exact.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::fixtures::{key, ns};
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId, Version};
use credstore_layers::{CacheLayer, CacheStats, CachedStore};

fn mock() -> MockStore {
    MockStore::new(StoreId::new("backend").expect("valid id"))
}

fn cache_over(mock: &MockStore, layer: CacheLayer) -> Arc<CachedStore> {
    layer.build(Arc::new(mock.clone()))
}

async fn put(store: &dyn CredentialStore, name: &str, value: &str) -> Version {
    store.set(&key(name), &SecretValue::from(value), &Metadata::new()).await.expect("set").version
}

async fn text(store: &dyn CredentialStore, name: &str) -> Option<String> {
    store.get(&key(name)).await.expect("get").map(|c| c.value.expose_str().expect("text").to_owned())
}

fn advance(by: Duration) -> impl std::future::Future<Output = ()> {
    tokio::time::advance(by)
}

#[tokio::test(start_paused = true)]
async fn defaults_are_those_of_the_issue() {
    let layer = CacheLayer::new();
    assert_eq!(layer.ttl(), Duration::from_secs(300));
    assert_eq!(layer.max_entries(), 1000);
    assert_eq!(layer.negative_ttl(), Duration::ZERO, "negative caching is off by default");
    assert!(layer.revalidate());
}

#[tokio::test(start_paused = true)]
async fn max_stale_defaults_to_the_ttl_and_at_most_a_minute() {
    assert_eq!(CacheLayer::new().max_stale(), Duration::from_secs(60), "300 s TTL: capped at 60 s");
    let short = CacheLayer::new().with_ttl(Duration::from_secs(10));
    assert_eq!(short.max_stale(), Duration::from_secs(10), "never more past the TTL than the TTL");
    let chosen = short.with_max_stale(Duration::from_secs(600));
    assert_eq!(chosen.max_stale(), Duration::from_secs(600), "an explicit setting wins");
    assert_eq!(chosen.with_ttl(Duration::from_secs(1)).max_stale(), Duration::from_secs(600));
    let off = CacheLayer::new().with_max_stale(Duration::ZERO);
    assert_eq!(off.max_stale(), Duration::ZERO);
}

/// Lets the cache's timer task run after the clock moved.
async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn expired_values_are_dropped_on_time_while_nobody_calls_the_cache() {
    let mock = mock();
    put(&mock, "a", "v1").await;
    put(&mock, "b", "v2").await;
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(10)).with_max_stale(Duration::from_secs(5));
    let cached = cache_over(&mock, layer);
    text(&*cached, "a").await;
    advance(Duration::from_secs(2)).await;
    text(&*cached, "b").await;
    assert_eq!(cached.stats().entries, 2);

    // No call to the cache from here on: only the clock moves.
    advance(Duration::from_millis(12_990)).await; // 14.99 s: `a` is kept until 15 s, `b` until 17 s
    settle().await;
    assert_eq!(cached.stats().entries, 2, "nothing is dropped before its time");
    advance(Duration::from_millis(20)).await; // 15.01 s
    settle().await;
    let stats = cached.stats();
    assert_eq!((stats.entries, stats.expirations), (1, 1), "`a` is gone within a second: {stats:?}");
    advance(Duration::from_secs(2)).await; // 17.01 s: `b` too
    settle().await;
    let stats = cached.stats();
    assert_eq!((stats.entries, stats.expirations), (0, 2), "{stats:?}");

    // An entry filed later than the timer's next deadline, and one earlier.
    text(&*cached, "a").await;
    let short = CacheLayer::new().with_ttl(Duration::from_secs(1)).with_max_stale(Duration::ZERO);
    let other = cache_over(&mock, short);
    text(&*other, "b").await;
    advance(Duration::from_millis(1_010)).await;
    settle().await;
    assert_eq!(other.stats().entries, 0, "each cache keeps its own deadlines");
    assert_eq!(cached.stats().entries, 1);
}

#[tokio::test(start_paused = true)]
async fn the_timer_task_exists_only_while_the_cache_holds_entries_and_ends_with_it() {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let mock = mock();
    put(&mock, "a", "v1").await;
    let cached = cache_over(&mock, CacheLayer::new().with_ttl(Duration::from_secs(10)));
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before, "no task before anything is cached");
    text(&*cached, "a").await;
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before + 1, "one timer once an entry is cached");
    drop(cached);
    settle().await;
    assert_eq!(metrics.num_alive_tasks(), before, "the timer ends with the last handle");
}

#[tokio::test(start_paused = true)]
async fn hits_never_reach_the_backend() {
    let mock = mock();
    put(&mock, "api-key", "v1").await;
    let cached = cache_over(&mock, CacheLayer::new());
    mock.reset_calls();

    for _ in 0..10 {
        assert_eq!(text(&*cached, "api-key").await.as_deref(), Some("v1"));
    }
    assert!(cached.has(&key("api-key")).await.expect("has"));
    assert!(cached.version(&key("api-key")).await.expect("version").is_some());
    assert_eq!(mock.calls(Op::Get), 1, "only the first read reaches the backend");
    assert_eq!(mock.total_calls(), 1, "has and version were answered from the cache");
    let stats = cached.stats();
    assert_eq!((stats.hits, stats.misses, stats.loads, stats.entries), (11, 1, 1, 1), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let mock = mock();
    put(&mock, "k", "v1").await;
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(10)).with_max_stale(Duration::ZERO);
    let cached = cache_over(&mock, layer);
    mock.reset_calls();

    text(&*cached, "k").await;
    advance(Duration::from_millis(9_999)).await;
    text(&*cached, "k").await;
    assert_eq!(mock.calls(Op::Get), 1, "still fresh just before the TTL");
    advance(Duration::from_millis(1)).await;
    cached.purge_expired();
    assert_eq!(cached.stats().entries, 0, "an expired entry without staleness is dropped at once");
    assert_eq!(cached.stats().expirations, 1);
    put(&mock, "k", "v2").await;
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v2"), "after the TTL the backend is read");
    assert_eq!(mock.calls(Op::Get), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_misses_make_one_backend_call() {
    let mock = mock();
    put(&mock, "hot", "v").await;
    put(&mock, "other", "w").await;
    mock.set_latency(Duration::from_millis(50));
    let cached = cache_over(&mock, CacheLayer::new());
    mock.reset_calls();

    let reads = (0..100).map(|_| {
        let cached = Arc::clone(&cached);
        async move { text(&*cached, "hot").await }
    });
    let other = text(&*cached, "other");
    let (values, other) = futures::future::join(futures::future::join_all(reads), other).await;
    assert!(values.iter().all(|v| v.as_deref() == Some("v")), "{values:?}");
    assert_eq!(other.as_deref(), Some("w"));
    assert_eq!(mock.calls(Op::Get), 2, "one read per key, however many callers missed it");
    let stats = cached.stats();
    assert_eq!((stats.misses, stats.loads), (101, 2), "{stats:?}");

    // Concurrent misses of a missing key share one read too.
    mock.reset_calls();
    let missing = (0..100).map(|_| {
        let cached = Arc::clone(&cached);
        async move { text(&*cached, "absent").await }
    });
    assert!(futures::future::join_all(missing).await.iter().all(Option::is_none));
    assert_eq!(mock.calls(Op::Get), 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_gives_up_does_not_cancel_the_read_for_others() {
    let mock = mock();
    put(&mock, "k", "v").await;
    mock.set_latency(Duration::from_millis(100));
    let cached = cache_over(&mock, CacheLayer::new());
    mock.reset_calls();

    let impatient = tokio::time::timeout(Duration::from_millis(10), text(&*cached, "k"));
    let patient = text(&*cached, "k");
    let (gave_up, value) = futures::future::join(impatient, patient).await;
    assert!(gave_up.is_err(), "the impatient read timed out");
    assert_eq!(value.as_deref(), Some("v"));
    assert_eq!(mock.calls(Op::Get), 1, "the patient caller went on with the same read");
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v"));
    assert_eq!(mock.calls(Op::Get), 1, "and its answer was cached");
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_serves_up_to_the_maximum_staleness_and_never_past_it() {
    let mock = mock();
    put(&mock, "k", "v1").await;
    let layer = CacheLayer::new()
        .with_ttl(Duration::from_secs(10))
        .with_max_stale(Duration::from_secs(20))
        .with_revalidate(false);
    let cached = cache_over(&mock, layer);
    text(&*cached, "k").await;

    advance(Duration::from_secs(15)).await;
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v1"), "stale value served on a retriable error");
    advance(Duration::from_secs(14)).await; // 29 s: 19 s past the TTL
    mock.fail_next_op(Op::Get, 1, Fault::Conflict);
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v1"), "still within the staleness allowed");
    assert_eq!(cached.stats().stale_served, 2);

    advance(Duration::from_secs(1)).await; // 30 s: the staleness is used up
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    let err = cached.get(&key("k")).await.expect_err("never served past the maximum staleness");
    assert!(err.is_retriable(), "{err:?}");
    assert_eq!(cached.stats().stale_served, 2);
    assert_eq!(cached.stats().entries, 0, "the entry was dropped");
}

#[tokio::test(start_paused = true)]
async fn errors_that_are_not_retriable_are_never_masked() {
    let mock = mock();
    put(&mock, "k", "v1").await;
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(10)).with_revalidate(false);
    let cached = cache_over(&mock, layer);
    text(&*cached, "k").await;
    advance(Duration::from_secs(11)).await;
    mock.fail_next_op(Op::Get, 1, Fault::PermissionDenied);
    let err = cached.get(&key("k")).await.expect_err("a refusal is not served around");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert_eq!(cached.stats().entries, 0, "and it drops the entry");
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert!(cached.get(&key("k")).await.is_err(), "nothing stale is left to serve");
    assert_eq!(cached.stats().stale_served, 0);
}

#[tokio::test(start_paused = true)]
async fn revalidation_keeps_the_value_when_the_version_did_not_change() {
    let mock = mock();
    put(&mock, "k", "v1").await;
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(10)).with_max_stale(Duration::from_secs(60));
    let cached = cache_over(&mock, layer);
    mock.reset_calls();
    text(&*cached, "k").await;

    advance(Duration::from_secs(11)).await;
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v1"));
    assert_eq!((mock.calls(Op::Version), mock.calls(Op::Get)), (1, 1), "a version check, no second read");
    assert_eq!(cached.stats().revalidations, 1);
    advance(Duration::from_secs(9)).await;
    text(&*cached, "k").await;
    assert_eq!(mock.total_calls(), 2, "fresh again for a whole TTL after revalidating");

    // Another writer changes the key behind the cache: the version differs,
    // so the value is read again.
    put(&mock, "k", "v2").await;
    advance(Duration::from_secs(2)).await;
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v2"));
    assert_eq!((mock.calls(Op::Version), mock.calls(Op::Get)), (2, 2));
    assert_eq!(cached.stats().revalidations, 1);

    // A key deleted behind the cache is seen as missing on revalidation.
    mock.delete(&key("k")).await.expect("delete");
    advance(Duration::from_secs(11)).await;
    assert_eq!(text(&*cached, "k").await, None);
    assert_eq!(mock.calls(Op::Get), 2, "the version check was enough");
}

#[tokio::test(start_paused = true)]
async fn no_hit_across_namespaces() {
    let mock = mock();
    put(&*mock.with_namespace(&ns("tenant-a")).expect("ns"), "api-key", "value-a").await;
    put(&*mock.with_namespace(&ns("tenant-b")).expect("ns"), "api-key", "value-b").await;
    let root = cache_over(&mock, CacheLayer::new());
    let a = root.with_namespace(&ns("tenant-a")).expect("ns");
    let b = root.with_namespace(&ns("tenant-b")).expect("ns");
    mock.reset_calls();

    assert_eq!(text(&*a, "api-key").await.as_deref(), Some("value-a"));
    assert_eq!(text(&*b, "api-key").await.as_deref(), Some("value-b"), "b never hits a's entry");
    assert_eq!(text(&*root, "api-key").await, None, "the root never hits a namespace's entry");
    assert_eq!(mock.calls(Op::Get), 3, "each namespace missed on its own");
    assert_eq!(text(&*a, "api-key").await.as_deref(), Some("value-a"));
    assert_eq!(text(&*b, "api-key").await.as_deref(), Some("value-b"));
    assert_eq!(mock.calls(Op::Get), 3, "and then hits its own entry");

    // Nested handles have caches of their own too.
    let nested = a.with_namespace(&ns("tenant-b")).expect("ns");
    assert_eq!(nested.namespace().as_str(), "tenant-a/tenant-b");
    assert_eq!(text(&*nested, "api-key").await, None);

    let typed = root.cached_namespace(&ns("tenant-a")).expect("ns");
    assert_eq!((typed.namespace_entries(), root.namespace_entries()), (1, 0));
    let total = typed.stats();
    assert_eq!((total.hits, total.misses, total.entries), (2, 4, 2), "one cache, every namespace: {total:?}");
    typed.clear();
    assert_eq!((typed.namespace_entries(), root.stats().entries), (0, 1), "clear forgets one namespace");
    root.clear_all();
    assert_eq!(root.stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn a_namespace_keeps_its_entries_when_its_handles_are_dropped() {
    let mock = mock();
    put(&*mock.with_namespace(&ns("tenant")).expect("ns"), "k", "v").await;
    let root = cache_over(&mock, CacheLayer::new());
    mock.reset_calls();
    for _ in 0..3 {
        // A server makes one handle per request.
        let handle = root.with_namespace(&ns("tenant")).expect("ns");
        assert_eq!(text(&*handle, "k").await.as_deref(), Some("v"));
    }
    assert_eq!(mock.calls(Op::Get), 1);
}

#[tokio::test(start_paused = true)]
async fn max_entries_bounds_all_namespaces_together() {
    let mock = mock();
    let root = cache_over(&mock, CacheLayer::new().with_max_entries(3));
    for tenant in ["t1", "t2", "t3", "t4", "t5"] {
        let handle = root.with_namespace(&ns(tenant)).expect("ns");
        put(&*handle, "k", tenant).await;
        text(&*handle, "k").await;
    }
    let stats = root.stats();
    assert_eq!((stats.entries, stats.evictions), (3, 2), "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn a_write_through_one_handle_is_read_back_at_once() {
    let mock = mock();
    let root = cache_over(&mock, CacheLayer::new());
    let one = root.with_namespace(&ns("app")).expect("ns");
    let other = root.with_namespace(&ns("app")).expect("ns");
    put(&*one, "k", "v1").await;
    assert_eq!(text(&*other, "k").await.as_deref(), Some("v1"));

    let version = put(&*one, "k", "v2").await;
    assert_eq!(text(&*other, "k").await.as_deref(), Some("v2"), "a write through one handle is seen at once");
    assert_eq!(text(&*one, "k").await.as_deref(), Some("v2"));
    assert_eq!(other.get(&key("k")).await.expect("get").expect("present").version, version);

    assert!(one.delete(&key("k")).await.expect("delete"));
    assert_eq!(text(&*other, "k").await, None, "a delete is seen at once");
}

#[tokio::test(start_paused = true)]
async fn conditional_writes_pass_their_condition_and_a_failed_one_invalidates() {
    let mock = mock();
    let first = put(&mock, "k", "v1").await;
    let cached = cache_over(&mock, CacheLayer::new());
    text(&*cached, "k").await;

    // Another writer changes the key behind the cache.
    put(&mock, "k", "v2").await;
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("v1"), "the cache does not know yet");
    let err = cached
        .replace(&key("k"), &SecretValue::from("v3"), &Metadata::new(), &first)
        .await
        .expect_err("the backend checks the version it was given");
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    assert_eq!(
        text(&*cached, "k").await.as_deref(),
        Some("v2"),
        "the failed condition invalidated the entry"
    );

    let err = cached.create(&key("k"), &SecretValue::from("v4"), &Metadata::new()).await.expect_err("exists");
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    let current = cached.get(&key("k")).await.expect("get").expect("present");
    let outcome = cached
        .replace(&key("k"), &SecretValue::from("v5"), &Metadata::new(), &current.version)
        .await
        .expect("replace at the current version");
    let read = cached.get(&key("k")).await.expect("get").expect("present");
    assert_eq!((read.value.expose_str().expect("text"), &read.version), ("v5", &outcome.version));

    // A write that fails at the backend invalidates too: it may have landed.
    text(&*cached, "k").await;
    mock.fail_next_op(Op::Set, 1, Fault::Unavailable);
    assert!(cached.set(&key("k"), &SecretValue::from("v6"), &Metadata::new()).await.is_err());
    mock.reset_calls();
    text(&*cached, "k").await;
    assert_eq!(mock.calls(Op::Get), 1, "the entry was invalidated by the failed write");
}

#[tokio::test(start_paused = true)]
async fn a_read_under_way_during_a_write_does_not_put_its_answer_back() {
    let mock = mock();
    put(&mock, "k", "v1").await;
    mock.set_latency(Duration::from_millis(100));
    let cached = cache_over(&mock, CacheLayer::new());
    mock.reset_calls();

    let read = text(&*cached, "k");
    let invalidate = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        cached.invalidate(&key("k"));
    };
    let (value, ()) = futures::future::join(read, invalidate).await;
    assert_eq!(value.as_deref(), Some("v1"));
    assert_eq!(cached.stats().entries, 0, "the superseded read cached nothing");
    text(&*cached, "k").await;
    assert_eq!(mock.calls(Op::Get), 2);
}

#[tokio::test(start_paused = true)]
async fn least_recently_used_entries_are_evicted() {
    let mock = mock();
    for name in ["a", "b", "c"] {
        put(&mock, name, name).await;
    }
    let cached = cache_over(&mock, CacheLayer::new().with_max_entries(2));
    mock.reset_calls();
    text(&*cached, "a").await;
    text(&*cached, "b").await;
    text(&*cached, "a").await; // a is now more recent than b
    text(&*cached, "c").await; // evicts b
    assert_eq!(mock.calls(Op::Get), 3);
    let stats = cached.stats();
    assert_eq!((stats.evictions, stats.entries), (1, 2), "{stats:?}");
    text(&*cached, "a").await;
    assert_eq!(mock.calls(Op::Get), 3, "a stayed");
    text(&*cached, "b").await;
    assert_eq!(mock.calls(Op::Get), 4, "b was evicted");
}

#[tokio::test(start_paused = true)]
async fn eviction_follows_the_use_order_of_hits() {
    let mock = mock();
    for name in ["a", "b", "c", "d", "e", "f"] {
        put(&mock, name, name).await;
    }
    let cached = cache_over(&mock, CacheLayer::new().with_max_entries(3));
    for name in ["a", "b", "c"] {
        text(&*cached, name).await;
    }
    // Used since they were read: b, then a; c is now the least recently used.
    for _ in 0..3 {
        text(&*cached, "b").await;
    }
    assert!(cached.has(&key("a")).await.expect("has"), "a hit of has is a use too");
    mock.reset_calls();
    text(&*cached, "d").await; // evicts c
    text(&*cached, "e").await; // evicts b, now older than a
    assert_eq!(cached.stats().evictions, 2);
    text(&*cached, "a").await;
    assert_eq!(mock.calls(Op::Get), 2, "a, used last, stayed");
    text(&*cached, "c").await;
    text(&*cached, "b").await;
    assert_eq!(mock.calls(Op::Get), 4, "c and b were evicted, in that order");
    // Entries in other namespaces take part in one order.
    let other = cached.with_namespace(&ns("other")).expect("ns");
    put(&*other, "f", "f").await;
    text(&*cached, "b").await; // a hit: b is the most recent of this namespace
    text(&*other, "f").await; // evicts a (used before c and b)
    mock.reset_calls();
    text(&*cached, "b").await;
    text(&*cached, "c").await;
    assert_eq!(mock.calls(Op::Get), 0, "b and c stayed");
    text(&*cached, "a").await;
    assert_eq!(mock.calls(Op::Get), 1, "a was evicted for the other namespace's entry");
    assert_eq!(cached.stats().entries, 3);
}

#[tokio::test(start_paused = true)]
async fn misses_are_cached_only_when_asked() {
    let mock = mock();
    let plain = cache_over(&mock, CacheLayer::new());
    text(&*plain, "absent").await;
    text(&*plain, "absent").await;
    assert_eq!(mock.calls(Op::Get), 2, "negative caching is off by default");

    let negative = cache_over(&mock, CacheLayer::new().with_negative_ttl(Duration::from_secs(5)));
    mock.reset_calls();
    for _ in 0..5 {
        assert_eq!(text(&*negative, "absent").await, None);
    }
    assert!(!negative.has(&key("absent")).await.expect("has"));
    assert_eq!(mock.total_calls(), 1, "a missing key is remembered");
    advance(Duration::from_secs(5)).await;
    text(&*negative, "absent").await;
    assert_eq!(mock.calls(Op::Get), 2, "for the negative TTL only");
    put(&*negative, "absent", "now-here").await;
    assert_eq!(
        text(&*negative, "absent").await.as_deref(),
        Some("now-here"),
        "a write ends the memory of a miss"
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_and_clear() {
    let mock = mock();
    put(&mock, "a", "a1").await;
    put(&mock, "b", "b1").await;
    let cached = cache_over(&mock, CacheLayer::new());
    text(&*cached, "a").await;
    text(&*cached, "b").await;
    put(&mock, "a", "a2").await;
    mock.reset_calls();

    let refreshed = cached.refresh(&key("a")).await.expect("refresh").expect("present");
    assert_eq!(refreshed.value.expose_str().expect("text"), "a2");
    assert_eq!(text(&*cached, "a").await.as_deref(), Some("a2"));
    assert_eq!(mock.calls(Op::Get), 1, "refresh read the store once and cached the answer");

    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert!(cached.refresh(&key("a")).await.is_err(), "a refresh never serves a stale value");
    assert_eq!(
        text(&*cached, "a").await.as_deref(),
        Some("a2"),
        "and keeps the entry after a retriable error"
    );

    cached.clear();
    assert_eq!(cached.stats().entries, 0);
    mock.reset_calls();
    text(&*cached, "a").await;
    text(&*cached, "b").await;
    assert_eq!(mock.calls(Op::Get), 2, "cleared entries are read again");
}

#[tokio::test(start_paused = true)]
async fn counters_start_at_zero_and_the_debug_output_shows_no_value() {
    let mock = mock();
    put(&mock, "k", "very-secret-value").await;
    let cached = cache_over(&mock, CacheLayer::new());
    assert_eq!(cached.stats(), CacheStats::default());
    text(&*cached, "k").await;
    let debug = format!("{cached:?}");
    assert!(!debug.contains("very-secret-value"), "{debug}");
    assert!(debug.contains("CachedStore"), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn list_and_availability_pass_through() {
    let mock = mock();
    put(&mock, "a", "1").await;
    let cached = cache_over(&mock, CacheLayer::new());
    let page = cached.list(&credstore_core::ListOptions::new()).await.expect("list");
    assert_eq!(page.keys, vec![key("a")]);
    assert_eq!(mock.calls(Op::List), 1);
    mock.set_availability(credstore_core::Availability::down("maintenance"));
    assert!(!cached.check_availability().await.available);
    assert_eq!(cached.capabilities(), mock.capabilities());
    assert_eq!(cached.id(), mock.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_read_their_writes_under_concurrent_readers() {
    let mock = mock();
    let cached = cache_over(&mock, CacheLayer::new().with_max_entries(4));
    put(&*cached, "hot", "0").await;
    let mut tasks = Vec::new();
    for reader in 0..4 {
        let cached = Arc::clone(&cached);
        tasks.push(tokio::spawn(async move {
            for _ in 0..300 {
                let value = text(&*cached, "hot").await.expect("present");
                value.parse::<u32>().expect("a number");
                text(&*cached, &format!("cold-{reader}")).await;
            }
        }));
    }
    for writer in 0..4 {
        let cached = Arc::clone(&cached);
        tasks.push(tokio::spawn(async move {
            for i in 0..150 {
                let name = format!("own-{writer}");
                let value = format!("{writer}-{i}");
                put(&*cached, &name, &value).await;
                assert_eq!(text(&*cached, &name).await, Some(value), "a writer reads its own write");
                put(&*cached, "hot", &i.to_string()).await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("task");
    }
    let last = mock.get(&key("hot")).await.expect("get").expect("present");
    assert_eq!(
        cached.get(&key("hot")).await.expect("get").expect("present").version,
        last.version,
        "after the writes, the cache agrees with the store"
    );
    assert!(cached.stats().entries <= 4);
}

/// A mock that keeps versions and honours expiry by `clock`.
fn history_mock(clock: &credstore_core::ManualClock) -> MockStore {
    let caps = MockStore::DEFAULT_CAPABILITIES
        .with_versions(true)
        .with_recover_deleted(true)
        .with_expiry(true)
        .with_retention(credstore_core::Retention::versions(10));
    mock().with_capabilities(caps).with_clock(Arc::new(clock.clone()))
}

async fn put_expiring(store: &dyn CredentialStore, name: &str, at: std::time::SystemTime) -> Version {
    let opts = credstore_core::SetOptions::new().with_expires_at(Some(at));
    store
        .set_opts(&key(name), &SecretValue::from("short-lived"), &Metadata::new(), &opts)
        .await
        .expect("set")
        .version
}

#[tokio::test(start_paused = true)]
async fn a_cached_credential_is_served_until_its_expires_at_and_never_from_then_by_the_store_clock() {
    let clock = credstore_core::ManualClock::starting_now();
    let mock = history_mock(&clock);
    let cached = cache_over(&mock, CacheLayer::new().with_ttl(Duration::from_secs(300)));
    let at = credstore_core::Clock::now(&clock) + Duration::from_secs(30);
    let version = put_expiring(&*cached, "token", at).await;
    assert_eq!(text(&*cached, "token").await.as_deref(), Some("short-lived"));
    mock.reset_calls();
    clock.set(at - Duration::from_nanos(1));
    assert_eq!(text(&*cached, "token").await.as_deref(), Some("short-lived"), "a hit before expiry");
    assert_eq!(cached.version(&key("token")).await.expect("version"), Some(version));
    assert_eq!(mock.calls(Op::Get) + mock.calls(Op::Version), 0, "served from the cache until expiry");
    clock.set(at);
    assert_eq!(text(&*cached, "token").await, None, "get served an expired credential from the cache");
    assert!(!cached.has(&key("token")).await.expect("has"), "has answered from an expired entry");
    assert_eq!(cached.version(&key("token")).await.expect("version"), None, "version of an expired entry");
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_never_serves_an_expired_credential() {
    let clock = credstore_core::ManualClock::starting_now();
    let mock = history_mock(&clock);
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(10)).with_max_stale(Duration::from_secs(60));
    let cached = cache_over(&mock, layer);
    let at = credstore_core::Clock::now(&clock) + Duration::from_secs(30);
    put_expiring(&*cached, "token", at).await;
    assert!(text(&*cached, "token").await.is_some());
    advance(Duration::from_secs(11)).await;
    clock.set(at);
    mock.fail_next(2, Fault::Unavailable);
    let got = cached.get(&key("token")).await;
    assert!(matches!(got, Err(Error::Unavailable { .. })), "an expired value was served as stale: {got:?}");
    assert_eq!(cached.stats().stale_served, 0);
}

#[tokio::test(start_paused = true)]
async fn restore_and_purge_drop_the_cached_value() {
    let clock = credstore_core::ManualClock::starting_now();
    let mock = history_mock(&clock);
    let cached = cache_over(&mock, CacheLayer::new());
    let good = put(&*cached, "k", "good").await;
    let bad = put(&*cached, "k", "bad").await;
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("bad"));
    let opts = credstore_core::SetOptions::replace(bad);
    cached.restore(&key("k"), &good, &opts).await.expect("restore");
    assert_eq!(text(&*cached, "k").await.as_deref(), Some("good"), "the restore was not read back");
    assert!(cached.purge(&key("k"), &credstore_core::PurgeTarget::Key).await.expect("purge"));
    assert_eq!(text(&*cached, "k").await, None, "a purged value was served from the cache");
}

#[tokio::test(start_paused = true)]
async fn get_version_and_list_versions_always_go_to_the_store() {
    let clock = credstore_core::ManualClock::starting_now();
    let mock = history_mock(&clock);
    let cached = cache_over(&mock, CacheLayer::new());
    let v = put(&*cached, "k", "v").await;
    mock.reset_calls();
    for _ in 0..2 {
        assert!(cached.get_version(&key("k"), &v).await.expect("get_version").is_some());
        let page = cached.list_versions(&key("k"), &credstore_core::VersionListOptions::new()).await;
        assert_eq!(page.expect("list_versions").versions.len(), 1);
    }
    assert_eq!((mock.calls(Op::GetVersion), mock.calls(Op::ListVersions)), (2, 2));
}
