//! Envelope encryption: the data key wrapped by a key-encryption key, its
//! two rotations, rows bound to their database, and files of 0.2.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use credstore_conformance::fixtures::key;
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, Result, StoreId};
use credstore_seal::{
    encode_payload, DataKey, KeyProvider, ProviderInfo, RowCipher, RowPlace, ValueKind, WrapContext,
    WrappedKey,
};
use credstore_sqlite::{KdfParams, KeyFile, MasterKey, RotationKind, SqliteConfig, SqliteStore};

use crate::util::*;

/// A provider that counts its calls, and fails while told to: a stand-in
/// for a remote KEK whose calls a test must see.
#[derive(Debug, Clone)]
struct Counted {
    inner: MasterKey,
    calls: Arc<AtomicUsize>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl Counted {
    fn new() -> Self {
        Self { inner: MasterKey::generate(), calls: Arc::default(), down: Arc::default() }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn check(&self, context: &WrapContext<'_>) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable(context.store(), "the key service cannot be reached"));
        }
        Ok(())
    }
}

#[async_trait]
impl KeyProvider for Counted {
    fn info(&self) -> &ProviderInfo {
        self.inner.info()
    }

    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        self.check(context)?;
        self.inner.wrap(key, context).await
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        self.check(context)?;
        self.inner.unwrap(wrapped, context).await
    }
}

async fn open_provider(path: &Path, provider: impl KeyProvider + 'static) -> Result<SqliteStore> {
    SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(path).key_provider(provider)).await
}

/// Every row's key version, nonce and sealed bytes, in key order.
fn sealed_rows(path: &Path) -> Vec<(String, i64, Vec<u8>, Vec<u8>)> {
    let conn = raw(path);
    let mut stmt = conn
        .prepare("SELECT ns || '/' || key, key_version, nonce, sealed FROM credentials ORDER BY ns, key")
        .unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
    rows.collect::<rusqlite::Result<_>>().unwrap()
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn the_provider_is_called_once_at_open_and_never_for_reads_or_writes() {
    let (_dir, path) = temp_db("p.db");
    let kek = Counted::new();
    let store = open_provider(&path, kek.clone()).await.unwrap();
    assert_eq!(kek.calls(), 1, "one wrap for the new database");
    for i in 0..20 {
        put(&store, &format!("k{i}"), "v").await;
        assert_eq!(value(&store, &format!("k{i}")).await.as_deref(), Some("v"));
    }
    assert!(store.has(&key("k3")).await.unwrap());
    store.delete(&key("k3")).await.unwrap();
    assert_eq!(kek.calls(), 1, "no call for reads or writes");
    drop(store);
    wait_closed(&path);
    let store = open_provider(&path, kek.clone()).await.unwrap();
    assert_eq!(kek.calls(), 2, "one unwrap at the next open");
    assert_eq!(value(&store, "k7").await.as_deref(), Some("v"));
    assert_eq!(kek.calls(), 2);
    assert_eq!(store.key_provider().kind(), "master-key");
}

#[tokio::test]
async fn an_unreachable_provider_fails_the_opening_retriably_and_changes_nothing() {
    let (_dir, path) = temp_db("p.db");
    let kek = Counted::new();
    put(&open_provider(&path, kek.clone()).await.unwrap(), "k", "v").await;
    wait_closed(&path);
    let before = file_bytes(&path);
    kek.down.store(true, Ordering::SeqCst);
    let err = err_of(open_provider(&path, kek.clone()).await);
    assert!(matches!(err, Error::Unavailable { .. }) && err.is_retriable(), "{err:?}");
    assert!(err.to_string().contains("cannot be reached"), "the provider's reason: {err}");
    assert_eq!(file_bytes(&path), before, "nothing changed");
    kek.down.store(false, Ordering::SeqCst);
    assert_eq!(value(&open_provider(&path, kek).await.unwrap(), "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_wrong_kek_is_a_clear_error_and_changes_nothing() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    put(&open(&path, &master).await, "k", "v").await;
    wait_closed(&path);
    let before = file_bytes(&path);
    let err = open_err(&path, &MasterKey::generate()).await;
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("wrong master key") && text.contains("wrong key-encryption key"), "{text}");
    let other_kind = MasterKey::from_passphrase_with_params(&secret("pw"), KdfParams::MIN);
    let text = open_err(&path, &other_kind).await.to_string();
    assert!(text.contains("wrapped by master-key"), "names the provider that wrapped it: {text}");
    assert_eq!(file_bytes(&path), before, "nothing changed");
}

#[tokio::test]
async fn kek_rotation_rewraps_the_data_key_and_touches_no_row() {
    let (_dir, path, old) = keyed_temp_db("p.db");
    let store = open(&path, &old).await;
    set_concurrently(&store, "k", 50).await;
    let rows = sealed_rows(&path);
    let other_handle = open(&path, &old).await;
    let new = Counted::new();
    let report = store.rewrap_key(new.clone()).await.unwrap();
    assert_eq!((report.kind, report.rows, report.key_version), (RotationKind::KeyEncryptionKey, 0, 1));
    assert_eq!(new.calls(), 1, "one provider call");
    assert_eq!(sealed_rows(&path), rows, "every row's sealed bytes unchanged");
    // Handles open before keep working: the data key is the same.
    put(&other_handle, "after", "rewrap").await;
    assert_eq!(value(&store, "after").await.as_deref(), Some("rewrap"));
    drop((store, other_handle));
    wait_closed(&path);
    assert!(
        open_err(&path, &old).await.to_string().contains("wrong master key"),
        "the old KEK no longer opens it"
    );
    let store = open_provider(&path, new).await.unwrap();
    assert_eq!(value(&store, "k7").await.as_deref(), Some("v7"));
}

#[tokio::test]
async fn data_key_rotation_reseals_every_row_under_the_same_kek() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    let store = open(&path, &master).await;
    set_concurrently(&store, "k", 30).await;
    let rows = sealed_rows(&path);
    let uid = key_record(&path).uid();
    let report = store.rotate_data_key().await.unwrap();
    assert_eq!((report.kind, report.rows, report.key_version), (RotationKind::DataKey, 30, 2));
    let after = sealed_rows(&path);
    assert!(after.iter().zip(&rows).all(|(a, b)| a.1 == 2 && a.3 != b.3), "every row re-sealed");
    assert_eq!(key_record(&path).uid(), uid, "the store keeps its uid");
    drop(store);
    wait_closed(&path);
    let store = open(&path, &master).await;
    assert_eq!(value(&store, "k29").await.as_deref(), Some("v29"));
    assert!(RotationKind::DataKey.describe().contains("re-sealed"));
    assert!(RotationKind::KeyEncryptionKey.describe().contains("no credential touched"));
}

#[tokio::test]
async fn a_key_file_kek_rotation_keeps_the_rows_and_the_file_opens_the_store() {
    let (dir, path) = temp_db("p.db");
    let file = KeyFile::new(dir.path().join("master.key"));
    let config = || SqliteConfig::new(&path).master_key_file(file.clone());
    let store = open_with(config()).await;
    put(&store, "k", "v").await;
    let rows = sealed_rows(&path);
    let before = std::fs::read(file.path()).unwrap();
    let report = store.rewrap_key_file().await.unwrap();
    assert_eq!(report.kind, RotationKind::KeyEncryptionKey);
    assert_ne!(std::fs::read(file.path()).unwrap(), before, "a new key in the file");
    assert_eq!(sealed_rows(&path), rows);
    drop(store);
    wait_closed(&path);
    assert_eq!(value(&open_with(config()).await, "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_row_copied_from_another_database_under_the_same_kek_fails_authentication() {
    let (dir, path_a, master) = keyed_temp_db("a.db");
    let path_b = dir.path().join("b.db");
    let a = open(&path_a, &master).await;
    let b = open(&path_b, &master).await;
    put(&a, "k", "from-a").await;
    put(&b, "k", "from-b").await;
    // Make the copy indistinguishable by its clear columns: same version.
    let row: (i64, Vec<u8>, Vec<u8>, i64, i64, i64) = raw(&path_a)
        .query_row(
            "SELECT key_version, nonce, sealed, created_at, updated_at, version FROM credentials",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)),
        )
        .unwrap();
    raw(&path_b)
        .execute(
            "UPDATE credentials SET key_version = ?1, nonce = ?2, sealed = ?3, created_at = ?4, updated_at = ?5, \
             version = ?6 WHERE key = 'k'",
            rusqlite::params![row.0, row.1, row.2, row.3, row.4, row.5],
        )
        .unwrap();
    let err = b.get(&key("k")).await.expect_err("a row of another database");
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    assert!(!err.to_string().contains("from-a"), "{err}");
    // The key record copied along does not help either: its uid and data key
    // are the other store's, and the check value binds them.
    let record: Vec<u8> = raw(&path_a)
        .query_row("SELECT value FROM credstore_meta WHERE name = 'key_record'", [], |r| r.get(0))
        .unwrap();
    drop((a, b));
    wait_closed(&path_b);
    raw(&path_b).execute("UPDATE credstore_meta SET value = ?1 WHERE name = 'key_record'", [record]).unwrap();
    let err = open_err(&path_b, &master).await;
    assert!(err.to_string().contains("does not match its check value"), "{err}");
}

#[tokio::test]
async fn an_edited_store_uid_is_refused_at_open() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    put(&open(&path, &master).await, "k", "v").await;
    wait_closed(&path);
    let mut bytes = key_record(&path).to_bytes();
    bytes[5] ^= 0x01; // the first byte of the uid, after `CSKR` and the record version
    raw(&path).execute("UPDATE credstore_meta SET value = ?1 WHERE name = 'key_record'", [bytes]).unwrap();
    let err = open_err(&path, &master).await;
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
}

type SavedRow = (Vec<u8>, Vec<u8>, i64, i64, i64);

fn save_row(path: &Path, k: &str) -> SavedRow {
    raw(path)
        .query_row(
            "SELECT nonce, sealed, created_at, updated_at, version FROM credentials WHERE key = ?1",
            [k],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap()
}

fn put_back(path: &Path, k: &str, row: &SavedRow) {
    let changed = raw(path)
        .execute(
            "UPDATE credentials SET nonce = ?1, sealed = ?2, created_at = ?3, updated_at = ?4, version = ?5 \
             WHERE key = ?6",
            rusqlite::params![row.0, row.1, row.2, row.3, row.4, k],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

fn integrity_failure(err: &Error) -> bool {
    matches!(err, Error::Config { .. }) && err.to_string().contains("failed its integrity check")
}

#[tokio::test]
async fn a_row_put_back_to_an_older_copy_is_detected_by_verify_and_at_the_next_open() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    let store = open(&path, &master).await;
    put(&store, "k", "version-1").await;
    put(&store, "other", "x").await;
    assert_eq!(store.verify().await.unwrap(), 2);
    let old = save_row(&path, "k");
    put(&store, "k", "version-2").await;
    put_back(&path, "k", &old);
    // It authenticates (this store sealed it, under its data key, for its
    // place): a read while the store stays open returns it.
    assert_eq!(value(&store, "k").await.as_deref(), Some("version-1"), "the limit of an open store");
    let err = store.verify().await.expect_err("the row set no longer matches");
    assert!(integrity_failure(&err), "{err}");
    drop(store);
    wait_closed(&path);
    let err = open_err(&path, &master).await;
    assert!(integrity_failure(&err), "refused at the next open: {err}");
    assert!(!err.to_string().contains("version-"), "{err}");
    // Accepting the rows as they are: open unchecked, rotate the data key.
    let store = open_with(SqliteConfig::new(&path).master_key(master.clone()).verify_rows(false)).await;
    store.rotate_data_key().await.unwrap();
    assert_eq!(store.verify().await.unwrap(), 2);
    drop(store);
    wait_closed(&path);
    assert_eq!(value(&open(&path, &master).await, "k").await.as_deref(), Some("version-1"));
}

#[tokio::test]
async fn an_older_row_set_record_put_back_with_its_row_is_detected_by_later_writes() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    let store = open(&path, &master).await;
    put(&store, "k", "version-1").await;
    let old = save_row(&path, "k");
    let record: Vec<u8> = raw(&path)
        .query_row("SELECT value FROM credstore_meta WHERE name = 'row_set'", [], |r| r.get(0))
        .unwrap();
    put(&store, "k", "version-2").await;
    put(&store, "later", "x").await;
    put_back(&path, "k", &old);
    raw(&path).execute("UPDATE credstore_meta SET value = ?1 WHERE name = 'row_set'", [record]).unwrap();
    assert!(integrity_failure(&store.verify().await.unwrap_err()));
}

#[tokio::test]
async fn rows_removed_or_added_outside_credstore_are_detected() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    let store = open(&path, &master).await;
    set_concurrently(&store, "k", 10).await;
    store.delete(&key("k3")).await.unwrap();
    assert_eq!(store.verify().await.unwrap(), 9, "writes and deletes keep it");
    let saved: (i64, Vec<u8>, Vec<u8>, i64, i64, i64, String) = raw(&path)
        .query_row(
            "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind FROM credentials WHERE key = 'k4'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap();
    raw(&path).execute("DELETE FROM credentials WHERE key = 'k4'", []).unwrap();
    assert!(integrity_failure(&store.verify().await.unwrap_err()), "a row removed");
    raw(&path)
        .execute(
            "INSERT INTO credentials VALUES ('', 'k4', ?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            rusqlite::params![saved.0, saved.1, saved.2, saved.3, saved.4, saved.5, saved.6],
        )
        .unwrap();
    assert_eq!(store.verify().await.unwrap(), 9, "put back as it was");
    // A deleted row put back: the store deleted it, so it is an addition.
    raw(&path)
        .execute(
            "INSERT INTO credentials VALUES ('', 'k3', ?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
            rusqlite::params![saved.0, saved.1, saved.2, saved.3, saved.4, saved.5, saved.6],
        )
        .unwrap();
    assert!(integrity_failure(&store.verify().await.unwrap_err()), "a row added");
    // And no write is accepted over a damaged row set record.
    raw(&path).execute("DELETE FROM credentials WHERE key = 'k3'", []).unwrap();
    raw(&path).execute("UPDATE credstore_meta SET value = x'00' WHERE name = 'row_set'", []).unwrap();
    let err = store.set(&key("new"), &secret("v"), &Metadata::new()).await.unwrap_err();
    assert!(err.to_string().contains("row set record"), "{err}");
}

/// The documented limit: the whole file put back to an earlier copy is an
/// older store, consistent in every part; only state kept outside the file
/// could tell. Kept as a test so that a change of it is noticed.
#[tokio::test]
async fn a_whole_file_put_back_to_an_earlier_copy_opens_as_that_store_a_documented_limit() {
    let (dir, path, master) = keyed_temp_db("p.db");
    put(&open(&path, &master).await, "k", "version-1").await;
    wait_closed(&path);
    let copy = dir.path().join("copy.db");
    std::fs::copy(&path, &copy).unwrap();
    put(&open(&path, &master).await, "k", "version-2").await;
    wait_closed(&path);
    std::fs::copy(&copy, &path).unwrap();
    let store = open(&path, &master).await;
    assert_eq!(value(&store, "k").await.as_deref(), Some("version-1"), "the limit, as documented");
    assert_eq!(store.verify().await.unwrap(), 1);
}

/// Writes a database as credstore-sqlite 0.2 did (schema 2: rows sealed
/// directly under the master key, row format 2, the passphrase's KDF record
/// beside them), with `rows` text credentials `k0..` valued `v0..`.
pub(crate) fn write_0_2_database(path: &Path, master: &MasterKey, rows: usize) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA application_id = 1129464915;
         PRAGMA user_version = 2;
         CREATE TABLE credstore_meta (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
         CREATE TABLE credentials (
             ns TEXT NOT NULL, key TEXT NOT NULL, key_version INTEGER NOT NULL, nonce BLOB NOT NULL,
             sealed BLOB NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
             version INTEGER NOT NULL, kind TEXT NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID;",
    )
    .unwrap();
    let (material, kdf) = master.resolve(None, true).unwrap();
    let cipher = RowCipher::legacy(&material, 1);
    let put = "INSERT INTO credstore_meta (name, value) VALUES (?1, ?2)";
    conn.execute(put, rusqlite::params!["key_version", 1i64]).unwrap();
    conn.execute(put, rusqlite::params!["check", cipher.seal_check().unwrap()]).unwrap();
    conn.execute(put, rusqlite::params!["format", 2i64]).unwrap();
    conn.execute(put, rusqlite::params!["last_version", rows as i64]).unwrap();
    if let Some(kdf) = kdf {
        conn.execute(put, rusqlite::params!["kdf", kdf]).unwrap();
    }
    for i in 0..rows {
        let (k, version, at) = (format!("k{i}"), i as i64 + 1, 1_700_000_000_000_000_000i64 + i as i64);
        let place = RowPlace::new("", &k, at, at, version, ValueKind::Text);
        let payload = encode_payload(&secret(&format!("v{i}")), &Metadata::new());
        let (nonce, sealed) = cipher.seal_row(&place, &payload).unwrap();
        conn.execute(
            "INSERT INTO credentials VALUES (?1, ?2, 1, ?3, ?4, ?5, ?5, ?6, 'text')",
            rusqlite::params!["", k, &nonce[..], sealed, at, version],
        )
        .unwrap();
    }
}

fn user_version(path: &Path) -> i64 {
    raw(path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_0_2_database_opens_unchanged_and_moves_to_a_data_key_at_its_first_write() {
    let (_dir, path, master) = keyed_temp_db("old.db");
    write_0_2_database(&path, &master, 25);
    let store = open(&path, &master).await;
    assert_eq!(value(&store, "k7").await.as_deref(), Some("v7"), "0.2 rows read as they are");
    assert_eq!(count_all(&store).await, 25);
    assert_eq!((user_version(&path), store.key_version()), (2, 1), "opening changed nothing");
    let rows = sealed_rows(&path);
    put(&store, "new", "after").await;
    assert_eq!(user_version(&path), 4, "the first write moved it");
    assert_eq!(store.key_version(), 2);
    let after = sealed_rows(&path);
    assert!(
        after.iter().filter(|r| r.0 != "/new").zip(&rows).all(|(a, b)| a.1 == 2 && a.3 != b.3),
        "re-sealed"
    );
    assert_eq!(key_record(&path).provider_kind(), "master-key");
    drop(store);
    wait_closed(&path);
    let store = open(&path, &master).await;
    assert_eq!(value(&store, "k24").await.as_deref(), Some("v24"));
    assert_eq!(value(&store, "new").await.as_deref(), Some("after"));
    let kdf: i64 = raw(&path)
        .query_row("SELECT count(*) FROM credstore_meta WHERE name = 'kdf'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kdf, 0);
}

#[tokio::test]
async fn a_0_2_database_moves_at_rotate_key_and_a_provider_alone_cannot_open_it() {
    let (_dir, path, master) = keyed_temp_db("old.db");
    write_0_2_database(&path, &master, 3);
    let err = err_of(open_provider(&path, Counted::new()).await);
    assert!(
        err.to_string().contains("format of credstore 0.2") && err.to_string().contains("master key"),
        "{err}"
    );
    assert_eq!(user_version(&path), 2);
    let store = open(&path, &master).await;
    let new = MasterKey::generate();
    let report = store.rotate_key(new.clone()).await.unwrap();
    assert_eq!((report.kind, report.rows, user_version(&path)), (RotationKind::DataKey, 3, 4));
    drop(store);
    wait_closed(&path);
    assert_eq!(value(&open(&path, &new).await, "k2").await.as_deref(), Some("v2"));
    // A rewrap of a 0.2 file moves it under the new provider at once.
    let (_dir2, path2, master2) = keyed_temp_db("old2.db");
    write_0_2_database(&path2, &master2, 2);
    let kek = Counted::new();
    let report = open(&path2, &master2).await.rewrap_key(kek.clone()).await.unwrap();
    assert_eq!(report.kind, RotationKind::DataKey, "every row re-sealed, as the report says");
    wait_closed(&path2);
    assert_eq!(value(&open_provider(&path2, kek).await.unwrap(), "k1").await.as_deref(), Some("v1"));
}

#[tokio::test]
async fn a_0_2_passphrase_database_with_weak_kdf_params_opens_and_moves_to_current_ones() {
    let (_dir, path) = temp_db("weak.db");
    let pass = secret("a passphrase from 0.2");
    // What 0.2 let a caller ask for; no public constructor accepts it any more.
    write_0_2_database(&path, &MasterKey::from_passphrase_with_0_2_params(&pass, 256, 1, 1), 2);
    let key = MasterKey::from_passphrase_with_params(&pass, KdfParams::MIN);
    let store = open(&path, &key).await;
    assert_eq!(value(&store, "k1").await.as_deref(), Some("v1"), "the stored parameters derive the key");
    put(&store, "k", "v").await;
    let record = key_record(&path);
    assert_eq!(record.provider_kind(), "passphrase");
    // The wrapped key starts with [2][KDF record length][1][m u32 LE]...
    let wrapped = record.wrapped().as_bytes();
    let memory_kib = u32::from_le_bytes(wrapped[3..7].try_into().unwrap());
    assert_eq!(memory_kib, KdfParams::MIN.memory_kib(), "the new wrapping uses the given parameters");
    drop(store);
    wait_closed(&path);
    assert_eq!(
        value(&open(&path, &MasterKey::from_passphrase(&pass)).await, "k0").await.as_deref(),
        Some("v0")
    );
}
