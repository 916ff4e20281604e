//! A cache with a durable tier across real process restarts, over a real
//! OpenBao: the test runs this test binary again as the "process" (the child
//! test below, a no-op unless [`CHILD`] is set), which opens a cache over
//! the Vault store with a local encrypted SQLite file as its durable tier,
//! reads one key and prints what it got.
//!
//! 1. OpenBao up: the child reads from Vault and fills the file.
//! 2. OpenBao killed, the child started again: served from the file, with
//!    the warning in its output (never the value).
//! 3. The same with the child's clock past the TTL plus max_stale since the
//!    first read: the store's `Unavailable` error, no value.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, ManualClock, Metadata, Retention, SecretValue,
    StoreId,
};
use credstore_layers::CacheLayer;
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{VaultConfig, VaultStore};

/// Set (to the tier's folder) when this binary runs as the child process.
const CHILD: &str = "CREDSTORE_TEST_DURABLE_CHILD";
/// OpenBao's address and root token, for the child.
const ADDRESS: &str = "CREDSTORE_TEST_DURABLE_ADDRESS";
const TOKEN: &str = "CREDSTORE_TEST_DURABLE_TOKEN";
/// How far ahead of the system clock the child's clock is, in seconds.
const CLOCK_AHEAD: &str = "CREDSTORE_TEST_DURABLE_CLOCK_AHEAD";
const CHILD_TEST: &str = "cache_process::child_reads_one_key_through_a_cache_with_a_durable_tier";

const TTL: Duration = Duration::from_secs(60);
const MAX_STALE: Duration = Duration::from_secs(600);
const KEY: &str = "db-password";
const VALUE: &str = "s3cr3t-for-the-process-test";
const PREFIX: &str = "durable-process-test";

fn vault(address: &str, token: &str, clock: Option<ManualClock>) -> VaultStore {
    let mut config = VaultConfig::new(address)
        .prefix(PREFIX)
        .timeout(Duration::from_secs(5))
        .token(SecretValue::from(token));
    if let Some(clock) = clock {
        config = config.clock(Arc::new(clock));
    }
    VaultStore::new(StoreId::new("vault").expect("id"), config).expect("vault store")
}

/// The "process": does its work only when the parent test runs it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_reads_one_key_through_a_cache_with_a_durable_tier() {
    let Some(dir) = std::env::var_os(CHILD) else { return };
    let subscriber = tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_ansi(false).finish();
    tracing::subscriber::set_global_default(subscriber).expect("the child's only subscriber");
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent"));
    let ahead = Duration::from_secs(var(CLOCK_AHEAD).parse().expect("seconds"));
    let clock = ManualClock::new(SystemTime::now() + ahead);

    let dir = Path::new(&dir);
    let key = MasterKey::load_or_create_file(dir.join("cache.key")).expect("the tier's key");
    let config = SqliteConfig::new(dir.join("cache.db")).master_key(key).retention(Retention::NONE);
    let tier =
        SqliteStore::open(StoreId::new("cache-file").expect("id"), config).await.expect("open the tier");
    let store = vault(&var(ADDRESS), &var(TOKEN), Some(clock));
    let cached = CacheLayer::new()
        .with_ttl(TTL)
        .with_max_stale(MAX_STALE)
        .durable(Arc::new(tier))
        .build(Arc::new(store));

    match cached.get(&CredentialKey::new(KEY).expect("key")).await {
        Ok(Some(found)) => println!("VALUE={}", found.value.expose_str().expect("text")),
        Ok(None) => println!("ABSENT"),
        Err(e) => println!("ERROR={e:?}"),
    }
    cached.flush_durable().await;
    let stats = cached.stats();
    println!("DURABLE_SERVED={} DURABLE_WRITTEN={}", stats.durable_served, stats.durable_written);
}

/// Runs the child process; returns its standard output and error together.
fn run_child(bao: &OpenBao, dir: &Path, clock_ahead: Duration) -> String {
    let exe = std::env::current_exe().expect("this test binary");
    let output = Command::new(exe)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, dir)
        .env(ADDRESS, bao.address())
        .env(TOKEN, bao.root_token())
        .env(CLOCK_AHEAD, clock_ahead.as_secs().to_string())
        .output()
        .expect("the child runs");
    let text =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the child failed: {text}");
    assert!(text.contains("1 passed"), "the child test ran: {text}");
    text
}

#[test]
fn a_restarted_process_reads_from_its_durable_cache_while_openbao_is_down_and_not_past_max_stale() {
    if std::env::var_os(CHILD).is_some() {
        return;
    }
    let Some(bao) = OpenBao::start() else { return };
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(vault(&bao.address(), bao.root_token(), None).set(
            &CredentialKey::new(KEY).expect("key"),
            &SecretValue::from(VALUE),
            &Metadata::new(),
        ))
        .expect("write the value to OpenBao");

    let first = run_child(&bao, dir.path(), Duration::ZERO);
    assert!(first.contains(&format!("VALUE={VALUE}")), "read from OpenBao: {first}");
    assert!(first.contains("DURABLE_SERVED=0 DURABLE_WRITTEN=1"), "and kept in the file: {first}");

    bao.stop();
    let second = run_child(&bao, dir.path(), Duration::ZERO);
    assert!(second.contains(&format!("VALUE={VALUE}")), "served from the durable tier: {second}");
    assert!(second.contains("DURABLE_SERVED=1"), "{second}");
    let warning = second
        .lines()
        .find(|l| l.contains("WARN") && l.contains("durable cache"))
        .unwrap_or_else(|| panic!("the warning: {second}"));
    assert!(warning.contains(KEY) && warning.contains("age_ms="), "names the key and the age: {warning}");
    assert!(!warning.contains(VALUE), "never the value: {warning}");

    let third = run_child(&bao, dir.path(), TTL + MAX_STALE + Duration::from_secs(1));
    assert!(third.contains("ERROR=Unavailable"), "past max_stale: the store's error: {third}");
    assert!(!third.contains(VALUE), "and no value: {third}");
    assert!(third.contains("DURABLE_SERVED=0"), "{third}");
}
