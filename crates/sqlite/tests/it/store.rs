//! Behaviour of the encrypted SQLite store beyond the shared conformance
//! suite: files and permissions, encryption at rest, tampering, wrong keys,
//! bad files, a full disk, locking and the writer.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_conformance::fixtures::{key, meta, LogCapture};
use credstore_core::{
    CredentialStore, CredentialStoreExt, Error, ListOptions, Metadata, Namespace, SecretValue, StoreId,
};
use credstore_sqlite::{KdfParams, MasterKey, SqliteConfig, SqliteStore, Synchronous};

use crate::util::*;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn sidecar(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}{suffix}", path.display()))
}

#[tokio::test]
async fn creates_owner_only_file_and_directories() {
    let (dir, path) = temp_db("a/b/creds.db");
    let store = open(&path, &MasterKey::generate()).await;
    put(&store, "k", "v").await;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    for suffix in ["-wal", "-shm"] {
        let f = sidecar(&path, suffix);
        assert!(f.exists(), "{} exists while open", f.display());
        assert_eq!(mode(&f), 0o600, "{suffix} copies the database's mode");
    }
    let journal: String = raw(&path).query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(journal, "wal");
    let version: i64 = raw(&path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, 4);
}

#[tokio::test]
async fn plaintext_never_reaches_the_files() {
    let (dir, path) = temp_db("scan.db");
    let store = open(&path, &MasterKey::generate()).await;
    let value_canary = unique("VALUECANARY");
    let meta_canary = unique("METACANARY");
    let big = value_canary.repeat(60_000 / value_canary.len());
    let tenant = ns(&store, "tenant-x");
    store.set(&key("small-secret"), &secret(&value_canary), &meta([("note", &meta_canary)])).await.unwrap();
    tenant
        .set(&key("big-secret"), &SecretValue::new(big.clone()), &meta([("note", &meta_canary)]))
        .await
        .unwrap();
    // An overwrite and a delete leave old row versions behind in the WAL.
    store.set(&key("overwritten"), &secret(&value_canary), &Metadata::new()).await.unwrap();
    store.set(&key("overwritten"), &secret("other"), &Metadata::new()).await.unwrap();
    store.set(&key("deleted"), &secret(&value_canary), &meta([("note", &meta_canary)])).await.unwrap();
    assert!(store.delete(&key("deleted")).await.unwrap());
    assert_eq!(value(&*tenant, "big-secret").await.as_deref(), Some(big.as_str()));

    // While open: database, WAL and shared-memory files.
    assert!(sidecar(&path, "-wal").exists());
    assert!(
        !files_containing(dir.path(), b"small-secret").is_empty(),
        "the scan reads the files that hold rows"
    );
    for needle in [&value_canary, &meta_canary] {
        let hits = files_containing(dir.path(), needle.as_bytes());
        assert!(hits.is_empty(), "plaintext found in {hits:?}");
    }
    // After the store closes (and SQLite checkpoints the WAL into the file).
    drop(tenant);
    drop(store);
    wait_closed(&path);
    assert!(!files_containing(dir.path(), b"big-secret").is_empty());
    for needle in [&value_canary, &meta_canary] {
        let hits = files_containing(dir.path(), needle.as_bytes());
        assert!(hits.is_empty(), "plaintext found in {hits:?} after close");
    }
}

#[tokio::test]
async fn wrong_key_fails_at_open() {
    let (_dir, path, right) = keyed_temp_db("k.db");
    put(&open(&path, &right).await, "k", "v").await;
    let started = Instant::now();
    let err = err_of(
        SqliteStore::open(
            StoreId::new("s").unwrap(),
            SqliteConfig::new(&path).master_key(MasterKey::generate()),
        )
        .await,
    );
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("wrong master key"), "{err}");
    assert!(err.to_string().contains("k.db"), "names the file: {err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let err = err_of(SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&path)).await);
    assert!(err.to_string().contains("no master key"), "{err}");
    assert_eq!(value(&open(&path, &right).await, "k").await.as_deref(), Some("v"));
}

fn small_kdf() -> KdfParams {
    KdfParams::MIN
}

#[tokio::test]
async fn passphrase_keys_open_and_refuse_others() {
    let (_dir, path) = temp_db("p.db");
    let pass = MasterKey::from_passphrase_with_params(&secret("correct horse battery staple"), small_kdf());
    put(&open(&path, &pass).await, "k", "v").await;
    wait_closed(&path);
    // The salt and parameters are in the database, in the wrapped data key.
    let record = key_record(&path);
    assert_eq!(record.provider_kind(), "passphrase");
    assert!(record.wrapped().as_bytes().len() > 16 + 48);
    // The same passphrase opens it, whatever parameters the caller asks for:
    // the stored ones win.
    let same = MasterKey::from_passphrase_with_params(
        &secret("correct horse battery staple"),
        KdfParams::new(KdfParams::MIN_MEMORY_KIB + 1024, 2, 1).unwrap(),
    );
    assert_eq!(value(&open(&path, &same).await, "k").await.as_deref(), Some("v"));
    for wrong in
        [MasterKey::from_passphrase_with_params(&secret("wrong horse"), small_kdf()), MasterKey::generate()]
    {
        let err = err_of(
            SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&path).master_key(wrong)).await,
        );
        assert!(err.to_string().contains("wrong master key"), "{err}");
        assert!(!err.to_string().contains("horse"), "{err}");
    }
}

#[tokio::test]
async fn crafted_kdf_parameters_are_refused_quickly() {
    let (_dir, path) = temp_db("p.db");
    let pass = MasterKey::from_passphrase_with_params(&secret("pw"), small_kdf());
    drop(open(&path, &pass).await);
    wait_closed(&path);
    // m = 4 TiB, t = 2^32 - 1: would run for ages if honoured.
    let mut crafted = vec![1u8];
    for v in [u32::MAX, u32::MAX, 1] {
        crafted.extend_from_slice(&v.to_le_bytes());
    }
    crafted.push(16);
    crafted.extend_from_slice(&[7; 16]);
    // The wrapped data key ends the key record: [2][KDF record length][KDF record]...
    let mut bytes = key_record(&path).to_bytes();
    let wrapped = key_record(&path).wrapped().as_bytes().len();
    let at = bytes.len() - wrapped + 2;
    assert_eq!(usize::from(bytes[at - 1]), crafted.len(), "the same length as the stored record");
    bytes[at..at + crafted.len()].copy_from_slice(&crafted);
    raw(&path).execute("UPDATE credstore_meta SET value = ?1 WHERE name = 'key_record'", [bytes]).unwrap();
    let started = Instant::now();
    let err = err_of(
        SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&path).master_key(pass)).await,
    );
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("refused"), "{err}");
}

/// Edits one row with `sql` (bound to the namespace and key) and expects
/// `get` to fail with the integrity error naming the key; then restores it.
async fn expect_tamper_detected(
    store: &SqliteStore,
    path: &std::path::Path,
    space: &str,
    k: &str,
    what: &str,
    sql: &str,
) {
    let conn = raw(path);
    type Backup = (i64, Vec<u8>, Vec<u8>, i64, i64, i64, String);
    let backup: Backup = conn
        .query_row(
            "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind FROM credentials
             WHERE ns = ?1 AND key = ?2",
            [space, k],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?)),
        )
        .unwrap();
    let changed = conn.execute(sql, [space, k]).unwrap();
    assert_eq!(changed, 1, "{what}: the edit hit the row");
    let types: (String, String) = conn
        .query_row(
            "SELECT typeof(nonce), typeof(sealed) FROM credentials WHERE ns = ?1 AND key = ?2",
            [space, k],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    if !what.contains("text") {
        assert_eq!(types, ("blob".into(), "blob".into()), "{what}: the edit kept the column types");
    }
    let handle: Arc<dyn CredentialStore> =
        if space.is_empty() { Arc::new(store.clone()) } else { ns(store, space) };
    let err = handle.get(&key(k)).await.expect_err(what);
    match &err {
        Error::Integrity { key: named, .. } => assert_eq!(named.as_str(), k, "{what}"),
        other => panic!("{what}: expected an integrity error, got {other:?}"),
    }
    assert!(err.to_string().contains(k), "{what}: {err}");
    assert!(!err.to_string().contains("TOPSECRET"), "{what}: {err}");
    conn.execute(
        "UPDATE credentials SET key_version = ?3, nonce = ?4, sealed = ?5, created_at = ?6, updated_at = ?7,
             version = ?8, kind = ?9
         WHERE ns = ?1 AND key = ?2",
        rusqlite::params![space, k, backup.0, backup.1, backup.2, backup.3, backup.4, backup.5, backup.6],
    )
    .unwrap();
    assert!(handle.get(&key(k)).await.unwrap().is_some(), "{what}: restored row opens again");
}

#[tokio::test]
async fn any_change_to_a_row_fails_get_with_integrity() {
    let (_dir, path) = temp_db("t.db");
    let store = open(&path, &MasterKey::generate()).await;
    put(&store, "victim", "TOPSECRET-victim").await;
    put(&store, "other", "TOPSECRET-other").await;
    let p = &path;
    for (what, sql) in [
        ("flipped nonce byte", "UPDATE credentials SET nonce = CAST(substr(nonce, 1, 3) || x'ff' || substr(nonce, 5) AS BLOB) WHERE ns = ?1 AND key = ?2 AND substr(nonce, 4, 1) != x'ff'"),
        ("flipped first ciphertext byte", "UPDATE credentials SET sealed = CAST((CASE WHEN substr(sealed, 1, 1) = x'00' THEN x'01' ELSE x'00' END) || substr(sealed, 2) AS BLOB) WHERE ns = ?1 AND key = ?2"),
        ("flipped tag byte", "UPDATE credentials SET sealed = CAST(substr(sealed, 1, length(sealed) - 1) || (CASE WHEN substr(sealed, -1) = x'00' THEN x'01' ELSE x'00' END) AS BLOB) WHERE ns = ?1 AND key = ?2"),
        ("truncated ciphertext", "UPDATE credentials SET sealed = substr(sealed, 1, length(sealed) - 4) WHERE ns = ?1 AND key = ?2"),
        ("short nonce", "UPDATE credentials SET nonce = substr(nonce, 1, 8) WHERE ns = ?1 AND key = ?2"),
        ("other key version", "UPDATE credentials SET key_version = 2 WHERE ns = ?1 AND key = ?2"),
        ("edited updated_at", "UPDATE credentials SET updated_at = updated_at + 1 WHERE ns = ?1 AND key = ?2"),
        ("edited created_at", "UPDATE credentials SET created_at = created_at - 1000 WHERE ns = ?1 AND key = ?2"),
        ("edited version", "UPDATE credentials SET version = version + 1000 WHERE ns = ?1 AND key = ?2"),
        ("edited kind", "UPDATE credentials SET kind = 'binary' WHERE ns = ?1 AND key = ?2"),
        ("unknown kind", "UPDATE credentials SET kind = 'other' WHERE ns = ?1 AND key = ?2"),
        ("text instead of an integer version", "UPDATE credentials SET version = 'v' WHERE ns = ?1 AND key = ?2"),
        ("text instead of blob", "UPDATE credentials SET sealed = 'not a blob' WHERE ns = ?1 AND key = ?2"),
        ("other row's seal", "UPDATE credentials SET (nonce, sealed, created_at, updated_at, version) = (SELECT nonce, sealed, created_at, updated_at, version FROM credentials WHERE ns = ?1 AND key = 'other') WHERE ns = ?1 AND key = ?2"),
    ] {
        expect_tamper_detected(&store, p, "", "victim", what, sql).await;
    }
    // Swapping two rows: each fails, and never shows the other's value.
    let conn = raw(&path);
    conn.execute_batch(
        "UPDATE credentials SET key = 'tmp' WHERE key = 'victim';
         UPDATE credentials SET key = 'victim' WHERE key = 'other';
         UPDATE credentials SET key = 'other' WHERE key = 'tmp';",
    )
    .unwrap();
    for k in ["victim", "other"] {
        let err = store.get(&key(k)).await.expect_err("swapped row");
        assert!(matches!(&err, Error::Integrity { key: named, .. } if named.as_str() == k), "{err:?}");
    }
    // A row copied into another namespace does not open there.
    conn.execute(
        "INSERT INTO credentials (ns, key, key_version, nonce, sealed, created_at, updated_at, version, kind)
         SELECT 'intruder', key, key_version, nonce, sealed, created_at, updated_at, version, kind FROM credentials WHERE ns = '' AND key = 'victim'",
        [],
    )
    .unwrap();
    let err = ns(&store, "intruder").get(&key("victim")).await.expect_err("copied row");
    assert!(matches!(err, Error::Integrity { .. }), "{err:?}");
    // Listing and has() still work, and untouched rows still open.
    put(&store, "fine", "v").await;
    assert_eq!(value(&store, "fine").await.as_deref(), Some("v"));
    assert_eq!(store.list(&ListOptions::new()).await.unwrap().keys.len(), 3);
}

#[tokio::test]
async fn non_sqlite_and_foreign_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let id = || StoreId::new("s").unwrap();
    // Garbage.
    let garbage = dir.path().join("garbage.db");
    let bytes: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&garbage, &bytes).unwrap();
    let err =
        err_of(SqliteStore::open(id(), SqliteConfig::new(&garbage).master_key(MasterKey::generate())).await);
    assert!(matches!(err, Error::Config { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not a SQLite database") && err.to_string().contains("garbage.db"),
        "{err}"
    );
    assert_eq!(std::fs::read(&garbage).unwrap(), bytes, "the file is untouched");
    // A text file.
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some notes, not a database\n".repeat(10)).unwrap();
    let err =
        err_of(SqliteStore::open(id(), SqliteConfig::new(&text).master_key(MasterKey::generate())).await);
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    // Another application's SQLite database.
    let foreign = dir.path().join("foreign.db");
    raw(&foreign).execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
    let before = std::fs::read(&foreign).unwrap();
    let err =
        err_of(SqliteStore::open(id(), SqliteConfig::new(&foreign).master_key(MasterKey::generate())).await);
    assert!(err.to_string().contains("another application"), "{err}");
    assert_eq!(std::fs::read(&foreign).unwrap(), before, "journal mode and content untouched");
    // A directory where the file should be.
    let err = err_of(
        SqliteStore::open(id(), SqliteConfig::new(dir.path()).master_key(MasterKey::generate())).await,
    );
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn newer_schema_is_refused() {
    let (_dir, path, k) = keyed_temp_db("new.db");
    put(&open(&path, &k).await, "k", "v").await;
    wait_closed(&path);
    raw(&path).execute_batch("PRAGMA user_version = 99;").unwrap();
    let err =
        err_of(SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&path).master_key(k)).await);
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("newer"), "{err}");
}

#[tokio::test]
async fn corrupt_pages_give_errors_never_wrong_values() {
    let (_dir, path, k) = keyed_temp_db("c.db");
    let store = open(&path, &k).await;
    for i in 0..300 {
        put(&store, &format!("key-{i:03}"), &format!("value-{i}-").repeat(20)).await;
    }
    drop(store);
    wait_closed(&path);
    let pristine = std::fs::read(&path).unwrap();
    let page = 4096;
    assert!(pristine.len() > 10 * page, "several pages of credentials");

    // 1. Bytes flipped inside the cell content of every page after the first
    //    three (schema, metadata, the credentials' root): SQLite reads the
    //    damaged cells as ordinary data, and AES-GCM must catch them.
    let mut bytes = pristine.clone();
    for start in (3 * page..bytes.len()).step_by(page) {
        for b in &mut bytes[start + page - 120..start + page - 100] {
            *b ^= 0x5a;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let store = open(&path, &k).await;
    let (mut good, mut caught) = (0, 0);
    for i in 0..300 {
        match store.get(&key(&format!("key-{i:03}"))).await {
            Ok(Some(c)) => {
                assert_eq!(
                    c.value.expose_str().unwrap(),
                    format!("value-{i}-").repeat(20),
                    "a wrong value for key {i}"
                );
                good += 1;
            }
            Ok(None) => caught += 1,
            Err(e) => {
                assert!(matches!(e, Error::Integrity { .. }) || e.to_string().contains("corrupt"), "{e}");
                caught += 1;
            }
        }
    }
    assert!(caught > 0 && good > 0, "{caught} damaged and {good} intact rows expected");
    drop(store);
    wait_closed(&path);

    // 2. Every page after the third scrambled: errors, never values.
    let mut bytes = pristine;
    for (i, b) in bytes.iter_mut().enumerate().skip(3 * page) {
        *b = (i as u8).wrapping_mul(31).wrapping_add(7);
    }
    std::fs::write(&path, &bytes).unwrap();
    let outcome = SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&path).master_key(k)).await;
    let store = match outcome {
        Err(e) => {
            assert!(matches!(e, Error::Config { .. }) && e.to_string().contains("c.db"), "{e}");
            return;
        }
        Ok(s) => s,
    };
    for i in 0..300 {
        match store.get(&key(&format!("key-{i:03}"))).await {
            Ok(Some(c)) => assert_eq!(c.value.expose_str().unwrap(), format!("value-{i}-").repeat(20)),
            Ok(None) => {}
            Err(e) => {
                assert!(e.to_string().contains("corrupt") || matches!(e, Error::Integrity { .. }), "{e}")
            }
        }
    }
    assert!(!store.check_availability().await.available || store.list(&ListOptions::new()).await.is_err());
}

#[tokio::test]
async fn full_disk_fails_cleanly_and_loses_nothing() {
    let (_dir, path, k) = keyed_temp_db("full.db");
    let store = open_with(SqliteConfig::new(&path).master_key(k.clone()).max_size_bytes(96 * 1024)).await;
    let v = |i: usize| format!("{i:04}").repeat(500);
    let mut stored = 0;
    let full = loop {
        match store.set(&key(&format!("k{stored:04}")), &SecretValue::new(v(stored)), &Metadata::new()).await
        {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 1000, "the size limit never hit");
    };
    assert!(stored > 5, "some writes fit first");
    assert!(full.is_retriable(), "{full:?}");
    assert!(full.to_string().contains("full") && full.to_string().contains("full.db"), "{full}");
    assert!(!store.has(&key(&format!("k{stored:04}"))).await.unwrap(), "the failed write left nothing");
    // A failed overwrite leaves the old value.
    let err =
        store.set(&key("k0000"), &SecretValue::new("x".repeat(60_000)), &Metadata::new()).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    for i in 0..stored {
        assert_eq!(value(&store, &format!("k{i:04}")).await, Some(v(i)), "key {i} after the disk filled");
    }
    // Deleting frees room again.
    assert!(store.delete(&key("k0001")).await.unwrap());
    store.set(&key("after-delete"), &secret("small"), &Metadata::new()).await.unwrap();
    assert!(store.check_availability().await.available);
    drop(store);
    // Without the cap, everything is there and writes work.
    let store = open(&path, &k).await;
    assert_eq!(count_all(&store).await, stored);
    put(&store, "more", &"y".repeat(60_000)).await;
    let ok: String = raw(&path).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(ok, "ok");
}

#[test]
fn lock_contention_is_retriable_and_never_blocks_the_runtime() {
    // A current-thread runtime: if the store blocked its only thread, the
    // ticker below could not run while the write waits for the lock.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (_dir, path) = temp_db("lock.db");
        let store = open_with(
            SqliteConfig::new(&path)
                .master_key(MasterKey::generate())
                .busy_timeout(Duration::from_millis(400)),
        )
        .await;
        put(&store, "before", "v").await;
        let blocker = raw(&path);
        blocker
            .execute_batch("BEGIN EXCLUSIVE; INSERT INTO credstore_meta VALUES ('lock-test', 1);")
            .unwrap();
        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = {
            let ticks = ticks.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        let started = Instant::now();
        let err = store.set(&key("blocked"), &secret("v"), &Metadata::new()).await.unwrap_err();
        let waited = started.elapsed();
        assert!(err.is_retriable(), "{err:?}");
        assert!(err.to_string().contains("locked"), "{err}");
        assert!(waited >= Duration::from_millis(350), "waited the busy timeout: {waited:?}");
        assert!(ticks.load(Ordering::SeqCst) >= 10, "the runtime kept running while the write waited");
        // Reads go on during the lock (WAL).
        assert_eq!(value(&store, "before").await.as_deref(), Some("v"));
        blocker.execute_batch("ROLLBACK").unwrap();
        put(&store, "blocked", "now").await;
        ticker.abort();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sets_are_group_committed() {
    let (_dir, path) = temp_db("g.db");
    let store = open(&path, &MasterKey::generate()).await;
    let before = store.writer_stats();
    set_concurrently(&store, "g", 200).await;
    let stats = store.writer_stats();
    let (txs, writes) = (stats.transactions - before.transactions, stats.writes - before.writes);
    assert_eq!(writes, 200);
    assert!(txs < writes, "200 concurrent sets took {txs} transactions: no batching");
    for i in 0..200 {
        assert_eq!(value(&store, &format!("g{i}")).await, Some(format!("v{i}")));
    }
    println!("group commit: 200 concurrent sets in {txs} transactions");
}

#[tokio::test]
async fn namespaces_share_one_file_and_writer() {
    let (_dir, path, k) = keyed_temp_db("ns.db");
    let root = open(&path, &k).await;
    let a = ns(&root, "tenant-1");
    let a2 = ns(&root, "tenant-1");
    let ab = ns(&*a, "project.x");
    assert_eq!(ab.namespace().as_str(), "tenant-1/project.x");
    assert_eq!(ab.id(), root.id());
    assert_eq!(ns(&*ab, "").namespace(), ab.namespace(), "the root namespace is this handle's own");
    put(&*a, "k", "in-a").await;
    put(&*ab, "k", "in-ab").await;
    assert_eq!(value(&*a2, "k").await.as_deref(), Some("in-a"));
    assert_eq!(value(&*ab, "k").await.as_deref(), Some("in-ab"));
    assert_eq!(value(&root, "k").await, None);
    assert!(root.list(&ListOptions::new()).await.unwrap().keys.is_empty());
    assert_eq!(a.list(&ListOptions::new()).await.unwrap().keys, vec![key("k")]);
    // One writer: the stats are shared.
    let before = root.writer_stats();
    put(&*ab, "k2", "v").await;
    assert_eq!(
        root.writer_stats().writes,
        before.writes + 1,
        "a namespace's write goes through the one writer"
    );
    // The namespace rules and cap are core's: 512 bytes in all, joined.
    let long = Namespace::new("x".repeat(255)).unwrap();
    let twice = root.with_namespace(&long).unwrap().with_namespace(&long).unwrap();
    assert_eq!(twice.namespace().as_str().len(), 511);
    let err = twice.with_namespace(&long).expect_err("over the cap");
    assert!(matches!(err, Error::InvalidNamespace { .. }), "{err:?}");
    // Another opening of the same file and namespace sees the same data.
    let again = open_with(
        SqliteConfig::new(&path)
            .master_key(k.clone())
            .namespace(Namespace::new("tenant-1/project.x").unwrap()),
    )
    .await;
    assert_eq!(value(&again, "k").await.as_deref(), Some("in-ab"));
    assert_eq!(again.namespace().as_str(), "tenant-1/project.x");
    // Debug: id, path and namespace, nothing else.
    let shown = format!("{ab:?}");
    assert!(shown.contains("ns.db") && shown.contains("tenant-1/project.x"), "{shown}");
}

#[tokio::test]
async fn deleted_database_is_reported_and_refused() {
    let (_dir, path) = temp_db("gone.db");
    let store = open(&path, &MasterKey::generate()).await;
    put(&store, "k", "v").await;
    assert!(store.check_availability().await.available);
    std::fs::remove_file(&path).unwrap();
    let a = store.check_availability().await;
    assert!(!a.available);
    let reason = a.reason.unwrap();
    assert!(reason.contains("gone.db") && reason.contains("deleted"), "{reason}");
    let err = store.set(&key("k2"), &secret("v"), &Metadata::new()).await.unwrap_err();
    assert!(err.is_retriable() && err.to_string().contains("gone.db"), "{err}");
    assert!(store.get(&key("k")).await.unwrap_err().is_retriable());
    // A new file in its place is not silently written to either.
    std::fs::write(&path, b"").unwrap();
    let err = store.set(&key("k3"), &secret("v"), &Metadata::new()).await.unwrap_err();
    assert!(err.to_string().contains("replaced"), "{err}");
}

#[tokio::test]
async fn synchronous_normal_and_timestamps_survive_reopen() {
    let (_dir, path, k) = keyed_temp_db("n.db");
    let store =
        open_with(SqliteConfig::new(&path).master_key(k.clone()).synchronous(Synchronous::Normal)).await;
    let first = store.set(&key("t"), &secret("1"), &meta([("m", "1")])).await.unwrap();
    let second = store.set(&key("t"), &secret("2"), &meta([("m", "2")])).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.created_at, second.created_at);
    assert!(second.updated_at > first.updated_at, "updated_at strictly advances");
    drop(store);
    let store = open(&path, &k).await;
    let c = store.get(&key("t")).await.unwrap().unwrap();
    assert_eq!((c.created_at, c.updated_at), (second.created_at, second.updated_at));
    assert_eq!(c.metadata.get("m"), Some("2"));
}

#[tokio::test]
async fn binary_values_round_trip_sealed_with_their_kind() {
    let (dir, path, k) = keyed_temp_db("bin.db");
    let store = open(&path, &k).await;
    // Every byte value, and a canary that is not UTF-8 around it.
    let canary = unique("BINCANARY");
    let mut bytes: Vec<u8> = canary.as_bytes().to_vec();
    bytes.extend(0..=255u8);
    bytes.extend_from_slice(canary.as_bytes());
    let binary = SecretValue::from(bytes.clone());
    assert!(!binary.is_text());
    store.set(&key("bin"), &binary, &meta([("m", "1")])).await.unwrap();
    put(&store, "text", "plain").await;
    let got = store.get(&key("bin")).await.unwrap().unwrap();
    assert_eq!(got.value.expose_secret(), bytes.as_slice());
    assert!(!got.value.is_text() && got.value.expose_str().is_err());
    let kinds: Vec<(String, String)> = raw(&path)
        .prepare("SELECT key, kind FROM credentials ORDER BY key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(kinds, [("bin".into(), "binary".into()), ("text".into(), "text".into())]);
    assert!(files_containing(dir.path(), canary.as_bytes()).is_empty(), "binary plaintext on disk");
    // Overwriting binary with text (and back) changes the kind with the value.
    put(&store, "bin", "now text").await;
    assert!(store.get(&key("bin")).await.unwrap().unwrap().value.is_text());
    store.set(&key("bin"), &binary, &Metadata::new()).await.unwrap();
    drop(store);
    let store = open(&path, &k).await;
    let got = store.get(&key("bin")).await.unwrap().unwrap();
    assert!(!got.value.is_text() && got.value == binary);
    assert_eq!(value(&store, "text").await.as_deref(), Some("plain"));
}

#[tokio::test]
async fn versions_come_from_one_counter_for_the_whole_file() {
    let (_dir, path, k) = keyed_temp_db("v.db");
    let a = open(&path, &k).await;
    let b = open(&path, &k).await;
    let tenant = ns(&a, "t");
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..5 {
        for (who, store) in [("a", &a as &dyn CredentialStore), ("b", &b), ("t", &*tenant)] {
            let out =
                store.set(&key("k"), &secret(&format!("{who}{round}")), &Metadata::new()).await.unwrap();
            assert!(seen.insert(out.version.to_string()), "version {} given twice", out.version);
            assert_eq!(store.version(&key("k")).await.unwrap(), Some(out.version));
        }
    }
    // Delete and create again: a new version, and the old one no longer matches.
    let old = a.version(&key("k")).await.unwrap().unwrap();
    assert!(b.delete(&key("k")).await.unwrap());
    assert_eq!(a.version(&key("k")).await.unwrap(), None);
    let again = a.create(&key("k"), &secret("new"), &Metadata::new()).await.unwrap();
    assert!(again.created && !seen.contains(again.version.as_str()));
    let err = b.replace(&key("k"), &secret("stale"), &Metadata::new(), &old).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    drop((a, b, tenant));
    // The counter is in the file: a reopening goes on from it.
    let store = open(&path, &k).await;
    let next = store.set(&key("k2"), &secret("v"), &Metadata::new()).await.unwrap().version;
    let n: u64 = next.as_str().parse().unwrap();
    assert_eq!(n, 17, "15 writes, a create, then this one");
    // A damaged counter fails writes with a clear error, and nothing changes.
    raw(&path).execute("DELETE FROM credstore_meta WHERE name = 'last_version'", []).unwrap();
    let err = store.set(&key("k2"), &secret("lost"), &Metadata::new()).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("damaged"), "{err}");
    assert_eq!(value(&store, "k2").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_failed_condition_fails_only_its_own_write_in_a_group_commit() {
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Waker};
    type Write<'a> =
        Pin<Box<dyn Future<Output = credstore_core::Result<credstore_core::SetOutcome>> + Send + 'a>>;

    let (_dir, path) = temp_db("cas.db");
    let store = open(&path, &MasterKey::generate()).await;
    let base = store.set(&key("cas"), &secret("base"), &Metadata::new()).await.unwrap().version;
    // Another connection holds the write lock, so every write below queues
    // up and the writer applies them together once it is released.
    let blocker = raw(&path);
    blocker.execute_batch("BEGIN EXCLUSIVE; INSERT INTO credstore_meta VALUES ('lock-test', 1);").unwrap();
    let before = store.writer_stats();
    let (race, cas) = (key("race"), key("cas"));
    let plain_keys: Vec<_> = (0..64).map(|i| key(&format!("p{i}"))).collect();
    let values: Vec<SecretValue> = (0..64).map(|i| SecretValue::new(format!("v{i}"))).collect();
    let none = Metadata::new();
    let mut writes: Vec<(&str, usize, Write<'_>)> = Vec::new();
    for (i, v) in values.iter().enumerate().take(16) {
        // 16 create-only writes of one key, 16 replaces from one version,
        // interleaved with the plain writes.
        writes.push(("create", i, Box::pin(store.create(&race, v, &none))));
        writes.push(("replace", i, Box::pin(store.replace(&cas, v, &none, &base))));
        writes.push(("plain", i, Box::pin(store.set(&plain_keys[i], v, &none))));
    }
    for i in 16..64 {
        writes.push(("plain", i, Box::pin(store.set(&plain_keys[i], &values[i], &none))));
    }
    // One poll queues each write with the writer (they do not complete: the
    // lock is held).
    let mut cx = Context::from_waker(Waker::noop());
    for (what, i, w) in &mut writes {
        assert!(w.as_mut().poll(&mut cx).is_pending(), "{what} {i} finished under the lock");
    }
    blocker.execute_batch("ROLLBACK").unwrap();
    let mut failed = 0;
    for (what, i, w) in writes {
        match (what, i, w.await) {
            ("plain", _, Ok(_)) | ("create" | "replace", 0, Ok(_)) => {}
            ("create" | "replace", _, Err(Error::PreconditionFailed { .. })) => failed += 1,
            (what, i, other) => panic!("{what} {i}: {other:?}"),
        }
    }
    assert_eq!(failed, 30, "all but the first create and the first replace failed their condition");
    let stats = store.writer_stats();
    let (txs, applied) = (stats.transactions - before.transactions, stats.writes - before.writes);
    assert_eq!(applied, 66, "failed conditions are not counted as writes");
    assert!(txs <= 2, "the queued writes took {txs} transactions, not one group commit");
    for i in 0..64 {
        assert_eq!(value(&store, &format!("p{i}")).await, Some(format!("v{i}")));
    }
    assert_eq!(value(&store, "race").await.as_deref(), Some("v0"));
    assert_eq!(value(&store, "cas").await.as_deref(), Some("v0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_of_every_size_read_back_on_the_calling_task_and_on_the_blocking_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("sizes.db"), &MasterKey::generate()).await;
    // Around the 16 KiB of sealed payload read on the calling task (the
    // payload adds 7 bytes and the tag 16), and the largest value.
    let sizes =
        [0, 1, 100, 16_384 - 24, 16_384 - 23, 16_384 - 22, 16_384, 40_000, credstore_core::MAX_VALUE_BYTES];
    let meta = meta([("size", "any")]);
    for (i, size) in sizes.into_iter().enumerate() {
        let text: String = (0..size).map(|j| char::from(b'a' + ((i + j) % 26) as u8)).collect();
        let bytes: Vec<u8> = (0..size).map(|j| (i * 31 + j * 7) as u8 | 0x80).collect();
        for (name, value) in [
            (format!("text-{size}"), SecretValue::from(text)),
            (format!("bin-{size}"), SecretValue::from(bytes)),
        ] {
            let k = key(&name);
            let written = store.set(&k, &value, &meta).await.unwrap();
            let got = store.get(&k).await.unwrap().unwrap();
            assert_eq!(got.value, value, "{name}");
            assert_eq!(got.value.is_text(), value.is_text(), "{name}");
            assert_eq!(got.metadata, meta, "{name}");
            assert_eq!(got.version, written.version, "{name}");
            assert!(store.has(&k).await.unwrap());
            assert_eq!(store.version(&k).await.unwrap(), Some(written.version));
        }
    }
    // Many tasks at once: more concurrent reads than idle connections.
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for size in [100, 40_000] {
                    let got = store.get(&key(&format!("text-{size}"))).await.unwrap().unwrap();
                    assert_eq!(got.value.len(), size, "task {t}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_reaches_the_logs() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // The only test of this binary that sets it: logs of every thread (the
    // writer, the blocking pool) are captured.
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber in this binary");
    let (_dir, path, master) = keyed_temp_db("logs.db");
    let store = open(&path, &master).await;
    let small = "log-probe-small-9f3c1d";
    let large = format!("log-probe-large-{}", "7".repeat(30_000));
    put(&store, "small", small).await;
    put(&store, "large", &large).await;
    for _ in 0..100 {
        assert_eq!(value(&store, "small").await.as_deref(), Some(small));
    }
    assert_eq!(value(&store, "large").await.as_deref(), Some(large.as_str()));
    // A failed read, a rotation and a reopening log too.
    raw(&path).execute("UPDATE credentials SET created_at = created_at + 1 WHERE key = 'small'", []).unwrap();
    let err = store.get(&key("small")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(store.delete(&key("small")).await.unwrap());
    store.rotate_key(MasterKey::generate()).await.unwrap();
    drop(store);
    let logs = captured.text();
    assert!(logs.contains("rotated the master key"), "the capture works: {logs}");
    assert!(!logs.contains("log-probe"), "a value reached the logs: {logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_store_lets_other_connections_checkpoint_and_truncate_the_log() {
    let (_dir, path) = temp_db("ckpt.db");
    let store = open(&path, &MasterKey::generate()).await;
    let sets: Vec<_> = (0..300)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(
                async move { store.set(&key(&format!("c{i}")), &secret("v"), &Metadata::new()).await },
            )
        })
        .collect();
    for s in sets {
        s.await.unwrap().unwrap();
    }
    for i in (0..300).step_by(7) {
        assert_eq!(value(&store, &format!("c{i}")).await.as_deref(), Some("v"));
    }
    let wal = sidecar(&path, "-wal");
    // Another connection (as another process would) checkpoints everything
    // and truncates the log while the store is open and reading; its busy
    // handler waits for the store's own read transactions, which never last.
    let other = raw(&path);
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            for round in 0..2000 {
                assert_eq!(value(&store, &format!("c{}", round % 300)).await.as_deref(), Some("v"));
            }
        })
    };
    let (busy, log, done): (i64, i64, i64) = tokio::task::spawn_blocking(move || {
        other
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
    })
    .await
    .unwrap();
    reader.await.unwrap();
    assert_eq!(busy, 0, "the truncating checkpoint was not held back (log {log}, checkpointed {done})");
    assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0, "the log was truncated");
    assert_eq!(value(&store, "c299").await.as_deref(), Some("v"));
    put(&store, "after", "w").await;
    assert_eq!(value(&store, "after").await.as_deref(), Some("w"));
}
