//! Handles on namespaces from `with_namespace`: isolation, nesting, caps.

use credstore_core::{CredentialStoreExt, Error, Namespace, NamespaceError, SecretValue, MAX_NAMESPACE_LEN};

use super::{absent, caps, get_text, key, list_all, meta, meta_if, must_get, names, ns, set, set_text};
use crate::StoreFactory;

/// Two stores from the factory never see each other's keys.
pub async fn stores_from_the_factory_are_isolated(f: &dyn StoreFactory) {
    let a = f.create().await;
    let b = f.create().await;
    let k = key("shared-name");
    set(&*a, &k, &SecretValue::from("in-a"), &meta_if(&*a, meta([("from", "a")]))).await;
    assert!(b.get(&k).await.expect("get").is_none(), "store b sees a's key");
    set(&*b, &k, &SecretValue::from("in-b"), &meta_if(&*b, meta([("from", "b")]))).await;
    assert_eq!(get_text(&*a, "shared-name").await, "in-a");
    assert_eq!(get_text(&*b, "shared-name").await, "in-b");
    assert!(a.delete(&k).await.expect("delete"));
    assert_eq!(get_text(&*b, "shared-name").await, "in-b", "a delete in a removed b's key");
    set_text(&*a, "only-a", "v").await;
    if caps(&*b).list {
        assert_eq!(list_all(&*b, "", 100).await, vec![k]);
    }
}

/// Handles on two namespaces, and the handle they came from, never see
/// each other's keys; each reads its own value under one key name.
pub async fn namespace_handles_isolate_keys(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("tenant-a")).expect("with_namespace a");
    let b = root.with_namespace(&ns("tenant-b")).expect("with_namespace b");
    let k = key("api-key");
    set_text(&*a, "api-key", "value-a").await;
    assert!(absent(&*b, &k).await, "namespace b sees a's key");
    assert!(absent(&*root, &k).await, "the parent handle sees a key of namespace a");
    set_text(&*b, "api-key", "value-b").await;
    set_text(&*root, "api-key", "value-root").await;
    assert_eq!(get_text(&*a, "api-key").await, "value-a");
    assert_eq!(get_text(&*b, "api-key").await, "value-b");
    assert_eq!(get_text(&*root, "api-key").await, "value-root");
}

/// A delete through one namespace's handle leaves the same key of other
/// namespaces, and of the parent, in place.
pub async fn namespace_handles_isolate_deletes(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("del-a")).expect("with_namespace");
    let b = root.with_namespace(&ns("del-b")).expect("with_namespace");
    for (store, v) in [(&a, "a"), (&b, "b"), (&root, "root")] {
        set_text(&**store, "victim", v).await;
    }
    assert!(a.delete(&key("victim")).await.expect("delete in a"));
    assert!(absent(&*a, &key("victim")).await);
    assert_eq!(get_text(&*b, "victim").await, "b", "a delete in a removed b's key");
    assert_eq!(get_text(&*root, "victim").await, "root", "a delete in a removed the parent's key");
    assert!(!a.delete(&key("victim")).await.expect("delete again"), "a second delete in a found a key");
    assert!(root.delete(&key("victim")).await.expect("delete in root"));
    assert_eq!(get_text(&*b, "victim").await, "b", "a delete in the parent removed b's key");
}

/// Each namespace lists its own keys only.
pub async fn namespace_handles_isolate_listing(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("list-a")).expect("with_namespace");
    let b = root.with_namespace(&ns("list-b")).expect("with_namespace");
    for n in ["a1", "a2", "shared"] {
        set_text(&*a, n, "v").await;
    }
    for n in ["b1", "shared"] {
        set_text(&*b, n, "v").await;
    }
    set_text(&*root, "r1", "v").await;
    assert_eq!(names(list_all(&*a, "", 100).await), ["a1", "a2", "shared"]);
    assert_eq!(names(list_all(&*b, "", 100).await), ["b1", "shared"]);
    assert_eq!(names(list_all(&*root, "", 100).await), ["r1"]);
    assert_eq!(names(list_all(&*a, "a", 100).await), ["a1", "a2"]);
}

/// Two handles on one namespace share its keys.
pub async fn handles_on_one_namespace_share_keys(f: &dyn StoreFactory) {
    let root = f.create().await;
    let one = root.with_namespace(&ns("same")).expect("with_namespace");
    let two = root.with_namespace(&ns("same")).expect("with_namespace");
    set_text(&*one, "k", "written by one").await;
    assert_eq!(get_text(&*two, "k").await, "written by one");
    assert!(two.delete(&key("k")).await.expect("delete"));
    assert!(absent(&*one, &key("k")).await, "a delete through one handle did not reach the other");
}

/// The handle on `a` asked for `b` is the handle on `a/b`: both see the
/// same keys, whichever way they were made.
pub async fn nested_namespaces_join(f: &dyn StoreFactory) {
    let root = f.create().await;
    let nested = root
        .with_namespace(&ns("outer"))
        .expect("with_namespace outer")
        .with_namespace(&ns("inner"))
        .expect("with_namespace inner");
    let direct = root.with_namespace(&ns("outer/inner")).expect("with_namespace outer/inner");
    set_text(&*nested, "k", "via nesting").await;
    assert_eq!(get_text(&*direct, "k").await, "via nesting");
    set_text(&*direct, "k2", "via the joined name").await;
    assert_eq!(get_text(&*nested, "k2").await, "via the joined name");
    let deeper = direct.with_namespace(&ns("x/y")).expect("with_namespace x/y");
    set_text(&*deeper, "k3", "deep").await;
    let deep_direct = root.with_namespace(&ns("outer/inner/x/y")).expect("with_namespace");
    assert_eq!(get_text(&*deep_direct, "k3").await, "deep");
}

/// `a/b` is isolated from `a` and from `b` at the root.
pub async fn nested_namespace_isolated_from_parent_and_root(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("a")).expect("with_namespace a");
    let ab = a.with_namespace(&ns("b")).expect("with_namespace a/b");
    let b = root.with_namespace(&ns("b")).expect("with_namespace b");
    set_text(&*ab, "k", "in a/b").await;
    assert!(absent(&*a, &key("k")).await, "namespace a sees a key of a/b");
    assert!(absent(&*b, &key("k")).await, "namespace b sees a key of a/b");
    assert!(absent(&*root, &key("k")).await, "the root sees a key of a/b");
    set_text(&*a, "k", "in a").await;
    set_text(&*b, "k", "in b").await;
    assert_eq!(get_text(&*ab, "k").await, "in a/b");
    assert!(a.delete(&key("k")).await.expect("delete"));
    assert_eq!(get_text(&*ab, "k").await, "in a/b", "a delete in a removed a key of a/b");
    assert_eq!(get_text(&*b, "k").await, "in b");
}

/// A listing of `a` never shows the keys of `a/b`.
pub async fn listing_excludes_nested_namespaces(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("parent")).expect("with_namespace");
    let ab = a.with_namespace(&ns("child")).expect("with_namespace");
    set_text(&*a, "p1", "v").await;
    for n in ["c1", "c2", "p1"] {
        set_text(&*ab, n, "v").await;
    }
    assert_eq!(names(list_all(&*a, "", 100).await), ["p1"]);
    assert_eq!(names(list_all(&*ab, "", 100).await), ["c1", "c2", "p1"]);
    assert!(list_all(&*root, "", 100).await.is_empty(), "the root lists keys of nested namespaces");
}

/// `namespace()` reports the joined namespace of every handle.
pub async fn namespace_reports_joined_namespace(f: &dyn StoreFactory) {
    let root = f.create().await;
    let base = root.namespace().clone();
    let a = root.with_namespace(&ns("t1")).expect("with_namespace");
    assert_eq!(a.namespace(), &base.join(&ns("t1")).unwrap());
    let ab = a.with_namespace(&ns("p1/env")).expect("with_namespace");
    assert_eq!(ab.namespace(), &base.join(&ns("t1/p1/env")).unwrap());
    assert_eq!(ab.namespace().segments().last(), Some("env"));
}

/// The empty namespace gives a handle on the same namespace: same keys,
/// same `namespace()`.
pub async fn empty_namespace_is_the_same_namespace(f: &dyn StoreFactory) {
    let root = f.create().await;
    let same = root.with_namespace(&Namespace::root()).expect("with_namespace root");
    assert_eq!(same.namespace(), root.namespace());
    set_text(&*same, "k", "through the root handle").await;
    assert_eq!(get_text(&*root, "k").await, "through the root handle");
    let a = root.with_namespace(&ns("a")).expect("with_namespace");
    let a_again = a.with_namespace(&Namespace::root()).expect("with_namespace root");
    assert_eq!(a_again.namespace(), a.namespace());
    set_text(&*a, "k", "in a").await;
    assert_eq!(get_text(&*a_again, "k").await, "in a");
}

/// A joined namespace over the length cap is refused with
/// `InvalidNamespace`, before any I/O, and the parent handle still works.
pub async fn over_long_namespace_refused_before_io(f: &dyn StoreFactory) {
    let root = f.create().await;
    let seg = "n".repeat(255);
    let long = ns(&format!("{seg}/{seg}"));
    assert!(long.as_str().len() <= MAX_NAMESPACE_LEN);
    let err = match root.with_namespace(&long).and_then(|h| h.with_namespace(&long)) {
        Ok(h) => panic!("a namespace of over {MAX_NAMESPACE_LEN} bytes was accepted: {:?}", h.namespace()),
        Err(e) => e,
    };
    match &err {
        Error::InvalidNamespace { reason: NamespaceError::TooLong { max, .. }, .. } => {
            assert!(*max <= MAX_NAMESPACE_LEN, "the cap {max} is over MAX_NAMESPACE_LEN");
        }
        other => panic!("expected InvalidNamespace(TooLong), got {other:?}"),
    }
    assert!(!err.is_retriable());
    set_text(&*root, "still-works", "v").await;
    assert_eq!(get_text(&*root, "still-works").await, "v");
}

/// Namespace handles keep the store's id, kind and capabilities.
pub async fn namespace_handles_keep_id_kind_and_capabilities(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("keep/me")).expect("with_namespace");
    assert_eq!(a.id(), root.id());
    assert_eq!(a.kind(), root.kind());
    assert_eq!(a.capabilities(), root.capabilities());
    let probe = a.check_availability().await;
    assert!(probe.available, "a namespace handle of a healthy store is unavailable: {:?}", probe.reason);
    let c = {
        set_text(&*a, "k", "v").await;
        must_get(&*a, &key("k")).await
    };
    assert_eq!(c.key, key("k"));
}
