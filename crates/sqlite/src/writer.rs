//! The single writer: a dedicated thread that owns the write connection and
//! group-commits the writes of every handle on one opened database.
//!
//! A caller's write is queued; the thread takes everything queued, applies it
//! in one transaction (each write in its own savepoint, so one failing write
//! does not undo the others), commits, and only then answers each caller.
//! Writes that arrive while a commit is in flight wait in the queue and go
//! into the next transaction. With `synchronous = FULL`, one fsync thus serves
//! a whole batch.
//!
//! A conditional write (create-only, replace-if-version) is checked against
//! the row as the transaction sees it and applied in the same savepoint: a
//! failed condition rolls back that savepoint only, and is answered with
//! [`Error::PreconditionFailed`] while its batch-mates commit. Every write
//! takes its row version from the file's `last_version` counter inside the
//! transaction.
//!
//! Between its transactions the thread holds a read transaction open on a
//! connection of its own, so the reads of this process skip SQLite's file
//! lock system calls (see [`Anchor`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use credstore_core::{CredentialKey, Error, Namespace, Result, SetMode, SetOutcome, Version};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;
use zeroize::Zeroizing;

use credstore_seal::{KeyProvider, KeyRecord, RowCipher, RowPlace, RowRole, RowSetState, ValueKind};

use crate::db;
use crate::errors;
use crate::keys::Prepared;
use crate::rotation::{self, Progress, RotationReport};
use crate::shared::Shared;

/// The most writes one transaction takes.
const MAX_BATCH: usize = 512;

/// How often an idle writer moves its [`Anchor`] to the newest snapshot.
const ANCHOR_REFRESH: Duration = Duration::from_millis(50);

/// No [`Anchor`] is held while the write-ahead log is larger than this
/// (SQLite checkpoints it at about 4 MB): a log that other readers or
/// writers keep from being reset must not be kept so by the anchor as well.
const ANCHOR_MAX_WAL: u64 = 8 * 1024 * 1024;

/// One queued write.
pub(crate) enum Op {
    Set {
        ns: Namespace,
        key: CredentialKey,
        payload: Zeroizing<Vec<u8>>,
        kind: ValueKind,
        mode: SetMode,
        /// When the value expires, in nanoseconds since the Unix epoch.
        expires_ns: Option<i64>,
        reply: oneshot::Sender<Result<SetOutcome>>,
    },
    Delete {
        ns: Namespace,
        key: CredentialKey,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// A purge: of the key and its whole history (`version` `None`), or of
    /// one version that is not the current one.
    Purge {
        ns: Namespace,
        key: CredentialKey,
        version: Option<i64>,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// A data key rotation to a key wrapped beforehand.
    Rotate {
        prepared: Arc<Prepared>,
        progress: Option<Progress>,
        started: Instant,
        reply: oneshot::Sender<Result<RotationReport>>,
    },
    /// A key-encryption key rotation: the key record replaced.
    Rewrap {
        record: KeyRecord,
        provider: Arc<dyn KeyProvider>,
        started: Instant,
        reply: oneshot::Sender<Result<RotationReport>>,
    },
    /// The store is dropped: close its read connections here, off the async
    /// runtime, before the writer's own, so that the writer's connection is
    /// the last and checkpoints and removes the WAL file.
    Close(Vec<Connection>),
}

/// A write applied inside the open transaction, waiting for the commit.
enum Done {
    Set(oneshot::Sender<Result<SetOutcome>>, Result<SetOutcome>),
    Delete(oneshot::Sender<Result<bool>>, Result<bool>),
}

impl Done {
    fn is_ok(&self) -> bool {
        match self {
            Done::Set(_, r) => r.is_ok(),
            Done::Delete(_, r) => r.is_ok(),
        }
    }

    /// Replaces a success by `e`: the transaction that held it did not
    /// commit. So is a failed precondition: it was judged inside that
    /// transaction, against writes that never happened.
    fn fail(self, e: &Error) -> Done {
        match self {
            Done::Set(tx, Ok(_) | Err(Error::PreconditionFailed { .. })) => Done::Set(tx, Err(e.clone())),
            Done::Delete(tx, Ok(_) | Err(Error::PreconditionFailed { .. })) => {
                Done::Delete(tx, Err(e.clone()))
            }
            other => other,
        }
    }

    fn answer(self) {
        // A caller that gave up waiting has dropped its receiver; its write
        // stands (or not) all the same.
        match self {
            Done::Set(tx, r) => drop(tx.send(r)),
            Done::Delete(tx, r) => drop(tx.send(r)),
        }
    }
}

/// Starts the writer thread on `conn`. It ends when every sender is dropped.
pub(crate) fn spawn(conn: Connection, shared: Arc<Shared>) -> std::io::Result<mpsc::Sender<Op>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new().name("credstore-sqlite-writer".into()).spawn(move || {
        let writer = Writer { conn, shared };
        writer.run(rx);
    })?;
    Ok(tx)
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
}

/// Marks the writer as gone however the thread ends, panics included.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.writer_alive.store(false, Ordering::SeqCst);
    }
}

/// A read transaction the writer thread holds open on a read connection of
/// its own, between its write transactions.
///
/// SQLite takes a file lock (two `fcntl` calls) for every read transaction
/// of a connection, unless another connection of the same process already
/// holds the same lock: then it only counts. The anchor holds it, so the
/// reads of this process that see the same snapshot skip both system calls,
/// a quarter of the cost of a read.
///
/// Holding a snapshot holds back checkpoints and the reuse of the
/// write-ahead log, so the anchor is let go before every write transaction
/// of this writer (and a rotation), taken again after its commit, and
/// moved to the newest snapshot every [`ANCHOR_REFRESH`] while the writer is
/// idle: another process's checkpoint is held back by at most that long.
/// None is held while the log is over [`ANCHOR_MAX_WAL`].
/// Once the log is fully checkpointed the anchor reads the database file
/// directly and holds back nothing at all. If the anchor cannot be taken
/// (the lock is busy), reads simply take their own locks.
struct Anchor {
    conn: Option<Connection>,
    wal: PathBuf,
    held: bool,
}

impl Anchor {
    fn open(path: &Path) -> Self {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        Self { conn: db::connect_reader(path).ok(), wal, held: false }
    }

    fn hold(&mut self) {
        let Some(conn) = &self.conn else { return };
        if self.held || std::fs::metadata(&self.wal).is_ok_and(|m| m.len() > ANCHOR_MAX_WAL) {
            return;
        }
        if conn.execute_batch("BEGIN").is_err() {
            return;
        }
        // The read transaction starts with the first read.
        match conn.query_row("SELECT count(*) FROM credstore_meta", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => self.held = true,
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
    }

    fn release(&mut self) {
        if let (true, Some(conn)) = (self.held, &self.conn) {
            if conn.execute_batch("COMMIT").is_err() {
                // Never keep a snapshot by accident: close the connection.
                self.conn = None;
            }
        }
        self.held = false;
    }
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Op>) {
        let _alive = AliveGuard(self.shared.clone());
        let mut anchor = Anchor::open(&self.shared.path);
        anchor.hold();
        loop {
            let first = match rx.recv_timeout(ANCHOR_REFRESH) {
                Ok(op) => op,
                Err(RecvTimeoutError::Timeout) => {
                    anchor.release();
                    anchor.hold();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            anchor.release();
            let purged = batch.iter().any(|op| matches!(op, Op::Purge { .. }));
            let mut writes = Vec::with_capacity(batch.len());
            for op in batch {
                match op {
                    Op::Rotate { prepared, progress, started, reply } => {
                        self.commit(std::mem::take(&mut writes), purged);
                        let report = rotation::rotate(&self.conn, &self.shared, &prepared, progress, started);
                        let _ = reply.send(report);
                    }
                    Op::Rewrap { record, provider, started, reply } => {
                        self.commit(std::mem::take(&mut writes), purged);
                        let _ = reply.send(rotation::rewrap(
                            &self.conn,
                            &self.shared,
                            &record,
                            provider,
                            started,
                        ));
                    }
                    Op::Close(readers) => drop(readers),
                    other => writes.push(other),
                }
            }
            self.commit(writes, purged);
            anchor.hold();
        }
        // Before the writer's own connection, which must be the last to
        // close: it checkpoints and removes the write-ahead log.
        drop(anchor);
        tracing::debug!(path = %self.shared.path.display(), "writer stopped");
    }

    /// Applies `ops` in one transaction and answers each caller after the
    /// commit (or with the error that prevented it). With `checkpoint` (the
    /// batch holds a purge), the write-ahead log is checkpointed and
    /// truncated before the answers: the pages that held a purged row's
    /// ciphertext leave the log (secure_delete zeroed the cells in the
    /// pages), and a purge returns once no copy is left in either file.
    fn commit(&self, ops: Vec<Op>, checkpoint: bool) {
        if ops.is_empty() {
            return;
        }
        let id = &self.shared.id;
        let fail_all = |ops: Vec<Op>, e: &Error| {
            for op in ops {
                match op {
                    Op::Set { reply, .. } => drop(reply.send(Err(e.clone()))),
                    Op::Delete { reply, .. } | Op::Purge { reply, .. } => drop(reply.send(Err(e.clone()))),
                    Op::Rotate { reply, .. } | Op::Rewrap { reply, .. } => drop(reply.send(Err(e.clone()))),
                    Op::Close(readers) => drop(readers),
                }
            }
        };
        if let Err(e) = self.upgrade() {
            return fail_all(ops, &e);
        }
        if let Err(e) = self.begin() {
            return fail_all(ops, &e);
        }
        let count = ops.len();
        let (current, _) = self.shared.keys();
        let now = self.shared.now_ns();
        let mut row_set = match self.row_set_state(&current) {
            Ok(state) => state,
            Err(e) => {
                self.rollback();
                return fail_all(ops, &e);
            }
        };
        let mut done: Vec<Done> = Vec::with_capacity(count);
        let mut ops = ops.into_iter();
        while let Some(op) = ops.next() {
            if let Err(e) = self.conn.execute_batch("SAVEPOINT op").map_err(|e| self.shared.sql(&e)) {
                self.rollback();
                return self.fail_batch(done, ops.collect(), &e, fail_all);
            }
            let result = match op {
                Op::Set { ns, key, payload, kind, mode, expires_ns, reply } => {
                    let write = Write { payload: &payload, kind, mode: &mode, expires_ns, now };
                    Done::Set(reply, self.set(&current, &mut row_set, &ns, &key, write))
                }
                Op::Delete { ns, key, reply } => {
                    Done::Delete(reply, self.delete(&current, &mut row_set, &ns, &key, now))
                }
                Op::Purge { ns, key, version, reply } => {
                    Done::Delete(reply, self.purge(&current, &mut row_set, &ns, &key, version))
                }
                Op::Rotate { .. } | Op::Rewrap { .. } | Op::Close(_) => {
                    unreachable!("rotations and closes are run alone")
                }
            };
            if self.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk or an
                // I/O error can do that): every write of the batch is lost.
                let e = match &result {
                    Done::Set(_, Err(e)) | Done::Delete(_, Err(e)) => e.clone(),
                    _ => errors::backend(id, "the transaction was rolled back by SQLite"),
                };
                done.push(result);
                return self.fail_batch(done, ops.collect(), &e, fail_all);
            }
            let closed = if result.is_ok() {
                self.conn.execute_batch("RELEASE op")
            } else {
                self.conn.execute_batch("ROLLBACK TO op; RELEASE op")
            };
            done.push(result);
            if let Err(e) = closed {
                let e = self.shared.sql(&e);
                self.rollback();
                return self.fail_batch(done, ops.collect(), &e, fail_all);
            }
        }
        let committed = self
            .record_row_set(&current, row_set)
            .and_then(|()| self.conn.execute_batch("COMMIT").map_err(|e| self.shared.sql(&e)));
        if let Err(e) = committed {
            self.rollback();
            return self.fail_batch(done, Vec::new(), &e, fail_all);
        }
        if checkpoint {
            if let Err(reason) = rotation::checkpoint(&self.conn) {
                tracing::warn!(path = %self.shared.path.display(), %reason, "a purge committed, but the write-ahead log still holds pages of the purged rows until a later checkpoint");
            }
        }
        let applied = done.iter().filter(|d| d.is_ok()).count() as u64;
        self.shared.transactions.fetch_add(1, Ordering::Relaxed);
        self.shared.writes.fetch_add(applied, Ordering::Relaxed);
        for d in done {
            d.answer();
        }
    }

    fn fail_batch(&self, done: Vec<Done>, rest: Vec<Op>, e: &Error, fail_all: impl Fn(Vec<Op>, &Error)) {
        for d in done {
            d.fail(e).answer();
        }
        fail_all(rest, e);
    }

    /// Moves a database of 0.2 to its data key, drawn and wrapped when it
    /// opened, before its first write: every row re-sealed in one
    /// transaction, as by a data key rotation. Nothing to do otherwise.
    fn upgrade(&self) -> Result<()> {
        let Some(prepared) = self.shared.envelope().2 else { return Ok(()) };
        let report = rotation::rotate(&self.conn, &self.shared, &prepared, None, Instant::now())?;
        tracing::info!(
            path = %self.shared.path.display(),
            rows = report.rows,
            key_version = report.key_version,
            "moved a database of 0.2 to a data key wrapped by {}, at its first write",
            prepared.provider.info()
        );
        Ok(())
    }

    /// Starts the write transaction, after checking that the file is still
    /// the one opened and that no other process rotated the key.
    fn begin(&self) -> Result<()> {
        self.shared.check_file()?;
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| self.shared.sql(&e))?;
        let checked = match db::read_key_version(&self.conn) {
            Err(e) => Err(self.shared.sql(&e)),
            Ok(Some(v)) if v == self.shared.keys().0.version() => Ok(()),
            Ok(Some(v)) => Err(errors::rotated_elsewhere(
                &self.shared.id,
                &self.shared.path,
                self.shared.keys().0.version(),
                v,
            )),
            Ok(None) => Err(Error::config(
                &self.shared.id,
                format!("database {} is damaged: its key version is missing", self.shared.path.display()),
            )),
        };
        if checked.is_err() {
            self.rollback();
        }
        checked
    }

    fn rollback(&self) {
        if !self.conn.is_autocommit() {
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::warn!(error = %e, "rollback failed");
            }
        }
    }

    /// Applies one write inside the open transaction, after checking its
    /// condition against the row as this transaction sees it (earlier
    /// writes of the batch included), so the check and the write are one
    /// atomic step. A row past its expiry counts as missing. Where the
    /// store keeps a history, the new version is also sealed into it (as a
    /// history row), the version it replaces is marked ended, and the key's
    /// versions past the retention are dropped.
    fn set(
        &self,
        cipher: &RowCipher,
        row_set: &mut Option<RowSetState>,
        ns: &Namespace,
        key: &CredentialKey,
        write: Write<'_>,
    ) -> Result<SetOutcome> {
        let sql = |e: rusqlite::Error| self.shared.sql(&e);
        let ns = ns.as_str();
        let existing: Option<Existing> = self
            .conn
            .prepare_cached(
                "SELECT created_at, updated_at, version, expires_at FROM credentials WHERE ns = ?1 AND key = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![ns, key.as_str()], |r| {
                    Ok(Existing {
                        created: r.get(0)?,
                        updated: r.get(1)?,
                        version: r.get(2)?,
                        expires: r.get(3)?,
                    })
                })
                .optional()
            })
            .map_err(sql)?;
        let live = existing.filter(|e| !is_expired(e.expires, write.now));
        let failed = |reason: &str| Err(Error::precondition_failed(&self.shared.id, key, reason));
        match (write.mode, &live) {
            (SetMode::Create, Some(_)) => return failed("the key exists"),
            (SetMode::Replace(_), None) => return failed("the key does not exist"),
            (SetMode::Replace(expected), Some(e)) if !version_is(e.version, expected) => {
                return failed("the key's current version is not the expected one");
            }
            _ => {}
        }
        let version = self.next_version()?;
        let now = now_nanos();
        let (created, updated) = match (&live, &existing) {
            // Strictly later than the last write, even if the clock stepped back.
            (Some(e), _) => (e.created, now.max(e.updated.saturating_add(1))),
            // An expired key is set anew: a new creation time.
            (None, Some(e)) => (now, now.max(e.updated.saturating_add(1))),
            (None, None) => (now, now),
        };
        if let (true, Some(e)) = (self.shared.keeps_history(), &existing) {
            self.end_version(cipher, ns, key, e.version, write.now, false)?;
        }
        let place = RowPlace::new(ns, key.as_str(), created, updated, version, write.kind)
            .with_expiry(write.expires_ns);
        let (nonce, sealed) =
            cipher.seal_row(&place, write.payload).map_err(|e| errors::backend(&self.shared.id, e))?;
        self.conn
            .prepare_cached(
                "INSERT INTO credentials (ns, key, key_version, nonce, sealed, created_at, updated_at, version, kind, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (ns, key) DO UPDATE SET key_version = excluded.key_version,
                     nonce = excluded.nonce, sealed = excluded.sealed, created_at = excluded.created_at,
                     updated_at = excluded.updated_at, version = excluded.version, kind = excluded.kind,
                     expires_at = excluded.expires_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    ns,
                    key.as_str(),
                    cipher.version(),
                    &nonce[..],
                    sealed,
                    created,
                    updated,
                    version,
                    write.kind.as_str(),
                    write.expires_ns
                ])
            })
            .map_err(sql)?;
        if let (Some(state), Some(set)) = (row_set.as_mut(), cipher.row_set()) {
            if let Some(e) = &existing {
                state.remove(&set.element(ns, key.as_str(), e.version, e.created, e.updated));
            }
            state.add(&set.element(ns, key.as_str(), version, created, updated));
            state.last_version = state.last_version.max(version);
        }
        if self.shared.keeps_history() {
            self.seal_into_history(cipher, &place, write.payload, None, false)?;
            self.prune(ns, key, write.now)?;
        }
        Ok(SetOutcome {
            created: live.is_none(),
            version: version_of(version),
            created_at: from_nanos(created),
            updated_at: from_nanos(updated),
        })
    }

    /// Marks the kept version `version` of a key, the current one, as no
    /// longer current since `now` (the store clock), and as the version a
    /// delete ended when `deleted`. A current row written before the history
    /// existed has no history row: it is kept now, re-sealed as one, so that
    /// the first write or delete after an upgrade can be undone too.
    fn end_version(
        &self,
        cipher: &RowCipher,
        ns: &str,
        key: &CredentialKey,
        version: i64,
        now: i64,
        deleted: bool,
    ) -> Result<()> {
        let ended = self
            .conn
            .prepare_cached(
                "UPDATE credential_history SET ended_at = ?4, deleted = ?5
                 WHERE ns = ?1 AND key = ?2 AND version = ?3",
            )
            .and_then(|mut s| s.execute(params![ns, key.as_str(), version, now, deleted]))
            .map_err(|e| self.shared.sql(&e))?;
        if ended == 0 {
            self.keep_current(cipher, ns, key, now, deleted)?;
        }
        Ok(())
    }

    /// Copies the current row of a key into its history: opened as the
    /// current row, re-sealed as a history row, ended at `now`. A row that
    /// fails authentication fails the write with `Integrity`.
    fn keep_current(
        &self,
        cipher: &RowCipher,
        ns: &str,
        key: &CredentialKey,
        now: i64,
        deleted: bool,
    ) -> Result<()> {
        let id = &self.shared.id;
        let sql = |e: rusqlite::Error| self.shared.sql(&e);
        type Current = (i64, Vec<u8>, Vec<u8>, i64, i64, i64, String, Option<i64>);
        let row: Option<Current> = self
            .conn
            .prepare_cached(
                "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind, expires_at
                 FROM credentials WHERE ns = ?1 AND key = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![ns, key.as_str()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                })
                .optional()
            })
            .map_err(|e| match e {
                rusqlite::Error::InvalidColumnType(..) => {
                    errors::integrity(id, key, "the current row's columns have the wrong types")
                }
                e => sql(e),
            })?;
        let Some((key_version, nonce, sealed, created, updated, version, kind, expires)) = row else {
            return Ok(());
        };
        let tampered = |reason: &str| {
            errors::integrity(
                id,
                key,
                format!("{reason}, so it cannot be kept in the history; nothing was written"),
            )
        };
        let kind = ValueKind::parse(&kind).ok_or_else(|| tampered("the current row's kind is unknown"))?;
        if key_version != i64::from(cipher.version()) {
            return Err(tampered("the current row is sealed under another key version"));
        }
        let place = RowPlace::new(ns, key.as_str(), created, updated, version, kind).with_expiry(expires);
        let plain = cipher
            .open_row(&place, &nonce, &sealed)
            .ok_or_else(|| tampered("the current row failed authentication"))?;
        self.seal_into_history(cipher, &place, &plain, Some(now), deleted)
    }

    /// Seals `plaintext` as the history row of the version at `place` and
    /// inserts it: `ended` (store clock) and `deleted` say whether, and how,
    /// it already stopped being current. The one way a history row is made.
    fn seal_into_history(
        &self,
        cipher: &RowCipher,
        place: &RowPlace<'_>,
        plaintext: &[u8],
        ended: Option<i64>,
        deleted: bool,
    ) -> Result<()> {
        let place = place.with_role(RowRole::History);
        let (nonce, sealed) =
            cipher.seal_row(&place, plaintext).map_err(|e| errors::backend(&self.shared.id, e))?;
        self.conn
            .prepare_cached(
                "INSERT INTO credential_history (ns, key, version, key_version, nonce, sealed, created_at,
                     updated_at, kind, expires_at, ended_at, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    place.ns,
                    place.key,
                    place.version,
                    cipher.version(),
                    &nonce[..],
                    sealed,
                    place.created_ns,
                    place.updated_ns,
                    place.kind.as_str(),
                    place.expires_ns,
                    ended,
                    deleted
                ])
            })
            .map_err(|e| self.shared.sql(&e))?;
        Ok(())
    }

    /// Drops the versions of a key past the retention at `now` (the store
    /// clock): beyond the newest `max_versions`, and those that stopped
    /// being current (were overwritten, deleted, or expired) `max_age` ago
    /// or more. Each is one range of the history's primary key.
    fn prune(&self, ns: &str, key: &CredentialKey, now: i64) -> Result<()> {
        let sql = |e: rusqlite::Error| self.shared.sql(&e);
        let retention = self.shared.retention;
        if let Some(max) = retention.max_versions {
            self.conn
                .prepare_cached(
                    "DELETE FROM credential_history WHERE ns = ?1 AND key = ?2 AND version <= (
                         SELECT version FROM credential_history WHERE ns = ?1 AND key = ?2
                         ORDER BY version DESC LIMIT 1 OFFSET ?3)",
                )
                .and_then(|mut s| s.execute(params![ns, key.as_str(), i64::from(max)]))
                .map_err(sql)?;
        }
        if let Some(cutoff) = age_cutoff(&retention, now) {
            self.conn
                .prepare_cached(
                    "DELETE FROM credential_history WHERE ns = ?1 AND key = ?2
                         AND (ended_at <= ?3 OR expires_at <= ?3)",
                )
                .and_then(|mut s| s.execute(params![ns, key.as_str(), cutoff]))
                .map_err(sql)?;
        }
        Ok(())
    }

    /// The next row version: one more than the last one handed out in the
    /// whole file (`last_version` in `credstore_meta`), taken inside the
    /// write transaction, so no two writes of any process ever get the same
    /// one, and a rolled-back write gives its number back unseen.
    fn next_version(&self) -> Result<i64> {
        let next: Option<i64> = self
            .conn
            .prepare_cached(
                "UPDATE credstore_meta SET value = value + 1
                 WHERE name = ?1 AND typeof(value) = 'integer' RETURNING value",
            )
            .and_then(|mut s| s.query_row([db::META_LAST_VERSION], |r| r.get(0)).optional())
            .map_err(|e| self.shared.sql(&e))?;
        next.filter(|&n| n >= 1).ok_or_else(|| {
            Error::config(
                &self.shared.id,
                format!(
                    "database {} is damaged: its last row version is missing or invalid",
                    self.shared.path.display()
                ),
            )
        })
    }

    /// Deletes the current row. Where the store keeps a history, the
    /// version it held stays in it, marked as ended by a delete (so it can be
    /// restored); otherwise the key's history goes too. An expired row is
    /// removed all the same, and answers `false`: the key read as absent.
    fn delete(
        &self,
        cipher: &RowCipher,
        row_set: &mut Option<RowSetState>,
        ns: &Namespace,
        key: &CredentialKey,
        now: i64,
    ) -> Result<bool> {
        if self.shared.keeps_history() {
            let current: Option<(i64, Option<i64>)> = self
                .conn
                .prepare_cached("SELECT version, expires_at FROM credentials WHERE ns = ?1 AND key = ?2")
                .and_then(|mut s| {
                    s.query_row(params![ns.as_str(), key.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional()
                })
                .map_err(|e| self.shared.sql(&e))?;
            if let Some((version, expires)) = current {
                self.end_version(cipher, ns.as_str(), key, version, now, !is_expired(expires, now))?;
            }
        }
        let removed = self.remove_current(cipher, row_set, ns, key)?;
        let live = removed.filter(|(_, expires)| !is_expired(*expires, now));
        if self.shared.keeps_history() {
            self.prune(ns.as_str(), key, now)?;
        } else {
            self.remove_history(ns, key, None)?;
        }
        Ok(live.is_some())
    }

    /// Removes the current row of a key from `credentials` and the row set:
    /// its version and expiry, if it was there.
    fn remove_current(
        &self,
        cipher: &RowCipher,
        row_set: &mut Option<RowSetState>,
        ns: &Namespace,
        key: &CredentialKey,
    ) -> Result<Option<(i64, Option<i64>)>> {
        let removed: Option<(i64, i64, i64, Option<i64>)> = self
            .conn
            .prepare_cached(
                "DELETE FROM credentials WHERE ns = ?1 AND key = ?2
                 RETURNING version, created_at, updated_at, expires_at",
            )
            .and_then(|mut s| {
                s.query_row(params![ns.as_str(), key.as_str()], |r| {
                    Ok((
                        db::lenient_int(r.get_ref(0)?),
                        db::lenient_int(r.get_ref(1)?),
                        db::lenient_int(r.get_ref(2)?),
                        r.get_ref(3)?.as_i64_or_null().unwrap_or(Some(i64::MIN)),
                    ))
                })
                .optional()
            })
            .map_err(|e| self.shared.sql(&e))?;
        if let (Some(state), Some(set), Some((v, c, u, _))) = (row_set.as_mut(), cipher.row_set(), removed) {
            state.remove(&set.element(ns.as_str(), key.as_str(), v, c, u));
        }
        Ok(removed.map(|(v, _, _, expires)| (v, expires)))
    }

    /// Removes a key's history rows: all of them, or the one of `version`.
    /// Returns how many.
    fn remove_history(&self, ns: &Namespace, key: &CredentialKey, version: Option<i64>) -> Result<usize> {
        let sql = |e: rusqlite::Error| self.shared.sql(&e);
        match version {
            None => self
                .conn
                .prepare_cached("DELETE FROM credential_history WHERE ns = ?1 AND key = ?2")
                .and_then(|mut s| s.execute(params![ns.as_str(), key.as_str()]))
                .map_err(sql),
            Some(v) => self
                .conn
                .prepare_cached("DELETE FROM credential_history WHERE ns = ?1 AND key = ?2 AND version = ?3")
                .and_then(|mut s| s.execute(params![ns.as_str(), key.as_str(), v]))
                .map_err(sql),
        }
    }

    /// Purges a key with its whole history (`version` `None`), or one
    /// version that is not current: its history row, and the current row
    /// too when that version is the current one past its expiry. The cells
    /// are zeroed in their pages (`secure_delete`); the writer checkpoints
    /// the log after the commit.
    fn purge(
        &self,
        cipher: &RowCipher,
        row_set: &mut Option<RowSetState>,
        ns: &Namespace,
        key: &CredentialKey,
        version: Option<i64>,
    ) -> Result<bool> {
        let Some(version) = version else {
            let current = self.remove_current(cipher, row_set, ns, key)?;
            let history = self.remove_history(ns, key, None)?;
            return Ok(current.is_some() || history > 0);
        };
        let now = self.shared.now_ns();
        let current: Option<(i64, Option<i64>)> = self
            .conn
            .prepare_cached("SELECT version, expires_at FROM credentials WHERE ns = ?1 AND key = ?2")
            .and_then(|mut s| {
                s.query_row(params![ns.as_str(), key.as_str()], |r| Ok((r.get(0)?, r.get(1)?))).optional()
            })
            .map_err(|e| self.shared.sql(&e))?;
        let mut purged = false;
        if let Some((current, expires)) = current.filter(|(v, _)| *v == version) {
            if !is_expired(expires, now) {
                return Err(Error::precondition_failed(
                    &self.shared.id,
                    key,
                    format!("version {current} is the current version: write a new one first, then purge it"),
                ));
            }
            purged = self.remove_current(cipher, row_set, ns, key)?.is_some();
        }
        Ok(self.remove_history(ns, key, Some(version))? > 0 || purged)
    }

    /// The row set as recorded, read inside the write transaction (another
    /// process may have written since); `None` while the database is in the
    /// format of 0.2, which keeps none.
    fn row_set_state(&self, cipher: &RowCipher) -> Result<Option<RowSetState>> {
        let Some(set) = cipher.row_set() else { return Ok(None) };
        let record = db::read_blob(&self.conn, db::META_ROW_SET).map_err(|e| self.shared.sql(&e))?;
        match record.as_deref().and_then(|r| set.open_state(r)) {
            Some(state) => Ok(Some(state)),
            None => Err(Error::config(
                &self.shared.id,
                format!(
                    "database {} is damaged: its row set record is missing or fails authentication, so no write \
                     is accepted; restore it from a backup",
                    self.shared.path.display()
                ),
            )),
        }
    }

    /// Writes the row set `state` before the commit; each write has raised
    /// its last version to the one it was handed.
    fn record_row_set(&self, cipher: &RowCipher, state: Option<RowSetState>) -> Result<()> {
        let (Some(state), Some(set)) = (state, cipher.row_set()) else { return Ok(()) };
        self.conn
            .prepare_cached("UPDATE credstore_meta SET value = ?2 WHERE name = ?1")
            .and_then(|mut s| s.execute(params![db::META_ROW_SET, set.seal_state(&state)]))
            .map_err(|e| self.shared.sql(&e))?;
        Ok(())
    }
}

/// The parts of a write [`Writer::set`] takes besides its place.
struct Write<'a> {
    payload: &'a [u8],
    kind: ValueKind,
    mode: &'a SetMode,
    expires_ns: Option<i64>,
    /// The store clock's time of the transaction (nanoseconds).
    now: i64,
}

/// The clear columns of a current row that a write reads.
#[derive(Clone, Copy)]
struct Existing {
    created: i64,
    updated: i64,
    version: i64,
    expires: Option<i64>,
}

/// Whether a row expiring at `expires` has expired at `now` (both in
/// nanoseconds): its expiry is at or before `now`.
pub(crate) fn is_expired(expires: Option<i64>, now: i64) -> bool {
    expires.is_some_and(|e| e <= now)
}

/// The instant (nanoseconds) at or before which a version that stopped
/// being current is past `retention`'s age at `now`; `None` without an age
/// limit.
pub(crate) fn age_cutoff(retention: &credstore_core::Retention, now: i64) -> Option<i64> {
    retention.max_age.map(|age| now.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX)))
}

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_nanos() -> i64 {
    db::to_nanos(SystemTime::now())
}

/// A stored timestamp as a `SystemTime`; times before the epoch clamp to it.
pub(crate) fn from_nanos(n: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// A row version as the [`Version`] callers see: its decimal text.
pub(crate) fn version_of(n: i64) -> Version {
    Version::from_counter(u64::try_from(n).unwrap_or(0))
}

/// Whether the row version `n` is `expected`.
fn version_is(n: i64, expected: &Version) -> bool {
    version_of(n) == *expected
}
