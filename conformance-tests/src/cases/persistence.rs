//! Reopen cases, for stores whose persistence survives a restart.

use credstore_core::{CredentialStoreExt, Metadata, SecretValue};

use super::{caps, get_text, key, meta_if, must_get, ns, set, set_text};
use crate::StoreFactory;

/// Credentials, metadata, versions, timestamps, binary values and
/// deletions survive a reopen.
pub async fn persistence_across_reopen(f: &dyn StoreFactory) {
    let store = f.create().await;
    let c = caps(&*store);
    let m = meta_if(&*store, Metadata::try_from([("a", "1")]).expect("metadata"));
    let mut keep = vec![
        ("p1", SecretValue::from("persist one"), m),
        ("p2", SecretValue::from("persist two ✓"), Metadata::new()),
    ];
    if c.binary {
        keep.push(("p3", SecretValue::from(vec![0xff, 0x00, 0xfe, 0x80]), Metadata::new()));
    }
    for (k, v, m) in &keep {
        set(&*store, &key(k), v, m).await;
    }
    set_text(&*store, "gone", "deleted").await;
    assert!(store.delete(&key("gone")).await.expect("delete"));
    let mut before = Vec::new();
    for (k, _, _) in &keep {
        before.push(must_get(&*store, &key(k)).await);
    }
    let id = store.id().clone();
    let namespace = store.namespace().clone();
    let reopened = f
        .reopen(store)
        .await
        .expect("the store's persistence survives a restart, so the factory must reopen it");
    assert_eq!(reopened.id(), &id);
    assert_eq!(reopened.namespace(), &namespace);
    let old_version = before[0].version.clone();
    for ((k, v, m), old) in keep.iter().zip(before) {
        let got = must_get(&*reopened, &key(k)).await;
        assert!(got.value == *v, "{k}: the value changed across reopen");
        assert_eq!(got.value.is_text(), v.is_text(), "{k}: text-ness changed across reopen");
        assert_eq!(&got.metadata, m);
        assert_eq!(got.version, old.version, "{k}: the version changed across reopen");
        assert_eq!(got.created_at, old.created_at, "{k}: created_at changed across reopen");
        assert_eq!(got.updated_at, old.updated_at, "{k}: updated_at changed across reopen");
    }
    assert!(!reopened.has(&key("gone")).await.expect("has"), "a deleted key came back");
    // A write after the reopen makes a new version, and the old one is stale.
    let out = set_text(&*reopened, "p1", "after reopen").await;
    assert_ne!(out.version, old_version, "a write after the reopen repeated a version");
    assert_eq!(get_text(&*reopened, "p1").await, "after reopen");
}

/// Keys in namespaces survive a reopen, still isolated.
pub async fn namespaces_persist_across_reopen(f: &dyn StoreFactory) {
    let store = f.create().await;
    let a = store.with_namespace(&ns("tenant-1/project-1")).expect("with_namespace");
    set_text(&*a, "k", "in the namespace").await;
    set_text(&*store, "k", "at the base").await;
    drop(a);
    let reopened = f.reopen(store).await.expect("the factory must reopen the store");
    let a = reopened.with_namespace(&ns("tenant-1/project-1")).expect("with_namespace");
    assert_eq!(get_text(&*a, "k").await, "in the namespace");
    assert_eq!(get_text(&*reopened, "k").await, "at the base");
    let other = reopened.with_namespace(&ns("tenant-1")).expect("with_namespace");
    assert!(
        other.get(&key("k")).await.expect("get").is_none(),
        "the parent namespace sees the key after reopen"
    );
}
