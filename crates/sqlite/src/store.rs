//! [`SqliteStore`]: the [`CredentialStore`] implementation.

use std::fmt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use credstore_core::{
    Availability, Capabilities, Credential, CredentialKey, CredentialStore, CredentialStoreExt, Error,
    ListCursor, ListOptions, ListPage, Namespace, PurgeTarget, Result, SetOutcome, StoreId, StoreInfo,
    Version, VersionListOptions, VersionPage, WriteRequest,
};
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use credstore_seal::{encode_payload, KeyProvider, KeyRecord, ProviderInfo, ValueKind};

use crate::db::{self, Kek};
use crate::errors;
use crate::keyfile;
use crate::keys::Prepared;
use crate::reader::{self, versions, Mode, ReadError, INLINE_MAX_BATCH, INLINE_PAUSE, SLOW_INLINE_READ};
use crate::rotation::RotationReport;
use crate::shared::Shared;
use crate::writer::{self, Op};
use crate::{KeyFile, MasterKey, SqliteConfig};

/// The data key version after `current`.
fn next_version(store: &SqliteStore, current: u32) -> Result<u32> {
    current.checked_add(1).ok_or_else(|| errors::backend(store.id(), "key version overflow"))
}

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
/// - Reads of one key (`get`, `has`, `version`) run on the calling task
///   when they can answer without waiting, and on Tokio's blocking pool
///   otherwise (a lock, a large row, a cold disk: see the crate docs,
///   "Reads"); `list` and the probe run on the blocking pool; writes on the
///   store's own writer thread, which group-commits concurrent writes.
///
/// `Debug` shows the id, path and namespace only.
///
/// # Panics
/// [`SqliteStore::open`] and the reads of the [`CredentialStore`] methods
/// may use [`tokio::task::spawn_blocking`], so they panic when called
/// outside a Tokio runtime (any flavour will do; the store is not tied to
/// the runtime that opened it).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    info: StoreInfo,
}

struct Inner {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Op>,
    readers: Mutex<Vec<Connection>>,
    /// The key file the store was opened with, if any.
    key_file: Option<KeyFile>,
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
        if config.master_key.is_none() && config.key_file.is_none() && config.provider.is_none() {
            return Err(Error::config(
                &id,
                "no master key configured (SqliteConfig::master_key, master_key_file or key_provider)",
            ));
        }
        let task_id = id.clone();
        tokio::task::spawn_blocking(move || Self::open_blocking(id, config))
            .await
            .map_err(|e| errors::backend(&task_id, format!("opening the database failed: {e}")))?
    }

    fn open_blocking(id: StoreId, config: SqliteConfig) -> Result<Self> {
        let candidates = match (&config.master_key, &config.key_file, &config.provider) {
            (Some(key), ..) => vec![(keyfile::Role::Current, Kek::local(key.clone()))],
            (None, Some(file), _) => keyfile::candidates(file)
                .map_err(|e| match e {
                    Error::InvalidInput { .. } => Error::config(&id, e.to_string()),
                    e => e,
                })?
                .into_iter()
                .map(|(role, key)| (role, Kek::local(key)))
                .collect(),
            (None, None, Some(provider)) => {
                vec![(keyfile::Role::Current, Kek { provider: provider.clone(), legacy: None })]
            }
            (None, None, None) => return Err(Error::config(&id, "no master key configured")),
        };
        let keks: Vec<Kek> = candidates.iter().map(|(_, k)| k.clone()).collect();
        let opened = db::open(&id, &config, &keks)?;
        drop(keks);
        if let Some(file) = &config.key_file {
            keyfile::after_open(&id, &config.path, file, candidates[opened.key_index].0);
        }
        drop(candidates);
        let shared = Arc::new(
            Shared::new(id.clone(), config.path.clone(), opened.file, config.busy_timeout, opened.keys)
                .with_history(config.retention, config.clock.clone()),
        );
        let history = shared.keeps_history();
        let capabilities = Capabilities::full()
            .with_expiry(true)
            .with_versions(history)
            .with_recover_deleted(history)
            .with_retention(if history { config.retention } else { credstore_core::Retention::NONE });
        let writer = writer::spawn(opened.conn, shared.clone())
            .map_err(|e| errors::backend(&id, format!("cannot start the writer thread: {e}")))?;
        tracing::debug!(store = %id, path = %config.path.display(), "opened");
        // One read connection from the start, so the first read runs on the
        // calling task; more are opened as concurrent reads need them.
        let readers: Vec<Connection> = db::connect_reader(&config.path).into_iter().collect();
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                writer,
                readers: Mutex::new(readers),
                key_file: config.key_file.clone(),
            }),
            info: StoreInfo::new(id.clone(), crate::KIND, capabilities)
                .with_clock(config.clock.clone())
                .in_namespace(config.namespace.clone()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.inner.shared.path()
    }

    /// The version of the data key in force: 1 for a new database, one
    /// more after each data key rotation (a database of 0.2 keeps its master
    /// key's version until its first write).
    pub fn key_version(&self) -> u32 {
        self.inner.shared.keys().0.version()
    }

    /// Checks every row against the row set, the authenticated digest of
    /// the rows that every write keeps, as the opening does (see
    /// [`SqliteConfig::verify_rows`]): the number of credentials when they
    /// are the ones the last write left. Reads the clear columns only, on
    /// Tokio's blocking pool, in one read transaction.
    ///
    /// # Errors
    /// [`Error::Config`] saying the database failed its integrity check when
    /// a row was put back to an older copy of itself, removed or added
    /// outside credstore; [`Error::Unsupported`] for a database still in the
    /// format of 0.2 (it keeps no row set until its first write).
    pub async fn verify(&self) -> Result<u64> {
        let shared = self.inner.shared.clone();
        if shared.keys().0.row_set().is_none() {
            return Err(Error::unsupported(self.id(), "verify of a database of 0.2 before its first write"));
        }
        let task_id = self.id().clone();
        tokio::task::spawn_blocking(move || {
            let conn = db::connect(shared.path(), shared.busy_timeout).map_err(|e| shared.sql(&e))?;
            loop {
                let cipher = shared.keys().0;
                let verified = db::verify_rows(&shared.id, shared.path(), &conn, &cipher);
                // A data key rotation of this process landed meanwhile: check
                // again under the new key.
                if verified.is_err() && shared.keys().0.version() != cipher.version() {
                    continue;
                }
                return verified;
            }
        })
        .await
        .map_err(|e| errors::backend(&task_id, format!("the verification task failed: {e}")))?
    }

    /// The key-encryption key in force: its provider's kind, key and
    /// location.
    pub fn key_provider(&self) -> ProviderInfo {
        self.inner.shared.envelope().1.info().clone()
    }

    /// Counters of the shared writer.
    pub fn writer_stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.inner.shared.transactions.load(Ordering::Relaxed),
            writes: self.inner.shared.writes.load(Ordering::Relaxed),
        }
    }

    /// Rotates both keys: a new data key, which re-seals every credential of
    /// the file (all namespaces) and the check value in one transaction,
    /// wrapped by the new master key `new`.
    ///
    /// [`SqliteStore::rewrap_key`] changes the key-encryption key alone (no
    /// row touched), [`SqliteStore::rotate_data_key`] the data key alone.
    ///
    /// # Behavior
    /// - Afterwards every handle of this opened store uses the new keys, and
    ///   opening the file with the old master key fails with `wrong master key`.
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
        self.rotate(Some(Arc::new(new)), None).await
    }

    /// Rotates the data key: a new one re-seals every credential and the
    /// check value in one transaction, wrapped by the key-encryption key in
    /// force (one provider call). Rotate it when a key-encryption key, or a
    /// copy of the file with its key record, may have leaked: rows sealed
    /// before no longer open with the old data key.
    ///
    /// # Behavior
    /// As [`SqliteStore::rotate_key`], the key-encryption key unchanged.
    ///
    /// # Errors
    /// As [`SqliteStore::rotate_key`], and the provider's errors
    /// ([`KeyProvider::wrap`]), which change nothing.
    pub async fn rotate_data_key(&self) -> Result<RotationReport> {
        self.rotate(None, None).await
    }

    /// Rotates the key-encryption key: the data key is rewrapped by
    /// `provider` (a new local key, the OS keychain, AWS KMS, Vault Transit)
    /// and the key record replaced, in one small transaction; no credential
    /// is touched, so it takes the same time at any size. One provider call.
    ///
    /// # Behavior
    /// - Afterwards the store opens with `provider` only; other processes
    ///   that have it open keep working (the data key is the same).
    /// - A database of 0.2, whose rows are sealed directly under its master
    ///   key, is moved to a data key wrapped by `provider` instead (every row
    ///   re-sealed: a data key rotation, as the report says).
    ///
    /// # Errors
    /// The provider's errors ([`KeyProvider::wrap`]), which change nothing;
    /// [`Error::Config`] when another process rotated the data key first;
    /// the errors of a write otherwise.
    pub async fn rewrap_key(&self, provider: impl KeyProvider + 'static) -> Result<RotationReport> {
        self.rewrap(Arc::new(provider)).await
    }

    /// Rotates the key-encryption key of a store opened with a key file
    /// ([`SqliteConfig::master_key_file`]) to a fresh random key in that
    /// file, crash-safe as [`SqliteStore::rotate_key_file`] is: the data key
    /// is rewrapped, no credential touched.
    ///
    /// # Errors
    /// As [`SqliteStore::rotate_key_file`].
    pub async fn rewrap_key_file(&self) -> Result<RotationReport> {
        self.rotate_in_key_file(false).await
    }

    async fn rewrap(&self, provider: Arc<dyn KeyProvider>) -> Result<RotationReport> {
        let started = Instant::now();
        let (dek, _, upgrade) = self.inner.shared.envelope();
        let current = self.inner.shared.keys().0;
        let Some(dek) = dek else {
            // A database of 0.2: move it to a data key wrapped by `provider`.
            let uid = upgrade.map(|u| u.record.uid()).unwrap_or_else(credstore_seal::StoreUid::generate);
            return self
                .rotate_to(
                    db::prepare(self.id(), uid, next_version(self, current.version())?, provider).await?,
                    None,
                    started,
                )
                .await;
        };
        let uid =
            current.uid().ok_or_else(|| errors::backend(self.id(), "a data key without its store uid"))?;
        let record = KeyRecord::wrap(self.id(), uid, current.version(), &dek, provider.as_ref()).await?;
        let (reply, rx) = oneshot::channel();
        self.send(Op::Rewrap { record, provider, started, reply })?;
        self.answer(rx).await
    }

    /// Rotates to a fresh random key kept in the key file this store was
    /// opened with ([`SqliteConfig::master_key_file`]), so that no crash at
    /// any point loses the key or a credential.
    ///
    /// # Behavior
    /// Holding an advisory lock on the key file's directory: the key in
    /// `<file>` is checked against the database; it is kept as `<file>.old`
    /// (a hard link) and a fresh key is written to `<file>.new` (synced,
    /// directory synced); the database is re-sealed as by
    /// [`SqliteStore::rotate_key`], its commit synced to disk whatever the
    /// store's [`Synchronous`](crate::Synchronous) setting; `<file>.new` is
    /// renamed to `<file>` and the directory synced; once the key now in
    /// `<file>` has opened the database, `<file>.old` is removed. A crash
    /// anywhere leaves a key file that opens the store:
    /// [`SqliteConfig::master_key_file`] recovers from each step.
    ///
    /// Other processes that have the database open keep the old key and
    /// fail with a `rotated` [`Error::Config`] until they open it again.
    ///
    /// # Errors
    /// [`Error::Config`] when the store was not opened with a key file, or
    /// the key in the file does not open the database (nothing is changed);
    /// those of [`SqliteStore::rotate_key`] (the staged files are removed);
    /// an I/O error on the key files, naming the file and how to recover.
    pub async fn rotate_key_file(&self) -> Result<RotationReport> {
        self.rotate_in_key_file(true).await
    }

    /// The key file dance of [`SqliteStore::rotate_key_file`], around a
    /// rotation of both keys (`data_key`) or of the key-encryption key only.
    async fn rotate_in_key_file(&self, data_key: bool) -> Result<RotationReport> {
        let Some(file) = self.inner.key_file.clone() else {
            return Err(Error::config(
                self.id(),
                "this store was not opened with a key file (SqliteConfig::master_key_file); rotate it with \
                 rotate_key and a new key",
            ));
        };
        let (id, db_path) = (self.id().clone(), self.path().to_owned());
        let task_failed =
            |e: tokio::task::JoinError| errors::backend(self.id(), format!("a key file task failed: {e}"));
        let staged = {
            let (id, db_path, file) = (id.clone(), db_path.clone(), file.clone());
            tokio::task::spawn_blocking(move || keyfile::stage(&id, &db_path, &file))
                .await
                .map_err(task_failed)??
        };
        let new = Arc::new(staged.key.clone());
        let result = if data_key { self.rotate(Some(new), None).await } else { self.rewrap(new).await };
        tokio::task::spawn_blocking(move || keyfile::finish(&id, &db_path, &file, staged, result))
            .await
            .map_err(task_failed)?
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
        self.rotate(Some(Arc::new(new)), Some(Box::new(progress))).await
    }

    /// A data key rotation, its new key wrapped by `kek` (the one in force
    /// when `None`).
    async fn rotate(
        &self,
        kek: Option<Arc<dyn KeyProvider>>,
        progress: Option<crate::rotation::Progress>,
    ) -> Result<RotationReport> {
        let started = Instant::now();
        let (_, provider, upgrade) = self.inner.shared.envelope();
        let current = self.inner.shared.keys().0;
        let uid = match (current.uid(), upgrade) {
            (Some(uid), _) => uid,
            (None, Some(upgrade)) => upgrade.record.uid(),
            (None, None) => credstore_seal::StoreUid::generate(),
        };
        let version = next_version(self, current.version())?;
        let prepared = db::prepare(self.id(), uid, version, kek.unwrap_or(provider)).await?;
        self.rotate_to(prepared, progress, started).await
    }

    async fn rotate_to(
        &self,
        prepared: Prepared,
        progress: Option<crate::rotation::Progress>,
        started: Instant,
    ) -> Result<RotationReport> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Rotate { prepared: Arc::new(prepared), progress, started, reply })?;
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

    /// Runs a read on the calling task if it can answer without waiting
    /// (see the crate docs, "Reads"), else on the blocking pool.
    ///
    /// `inline` reads with the busy handler off; it hands over
    /// ([`ReadError::Handover`]) at a lock or a large row. `blocking` makes
    /// the read that runs on the blocking pool then; it is only called (and
    /// clones what it needs) on that path.
    async fn read<T, B>(
        &self,
        inline: impl FnOnce(&Shared, &Connection) -> std::result::Result<T, ReadError>,
        blocking: impl FnOnce() -> B,
    ) -> Result<T>
    where
        T: Send + 'static,
        B: FnOnce(&Shared, &Connection) -> std::result::Result<T, ReadError> + Send + 'static,
    {
        self.read_rows(1, inline, blocking).await
    }

    /// [`read`](Self::read) of `rows` rows at once (a batch): an inline
    /// read counts as slow when it kept the thread longer than
    /// [`SLOW_INLINE_READ`] per row.
    async fn read_rows<T, B>(
        &self,
        rows: u32,
        inline: impl FnOnce(&Shared, &Connection) -> std::result::Result<T, ReadError>,
        blocking: impl FnOnce() -> B,
    ) -> Result<T>
    where
        T: Send + 'static,
        B: FnOnce(&Shared, &Connection) -> std::result::Result<T, ReadError> + Send + 'static,
    {
        let started = Instant::now();
        if let Some(out) = self.read_inline(started, inline) {
            let elapsed = started.elapsed();
            let per_row = elapsed / rows.max(1);
            if self.inner.shared.note_inline(started + elapsed, per_row, SLOW_INLINE_READ, INLINE_PAUSE) {
                tracing::debug!(
                    store = %self.id(),
                    elapsed = ?elapsed,
                    "two reads on the calling task in a row were slow; reads go to the blocking pool for \
                     {INLINE_PAUSE:?}"
                );
            }
            reader::charge(elapsed).await;
            return out;
        }
        self.read_blocking(blocking()).await
    }

    /// [`read`](Self::read) of one key of this handle's namespace by
    /// `reader`, a function of [`crate::reader`] that takes the key and the
    /// [`Mode`] it runs in.
    async fn read_key<T: Send + 'static>(
        &self,
        key: &CredentialKey,
        reader: fn(
            &Shared,
            &Connection,
            &Namespace,
            &CredentialKey,
            Mode,
        ) -> std::result::Result<T, ReadError>,
    ) -> Result<T> {
        let ns = self.ns();
        self.read(
            |shared, conn| reader(shared, conn, ns, key, Mode::Inline),
            || {
                let (ns, key) = (ns.clone(), key.clone());
                move |shared: &Shared, conn: &Connection| reader(shared, conn, &ns, &key, Mode::Blocking)
            },
        )
        .await
    }

    /// The inline half of [`SqliteStore::read`]: `None` when the read must
    /// go to the blocking pool.
    fn read_inline<T>(
        &self,
        now: Instant,
        f: impl FnOnce(&Shared, &Connection) -> std::result::Result<T, ReadError>,
    ) -> Option<Result<T>> {
        let shared = &self.inner.shared;
        if shared.inline_paused(now) {
            return None;
        }
        if let Err(e) = shared.check_file_at(now) {
            return Some(Err(e));
        }
        // No idle connection: the blocking pool opens one (opening takes a
        // file lock and reads the schema) and leaves it here afterwards.
        let conn = self.inner.readers.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
        let out = f(shared, &conn);
        self.inner.idle(conn);
        match out {
            Ok(v) => Some(Ok(v)),
            Err(ReadError::Failed(e)) => Some(Err(e)),
            Err(ReadError::Handover) => None,
        }
    }

    /// Runs `f` with a read connection on the blocking pool, waiting up to
    /// the busy timeout for locks, after checking that the file is still the
    /// one opened.
    async fn read_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Shared, &Connection) -> std::result::Result<T, ReadError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let shared = &inner.shared;
            shared.check_file()?;
            let pooled = inner.readers.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let conn = match pooled {
                Some(c) => c,
                None => db::connect_reader(&shared.path).map_err(|e| shared.sql(&e))?,
            };
            let out = conn.busy_timeout(shared.busy_timeout).map_err(|e| shared.sql(&e)).and_then(|()| {
                f(shared, &conn).map_err(|e| match e {
                    ReadError::Failed(e) => e,
                    ReadError::Handover => {
                        errors::backend(&shared.id, "a read on the blocking pool handed over")
                    }
                })
            });
            // Idle connections are kept with the busy handler off, ready
            // for reads on the calling task.
            if conn.busy_timeout(Duration::ZERO).is_ok() {
                let mut idle = inner.readers.lock().unwrap_or_else(|e| e.into_inner());
                if idle.len() < MAX_IDLE_READERS && conn.is_autocommit() {
                    idle.push(conn);
                }
            }
            out
        })
        .await
        .map_err(|e| errors::backend(self.id(), format!("a read task failed: {e}")))?
    }
}

impl Inner {
    /// Puts a connection used on the calling task back. It was taken from
    /// the idle ones, so there is room; one left inside a transaction (which
    /// no read does) is closed on the writer thread instead, off the
    /// runtime.
    fn idle(&self, conn: Connection) {
        if conn.is_autocommit() {
            self.readers.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        } else if let Err(mpsc::SendError(Op::Close(conns))) = self.writer.send(Op::Close(vec![conn])) {
            drop(conns);
        }
    }
}

impl SqliteStore {
    /// This handle's namespace.
    fn ns(&self) -> &Namespace {
        self.info.namespace()
    }
}

#[async_trait]
impl CredentialStore for SqliteStore {
    /// Everything ([`Capabilities::full`]), durable, on kind [`KIND`](crate::KIND).
    fn info(&self) -> &StoreInfo {
        &self.info
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
        Ok(Arc::new(Self { inner: self.inner.clone(), info: self.info.join(namespace)? }))
    }

    /// Reads on the calling task when it can answer without waiting, else
    /// on the blocking pool (see the crate docs, "Reads").
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.read_key(key, reader::credential).await
    }

    /// One statement for the whole batch (the keys as a JSON array, matched
    /// with `json_each`), each row opened as `get` opens it; on the calling
    /// task for at most 32 keys when it can answer without waiting, else on
    /// the blocking pool (see the crate docs, "Reads").
    /// The answers are one snapshot of the namespace.
    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        credstore_core::check_batch(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let ns = self.ns();
        let blocking = || {
            let (ns, keys) = (ns.clone(), keys.to_vec());
            move |shared: &Shared, conn: &Connection| {
                reader::credentials(shared, conn, &ns, &keys, Mode::Blocking)
            }
        };
        if keys.len() > INLINE_MAX_BATCH {
            return self.read_blocking(blocking()).await;
        }
        let rows = keys.len() as u32;
        self.read_rows(
            rows,
            |shared, conn| reader::credentials(shared, conn, ns, keys, Mode::Inline),
            blocking,
        )
        .await
    }

    /// Queues the write for the writer thread, which checks the condition
    /// and applies the write in one step of its transaction; answered once
    /// the transaction is durable. A failed condition fails this write only,
    /// not the others of its group commit.
    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let (key, value, metadata) = (request.key(), request.value(), request.metadata());
        let payload = encode_payload(value, metadata);
        let (reply, rx) = oneshot::channel();
        self.send(Op::Set {
            ns: self.ns().clone(),
            key: key.clone(),
            payload,
            kind: ValueKind::of(value),
            mode: request.mode().clone(),
            expires_ns: request.expires_at().map(db::to_nanos),
            reply,
        })?;
        self.answer(rx).await
    }

    /// Reads the row's clear columns only, without opening its seal; where
    /// `get` does.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.read_key(key, reader::exists).await
    }

    /// Reads the row's clear `version` column only, without opening its
    /// seal (which binds it: a `get` of an edited version fails); where
    /// `get` does.
    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.read_key(key, reader::version).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Delete { ns: self.ns().clone(), key: key.clone(), reply })?;
        self.answer(rx).await
    }

    /// Reads the kept version from the history (or, for a key not written
    /// since the history was added, its current row), opened as a history
    /// row bound to that version; where `get` does.
    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        if !self.info.capabilities().versions {
            return Err(Error::unsupported(self.id(), "version history"));
        }
        let Some(version) = row_version(version) else { return Ok(None) };
        let ns = self.ns();
        self.read(
            |shared, conn| reader::kept_version(shared, conn, ns, key, version, Mode::Inline),
            || {
                let (ns, key) = (ns.clone(), key.clone());
                move |shared: &Shared, conn: &Connection| {
                    reader::kept_version(shared, conn, &ns, &key, version, Mode::Blocking)
                }
            },
        )
        .await
    }

    /// One read transaction of the key's history rows, newest first, each
    /// opened for its metadata; where `get` does.
    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        if !self.info.capabilities().versions {
            return Err(Error::unsupported(self.id(), "version history"));
        }
        let after = match options.start_after() {
            Some(v) => match row_version(v) {
                Some(n) => Some(n),
                // A version this store never hands out: not kept.
                None => return Ok(VersionPage::default()),
            },
            None => None,
        };
        let limit = options.limit();
        let ns = self.ns();
        self.read(
            |shared, conn| reader::versions_page(shared, conn, ns, key, after, limit, Mode::Inline),
            || {
                let (ns, key) = (ns.clone(), key.clone());
                move |shared: &Shared, conn: &Connection| {
                    reader::versions_page(shared, conn, &ns, &key, after, limit, Mode::Blocking)
                }
            },
        )
        .await
    }

    /// Deletes the rows in the writer's transaction, `secure_delete`
    /// zeroing their cells, then checkpoints and truncates the write-ahead
    /// log, so no copy of the purged ciphertext stays in the database file
    /// or its log (see the crate docs, "History").
    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        let version = match target {
            PurgeTarget::Key => None,
            PurgeTarget::Version(v) => {
                if !self.info.capabilities().versions {
                    return Err(Error::unsupported(self.id(), "version history"));
                }
                match row_version(v) {
                    Some(n) => Some(n),
                    None => return Ok(false),
                }
            }
            _ => return Err(Error::unsupported(self.id(), "this purge target")),
        };
        let (reply, rx) = oneshot::channel();
        self.send(Op::Purge { ns: self.ns().clone(), key: key.clone(), version, reply })?;
        self.answer(rx).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let ns = self.ns().clone();
        let prefix = options.prefix().to_owned();
        // Every key character sorts below 0x7f, so [prefix, prefix + 0x7f)
        // is exactly the keys starting with prefix.
        let upper = format!("{prefix}\u{7f}");
        let after = options.cursor().map(|c| c.start_after().as_str().to_owned()).unwrap_or_default();
        let limit = options.limit();
        // On the blocking pool: a page may hold many keys.
        self.read_blocking(move |shared, conn| {
            let now = shared.now_ns();
            let keys: Vec<String> = conn
                .prepare_cached(
                    "SELECT key FROM credentials WHERE ns = ?1 AND key >= ?2 AND key < ?3 AND key > ?4
                         AND (expires_at IS NULL OR expires_at > ?6)
                     ORDER BY key LIMIT ?5",
                )
                .and_then(|mut s| {
                    s.query_map(params![ns.as_str(), prefix, upper, after, (limit + 1) as i64, now], |r| {
                        r.get(0)
                    })?
                    .collect()
                })
                .map_err(|e| ReadError::Failed(shared.sql(&e)))?;
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
        // On the blocking pool, waiting for locks: the probe says whether
        // the database answers at all.
        let probe = self.read_blocking(|shared, conn| {
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
                        return Err(
                            errors::rotated_elsewhere(&shared.id, &shared.path, current.version(), v).into()
                        )
                    }
                    None => return Err(errors::wrong_key(&shared.id, &shared.path).into()),
                };
                return if check.as_deref().is_some_and(|c| cipher.verify_check(c)) {
                    Ok(())
                } else {
                    Err(errors::wrong_key(&shared.id, &shared.path).into())
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

/// The row version a [`Version`] names: `None` for one this store never
/// hands out (not a positive decimal counter).
fn row_version(v: &Version) -> Option<i64> {
    v.as_str().parse::<i64>().ok().filter(|&n| n >= 1 && writer::version_of(n) == *v)
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("id", self.id())
            .field("path", &self.path())
            .field("namespace", self.ns())
            .finish()
    }
}

/// Opening a store from its settings lives here, beside the store: the
/// settings (in `config`) know nothing of the store they open.
#[cfg(feature = "serde")]
impl crate::SqliteSettings {
    /// Opens (creating when missing) the store `id` these settings
    /// describe; see [`crate::SqliteStore::open`]. A key file is given with
    /// [`SqliteConfig::master_key_file`], so an interrupted rotation of it is
    /// recovered and [`crate::SqliteStore::rotate_key_file`] works.
    ///
    /// # Errors
    /// Those of [`SqliteSettings::load_master_key`](crate::SqliteSettings::load_master_key) and of
    /// [`crate::SqliteStore::open`] (a wrong master key, an unreadable or
    /// foreign file).
    pub async fn open(
        self,
        id: credstore_core::StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> credstore_core::Result<crate::SqliteStore> {
        let mut config = SqliteConfig::new(ctx.path(&self.path));
        config = match &self.master_key {
            crate::KeySource::File(path) => config.master_key_file(
                KeyFile::new(ctx.path(path)).allow_loose_permissions(self.allow_loose_permissions),
            ),
            _ => config.master_key(self.load_master_key(&id, ctx)?),
        };
        let mut config =
            config.synchronous(self.synchronous).busy_timeout(self.busy_timeout).retention(self.retention);
        if let Some(bytes) = self.max_size_bytes {
            config = config.max_size_bytes(bytes);
        }
        crate::SqliteStore::open(id, config).await
    }
}
