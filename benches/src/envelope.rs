//! Open + first read of an encrypted SQLite store whose data key is wrapped
//! by a given key-encryption key provider, against the same with a key file.
//!
//! [`open_and_first_read`] makes one [`Row`] for any
//! [`KeyProvider`]: a passphrase and a master key given directly in
//! `benches/sqlite.rs`; the services' providers (AWS KMS on moto, Vault
//! Transit on OpenBao, the OS keychain) next to the servers their benches
//! start. The provider is called once per opening (to unwrap the data key)
//! and never by the read, so the row measures what the provider adds to a
//! store's start.

use std::path::Path;
use std::time::{Duration, Instant};

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_sqlite::{KeyFile, KeyProvider, SqliteConfig, SqliteStore};
use futures::{StreamExt, TryStreamExt};

use crate::summary::{Better, Row};
use crate::{bench_out_dir, key_name, quick, test_mode};

/// The value every credential of these databases holds.
const VALUE: &str = "envelope-bench-secret-value-0123456789abcdef";

/// Writes in flight while a database is filled: more than the store's
/// writer takes in one transaction, so every group commit is full.
const FILL_IN_FLIGHT: usize = 1024;

/// Credentials in the database each opening reads from: 1,000, or 100 when
/// the bench runs as a test.
pub fn open_credentials() -> usize {
    if test_mode() {
        100
    } else {
        1_000
    }
}

/// Timed openings per side of a row: 20, 8 in a quick run, 2 as a test.
pub fn open_rounds() -> usize {
    if test_mode() {
        2
    } else if quick() {
        8
    } else {
        20
    }
}

/// A folder for bench databases on the disk of the target folder (not a
/// tmpfs: an fsync must cost what it costs), removed when dropped.
///
/// # Panics
/// When the folder cannot be created.
pub fn bench_tempdir() -> tempfile::TempDir {
    let base = bench_out_dir().join("sqlite-tmp");
    std::fs::create_dir_all(&base).expect("create the bench databases' folder");
    tempfile::tempdir_in(base).expect("create a bench database folder")
}

/// Writes `n` credentials ([`key_name`] `0..n`, each `value`) through
/// `store`, 1,024 in flight, so the SQLite store's writer commits them in
/// full batches: 100,000 credentials take a few hundred commits.
///
/// # Panics
/// When a write fails.
pub async fn fill<S: CredentialStore + ?Sized>(store: &S, n: usize, value: &str) {
    fill_with(store, n, value, FILL_IN_FLIGHT).await;
}

/// [`fill`] with `in_flight` writes at a time: a store with a connection
/// pool keeps every connection busy with twice its size, without callers
/// queueing for a connection past the pool's acquire timeout.
///
/// # Panics
/// When a write fails.
pub async fn fill_with<S: CredentialStore + ?Sized>(store: &S, n: usize, value: &str, in_flight: usize) {
    let (value, meta) = (SecretValue::from(value), Metadata::new());
    futures::stream::iter(0..n)
        .map(|i| {
            let (value, meta) = (&value, &meta);
            async move { store.set(&CredentialKey::new(key_name(i)).unwrap(), value, meta).await }
        })
        .buffer_unordered(in_flight.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await
        .expect("fill the bench database");
}

/// Opens the store of `config` and reads the credential `key_name(index)`:
/// the time until the value is back. The store is dropped after the clock
/// stops.
async fn timed_open(config: SqliteConfig, index: usize) -> Duration {
    let start = Instant::now();
    let store = SqliteStore::open(StoreId::new("bench-envelope").unwrap(), config)
        .await
        .expect("open the bench database");
    let read = store.get(&CredentialKey::new(key_name(index)).unwrap()).await.expect("first read");
    let elapsed = start.elapsed();
    assert!(read.is_some(), "the first read finds the credential the fill wrote");
    elapsed
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A new database at `path` keyed by `config`, filled with
/// [`open_credentials`] credentials, then closed.
fn seed(rt: &tokio::runtime::Runtime, config: SqliteConfig, n: usize) {
    rt.block_on(async {
        let store = SqliteStore::open(StoreId::new("bench-envelope").unwrap(), config)
            .await
            .expect("create the bench database");
        fill(&store, n, VALUE).await;
    });
}

fn key_file_config(db: &Path, key: &Path) -> SqliteConfig {
    SqliteConfig::new(db).master_key_file(KeyFile::new(key))
}

/// One summary row: the median time to open an existing encrypted SQLite
/// database of [`open_credentials`] credentials whose data key `provider`
/// wraps, and read one credential, against the same for a database keyed by
/// a key file ([`SqliteConfig::master_key_file`], today's default).
///
/// Both databases are created and filled first (the provider wraps its data
/// key once); then each side is opened once to warm up, and
/// [`open_rounds`] times in alternating order (the order flips every
/// round, so drift on a shared machine hits both sides alike), each opening
/// a fresh [`SqliteStore`] that unwraps the data key with a clone of
/// `provider` and reads another credential. `label` names the provider in
/// the scenario, e.g. `"AWS KMS (moto on loopback)"`. The row has no goal;
/// set [`Row::goal`] on the result for one.
///
/// # Panics
/// When the provider fails to wrap or unwrap, or a database cannot be
/// written or read: a bench row for a provider that does not work would be
/// meaningless.
pub fn open_and_first_read<P>(rt: &tokio::runtime::Runtime, label: &str, provider: P) -> Row
where
    P: KeyProvider + Clone + 'static,
{
    let n = open_credentials();
    let dir = bench_tempdir();
    let (base_db, base_key, ours_db) =
        (dir.path().join("file-key.db"), dir.path().join("file-key.key"), dir.path().join("provider.db"));
    seed(rt, key_file_config(&base_db, &base_key), n);
    seed(rt, SqliteConfig::new(&ours_db).key_provider(provider.clone()), n);

    let ours_config = || SqliteConfig::new(&ours_db).key_provider(provider.clone());
    rt.block_on(timed_open(key_file_config(&base_db, &base_key), 0));
    rt.block_on(timed_open(ours_config(), 0));
    let (mut ours, mut base) = (Vec::new(), Vec::new());
    for round in 0..open_rounds() {
        let index = (round * 37 + 1) % n;
        if round % 2 == 0 {
            ours.push(rt.block_on(timed_open(ours_config(), index)));
            base.push(rt.block_on(timed_open(key_file_config(&base_db, &base_key), index)));
        } else {
            base.push(rt.block_on(timed_open(key_file_config(&base_db, &base_key), index)));
            ours.push(rt.block_on(timed_open(ours_config(), index)));
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Row::new(
        Better::Lower,
        format!("encrypted sqlite open + first read, key-encryption key: {label}, {n} credentials"),
        "ms",
        ms(median(ours)),
        ms(median(base)),
        "the same database keyed by a key file (master_key_file), opened in alternating rounds",
        None,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use async_trait::async_trait;
    use credstore_core::Result;
    use credstore_seal::{DataKey, ProviderInfo, WrapContext, WrappedKey};
    use credstore_sqlite::MasterKey;

    use super::*;

    /// A master key that counts its calls.
    #[derive(Debug, Clone)]
    struct Counting {
        key: MasterKey,
        wraps: Arc<AtomicUsize>,
        unwraps: Arc<AtomicUsize>,
    }

    #[async_trait]
    impl KeyProvider for Counting {
        fn info(&self) -> &ProviderInfo {
            self.key.info()
        }

        async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
            self.wraps.fetch_add(1, Ordering::SeqCst);
            self.key.wrap(key, context).await
        }

        async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
            self.unwraps.fetch_add(1, Ordering::SeqCst);
            self.key.unwrap(wrapped, context).await
        }
    }

    #[test]
    fn open_and_first_read_unwraps_through_the_provider_at_every_timed_opening() {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let provider =
            Counting { key: MasterKey::generate(), wraps: Arc::default(), unwraps: Arc::default() };
        let row = open_and_first_read(&rt, "a counting master key", provider.clone());
        assert_eq!(provider.wraps.load(Ordering::SeqCst), 1, "the data key is wrapped once, at creation");
        assert_eq!(
            provider.unwraps.load(Ordering::SeqCst),
            1 + open_rounds(),
            "one unwrap per opening: the warm-up and each timed round"
        );
        assert!(row.ours > 0.0 && row.baseline > 0.0, "{row:?}");
        assert!(row.scenario.contains("a counting master key"), "{}", row.scenario);
        assert!(row.scenario.contains(&format!("{} credentials", open_credentials())), "{}", row.scenario);
        assert_eq!(row.goal, None);
    }
}
