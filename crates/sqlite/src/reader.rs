//! Reads of single rows (`get`, `has`, `version`), written once for both
//! places a read runs: on the calling task, with SQLite's busy handler off,
//! or on Tokio's blocking pool, waiting up to the busy timeout.
//!
//! A read on the calling task never waits: a lock it would wait for, and a
//! row too large to open at once, make it hand over ([`ReadError::Handover`])
//! to the blocking pool, which makes the same read again from the start.

use std::sync::Arc;
use std::time::Duration;

use credstore_core::{Credential, CredentialKey, Error, Namespace, Version};
use rusqlite::ffi::ErrorCode;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use crate::db;
use crate::errors;
use crate::shared::Shared;
use crate::writer::{from_nanos, version_of};
use credstore_seal::{decode_payload_owned, RowCipher, RowPlace, ValueKind, FORMAT_VERSION};

/// The largest sealed payload a read on the calling task opens: 16 KiB
/// (four overflow pages and a few microseconds of AES-GCM). Larger rows are
/// read on the blocking pool.
pub(crate) const INLINE_MAX_SEALED: usize = 16 * 1024;

/// An inline read that took longer than this (a cold page cache, a slow
/// disk, a thread the operating system took the CPU from)...
pub(crate) const SLOW_INLINE_READ: Duration = Duration::from_millis(2);

/// ...twice in a row sends the reads of its database to the blocking pool
/// for this long. (Once is not enough: on a busy machine the operating
/// system takes a thread off its CPU for milliseconds now and then, and the
/// blocking pool would be slower then, not faster.)
pub(crate) const INLINE_PAUSE: Duration = Duration::from_millis(100);

/// An inline read costs the task one unit of Tokio's cooperative budget
/// (128 units per poll) per started 500 ns of thread time: a task that only
/// reads gives its worker back after about 64 µs, so 8 such tasks on 2
/// workers add about 260 µs at most to a timer's lag. (Smaller slices cost
/// a task reading alone on a worker more in yields than they gain.)
const BUDGET_UNIT: Duration = Duration::from_nanos(500);

/// Where a read runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// On the calling task, busy handler off.
    Inline,
    /// On the blocking pool, busy handler on.
    Blocking,
}

/// Why a read did not answer.
pub(crate) enum ReadError {
    /// An inline read would have to wait or work too long: make it again on
    /// the blocking pool.
    Handover,
    /// The answer is this error.
    Failed(Error),
}

impl From<Error> for ReadError {
    fn from(e: Error) -> Self {
        ReadError::Failed(e)
    }
}

impl Mode {
    /// Translates a SQLite error of a read: a lock met inline hands over.
    pub(crate) fn sql(self, shared: &Shared, e: &rusqlite::Error) -> ReadError {
        let locked = matches!(errors::code(e), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked));
        if self == Mode::Inline && locked {
            ReadError::Handover
        } else {
            ReadError::Failed(shared.sql(e))
        }
    }
}

/// Charges an inline read that kept the thread for `elapsed` to the task's
/// cooperative budget, and yields to the scheduler when the budget runs out,
/// as Tokio's own resources do: a task reading in a loop then gives its
/// worker back after about 64 µs of reads.
pub(crate) async fn charge(elapsed: Duration) {
    let units = (elapsed.as_nanos() / BUDGET_UNIT.as_nanos()).min(127) as u32 + 1;
    for _ in 0..units {
        let last = !tokio::task::coop::has_budget_remaining();
        // Pending once (the task yields) when the budget is spent.
        tokio::task::coop::consume_budget().await;
        if last {
            break;
        }
    }
}

/// The row read of `get` on the calling task: the sealed payload only when
/// it is at most [`INLINE_MAX_SEALED`] bytes (`length` of a blob does not
/// read its overflow pages), NULL otherwise.
const GET_INLINE: &str =
    "SELECT key_version, nonce, CASE WHEN length(sealed) <= 16384 THEN sealed END, created_at, \
                          updated_at, version, kind FROM credentials WHERE ns = ?1 AND key = ?2";
/// The row read of `get` on the blocking pool.
const GET_BLOCKING: &str =
    "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind FROM credentials \
                            WHERE ns = ?1 AND key = ?2";

/// What one read of a row found.
enum Found {
    Absent,
    Opened(Credential),
    /// The row is sealed under this key version, which the keys given do
    /// not hold.
    OtherKey(i64),
}

/// Reads and opens the credential `key` of namespace `ns`.
///
/// On the calling task the keys are held for the read, so a rotation of
/// this process cannot land in between; a row under a key version they do
/// not hold is tampered with or was sealed by another process's rotation.
/// On the blocking pool (which may wait for locks, and must not hold the
/// writer back meanwhile) the keys are taken before the row is read; a row
/// under another key version may then also have been re-sealed by a
/// rotation of this process that committed in between: the keys have then
/// changed, and the read is made again.
pub(crate) fn credential(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
) -> Result<Option<Credential>, ReadError> {
    let mismatch = |v: i64, ours: u32| Err(version_mismatch(shared, conn, key, v, ours, mode));
    if mode == Mode::Inline {
        return shared.with_keys(|current, pending| {
            match read_row(shared, conn, ns, key, mode, current, pending)? {
                Found::Absent => Ok(None),
                Found::Opened(c) => Ok(Some(c)),
                Found::OtherKey(v) => mismatch(v, current.version()),
            }
        });
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let keys = shared.keys();
        let (current, pending) = &keys;
        match read_row(shared, conn, ns, key, mode, current, pending.as_deref())? {
            Found::Absent => return Ok(None),
            Found::Opened(c) => return Ok(Some(c)),
            Found::OtherKey(_) if attempts < 3 && shared.key_versions() != versions(&keys) => continue,
            Found::OtherKey(v) => return mismatch(v, current.version()),
        }
    }
}

/// One read of a row, opened with `current` or `pending`.
fn read_row(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
    current: &RowCipher,
    pending: Option<&RowCipher>,
) -> Result<Found, ReadError> {
    let column = |e: rusqlite::Error| match e {
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
            ReadError::Failed(errors::integrity(&shared.id, key, "the row's columns have the wrong types"))
        }
        e => mode.sql(shared, &e),
    };
    let sql = if mode == Mode::Inline { GET_INLINE } else { GET_BLOCKING };
    let mut stmt = conn.prepare_cached(sql).map_err(column)?;
    let mut rows = stmt.query(params![ns.as_str(), key.as_str()]).map_err(column)?;
    let Some(row) = rows.next().map_err(column)? else { return Ok(Found::Absent) };
    let key_version: i64 = row.get(0).map_err(column)?;
    let cipher = match (u32::try_from(key_version).ok(), pending) {
        (Some(v), _) if v == current.version() => current,
        (Some(v), Some(p)) if v == p.version() => p,
        // The statement stays open: the key version on record is read in
        // the same read transaction as the row.
        _ => return Ok(Found::OtherKey(key_version)),
    };
    let sealed = match row.get_ref(2).map_err(column)? {
        ValueRef::Blob(b) => {
            debug_assert!(mode == Mode::Blocking || b.len() <= INLINE_MAX_SEALED, "GET_INLINE's limit");
            b
        }
        // Too large to open here (or not a blob: the blocking read says so).
        ValueRef::Null if mode == Mode::Inline => return Err(ReadError::Handover),
        _ => return Err(errors::integrity(&shared.id, key, "the row's sealed data is not a blob").into()),
    };
    let nonce = match row.get_ref(1).map_err(column)? {
        ValueRef::Blob(b) => b,
        _ => return Err(errors::integrity(&shared.id, key, "the row's nonce is not a blob").into()),
    };
    let kind = match row.get_ref(6).map_err(column)? {
        ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(ValueKind::parse),
        _ => None,
    }
    .ok_or_else(|| errors::integrity(&shared.id, key, "the row's kind is neither text nor binary"))?;
    let place = RowPlace::new(
        ns.as_str(),
        key.as_str(),
        row.get(3).map_err(column)?,
        row.get(4).map_err(column)?,
        row.get(5).map_err(column)?,
        kind,
    );
    Ok(Found::Opened(open(shared, cipher, key, &place, nonce, sealed)?))
}

/// Whether `key` exists in `ns`, from the clear columns only.
pub(crate) fn exists(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
) -> Result<bool, ReadError> {
    conn.prepare_cached("SELECT 1 FROM credentials WHERE ns = ?1 AND key = ?2")
        .and_then(|mut s| s.exists(params![ns.as_str(), key.as_str()]))
        .map_err(|e| mode.sql(shared, &e))
}

/// The version of `key` in `ns`, from the clear `version` column only.
pub(crate) fn version(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
) -> Result<Option<Version>, ReadError> {
    let row: Option<i64> = conn
        .prepare_cached("SELECT version FROM credentials WHERE ns = ?1 AND key = ?2")
        .and_then(|mut s| s.query_row(params![ns.as_str(), key.as_str()], |r| r.get(0)).optional())
        .map_err(|e| match e {
            rusqlite::Error::InvalidColumnType(..) => {
                ReadError::Failed(errors::integrity(&shared.id, key, "the row's version is not an integer"))
            }
            e => mode.sql(shared, &e),
        })?;
    Ok(row.map(version_of))
}

/// The error for a row under a key version this store does not hold.
fn version_mismatch(
    shared: &Shared,
    conn: &Connection,
    key: &CredentialKey,
    row: i64,
    ours: u32,
    mode: Mode,
) -> ReadError {
    match db::read_key_version(conn) {
        Err(e) => mode.sql(shared, &e),
        Ok(Some(d)) if d != ours => errors::rotated_elsewhere(&shared.id, &shared.path, ours, d).into(),
        Ok(_) => errors::integrity(
            &shared.id,
            key,
            format!("the row claims key version {row}, but the database's key is version {ours}"),
        )
        .into(),
    }
}

/// The versions of a pair from [`Shared::keys`].
pub(crate) fn versions((current, pending): &(Arc<RowCipher>, Option<Arc<RowCipher>>)) -> (u32, Option<u32>) {
    (current.version(), pending.as_ref().map(|p| p.version()))
}

/// Opens a row with `cipher`, authenticated, or explains why not. The
/// plaintext lives in a zeroizing buffer, which becomes the
/// [`SecretValue`](credstore_core::SecretValue)'s own (zeroized with it).
fn open(
    shared: &Shared,
    cipher: &RowCipher,
    key: &CredentialKey,
    place: &RowPlace<'_>,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Credential, Error> {
    let id = &shared.id;
    let plain = cipher.open_row(place, nonce, sealed).ok_or_else(|| {
        errors::integrity(
            id,
            key,
            "stored data failed authentication: it was changed, corrupted or moved from another row",
        )
    })?;
    let (value, metadata) = decode_payload_owned(plain, FORMAT_VERSION, place.kind)
        .ok_or_else(|| errors::integrity(id, key, "the authenticated payload is malformed"))?;
    Ok(Credential {
        key: key.clone(),
        value,
        metadata,
        version: version_of(place.version),
        created_at: from_nanos(place.created_ns),
        updated_at: from_nanos(place.updated_ns),
        expires_at: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use credstore_seal::{DataKey, MasterKey, RowCipher, StoreUid};

    use crate::db::FileId;
    use crate::keys::Keys;

    fn shared() -> Shared {
        let dir = std::env::temp_dir();
        Shared::new(
            credstore_core::StoreId::new("s").unwrap(),
            dir.join("x.db"),
            FileId::of(&dir).unwrap(),
            Duration::from_secs(1),
            Keys {
                current: Arc::new(RowCipher::new(
                    &DataKey::from_bytes(&[1; crate::KEY_LEN]),
                    1,
                    StoreUid::generate(),
                )),
                pending: None,
                dek: None,
                provider: Arc::new(MasterKey::generate()),
                upgrade: None,
            },
        )
    }

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn a_lock_met_inline_hands_over_and_one_met_on_the_blocking_pool_fails_retriable() {
        let s = shared();
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            assert!(matches!(Mode::Inline.sql(&s, &failure(code)), ReadError::Handover));
            match Mode::Blocking.sql(&s, &failure(code)) {
                ReadError::Failed(e) => assert!(e.is_retriable(), "{e}"),
                ReadError::Handover => panic!("the blocking pool never hands over"),
            }
        }
        // Anything else is the answer, wherever the read runs.
        for mode in [Mode::Inline, Mode::Blocking] {
            assert!(matches!(mode.sql(&s, &failure(rusqlite::ffi::SQLITE_CORRUPT)), ReadError::Failed(_)));
        }
    }

    #[test]
    fn two_slow_inline_reads_in_a_row_pause_inline_reads() {
        let s = shared();
        let now = std::time::Instant::now();
        let (slow, pause) = (SLOW_INLINE_READ, INLINE_PAUSE);
        assert!(!s.note_inline(now, slow * 2, slow, pause), "one slow read is not enough");
        assert!(!s.note_inline(now, Duration::from_micros(3), slow, pause), "a fast one resets the count");
        assert!(!s.note_inline(now, slow * 2, slow, pause));
        assert!(!s.inline_paused(now));
        assert!(s.note_inline(now, slow * 2, slow, pause), "the second in a row pauses");
        assert!(s.inline_paused(now + pause / 2));
        assert!(!s.inline_paused(now + pause + Duration::from_millis(1)));
    }

    #[test]
    fn inline_sql_names_the_inline_limit() {
        assert!(GET_INLINE.contains(&format!("length(sealed) <= {INLINE_MAX_SEALED} ")));
    }
}
