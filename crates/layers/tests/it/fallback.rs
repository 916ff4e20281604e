//! Fallback chains of mock stores: read order, where writes go, merged
//! listings, availability and errors.

use std::sync::Arc;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{
    Availability, CredentialKey, CredentialStore, CredentialStoreExt, Error, ListCursor, ListOptions,
    Metadata, Namespace, Persistence, SecretValue, StoreExt, StoreId,
};
use credstore_layers::{FallbackLayer, FallbackStore, FALLBACK_KIND};

fn mock(id: &str) -> MockStore {
    MockStore::new(StoreId::new(id).expect("valid id"))
}

fn arc(mock: &MockStore) -> Arc<dyn CredentialStore> {
    Arc::new(mock.clone())
}

async fn put(store: &dyn CredentialStore, name: &str, value: &str) {
    store.set(&key(name), &SecretValue::from(value), &Metadata::new()).await.expect("set");
}

async fn text(store: &dyn CredentialStore, name: &str) -> Option<String> {
    store.get(&key(name)).await.expect("get").map(|c| c.value.expose_str().expect("text").to_owned())
}

/// env (read-only) -> keychain (writable) -> file (read-only)
fn laptop() -> (MockStore, MockStore, MockStore, FallbackStore) {
    let (env, keychain, file) = (mock("env"), mock("keychain"), mock("file"));
    let chain = FallbackStore::new(StoreId::new("laptop").expect("id"))
        .with_read_only(arc(&env))
        .with_writable(arc(&keychain))
        .with_read_only(arc(&file));
    (env, keychain, file, chain)
}

#[tokio::test]
async fn reads_return_the_first_hit_in_order() {
    let (env, keychain, file, chain) = laptop();
    put(&env, "shadowed", "from-env").await;
    put(&keychain, "shadowed", "from-keychain").await;
    put(&file, "only-file", "from-file").await;
    put(&keychain, "only-keychain", "from-keychain").await;

    assert_eq!(text(&chain, "shadowed").await.as_deref(), Some("from-env"));
    assert_eq!(text(&chain, "only-keychain").await.as_deref(), Some("from-keychain"));
    assert_eq!(text(&chain, "only-file").await.as_deref(), Some("from-file"));
    assert_eq!(text(&chain, "nowhere").await, None);
    assert!(chain.has(&key("only-file")).await.expect("has"), "has is any");
    assert!(!chain.has(&key("nowhere")).await.expect("has"));
    let env_version = env.version(&key("shadowed")).await.expect("version");
    assert_eq!(
        chain.version(&key("shadowed")).await.expect("version"),
        env_version,
        "the first hit's version"
    );

    env.reset_calls();
    file.reset_calls();
    text(&chain, "shadowed").await;
    assert_eq!(file.calls(Op::Get), 0, "a hit stops the chain");
}

#[tokio::test]
async fn writes_and_deletes_go_to_the_first_writable_store_only() {
    let (env, keychain, file, chain) = laptop();
    put(&chain, "token", "v1").await;
    assert_eq!(text(&keychain, "token").await.as_deref(), Some("v1"));
    chain.create(&key("new"), &SecretValue::from("n"), &Metadata::new()).await.expect("create");
    assert!(chain.delete(&key("token")).await.expect("delete"));
    assert!(!chain.delete(&key("token")).await.expect("delete"));
    assert_eq!((env.calls(Op::Set), file.calls(Op::Set)), (0, 0), "read-only stores are never written");
    assert_eq!((env.calls(Op::Delete), file.calls(Op::Delete)), (0, 0));
    assert!(keychain.has(&key("new")).await.expect("has"));
    assert!(chain.writable().is_some_and(|w| w.id().as_str() == "keychain"));

    // Conditions are checked by the writable store alone.
    put(&file, "in-file", "f").await;
    chain
        .create(&key("in-file"), &SecretValue::from("k"), &Metadata::new())
        .await
        .expect("absent from the keychain");
    let err = chain.create(&key("in-file"), &SecretValue::from("k2"), &Metadata::new()).await.unwrap_err();
    assert!(matches!(&err, Error::PreconditionFailed { store, .. } if store.as_str() == "laptop"), "{err:?}");
    assert!(err.to_string().contains("keychain"), "the member is named in the reason: {err}");
}

#[tokio::test]
async fn a_chain_without_a_writable_store_refuses_writes_before_io() {
    let (a, b) = (mock("a"), mock("b"));
    let chain =
        FallbackStore::new(StoreId::new("ro").expect("id")).with_read_only(arc(&a)).with_read_only(arc(&b));
    let err = chain.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert!(matches!(chain.delete(&key("k")).await, Err(Error::Unsupported { .. })));
    assert_eq!(a.total_calls() + b.total_calls(), 0);
    let caps = chain.capabilities();
    assert!(!caps.create_only && !caps.replace_if_version);
    assert_eq!(caps.persistence, Persistence::Process);
    assert_eq!(*chain.kind(), FALLBACK_KIND);
}

#[tokio::test]
async fn list_merges_sorted_unique_and_paginates() {
    let (env, keychain, file, chain) = laptop();
    for (store, names) in [
        (&env, &["a", "d", "g", "j"][..]),
        (&keychain, &["b", "d", "e", "h", "k"][..]),
        (&file, &["c", "d", "f", "i", "j", "l", "m"][..]),
    ] {
        for name in names {
            put(store, name, "v").await;
        }
    }
    let expected: Vec<CredentialKey> = "abcdefghijklm".chars().map(|c| key(&c.to_string())).collect();
    for limit in [1, 2, 3, 5, 13, 100] {
        let mut seen = Vec::new();
        let mut cursor: Option<ListCursor> = None;
        loop {
            let options = ListOptions::new().with_limit(limit).expect("limit").with_cursor(cursor.clone());
            let page = chain.list(&options).await.expect("list");
            assert!(page.keys.len() <= limit);
            seen.extend(page.keys);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            assert!(seen.len() <= expected.len(), "the listing does not end");
        }
        assert_eq!(seen, expected, "limit {limit}");
    }
    let prefixed = chain.list(&ListOptions::new().with_prefix("d").expect("prefix")).await.expect("list");
    assert_eq!(prefixed.keys, vec![key("d")]);
    assert_eq!(prefixed.next_cursor, None);
}

#[tokio::test]
async fn availability_is_the_primarys_with_the_others_reasons() {
    let (env, keychain, _file, chain) = laptop();
    assert_eq!(chain.check_availability().await, Availability::up());
    keychain.set_availability(Availability::down("locked"));
    let a = chain.check_availability().await;
    assert!(a.available, "the primary is up");
    assert!(a.reason.as_deref().is_some_and(|r| r.contains("'keychain': locked")), "{a:?}");
    env.set_availability(Availability::down("no environment"));
    let a = chain.check_availability().await;
    assert!(!a.available, "the primary is down");
    assert_eq!(a.reason.as_deref(), Some("'env': no environment; 'keychain': locked"));
}

#[tokio::test]
async fn errors_fail_reads_unless_unavailable_stores_are_skipped() {
    let (env, keychain, _file, chain) = laptop();
    put(&keychain, "k", "v").await;
    env.fail_next_op(Op::Get, 1, Fault::Unavailable);
    let err = chain.get(&key("k")).await.expect_err("strict by default");
    assert_eq!(err.store().map(|s| s.as_str()), Some("laptop"), "errors name the chain");
    assert!(err.is_retriable());

    let lenient = chain.clone().skip_unavailable(true);
    env.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert_eq!(text(&lenient, "k").await.as_deref(), Some("v"), "a later hit past an unavailable store");
    env.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert!(lenient.get(&key("nowhere")).await.is_err(), "a miss everywhere cannot claim absence");
    env.fail_next_op(Op::Has, 1, Fault::PermissionDenied);
    assert!(
        matches!(lenient.has(&key("k")).await, Err(Error::PermissionDenied { .. })),
        "only Unavailable is skipped"
    );
}

#[tokio::test]
async fn namespaces_apply_to_every_store() {
    let (env, keychain, file, chain) = laptop();
    let tenant = Namespace::new("tenant").expect("ns");
    put(&*file.with_namespace(&tenant).expect("ns"), "k", "file-tenant").await;
    put(&file, "k", "file-root").await;
    let handle = chain.with_namespace(&tenant).expect("ns");
    assert_eq!(handle.namespace().as_str(), "tenant");
    assert_eq!(handle.id().as_str(), "laptop");
    assert_eq!(text(&*handle, "k").await.as_deref(), Some("file-tenant"));
    put(&*handle, "w", "written").await;
    assert_eq!(text(&*keychain.with_namespace(&tenant).expect("ns"), "w").await.as_deref(), Some("written"));
    assert_eq!(text(&keychain, "w").await, None);
    assert_eq!(env.calls(Op::Set), 0);
}

#[tokio::test]
async fn the_layer_keeps_the_wrapped_store_first_and_writable() {
    let (primary, defaults) = (mock("primary"), mock("defaults"));
    put(&defaults, "timeout", "30").await;
    let store = arc(&primary).with_layer(FallbackLayer::new().with_read_only(arc(&defaults)));
    assert_eq!(store.id().as_str(), "primary");
    assert_eq!(store.kind(), primary.kind());
    assert_eq!(text(&*store, "timeout").await.as_deref(), Some("30"));
    put(&*store, "timeout", "60").await;
    assert_eq!(text(&*store, "timeout").await.as_deref(), Some("60"));
    assert_eq!(
        text(&defaults, "timeout").await.as_deref(),
        Some("30"),
        "fallbacks of the layer are never written"
    );
}

#[tokio::test]
async fn list_needs_every_store_to_list() {
    let no_list = MockStore::new(StoreId::new("no-list").expect("id"))
        .with_capabilities(credstore_core::Capabilities::full().with_list(false));
    let chain = FallbackStore::new(StoreId::new("chain").expect("id"))
        .with_writable(arc(&mock("a")))
        .with_read_only(arc(&no_list));
    assert!(!chain.capabilities().list);
    let err = chain.list(&ListOptions::new()).await.expect_err("unsupported");
    assert!(matches!(&err, Error::Unsupported { store, .. } if store.as_str() == "chain"), "{err:?}");
    assert_eq!(no_list.total_calls(), 0, "refused before any I/O");
}

#[tokio::test]
async fn a_chain_has_no_change_feed_even_over_stores_that_have_one() {
    let with_feed =
        |id: &str| mock(id).with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true));
    let (env, keychain, file) = (with_feed("env"), with_feed("keychain"), with_feed("file"));
    let chain = FallbackStore::new(StoreId::new("laptop").expect("id"))
        .with_read_only(arc(&env))
        .with_writable(arc(&keychain))
        .with_read_only(arc(&file));
    assert!(keychain.capabilities().change_feed, "the members have feeds");
    assert!(!chain.capabilities().change_feed, "a change of one member says nothing of the chain's answers");
    let tenant = chain.with_namespace(&Namespace::new("tenant").expect("ns")).expect("ns");
    for handle in [&chain as &dyn CredentialStore, &*tenant] {
        match handle.subscribe().await {
            Err(Error::Unsupported { store, .. }) => assert_eq!(store.as_str(), "laptop"),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
    let asked: usize = [&env, &keychain, &file].iter().map(|m| m.calls(Op::Subscribe)).sum();
    assert_eq!(asked, 0, "refused before any member is asked");
}

#[tokio::test]
async fn a_chain_declares_no_history_refuses_it_and_purges_a_key_from_its_writable_store() {
    let caps = MockStore::DEFAULT_CAPABILITIES
        .with_versions(true)
        .with_recover_deleted(true)
        .with_retention(credstore_core::Retention::versions(5));
    let (env, writer) = (mock("env"), mock("keychain").with_capabilities(caps));
    let chain = FallbackStore::new(StoreId::new("laptop").expect("id"))
        .with_read_only(arc(&env))
        .with_writable(arc(&writer));
    let declared = chain.capabilities();
    assert!(!declared.versions && !declared.recover_deleted, "{declared:?}");
    assert_eq!(declared.retention, credstore_core::Retention::NONE);
    put(&chain, "k", "v1").await;
    let first = writer.version(&key("k")).await.expect("version").expect("written to the writable store");
    put(&chain, "k", "v2").await;
    let unsupported = |r: credstore_core::Result<()>| match r {
        Err(Error::Unsupported { store, .. }) => assert_eq!(store.as_str(), "laptop"),
        other => panic!("expected Unsupported from the chain, got {other:?}"),
    };
    unsupported(chain.get_version(&key("k"), &first).await.map(drop));
    unsupported(chain.list_versions(&key("k"), &credstore_core::VersionListOptions::new()).await.map(drop));
    unsupported(chain.purge(&key("k"), &credstore_core::PurgeTarget::Version(first.clone())).await.map(drop));
    unsupported(chain.restore(&key("k"), &first, &credstore_core::SetOptions::new()).await.map(drop));
    assert_eq!(writer.calls(Op::GetVersion) + writer.calls(Op::ListVersions), 0, "refused before any I/O");
    assert!(chain.purge(&key("k"), &credstore_core::PurgeTarget::Key).await.expect("purge"));
    assert_eq!(writer.calls(Op::Purge), 1);
    let history = writer.list_versions(&key("k"), &credstore_core::VersionListOptions::new()).await;
    assert!(
        history.expect("list_versions").versions.is_empty(),
        "the purge left history in the writable store"
    );
    assert_eq!(text(&chain, "k").await, None);
}
