//! The change feed over LISTEN/NOTIFY: what one instance writes, another
//! instance's subscribers hear; a lost connection says so and recovers.

use std::time::Duration;

use credstore_core::{
    Change, ChangeFeed, CredentialKey, CredentialStore, CredentialStoreExt, Error, FeedEvent, Metadata,
    Namespace, SecretValue,
};
use credstore_postgres::{MasterKey, PostgresStore};
use credstore_test_servers::postgres::Postgres;

use crate::util::{config, id, open, pg};

const WAIT: Duration = Duration::from_secs(10);

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap()
}

async fn next(feed: &mut ChangeFeed) -> FeedEvent {
    tokio::time::timeout(WAIT, feed.next()).await.expect("an event in time").expect("the feed goes on")
}

async fn next_change(feed: &mut ChangeFeed) -> Change {
    match next(feed).await {
        FeedEvent::Changed(c) => c,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_through_one_instance_reaches_the_subscribers_of_another() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("feed_replicas");
    let kek = MasterKey::generate();
    let (a, b) = (open(pg, &schema, &kek).await, open(pg, &schema, &kek).await);
    assert!(b.info().capabilities().change_feed);
    let tenant = Namespace::new("tenant").unwrap();
    let b_tenant = b.with_namespace(&tenant).unwrap();
    let mut feed = b_tenant.subscribe().await.unwrap();
    let mut own = a.subscribe().await.unwrap();
    let a_tenant = a.with_namespace(&tenant).unwrap();
    // Another namespace first: not reported to the tenant's feed.
    a.set(&key("elsewhere"), &SecretValue::from("x"), &Metadata::new()).await.unwrap();
    let nested = a_tenant.with_namespace(&Namespace::new("team").unwrap()).unwrap();
    let written = nested.set(&key("api"), &SecretValue::from("secret"), &Metadata::new()).await.unwrap();
    let change = next_change(&mut feed).await;
    assert_eq!(change.namespace.as_str(), "team", "relative to the subscribed handle");
    // Reported once committed: a read made after the event sees it.
    let b_nested = b_tenant.with_namespace(&Namespace::new("team").unwrap()).unwrap();
    assert_eq!(b_nested.version(&key("api")).await.unwrap(), Some(written.version.clone()));
    assert_eq!((&change.key, &change.version), (&key("api"), &Some(written.version.clone())));
    assert!(nested.delete(&key("api")).await.unwrap());
    let gone = next_change(&mut feed).await;
    assert_eq!((&gone.key, &gone.version), (&key("api"), &None));
    // The writer's own subscriber hears its writes, in order, on the same path.
    let first = next_change(&mut own).await;
    assert_eq!((first.namespace.is_root(), first.key), (true, key("elsewhere")));
    assert_eq!(next_change(&mut own).await.namespace.as_str(), "tenant/team");
    assert_eq!(next_change(&mut own).await.version, None);
    // Never a value.
    assert!(!format!("{change:?} {gone:?}").contains("secret\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_of_postgres_is_reported_as_lost_then_restored_and_later_changes_arrive() {
    let Some(own) = tokio::task::spawn_blocking(Postgres::start).await.unwrap() else { return };
    let own = std::sync::Arc::new(own);
    let kek = MasterKey::generate();
    let schema = "feed_restart";
    let store = open(&own, schema, &kek).await;
    let mut feed = store.subscribe().await.unwrap();
    let restarted = own.clone();
    tokio::task::spawn_blocking(move || restarted.restart()).await.unwrap();
    assert!(matches!(next(&mut feed).await, FeedEvent::Lost { .. }));
    assert_eq!(next(&mut feed).await, FeedEvent::Restored);
    // The pool's connections died with the server; a write may need a retry
    // of its own while the pool replaces them.
    let mut written = None;
    for _ in 0..5 {
        match store.set(&key("after"), &SecretValue::from("v"), &Metadata::new()).await {
            Ok(o) => {
                written = Some(o);
                break;
            }
            Err(e) if e.is_retriable() => continue,
            Err(e) => panic!("{e}"),
        }
    }
    let written = written.expect("the store serves again");
    let change = next_change(&mut feed).await;
    assert_eq!((change.key, change.version), (key("after"), Some(written.version)));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_feed_ends_when_the_store_is_dropped() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("feed_end");
    let store = open(pg, &schema, &MasterKey::generate()).await;
    let handle = store.with_namespace(&Namespace::new("x").unwrap()).unwrap();
    let mut feed = handle.subscribe().await.unwrap();
    drop(store);
    drop(handle);
    let end = tokio::time::timeout(WAIT, feed.next()).await.expect("the feed ends in time");
    assert_eq!(end, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_feed_off_subscribe_is_unsupported_and_declared_so() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("feed_off");
    let store =
        PostgresStore::open(id(&schema), config(pg, &schema, &MasterKey::generate()).change_feed(false))
            .await
            .unwrap();
    assert!(!store.info().capabilities().change_feed);
    assert!(matches!(store.subscribe().await.unwrap_err(), Error::Unsupported { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_feed_taken_after_writes_returned_does_not_report_them() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("feed_before");
    let store = open(pg, &schema, &MasterKey::generate()).await;
    // The listener runs already (another subscriber), so notifications of
    // the writes below would reach it if nothing held them apart.
    let _first = store.subscribe().await.unwrap();
    for i in 0..50 {
        store.set(&key(&format!("before-{i}")), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    }
    let mut feed = store.subscribe().await.unwrap();
    let marker = store.set(&key("after"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let change = next_change(&mut feed).await;
    assert_eq!(
        (change.key, change.version),
        (key("after"), Some(marker.version)),
        "a write from before was reported"
    );
}
