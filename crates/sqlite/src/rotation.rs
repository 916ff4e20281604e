//! Master key rotation: every row and the check value re-sealed under a new
//! key, in one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_core::{CredentialKey, Error, Result};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection};

use crate::crypto::{RowCipher, RowPlace, ValueKind};
use crate::db::{self, META_CHECK, META_KDF, META_KEY_VERSION};
use crate::errors;
use crate::writer::Shared;
use crate::MasterKey;

/// A callback told `(rows done, rows in total)` as a rotation goes on.
pub(crate) type Progress = Box<dyn FnMut(usize, usize) + Send>;

/// Rows re-sealed per read of the table.
const CHUNK: usize = 1000;

/// What [`crate::SqliteStore::rotate_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RotationReport {
    /// Rows re-sealed: every credential of every namespace in the file.
    pub rows: usize,
    /// How long the rotation took, key derivation included.
    pub elapsed: Duration,
    /// The key version now in force (the old one plus one).
    pub key_version: u32,
}

/// Runs on the writer thread, so no other write interleaves.
pub(crate) fn rotate(
    conn: &Connection,
    shared: &Shared,
    new: &MasterKey,
    mut progress: Option<Progress>,
) -> Result<RotationReport> {
    let started = Instant::now();
    let id = &shared.id;
    let sql = |e: rusqlite::Error| shared.sql(&e);
    let (old, _) = shared.keys();
    let version = old.version().checked_add(1).ok_or_else(|| errors::backend(id, "key version overflow"))?;
    // Derive outside the transaction: Argon2id takes a while.
    let (material, kdf) = new.resolve(None, true).map_err(|reason| Error::config(id, reason))?;
    let next = Arc::new(RowCipher::new(&material, version));
    drop(material);
    shared.check_file()?;
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
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
            after = (last.ns.clone(), last.key.clone());
            let mut update = conn
                .prepare_cached(
                    "UPDATE credentials SET key_version = ?1, nonce = ?2, sealed = ?3 WHERE ns = ?4 AND key = ?5",
                )
                .map_err(sql)?;
            for row in &rows {
                let tampered = |reason: &str| match CredentialKey::new(row.key.as_str()) {
                    Ok(key) => errors::integrity(id, &key, format!("{reason}; the rotation was undone")),
                    Err(_) => errors::backend(id, "a row holds an invalid key name; the rotation was undone"),
                };
                let kind = row.kind.ok_or_else(|| tampered("the row's kind is neither text nor binary"))?;
                let place = RowPlace {
                    ns: &row.ns,
                    key: &row.key,
                    created_ns: row.created,
                    updated_ns: row.updated,
                    version: row.row_version,
                    kind,
                };
                if row.version != i64::from(old.version()) {
                    return Err(tampered("the row is sealed under another key version"));
                }
                let plain = old
                    .open_row(&place, &row.nonce, &row.sealed)
                    .ok_or_else(|| tampered("stored data failed authentication"))?;
                let (nonce, sealed) = next.seal_row(&place, &plain).map_err(|e| errors::backend(id, e))?;
                update.execute(params![version, &nonce[..], sealed, row.ns, row.key]).map_err(sql)?;
            }
            done += rows.len();
            if let Some(p) = progress.as_mut() {
                p(done, total.max(done));
            }
        }
        let check = next.seal_check().map_err(|e| errors::backend(id, e))?;
        let put = "INSERT OR REPLACE INTO credstore_meta (name, value) VALUES (?1, ?2)";
        conn.execute(put, params![META_KEY_VERSION, i64::from(version)]).map_err(sql)?;
        conn.execute(put, params![META_CHECK, check]).map_err(sql)?;
        match &kdf {
            Some(record) => conn.execute(put, params![META_KDF, record]),
            None => conn.execute("DELETE FROM credstore_meta WHERE name = ?1", [META_KDF]),
        }
        .map_err(sql)?;
        conn.execute_batch("COMMIT").map_err(sql)?;
        Ok(done)
    })();
    match result {
        Ok(rows) => {
            shared.promote(next);
            // Move the pages sealed under the old key out of the WAL now
            // (secure_delete has zeroed the old cells in the pages).
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
                tracing::debug!(error = %e, "checkpoint after rotation deferred");
            }
            let report = RotationReport { rows, elapsed: started.elapsed(), key_version: version };
            tracing::info!(path = %shared.path.display(), rows, key_version = version, elapsed = ?report.elapsed, "rotated the master key");
            Ok(report)
        }
        Err(e) => {
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            shared.set_pending(None);
            Err(e)
        }
    }
}

struct Row {
    ns: String,
    key: String,
    version: i64,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
    created: i64,
    updated: i64,
    row_version: i64,
    kind: Option<ValueKind>,
}

fn read_chunk(conn: &Connection, after: &(String, String)) -> rusqlite::Result<Vec<Row>> {
    let mut stmt = conn.prepare_cached(
        "SELECT ns, key, key_version, nonce, sealed, created_at, updated_at, version, kind FROM credentials
         WHERE (ns, key) > (?1, ?2) ORDER BY ns, key LIMIT ?3",
    )?;
    // Columns of the wrong type (a tampered row) become values that fail
    // authentication, so the row is reported by key.
    let blob = |v: ValueRef<'_>| v.as_blob().map(<[u8]>::to_vec).unwrap_or_default();
    let int = |v: ValueRef<'_>| v.as_i64().unwrap_or(i64::MIN);
    let rows = stmt.query_map(params![after.0, after.1, CHUNK as i64], |r| {
        Ok(Row {
            ns: r.get(0)?,
            key: r.get(1)?,
            version: int(r.get_ref(2)?),
            nonce: blob(r.get_ref(3)?),
            sealed: blob(r.get_ref(4)?),
            created: int(r.get_ref(5)?),
            updated: int(r.get_ref(6)?),
            row_version: int(r.get_ref(7)?),
            kind: r.get_ref(8)?.as_str().ok().and_then(ValueKind::parse),
        })
    })?;
    rows.collect()
}
