//! Opening a file of schema 1 (credstore-sqlite 0.1) migrates it to schema 2.
//!
//! The schema 1 files are written here, by hand, in the layout 0.1 wrote:
//! the same tables without `version` and `kind`, rows sealed in row format 1
//! (associated data ending at the timestamps, text values only).

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use credstore_conformance::fixtures::key;
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

use crate::util::*;

const KEY: [u8; 32] = [0x5a; 32];

/// One credential of a schema 1 file.
struct V1Row<'a> {
    ns: &'a str,
    key: &'a str,
    value: &'a str,
    metadata: &'a [(&'a str, &'a str)],
    created: i64,
    updated: i64,
}

fn seal(aead: &Aes256Gcm, nonce: [u8; 12], plain: &[u8], aad: &[u8]) -> Vec<u8> {
    aead.encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad }).unwrap()
}

/// Writes a schema 1 database at `path` with `rows`, sealed under `KEY`
/// (key version 1), exactly as credstore-sqlite 0.1 laid it out.
fn write_v1(path: &Path, rows: &[V1Row<'_>]) {
    let aead = Aes256Gcm::new_from_slice(&KEY).unwrap();
    let conn = raw(path);
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA application_id = 1129464915;
         BEGIN;
         CREATE TABLE credstore_meta (
             name  TEXT PRIMARY KEY NOT NULL,
             value BLOB NOT NULL
         ) WITHOUT ROWID;
         CREATE TABLE credentials (
             ns          TEXT    NOT NULL,
             key         TEXT    NOT NULL,
             key_version INTEGER NOT NULL,
             nonce       BLOB    NOT NULL,
             sealed      BLOB    NOT NULL,
             created_at  INTEGER NOT NULL,
             updated_at  INTEGER NOT NULL,
             PRIMARY KEY (ns, key)
         ) WITHOUT ROWID;
         PRAGMA user_version = 1;",
    )
    .unwrap();
    let mut check_aad = b"credstore-sqlite/check\0".to_vec();
    check_aad.push(1);
    check_aad.extend_from_slice(&1u32.to_be_bytes());
    let nonce = [1u8; 12];
    let mut check = nonce.to_vec();
    check.extend(seal(&aead, nonce, b"credstore-sqlite master key check", &check_aad));
    let put = "INSERT INTO credstore_meta (name, value) VALUES (?1, ?2)";
    conn.execute(put, rusqlite::params!["format", 1i64]).unwrap();
    conn.execute(put, rusqlite::params!["key_version", 1i64]).unwrap();
    conn.execute(put, rusqlite::params!["check", check]).unwrap();
    for (i, row) in rows.iter().enumerate() {
        let mut payload = vec![1u8];
        payload.extend_from_slice(&(row.value.len() as u32).to_le_bytes());
        payload.extend_from_slice(row.value.as_bytes());
        payload.extend_from_slice(&(row.metadata.len() as u16).to_le_bytes());
        for (k, v) in row.metadata {
            for part in [k, v] {
                payload.extend_from_slice(&(part.len() as u16).to_le_bytes());
                payload.extend_from_slice(part.as_bytes());
            }
        }
        let mut aad = b"credstore-sqlite/row\0".to_vec();
        aad.push(1);
        aad.extend_from_slice(&1u32.to_be_bytes());
        for part in [row.ns, row.key] {
            aad.extend_from_slice(&(part.len() as u16).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad.extend_from_slice(&row.created.to_be_bytes());
        aad.extend_from_slice(&row.updated.to_be_bytes());
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&(i as u64 + 100).to_be_bytes());
        let sealed = seal(&aead, nonce, &payload, &aad);
        conn.execute(
            "INSERT INTO credentials (ns, key, key_version, nonce, sealed, created_at, updated_at)
             VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6)",
            rusqlite::params![row.ns, row.key, &nonce[..], sealed, row.created, row.updated],
        )
        .unwrap();
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn user_version(path: &Path) -> i64 {
    raw(path).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap()
}

fn columns(path: &Path) -> Vec<String> {
    raw(path)
        .prepare("SELECT name FROM pragma_table_info('credentials')")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

const ROWS: [V1Row<'static>; 4] = [
    V1Row {
        ns: "",
        key: "api-key",
        value: "sk_old_1",
        metadata: &[("owner", "payments")],
        created: 10,
        updated: 20,
    },
    V1Row { ns: "", key: "db.password", value: "pä55 ✓", metadata: &[], created: 30, updated: 30 },
    V1Row { ns: "t1", key: "api-key", value: "tenant value", metadata: &[], created: 40, updated: 50 },
    V1Row { ns: "t1/p", key: "z", value: "", metadata: &[("a", ""), ("b", "2")], created: 60, updated: 70 },
];

#[tokio::test]
async fn a_schema_1_file_is_migrated_on_open() {
    let (_dir, path) = temp_db("old.db");
    write_v1(&path, &ROWS);
    assert_eq!(user_version(&path), 1);

    let master = MasterKey::from_bytes(KEY);
    let store = open(&path, &master).await;
    assert_eq!(user_version(&path), 2);
    assert_eq!(
        columns(&path),
        [
            "ns",
            "key",
            "key_version",
            "nonce",
            "sealed",
            "created_at",
            "updated_at",
            "version",
            "kind",
            "expires_at"
        ]
    );
    // Every row: same value (text), metadata and timestamps; a version each.
    let mut versions = Vec::new();
    for row in &ROWS {
        let handle: std::sync::Arc<dyn CredentialStore> =
            if row.ns.is_empty() { std::sync::Arc::new(store.clone()) } else { ns(&store, row.ns) };
        let c = handle.get(&key(row.key)).await.unwrap().unwrap_or_else(|| panic!("{} migrated", row.key));
        assert!(c.value.is_text());
        assert_eq!(c.value.expose_str().unwrap(), row.value);
        assert_eq!(c.metadata, meta_of(row.metadata));
        let nanos = |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        assert_eq!((nanos(c.created_at), nanos(c.updated_at)), (row.created as u128, row.updated as u128));
        assert_eq!(handle.version(&key(row.key)).await.unwrap().as_ref(), Some(&c.version));
        versions.push(c.version);
    }
    let texts: Vec<&str> = versions.iter().map(|v| v.as_str()).collect();
    assert_eq!(texts, ["1", "2", "3", "4"], "versions in (ns, key) order");
    let kinds: i64 = raw(&path)
        .query_row("SELECT count(*) FROM credentials WHERE kind = 'text'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kinds, 4);

    // Writes go on from the last migrated version; conditional writes use the
    // migrated versions.
    let replaced =
        store.replace(&key("api-key"), &secret("sk_new"), &Metadata::new(), &versions[0]).await.unwrap();
    assert_eq!(replaced.version.as_str(), "5");
    let err = store.replace(&key("api-key"), &secret("x"), &Metadata::new(), &versions[0]).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    let binary = SecretValue::from(vec![0xff, 0x00, 0xfe]);
    store.set(&key("bin"), &binary, &Metadata::new()).await.unwrap();

    // A rotation re-seals migrated rows too; a reopening does not migrate again.
    let new_key = MasterKey::generate();
    assert_eq!(store.rotate_key(new_key.clone()).await.unwrap().rows, 5);
    drop(store);
    wait_closed(&path);
    let store = open(&path, &new_key).await;
    assert_eq!(value(&store, "api-key").await.as_deref(), Some("sk_new"));
    assert_eq!(value(&store, "db.password").await.as_deref(), Some("pä55 ✓"));
    assert_eq!(store.version(&key("db.password")).await.unwrap(), Some(versions[1].clone()));
    let got = store.get(&key("bin")).await.unwrap().unwrap().value;
    assert!(!got.is_text() && got == binary);
    assert_eq!(value(&*ns(&store, "t1/p"), "z").await.as_deref(), Some(""));
}

fn meta_of(entries: &[(&str, &str)]) -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in entries {
        m.insert(*k, *v).unwrap();
    }
    m
}

#[tokio::test]
async fn a_schema_1_file_opened_with_the_wrong_key_is_left_untouched() {
    let (_dir, path) = temp_db("old.db");
    write_v1(&path, &ROWS);
    let err = err_of(
        SqliteStore::open(
            StoreId::new("s").unwrap(),
            SqliteConfig::new(&path).master_key(MasterKey::generate()),
        )
        .await,
    );
    assert!(err.to_string().contains("wrong master key"), "{err}");
    assert_eq!(user_version(&path), 1);
    assert_eq!(columns(&path).len(), 7);
}

#[tokio::test]
async fn a_tampered_schema_1_row_stops_the_migration_and_changes_nothing() {
    let (_dir, path) = temp_db("old.db");
    write_v1(&path, &ROWS);
    raw(&path)
        .execute("UPDATE credentials SET updated_at = updated_at + 1 WHERE ns = 't1' AND key = 'api-key'", [])
        .unwrap();
    let master = MasterKey::from_bytes(KEY);
    let err = err_of(
        SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&path).master_key(master.clone()))
            .await,
    );
    match &err {
        Error::Integrity { key, .. } => assert_eq!(key.as_str(), "api-key"),
        other => panic!("expected an integrity error, got {other:?}"),
    }
    assert!(err.to_string().contains("t1") && err.to_string().contains("nothing was changed"), "{err}");
    assert!(!err.to_string().contains("tenant value"), "{err}");
    assert_eq!(user_version(&path), 1, "still schema 1");
    assert_eq!(columns(&path).len(), 7);
    let tables: i64 = raw(&path)
        .query_row("SELECT count(*) FROM sqlite_master WHERE name = 'credentials_v2'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(tables, 0, "the half-built table was rolled back");
    // Without the bad row, the file migrates.
    raw(&path).execute("DELETE FROM credentials WHERE ns = 't1'", []).unwrap();
    let store = open(&path, &master).await;
    assert_eq!(value(&store, "api-key").await.as_deref(), Some("sk_old_1"));
    assert_eq!(user_version(&path), 2);
}
