//! `sqlite:` URIs: [`SqliteScheme`] opens working stores with the settings
//! a config file gives, paths relative to the context's directory, and
//! refuses what it does not know.

use credstore_core::config::ConfigContext;
use credstore_core::{Error, SchemeRegistry, StoreUri};
use credstore_sqlite::{MasterKey, SqliteScheme};

use crate::util::{put, value};

fn registry() -> SchemeRegistry {
    let mut schemes = SchemeRegistry::new();
    schemes.register(SqliteScheme).unwrap();
    schemes
}

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

/// A context in `dir` whose environment holds `APP_KEY`, a master key.
fn ctx(dir: &std::path::Path) -> ConfigContext {
    let key = MasterKey::generate().to_base64().unwrap().to_string();
    ConfigContext::new(dir).with_env(move |var| (var == "APP_KEY").then(|| key.clone()))
}

#[tokio::test]
async fn a_sqlite_uri_opens_an_encrypted_store_that_keeps_its_values_across_openings() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path());
    let text = "sqlite:data/app.db?master_key_env=APP_KEY&id=app&synchronous=normal";
    let store = registry().open_uri(StoreUri::parse(text).unwrap(), &ctx).await.unwrap();
    assert_eq!(store.info().id().as_str(), "app");
    put(&*store, "db-password", "hunter2").await;
    drop(store);
    assert!(dir.path().join("data/app.db").exists(), "relative to the context's directory");
    let again = registry().open_uri(StoreUri::parse(text).unwrap(), &ctx).await.unwrap();
    assert_eq!(value(&*again, "db-password").await.as_deref(), Some("hunter2"));
}

#[tokio::test]
async fn absolute_and_host_relative_paths_name_the_files_the_docs_say() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("abs.db");
    let (_, settings) = SqliteScheme::settings(
        StoreUri::parse(&format!("sqlite://{}?master_key_env=K", abs.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(settings.path(), abs);
    let (id, settings) =
        SqliteScheme::settings(StoreUri::parse("sqlite://rel/x.db?passphrase_file=p").unwrap()).unwrap();
    assert_eq!((id.as_str(), settings.path()), ("encrypted-sqlite", std::path::Path::new("rel/x.db")));
    // A key file named by the URI is created, as a config file's is.
    let store = registry()
        .open_uri(
            StoreUri::parse("sqlite:k.db?master_key_file=k.key").unwrap(),
            &ConfigContext::new(dir.path()),
        )
        .await
        .unwrap();
    put(&*store, "a", "b").await;
    assert!(dir.path().join("k.key").exists());
}

#[tokio::test]
async fn an_unknown_parameter_is_refused_naming_it_before_any_file_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let uri = StoreUri::parse("sqlite:a.db?master_key_env=APP_KEY&busy_timeout=5").unwrap();
    let err = registry().open_uri(uri, &ctx(dir.path())).await.unwrap_err();
    assert_eq!(field(&err), "uri.busy_timeout", "{err}");
    assert!(!dir.path().join("a.db").exists());
}

#[tokio::test]
async fn a_secret_in_the_uri_is_refused_naming_the_env_and_file_ways() {
    for (text, name) in [
        ("sqlite:a.db?master_key=c2VjcmV0", "master_key"),
        ("sqlite:a.db?passphrase=open-sesame", "passphrase"),
    ] {
        let err = registry().open(text).await.unwrap_err();
        assert_eq!(field(&err), format!("uri.{name}"), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("{name}_env")) && shown.contains(&format!("{name}_file")), "{shown}");
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("open-sesame"), "{shown}");
    }
}

#[tokio::test]
async fn settings_a_config_file_could_not_have_are_config_errors_naming_the_store() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("sqlite:a.db?id=s", "exactly one of master_key_file"),
        ("sqlite:a.db?id=s&master_key_env=A&passphrase_env=B", "exactly one of"),
        ("sqlite:a.db?id=s&master_key_env=A&synchronous=off", "synchronous"),
    ] {
        let err = registry().open_uri(StoreUri::parse(text).unwrap(), &ctx(dir.path())).await.unwrap_err();
        assert!(matches!(&err, Error::Config { .. }), "{text}: {err}");
        assert_eq!(err.store().map(|s| s.as_str()), Some("s"), "{text}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    for text in
        ["sqlite:", "sqlite://user@h/a.db?master_key_env=A", "sqlite:a.db?master_key_env=A&max_versions=x"]
    {
        let err = registry().open_uri(StoreUri::parse(text).unwrap(), &ctx(dir.path())).await.unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { .. }), "{text}: {err}");
    }
    assert!(!dir.path().join("a.db").exists(), "nothing was opened");
}
