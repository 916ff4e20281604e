//! The change feed ([`CredentialStore::subscribe`]): every committed write
//! and delete of a handle's namespace, and of the namespaces nested in it,
//! is reported once, with its key, its namespace relative to the handle and
//! its version, never its value; refused writes and deletes of missing keys
//! report nothing.
//!
//! Every wait is bounded by [`FEED_WAIT`]: a store that never reports a
//! change fails with a message saying which, instead of hanging.

use std::sync::Arc;
use std::time::Duration;

use credstore_core::{
    Change, ChangeFeed, CredentialKey, CredentialStore, CredentialStoreExt, Error, FeedEvent, Metadata,
    Namespace, SecretValue, Version,
};

use super::{assert_no_secret, caps, key, ns, secret, set, set_text};
use crate::StoreFactory;

/// The longest a case waits for the feed to report a change.
pub const FEED_WAIT: Duration = Duration::from_secs(10);

/// A feed of `store`, which declares one.
async fn subscribe(store: &dyn CredentialStore) -> ChangeFeed {
    store
        .subscribe()
        .await
        .unwrap_or_else(|e| panic!("the store declares change_feed, but subscribe failed: {e}"))
}

/// The next event of `feed`, which must be a change: `what` says which
/// change the case waits for.
async fn next_change(feed: &mut ChangeFeed, what: &str) -> Change {
    match tokio::time::timeout(FEED_WAIT, feed.next()).await {
        Err(_) => panic!("the feed reported no change within {} s; waited for {what}", FEED_WAIT.as_secs()),
        Ok(None) => panic!("the feed ended while the store lives; waited for {what}"),
        Ok(Some(FeedEvent::Changed(change))) => change,
        Ok(Some(other)) => panic!("expected {what}, the feed reported {other:?}"),
    }
}

/// Asserts that `change` is `key` of `namespace` at `version`.
fn assert_change(
    change: &Change,
    namespace: &Namespace,
    k: &CredentialKey,
    version: Option<&Version>,
    what: &str,
) {
    assert_eq!(
        (&change.namespace, &change.key, change.version.as_ref()),
        (namespace, k, version),
        "{what}: the feed reported another change"
    );
}

/// Writes a marker key and checks that the next change reported is the
/// marker's: whatever was done before it reported nothing.
async fn assert_nothing_before_marker(store: &dyn CredentialStore, feed: &mut ChangeFeed, what: &str) {
    let marker = key("feed-marker");
    let out = set_text(store, "feed-marker", "m").await;
    let change = next_change(feed, "the marker write").await;
    assert_change(
        &change,
        &Namespace::root(),
        &marker,
        Some(&out.version),
        &format!("{what} must report nothing, so the next change is the marker write's"),
    );
}

/// A write is reported with its key, the handle's own namespace (the root,
/// relative to the handle) and exactly the version the write returned; an
/// overwrite with its new version.
pub async fn feed_reports_a_write_with_its_key_and_the_set_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut feed = subscribe(&*store).await;
    let k = key("fed");
    let first = set_text(&*store, "fed", "v1").await;
    let second = set_text(&*store, "fed", "v2").await;
    let change = next_change(&mut feed, "the first write").await;
    assert_change(&change, &Namespace::root(), &k, Some(&first.version), "the first write");
    let change = next_change(&mut feed, "the overwrite").await;
    assert_change(&change, &Namespace::root(), &k, Some(&second.version), "the overwrite");
}

/// A delete is reported with its key and no version.
pub async fn feed_reports_a_delete_with_no_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("fed-delete");
    let written = set_text(&*store, "fed-delete", "v").await;
    let mut feed = subscribe(&*store).await;
    assert!(store.delete(&k).await.unwrap_or_else(|e| panic!("delete failed: {e}")), "the key was there");
    let change = next_change(&mut feed, "the delete").await;
    assert_change(&change, &Namespace::root(), &k, None, "the delete");
    assert_ne!(change.version, Some(written.version), "a delete reports no version");
}

/// A delete of a key that is not there reports nothing.
pub async fn feed_reports_nothing_for_a_delete_of_a_missing_key(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut feed = subscribe(&*store).await;
    let deleted = store.delete(&key("never-there")).await.unwrap_or_else(|e| panic!("delete failed: {e}"));
    assert!(!deleted, "a missing key was deleted");
    assert_nothing_before_marker(&*store, &mut feed, "a delete of a missing key").await;
}

/// A create-only write refused (the key exists; or the store does not
/// declare create-only writes and refuses them as unsupported) reports
/// nothing.
pub async fn feed_reports_nothing_for_a_refused_create(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("fed-create");
    if caps(&*store).create_only {
        set_text(&*store, "fed-create", "v").await;
    }
    let mut feed = subscribe(&*store).await;
    match store.create(&k, &SecretValue::from("w"), &Metadata::new()).await {
        Err(Error::PreconditionFailed { .. }) if caps(&*store).create_only => {}
        Err(Error::Unsupported { .. }) if !caps(&*store).create_only => {}
        other => panic!("a create of a present key (or without create_only) must be refused, got {other:?}"),
    }
    assert_nothing_before_marker(&*store, &mut feed, "a refused create-only write").await;
}

/// A replace-if-version write refused (stale version, missing key; or the
/// store does not declare them and refuses them as unsupported) reports
/// nothing.
pub async fn feed_reports_nothing_for_a_refused_replace(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("fed-replace");
    let first = set_text(&*store, "fed-replace", "v1").await;
    let mut feed = subscribe(&*store).await;
    let current = if caps(&*store).replace_if_version {
        let out = store.replace(&k, &SecretValue::from("v2"), &Metadata::new(), &first.version).await;
        let current = out.unwrap_or_else(|e| panic!("a replace at the current version failed: {e}"));
        let change = next_change(&mut feed, "the replace at the current version").await;
        assert_change(&change, &Namespace::root(), &k, Some(&current.version), "the replace");
        current.version
    } else {
        first.version.clone()
    };
    let stale = store.replace(&k, &SecretValue::from("v3"), &Metadata::new(), &first.version).await;
    let missing =
        store.replace(&key("fed-missing"), &SecretValue::from("v"), &Metadata::new(), &current).await;
    for (what, result) in [("a stale replace", stale), ("a replace of a missing key", missing)] {
        match result {
            Err(Error::PreconditionFailed { .. }) if caps(&*store).replace_if_version => {}
            Err(Error::Unsupported { .. }) if !caps(&*store).replace_if_version => {}
            other => panic!("{what} must be refused, got {other:?}"),
        }
    }
    assert_nothing_before_marker(&*store, &mut feed, "a refused replace-if-version write").await;
}

/// A handle on namespace `a` reports the changes of `a` (at its root) and
/// of the nested `a/b` (as `b`), never those of a sibling namespace or of
/// the root above it.
pub async fn feed_of_a_namespace_reports_it_and_its_nested_namespaces_only(f: &dyn StoreFactory) {
    let store = f.create().await;
    let handle = |n: &str| store.with_namespace(&ns(n)).unwrap_or_else(|e| panic!("namespace {n}: {e}"));
    let (a, nested, sibling, prefixed) = (handle("a"), handle("a/b"), handle("c"), handle("ab"));
    let mut feed = subscribe(&*a).await;
    set_text(&*store, "k", "root").await;
    set_text(&*sibling, "k", "sibling").await;
    set_text(&*prefixed, "k", "a namespace whose name starts with a's").await;
    let in_nested = set_text(&*nested, "k", "nested").await;
    let in_a = set_text(&*a, "k", "own").await;
    let change = next_change(&mut feed, "the write in a/b").await;
    assert_change(
        &change,
        &ns("b"),
        &key("k"),
        Some(&in_nested.version),
        "the first change a's feed reports",
    );
    let change = next_change(&mut feed, "the write in a").await;
    assert_change(&change, &Namespace::root(), &key("k"), Some(&in_a.version), "the write in a");
}

/// Every one of 20 successive writes of one key is reported, in order,
/// each with its version.
pub async fn feed_reports_every_one_of_20_writes_of_a_key_in_order(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut feed = subscribe(&*store).await;
    let k = key("fed-often");
    let mut versions = Vec::new();
    for n in 0..20 {
        versions.push(set_text(&*store, "fed-often", &format!("v{n}")).await.version);
    }
    for (n, version) in versions.iter().enumerate() {
        let change = next_change(&mut feed, &format!("write {n} of 20")).await;
        assert_change(&change, &Namespace::root(), &k, Some(version), &format!("write {n} of 20"));
    }
}

/// Two subscribers each get every change.
pub async fn feed_reports_every_change_to_every_subscriber(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut first = subscribe(&*store).await;
    let mut second = subscribe(&*store).await;
    let written = set_text(&*store, "fed-twice", "v").await;
    assert!(store.delete(&key("fed-twice")).await.unwrap_or_else(|e| panic!("delete failed: {e}")));
    for (name, feed) in [("the first subscriber", &mut first), ("the second subscriber", &mut second)] {
        let change = next_change(feed, &format!("the write, to {name}")).await;
        assert_change(&change, &Namespace::root(), &key("fed-twice"), Some(&written.version), name);
        let change = next_change(feed, &format!("the delete, to {name}")).await;
        assert_change(&change, &Namespace::root(), &key("fed-twice"), None, name);
    }
}

/// A change made through a second store over the same storage is reported:
/// the store [`StoreFactory::reopen`] gives, for a store whose data
/// survives a restart (so it is the same storage, as two replicas over one
/// database are), or else another handle on the same namespace.
pub async fn feed_reports_a_change_made_through_a_second_store(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut feed = subscribe(&*store).await;
    let reopened = match caps(&*store).persistence.survives_restart() {
        true => f.reopen(Arc::clone(&store)).await,
        false => None,
    };
    let other = match reopened {
        Some(other) => other,
        None => store.with_namespace(&Namespace::root()).unwrap_or_else(|e| panic!("a handle: {e}")),
    };
    let written = set_text(&*other, "fed-elsewhere", "v").await;
    let change = next_change(&mut feed, "the write through the second store").await;
    assert_change(&change, &Namespace::root(), &key("fed-elsewhere"), Some(&written.version), "that write");
}

/// The written value never shows in the `Debug` of the feed or of its
/// events.
pub async fn feed_events_never_show_the_value(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut feed = subscribe(&*store).await;
    let v = secret("feed");
    set(&*store, &key("fed-secret"), &v, &Metadata::new()).await;
    let change = next_change(&mut feed, "the write").await;
    let event = FeedEvent::Changed(change.clone());
    assert_no_secret("Debug of the change", &format!("{change:?} {change:#?}"), &v);
    assert_no_secret("Debug of the event", &format!("{event:?} {event:#?}"), &v);
    assert_no_secret("Debug of the feed", &format!("{feed:?}"), &v);
    assert!(format!("{change:?}").contains("fed-secret"), "Debug should still show the key");
}

/// A restore is a write: reported with its key and the new version it
/// made.
pub async fn feed_reports_a_restore_with_its_new_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("fed-restore");
    let first = set_text(&*store, "fed-restore", "good").await;
    let second = set_text(&*store, "fed-restore", "bad").await;
    let mut feed = subscribe(&*store).await;
    let out = store.restore(&k, &first.version, &super::at(&*store, &second.version)).await;
    let out = out.unwrap_or_else(|e| panic!("restore failed: {e}"));
    let change = next_change(&mut feed, "the restore").await;
    assert_change(&change, &Namespace::root(), &k, Some(&out.version), "the restore");
}

/// A purge of a key is reported with its key and no version, as a delete
/// is.
pub async fn feed_reports_a_purge_of_a_key_with_no_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("fed-purge");
    set_text(&*store, "fed-purge", "leaked").await;
    let mut feed = subscribe(&*store).await;
    assert!(store.purge(&k, &credstore_core::PurgeTarget::Key).await.expect("purge"), "the key was there");
    let change = next_change(&mut feed, "the purge").await;
    assert_change(&change, &Namespace::root(), &k, None, "the purge");
}
