//! Conditional writes: create-only and replace-if-version, alone and raced.

use std::sync::Arc;

use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, SetOutcome,
};

use super::{
    absent, assert_precondition_failed, assert_unchanged, caps, key, meta, meta_if, must_get, race, set, text,
};
use crate::StoreFactory;

/// A create-only write of an absent key creates it, reports `created` and
/// the version `get` returns.
pub async fn create_only_creates_when_absent(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("fresh");
    let m = meta_if(&*store, meta([("by", "create")]));
    let out = store.create(&k, &SecretValue::from("created"), &m).await.expect("create of an absent key");
    assert!(out.created, "a create-only write must report created");
    let c = must_get(&*store, &k).await;
    assert_eq!(text(&c.value), "created");
    assert_eq!(c.metadata, m);
    assert_eq!(c.version, out.version, "the version of the create differs from the one get returns");
}

/// A create-only write of a present key fails with `PreconditionFailed`
/// and changes nothing: value, metadata, version, times.
pub async fn create_only_fails_when_present_and_changes_nothing(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("taken");
    set(&*store, &k, &SecretValue::from("first"), &meta_if(&*store, meta([("v", "1")]))).await;
    let before = must_get(&*store, &k).await;
    let result = store.create(&k, &SecretValue::from("second"), &meta_if(&*store, meta([("v", "2")]))).await;
    let err = assert_precondition_failed(result, "create-only of a present key");
    assert!(err.to_string().contains("taken"), "the error should name the key: {err}");
    assert_unchanged(&before, &must_get(&*store, &k).await, "after a failed create");
}

/// Sixteen create-only writers race on one absent key: exactly one wins,
/// the rest get `PreconditionFailed`, and the stored value, metadata and
/// version are the winner's.
pub async fn create_only_raced_by_16(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("contended-create");
    let out = conditional_race(&store, &k, "create", |store, k, value, m| async move {
        store.create(&k, &value, &m).await
    })
    .await;
    assert!(out.created, "the winning create must report created");
}

/// Runs sixteen conditional writers of `k` at once (writer `i` writes
/// `writer-{i}`, with metadata `writer = i` where the store keeps
/// metadata) and checks that exactly one wins, that the others get
/// `PreconditionFailed`, and that the stored value, metadata and version are
/// the winner's. Returns the winner's outcome.
async fn conditional_race<W, Fut>(
    store: &Arc<dyn CredentialStore>,
    k: &CredentialKey,
    what: &str,
    write: W,
) -> SetOutcome
where
    W: Fn(Arc<dyn CredentialStore>, CredentialKey, SecretValue, Metadata) -> Fut,
    Fut: std::future::Future<Output = credstore_core::Result<SetOutcome>> + Send + 'static,
{
    let with_meta = caps(&**store).metadata;
    let results = race(16, |i| {
        let m = if with_meta { meta([("writer", &*i.to_string())]) } else { Metadata::new() };
        write(Arc::clone(store), k.clone(), SecretValue::from(format!("writer-{i}")), m)
    })
    .await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(out) => winners.push((i, out)),
            Err(Error::PreconditionFailed { .. }) => {}
            Err(e) => panic!("racing {what} {i} failed with {e:?}; losers must get PreconditionFailed"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racing {what} must win, {} did", winners.len());
    let (winner, out) = winners.pop().expect("one winner");
    let c = must_get(&**store, k).await;
    assert_eq!(text(&c.value), format!("writer-{winner}"), "the stored value is not the winner's");
    if with_meta {
        assert_eq!(c.metadata.get("writer"), Some(&*winner.to_string()), "the metadata is not the winner's");
    }
    assert_eq!(c.version, out.version, "the stored version is not the winner's");
    out
}

/// After a delete, a create-only write of the key succeeds.
pub async fn create_after_delete_succeeds(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("recreate");
    store.create(&k, &SecretValue::from("one"), &Metadata::new()).await.expect("first create");
    assert!(store.delete(&k).await.expect("delete"));
    let out =
        store.create(&k, &SecretValue::from("two"), &Metadata::new()).await.expect("create after delete");
    assert!(out.created);
    assert_eq!(text(&must_get(&*store, &k).await.value), "two");
}

/// A replace at the current version succeeds, returns a new version that
/// `get` then returns, and keeps `created_at`.
pub async fn replace_at_current_version_succeeds(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("replace-me");
    let first = set(&*store, &k, &SecretValue::from("one"), &meta_if(&*store, meta([("v", "1")]))).await;
    let created_at = must_get(&*store, &k).await.created_at;
    let m2 = meta_if(&*store, meta([("v", "2")]));
    let out = store.replace(&k, &SecretValue::from("two"), &m2, &first.version).await.expect("replace");
    assert!(!out.created, "a replace must not report created");
    assert_ne!(out.version, first.version, "a replace must make a new version");
    let c = must_get(&*store, &k).await;
    assert_eq!(text(&c.value), "two");
    assert_eq!(c.metadata, m2);
    assert_eq!(c.version, out.version);
    assert_eq!(c.created_at, created_at, "a replace must keep created_at");
    // And again from the new version.
    let third = store.replace(&k, &SecretValue::from("three"), &m2, &out.version).await.expect("replace");
    assert_eq!(text(&must_get(&*store, &k).await.value), "three");
    assert_ne!(third.version, out.version);
}

/// A replace at a stale version fails with `PreconditionFailed` and changes
/// nothing.
pub async fn replace_with_stale_version_fails_and_changes_nothing(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("stale");
    let old = set(&*store, &k, &SecretValue::from("one"), &Metadata::new()).await;
    set(&*store, &k, &SecretValue::from("two"), &meta_if(&*store, meta([("v", "2")]))).await;
    let before = must_get(&*store, &k).await;
    let result = store
        .replace(&k, &SecretValue::from("lost"), &meta_if(&*store, meta([("v", "x")])), &old.version)
        .await;
    assert_precondition_failed(result, "replace at a stale version");
    assert_unchanged(&before, &must_get(&*store, &k).await, "after a stale replace");
}

/// A replace of a missing key fails with `PreconditionFailed` and creates
/// nothing, whatever the version.
pub async fn replace_missing_key_fails(f: &dyn StoreFactory) {
    let store = f.create().await;
    let other = set(&*store, &key("other"), &SecretValue::from("v"), &Metadata::new()).await;
    let k = key("missing");
    let result = store.replace(&k, &SecretValue::from("v"), &Metadata::new(), &other.version).await;
    assert_precondition_failed(result, "replace of a missing key");
    assert!(absent(&*store, &k).await, "a failed replace created the key");
}

/// Sixteen writers race to replace one version: exactly one wins, the rest
/// get `PreconditionFailed`, and the stored value and version are the
/// winner's.
pub async fn replace_raced_by_16(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("contended-replace");
    let start = set(&*store, &k, &SecretValue::from("start"), &Metadata::new()).await;
    let out = conditional_race(&store, &k, "replace", |store, k, value, m| {
        let v = start.version.clone();
        async move { store.replace(&k, &value, &m, &v).await }
    })
    .await;
    assert!(!out.created, "a replace must not report created");
}

/// A version read before a key was deleted and set again does not match
/// the new credential: versions never repeat for one key.
pub async fn replace_with_version_from_before_delete_fails(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("reborn");
    let old = set(&*store, &k, &SecretValue::from("first life"), &Metadata::new()).await;
    assert!(store.delete(&k).await.expect("delete"));
    let new = set(&*store, &k, &SecretValue::from("second life"), &Metadata::new()).await;
    assert_ne!(new.version, old.version, "a re-created key got the version of its first life");
    let result = store.replace(&k, &SecretValue::from("lost"), &Metadata::new(), &old.version).await;
    assert_precondition_failed(result, "replace with a version from before the delete");
    assert_eq!(text(&must_get(&*store, &k).await.value), "second life");
}

/// `PreconditionFailed` is not retriable and names the store and the key.
pub async fn precondition_failed_is_not_retriable(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("not-retriable");
    let old = set(&*store, &k, &SecretValue::from("a"), &Metadata::new()).await;
    set(&*store, &k, &SecretValue::from("b"), &Metadata::new()).await;
    let err = assert_precondition_failed(
        store.replace(&k, &SecretValue::from("c"), &Metadata::new(), &old.version).await,
        "stale replace",
    );
    assert!(!err.is_retriable());
    assert_eq!(err.store(), Some(store.id()));
    match &err {
        Error::PreconditionFailed { key: got, .. } => assert_eq!(got, &k),
        other => panic!("{other:?}"),
    }
}

/// The metadata of a failed conditional write is not applied: neither a
/// failed replace nor (where supported) a failed create-only write touches
/// the stored metadata, value or version.
pub async fn failed_conditional_write_applies_no_metadata(f: &dyn StoreFactory) {
    let store = f.create().await;
    let c = caps(&*store);
    let k = key("meta-guard");
    let first =
        set(&*store, &k, &SecretValue::from("v1"), &meta_if(&*store, meta([("state", "original")]))).await;
    set(&*store, &k, &SecretValue::from("v2"), &meta_if(&*store, meta([("state", "current")]))).await;
    let before = must_get(&*store, &k).await;
    let intruder = meta_if(&*store, meta([("state", "intruder"), ("extra", "x")]));
    if c.create_only {
        let result = store.create(&k, &SecretValue::from("v3"), &intruder).await;
        assert_precondition_failed(result, "create-only of a present key");
        assert_unchanged(&before, &must_get(&*store, &k).await, "after a failed create");
    }
    if c.replace_if_version {
        let result = store.replace(&k, &SecretValue::from("v3"), &intruder, &first.version).await;
        assert_precondition_failed(result, "stale replace");
        assert_unchanged(&before, &must_get(&*store, &k).await, "after a failed replace");
    }
}
