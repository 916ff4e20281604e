//! `memory:` URIs: [`MemoryScheme`] opens working stores with the settings
//! a config file gives, and refuses what it does not know. Apart from
//! `tests/it`, whose one test measures this binary's allocations.

use credstore_core::config::ConfigContext;
use credstore_core::{
    CredentialKey, CredentialStoreExt, Error, Metadata, SchemeRegistry, SecretValue, StoreScheme, StoreUri,
};
use credstore_memory::MemoryScheme;

fn registry() -> SchemeRegistry {
    let mut schemes = SchemeRegistry::new();
    schemes.register(MemoryScheme).unwrap();
    schemes
}

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

#[tokio::test]
async fn a_memory_uri_opens_a_store_that_keeps_what_is_written() {
    let store = registry().open("memory:?id=scratch&max_versions=2").await.unwrap();
    assert_eq!(store.info().id().as_str(), "scratch");
    let key = CredentialKey::new("api-token").unwrap();
    for v in ["one", "two", "three"] {
        store.set(&key, &SecretValue::from(v), &Metadata::new()).await.unwrap();
    }
    let read = store.get(&key).await.unwrap().expect("just written");
    assert_eq!(read.value.expose_str().unwrap(), "three");
    assert_eq!(store.info().capabilities().retention.max_versions, Some(2), "max_versions reached the store");
}

#[tokio::test]
async fn the_default_id_is_the_kind_and_settings_map_by_name() {
    let (id, settings) = MemoryScheme::settings(
        StoreUri::parse("memory:?env_prefix=APP_&max_versions=4&max_version_age_secs=60").unwrap(),
    )
    .unwrap();
    assert_eq!(id.as_str(), "memory");
    assert_eq!(settings.env_prefix.as_deref(), Some("APP_"));
    assert_eq!((settings.max_versions, settings.max_version_age_secs), (Some(4), Some(60)));
}

#[tokio::test]
async fn an_unknown_parameter_is_refused_naming_it() {
    let err = registry().open("memory:?max_verions=3").await.unwrap_err();
    assert_eq!(field(&err), "uri.max_verions", "{err}");
    assert!(err.to_string().contains("memory:"), "{err}");
}

#[tokio::test]
async fn a_secret_in_the_uri_is_refused_naming_the_env_way() {
    let err = registry().open("memory:?master_key=TOPSECRET").await.unwrap_err();
    assert_eq!(field(&err), "uri.master_key", "{err}");
    assert!(err.to_string().contains("master_key_env") && !err.to_string().contains("TOPSECRET"), "{err}");
}

#[tokio::test]
async fn a_host_a_path_or_a_bad_value_is_refused_before_opening() {
    for text in ["memory://host", "memory:some/path"] {
        let err = registry().open(text).await.unwrap_err();
        assert_eq!(field(&err), "uri", "{text}: {err}");
    }
    let err = registry().open("memory:?max_versions=many").await.unwrap_err();
    assert_eq!(field(&err), "uri.max_versions", "{err}");
    // What the settings refuse in a config file, they refuse here, naming the store.
    let err = MemoryScheme
        .open(StoreUri::parse("memory:?id=m&max_versions=0").unwrap(), &ConfigContext::new("."))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("max_versions"), "{err}");
}
