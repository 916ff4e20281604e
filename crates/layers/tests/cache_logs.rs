//! What the cache logs when it serves a stale value. A binary of its own:
//! `tracing` caches per call site whether anyone listens, so a test that
//! installs a subscriber must not share its process with other tests that
//! reach the same call site first.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::fixtures::LogCapture;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_layers::CacheLayer;

async fn text(store: &dyn CredentialStore, name: &str) -> Option<String> {
    let key = CredentialKey::new(name).expect("valid key");
    store.get(&key).await.expect("get").map(|c| c.value.expose_str().expect("text").to_owned())
}

#[tokio::test(start_paused = true)]
async fn serving_stale_is_logged_once_per_read_without_the_value() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockStore::new(StoreId::new("backend").expect("valid id"));
    let key = CredentialKey::new("db-password").expect("valid key");
    mock.set(&key, &SecretValue::from("hunter2-very-secret"), &Metadata::new()).await.expect("set");
    mock.set_latency(Duration::from_millis(10));
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(10)).with_revalidate(false);
    let cached = layer.build(Arc::new(mock.clone()));
    text(&*cached, "db-password").await;
    tokio::time::advance(Duration::from_secs(11)).await;
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    let reads = (0..5).map(|_| text(&*cached, "db-password"));
    let values = futures::future::join_all(reads).await;
    assert!(values.iter().all(|v| v.as_deref() == Some("hunter2-very-secret")));
    assert_eq!(cached.stats().stale_served, 5, "every stale answer is counted");

    let logged = logs.text();
    let lines: Vec<&str> = logged.lines().filter(|l| l.contains("stale")).collect();
    assert_eq!(lines.len(), 1, "one warning for the five callers of one read: {logged}");
    assert!(
        lines[0].contains("WARN") && lines[0].contains("db-password") && lines[0].contains("backend"),
        "{logged}"
    );
    assert!(!logged.contains("hunter2"), "the value was logged: {logged}");
}

#[tokio::test(start_paused = true)]
async fn a_lost_feed_is_logged_once_as_a_fall_back_to_the_ttl_and_its_restoration_at_info() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = MockStore::new(StoreId::new("shared-backend").expect("valid id"))
        .with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true));
    let cached = CacheLayer::new().build(Arc::new(mock.clone()));
    text(&*cached, "k").await;
    assert!(cached.stats().feed_live);
    mock.change_hub().lost("connection reset by peer");
    mock.change_hub().lost("connection reset by peer");
    mock.change_hub().restored();
    for _ in 0..100 {
        if cached.stats().feed_live && cached.stats().feed_lost == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let stats = cached.stats();
    assert_eq!((stats.feed_lost, stats.feed_live), (1, true), "{stats:?}");

    let logged = logs.text();
    let lost: Vec<&str> = logged.lines().filter(|l| l.contains("change feed is lost")).collect();
    assert_eq!(lost.len(), 1, "one warning per loss: {logged}");
    assert!(lost[0].contains("WARN") && lost[0].contains("falls back to its TTL"), "{logged}");
    assert!(lost[0].contains("shared-backend") && lost[0].contains("connection reset by peer"), "{logged}");
    let restored: Vec<&str> = logged.lines().filter(|l| l.contains("change feed is restored")).collect();
    assert_eq!(restored.len(), 1, "{logged}");
    assert!(restored[0].contains("INFO"), "{logged}");
}

#[tokio::test]
async fn a_value_served_from_the_durable_tier_is_logged_with_key_and_age_never_the_value() {
    let logs = LogCapture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let clock = credstore_core::ManualClock::starting_now();
    let mock = MockStore::new(StoreId::new("backend").expect("valid id")).with_clock(Arc::new(clock.clone()));
    let key = CredentialKey::new("db-password").expect("valid key");
    mock.set(&key, &SecretValue::from("hunter2-very-secret"), &Metadata::new()).await.expect("set");
    let tier: Arc<dyn CredentialStore> =
        Arc::new(credstore_memory::MemoryStore::new(StoreId::new("cache-file").expect("valid id")));
    let layer = CacheLayer::new().with_ttl(Duration::from_secs(60)).with_max_stale(Duration::from_secs(600));
    let first = layer.durable(Arc::clone(&tier)).build(Arc::new(mock.clone()));
    text(&*first, "db-password").await;
    first.flush_durable().await;
    drop(first);

    clock.advance(Duration::from_secs(90));
    let restarted = layer.durable(Arc::clone(&tier)).build(Arc::new(mock.clone()));
    mock.fail_next(1, Fault::Unavailable);
    assert_eq!(text(&*restarted, "db-password").await.as_deref(), Some("hunter2-very-secret"));
    let logged = logs.text();
    let served: Vec<&str> = logged.lines().filter(|l| l.contains("from the durable cache")).collect();
    assert_eq!(served.len(), 1, "{logged}");
    assert!(served[0].contains("WARN") && served[0].contains("db-password"), "{logged}");
    assert!(
        served[0].contains("age_ms=90000") && served[0].contains("cache-file"),
        "the age and the tier: {logged}"
    );

    clock.advance(Duration::from_secs(600));
    let again = layer.durable(tier).build(Arc::new(mock.clone()));
    mock.fail_next(1, Fault::Unavailable);
    assert!(again.get(&key).await.is_err(), "past the TTL plus max_stale");
    let logged = logs.text();
    assert!(
        logged
            .lines()
            .any(|l| l.contains("WARN") && l.contains("past max_stale") && l.contains("age_ms=690000")),
        "{logged}"
    );
    assert!(!logged.contains("hunter2"), "the value was logged: {logged}");
}
