//! The read-only layer: no write reaches the backend, reads pass through.

use std::sync::Arc;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{MockStore, Op};
use credstore_core::{
    CredentialStore, CredentialStoreExt, Error, ListOptions, Metadata, Namespace, SecretValue, StoreExt,
    StoreId,
};
use credstore_layers::{ReadOnlyLayer, READ_ONLY_OPERATION};

fn assert_refused_as(result: credstore_core::Result<impl std::fmt::Debug>, expected: &str) {
    match result {
        Err(Error::Unsupported { store, operation }) => {
            assert_eq!(store.as_str(), "backend");
            assert_eq!(operation, expected);
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

fn assert_refused(result: credstore_core::Result<impl std::fmt::Debug>) {
    assert_refused_as(result, READ_ONLY_OPERATION)
}

#[tokio::test]
async fn no_write_reaches_the_backend() {
    let mock = MockStore::new(StoreId::new("backend").expect("id"));
    let existing = mock.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.expect("set").version;
    let store = (Arc::new(mock.clone()) as Arc<dyn CredentialStore>).with_layer(ReadOnlyLayer::new());
    let tenant = store.with_namespace(&Namespace::new("tenant").expect("ns")).expect("ns");
    mock.reset_calls();

    for handle in [&store, &tenant] {
        let v = SecretValue::from("new");
        assert_refused(handle.set(&key("k"), &v, &Metadata::new()).await);
        // Conditional modes are declared off, so the write's check refuses
        // them first.
        assert_refused_as(handle.create(&key("k2"), &v, &Metadata::new()).await, "create-only writes");
        let replace = handle.replace(&key("k"), &v, &Metadata::new(), &existing).await;
        assert_refused_as(replace, "replace-if-version writes");
        assert_refused(handle.delete(&key("k")).await);
        // Input no store accepts is refused by the write's check, before the
        // layer: it never reaches the backend either.
        let big = SecretValue::from("x".repeat(credstore_core::MAX_VALUE_BYTES + 1));
        let err = handle.set(&key("k"), &big, &Metadata::new()).await.expect_err("over the limit");
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "value"), "{err:?}");
    }
    assert_eq!(mock.calls(Op::Set), 0, "no write reached the backend");
    assert_eq!(mock.calls(Op::Delete), 0, "no delete reached the backend");

    let read = store.get(&key("k")).await.expect("get").expect("present");
    assert_eq!(read.value.expose_str().expect("text"), "v", "the value is untouched and readable");
    assert!(store.has(&key("k")).await.expect("has"));
    assert_eq!(store.version(&key("k")).await.expect("version"), Some(existing));
    assert_eq!(store.list(&ListOptions::new()).await.expect("list").keys, vec![key("k")]);
    assert!(tenant.get(&key("k")).await.expect("get").is_none(), "the namespace handle is the backend's");
    assert!(store.check_availability().await.available);
}

#[tokio::test]
async fn capabilities_say_no_conditional_write_is_accepted() {
    let mock = MockStore::new(StoreId::new("backend").expect("id"));
    let store = (Arc::new(mock.clone()) as Arc<dyn CredentialStore>).with_layer(ReadOnlyLayer::new());
    let caps = store.capabilities();
    assert!(!caps.create_only && !caps.replace_if_version);
    let inner = mock.capabilities();
    assert_eq!(
        (caps.list, caps.metadata, caps.binary, caps.persistence),
        (inner.list, inner.metadata, inner.binary, inner.persistence)
    );
    assert_eq!(store.id(), mock.id());
    assert_eq!(store.kind(), mock.kind());
}

#[tokio::test]
async fn a_read_only_store_reports_the_changes_made_through_the_wrapped_store() {
    let mock = MockStore::new(StoreId::new("backend").expect("id"))
        .with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true));
    let store = (Arc::new(mock.clone()) as Arc<dyn CredentialStore>).with_layer(ReadOnlyLayer::new());
    assert!(store.capabilities().change_feed, "the wrapped store's feed is declared");
    let tenant = store.with_namespace(&Namespace::new("tenant").expect("ns")).expect("ns");
    let mut feed = tenant.subscribe().await.expect("subscribe through the read-only handle");
    let writer = mock.with_namespace(&Namespace::new("tenant").expect("ns")).expect("ns");
    let written = writer.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.expect("set");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next()).await.expect("in time");
    match event {
        Some(credstore_core::FeedEvent::Changed(change)) => {
            assert_eq!(
                (change.namespace, change.key, change.version),
                (Namespace::root(), key("k"), Some(written.version))
            )
        }
        other => panic!("expected the write, got {other:?}"),
    }
    assert_eq!(mock.calls(Op::Subscribe), 1);
}

#[tokio::test]
async fn history_is_read_through_while_purge_restore_and_expiry_are_refused_before_io() {
    let caps = MockStore::DEFAULT_CAPABILITIES
        .with_versions(true)
        .with_expiry(true)
        .with_retention(credstore_core::Retention::versions(5));
    let mock = MockStore::new(StoreId::new("backend").expect("id")).with_capabilities(caps);
    let first = mock.set(&key("k"), &SecretValue::from("v1"), &Metadata::new()).await.expect("set").version;
    mock.set(&key("k"), &SecretValue::from("v2"), &Metadata::new()).await.expect("set");
    let store = (Arc::new(mock.clone()) as Arc<dyn CredentialStore>).with_layer(ReadOnlyLayer::new());
    let declared = store.capabilities();
    assert!(declared.versions && !declared.expiry, "reads of history stay, expiring writes go: {declared:?}");
    mock.reset_calls();
    let old = store.get_version(&key("k"), &first).await.expect("get_version").expect("kept");
    assert_eq!(old.value.expose_str().expect("text"), "v1");
    let page = store.list_versions(&key("k"), &credstore_core::VersionListOptions::new()).await;
    assert_eq!(page.expect("list_versions").versions.len(), 2);
    assert_refused(store.purge(&key("k"), &credstore_core::PurgeTarget::Key).await);
    assert_refused(store.purge(&key("k"), &credstore_core::PurgeTarget::Version(first.clone())).await);
    assert_refused(store.restore(&key("k"), &first, &credstore_core::SetOptions::new()).await);
    let expiring = credstore_core::SetOptions::new()
        .with_expires_at(Some(std::time::SystemTime::now() + std::time::Duration::from_secs(60)));
    let r = store.set_opts(&key("k"), &SecretValue::from("x"), &Metadata::new(), &expiring).await;
    assert_refused_as(r, "expiring credentials");
    assert_eq!((mock.calls(Op::Purge), mock.calls(Op::Set)), (0, 0), "a refused call reached the backend");
    assert_eq!(
        mock.get(&key("k")).await.expect("get").expect("kept").value.expose_str().expect("text"),
        "v2"
    );
}
