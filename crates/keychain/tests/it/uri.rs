//! `keychain:` URIs: [`KeychainScheme`] opens a working store on kernel
//! keyutils (a session keyring of the test's own) with the settings a
//! config file gives, and refuses what it does not know.

use credstore_core::config::ConfigContext;
use credstore_core::{
    CredentialKey, CredentialStoreExt, Error, Metadata, SchemeRegistry, SecretValue, StoreUri,
};
use credstore_keychain::{KeychainScheme, Platform};

use crate::util::keyctl;

fn registry() -> SchemeRegistry {
    let mut schemes = SchemeRegistry::new();
    schemes.register(KeychainScheme).unwrap();
    schemes
}

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

#[test]
fn a_keychain_uri_opens_a_keyutils_store_that_keeps_what_is_written() {
    if let Err(why) = keyctl::usable() {
        assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
        eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
        return;
    }
    let session = keyctl::own_session().expect("a session keyring of the test's own");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let uri = StoreUri::parse("keychain:?id=uri-keys&platform=keyutils&keyring=session&timeout_ms=2000")
            .unwrap();
        let store = registry().open_uri(uri, &ConfigContext::new(".")).await.unwrap();
        assert_eq!(store.info().id().as_str(), "uri-keys");
        let key = CredentialKey::new("api-token").unwrap();
        store.set(&key, &SecretValue::from("hunter2"), &Metadata::new()).await.unwrap();
        let read = store.get(&key).await.unwrap().expect("just written");
        assert_eq!(read.value.expose_str().unwrap(), "hunter2");
    });
    // In the kernel, in the session keyring the URI named.
    let ns = keyctl::search(session, "keyring", "credstore:uri-keys").expect("the store's keyring");
    keyctl::search(ns, "keyring", "api-token").expect("the key's keyring");
}

#[test]
fn an_unknown_parameter_is_refused_naming_it() {
    let err = KeychainScheme::settings(StoreUri::parse("keychain:?platfrom=keyutils").unwrap()).unwrap_err();
    assert_eq!(field(&err), "uri.platfrom", "{err}");
    assert!(err.to_string().contains("keychain:"), "{err}");
}

#[test]
fn a_secret_in_the_uri_is_refused_naming_the_env_and_file_ways() {
    let err = StoreUri::parse("keychain:?platform=secret-service&passphrase=TOPSECRET").unwrap_err();
    assert_eq!(field(&err), "uri.passphrase", "{err}");
    let shown = err.to_string();
    assert!(shown.contains("passphrase_env") && shown.contains("passphrase_file"), "{shown}");
    assert!(!shown.contains("TOPSECRET"), "{shown}");
}

#[test]
fn settings_map_by_name_and_mistakes_are_named() {
    let (id, s) = KeychainScheme::settings(StoreUri::parse("keychain:").unwrap()).unwrap();
    assert_eq!((id.as_str(), s.config().platform_choice()), ("keychain", &Platform::Default));
    let (_, s) = KeychainScheme::settings(
        StoreUri::parse("keychain:?platform=secret-service&collection=session").unwrap(),
    )
    .unwrap();
    assert!(matches!(s.config().platform_choice(), Platform::SecretService(o) if o.collection == "session"));
    for (text, needle) in [
        ("keychain:?id=k&platform=floppy", "unknown platform"),
        ("keychain:?id=k&platform=secret-service&keyring=user", "applies to"),
        ("keychain:?id=k&timeout_ms=0", "timeout_ms"),
    ] {
        let err = KeychainScheme::settings(StoreUri::parse(text).unwrap()).unwrap_err();
        assert!(matches!(&err, Error::Config { .. }) && err.to_string().contains(needle), "{text}: {err}");
    }
    for text in ["keychain://host", "keychain:keyutils", "keychain:?timeout_ms=soon"] {
        assert!(
            matches!(
                KeychainScheme::settings(StoreUri::parse(text).unwrap()),
                Err(Error::InvalidInput { .. })
            ),
            "{text}"
        );
    }
}
