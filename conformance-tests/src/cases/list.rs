//! Listing: order, prefixes, pages.

use std::collections::BTreeSet;

use credstore_core::{CredentialKey, ListCursor, ListOptions, Metadata, SecretValue, MAX_PAGE_SIZE};

use super::{key, list_all, names, set, set_text};
use crate::StoreFactory;

/// An empty store lists nothing, with no cursor.
pub async fn list_empty_store(f: &dyn StoreFactory) {
    let store = f.create().await;
    let page = store.list(&ListOptions::new()).await.expect("list");
    assert!(page.keys.is_empty(), "a fresh store lists {:?}", page.keys);
    assert!(page.next_cursor.is_none());
}

/// Keys come back in ascending byte order, whatever the insertion order.
pub async fn list_sorted(f: &dyn StoreFactory) {
    let store = f.create().await;
    let input = ["b", "a", "B", "A", "_x", "-x", ".x", "0", "9z", "a.b", "a-b", "a_b", "ab", "a", "zz", "Zz"];
    for n in input {
        set_text(&*store, n, "v").await;
    }
    let mut expected: Vec<&str> = input.to_vec();
    expected.sort_unstable();
    expected.dedup();
    let got = list_all(&*store, "", 1000).await;
    assert_eq!(got.iter().map(CredentialKey::as_str).collect::<Vec<_>>(), expected);
}

/// A prefix returns exactly the keys that start with it.
pub async fn list_prefix_bounded(f: &dyn StoreFactory) {
    let store = f.create().await;
    for n in ["ap", "app-c", "app.a", "app.b", "apple", "b.app", "APP.x"] {
        set_text(&*store, n, "v").await;
    }
    assert_eq!(names(list_all(&*store, "app.", 100).await), ["app.a", "app.b"]);
    assert_eq!(names(list_all(&*store, "app", 100).await), ["app-c", "app.a", "app.b", "apple"]);
    assert_eq!(names(list_all(&*store, "app.a", 100).await), ["app.a"]);
    assert!(list_all(&*store, "zzz", 100).await.is_empty());
    assert!(list_all(&*store, "app.aa", 100).await.is_empty());
}

/// Paging through more than 250 keys yields each exactly once, in order,
/// whatever the page size; the default page is `DEFAULT_PAGE_SIZE`.
pub async fn list_paginated_over_250_keys(f: &dyn StoreFactory) {
    let store = f.create().await;
    let store = &store;
    let keys: Vec<CredentialKey> = (0..260).map(|i| key(&format!("page-{i:04}"))).collect();
    // Written 16 at a time to keep remote backends quick.
    for chunk in keys.chunks(16) {
        futures::future::join_all(
            chunk
                .iter()
                .map(|k| async move { set(&**store, k, &SecretValue::from("v"), &Metadata::new()).await }),
        )
        .await;
    }
    set_text(&**store, "other", "v").await;
    for page in [7, 100, MAX_PAGE_SIZE] {
        let got = list_all(&**store, "page-", page).await;
        let unique: BTreeSet<_> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "page size {page}: duplicates");
        assert_eq!(got, keys, "page size {page}: gaps or wrong order");
    }
    let first = store.list(&ListOptions::new()).await.expect("list");
    assert_eq!(first.keys.len(), credstore_core::DEFAULT_PAGE_SIZE);
    assert!(first.next_cursor.is_some());
}

/// Deleted keys are not listed.
pub async fn list_excludes_deleted(f: &dyn StoreFactory) {
    let store = f.create().await;
    for i in 0..5 {
        set_text(&*store, &format!("k{i}"), "v").await;
    }
    assert!(store.delete(&key("k1")).await.expect("delete"));
    assert!(store.delete(&key("k3")).await.expect("delete"));
    assert_eq!(names(list_all(&*store, "", 100).await), ["k0", "k2", "k4"]);
}

/// A cursor after the last key gives an empty last page; a cursor between
/// keys resumes after it.
pub async fn list_cursor_past_the_end_is_empty(f: &dyn StoreFactory) {
    let store = f.create().await;
    for n in ["m1", "m2", "m3"] {
        set_text(&*store, n, "v").await;
    }
    let page = store.list(&ListOptions::new().with_cursor(Some(ListCursor::after(&key("zzz"))))).await;
    let page = page.expect("list after the end");
    assert!(page.keys.is_empty() && page.next_cursor.is_none(), "{page:?}");
    let page = store.list(&ListOptions::new().with_cursor(Some(ListCursor::after(&key("m1"))))).await;
    assert_eq!(names(page.expect("list after m1").keys), ["m2", "m3"]);
}
