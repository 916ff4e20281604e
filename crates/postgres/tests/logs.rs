//! What the store logs: a warning for plaintext to a remote host, and never
//! a value or a password, at TRACE level, while it works, fails and probes.
//! A binary of its own: `tracing` caches per call site whether anyone
//! listens, so a test that installs a subscriber must not share its process
//! with tests that reach the same call sites first (in the `it` binary, the
//! store's `opened` line was now and then missed).

#[path = "it/util.rs"]
#[allow(dead_code)]
mod util;

use std::time::Duration;

use credstore_conformance::fixtures::LogCapture;
use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue};
use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore, TlsMode};
use credstore_test_servers::postgres::Postgres;

fn capture() -> (LogCapture, tracing::subscriber::DefaultGuard) {
    let capture = LogCapture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    (capture, tracing::subscriber::set_default(subscriber))
}

// One thread: the subscriber set for this thread sees every task of the test.
#[tokio::test(flavor = "current_thread")]
async fn plaintext_to_a_host_that_is_not_loopback_is_allowed_when_said_and_warned_about() {
    let (logs, _guard) = capture();
    let config = PostgresConfig::new("db.invalid")
        .user("u")
        .tls(TlsMode::Disable)
        .connect_timeout(Duration::from_millis(500))
        .acquire_timeout(Duration::from_millis(500))
        .master_key(MasterKey::generate());
    let _ = PostgresStore::open("remote".parse().unwrap(), config).await;
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("tls = \"disable\" to a host that is not loopback"),
        "{text}"
    );
    let (logs, _guard) = capture();
    let local = PostgresConfig::new("127.0.0.1").port(1).user("u").master_key(MasterKey::generate());
    let _ = PostgresStore::open("local".parse().unwrap(), local).await;
    assert!(!logs.text().contains("not loopback"), "{}", logs.text());
}

#[tokio::test(flavor = "current_thread")]
async fn no_value_or_password_reaches_the_logs() {
    let Some(pg) = util::pg() else { return };
    let (logs, _guard) = capture();
    let schema = Postgres::fresh_schema("logs");
    let store = util::open(pg, &schema, &MasterKey::generate()).await;
    let mut feed = store.subscribe().await.unwrap();
    let value = SecretValue::from("VALUE-SECRET-4711");
    let k = CredentialKey::new("k").unwrap();
    let written = store.set(&k, &value, &Metadata::new()).await.unwrap();
    let _ = store.create(&k, &value, &Metadata::new()).await.unwrap_err();
    store.replace(&k, &value, &Metadata::new(), &written.version).await.unwrap();
    assert!(store.get(&k).await.unwrap().is_some());
    assert!(store.check_availability().await.available);
    let _ = tokio::time::timeout(Duration::from_secs(5), feed.next()).await;
    let text = logs.text();
    assert!(text.contains("opened"), "the capture works: {text}");
    assert!(!text.contains("VALUE-SECRET-4711") && !text.contains(pg.password()), "{text}");
}
