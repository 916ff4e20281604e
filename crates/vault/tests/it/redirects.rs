//! Redirects are never followed: a server (a standby node, a bad load
//! balancer, anyone on an `http://` path) answering 307 to another origin
//! gets no second request there, so neither the token nor a written value
//! leaves for a host the configuration does not name. Canned loopback
//! servers stand in for both ends; no OpenBao is needed.

use std::time::Duration;

use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId,
};
use credstore_test_servers::canned::{CannedServer, Response};
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::KV2_MOUNT;

const TOKEN: &str = "hvs.REDIRECT-TOKEN-SECRET";
const VALUE: &str = "written-VALUE-SECRET";

/// A KV v2 read: what the other origin would serve, were it asked.
const KV2_READ: &str = r#"{"data":{"data":{"value":"from-elsewhere"},"metadata":{"created_time":"2024-01-01T00:00:00.000000000Z","custom_metadata":null,"deletion_time":"","destroyed":false,"version":1}}}"#;

/// The origin a redirect points to: answers as a Vault would.
fn elsewhere() -> CannedServer {
    CannedServer::start(|req| {
        if req.target.contains("sys/internal/ui/mounts") {
            Response::json(200, KV2_MOUNT)
        } else {
            Response::json(200, KV2_READ)
        }
    })
    .unwrap()
}

fn store(address: &str) -> VaultStore {
    let config = VaultConfig::new(address).token(SecretValue::from(TOKEN)).timeout(Duration::from_secs(5));
    VaultStore::new(StoreId::new("vault-redirected").unwrap(), config).unwrap()
}

fn check_refused(err: &Error, elsewhere: &CannedServer) {
    assert!(matches!(err, Error::Config { .. }), "a redirect is a configuration fault: {err:?}");
    assert!(!err.is_retriable(), "{err:?}");
    elsewhere.assert_refused_redirect(&format!("{err} | {err:?}"), "vault-redirected", &[TOKEN, VALUE]);
}

#[tokio::test]
async fn a_read_redirected_to_another_origin_fails_naming_it_and_nothing_goes_there() {
    let elsewhere = elsewhere();
    let redirecting = CannedServer::redirecting_to(&elsewhere).unwrap();
    let store = store(&redirecting.url());

    let read = store.get(&CredentialKey::new("k").unwrap()).await;

    // The configured server was asked, with the token; the other never.
    assert!(redirecting.received(TOKEN.as_bytes()), "the test sends the token where it should");
    elsewhere.assert_not_reached(&[("the token", TOKEN)]);
    check_refused(&read.expect_err("a redirect is not an answer"), &elsewhere);
    let status = store.check_availability().await;
    assert!(!status.available);
    let reason = status.reason.unwrap_or_default();
    assert!(reason.contains(&format!("redirect to {}", elsewhere.url())), "{reason}");
    assert_eq!(elsewhere.connections(), 0, "{:?}", elsewhere.requests());
}

#[tokio::test]
async fn a_write_redirected_to_another_origin_fails_naming_it_and_nothing_goes_there() {
    let elsewhere = elsewhere();
    let target = elsewhere.url();
    // Answers the mount check itself, and redirects the write (307: a
    // client that follows it replays the body).
    let redirecting = CannedServer::start(move |req| {
        if req.target.contains("sys/internal/ui/mounts") {
            Response::json(200, KV2_MOUNT)
        } else {
            Response::redirect_to_origin(&target, req)
        }
    })
    .unwrap();
    let store = store(&redirecting.url());

    let key = CredentialKey::new("k").unwrap();
    let written = store.create(&key, &SecretValue::from(VALUE), &Metadata::new()).await;

    elsewhere.assert_not_reached(&[("the value", VALUE), ("the token", TOKEN)]);
    check_refused(&written.map(drop).expect_err("not followed"), &elsewhere);
    let sent = redirecting.requests();
    assert!(
        sent.iter().any(|r| r.method == "POST" && String::from_utf8_lossy(&r.body).contains(VALUE)),
        "the write went to the configured server: {:?}",
        sent.iter().map(|r| format!("{} {}", r.method, r.target)).collect::<Vec<_>>()
    );
    assert_eq!(sent.len(), 2, "the mount check and the one write, not retried");
}

#[tokio::test]
async fn a_login_redirected_to_another_origin_fails_naming_it_and_its_secret_id_goes_nowhere() {
    const SECRET_ID: &str = "secret-id-SECRET";
    let elsewhere = elsewhere();
    let redirecting = CannedServer::redirecting_to(&elsewhere).unwrap();
    let config = VaultConfig::new(redirecting.url())
        .approle("approle", "role-1", SecretValue::from(SECRET_ID))
        .timeout(Duration::from_secs(5));
    let store = VaultStore::new(StoreId::new("vault-redirected").unwrap(), config).unwrap();

    let read = store.get(&CredentialKey::new("k").unwrap()).await;

    assert!(redirecting.received(SECRET_ID.as_bytes()), "the login went to the configured server");
    elsewhere.assert_not_reached(&[("the secret id", SECRET_ID)]);
    check_refused(&read.expect_err("a redirected login is no login"), &elsewhere);
    assert_eq!(store.auth_stats().logins, 0);
}
