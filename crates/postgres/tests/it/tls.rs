//! TLS to PostgreSQL: verify-full against the server's CA works; a
//! certificate of another CA, or a server without TLS, is refused.

use std::process::Command;

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue};
use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore, TlsMode};
use credstore_test_servers::postgres::Postgres;

use crate::util::pg;

fn tls_config(pg: &Postgres, host: &str, ca: &std::path::Path, kek: &MasterKey) -> PostgresConfig {
    PostgresConfig::new(host)
        .port(pg.port())
        .user(pg.user())
        .password(pg.password().into())
        .database("postgres")
        .tls(TlsMode::VerifyFull)
        .ca_file(ca)
        .master_key(kek.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_works_with_the_servers_ca_and_refuses_another_ca() {
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_path_buf();
    let Some(server) = tokio::task::spawn_blocking(move || Postgres::start_tls(&dir)).await.unwrap() else {
        return;
    };
    let ca = server.ca_cert().unwrap().to_path_buf();
    let kek = MasterKey::generate();
    for host in ["localhost", "127.0.0.1"] {
        let store =
            PostgresStore::open("tls".parse().unwrap(), tls_config(&server, host, &ca, &kek)).await.unwrap();
        let k = CredentialKey::new("k").unwrap();
        store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        assert!(store.get(&k).await.unwrap().is_some(), "{host}");
    }
    // Another CA: a self-signed certificate of its own.
    let other = certs.path().join("other-ca.pem");
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .arg("-keyout")
        .arg(certs.path().join("other.key"))
        .arg("-out")
        .arg(&other)
        .args(["-days", "1", "-subj", "/CN=another CA"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = PostgresStore::open("tls".parse().unwrap(), tls_config(&server, "localhost", &other, &kek))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("TLS"), "{err}");
    assert!(!err.is_retriable());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_full_to_a_server_without_tls_is_refused() {
    let Some(plain) = pg() else { return };
    let Some(openssl) = credstore_test_servers::require_tool("openssl", "scripts/test-tools") else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    // Any valid CA file: the server offers no TLS at all.
    let out = Command::new(openssl)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .arg("-keyout")
        .arg(dir.path().join("ca.key"))
        .arg("-out")
        .arg(&ca)
        .args(["-days", "1", "-subj", "/CN=a CA"])
        .output()
        .unwrap();
    if !out.status.success() {
        panic!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    let err = PostgresStore::open(
        "plain".parse().unwrap(),
        tls_config(plain, "127.0.0.1", &ca, &MasterKey::generate()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("does not offer TLS"), "{err}");
}
