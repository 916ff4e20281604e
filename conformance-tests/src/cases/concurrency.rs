//! Concurrent writers and readers.

use std::sync::Arc;

use credstore_core::{CredentialStoreExt, Metadata, SecretValue};

use super::{caps, key, list_all, meta, must_get, race, set, text};
use crate::StoreFactory;

/// 32 concurrent writers on distinct keys all land.
pub async fn concurrent_writers_distinct_keys(f: &dyn StoreFactory) {
    let store = f.create().await;
    let with_meta = caps(&*store).metadata;
    let results = race(32, |i| {
        let store = Arc::clone(&store);
        async move {
            let m = if with_meta { meta([("i", &*i.to_string())]) } else { Metadata::new() };
            store.set(&key(&format!("writer-{i:02}")), &SecretValue::from(format!("value-{i}")), &m).await
        }
    })
    .await;
    for (i, r) in results.into_iter().enumerate() {
        r.unwrap_or_else(|e| panic!("writer {i} failed: {e}"));
    }
    for i in 0..32 {
        let c = must_get(&*store, &key(&format!("writer-{i:02}"))).await;
        assert_eq!(text(&c.value), format!("value-{i}"));
        if with_meta {
            assert_eq!(c.metadata.get("i"), Some(&*i.to_string()));
        }
    }
    if caps(&*store).list {
        assert_eq!(list_all(&*store, "writer-", 100).await.len(), 32);
    }
}

/// Concurrent writers on one key all succeed and leave exactly one writer's
/// value, with that writer's metadata and version.
pub async fn concurrent_writers_same_key(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("contended");
    let value_of = |i: usize| format!("{i:02}:").repeat(300);
    let results = race(16, |i| {
        let (store, k) = (Arc::clone(&store), k.clone());
        let v = value_of(i);
        async move {
            let m = if store.capabilities().metadata {
                meta([("writer", &*i.to_string())])
            } else {
                Metadata::new()
            };
            store.set(&k, &SecretValue::from(v), &m).await
        }
    })
    .await;
    let mut versions = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        versions.push(r.unwrap_or_else(|e| panic!("writer {i} failed: {e}")).version);
    }
    let c = must_get(&*store, &k).await;
    let writer = (0..16).find(|&i| text(&c.value) == value_of(i)).expect("the value is one writer's, whole");
    if caps(&*store).metadata {
        assert_eq!(
            c.metadata.get("writer"),
            Some(&*writer.to_string()),
            "value and metadata come from different writers"
        );
    }
    assert_eq!(c.version, versions[writer], "value and version come from different writers");
    let mut unique = versions.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 16, "concurrent writes shared a version");
}

/// Readers racing a writer always see a whole value, with its own metadata
/// where the store keeps metadata.
pub async fn concurrent_readers_and_writer(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("read-while-write");
    let with_meta = caps(&*store).metadata;
    let value_of = |i: usize| format!("<{i}>").repeat(200);
    let meta_of = move |i: usize| if with_meta { meta([("n", &*i.to_string())]) } else { Metadata::new() };
    set(&*store, &k, &SecretValue::from(value_of(0)), &meta_of(0)).await;
    let writer = {
        let (store, k) = (Arc::clone(&store), k.clone());
        tokio::spawn(async move {
            for i in 1..=10 {
                store.set(&k, &SecretValue::from(value_of(i)), &meta_of(i)).await.expect("set");
            }
        })
    };
    race(4, |_| {
        let (store, k) = (Arc::clone(&store), k.clone());
        async move {
            for _ in 0..10 {
                let c = store.get(&k).await.expect("get").expect("present throughout");
                let t = c.value.expose_str().expect("text").to_owned();
                let n = (0..=10).find(|&i| t == value_of(i)).expect("torn read: a value no writer wrote");
                if with_meta {
                    assert_eq!(c.metadata, meta_of(n), "torn read: value and metadata disagree");
                }
            }
        }
    })
    .await;
    writer.await.expect("writer");
}
