//! `postgres:` URIs: [`PostgresScheme`] opens a working store on the shared
//! PostgreSQL server with the settings a config file gives, and refuses
//! what it does not know.

use credstore_core::config::ConfigContext;
use credstore_core::{
    CredentialKey, CredentialStoreExt, Error, Metadata, SchemeRegistry, SecretValue, StoreUri,
};
use credstore_postgres::{MasterKey, PostgresScheme};
use credstore_test_servers::postgres::Postgres;

fn registry() -> SchemeRegistry {
    let mut schemes = SchemeRegistry::new();
    schemes.register(PostgresScheme).unwrap();
    schemes
}

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_uri_opens_a_store_that_keeps_its_values_across_openings() {
    let Some(pg) = crate::util::pg() else { return };
    let password = pg.password().to_owned();
    let kek = MasterKey::generate().to_base64().unwrap().to_string();
    let ctx = ConfigContext::new(".").with_env(move |var| match var {
        "PG_PASSWORD" => Some(password.clone()),
        "APP_KEK" => Some(kek.clone()),
        _ => None,
    });
    let schema = Postgres::fresh_schema("uri");
    for scheme in ["postgres", "postgresql"] {
        let text = format!(
            "{scheme}://{}@{}:{}/postgres?id=pg&password_env=PG_PASSWORD&master_key_env=APP_KEK&schema={schema}",
            pg.user(),
            pg.host(),
            pg.port()
        );
        let store = registry().open_uri(StoreUri::parse(&text).unwrap(), &ctx).await.unwrap();
        assert_eq!(store.info().id().as_str(), "pg");
        let key = CredentialKey::new(scheme).unwrap();
        store.set(&key, &SecretValue::from("hunter2"), &Metadata::new()).await.unwrap();
        let read = store.get(&key).await.unwrap().expect("just written");
        assert_eq!(read.value.expose_str().unwrap(), "hunter2");
    }
    // Both URIs named the same schema: the second store reads the first's key.
    let text = format!(
        "postgres://{}@{}:{}/postgres?password_env=PG_PASSWORD&master_key_env=APP_KEK&schema={schema}",
        pg.user(),
        pg.host(),
        pg.port()
    );
    let store = registry().open_uri(StoreUri::parse(&text).unwrap(), &ctx).await.unwrap();
    assert!(store.get(&CredentialKey::new("postgres").unwrap()).await.unwrap().is_some());
}

#[test]
fn an_unknown_parameter_is_refused_naming_it() {
    let err = PostgresScheme::settings(
        StoreUri::parse("postgres://app@db/creds?master_key_env=K&sslmode=require").unwrap(),
    )
    .unwrap_err();
    assert_eq!(field(&err), "uri.sslmode", "{err}");
    assert!(err.to_string().contains("postgres:"), "{err}");
}

#[test]
fn a_password_in_the_uri_is_refused_naming_the_env_and_file_ways() {
    for (text, name) in [
        ("postgres://app:TOPSECRET@db/creds", "password"),
        ("postgres://app@db/creds?password=TOPSECRET", "password"),
        ("postgres://app@db/creds?master_key=TOPSECRET", "master_key"),
    ] {
        let err = StoreUri::parse(text).unwrap_err();
        assert_eq!(field(&err), format!("uri.{name}"), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("{name}_env")) && shown.contains(&format!("{name}_file")), "{shown}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
    }
}

#[test]
fn settings_a_config_file_could_not_have_are_config_errors_naming_the_store() {
    for (text, needle) in [
        ("postgres://db/creds?id=p&master_key_env=K", "user is missing"),
        ("postgres://app@db/creds?id=p", "master_key"),
        ("postgres://app@db/creds?id=p&master_key_env=K&url_env=DATABASE_URL", "exactly one of host"),
        ("postgres://app@db/creds?id=p&master_key_env=K&tls=prefer", "tls"),
    ] {
        let err = PostgresScheme::settings(StoreUri::parse(text).unwrap()).unwrap_err();
        assert!(matches!(&err, Error::Config { .. }), "{text}: {err}");
        assert_eq!(err.store().map(|s| s.as_str()), Some("p"), "{text}");
        assert!(err.to_string().contains(needle), "{text}: {err}");
    }
    let (_, s) =
        PostgresScheme::settings(StoreUri::parse("postgres:?url_env=DATABASE_URL&master_key_env=K").unwrap())
            .unwrap();
    assert_eq!(s.schema(), "credstore");
    assert_eq!(
        field(
            &PostgresScheme::settings(StoreUri::parse("postgres://a@db/c?max_connections=x").unwrap())
                .unwrap_err()
        ),
        "uri.max_connections"
    );
}
