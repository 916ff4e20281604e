//! Every misconfiguration is an `Error::Config` naming the store and the
//! setting, before any I/O, never showing a password.

use std::time::{Duration, Instant};

use credstore_core::{Error, SecretValue, StoreId};
use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore, TlsMode};

/// A server that accepts connections and never answers: a store that made
/// any I/O to it would hang until its connect timeout and fail with
/// `Unavailable`, not `Config`.
fn hanging() -> PostgresConfig {
    let addr = credstore_test_servers::silent_server();
    PostgresConfig::new("127.0.0.1")
        .port(addr.port())
        .user("u")
        .password(SecretValue::from("sekrit-password"))
        .connect_timeout(Duration::from_secs(5))
        .master_key(MasterKey::generate())
}

#[tokio::test]
async fn every_misconfiguration_is_a_config_error_naming_the_store_and_setting_before_any_io() {
    let dir = tempfile::tempdir().unwrap();
    let empty_pem = dir.path().join("empty.pem");
    std::fs::write(&empty_pem, "not a certificate\n").unwrap();
    let id = StoreId::new("team-pg").unwrap();
    let cases: Vec<(&str, PostgresConfig, &str)> = vec![
        ("no key", PostgresConfig::new("127.0.0.1").user("u"), "no key-encryption key"),
        ("bad schema", hanging().schema("Team-A"), "schema \"Team-A\""),
        ("pg_ schema", hanging().schema("pg_toast"), "pg_"),
        ("long schema", hanging().schema("a".repeat(54)), "schema"),
        ("no user", PostgresConfig::new("127.0.0.1").master_key(MasterKey::generate()), "no user"),
        ("empty host", PostgresConfig::new("").user("u").master_key(MasterKey::generate()), "host is empty"),
        ("zero pool", hanging().max_connections(0), "max_connections"),
        ("zero timeout", hanging().statement_timeout(Duration::ZERO), "statement_timeout"),
        ("zero connect", hanging().connect_timeout(Duration::ZERO), "connect_timeout"),
        (
            "bad url",
            PostgresConfig::from_url("postgres://u:sekrit-password@[oops/x")
                .master_key(MasterKey::generate()),
            "URL is not valid",
        ),
        ("missing ca", hanging().tls(TlsMode::VerifyFull).ca_file(dir.path().join("missing.pem")), "ca_file"),
        ("empty ca", hanging().tls(TlsMode::VerifyFull).ca_file(&empty_pem), "ca_file"),
    ];
    for (name, config, needle) in cases {
        let started = Instant::now();
        let err = PostgresStore::open(id.clone(), config).await.unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{name}: took {:?}: I/O was made",
            started.elapsed()
        );
        assert!(matches!(err, Error::Config { .. }), "{name}: {err}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("team-pg") && shown.contains(needle), "{name}: {shown}");
        assert!(!shown.contains("sekrit-password"), "{name}: {shown}");
    }
}

#[cfg(feature = "serde")]
mod settings {
    use super::*;
    use credstore_core::config::ConfigContext;
    use credstore_postgres::PostgresSettings;

    fn parse(json: &str) -> PostgresSettings {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[tokio::test]
    async fn settings_that_cannot_be_resolved_fail_with_config_errors_before_any_io() {
        let dir = tempfile::tempdir().unwrap();
        let addr = credstore_test_servers::silent_server();
        let ctx = ConfigContext::new(dir.path()).with_env(move |v| match v {
            "KEK" => Some(MasterKey::generate().to_base64().unwrap().to_string()),
            "HANGING_URL" => Some(format!("postgres://u:sekrit-password@127.0.0.1:{}/x", addr.port())),
            _ => None,
        });
        let id = StoreId::new("team-pg").unwrap();
        let host = format!(r#""host": "127.0.0.1", "port": {}, "user": "u""#, addr.port());
        for (json, needle) in [
            (r#"{"url_env": "UNSET_URL", "master_key_env": "KEK"}"#.to_owned(), "UNSET_URL (url_env) is not set"),
            (format!(r#"{{{host}, "password_file": "nope", "master_key_env": "KEK"}}"#), "password_file"),
            (format!(r#"{{{host}, "password_env": "UNSET_PW", "master_key_env": "KEK"}}"#), "password_env"),
            (format!(r#"{{{host}, "master_key_env": "UNSET_KEK"}}"#), "UNSET_KEK"),
            (format!(r#"{{{host}, "key": {{"provider": "aws-kms"}}}}"#), "key_provider"),
            (
                r#"{"url_env": "HANGING_URL", "tls": "verify-full", "ca_file": "no-ca.pem", "master_key_env": "KEK"}"#
                    .to_owned(),
                "ca_file",
            ),
        ] {
            let started = Instant::now();
            let err = parse(&json).open(id.clone(), &ctx).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(2), "{json}: I/O was made");
            assert!(matches!(err, Error::Config { .. }), "{json}: {err}");
            let shown = format!("{err} {err:?}");
            assert!(shown.contains("team-pg") && shown.contains(needle), "{json}: {shown}");
            assert!(!shown.contains("sekrit-password"), "{shown}");
        }
    }

    #[tokio::test]
    async fn settings_open_a_store_with_the_password_from_a_file() {
        let Some(pg) = crate::util::pg() else { return };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), format!("{}\n", pg.password())).unwrap();
        let schema = credstore_test_servers::postgres::Postgres::fresh_schema("settings");
        let json = format!(
            r#"{{"host": "127.0.0.1", "port": {}, "user": "{}", "database": "postgres", "password_file": "pw",
                "schema": "{schema}", "master_key_file": "kek.key"}}"#,
            pg.port(),
            pg.user()
        );
        let store =
            parse(&json).open(crate::util::id(&schema), &ConfigContext::new(dir.path())).await.unwrap();
        assert_eq!(store.schema(), schema);
        assert!(dir.path().join("kek.key").exists(), "the key file is made on first use");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_permission_denied_and_never_shown() {
    let Some(pg) = crate::util::pg() else { return };
    let schema = credstore_test_servers::postgres::Postgres::fresh_schema("wrong_password");
    let config =
        crate::util::config(pg, &schema, &MasterKey::generate()).password(SecretValue::from("sekrit-wrong"));
    let err = PostgresStore::open(crate::util::id(&schema), config).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err}");
    assert!(!err.is_retriable());
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("28P01") && !shown.contains("sekrit-wrong") && !shown.contains(pg.password()),
        "{shown}"
    );
}
