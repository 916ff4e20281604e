//! The cache's durable tier, an encrypted SQLite store: what it keeps, when
//! it serves it (the store down, within max_stale, before expiry), and what
//! removes it. Ages are the mock store's `ManualClock`, which the cache dates
//! its durable entries by; a "restart" is a new cache over a reopened tier.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{
    Clock, CredentialStore, CredentialStoreExt, Error, ManualClock, Metadata, Namespace, Retention,
    SecretValue, SetOptions, StoreId,
};
use credstore_layers::{CacheLayer, CachedStore, DURABLE_NAMESPACE};
use credstore_memory::MemoryStore;
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

const TTL: Duration = Duration::from_secs(60);
const MAX_STALE: Duration = Duration::from_secs(3600);

/// A local encrypted SQLite file, as a deployment gives the cache.
struct Tier {
    dir: tempfile::TempDir,
    key: MasterKey,
}

impl Tier {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temporary directory"), key: MasterKey::generate() }
    }

    /// Opens the file (again): what a restarted process does.
    async fn open(&self) -> Arc<dyn CredentialStore> {
        let config = SqliteConfig::new(self.dir.path().join("cache.db"))
            .master_key(self.key.clone())
            .retention(Retention::NONE);
        Arc::new(
            SqliteStore::open(StoreId::new("cache-file").expect("id"), config).await.expect("open the tier"),
        )
    }

    /// The tier's entries of the mock store `backend`'s root namespace.
    async fn entries(&self) -> Arc<dyn CredentialStore> {
        let ns = Namespace::new(format!("{DURABLE_NAMESPACE}/backend")).expect("namespace");
        self.open().await.with_namespace(&ns).expect("namespace")
    }
}

fn layer() -> CacheLayer {
    CacheLayer::new().with_ttl(TTL).with_max_stale(MAX_STALE)
}

fn mock(clock: &ManualClock) -> MockStore {
    MockStore::new(StoreId::new("backend").expect("valid id"))
        .with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_expiry(true))
        .with_clock(Arc::new(clock.clone()))
}

async fn cache(mock: &MockStore, tier: &Tier) -> Arc<CachedStore> {
    layer().durable(tier.open().await).build(Arc::new(mock.clone()))
}

async fn put(store: &dyn CredentialStore, name: &str, value: &str) {
    let mut metadata = Metadata::new();
    metadata.insert("owner", "payments").expect("metadata");
    store.set(&key(name), &SecretValue::from(value), &metadata).await.expect("set");
}

/// Reads `name` through a fresh cache (filling the tier), and drops it.
async fn read_once(mock: &MockStore, tier: &Tier, name: &str) {
    let cached = cache(mock, tier).await;
    cached.get(&key(name)).await.expect("get").expect("present");
    cached.flush_durable().await;
    assert_eq!(cached.stats().durable_written, 1, "{:?}", cached.stats());
}

#[tokio::test]
async fn after_a_restart_a_value_is_served_from_the_durable_tier_while_the_store_is_unavailable() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    put(&mock, "db-password", "hunter2").await;
    let original = mock.get(&key("db-password")).await.expect("get").expect("present");
    read_once(&mock, &tier, "db-password").await;

    // The process restarts (a new cache over the reopened file); the store is down.
    clock.advance(TTL + MAX_STALE - Duration::from_secs(1));
    let cached = cache(&mock, &tier).await;
    mock.reset_calls();
    mock.fail_next(100, Fault::Unavailable); // every call
    let served =
        cached.get(&key("db-password")).await.expect("served from the durable tier").expect("present");
    assert_eq!(served.value.expose_str().expect("text"), "hunter2");
    assert_eq!(
        (
            &served.key,
            &served.metadata,
            &served.version,
            served.created_at,
            served.updated_at,
            served.expires_at
        ),
        (
            &original.key,
            &original.metadata,
            &original.version,
            original.created_at,
            original.updated_at,
            original.expires_at
        ),
        "the credential exactly as the store answered it"
    );
    let stats = cached.stats();
    assert_eq!((stats.durable_served, stats.entries), (1, 1), "counted, and put in memory: {stats:?}");

    // The next read asks the store again and is served stale from memory.
    let again = cached.get(&key("db-password")).await.expect("served stale").expect("present");
    assert_eq!(again.version, original.version);
    let stats = cached.stats();
    assert_eq!((stats.durable_served, stats.stale_served), (1, 1), "{stats:?}");
    assert_eq!(mock.total_calls(), 2, "each read after the restart asked the store first");
}

#[tokio::test]
async fn a_durable_value_is_never_served_past_the_ttl_plus_max_stale_after_it_was_fetched() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    put(&mock, "k", "v").await;
    read_once(&mock, &tier, "k").await;

    clock.advance(TTL + MAX_STALE);
    let cached = cache(&mock, &tier).await;
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    let err = cached.get(&key("k")).await.expect_err("too old: the store's error");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(err.store().map(StoreId::as_str), Some("backend"), "the store's own error: {err:?}");
    assert_eq!((cached.stats().durable_served, cached.stats().entries), (0, 0));
}

#[tokio::test]
async fn a_durable_value_is_never_served_past_the_credentials_expiry() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    let expires_at = clock.now() + Duration::from_secs(600);
    let options = SetOptions::new().with_expires_at(Some(expires_at));
    mock.set_opts(&key("k"), &SecretValue::from("v"), &Metadata::new(), &options).await.expect("set");
    read_once(&mock, &tier, "k").await;

    clock.set(expires_at);
    let cached = cache(&mock, &tier).await;
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    let err = cached.get(&key("k")).await.expect_err("expired, though within max_stale");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_eq!(cached.stats().durable_served, 0);
}

#[tokio::test]
async fn errors_other_than_unavailable_are_never_masked_by_the_durable_tier() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    put(&mock, "k", "v").await;
    read_once(&mock, &tier, "k").await;

    let cached = cache(&mock, &tier).await;
    for fault in [Fault::PermissionDenied, Fault::Conflict, Fault::Backend] {
        mock.fail_next_op(Op::Get, 1, fault);
        let err = cached.get(&key("k")).await.expect_err("the store's answer stands");
        let expected = match fault {
            Fault::PermissionDenied => matches!(err, Error::PermissionDenied { .. }),
            Fault::Conflict => matches!(err, Error::Conflict { .. }),
            _ => matches!(err, Error::Backend { .. }),
        };
        assert!(expected, "{fault:?} came back as {err:?}");
    }
    assert_eq!(cached.stats().durable_served, 0);
}

#[tokio::test]
async fn the_tier_holds_one_envelope_per_key_under_the_cache_namespace() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    put(&mock, "k", "the-value").await;
    read_once(&mock, &tier, "k").await;

    let entries = tier.entries().await;
    let envelope = entries.get(&key("k")).await.expect("get").expect("one envelope");
    let bytes = envelope.value.expose_secret();
    assert_eq!(&bytes[..4], b"CSC\x01", "the envelope's magic");
    assert!(bytes.ends_with(b"the-value"), "the value comes last");
    assert!(tier.open().await.get(&key("k")).await.expect("get").is_none(), "not in the tier's root");
}

#[tokio::test]
async fn writes_and_deletes_through_the_cache_remove_the_durable_entry() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    put(&mock, "written", "old").await;
    put(&mock, "deleted", "old").await;
    let cached = cache(&mock, &tier).await;
    for name in ["written", "deleted"] {
        cached.get(&key(name)).await.expect("get");
    }
    cached.flush_durable().await;
    let entries = tier.entries().await;
    assert!(entries.get(&key("written")).await.expect("get").is_some());

    put(&*cached, "written", "new").await;
    cached.delete(&key("deleted")).await.expect("delete");
    for name in ["written", "deleted"] {
        assert!(entries.get(&key(name)).await.expect("get").is_none(), "{name}: gone when the call returns");
    }
    cached.flush_durable().await;
    drop(cached);

    // After a restart with the store down, neither old value comes back.
    let cached = cache(&mock, &tier).await;
    mock.fail_next_op(Op::Get, 2, Fault::Unavailable);
    for name in ["written", "deleted"] {
        let err = cached.get(&key(name)).await.expect_err("nothing to serve");
        assert!(matches!(err, Error::Unavailable { .. }), "{name}: {err:?}");
    }
}

#[tokio::test]
async fn a_key_found_absent_is_removed_from_the_durable_tier() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    put(&mock, "k", "v").await;
    let cached = cache(&mock, &tier).await;
    cached.get(&key("k")).await.expect("get");
    cached.flush_durable().await;
    mock.delete(&key("k")).await.expect("deleted by another writer");
    assert!(cached.refresh(&key("k")).await.expect("refresh").is_none());
    cached.flush_durable().await;
    assert!(tier.entries().await.get(&key("k")).await.expect("get").is_none());
    assert_eq!(cached.stats().durable_written, 2, "written, then removed");
}

#[tokio::test]
async fn another_writers_change_reported_by_the_feed_removes_the_durable_entry() {
    let memory = MemoryStore::new(StoreId::new("backend").expect("valid id"));
    let tier = Tier::new();
    put(&memory, "k", "v1").await;
    let cached = layer().durable(tier.open().await).build(Arc::new(memory.clone()));
    cached.get(&key("k")).await.expect("get");
    cached.flush_durable().await;
    let entries = tier.entries().await;
    assert!(entries.get(&key("k")).await.expect("get").is_some());

    put(&memory, "k", "v2").await; // not through the cache
    for _ in 0..1000 {
        if cached.stats().feed_invalidations == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(cached.stats().feed_invalidations, 1, "{:?}", cached.stats());
    cached.flush_durable().await;
    assert!(
        entries.get(&key("k")).await.expect("get").is_none(),
        "the superseded value is gone from the tier"
    );
}

#[tokio::test]
async fn a_handles_namespace_has_entries_of_its_own_in_the_tier() {
    let clock = ManualClock::starting_now();
    let (mock, tier) = (mock(&clock), Tier::new());
    let tenant = Namespace::new("tenant_1").expect("namespace");
    put(&*mock.with_namespace(&tenant).expect("ns"), "k", "tenant value").await;
    put(&mock, "k", "root value").await;
    let cached = cache(&mock, &tier).await;
    cached.cached_namespace(&tenant).expect("ns").get(&key("k")).await.expect("get");
    cached.flush_durable().await;
    drop(cached);

    let cached = cache(&mock, &tier).await;
    mock.fail_next_op(Op::Get, 2, Fault::Unavailable);
    let root = cached.get(&key("k")).await;
    assert!(matches!(root, Err(Error::Unavailable { .. })), "the root's key was never read: {root:?}");
    let served = cached.cached_namespace(&tenant).expect("ns").get(&key("k")).await.expect("served");
    assert_eq!(served.expect("present").value.expose_str().expect("text"), "tenant value");
}

#[tokio::test]
async fn without_a_durable_tier_nothing_survives_a_restart() {
    let clock = ManualClock::starting_now();
    let mock = mock(&clock);
    put(&mock, "k", "v").await;
    let first = layer().build(Arc::new(mock.clone()));
    first.get(&key("k")).await.expect("get");
    drop(first);
    let cached = layer().build(Arc::new(mock.clone()));
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert!(matches!(cached.get(&key("k")).await, Err(Error::Unavailable { .. })));
}
