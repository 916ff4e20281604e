//! What the writer thread, the readers and a rotation of one opened
//! database share: the store's id and path, the file opened, the master
//! keys in use, and the counters and clocks of the reads.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use credstore_core::{Clock, Error, Result, Retention, StoreId, SystemClock};

use credstore_seal::{DataKey, KeyProvider, RowCipher};

use crate::db::FileId;
use crate::errors;
use crate::keys::{Keys, Prepared};

/// How long a successful check that the path still names the file opened
/// serves the reads made on the calling task; see [`Shared::check_file_at`].
pub(crate) const FILE_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// What the writer thread and the readers of one opened database share.
pub(crate) struct Shared {
    pub id: StoreId,
    pub path: PathBuf,
    pub file: FileId,
    pub busy_timeout: Duration,
    /// The history kept of each key ([`crate::SqliteConfig::retention`]).
    pub retention: Retention,
    /// The clock expiry and age-based retention are decided by.
    pub clock: Arc<dyn Clock>,
    keys: RwLock<Keys>,
    pub writer_alive: AtomicBool,
    pub transactions: AtomicU64,
    pub writes: AtomicU64,
    /// The origin of the nanosecond clock readings below.
    epoch: Instant,
    /// When [`Shared::check_file`] last found the file to be the one opened
    /// (nanoseconds since `epoch`, at least 1), or 0: check at the next read.
    file_checked: AtomicU64,
    /// Reads on the calling task are paused until this time (nanoseconds
    /// since `epoch`) after two of them in a row were slow.
    inline_paused_until: AtomicU64,
    /// Slow reads on the calling task since the last fast one.
    slow_reads: AtomicU32,
}

impl Shared {
    pub(crate) fn new(id: StoreId, path: PathBuf, file: FileId, busy_timeout: Duration, keys: Keys) -> Self {
        Self {
            id,
            path,
            file,
            busy_timeout,
            retention: crate::DEFAULT_RETENTION,
            clock: Arc::new(SystemClock),
            keys: RwLock::new(keys),
            writer_alive: AtomicBool::new(true),
            transactions: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            epoch: Instant::now(),
            file_checked: AtomicU64::new(0),
            inline_paused_until: AtomicU64::new(0),
            slow_reads: AtomicU32::new(0),
        }
    }

    /// The same, keeping `retention` and deciding time by `clock`.
    pub(crate) fn with_history(mut self, retention: Retention, clock: Arc<dyn Clock>) -> Self {
        self.retention = retention;
        self.clock = clock;
        self
    }

    /// Whether the store keeps a history: a retention of more than one
    /// version.
    pub(crate) fn keeps_history(&self) -> bool {
        self.retention.max_versions != Some(1)
    }

    /// The store clock's time, in nanoseconds since the Unix epoch.
    pub(crate) fn now_ns(&self) -> i64 {
        crate::db::to_nanos(self.clock.now())
    }

    /// `at` in nanoseconds since `epoch`, at least 1.
    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX).max(1)
    }

    /// Whether reads on the calling task are paused at `now`.
    pub(crate) fn inline_paused(&self, now: Instant) -> bool {
        self.nanos(now) < self.inline_paused_until.load(Ordering::Relaxed)
    }

    /// Records how long a read on the calling task kept its thread; the
    /// second slow one in a row (over `slow`) pauses such reads for `pause`
    /// from `now`. Returns whether it did.
    pub(crate) fn note_inline(
        &self,
        now: Instant,
        elapsed: Duration,
        slow: Duration,
        pause: Duration,
    ) -> bool {
        if elapsed <= slow {
            // Read-only in the usual case: no cache line bounces between cores.
            if self.slow_reads.load(Ordering::Relaxed) != 0 {
                self.slow_reads.store(0, Ordering::Relaxed);
            }
            return false;
        }
        if self.slow_reads.fetch_add(1, Ordering::Relaxed) == 0 {
            return false;
        }
        self.slow_reads.store(0, Ordering::Relaxed);
        let until = self.nanos(now).saturating_add(u64::try_from(pause.as_nanos()).unwrap_or(u64::MAX));
        self.inline_paused_until.fetch_max(until, Ordering::Relaxed);
        true
    }

    /// [`Shared::check_file`], unless it found the file to be the one opened
    /// less than [`FILE_CHECK_INTERVAL`] before `now` (a `stat` costs a
    /// fifth of a read). A failed check is made again at every call.
    pub(crate) fn check_file_at(&self, now: Instant) -> Result<()> {
        let checked = self.file_checked.load(Ordering::Acquire);
        let interval = u64::try_from(FILE_CHECK_INTERVAL.as_nanos()).unwrap_or(u64::MAX);
        if checked != 0 && self.nanos(now).saturating_sub(checked) < interval {
            return Ok(());
        }
        self.check_file()
    }

    /// The current key, and the pending one during a rotation.
    pub(crate) fn keys(&self) -> (Arc<RowCipher>, Option<Arc<RowCipher>>) {
        let k = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (k.current.clone(), k.pending.clone())
    }

    /// Runs `f` on the current key and the pending one, holding the keys
    /// for reading: a rotation of this process cannot start or land
    /// meanwhile. Only for work that never waits (reads on the calling
    /// task): the writer thread waits for it.
    pub(crate) fn with_keys<R>(&self, f: impl FnOnce(&RowCipher, Option<&RowCipher>) -> R) -> R {
        let k = self.keys.read().unwrap_or_else(|e| e.into_inner());
        f(&k.current, k.pending.as_deref())
    }

    /// The versions of [`Shared::keys`]: they change whenever a rotation of
    /// this process starts, fails or lands.
    pub(crate) fn key_versions(&self) -> (u32, Option<u32>) {
        let (current, pending) = self.keys();
        (current.version(), pending.map(|p| p.version()))
    }

    pub(crate) fn set_pending(&self, pending: Option<Arc<RowCipher>>) {
        self.keys.write().unwrap_or_else(|e| e.into_inner()).pending = pending;
    }

    /// `next` is the data key in force, its rows committed.
    pub(crate) fn promote(&self, next: &Prepared) {
        let mut k = self.keys.write().unwrap_or_else(|e| e.into_inner());
        k.current = next.cipher.clone();
        k.pending = None;
        k.dek = Some(next.dek.clone());
        k.provider = next.provider.clone();
        k.upgrade = None;
    }

    /// The key-encryption key is now `provider` (a rewrap committed).
    pub(crate) fn set_provider(&self, provider: Arc<dyn KeyProvider>) {
        self.keys.write().unwrap_or_else(|e| e.into_inner()).provider = provider;
    }

    /// The data key, the provider wrapping it, and the data key a database
    /// of 0.2 moves to at its first write.
    pub(crate) fn envelope(&self) -> (Option<DataKey>, Arc<dyn KeyProvider>, Option<Arc<Prepared>>) {
        let k = self.keys.read().unwrap_or_else(|e| e.into_inner());
        (k.dek.clone(), k.provider.clone(), k.upgrade.clone())
    }

    /// Fails with the retriable [`Error::Unavailable`] when the file at the
    /// path is no longer the one opened: deleted, moved or replaced. Writing
    /// on would land in an unlinked file and be lost.
    pub(crate) fn check_file(&self) -> Result<()> {
        let checked = self.check_file_now();
        let stamp = if checked.is_ok() { self.nanos(Instant::now()) } else { 0 };
        self.file_checked.store(stamp, Ordering::Release);
        checked
    }

    fn check_file_now(&self) -> Result<()> {
        match FileId::of(&self.path) {
            Ok(now) if now == self.file => Ok(()),
            Ok(_) => Err(Error::unavailable(
                &self.id,
                format!(
                    "database file {} was replaced by another file while the store was open; open the store again",
                    self.path.display()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::unavailable(
                &self.id,
                format!(
                    "database file {} is gone: it was deleted or moved (or its directory was) while the store \
                     was open",
                    self.path.display()
                ),
            )),
            Err(e) => Err(errors::from_io(&self.id, &self.path, "inspect database file", &e)),
        }
    }

    pub(crate) fn sql(&self, e: &rusqlite::Error) -> Error {
        errors::from_sqlite(&self.id, &self.path, e)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
