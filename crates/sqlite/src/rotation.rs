//! The two rotations, each in one transaction: of the data key (every row
//! and the check value re-sealed under a new one, also how a database of
//! 0.2 moves to a data key) and of the key-encryption key (the key record
//! rewrapped, no row touched).

use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_core::{CredentialKey, Result};
use rusqlite::{params, Connection};

use credstore_seal::{KeyProvider, KeyRecord, RowCipher, RowPlace, RowRole, ValueKind, FORMAT_VERSION};

use crate::db::{self, SealedRow, META_CHECK, META_FORMAT, META_KDF, META_KEY_RECORD, META_KEY_VERSION};
use crate::errors;
use crate::keys::Prepared;
use crate::shared::Shared;

/// A callback told `(rows done, rows in total)` as a rotation goes on.
pub(crate) type Progress = Box<dyn FnMut(usize, usize) + Send>;

/// Rows re-sealed per read of the table.
const CHUNK: usize = 1000;

/// Which key a rotation replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotationKind {
    /// The data key: every row re-sealed under a new one (and, for
    /// [`crate::SqliteStore::rotate_key`], wrapped by a new key-encryption
    /// key).
    DataKey,
    /// The key-encryption key only: the data key rewrapped, no row touched.
    KeyEncryptionKey,
}

impl RotationKind {
    /// How the CLI says it: `data key rotation (every credential re-sealed)`
    /// or `key-encryption key rotation (data key rewrapped, no credential
    /// touched)`.
    pub fn describe(self) -> &'static str {
        match self {
            RotationKind::DataKey => "data key rotation (every credential re-sealed)",
            RotationKind::KeyEncryptionKey => {
                "key-encryption key rotation (data key rewrapped, no credential touched)"
            }
        }
    }
}

/// What a rotation ([`crate::SqliteStore::rotate_key`],
/// [`crate::SqliteStore::rotate_data_key`], [`crate::SqliteStore::rewrap_key`])
/// did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// Which key was replaced.
    pub kind: RotationKind,
    /// Rows re-sealed: every credential of every namespace in the file for
    /// a data key rotation, 0 for a key-encryption key rotation.
    pub rows: usize,
    /// Kept versions re-sealed with them (the history rows of every key),
    /// 0 for a key-encryption key rotation.
    pub history_rows: usize,
    /// How long the rotation took, key derivation included.
    pub elapsed: Duration,
    /// The data key version now in force (the old one plus one after a
    /// data key rotation, unchanged after a key-encryption key rotation).
    pub key_version: u32,
    /// `None` when the write-ahead log was checkpointed into the database
    /// and truncated after the commit, as every rotation tries; otherwise why
    /// not (a reader of another process held an older snapshot, or the
    /// checkpoint failed). The rotation stands either way (its commit is
    /// synced whatever the store's [`Synchronous`](crate::Synchronous)
    /// setting), but pages sealed under the old key stay in the log until a
    /// later checkpoint.
    pub checkpoint_error: Option<String>,
}

/// A data key rotation to `prepared`, wrapped beforehand. Runs on the
/// writer thread, so no other write interleaves.
pub(crate) fn rotate(
    conn: &Connection,
    shared: &Shared,
    prepared: &Prepared,
    mut progress: Option<Progress>,
    started: Instant,
) -> Result<RotationReport> {
    let id = &shared.id;
    let sql = |e: rusqlite::Error| shared.sql(&e);
    let (old, _) = shared.keys();
    let next = prepared.cipher.clone();
    let version = next.version();
    if old.version().checked_add(1) != Some(version) {
        return Err(errors::rotated_elsewhere(id, &shared.path, old.version(), version));
    }
    shared.check_file()?;
    // The rotation's commit is synced to disk whatever the store's setting:
    // with `synchronous = NORMAL` a power loss could undo a rotation whose
    // new key file is already in place, and the old key would be gone.
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(sql)?;
    conn.execute_batch("PRAGMA synchronous = FULL").map_err(sql)?;
    let restore = |conn: &Connection| conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}"));
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let _ = restore(conn);
        return Err(sql(e));
    }
    // Readers of this process may see the re-sealed rows as soon as the
    // commit lands, before `promote` below: they accept the pending key.
    shared.set_pending(Some(next.clone()));
    let result = (|| {
        let (on_disk, check, _) = db::read_key_meta(conn).map_err(sql)?;
        if on_disk != Some(old.version()) || !check.as_deref().is_some_and(|c| old.verify_check(c)) {
            return Err(errors::rotated_elsewhere(id, &shared.path, old.version(), on_disk.unwrap_or(0)));
        }
        let total: i64 = conn.query_row("SELECT count(*) FROM credentials", [], |r| r.get(0)).map_err(sql)?;
        let total = usize::try_from(total).unwrap_or(0);
        let mut done = 0usize;
        // Keys are never empty, so ("", "") sorts before every row.
        let mut after: (String, String) = (String::new(), String::new());
        loop {
            let rows = read_chunk(conn, &after).map_err(sql)?;
            let Some(last) = rows.last() else { break };
            after = (last.sealed.ns.clone(), last.sealed.key.clone());
            let mut update = conn
                .prepare_cached(
                    "UPDATE credentials SET key_version = ?1, nonce = ?2, sealed = ?3 WHERE ns = ?4 AND key = ?5",
                )
                .map_err(sql)?;
            for Row { sealed: row, row_version, kind, expires } in &rows {
                let tampered = |reason: &str| match CredentialKey::new(row.key.as_str()) {
                    Ok(key) => errors::integrity(id, &key, format!("{reason}; the rotation was undone")),
                    Err(_) => errors::backend(id, "a row holds an invalid key name; the rotation was undone"),
                };
                let kind = kind.ok_or_else(|| tampered("the row's kind is neither text nor binary"))?;
                let place = RowPlace::new(&row.ns, &row.key, row.created, row.updated, *row_version, kind)
                    .with_expiry(*expires);
                if row.seal.key_version != i64::from(old.version()) {
                    return Err(tampered("the row is sealed under another key version"));
                }
                let plain = old
                    .open_row(&place, &row.seal.nonce, &row.seal.sealed)
                    .ok_or_else(|| tampered("stored data failed authentication"))?;
                let (nonce, sealed) = next.seal_row(&place, &plain).map_err(|e| errors::backend(id, e))?;
                update.execute(params![version, &nonce[..], sealed, row.ns, row.key]).map_err(sql)?;
            }
            done += rows.len();
            if let Some(p) = progress.as_mut() {
                p(done, total.max(done));
            }
        }
        let history = reseal_history(conn, shared, &old, &next)?;
        let check = next.seal_check().map_err(|e| errors::backend(id, e))?;
        // The row set under the new key: the rows as they are now, every one
        // of which just opened.
        let (mut row_set, _) = db::rows_state(conn, &next).map_err(sql)?;
        row_set.last_version = conn
            .query_row("SELECT value FROM credstore_meta WHERE name = ?1", [db::META_LAST_VERSION], |r| {
                Ok(db::lenient_int(r.get_ref(0)?))
            })
            .map_err(sql)?;
        let row_set = next.row_set().expect("a data key's cipher").seal_state(&row_set);
        let put = "INSERT OR REPLACE INTO credstore_meta (name, value) VALUES (?1, ?2)";
        conn.execute(put, params![META_KEY_VERSION, i64::from(version)]).map_err(sql)?;
        conn.execute(put, params![db::META_ROW_SET, row_set]).map_err(sql)?;
        conn.execute(put, params![META_CHECK, check]).map_err(sql)?;
        conn.execute(put, params![META_KEY_RECORD, prepared.record.to_bytes()]).map_err(sql)?;
        conn.execute(put, params![META_FORMAT, i64::from(FORMAT_VERSION)]).map_err(sql)?;
        // A database of 0.2 keeps its passphrase's salt here; a data key's
        // wrapping carries its own.
        conn.execute("DELETE FROM credstore_meta WHERE name = ?1", [META_KDF]).map_err(sql)?;
        conn.execute_batch(&format!("PRAGMA user_version = {};", db::SCHEMA_VERSION)).map_err(sql)?;
        #[cfg(test)]
        tests::observe(&shared.path, "commit", conn);
        conn.execute_batch("COMMIT").map_err(sql)?;
        Ok((done, history))
    })();
    match result {
        Ok((rows, history_rows)) => {
            shared.promote(prepared);
            let restored = restore(conn);
            #[cfg(test)]
            tests::observe(&shared.path, "after", conn);
            if let Err(e) = restored {
                tracing::warn!(path = %shared.path.display(), error = %e, "cannot restore the synchronous setting after the rotation; commits stay at FULL");
            }
            // Move the pages sealed under the old key out of the WAL now
            // (secure_delete has zeroed the old cells in the pages).
            let checkpoint_error = checkpoint(conn).err();
            if let Some(reason) = &checkpoint_error {
                tracing::warn!(path = %shared.path.display(), %reason, "the master key was rotated, but the write-ahead log still holds pages sealed under the old key");
            }
            let report = RotationReport {
                kind: RotationKind::DataKey,
                rows,
                history_rows,
                elapsed: started.elapsed(),
                key_version: version,
                checkpoint_error,
            };
            tracing::info!(path = %shared.path.display(), rows, key_version = version, elapsed = ?report.elapsed, "rotated the master key");
            Ok(report)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let _ = restore(conn);
            shared.set_pending(None);
            Err(e)
        }
    }
}

/// A key-encryption key rotation: `record`, the current data key wrapped by
/// `provider`, replaces the key record, in one transaction committed at
/// `synchronous = FULL`; no row is touched. Runs on the writer thread.
pub(crate) fn rewrap(
    conn: &Connection,
    shared: &Shared,
    record: &KeyRecord,
    provider: Arc<dyn KeyProvider>,
    started: Instant,
) -> Result<RotationReport> {
    let id = &shared.id;
    let sql = |e: rusqlite::Error| shared.sql(&e);
    let (current, _) = shared.keys();
    shared.check_file()?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).map_err(sql)?;
    conn.execute_batch("PRAGMA synchronous = FULL").map_err(sql)?;
    let result = (|| {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        let (on_disk, check, _) = db::read_key_meta(conn).map_err(sql)?;
        if on_disk != Some(current.version())
            || record.key_version() != current.version()
            || !check.as_deref().is_some_and(|c| current.verify_check(c))
        {
            return Err(errors::rotated_elsewhere(id, &shared.path, current.version(), on_disk.unwrap_or(0)));
        }
        let put = "INSERT OR REPLACE INTO credstore_meta (name, value) VALUES (?1, ?2)";
        conn.execute(put, params![META_KEY_RECORD, record.to_bytes()]).map_err(sql)?;
        conn.execute_batch("COMMIT").map_err(sql)
    })();
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    let _ = conn.execute_batch(&format!("PRAGMA synchronous = {synchronous}"));
    result?;
    shared.set_provider(provider);
    let report = RotationReport {
        kind: RotationKind::KeyEncryptionKey,
        rows: 0,
        history_rows: 0,
        elapsed: started.elapsed(),
        key_version: current.version(),
        checkpoint_error: None,
    };
    tracing::info!(path = %shared.path.display(), key_version = report.key_version, provider = %record.provider_kind(), elapsed = ?report.elapsed, "rewrapped the data key under a new key-encryption key");
    Ok(report)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)`, its result checked: an error, or
/// `busy` (another connection's snapshot kept the log from being copied
/// and truncated) after waiting the busy timeout, is an error.
pub(crate) fn checkpoint(conn: &Connection) -> std::result::Result<(), String> {
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(|e| format!("the checkpoint failed: {e}"))?;
    if busy != 0 {
        return Err(format!(
            "the checkpoint was blocked by another connection ({done} of {log} log frames copied); a later \
             checkpoint completes it"
        ));
    }
    Ok(())
}

/// A row of schema 2 and later: its sealed columns, its row version, its
/// kind and its expiry.
struct Row {
    sealed: SealedRow,
    row_version: i64,
    kind: Option<ValueKind>,
    expires: Option<i64>,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Row {
            sealed: SealedRow::read(r)?,
            row_version: db::lenient_int(r.get_ref(7)?),
            kind: r.get_ref(8)?.as_str().ok().and_then(ValueKind::parse),
            // Not an integer: a value no row binds, so it fails authentication.
            expires: r.get_ref(9)?.as_i64_or_null().unwrap_or(Some(i64::MIN)),
        })
    }
}

fn read_chunk(conn: &Connection, after: &(String, String)) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {}, version, kind, expires_at FROM credentials WHERE (ns, key) > (?1, ?2) ORDER BY ns, key LIMIT ?3",
        SealedRow::COLUMNS
    ))?;
    let rows = stmt.query_map(params![after.0, after.1, CHUNK as i64], Row::read)?;
    rows.collect()
}

/// Re-seals every kept version (the `credential_history` rows) from `old`
/// to `next`, as history rows bound to their version and expiry, in the
/// rotation's transaction: a rotation strands no history. Returns how many.
fn reseal_history(conn: &Connection, shared: &Shared, old: &RowCipher, next: &RowCipher) -> Result<usize> {
    let id = &shared.id;
    let sql = |e: rusqlite::Error| shared.sql(&e);
    let mut done = 0usize;
    // Versions start at 1, so ("", "", 0) sorts before every row.
    let mut after: (String, String, i64) = (String::new(), String::new(), 0);
    loop {
        let rows: Vec<Row> = conn
            .prepare_cached(&format!(
                "SELECT {}, version, kind, expires_at FROM credential_history
                 WHERE (ns, key, version) > (?1, ?2, ?3) ORDER BY ns, key, version LIMIT ?4",
                SealedRow::COLUMNS
            ))
            .and_then(|mut s| {
                s.query_map(params![after.0, after.1, after.2, CHUNK as i64], Row::read)?.collect()
            })
            .map_err(sql)?;
        let Some(last) = rows.last() else { break };
        after = (last.sealed.ns.clone(), last.sealed.key.clone(), last.row_version);
        let mut update = conn
            .prepare_cached(
                "UPDATE credential_history SET key_version = ?1, nonce = ?2, sealed = ?3
                 WHERE ns = ?4 AND key = ?5 AND version = ?6",
            )
            .map_err(sql)?;
        for Row { sealed: row, row_version, kind, expires } in &rows {
            let tampered = |reason: &str| match CredentialKey::new(row.key.as_str()) {
                Ok(key) => errors::integrity(
                    id,
                    &key,
                    format!("kept version {row_version}: {reason}; the rotation was undone"),
                ),
                Err(_) => {
                    errors::backend(id, "a history row holds an invalid key name; the rotation was undone")
                }
            };
            let kind = kind.ok_or_else(|| tampered("the row's kind is neither text nor binary"))?;
            let place = RowPlace::new(&row.ns, &row.key, row.created, row.updated, *row_version, kind)
                .with_role(RowRole::History)
                .with_expiry(*expires);
            if row.seal.key_version != i64::from(old.version()) {
                return Err(tampered("the row is sealed under another key version"));
            }
            let plain = old
                .open_row(&place, &row.seal.nonce, &row.seal.sealed)
                .ok_or_else(|| tampered("stored data failed authentication"))?;
            let (nonce, sealed) = next.seal_row(&place, &plain).map_err(|e| errors::backend(id, e))?;
            update
                .execute(params![next.version(), &nonce[..], sealed, row.ns, row.key, row_version])
                .map_err(sql)?;
        }
        done += rows.len();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Duration;

    use credstore_core::{CredentialKey, CredentialStoreExt, Metadata, SecretValue, StoreId};
    use rusqlite::Connection;

    use crate::{MasterKey, SqliteConfig, SqliteStore, Synchronous};

    /// `PRAGMA synchronous` of the writer's connection at points of a
    /// rotation: (database, point, level; 2 is FULL, 1 NORMAL).
    static SEEN: Mutex<Vec<(PathBuf, &'static str, i64)>> = Mutex::new(Vec::new());

    pub(super) fn observe(path: &Path, point: &'static str, conn: &Connection) {
        let level: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap();
        SEEN.lock().unwrap().push((path.to_owned(), point, level));
    }

    fn seen(path: &Path) -> Vec<(&'static str, i64)> {
        SEEN.lock()
            .unwrap()
            .iter()
            .filter(|(p, ..)| p == path)
            .map(|(_, point, level)| (*point, *level))
            .collect()
    }

    #[tokio::test]
    async fn the_rotation_commits_at_synchronous_full_even_on_a_normal_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.db");
        let config =
            SqliteConfig::new(&path).master_key(MasterKey::generate()).synchronous(Synchronous::Normal);
        let store = SqliteStore::open(StoreId::new("n").unwrap(), config).await.unwrap();
        let name = CredentialKey::new("k").unwrap();
        store.set(&name, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        store.rotate_key(MasterKey::generate()).await.unwrap();
        assert_eq!(seen(&path), [("commit", 2), ("after", 1)], "FULL for the commit, NORMAL again after");
    }

    #[tokio::test]
    async fn a_checkpoint_blocked_after_a_rotation_is_reported_not_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let config = SqliteConfig::new(&path)
            .master_key(MasterKey::generate())
            .busy_timeout(Duration::from_millis(50));
        let store = SqliteStore::open(StoreId::new("c").unwrap(), config).await.unwrap();
        let name = CredentialKey::new("k").unwrap();
        store.set(&name, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        // A reader of another connection holds the snapshot before the rotation.
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT count(*) FROM credentials", [], |r| r.get(0)).unwrap();
        let report = store.rotate_key(MasterKey::generate()).await.unwrap();
        let reason = report.checkpoint_error.expect("the blocked checkpoint is reported");
        assert!(reason.contains("blocked by another connection"), "{reason}");
        assert_eq!(report.key_version, 2, "the rotation stands");
        reader.execute_batch("COMMIT").unwrap();
        let report = store.rotate_key(MasterKey::generate()).await.unwrap();
        assert_eq!(report.checkpoint_error, None);
        let wal = std::fs::metadata(format!("{}-wal", path.display())).unwrap();
        assert_eq!(wal.len(), 0, "the log is truncated");
    }
}
