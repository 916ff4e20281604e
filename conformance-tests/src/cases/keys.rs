//! Keys at the edges of the id rules.

use credstore_core::{CredentialKey, Metadata, SecretValue};

use super::{caps, get_text, key, list_all, set, set_text};
use crate::StoreFactory;

/// Keys of one byte work.
pub async fn key_of_one_byte(f: &dyn StoreFactory) {
    let store = f.create().await;
    for s in ["a", "Z", "0", "-", "_"] {
        set_text(&*store, s, &format!("value-{s}")).await;
    }
    for s in ["a", "Z", "0", "-", "_"] {
        assert_eq!(get_text(&*store, s).await, format!("value-{s}"), "key {s:?}");
    }
}

/// A key of exactly 255 bytes works (256 cannot be built: see core's tests).
pub async fn key_of_255_bytes(f: &dyn StoreFactory) {
    let store = f.create().await;
    let long: String = (0..255).map(|i| ['a', 'B', '7', '-', '_', '.'][i % 6]).collect();
    let k = key(&long);
    set(&*store, &k, &SecretValue::from("long-key"), &Metadata::new()).await;
    assert_eq!(get_text(&*store, &long).await, "long-key");
    assert!(store.has(&k).await.expect("has"));
    if caps(&*store).list {
        assert_eq!(list_all(&*store, "", 100).await, vec![k.clone()]);
    }
    assert!(store.delete(&k).await.expect("delete"));
}

/// A key holding every allowed character works.
pub async fn key_with_every_allowed_character(f: &dyn StoreFactory) {
    let store = f.create().await;
    let all: String = ('a'..='z').chain('A'..='Z').chain('0'..='9').chain(['-', '_', '.']).collect();
    assert_eq!(all.len(), 65);
    let k = key(&all);
    set(&*store, &k, &SecretValue::from("every-char"), &Metadata::new()).await;
    assert_eq!(get_text(&*store, &all).await, "every-char");
    if caps(&*store).list {
        assert_eq!(list_all(&*store, "", 100).await, vec![k]);
    }
}

/// Keys that look like paths or flags (`.`, `..`, `-`, `_`, ...) are plain
/// keys: stored, listed and deleted without touching any other key.
pub async fn key_special_names(f: &dyn StoreFactory) {
    let store = f.create().await;
    let names = [".", "..", "...", "-", "_", "-rf", ".hidden", "trailing.", "a..b", "--", "._."];
    set_text(&*store, "sentinel", "untouched").await;
    for name in names {
        set_text(&*store, name, &format!("value of {name}")).await;
    }
    for name in names {
        assert_eq!(get_text(&*store, name).await, format!("value of {name}"), "key {name:?}");
        assert!(store.has(&key(name)).await.expect("has"), "key {name:?}");
    }
    if caps(&*store).list {
        let mut expected: Vec<CredentialKey> = names.iter().map(|n| key(n)).collect();
        expected.push(key("sentinel"));
        expected.sort();
        assert_eq!(list_all(&*store, "", 100).await, expected);
    }
    for name in names {
        assert!(store.delete(&key(name)).await.expect("delete"), "delete {name:?}");
    }
    assert_eq!(get_text(&*store, "sentinel").await, "untouched");
}

/// `Key` and `key` are two credentials.
pub async fn keys_are_case_sensitive(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "Key", "upper").await;
    set_text(&*store, "key", "lower").await;
    assert_eq!(get_text(&*store, "Key").await, "upper");
    assert_eq!(get_text(&*store, "key").await, "lower");
    assert!(store.get(&key("KEY")).await.expect("get").is_none());
}
