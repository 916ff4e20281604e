//! What a delete does to a key's history: kept, the last version
//! `Deleted` and recoverable by a create-only restore, where the store
//! declares [`recover_deleted`](credstore_core::Capabilities::recover_deleted);
//! destroyed with the key elsewhere. Either way a deleted key can be set
//! again as new.

use std::collections::BTreeSet;
use std::time::Duration;

use credstore_core::{CredentialStoreExt, SecretValue, SetOptions, VersionState};

use super::{
    absent, assert_precondition_failed, assert_version_not_found, caps, kept, key, meta, meta_if, must_get,
    must_get_version, set, set_text, text, version_states,
};
use crate::StoreFactory;

/// With `recover_deleted`, a delete keeps the history: nothing is
/// `Current`, the version current at the delete is `Deleted`, the older
/// ones `Previous`, and each still reads by `get_version`.
pub async fn delete_keeps_history_with_the_last_version_deleted(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("soft-deleted");
    let first = set_text(&*store, "soft-deleted", "one").await;
    let second = set_text(&*store, "soft-deleted", "two").await;
    assert!(store.delete(&k).await.expect("delete"), "the key was there");
    assert!(absent(&*store, &k).await, "a deleted key reads as absent");
    assert_eq!(store.version(&k).await.expect("version"), None);
    let want: Vec<_> =
        [(second.version.clone(), VersionState::Deleted), (first.version, VersionState::Previous)]
            .into_iter()
            .take(kept(&*store, 2))
            .collect();
    assert_eq!(version_states(&*store, &k).await, want, "the history after a delete");
    assert_eq!(text(&must_get_version(&*store, &k, &second.version).await.value), "two");
    assert!(!store.delete(&k).await.expect("delete"), "a second delete finds nothing");
}

/// With `recover_deleted`, restoring the deleted version with a
/// create-only condition brings the key back, value and metadata, as a new
/// version; a second such restore fails, the key being there again.
pub async fn restore_create_only_recovers_a_deleted_key(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("recovered");
    let m = meta_if(&*store, meta([("owner", "payments")]));
    let lost = set(&*store, &k, &SecretValue::from("precious"), &m).await;
    assert!(store.delete(&k).await.expect("delete"));
    let out = store
        .restore(&k, &lost.version, &SetOptions::create_only())
        .await
        .unwrap_or_else(|e| panic!("a create-only restore of the deleted version failed: {e}"));
    assert!(out.created, "recovering a deleted key creates it");
    assert_ne!(out.version, lost.version, "the recovery is a new version");
    let c = must_get(&*store, &k).await;
    assert_eq!((text(&c.value), &c.metadata, &c.version), ("precious", &m, &out.version));
    let states = version_states(&*store, &k).await;
    assert_eq!(states.first(), Some(&(out.version.clone(), VersionState::Current)), "{states:?}");
    assert_eq!(states.iter().filter(|(_, s)| *s == VersionState::Current).count(), 1, "{states:?}");
    let again = store.restore(&k, &lost.version, &SetOptions::create_only()).await;
    assert_precondition_failed(again, "a create-only restore over the recovered key");
}

/// Without `recover_deleted`, a delete destroys the history: no versions
/// listed, none readable, none to restore.
pub async fn delete_without_recover_deleted_leaves_no_versions(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("hard-deleted");
    let first = set_text(&*store, "hard-deleted", "one").await;
    let second = set_text(&*store, "hard-deleted", "two").await;
    assert!(store.delete(&k).await.expect("delete"));
    assert_eq!(version_states(&*store, &k).await, vec![], "a delete without recover_deleted kept history");
    for v in [&first.version, &second.version] {
        assert!(
            store.get_version(&k, v).await.expect("get_version").is_none(),
            "version {v} survived the delete"
        );
    }
    let r = store.restore(&k, &second.version, &SetOptions::new()).await;
    assert_version_not_found(r, "a restore after a delete that destroyed the history");
    assert!(absent(&*store, &k).await);
}

/// A key deleted and set again has a new `created_at` and a version it
/// never had; where deleted keys are recoverable the old versions stay
/// listed below the new current one, elsewhere only the new one is.
/// Waits past a second, for stores that keep times to the second.
pub async fn recreate_after_delete_gets_a_new_created_at_and_an_unseen_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("reborn");
    let first = set_text(&*store, "reborn", "one").await;
    let before = must_get(&*store, &k).await;
    assert!(store.delete(&k).await.expect("delete"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = set_text(&*store, "reborn", "two").await;
    assert!(again.created, "the set after a delete creates the key");
    let c = must_get(&*store, &k).await;
    assert!(
        c.created_at > before.created_at,
        "created_at was not reset: {:?} then {:?}",
        before.created_at,
        c.created_at
    );
    let seen: BTreeSet<_> = [first.version.clone()].into();
    assert!(!seen.contains(&again.version), "the key got back a version it had before the delete");
    let states = version_states(&*store, &k).await;
    let mut want = vec![(again.version.clone(), VersionState::Current)];
    if caps(&*store).recover_deleted && kept(&*store, 2) == 2 {
        want.push((first.version, VersionState::Deleted));
    }
    assert_eq!(states, want, "the history after a delete and a new write");
}
