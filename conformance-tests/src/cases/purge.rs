//! [`CredentialStore::purge`](credstore_core::CredentialStore::purge): a
//! key with its whole history, or one version, destroyed so that no read
//! finds it; the current version refused.

use credstore_core::{CredentialStoreExt, ListOptions, Metadata, PurgeTarget, SecretValue, SetOptions};

use super::{
    absent, assert_unchanged, assert_version_not_found, caps, foreign_version, kept, key, list_all, must_get,
    must_get_version, names, set_text, text, version_states,
};
use crate::StoreFactory;

/// `purge(Key)` leaves nothing readable: not `get`, `has`, `version` or
/// `list`, no version by `get_version`, an empty `list_versions`; the key
/// can then be created again, as new.
pub async fn purge_key_leaves_nothing_readable_and_the_key_can_be_created_again(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("leaked");
    let mut written = Vec::new();
    for v in ["leak-1", "leak-2", "leak-3"] {
        written.push(set_text(&*store, "leaked", v).await.version);
    }
    assert!(store.purge(&k, &PurgeTarget::Key).await.expect("purge"), "the key was there");
    assert!(absent(&*store, &k).await, "a purged key reads");
    assert_eq!(store.version(&k).await.expect("version"), None);
    for v in &written {
        assert!(
            store.get_version(&k, v).await.expect("get_version").is_none(),
            "version {v} survived the purge"
        );
    }
    assert_eq!(version_states(&*store, &k).await, vec![], "a purged key lists versions");
    if caps(&*store).list {
        assert!(
            !names(list_all(&*store, "", 100).await).contains(&"leaked".to_owned()),
            "a purged key is listed"
        );
    }
    let options = if caps(&*store).create_only { SetOptions::create_only() } else { SetOptions::new() };
    let out = store
        .set_opts(&k, &SecretValue::from("fresh"), &Metadata::new(), &options)
        .await
        .unwrap_or_else(|e| panic!("creating a purged key again failed: {e}"));
    assert!(out.created, "a purged key is created anew");
    assert!(!written.contains(&out.version), "the new key got back a purged version");
    assert_eq!(version_states(&*store, &k).await.len(), 1, "only the new version is listed");
}

/// With `recover_deleted`, `purge(Key)` of a deleted key destroys the
/// history the delete kept (and says so); a second purge finds nothing.
pub async fn purge_key_of_a_deleted_key_destroys_its_history(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("deleted-then-purged");
    let first = set_text(&*store, "deleted-then-purged", "one").await;
    let second = set_text(&*store, "deleted-then-purged", "two").await;
    assert!(store.delete(&k).await.expect("delete"));
    assert!(!version_states(&*store, &k).await.is_empty(), "the delete kept the history");
    assert!(store.purge(&k, &PurgeTarget::Key).await.expect("purge"), "the kept history counts as something");
    assert_eq!(version_states(&*store, &k).await, vec![]);
    for v in [&first.version, &second.version] {
        assert!(store.get_version(&k, v).await.expect("get_version").is_none(), "version {v} survived");
    }
    let r = store.restore(&k, &second.version, &SetOptions::create_only()).await;
    assert_version_not_found(r, "recovering a purged key");
    assert!(!store.purge(&k, &PurgeTarget::Key).await.expect("purge"), "a second purge found something");
}

/// `purge(Version(v))` of a version that is not current removes that one
/// version only: the current value and the other versions stay; purging
/// it again finds nothing.
pub async fn purge_version_removes_only_that_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("one-leak");
    let n = kept(&*store, 3);
    assert!(n >= 2, "a store declaring versions keeps at least 2: retention {:?}", caps(&*store).retention);
    let mut written = Vec::new();
    for i in 0..n {
        written.push(set_text(&*store, "one-leak", &format!("v{i}")).await.version);
    }
    let target = written[n - 2].clone();
    let before = must_get(&*store, &k).await;
    let listed = version_states(&*store, &k).await;
    assert!(
        store.purge(&k, &PurgeTarget::Version(target.clone())).await.expect("purge"),
        "the version was kept"
    );
    assert!(store.get_version(&k, &target).await.expect("get_version").is_none(), "the purged version reads");
    let want: Vec<_> = listed.into_iter().filter(|(v, _)| *v != target).collect();
    assert_eq!(version_states(&*store, &k).await, want, "only the purged version is gone");
    assert_unchanged(
        &before,
        &must_get(&*store, &k).await,
        "the current value after purging another version",
    );
    if n >= 3 {
        assert_eq!(text(&must_get_version(&*store, &k, &written[0]).await.value), "v0");
    }
    let again = store.purge(&k, &PurgeTarget::Version(target)).await.expect("purge");
    assert!(!again, "purging a purged version found it");
}

/// Purging the current version is `PreconditionFailed` (rotate first),
/// and changes neither the value nor the history.
pub async fn purging_the_current_version_is_precondition_failed_and_changes_nothing(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("current-leak");
    set_text(&*store, "current-leak", "one").await;
    let current = set_text(&*store, "current-leak", "two").await;
    let before = must_get(&*store, &k).await;
    let history = version_states(&*store, &k).await;
    match store.purge(&k, &PurgeTarget::Version(current.version.clone())).await {
        Err(credstore_core::Error::PreconditionFailed { .. }) => {}
        other => panic!("purging the current version must be PreconditionFailed, got {other:?}"),
    }
    assert_unchanged(&before, &must_get(&*store, &k).await, "after the refused purge");
    assert_eq!(version_states(&*store, &k).await, history, "the refused purge changed the history");
}

/// `purge(Key)` of a key never written returns `false`, as a delete
/// would; nothing else is touched.
pub async fn purge_of_a_missing_key_returns_false(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "bystander", "v").await;
    let purged = store.purge(&key("never-there"), &PurgeTarget::Key).await.expect("purge");
    assert!(!purged, "a purge of a missing key found something");
    assert_eq!(text(&must_get(&*store, &key("bystander")).await.value), "v");
    if caps(&*store).list {
        assert_eq!(
            store.list(&ListOptions::new()).await.expect("list").keys,
            vec![key("bystander")],
            "the purge of a missing key changed the listing"
        );
    }
}

/// `purge(Version(v))` of a version the key never had (another key's), or
/// of a key never written, returns `false` and changes nothing.
pub async fn purge_of_an_unknown_version_returns_false(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("purge-unknown");
    let mine = set_text(&*store, "purge-unknown", "v").await;
    let elsewhere = foreign_version(&*store, &mine, "purge-elsewhere").await;
    let before = must_get(&*store, &k).await;
    let purged = store.purge(&k, &PurgeTarget::Version(elsewhere.clone())).await.expect("purge");
    assert!(!purged, "another key's version was purged from this one");
    assert_unchanged(&before, &must_get(&*store, &k).await, "after a purge of an unknown version");
    assert_eq!(text(&must_get_version(&*store, &key("purge-elsewhere"), &elsewhere).await.value), "w2");
    let missing = store.purge(&key("purge-never"), &PurgeTarget::Version(elsewhere)).await;
    assert!(!missing.expect("purge"), "a version of a key never written was purged");
}
