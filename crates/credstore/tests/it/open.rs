//! `credstore::open` and `open_with`: the default schemes open working
//! stores, the layer parameters wrap them, and mistakes are named.

use std::sync::Arc;

use credstore::config::ConfigContext;
use credstore::sqlite::MasterKey;
use credstore::{
    async_trait, CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, Result, SchemeRegistry,
    SecretValue, StoreScheme, StoreUri,
};
use credstore_conformance::mock::{Fault, MockStore, Op};

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

fn key(name: &str) -> CredentialKey {
    CredentialKey::new(name).unwrap()
}

async fn text(store: &dyn CredentialStore, name: &str) -> Option<String> {
    store.get(&key(name)).await.unwrap().map(|c| c.value.expose_str().unwrap().to_owned())
}

/// `mock:`: the test's own [`MockStore`], which counts its calls, behind a
/// custom scheme.
#[derive(Debug)]
struct MockScheme(MockStore);

#[async_trait]
impl StoreScheme for MockScheme {
    fn schemes(&self) -> &[&'static str] {
        &["mock"]
    }

    async fn open(&self, uri: StoreUri, _ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        uri.finish()?;
        Ok(Arc::new(self.0.clone()))
    }
}

/// The default schemes and `mock:` over a fresh mock, which holds `k = v`.
async fn with_mock() -> (SchemeRegistry, MockStore) {
    let mock = MockStore::new("mock".parse().unwrap());
    mock.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let mut schemes = credstore::schemes();
    schemes.register(MockScheme(mock.clone())).unwrap();
    (schemes, mock)
}

#[tokio::test]
async fn a_memory_uri_opens_a_working_store() {
    let store = credstore::open("memory:?id=scratch").await.unwrap();
    assert_eq!(store.info().id().as_str(), "scratch");
    store.set(&key("a"), &SecretValue::from("b"), &Metadata::new()).await.unwrap();
    assert_eq!(text(&*store, "a").await.as_deref(), Some("b"));
}

#[tokio::test]
async fn a_sqlite_uri_opens_an_encrypted_file_relative_to_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::generate().to_base64().unwrap().to_string();
    let ctx = ConfigContext::new(dir.path()).with_env(move |v| (v == "APP_KEY").then(|| master.clone()));
    let uri = "sqlite:app.db?master_key_env=APP_KEY";
    let store = credstore::open_with(&credstore::schemes(), uri, &ctx).await.unwrap();
    store.set(&key("db-password"), &SecretValue::from("hunter2"), &Metadata::new()).await.unwrap();
    drop(store);
    assert!(dir.path().join("app.db").exists());
    let again = credstore::open_with(&credstore::schemes(), uri, &ctx).await.unwrap();
    assert_eq!(text(&*again, "db-password").await.as_deref(), Some("hunter2"));
}

#[tokio::test]
async fn read_only_refuses_writes_before_the_store_sees_them() {
    let (schemes, mock) = with_mock().await;
    let ctx = ConfigContext::new(".");
    let store = credstore::open_with(&schemes, "mock:?read_only", &ctx).await.unwrap();
    let err = store.set(&key("k"), &SecretValue::from("w"), &Metadata::new()).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(store.delete(&key("k")).await.is_err());
    assert_eq!((mock.calls(Op::Set), mock.calls(Op::Delete)), (1, 0), "only the fixture's own write");
    assert_eq!(text(&*store, "k").await.as_deref(), Some("v"), "reads still pass");
    let writable = credstore::open_with(&schemes, "mock:?read_only=false", &ctx).await.unwrap();
    writable.set(&key("k"), &SecretValue::from("w"), &Metadata::new()).await.unwrap();
}

#[tokio::test]
async fn cache_ttl_serves_a_second_read_without_asking_the_store() {
    let (schemes, mock) = with_mock().await;
    let ctx = ConfigContext::new(".");
    let cached = credstore::open_with(&schemes, "mock:?cache_ttl=30s", &ctx).await.unwrap();
    for _ in 0..3 {
        assert_eq!(text(&*cached, "k").await.as_deref(), Some("v"));
    }
    assert_eq!(mock.calls(Op::Get), 1, "the later reads were hits");
    mock.reset_calls();
    let plain = credstore::open_with(&schemes, "mock:", &ctx).await.unwrap();
    for _ in 0..3 {
        text(&*plain, "k").await;
    }
    assert_eq!(mock.calls(Op::Get), 3, "without cache_ttl every read reaches the store");
}

#[tokio::test]
async fn retries_retry_a_retriable_failure_that_many_times() {
    let (schemes, mock) = with_mock().await;
    let ctx = ConfigContext::new(".");
    let store = credstore::open_with(&schemes, "mock:?retries=2", &ctx).await.unwrap();
    mock.fail_next_op(Op::Get, 2, Fault::Unavailable);
    assert_eq!(text(&*store, "k").await.as_deref(), Some("v"), "two failures, then the third attempt");
    assert_eq!(mock.calls(Op::Get), 3);
    mock.fail_next_op(Op::Get, 3, Fault::Unavailable);
    assert!(store.get(&key("k")).await.unwrap_err().is_retriable(), "three failures outlast two retries");
    let plain = credstore::open_with(&schemes, "mock:", &ctx).await.unwrap();
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert!(plain.get(&key("k")).await.is_err(), "no retries without the parameter");
}

#[tokio::test]
async fn layer_parameters_that_do_not_parse_are_named() {
    for (text, name) in [
        ("memory:?cache_ttl=soon", "uri.cache_ttl"),
        ("memory:?cache_ttl=0s", "uri.cache_ttl"),
        ("memory:?read_only=maybe", "uri.read_only"),
        ("memory:?retries=-1", "uri.retries"),
        ("memory:?retries=11", "uri.retries"),
    ] {
        let err = credstore::open(text).await.unwrap_err();
        assert_eq!(field(&err), name, "{text}: {err}");
    }
}

#[tokio::test]
async fn an_unregistered_scheme_is_refused_listing_the_known_ones() {
    let err = credstore::open("ftp://files.internal/secrets").await.unwrap_err();
    assert_eq!(field(&err), "uri", "{err}");
    let shown = err.to_string();
    assert!(shown.contains("ftp") && shown.contains("memory") && shown.contains("sqlite"), "{shown}");
}

#[tokio::test]
async fn a_secret_in_the_uri_is_refused_naming_the_env_and_file_ways() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ConfigContext::new(dir.path());
    for (text, name) in [
        ("sqlite:app.db?master_key=c2VjcmV0", "master_key"),
        ("sqlite:app.db?passphrase=c2VjcmV0&read_only", "passphrase"),
        ("memory:?cache_ttl=30s&api_token=c2VjcmV0", "api_token"),
    ] {
        let err = credstore::open_with(&credstore::schemes(), text, &ctx).await.unwrap_err();
        assert_eq!(field(&err), format!("uri.{name}"), "{err}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains(&format!("{name}_env")) && shown.contains(&format!("{name}_file")), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
    }
    assert!(!dir.path().join("app.db").exists(), "nothing was opened");
}

#[tokio::test]
async fn an_unknown_parameter_is_refused_naming_it() {
    let err = credstore::open("memory:?cache_ttl=1m&max_verions=3").await.unwrap_err();
    assert_eq!(field(&err), "uri.max_verions", "{err}");
}
