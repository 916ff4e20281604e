//! Versions: new on every write, agreed by `set`, `get` and `version`.

use std::collections::BTreeSet;

use credstore_core::{CredentialStoreExt, Metadata, SecretValue};

use super::{key, meta, meta_if, must_get, set, text};
use crate::StoreFactory;

/// Every write makes a new version, an overwrite with the identical value
/// and metadata included.
pub async fn version_changes_on_every_write(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("versioned");
    let m = meta_if(&*store, meta([("same", "metadata")]));
    let mut seen = BTreeSet::new();
    for (i, value) in ["a", "b", "b", "b", "a"].into_iter().enumerate() {
        let out = set(&*store, &k, &SecretValue::from(value), &m).await;
        assert!(
            seen.insert(out.version.clone()),
            "write {i} ({value:?}) repeated the version {}",
            out.version
        );
        assert_eq!(
            must_get(&*store, &k).await.version,
            out.version,
            "write {i}: get returns another version"
        );
    }
}

/// The version a write returns is the one `get` returns until the next
/// write, and reads do not change it.
pub async fn version_from_set_matches_get(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("v-match");
    let out = set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    for _ in 0..3 {
        assert_eq!(must_get(&*store, &k).await.version, out.version, "a read changed the version");
    }
    assert!(store.has(&k).await.expect("has"));
    assert_eq!(must_get(&*store, &k).await.version, out.version);
    // Another key's write does not move this key's version.
    set(&*store, &key("v-other"), &SecretValue::from("v"), &Metadata::new()).await;
    assert_eq!(must_get(&*store, &k).await.version, out.version, "a write to another key moved the version");
}

/// `version()` agrees with `get`: `None` for a missing key, the current
/// version after each write, `None` again after a delete.
pub async fn version_agrees_with_get(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("v-probe");
    assert_eq!(store.version(&k).await.expect("version"), None, "a missing key has a version");
    for value in ["one", "two"] {
        let out = set(&*store, &k, &SecretValue::from(value), &Metadata::new()).await;
        assert_eq!(store.version(&k).await.expect("version"), Some(out.version.clone()));
        assert_eq!(must_get(&*store, &k).await.version, out.version);
    }
    assert!(store.delete(&k).await.expect("delete"));
    assert_eq!(store.version(&k).await.expect("version"), None, "a deleted key still has a version");
}

/// The version `version()` answers is the one a replace must be given: a
/// store that overrides `version()` answers in the same form as `get`.
pub async fn version_probe_is_usable_for_replace(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("probe-then-replace");
    set(&*store, &k, &SecretValue::from("one"), &Metadata::new()).await;
    let probed = store.version(&k).await.expect("version").expect("the key exists");
    let out = store
        .replace(&k, &SecretValue::from("two"), &Metadata::new(), &probed)
        .await
        .expect("a replace at the version version() answered");
    assert_eq!(store.version(&k).await.expect("version"), Some(out.version.clone()));
    let stale = store.replace(&k, &SecretValue::from("three"), &Metadata::new(), &probed).await;
    assert!(matches!(stale, Err(credstore_core::Error::PreconditionFailed { .. })), "{stale:?}");
    assert_eq!(text(&must_get(&*store, &k).await.value), "two");
}
