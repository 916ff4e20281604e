//! [`SqliteStore`]: the [`CredentialStore`] implementation.

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use credstore_core::{
    check_set, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, ListCursor,
    ListOptions, ListPage, Metadata, Namespace, Result, SecretValue, SetOptions, SetOutcome, StoreId,
    StoreKind, Version,
};
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use crate::crypto::{decode_payload, encode_payload, RowCipher, RowPlace, ValueKind, FORMAT_VERSION};
use crate::db;
use crate::errors;
use crate::rotation::RotationReport;
use crate::writer::{self, from_nanos, version_of, Op, Shared};
use crate::{MasterKey, SqliteConfig};

/// How long [`CredentialStore::check_availability`] waits for its probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Idle read connections kept for reuse.
const MAX_IDLE_READERS: usize = 8;

/// Counters of the writer shared by every handle on one opened database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct WriterStats {
    /// Transactions committed.
    pub transactions: u64,
    /// Writes (`set_opts` and `delete`) committed in them; a write whose
    /// condition failed is not counted. `writes / transactions` is the mean
    /// group-commit batch.
    pub writes: u64,
}

/// The encrypted SQLite credential store.
///
/// - One database file holds any number of namespaces; every row is sealed
///   with AES-256-GCM under the master key (see the crate docs).
/// - Cloning is cheap, and so is
///   [`with_namespace`](CredentialStore::with_namespace): every handle shares
///   the same writer thread and read connections.
/// - All SQLite work runs off the async runtime's worker threads: reads on
///   Tokio's blocking pool, writes on the store's own writer thread, which
///   group-commits concurrent writes.
///
/// `Debug` shows the id, path and namespace only.
///
/// # Panics
/// [`SqliteStore::open`] and the reads of the [`CredentialStore`] methods
/// use [`tokio::task::spawn_blocking`], so they panic when called outside a
/// Tokio runtime (any flavour will do; the store is not tied to the runtime
/// that opened it).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    ns: Namespace,
}

struct Inner {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Op>,
    readers: Mutex<Vec<Connection>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let readers = std::mem::take(self.readers.get_mut().unwrap_or_else(|e| e.into_inner()));
        if let Err(mpsc::SendError(Op::Close(readers))) = self.writer.send(Op::Close(readers)) {
            // The writer is gone already; close them here.
            drop(readers);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database of `config`.
    ///
    /// # Behavior
    /// - A missing file is created with mode `0600`, and missing directories
    ///   with `0700`; the database uses write-ahead logging.
    /// - A new database records a sealed check value of the master key (and,
    ///   for a passphrase, its salt and Argon2id parameters); a file of an
    ///   older schema is migrated in one transaction (see the crate docs).
    /// - The work, Argon2id included, runs on Tokio's blocking pool.
    ///
    /// # Errors
    /// - [`Error::Config`] when no master key is configured, for a wrong
    ///   master key (`wrong master key`), and for a file that is not a
    ///   credential database (not SQLite, corrupt, another application's,
    ///   or of a newer schema); such a file is left untouched.
    /// - [`Error::Integrity`] naming the key of a row that fails
    ///   authentication while a file of schema 1 is migrated; the file is
    ///   left as it was.
    /// - [`Error::PermissionDenied`] when the file or directory cannot be
    ///   created or written.
    /// - [`Error::Unavailable`] when another process holds the database
    ///   locked past the busy timeout, or the disk is full.
    pub async fn open(id: StoreId, config: SqliteConfig) -> Result<Self> {
        let Some(key) = config.master_key.clone() else {
            return Err(Error::config(&id, "no master key configured (SqliteConfig::master_key)"));
        };
        let task_id = id.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(id, config, key))
            .await
            .map_err(|e| errors::backend(&task_id, format!("opening the database failed: {e}")))?
    }

    fn open_blocking(id: StoreId, config: SqliteConfig, key: MasterKey) -> Result<Self> {
        let opened = db::open(&id, &config, &key)?;
        drop(key);
        let shared = Arc::new(Shared::new(
            id.clone(),
            config.path.clone(),
            opened.file,
            config.busy_timeout,
            opened.cipher,
        ));
        let writer = writer::spawn(opened.conn, shared.clone())
            .map_err(|e| errors::backend(&id, format!("cannot start the writer thread: {e}")))?;
        tracing::debug!(store = %id, path = %config.path.display(), "opened");
        Ok(Self {
            inner: Arc::new(Inner { shared, writer, readers: Mutex::new(Vec::new()) }),
            ns: config.namespace.clone(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.inner.shared.path()
    }

    /// The version of the master key in force: 1 for a new database, one
    /// more after each rotation.
    pub fn key_version(&self) -> u32 {
        self.inner.shared.keys().0.version()
    }

    /// Counters of the shared writer.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.inner.shared.transactions.load(Ordering::Relaxed),
            writes: self.inner.shared.writes.load(Ordering::Relaxed),
        }
    }

    /// Re-seals every credential of the file (all namespaces) and the check
    /// value under `new`, in one transaction.
    ///
    /// # Behavior
    /// - Afterwards every handle of this opened store uses the new key, and
    ///   opening the file with the old key fails with `wrong master key`.
    /// - Atomic: if the rotation fails or the process dies part way, the
    ///   database is exactly as before and opens with the old key.
    /// - Writes wait while the rotation runs; reads go on.
    /// - The pages sealed under the old key are zeroed in the database and
    ///   checkpointed out of the write-ahead log afterwards.
    /// - A passphrase key gets a fresh salt.
    ///
    /// # Errors
    /// [`Error::Integrity`] naming the key of a row that fails
    /// authentication (nothing is rotated then); [`Error::Config`] when
    /// another process rotated the key first; the errors of a write otherwise.
    pub async fn rotate_key(&self, new: MasterKey) -> Result<RotationReport> {
        self.rotate(new, None).await
    }

    /// [`SqliteStore::rotate_key`], calling `progress(done, total)` on the
    /// writer thread after each chunk of re-sealed rows.
    ///
    /// # Errors
    /// As [`SqliteStore::rotate_key`].
    pub async fn rotate_key_with_progress(
        &self,
        new: MasterKey,
        progress: impl FnMut(usize, usize) + Send + 'static,
    ) -> Result<RotationReport> {
        self.rotate(new, Some(Box::new(progress))).await
    }

    async fn rotate(
        &self,
        key: MasterKey,
        progress: Option<crate::rotation::Progress>,
    ) -> Result<RotationReport> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Rotate { key, progress, reply })?;
        self.answer(rx).await
    }

    fn send(&self, op: Op) -> Result<()> {
        self.inner.writer.send(op).map_err(|_| self.writer_gone())
    }

    async fn answer<T>(&self, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        rx.await.map_err(|_| self.writer_gone())?
    }

    fn writer_gone(&self) -> Error {
        errors::backend(self.id(), format!("the writer of database {} has stopped", self.path().display()))
    }

    /// Runs `f` with a read connection on the blocking pool, after checking
    /// that the file is still the one opened.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Connection) -> Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let shared = &inner.shared;
            shared.check_file()?;
            let pooled = inner.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => db::connect_reader(&shared.path, shared.busy_timeout).map_err(|e| shared.sql(&e))?,
            };
            let out = f(shared, &conn);
            let mut idle = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            out
        })
        .await
        .map_err(|e| errors::backend(self.id(), format!("a read task failed: {e}")))?
    }
}

/// Reads and opens the credential `key` of namespace `ns`.
///
/// The keys are taken before the row is read. A row under a key version
/// those keys do not hold is tampered with, sealed by another process's
/// rotation, or re-sealed by a rotation of this process that committed in
/// between; in the last case the keys have changed meanwhile and the read is
/// simply made again.
fn read_credential(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
) -> Result<Option<Credential>> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let keys = shared.keys();
        let Some(row) = read_row(shared, conn, ns, key)? else { return Ok(None) };
        let (current, pending) = &keys;
        let cipher = match (u32::try_from(row.version).ok(), pending) {
            (Some(v), _) if v == current.version() => current,
            (Some(v), Some(p)) if v == p.version() => p,
            _ if attempts < 3 && shared.key_versions() != versions(&keys) => continue,
            _ => return Err(version_mismatch(shared, conn, key, row.version, current.version())),
        };
        return open_row(shared, cipher, ns, key, row).map(Some);
    }
}

fn read_row(
    shared: &Shared,
    conn: &Connection,
    ns: &Namespace,
    key: &CredentialKey,
) -> Result<Option<RawRow>> {
    let row = conn
        .prepare_cached(
            "SELECT key_version, nonce, sealed, created_at, updated_at, version, kind FROM credentials
             WHERE ns = ?1 AND key = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![ns.as_str(), key.as_str()], |r| {
                Ok(RawRow {
                    version: r.get(0)?,
                    nonce: r.get(1)?,
                    sealed: r.get(2)?,
                    created: r.get(3)?,
                    updated: r.get(4)?,
                    row_version: r.get(5)?,
                    kind: r.get(6)?,
                })
            })
            .optional()
        });
    match row {
        Ok(row) => Ok(row),
        Err(rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..)) => {
            Err(errors::integrity(&shared.id, key, "the row's columns have the wrong types"))
        }
        Err(e) => Err(shared.sql(&e)),
    }
}

/// The error for a row under a key version this store does not hold.
fn version_mismatch(shared: &Shared, conn: &Connection, key: &CredentialKey, row: i64, ours: u32) -> Error {
    match db::read_key_version(conn) {
        Err(e) => shared.sql(&e),
        Ok(Some(d)) if d != ours => errors::rotated_elsewhere(&shared.id, &shared.path, ours, d),
        Ok(_) => errors::integrity(
            &shared.id,
            key,
            format!("the row claims key version {row}, but the database's key is version {ours}"),
        ),
    }
}

/// The versions of a pair from [`Shared::keys`].
fn versions((current, pending): &(Arc<RowCipher>, Option<Arc<RowCipher>>)) -> (u32, Option<u32>) {
    (current.version(), pending.as_ref().map(|p| p.version()))
}

/// Opens a row with `cipher`, authenticated, or explains why not.
fn open_row(
    shared: &Shared,
    cipher: &RowCipher,
    ns: &Namespace,
    key: &CredentialKey,
    row: RawRow,
) -> Result<Credential> {
    let id = &shared.id;
    let kind = ValueKind::parse(&row.kind)
        .ok_or_else(|| errors::integrity(id, key, "the row's kind is neither text nor binary"))?;
    let place = RowPlace {
        ns: ns.as_str(),
        key: key.as_str(),
        created_ns: row.created,
        updated_ns: row.updated,
        version: row.row_version,
        kind,
    };
    let plain = cipher.open_row(&place, &row.nonce, &row.sealed).ok_or_else(|| {
        errors::integrity(
            id,
            key,
            "stored data failed authentication: it was changed, corrupted or moved from another row",
        )
    })?;
    let (value, metadata) = decode_payload(&plain, FORMAT_VERSION, kind)
        .ok_or_else(|| errors::integrity(id, key, "the authenticated payload is malformed"))?;
    Ok(Credential {
        key: key.clone(),
        value,
        metadata,
        version: version_of(row.row_version),
        created_at: from_nanos(row.created),
        updated_at: from_nanos(row.updated),
    })
}

struct RawRow {
    version: i64,
    nonce: Vec<u8>,
    sealed: Vec<u8>,
    created: i64,
    updated: i64,
    row_version: i64,
    kind: String,
}

#[async_trait]
impl CredentialStore for SqliteStore {
    fn id(&self) -> &StoreId {
        &self.inner.shared.id
    }

    fn kind(&self) -> StoreKind {
        StoreKind::EncryptedSqlite
    }

    /// Everything: [`Capabilities::full`], durable.
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// A handle on `namespace` inside this handle's namespace (`a` then `b`
    /// gives `a/b`), over the same database, writer and connections. No
    /// I/O.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the joined namespace is longer than
    /// [`MAX_NAMESPACE_LEN`](credstore_core::MAX_NAMESPACE_LEN), the only
    /// cap of this store.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let ns = self.ns.join(namespace)?;
        Ok(Arc::new(Self { inner: self.inner.clone(), ns }))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let (ns, key) = (self.ns.clone(), key.clone());
        self.read(move |shared, conn| read_credential(shared, conn, &ns, &key)).await
    }

    /// Queues the write for the writer thread, which checks the condition
    /// and applies the write in one step of its transaction; answered once
    /// the transaction is durable. A failed condition fails this write only,
    /// not the others of its group commit.
    async fn set_opts(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<SetOutcome> {
        check_set(self, value, metadata, options)?;
        let payload = encode_payload(value, metadata);
        let (reply, rx) = oneshot::channel();
        self.send(Op::Set {
            ns: self.ns.clone(),
            key: key.clone(),
            payload,
            kind: ValueKind::of(value),
            mode: options.mode.clone(),
            reply,
        })?;
        self.answer(rx).await
    }

    /// Reads the row's clear columns only, without opening its seal.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        let (ns, key) = (self.ns.clone(), key.clone());
        self.read(move |shared, conn| {
            conn.prepare_cached("SELECT 1 FROM credentials WHERE ns = ?1 AND key = ?2")
                .and_then(|mut s| s.exists(params![ns.as_str(), key.as_str()]))
                .map_err(|e| shared.sql(&e))
        })
        .await
    }

    /// Reads the row's clear `version` column only, without opening its
    /// seal (which binds it: a `get` of an edited version fails).
    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        let (ns, key) = (self.ns.clone(), key.clone());
        self.read(move |shared, conn| {
            let row: Option<i64> = conn
                .prepare_cached("SELECT version FROM credentials WHERE ns = ?1 AND key = ?2")
                .and_then(|mut s| s.query_row(params![ns.as_str(), key.as_str()], |r| r.get(0)).optional())
                .map_err(|e| match e {
                    rusqlite::Error::InvalidColumnType(..) => {
                        errors::integrity(&shared.id, &key, "the row's version is not an integer")
                    }
                    e => shared.sql(&e),
                })?;
            Ok(row.map(version_of))
        })
        .await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Delete { ns: self.ns.clone(), key: key.clone(), reply })?;
        self.answer(rx).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let ns = self.ns.clone();
        let prefix = options.prefix().to_owned();
        // Every key character sorts below 0x7f, so [prefix, prefix + 0x7f)
        // is exactly the keys starting with prefix.
        let upper = format!("{prefix}\u{7f}");
        let after = options.cursor().map(|c| c.start_after().as_str().to_owned()).unwrap_or_default();
        let limit = options.limit();
        self.read(move |shared, conn| {
            let keys: Vec<String> = conn
                .prepare_cached(
                    "SELECT key FROM credentials WHERE ns = ?1 AND key >= ?2 AND key < ?3 AND key > ?4
                     ORDER BY key LIMIT ?5",
                )
                .and_then(|mut s| {
                    s.query_map(params![ns.as_str(), prefix, upper, after, (limit + 1) as i64], |r| r.get(0))?
                        .collect()
                })
                .map_err(|e| shared.sql(&e))?;
            let mut page = Vec::with_capacity(keys.len().min(limit));
            for k in keys.into_iter().take(limit + 1) {
                page.push(CredentialKey::new(k).map_err(|_| {
                    errors::backend(
                        &shared.id,
                        format!("database {} holds an invalid key name", shared.path.display()),
                    )
                })?);
            }
            let more = page.len() > limit;
            page.truncate(limit);
            let next_cursor = if more { page.last().map(ListCursor::after) } else { None };
            Ok(ListPage { keys: page, next_cursor })
        })
        .await
    }

    async fn check_availability(&self) -> Availability {
        if !self.inner.shared.writer_alive.load(Ordering::SeqCst) {
            return Availability::down(format!(
                "the writer of database {} has stopped",
                self.path().display()
            ));
        }
        let probe = self.read(|shared, conn| {
            let mut attempts = 0;
            loop {
                attempts += 1;
                // As in `get`: keys first, then the stored key version and
                // check value (read together), and again if a rotation of
                // this process changed the keys in between.
                let keys = shared.keys();
                let (version, check, _) =
                    db::snapshot(conn, db::read_key_meta).map_err(|e| shared.sql(&e))?;
                let (current, pending) = &keys;
                let cipher = match version {
                    Some(v) if v == current.version() => current,
                    Some(v) if pending.as_ref().is_some_and(|p| p.version() == v) => {
                        pending.as_ref().expect("checked")
                    }
                    _ if attempts < 3 && shared.key_versions() != versions(&keys) => continue,
                    Some(v) => {
                        return Err(errors::rotated_elsewhere(&shared.id, &shared.path, current.version(), v))
                    }
                    None => return Err(errors::wrong_key(&shared.id, &shared.path)),
                };
                return if check.as_deref().is_some_and(|c| cipher.verify_check(c)) {
                    Ok(())
                } else {
                    Err(errors::wrong_key(&shared.id, &shared.path))
                };
            }
        });
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(())) => Availability::up(),
            Ok(Err(e)) => Availability::down(e.to_string()),
            Err(_) => Availability::down(format!(
                "database {} did not answer the probe within {PROBE_TIMEOUT:?}",
                self.path().display()
            )),
        }
    }
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("id", self.id())
            .field("path", &self.path())
            .field("namespace", &self.ns)
            .finish()
    }
}
