//! Helpers shared by the integration tests of credstore-sqlite.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use credstore_conformance::fixtures::key;
use credstore_core::{CredentialStore, CredentialStoreExt, Metadata, Namespace, SecretValue, StoreId};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

pub async fn open(path: &Path, master: &MasterKey) -> SqliteStore {
    open_with(SqliteConfig::new(path).master_key(master.clone())).await
}

pub async fn open_with(config: SqliteConfig) -> SqliteStore {
    SqliteStore::open(StoreId::new("sqlite-test").unwrap(), config)
        .await
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// A handle on namespace `ns` of `store`.
pub fn ns(store: &dyn CredentialStore, ns: &str) -> Arc<dyn CredentialStore> {
    store.with_namespace(&Namespace::new(ns).unwrap()).unwrap_or_else(|e| panic!("namespace {ns}: {e}"))
}

pub async fn put(store: &dyn CredentialStore, k: &str, v: &str) {
    store
        .set(&key(k), &SecretValue::from(v), &Metadata::new())
        .await
        .unwrap_or_else(|e| panic!("set {k}: {e}"));
}

pub async fn value(store: &dyn CredentialStore, k: &str) -> Option<String> {
    store
        .get(&key(k))
        .await
        .unwrap_or_else(|e| panic!("get {k}: {e}"))
        .map(|c| c.value.expose_str().expect("a text value").to_owned())
}

/// A fresh folder, removed when dropped, and the path of the database
/// `name` in it.
pub fn temp_db(name: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    (dir, path)
}

/// [`temp_db`], and a new master key for the database.
pub fn keyed_temp_db(name: &str) -> (tempfile::TempDir, PathBuf, MasterKey) {
    let (dir, path) = temp_db(name);
    (dir, path, MasterKey::generate())
}

/// Sets `<prefix><i>` to `v<i>` for every `i` below `n`, each set from a
/// task of its own, all at once; panics on the first that fails.
pub async fn set_concurrently(store: &SqliteStore, prefix: &str, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (store, k) = (store.clone(), key(&format!("{prefix}{i}")));
            tokio::spawn(
                async move { store.set(&k, &SecretValue::new(format!("v{i}")), &Metadata::new()).await },
            )
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

/// A raw SQLite connection to the database file, bypassing the store.
pub fn raw(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// The files in `dir` whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path);
            }
        }
    }
    hits
}

/// Waits until `cond` holds, polling; panics after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Waits until the last connection to `db` is closed: SQLite then removes
/// its `-wal` file.
pub fn wait_closed(db: &Path) {
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    wait_until("the store to close its database", Duration::from_secs(10), || !wal.exists());
}

/// A small, fast xorshift generator for test randomness.
pub struct Rng(u64);

impl Rng {
    pub fn seeded() -> (Self, u64) {
        let seed =
            std::env::var("CREDSTORE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
                    | 1
            });
        (Self(seed), seed)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The error of a call that must fail.
pub fn err_of<T: std::fmt::Debug>(r: credstore_core::Result<T>) -> credstore_core::Error {
    r.expect_err("expected an error")
}

pub fn secret(v: &str) -> SecretValue {
    SecretValue::from(v)
}

pub fn unique(prefix: &str) -> String {
    credstore_conformance::unique_name(prefix)
}

pub async fn count_all(store: &dyn CredentialStore) -> usize {
    let mut opts = credstore_core::ListOptions::new().with_limit(1000).unwrap();
    let mut n = 0;
    loop {
        let page = store.list(&opts).await.unwrap();
        n += page.keys.len();
        match page.next_cursor {
            Some(c) => opts = opts.with_cursor(Some(c)),
            None => return n,
        }
    }
}

/// The key record of the database at `path`, as stored.
pub fn key_record(path: &std::path::Path) -> credstore_seal::KeyRecord {
    let bytes: Vec<u8> = raw(path)
        .query_row("SELECT value FROM credstore_meta WHERE name = 'key_record'", [], |r| r.get(0))
        .unwrap();
    credstore_seal::KeyRecord::from_bytes(&credstore_core::StoreId::new("s").unwrap(), &bytes).unwrap()
}

/// The error of opening the database at `path` with `k`.
pub async fn open_err(path: &Path, k: &MasterKey) -> credstore_core::Error {
    err_of(SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(path).master_key(k.clone())).await)
}
