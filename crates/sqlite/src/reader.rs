//! Reads of single rows (`get`, `has`, `version`), written once for both
//! places a read runs: on the calling task, with SQLite's busy handler off,
//! or on Tokio's blocking pool, waiting up to the busy timeout.
//!
//! A read on the calling task never waits: a lock it would wait for, and a
//! row too large to open at once, make it hand over ([`ReadError::Handover`])
//! to the blocking pool, which makes the same read again from the start.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{
    Credential, CredentialKey, Error, Metadata, Namespace, Version, VersionInfo, VersionPage, VersionState,
};
use rusqlite::ffi::ErrorCode;
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use crate::db;
use crate::errors;
use crate::shared::Shared;
use crate::writer::{age_cutoff, from_nanos, is_expired, version_of};
use credstore_seal::{
    decode_metadata, decode_payload_owned, RowCipher, RowPlace, RowRole, ValueKind, FORMAT_VERSION,
};

/// The largest sealed payload a read on the calling task opens: 16 KiB
/// (four overflow pages and a few microseconds of AES-GCM). Larger rows are
/// read on the blocking pool.
pub(crate) const INLINE_MAX_SEALED: usize = 16 * 1024;

/// The most keys a `get_many` reads on the calling task: 32 rows opened
/// (about 50 µs of thread time in a release build, in the order of the 64 µs
/// a task keeps its worker between yields, see [`charge`]). Larger batches
/// are read on the blocking pool, where one hand-over costs little beside
/// the openings.
pub(crate) const INLINE_MAX_BATCH: usize = 32;

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
                          updated_at, version, kind, expires_at FROM credentials WHERE ns = ?1 AND key = ?2";
/// The row read of `get` on the blocking pool.
const GET_BLOCKING: &str =
    "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind, expires_at FROM credentials \
                            WHERE ns = ?1 AND key = ?2";

/// The rows of `get_many` on the calling task: [`GET_INLINE`]'s columns,
/// then the key, of the keys in the JSON array `?2` (one statement for any
/// number of keys).
const GET_MANY_INLINE: &str =
    "SELECT key_version, nonce, CASE WHEN length(sealed) <= 16384 THEN sealed END, created_at, \
     updated_at, version, kind, expires_at, key FROM credentials \
     WHERE ns = ?1 AND key IN (SELECT value FROM json_each(?2))";
/// The rows of `get_many` on the blocking pool.
const GET_MANY_BLOCKING: &str = "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind, \
     expires_at, key FROM credentials WHERE ns = ?1 AND key IN (SELECT value FROM json_each(?2))";

/// The history rows of a key, newest first, with the same columns as
/// [`GET_INLINE`] (the sealed payload NULL past [`INLINE_MAX_SEALED`]
/// bytes when `?4` is 1), then `ended_at` and `deleted`; at most `?3`.
const HISTORY: &str = "SELECT key_version, nonce, \
    CASE WHEN ?4 = 0 OR length(sealed) <= 16384 THEN sealed END, created_at, updated_at, version, kind, \
    expires_at, ended_at, deleted FROM credential_history WHERE ns = ?1 AND key = ?2 \
    ORDER BY version DESC LIMIT ?3";

/// One kept version of a key: [`HISTORY`]'s row in one statement.
const KEPT: &str = "SELECT key_version, nonce, \
    CASE WHEN ?4 = 0 OR length(sealed) <= 16384 THEN sealed END, created_at, updated_at, version, kind, \
    expires_at, ended_at, deleted FROM credential_history WHERE ns = ?1 AND key = ?2 AND version = ?3";

/// What one read of a row found.
enum Found<T = Credential> {
    Absent,
    Opened(T),
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
    keyed(shared, conn, key, mode, |current, pending| read_row(shared, conn, ns, key, mode, current, pending))
}

/// Runs `read` with the keys: held for the read on the calling task, taken
/// before it on the blocking pool, and the read made again there when a
/// rotation of this process changed them meanwhile (see [`credential`]).
fn keyed<T>(
    shared: &Shared,
    conn: &Connection,
    key: &CredentialKey,
    mode: Mode,
    read: impl Fn(&RowCipher, Option<&RowCipher>) -> Result<Found<T>, ReadError>,
) -> Result<Option<T>, ReadError> {
    keyed_naming(shared, conn, || key.clone(), mode, read)
}

/// [`keyed`] of a read over several keys: `culprit` names the key whose
/// row was under a key version the keys given do not hold, once `read` has
/// answered [`Found::OtherKey`].
fn keyed_naming<T>(
    shared: &Shared,
    conn: &Connection,
    culprit: impl Fn() -> CredentialKey,
    mode: Mode,
    read: impl Fn(&RowCipher, Option<&RowCipher>) -> Result<Found<T>, ReadError>,
) -> Result<Option<T>, ReadError> {
    let mismatch = |v: i64, ours: u32| Err(version_mismatch(shared, conn, &culprit(), v, ours, mode));
    if mode == Mode::Inline {
        return shared.with_keys(|current, pending| match read(current, pending)? {
            Found::Absent => Ok(None),
            Found::Opened(c) => Ok(Some(c)),
            Found::OtherKey(v) => mismatch(v, current.version()),
        });
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        let keys = shared.keys();
        let (current, pending) = &keys;
        match read(current, pending.as_deref())? {
            Found::Absent => return Ok(None),
            Found::Opened(c) => return Ok(Some(c)),
            Found::OtherKey(_) if attempts < 3 && shared.key_versions() != versions(&keys) => continue,
            Found::OtherKey(v) => return mismatch(v, current.version()),
        }
    }
}

/// The cipher of `key_version` among `current` and `pending`.
fn cipher_of<'a>(
    current: &'a RowCipher,
    pending: Option<&'a RowCipher>,
    key_version: i64,
) -> Option<&'a RowCipher> {
    match (u32::try_from(key_version).ok(), pending) {
        (Some(v), _) if v == current.version() => Some(current),
        (Some(v), Some(p)) if v == p.version() => Some(p),
        _ => None,
    }
}

/// The sealed row of [`GET_INLINE`], [`HISTORY`] or [`KEPT`], its columns
/// checked: everything but its place's namespace and key.
struct SealedColumns<'r> {
    nonce: &'r [u8],
    sealed: &'r [u8],
    created: i64,
    updated: i64,
    version: i64,
    kind: ValueKind,
    expires: Option<i64>,
}

impl<'r> SealedColumns<'r> {
    /// Reads the first eight columns of `row`; a sealed payload left NULL
    /// on the calling task (too large) hands over.
    fn read(
        shared: &Shared,
        key: &CredentialKey,
        mode: Mode,
        row: &'r rusqlite::Row<'r>,
    ) -> Result<Self, ReadError> {
        let column = |e: rusqlite::Error| match e {
            rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
                ReadError::Failed(errors::integrity(
                    &shared.id,
                    key,
                    "the row's columns have the wrong types",
                ))
            }
            e => mode.sql(shared, &e),
        };
        let sealed = match row.get_ref(2).map_err(column)? {
            ValueRef::Blob(b) => b,
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
        Ok(Self {
            nonce,
            sealed,
            created: row.get(3).map_err(column)?,
            updated: row.get(4).map_err(column)?,
            version: row.get(5).map_err(column)?,
            kind,
            expires: row.get(7).map_err(column)?,
        })
    }

    fn place<'a>(&self, ns: &'a Namespace, key: &'a CredentialKey, role: RowRole) -> RowPlace<'a> {
        RowPlace::new(ns.as_str(), key.as_str(), self.created, self.updated, self.version, self.kind)
            .with_role(role)
            .with_expiry(self.expires)
    }
}

/// One read of a row, opened with `current` or `pending`. A row past its
/// expiry is opened all the same (an edited expiry fails authentication),
/// then reads as absent.
fn read_row(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
    current: &RowCipher,
    pending: Option<&RowCipher>,
) -> Result<Found, ReadError> {
    let sql = if mode == Mode::Inline { GET_INLINE } else { GET_BLOCKING };
    let mut stmt = conn.prepare_cached(sql).map_err(|e| mode.sql(shared, &e))?;
    let mut rows = stmt.query(params![ns.as_str(), key.as_str()]).map_err(|e| mode.sql(shared, &e))?;
    let Some(row) = rows.next().map_err(|e| mode.sql(shared, &e))? else { return Ok(Found::Absent) };
    let key_version: i64 = row.get(0).map_err(|e| column_error(shared, key, mode, e))?;
    // The statement stays open: the key version on record is read in the
    // same read transaction as the row.
    let Some(cipher) = cipher_of(current, pending, key_version) else {
        return Ok(Found::OtherKey(key_version));
    };
    let cols = SealedColumns::read(shared, key, mode, row)?;
    debug_assert!(mode == Mode::Blocking || cols.sealed.len() <= INLINE_MAX_SEALED, "GET_INLINE's limit");
    let place = cols.place(ns, key, RowRole::Current);
    let credential = open(shared, cipher, key, &place, cols.nonce, cols.sealed)?;
    if is_expired(cols.expires, shared.now_ns()) {
        return Ok(Found::Absent);
    }
    Ok(Found::Opened(credential))
}

/// Reads and opens the credentials `keys` of namespace `ns` with one
/// statement ([`GET_MANY_INLINE`] or [`GET_MANY_BLOCKING`]): one answer per
/// key, in their order, `None` for a key without a row or past its expiry;
/// a key given twice is answered twice. Each row is opened as
/// [`credential`] opens one (the keys held or taken the same way), so a row
/// that fails authentication fails the whole batch, naming its key; a row
/// too large to open on the calling task hands the whole batch over.
pub(crate) fn credentials(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    keys: &[CredentialKey],
    mode: Mode,
) -> Result<Vec<Option<Credential>>, ReadError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let asked: HashMap<&str, &CredentialKey> = keys.iter().map(|k| (k.as_str(), k)).collect();
    let culprit: RefCell<Option<CredentialKey>> = RefCell::new(None);
    let name = || culprit.borrow().clone().unwrap_or_else(|| keys[0].clone());
    let mut found = keyed_naming(shared, conn, name, mode, |current, pending| {
        read_rows(shared, conn, ns, &asked, mode, current, pending, &culprit)
    })?
    .unwrap_or_default();
    // The last time each key is asked takes its credential; earlier times
    // (a key given more than once) take a copy.
    let last: HashMap<&str, usize> = keys.iter().enumerate().map(|(i, k)| (k.as_str(), i)).collect();
    Ok(keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            if last.get(k.as_str()) == Some(&i) {
                found.remove(k.as_str())
            } else {
                found.get(k.as_str()).cloned()
            }
        })
        .collect())
}

/// The keys as a JSON array of strings, for `json_each`. A key's
/// characters (letters, digits, `-`, `_`, `.`) need no escaping.
fn json_keys<'a>(keys: impl ExactSizeIterator<Item = &'a str>) -> String {
    let mut out = String::with_capacity(2 + keys.len() * 16);
    out.push('[');
    for (i, k) in keys.enumerate() {
        debug_assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        out.push_str(k);
        out.push('"');
    }
    out.push(']');
    out
}

/// One read of the rows of the keys `asked`, each opened with `current` or
/// `pending`, by key; an expired row is opened, then left out. A row under
/// another key version stops the read, its key put in `culprit`.
#[allow(clippy::too_many_arguments)]
fn read_rows(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    asked: &HashMap<&str, &CredentialKey>,
    mode: Mode,
    current: &RowCipher,
    pending: Option<&RowCipher>,
    culprit: &RefCell<Option<CredentialKey>>,
) -> Result<Found<HashMap<String, Credential>>, ReadError> {
    let sql = if mode == Mode::Inline { GET_MANY_INLINE } else { GET_MANY_BLOCKING };
    let mut stmt = conn.prepare_cached(sql).map_err(|e| mode.sql(shared, &e))?;
    let list = json_keys(asked.keys().copied());
    let mut rows = stmt.query(params![ns.as_str(), list]).map_err(|e| mode.sql(shared, &e))?;
    let now = shared.now_ns();
    let mut found = HashMap::with_capacity(asked.len());
    while let Some(row) = rows.next().map_err(|e| mode.sql(shared, &e))? {
        let key = match row.get_ref(8).map_err(|e| mode.sql(shared, &e))? {
            ValueRef::Text(t) => std::str::from_utf8(t).ok().and_then(|t| asked.get(t)).copied(),
            _ => None,
        };
        // A row the statement matched is one of the keys asked.
        let Some(key) = key else { continue };
        let key_version: i64 = row.get(0).map_err(|e| column_error(shared, key, mode, e))?;
        let Some(cipher) = cipher_of(current, pending, key_version) else {
            *culprit.borrow_mut() = Some(key.clone());
            return Ok(Found::OtherKey(key_version));
        };
        let cols = SealedColumns::read(shared, key, mode, row)?;
        let place = cols.place(ns, key, RowRole::Current);
        let credential = open(shared, cipher, key, &place, cols.nonce, cols.sealed)?;
        if !is_expired(cols.expires, now) {
            found.insert(key.as_str().to_owned(), credential);
        }
    }
    Ok(Found::Opened(found))
}

fn column_error(shared: &Shared, key: &CredentialKey, mode: Mode, e: rusqlite::Error) -> ReadError {
    match e {
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
            ReadError::Failed(errors::integrity(&shared.id, key, "the row's columns have the wrong types"))
        }
        e => mode.sql(shared, &e),
    }
}

/// Whether a kept version is past the retention at `now`: beyond the
/// newest `max_versions` (`rank` 0 is the newest), or no longer current
/// (ended or expired) for `max_age` or more.
fn past_retention(shared: &Shared, rank: usize, ended: Option<i64>, expires: Option<i64>, now: i64) -> bool {
    let retention = &shared.retention;
    if retention.max_versions.is_some_and(|max| rank >= max as usize) {
        return true;
    }
    age_cutoff(retention, now)
        .is_some_and(|cutoff| ended.is_some_and(|t| t <= cutoff) || expires.is_some_and(|t| t <= cutoff))
}

/// The credential `key` of `ns` at row version `version`, as
/// [`CredentialStore::get_version`](credstore_core::CredentialStore::get_version)
/// returns it: from the history, opened as a history row; or, for a key
/// whose current version was written before the history existed, from
/// its current row. `None` when it is not kept, or past the retention.
pub(crate) fn kept_version(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    version: i64,
    mode: Mode,
) -> Result<Option<Credential>, ReadError> {
    let now = shared.now_ns();
    keyed(shared, conn, key, mode, |current, pending| {
        in_snapshot(shared, conn, mode, || {
            let mut stmt = conn.prepare_cached(KEPT).map_err(|e| mode.sql(shared, &e))?;
            let inline = i64::from(mode == Mode::Inline);
            let mut rows = stmt
                .query(params![ns.as_str(), key.as_str(), version, inline])
                .map_err(|e| mode.sql(shared, &e))?;
            if let Some(row) = rows.next().map_err(|e| mode.sql(shared, &e))? {
                let key_version: i64 = row.get(0).map_err(|e| column_error(shared, key, mode, e))?;
                let Some(cipher) = cipher_of(current, pending, key_version) else {
                    return Ok(Found::OtherKey(key_version));
                };
                let cols = SealedColumns::read(shared, key, mode, row)?;
                let ended: Option<i64> = row.get(8).map_err(|e| column_error(shared, key, mode, e))?;
                let newer: i64 = conn
                    .prepare_cached(
                        "SELECT count(*) FROM credential_history WHERE ns = ?1 AND key = ?2 AND version > ?3",
                    )
                    .and_then(|mut s| s.query_row(params![ns.as_str(), key.as_str(), version], |r| r.get(0)))
                    .map_err(|e| mode.sql(shared, &e))?;
                if past_retention(shared, newer as usize, ended, cols.expires, now) {
                    return Ok(Found::Absent);
                }
                let place = cols.place(ns, key, RowRole::History);
                return Ok(Found::Opened(open(shared, cipher, key, &place, cols.nonce, cols.sealed)?));
            }
            drop(rows);
            // A current row written before the history: its own version only.
            match read_current_at(shared, conn, ns, key, mode, current, pending, version)? {
                Found::Opened((credential, expires)) if !past_retention(shared, 0, None, expires, now) => {
                    Ok(Found::Opened(credential))
                }
                Found::OtherKey(v) => Ok(Found::OtherKey(v)),
                _ => Ok(Found::Absent),
            }
        })
    })
}

/// Runs `f` in one read transaction of `conn`, so that its statements see
/// one snapshot (a write committed in between would make a listing show no
/// current version, or miss one).
fn in_snapshot<T>(
    shared: &Shared,
    conn: &Connection,
    mode: Mode,
    f: impl FnOnce() -> Result<T, ReadError>,
) -> Result<T, ReadError> {
    conn.execute_batch("BEGIN").map_err(|e| mode.sql(shared, &e))?;
    let out = f();
    let ended = conn.execute_batch("COMMIT");
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    match (out, ended) {
        (Ok(_), Err(e)) => Err(mode.sql(shared, &e)),
        (out, _) => out,
    }
}

/// The current row of a key when it is at row version `version`, opened
/// whether expired or not, with its expiry.
#[allow(clippy::too_many_arguments)]
fn read_current_at(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
    current: &RowCipher,
    pending: Option<&RowCipher>,
    version: i64,
) -> Result<Found<(Credential, Option<i64>)>, ReadError> {
    let sql = if mode == Mode::Inline { GET_INLINE } else { GET_BLOCKING };
    let mut stmt = conn.prepare_cached(sql).map_err(|e| mode.sql(shared, &e))?;
    let mut rows = stmt.query(params![ns.as_str(), key.as_str()]).map_err(|e| mode.sql(shared, &e))?;
    let Some(row) = rows.next().map_err(|e| mode.sql(shared, &e))? else { return Ok(Found::Absent) };
    let at: i64 = row.get(5).map_err(|e| column_error(shared, key, mode, e))?;
    if at != version {
        return Ok(Found::Absent);
    }
    let key_version: i64 = row.get(0).map_err(|e| column_error(shared, key, mode, e))?;
    let Some(cipher) = cipher_of(current, pending, key_version) else {
        return Ok(Found::OtherKey(key_version));
    };
    let cols = SealedColumns::read(shared, key, mode, row)?;
    let place = cols.place(ns, key, RowRole::Current);
    Ok(Found::Opened((open(shared, cipher, key, &place, cols.nonce, cols.sealed)?, cols.expires)))
}

/// One page of a key's kept versions, newest first, as
/// [`CredentialStore::list_versions`](credstore_core::CredentialStore::list_versions)
/// returns it: the history rows (and a current row written before the
/// history), filtered by the retention at the store clock's now, each
/// opened for its metadata. `after` resumes after that row version; one
/// not kept gives an empty page.
pub(crate) fn versions_page(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    after: Option<i64>,
    limit: usize,
    mode: Mode,
) -> Result<VersionPage, ReadError> {
    let now = shared.now_ns();
    let page = keyed(shared, conn, key, mode, |current, pending| {
        in_snapshot(shared, conn, mode, || {
            let live: Option<(i64, Option<i64>)> = conn
                .prepare_cached("SELECT version, expires_at FROM credentials WHERE ns = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row(params![ns.as_str(), key.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                })
                .map_err(|e| column_error(shared, key, mode, e))?;
            let max = shared.retention.max_versions.map_or(-1, i64::from);
            let inline = i64::from(mode == Mode::Inline);
            let mut stmt = conn.prepare_cached(HISTORY).map_err(|e| mode.sql(shared, &e))?;
            let mut rows = stmt
                .query(params![ns.as_str(), key.as_str(), max, inline])
                .map_err(|e| mode.sql(shared, &e))?;
            let mut entries: Vec<VersionInfo> = Vec::new();
            let mut rank = 0usize;
            // Whether the cursor's version was met (or there is none).
            let mut started = after.is_none();
            let mut more = false;
            let mut buf =
                PageBuilder { limit, entries: &mut entries, more: &mut more, started: &mut started, after };
            let mut first = true;
            while let Some(row) = rows.next().map_err(|e| mode.sql(shared, &e))? {
                let version: i64 = row.get(5).map_err(|e| column_error(shared, key, mode, e))?;
                if first {
                    first = false;
                    // A current row newer than every history row was written
                    // before the history existed: it leads the list.
                    if let Some((v, expires)) = live.filter(|(v, _)| *v > version) {
                        match legacy_entry(shared, conn, ns, key, mode, current, pending, v, expires, now)? {
                            Found::OtherKey(kv) => return Ok(Found::OtherKey(kv)),
                            Found::Opened(info) => {
                                if !past_retention(shared, rank, None, expires, now) && buf.take(v)? {
                                    buf.push(info);
                                }
                                rank += 1;
                            }
                            Found::Absent => {}
                        }
                    }
                }
                let ended: Option<i64> = row.get(8).map_err(|e| column_error(shared, key, mode, e))?;
                let deleted: bool = row
                    .get::<_, Option<i64>>(9)
                    .map_err(|e| column_error(shared, key, mode, e))?
                    .is_some_and(|d| d != 0);
                let key_version: i64 = row.get(0).map_err(|e| column_error(shared, key, mode, e))?;
                let cols = SealedColumns::read(shared, key, mode, row)?;
                let this_rank = rank;
                rank += 1;
                if past_retention(shared, this_rank, ended, cols.expires, now) || !buf.take(version)? {
                    if *buf.more {
                        break;
                    }
                    continue;
                }
                let Some(cipher) = cipher_of(current, pending, key_version) else {
                    return Ok(Found::OtherKey(key_version));
                };
                let place = cols.place(ns, key, RowRole::History);
                let metadata = open_metadata(shared, cipher, key, &place, cols.nonce, cols.sealed)?;
                let state = state_of(cols.expires, now, live.map(|(v, _)| v) == Some(version), deleted);
                buf.push(
                    VersionInfo::new(version_of(version), state, from_nanos(cols.updated))
                        .with_expires_at(cols.expires.map(from_nanos))
                        .with_metadata(metadata),
                );
            }
            if first {
                // No history row: a current row written before the history.
                if let Some((v, expires)) = live {
                    match legacy_entry(shared, conn, ns, key, mode, current, pending, v, expires, now)? {
                        Found::OtherKey(kv) => return Ok(Found::OtherKey(kv)),
                        Found::Opened(info)
                            if !past_retention(shared, 0, None, expires, now) && buf.take(v)? =>
                        {
                            buf.push(info)
                        }
                        _ => {}
                    }
                }
            }
            let started = *buf.started;
            let more = *buf.more;
            if !started {
                return Ok(Found::Opened(VersionPage::default()));
            }
            let next_cursor = if more { entries.last().map(|v| v.version.clone()) } else { None };
            Ok(Found::Opened(VersionPage { versions: std::mem::take(&mut entries), next_cursor }))
        })
    })?;
    Ok(page.unwrap_or_default())
}

/// Collects a page: skips versions up to the cursor, takes `limit`, and
/// notes whether one more followed.
struct PageBuilder<'a> {
    limit: usize,
    entries: &'a mut Vec<VersionInfo>,
    more: &'a mut bool,
    started: &'a mut bool,
    after: Option<i64>,
}

impl PageBuilder<'_> {
    /// Whether the visible version `version` goes on the page.
    fn take(&mut self, version: i64) -> Result<bool, ReadError> {
        if !*self.started {
            if Some(version) == self.after {
                *self.started = true;
            }
            return Ok(false);
        }
        if self.entries.len() == self.limit {
            *self.more = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn push(&mut self, info: VersionInfo) {
        self.entries.push(info);
    }
}

/// The entry of a current row written before the history, at `version`.
#[allow(clippy::too_many_arguments)]
fn legacy_entry(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
    current: &RowCipher,
    pending: Option<&RowCipher>,
    version: i64,
    expires: Option<i64>,
    now: i64,
) -> Result<Found<VersionInfo>, ReadError> {
    Ok(match read_current_at(shared, conn, ns, key, mode, current, pending, version)? {
        Found::Opened((c, _)) => Found::Opened(
            VersionInfo::new(c.version, state_of(expires, now, true, false), c.updated_at)
                .with_expires_at(c.expires_at)
                .with_metadata(c.metadata),
        ),
        Found::OtherKey(v) => Found::OtherKey(v),
        Found::Absent => Found::Absent,
    })
}

/// A kept version's state at `now`: expired wins, then current, deleted,
/// previous.
fn state_of(expires: Option<i64>, now: i64, current: bool, deleted: bool) -> VersionState {
    if is_expired(expires, now) {
        VersionState::Expired
    } else if current {
        VersionState::Current
    } else if deleted {
        VersionState::Deleted
    } else {
        VersionState::Previous
    }
}

/// Opens a row for its metadata only; the value is zeroized when dropped.
fn open_metadata(
    shared: &Shared,
    cipher: &RowCipher,
    key: &CredentialKey,
    place: &RowPlace<'_>,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<Metadata, Error> {
    let plain = open_plain(shared, cipher, key, place, nonce, sealed)?;
    decode_metadata(&plain, FORMAT_VERSION, place.kind)
        .ok_or_else(|| errors::integrity(&shared.id, key, "the authenticated payload is malformed"))
}

/// Whether `key` exists in `ns`, from the clear columns only.
pub(crate) fn exists(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
    mode: Mode,
) -> Result<bool, ReadError> {
    conn.prepare_cached(
        "SELECT 1 FROM credentials WHERE ns = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
    )
    .and_then(|mut s| s.exists(params![ns.as_str(), key.as_str(), shared.now_ns()]))
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
        .prepare_cached(
            "SELECT version FROM credentials WHERE ns = ?1 AND key = ?2
             AND (expires_at IS NULL OR expires_at > ?3)",
        )
        .and_then(|mut s| {
            s.query_row(params![ns.as_str(), key.as_str(), shared.now_ns()], |r| r.get(0)).optional()
        })
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

/// The authenticated plaintext of a row, in a zeroizing buffer, or the
/// integrity error that names what failed: the current row or a kept
/// version.
fn open_plain(
    shared: &Shared,
    cipher: &RowCipher,
    key: &CredentialKey,
    place: &RowPlace<'_>,
    nonce: &[u8],
    sealed: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    cipher.open_row(place, nonce, sealed).ok_or_else(|| {
        let what = match place.role {
            RowRole::Current => "stored data".to_owned(),
            RowRole::History => format!("kept version {}", place.version),
        };
        errors::integrity(
            &shared.id,
            key,
            format!("{what} failed authentication: it was changed, corrupted or moved from another row"),
        )
    })
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
    let plain = open_plain(shared, cipher, key, place, nonce, sealed)?;
    let id = &shared.id;
    let (value, metadata) = decode_payload_owned(plain, FORMAT_VERSION, place.kind)
        .ok_or_else(|| errors::integrity(id, key, "the authenticated payload is malformed"))?;
    Ok(Credential {
        key: key.clone(),
        value,
        metadata,
        version: version_of(place.version),
        created_at: from_nanos(place.created_ns),
        updated_at: from_nanos(place.updated_ns),
        expires_at: place.expires_ns.map(from_nanos),
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
