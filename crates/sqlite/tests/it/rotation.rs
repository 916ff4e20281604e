//! Master key rotation.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use credstore_conformance::fixtures::{key, meta};
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId};
use credstore_sqlite::{KdfParams, KeyFile, MasterKey, SqliteConfig, SqliteStore};

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_reseals_every_row_and_refuses_the_old_key() {
    let (_dir, path, old) = keyed_temp_db("r.db");
    let root = open(&path, &old).await;
    let spaces: [Arc<dyn CredentialStore>; 3] = [Arc::new(root.clone()), ns(&root, "t1"), ns(&root, "t1/p")];
    for (n, s) in spaces.iter().enumerate() {
        for i in 0..50 {
            s.set(
                &key(&format!("k{i}")),
                &SecretValue::new(format!("v{n}-{i}")),
                &meta([("n", &*n.to_string())]),
            )
            .await
            .unwrap();
        }
    }
    let before: Vec<(Vec<u8>, Vec<u8>)> = raw(&path)
        .prepare("SELECT nonce, sealed FROM credentials ORDER BY ns, key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let created = root.get(&key("k0")).await.unwrap().unwrap();
    assert_eq!(root.key_version(), 1);
    let mut versions = Vec::new();
    for s in &spaces {
        for i in 0..50 {
            versions.push(s.version(&key(&format!("k{i}"))).await.unwrap());
        }
    }

    let seen = Arc::new(Mutex::new(Vec::new()));
    let new = MasterKey::generate();
    let report = {
        let seen = seen.clone();
        root.rotate_key_with_progress(new.clone(), move |done, total| {
            seen.lock().unwrap().push((done, total))
        })
        .await
        .unwrap()
    };
    assert_eq!(report.rows, 150);
    assert_eq!(report.key_version, 2);
    assert_eq!(seen.lock().unwrap().last(), Some(&(150, 150)));
    println!("rotated {} rows in {:?}", report.rows, report.elapsed);
    assert_eq!(root.key_version(), 2);

    // Every row was re-sealed: new nonce and ciphertext, new key version;
    // the row versions stay.
    let after: Vec<(i64, Vec<u8>, Vec<u8>)> = raw(&path)
        .prepare("SELECT key_version, nonce, sealed FROM credentials ORDER BY ns, key")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(after.len(), before.len());
    for ((v, n, s), (n0, s0)) in after.iter().zip(&before) {
        assert_eq!(*v, 2);
        assert!(n != n0 && s != s0, "a row kept its old seal");
    }

    // Same values, metadata and timestamps, through every handle.
    for (n, s) in spaces.iter().enumerate() {
        for i in 0..50 {
            let c = s.get(&key(&format!("k{i}"))).await.unwrap().unwrap();
            assert_eq!(c.value.expose_str().unwrap(), format!("v{n}-{i}"));
            assert_eq!(Some(c.version), versions[n * 50 + i], "a rotation is not a write");
            assert_eq!(c.metadata.get("n"), Some(&*n.to_string()));
        }
    }
    let c = root.get(&key("k0")).await.unwrap().unwrap();
    assert_eq!((c.created_at, c.updated_at), (created.created_at, created.updated_at));
    put(&root, "after", "rotation").await;

    drop(spaces);
    drop(root);
    let err = open_err(&path, &old).await;
    assert!(err.to_string().contains("wrong master key"), "{err}");
    let reopened = open(&path, &new).await;
    assert_eq!(reopened.key_version(), 2);
    assert_eq!(value(&reopened, "after").await.as_deref(), Some("rotation"));
    assert_eq!(value(&*ns(&reopened, "t1/p"), "k49").await.as_deref(), Some("v2-49"));
}

#[tokio::test]
async fn rotation_to_and_from_a_passphrase() {
    let (_dir, path, raw_key) = keyed_temp_db("p.db");
    let store = open(&path, &raw_key).await;
    put(&store, "k", "v").await;
    let params = KdfParams::MIN;
    let pass = MasterKey::from_passphrase_with_params(&secret("a long passphrase"), params);
    store.rotate_key(pass.clone()).await.unwrap();
    // The salt and parameters travel in the wrapped data key.
    assert_eq!(key_record(&path).provider_kind(), "passphrase");
    drop(store);
    assert!(open_err(&path, &raw_key).await.to_string().contains("wrong master key"));
    let store = open(&path, &pass).await;
    assert_eq!(value(&store, "k").await.as_deref(), Some("v"));
    // Same passphrase again: a fresh salt, so a different key, still opens.
    store.rotate_key(pass.clone()).await.unwrap();
    let final_key = MasterKey::generate();
    store.rotate_key(final_key.clone()).await.unwrap();
    assert_eq!(store.key_version(), 4);
    drop(store);
    let gone: i64 = raw(&path)
        .query_row("SELECT count(*) FROM credstore_meta WHERE name = 'kdf'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(gone, 0, "a raw key leaves no passphrase record");
    assert!(open_err(&path, &pass).await.to_string().contains("wrong master key"));
    assert_eq!(value(&open(&path, &final_key).await, "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn a_tampered_row_aborts_the_rotation_and_changes_nothing() {
    let (_dir, path, old) = keyed_temp_db("t.db");
    let store = open(&path, &old).await;
    for i in 0..2500 {
        // Spread over chunks, so the rotation fails after re-sealing some.
        store
            .set(&key(&format!("k{i:04}")), &SecretValue::new(format!("v{i}")), &Metadata::new())
            .await
            .unwrap();
    }
    raw(&path)
        .execute(
            "UPDATE credentials SET sealed = CAST(x'00' || substr(sealed, 2) AS BLOB) WHERE key = 'k2222'",
            [],
        )
        .unwrap();
    let new = MasterKey::generate();
    let err = store.rotate_key(new.clone()).await.unwrap_err();
    match &err {
        Error::Integrity { key: k, .. } => assert_eq!(k.as_str(), "k2222"),
        other => panic!("expected an integrity error, got {other:?}"),
    }
    assert!(err.to_string().contains("undone"), "{err}");
    assert_eq!(store.key_version(), 1);
    assert_eq!(value(&store, "k0001").await.as_deref(), Some("v1"));
    put(&store, "still", "writable").await;
    let versions: i64 = raw(&path)
        .query_row("SELECT count(*) FROM credentials WHERE key_version != 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(versions, 0, "no row kept a new seal");
    drop(store);
    assert!(open_err(&path, &new).await.to_string().contains("wrong master key"));
    let store = open(&path, &old).await;
    assert_eq!(value(&store, "k2499").await.as_deref(), Some("v2499"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_and_writes_during_a_rotation_all_succeed() {
    let (_dir, path) = temp_db("c.db");
    let store = open(&path, &MasterKey::generate()).await;
    let n = 3000;
    set_concurrently(&store, "k", n).await;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (store, stop, reads) = (store.clone(), stop.clone(), reads.clone());
            tokio::spawn(async move {
                let mut i = r;
                while !stop.load(Ordering::SeqCst) {
                    let k = i % n;
                    let got = store
                        .get(&key(&format!("k{k}")))
                        .await
                        .unwrap_or_else(|e| panic!("read during rotation: {e}"));
                    assert_eq!(got.unwrap().value.expose_str().unwrap(), format!("v{k}"));
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 7;
                }
            })
        })
        .collect();
    let prober = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut probes = 0;
            while !stop.load(Ordering::SeqCst) {
                let a = store.check_availability().await;
                assert!(a.available, "probe during rotation: {:?}", a.reason);
                probes += 1;
            }
            probes
        })
    };
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..20 {
                store.set(&key(&format!("during-{i}")), &secret("w"), &Metadata::new()).await.unwrap();
            }
        })
    };
    for _ in 0..3 {
        store.rotate_key(MasterKey::generate()).await.unwrap();
    }
    writer.await.unwrap();
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert!(prober.await.unwrap() > 0);
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(store.key_version(), 4);
    assert_eq!(count_all(&store).await, n + 20);
}

#[tokio::test]
async fn a_rotation_through_another_opening_is_detected() {
    let (_dir, path, k) = keyed_temp_db("o.db");
    let a = open(&path, &k).await;
    let b = open(&path, &k).await;
    put(&a, "k", "v").await;
    assert_eq!(value(&b, "k").await.as_deref(), Some("v"));
    a.rotate_key(MasterKey::generate()).await.unwrap();
    let err = b.get(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("rotated"), "{err}");
    let err = b.set(&key("k2"), &secret("v"), &Metadata::new()).await.unwrap_err();
    assert!(err.to_string().contains("rotated"), "a stale key never seals new rows: {err}");
    let err = b.rotate_key(MasterKey::generate()).await.unwrap_err();
    assert!(err.to_string().contains("rotated"), "{err}");
    let a_ = b.check_availability().await;
    assert!(!a_.available && a_.reason.unwrap().contains("rotated"));
    assert!(!a.has(&key("k2")).await.unwrap());
    assert!(a.check_availability().await.available);
}

#[tokio::test]
async fn rotating_an_empty_database() {
    let (_dir, path) = temp_db("e.db");
    let store = open(&path, &MasterKey::generate()).await;
    let report = store.rotate_key(MasterKey::generate()).await.unwrap();
    assert_eq!((report.rows, report.key_version), (0, 2));
}

// ---------------------------------------------------------------------------
// Key files

fn sibling(path: &std::path::Path, suffix: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(format!("{}{suffix}", path.display()))
}

async fn open_keyed(db: &std::path::Path, file: &std::path::Path) -> SqliteStore {
    SqliteStore::open(StoreId::new("kf").unwrap(), SqliteConfig::new(db).master_key_file(KeyFile::new(file)))
        .await
        .unwrap_or_else(|e| panic!("open with the key file: {e}"))
}

/// A database `db` and its key file `file` in a fresh folder `dir`, made
/// by an opening with the key file that wrote `a` = `1`.
struct KeyedDb {
    dir: tempfile::TempDir,
    db: std::path::PathBuf,
    file: std::path::PathBuf,
}

impl KeyedDb {
    /// The database and the store that made it, still open.
    async fn new() -> (Self, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let (db, file) = (dir.path().join("k.db"), dir.path().join("k.key"));
        let store = open_keyed(&db, &file).await;
        put(&store, "a", "1").await;
        (Self { dir, db, file }, store)
    }

    /// The database, closed again.
    async fn closed() -> Self {
        let (keyed, store) = Self::new().await;
        drop(store);
        keyed
    }

    /// Opens the database with the key file, and checks that it reads `a`.
    async fn reopen(&self) -> SqliteStore {
        let store = open_keyed(&self.db, &self.file).await;
        assert_eq!(value(&store, "a").await.as_deref(), Some("1"));
        store
    }

    /// `<file><suffix>`, where a key file rotation keeps its other keys.
    fn sibling(&self, suffix: &str) -> std::path::PathBuf {
        sibling(&self.file, suffix)
    }
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_key_file_rotation_rewrites_the_key_file_and_leaves_nothing_behind() {
    let (KeyedDb { dir, db, file }, store) = KeyedDb::new().await;
    let before = std::fs::read(&file).unwrap();
    let report = store.rotate_key_file().await.unwrap();
    assert_eq!((report.rows, report.key_version), (1, 2));
    let after = std::fs::read(&file).unwrap();
    assert_ne!(after, before);
    assert_eq!(after.len(), 45, "base64 and a newline");
    assert_eq!(mode(&file), 0o600);
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.iter().filter(|n| n.starts_with("k.key")).collect::<Vec<_>>(), ["k.key"], "{names:?}");
    put(&store, "b", "2").await;
    drop(store);
    let store = open(&db, &MasterKey::from_file(&file).unwrap()).await;
    assert_eq!(value(&store, "a").await.as_deref(), Some("1"));
    assert_eq!(value(&store, "b").await.as_deref(), Some("2"));
    // Only a store opened with a key file rotates its key file.
    let err = store.rotate_key_file().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("master_key_file"), "{err}");
}

#[tokio::test]
async fn an_opening_after_a_crash_past_the_rotation_commit_completes_it() {
    let (keyed, store) = KeyedDb::new().await;
    let file = &keyed.file;
    // What a crash between the commit and the rename leaves: the database
    // under the key in <file>.new, <file> and <file>.old holding the old one.
    let new = MasterKey::generate();
    store.rotate_key(new.clone()).await.unwrap();
    drop(store);
    std::fs::hard_link(file, keyed.sibling(".old")).unwrap();
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(sibling(file, ".new"))
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{}\n", *new.to_base64().unwrap()).as_bytes()).unwrap();
    }
    let old_text = std::fs::read(file).unwrap();
    let store = keyed.reopen().await;
    assert_ne!(std::fs::read(file).unwrap(), old_text, "the key file now holds the new key");
    assert!(!keyed.sibling(".new").exists() && !keyed.sibling(".old").exists());
    drop(store);
    assert_eq!(value(&open(&keyed.db, &new).await, "a").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn an_opening_where_only_the_kept_old_key_works_uses_it_and_changes_no_file() {
    let keyed = KeyedDb::closed().await;
    let (file, old) = (&keyed.file, keyed.sibling(".old"));
    // The database is under the key of <file>.old (restored from a backup,
    // say), and <file> holds another key.
    std::fs::rename(file, &old).unwrap();
    MasterKey::load_or_create_file(file).unwrap();
    let (kept, current) = (std::fs::read(&old).unwrap(), std::fs::read(file).unwrap());
    let store = keyed.reopen().await;
    assert_eq!(std::fs::read(&old).unwrap(), kept);
    assert_eq!(std::fs::read(file).unwrap(), current);
    // A rotation from there is refused: the key file does not hold the key.
    let err = store.rotate_key_file().await.unwrap_err();
    assert!(err.to_string().contains("does not open database"), "{err}");
    assert!(!keyed.sibling(".new").exists());
    assert_eq!(std::fs::read(&old).unwrap(), kept);
}

#[tokio::test]
async fn leftovers_of_a_rotation_that_never_committed_are_removed_at_opening() {
    let keyed = KeyedDb::closed().await;
    std::fs::hard_link(&keyed.file, keyed.sibling(".old")).unwrap();
    MasterKey::load_or_create_file(keyed.sibling(".new")).unwrap();
    let before = std::fs::read(&keyed.file).unwrap();
    let _store = keyed.reopen().await;
    assert_eq!(std::fs::read(&keyed.file).unwrap(), before);
    assert!(!keyed.sibling(".new").exists() && !keyed.sibling(".old").exists());
}
