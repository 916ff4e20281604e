//! Get, set, has and delete.

use credstore_core::SecretValue;

use credstore_core::CredentialStoreExt;

use super::{absent, caps, key, list_all, meta, meta_if, must_get, secret, set, set_text, text};
use crate::StoreFactory;

/// Set then get returns the value, metadata and key exactly, and the
/// first write reports `created`.
pub async fn round_trip(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("round-trip");
    let v = secret("rt");
    let m = meta_if(&*store, meta([("owner", "team-a")]));
    let out = store.set(&k, &v, &m).await.expect("set");
    assert!(out.created, "the first set must report created");
    let c = must_get(&*store, &k).await;
    assert_eq!(c.key, k);
    assert!(c.value == v, "the value differs after the round trip");
    assert_eq!(c.metadata, m);
}

/// Overwriting replaces the value and the whole metadata (no merge), and
/// does not report `created`.
pub async fn overwrite_replaces_value_and_metadata(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("overwrite");
    set(&*store, &k, &SecretValue::from("first"), &meta_if(&*store, meta([("a", "1"), ("b", "2")]))).await;
    let second = meta_if(&*store, meta([("c", "3")]));
    let out = store.set(&k, &SecretValue::from("second"), &second).await.expect("overwrite");
    assert!(!out.created, "an overwrite must not report created");
    let c = must_get(&*store, &k).await;
    assert_eq!(text(&c.value), "second");
    assert_eq!(c.metadata, second, "metadata must be replaced, not merged");
}

/// A key never set reads as `None`, not an error.
pub async fn missing_key_is_none(f: &dyn StoreFactory) {
    let store = f.create().await;
    assert!(store.get(&key("never-set")).await.expect("get missing").is_none());
    assert!(!store.has(&key("never-set")).await.expect("has missing"));
    assert_eq!(store.version(&key("never-set")).await.expect("version missing"), None);
}

/// Delete returns true for an existing key, then false; the key is gone.
pub async fn delete_returns_true_then_false(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("to-delete");
    set_text(&*store, "to-delete", "v").await;
    assert!(store.delete(&k).await.expect("delete"), "delete of an existing key returns true");
    assert!(!store.delete(&k).await.expect("delete again"), "a second delete returns false");
    assert!(absent(&*store, &k).await, "a deleted key is still there");
}

/// Deleting a key that never existed returns false and creates nothing.
pub async fn delete_missing_key_returns_false(f: &dyn StoreFactory) {
    let store = f.create().await;
    assert!(!store.delete(&key("never-existed")).await.expect("delete missing"));
    assert!(absent(&*store, &key("never-existed")).await);
}

/// `has` follows set and delete.
pub async fn has_reflects_presence(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("presence");
    assert!(!store.has(&k).await.expect("has"));
    set_text(&*store, "presence", "v").await;
    assert!(store.has(&k).await.expect("has"), "has is false after set");
    store.delete(&k).await.expect("delete");
    assert!(!store.has(&k).await.expect("has"), "has is true after delete");
}

/// Reading a missing key does not create it.
pub async fn has_and_get_do_not_create(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("ghost");
    assert!(!store.has(&k).await.expect("has"));
    assert!(store.get(&k).await.expect("get").is_none());
    assert!(store.version(&k).await.expect("version").is_none());
    assert!(!store.has(&k).await.expect("has"), "a read created the key");
    if caps(&*store).list {
        assert!(list_all(&*store, "", 100).await.is_empty(), "reads must not create keys");
    }
}

/// A deleted key can be set again at once, as a new credential with none of
/// the old metadata.
pub async fn delete_then_recreate(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("phoenix");
    for round in 0..3 {
        let v = format!("life-{round}");
        let m = meta_if(&*store, meta([("round", &*round.to_string())]));
        let out = store.set(&k, &SecretValue::from(v.clone()), &m).await.expect("set");
        assert!(out.created, "round {round}: a re-created key must report created");
        let c = must_get(&*store, &k).await;
        assert_eq!(text(&c.value), v);
        assert_eq!(c.metadata, m, "round {round}: no metadata may survive the delete");
        assert!(store.delete(&k).await.expect("delete"));
        assert!(absent(&*store, &k).await);
    }
}

/// A store reports a stable, valid id and a named kind, the same for every
/// store of one factory.
pub async fn store_reports_id_and_kind(f: &dyn StoreFactory) {
    let a = f.create().await;
    let b = f.create().await;
    assert_eq!(a.id(), a.id());
    credstore_core::validate_id(a.id().as_str()).expect("the id is valid");
    assert!(!a.kind().as_str().is_empty());
    assert_eq!(a.kind(), b.kind());
    credstore_core::validate_id(a.kind().as_str()).expect("the kind is id-like");
}
