//! The availability probe, of a healthy store and of an unreachable one.

use std::sync::Arc;
use std::time::Instant;

use credstore_core::{
    CredentialStore, CredentialStoreExt, Error, ListOptions, Metadata, SecretValue, MAX_VALUE_BYTES,
};

use super::{
    assert_invalid_input, assert_no_secret, assert_unsupported, caps, key, ns, secret, UNREACHABLE_DEADLINE,
};
use crate::StoreFactory;

/// A healthy store, and a namespace handle on it, report available with no
/// reason, within the deadline.
pub async fn availability_when_healthy(f: &dyn StoreFactory) {
    let store = f.create().await;
    for handle in [Arc::clone(&store), store.with_namespace(&ns("probe")).expect("with_namespace")] {
        let a = tokio::time::timeout(UNREACHABLE_DEADLINE, handle.check_availability())
            .await
            .expect("the probe of a healthy store hangs");
        assert!(a.available, "a healthy store reported unavailable: {:?}", a.reason);
        assert_eq!(a.reason, None);
    }
}

async fn unreachable_store(f: &dyn StoreFactory) -> Arc<dyn CredentialStore> {
    f.unreachable()
        .await
        .expect("the store declares can_be_unavailable, so the factory must build an unreachable one")
}

/// An unreachable store says so, with a reason, within the deadline.
pub async fn unreachable_reports_unavailable(f: &dyn StoreFactory) {
    let store = unreachable_store(f).await;
    let started = Instant::now();
    let a = tokio::time::timeout(UNREACHABLE_DEADLINE, store.check_availability())
        .await
        .expect("the availability probe of an unreachable store must not hang");
    assert!(!a.available, "an unreachable store reported available");
    let reason = a.reason.expect("an unavailable store gives a reason");
    assert!(!reason.trim().is_empty(), "the reason is blank");
    assert!(started.elapsed() < UNREACHABLE_DEADLINE);
}

/// Operations on an unreachable store fail quickly with a retriable error
/// that names the store and does not contain the value.
pub async fn unreachable_operations_fail_fast_and_retriable(f: &dyn StoreFactory) {
    let store = unreachable_store(f).await;
    let k = key("unreachable");
    let v = secret("unreachable");
    let check = |op: &str, r: Result<Result<(), Error>, tokio::time::error::Elapsed>| {
        let err = r.unwrap_or_else(|_| panic!("{op} hung on an unreachable store")).expect_err(op);
        assert!(err.is_retriable(), "{op} on an unreachable store must be retriable, got {err:?}");
        assert_eq!(err.store(), Some(store.id()), "{op}: the error must name the store");
        assert_no_secret(op, &format!("{err} {err:?} {err:#?}"), &v);
    };
    let d = UNREACHABLE_DEADLINE;
    check(
        "set",
        tokio::time::timeout(d, async { store.set(&k, &v, &Metadata::new()).await.map(drop) }).await,
    );
    check("get", tokio::time::timeout(d, async { store.get(&k).await.map(drop) }).await);
    check("has", tokio::time::timeout(d, async { store.has(&k).await.map(drop) }).await);
    check("version", tokio::time::timeout(d, async { store.version(&k).await.map(drop) }).await);
    check("delete", tokio::time::timeout(d, async { store.delete(&k).await.map(drop) }).await);
    if caps(&*store).list {
        check(
            "list",
            tokio::time::timeout(d, async { store.list(&ListOptions::new()).await.map(drop) }).await,
        );
    }
}

/// Input a store must refuse before any I/O is refused with the input
/// error even when the backend cannot be reached: an over-limit value, an
/// over-long namespace, and whatever the store declares off.
pub async fn unreachable_store_refuses_bad_input_before_io(f: &dyn StoreFactory) {
    let store = unreachable_store(f).await;
    let k = key("before-io");
    let big = SecretValue::from("x".repeat(MAX_VALUE_BYTES + 1));
    let err = store.set(&k, &big, &Metadata::new()).await.expect_err("over-limit value");
    assert_invalid_input(&err, "value");
    let seg = ns(&"n".repeat(255));
    let long =
        store.with_namespace(&seg).and_then(|h| h.with_namespace(&seg)).and_then(|h| h.with_namespace(&seg));
    assert!(
        matches!(long, Err(Error::InvalidNamespace { .. })),
        "an over-long namespace: {:?}",
        long.map(|h| h.namespace().clone())
    );
    let c = caps(&*store);
    let v = SecretValue::from("v");
    if !c.binary {
        let bin = SecretValue::from(vec![0xff]);
        assert_unsupported(store.set(&k, &bin, &Metadata::new()).await, "a binary value");
    }
    if !c.metadata {
        let m = Metadata::try_from([("a", "b")]).expect("metadata");
        assert_unsupported(store.set(&k, &v, &m).await, "metadata");
    }
    if !c.create_only {
        assert_unsupported(store.create(&k, &v, &Metadata::new()).await, "a create-only write");
    }
    if !c.replace_if_version {
        let version = credstore_core::Version::new("1").expect("version");
        assert_unsupported(
            store.replace(&k, &v, &Metadata::new(), &version).await,
            "a replace-if-version write",
        );
    }
    if !c.list {
        assert_unsupported(store.list(&ListOptions::new()).await, "list");
    }
}
