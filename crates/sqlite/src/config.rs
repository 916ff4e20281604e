//! [`SqliteConfig`]: the settings of a [`crate::SqliteStore`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use credstore_core::Namespace;

use crate::MasterKey;

/// How hard SQLite works to make a commit durable (`PRAGMA synchronous`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Synchronous {
    /// The default. Every commit waits for the write-ahead log to reach
    /// stable storage: a `set` that returned `Ok` survives a crash of the
    /// process, of the operating system and a power loss.
    #[default]
    Full,
    /// Commits do not wait for the disk. A crash of the process loses
    /// nothing, and the database never corrupts, but a power loss or an
    /// operating system crash may roll back the last acknowledged writes.
    /// Faster for many small writes.
    Normal,
}

impl Synchronous {
    pub(crate) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// The default time a write waits for another connection's lock before it
/// fails with a retriable [`credstore_core::Error::Unavailable`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Settings of a [`crate::SqliteStore`]: the database file, the master key and
/// the durability and locking options. `Debug` never shows key material.
///
/// ```
/// use std::time::Duration;
/// use credstore_core::Namespace;
/// use credstore_sqlite::{MasterKey, SqliteConfig, Synchronous};
///
/// let config = SqliteConfig::new("/var/lib/myapp/credentials.db")
///     .namespace(Namespace::new("tenant-1")?)
///     .master_key(MasterKey::from_bytes([7; 32]))
///     .synchronous(Synchronous::Full)
///     .busy_timeout(Duration::from_secs(2));
/// assert!(!format!("{config:?}").contains("[7"));
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct SqliteConfig {
    pub(crate) path: PathBuf,
    pub(crate) namespace: Namespace,
    pub(crate) master_key: Option<MasterKey>,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_size_bytes: Option<u64>,
}

impl SqliteConfig {
    /// Settings for the database at `path`, with the defaults: the root
    /// namespace, [`Synchronous::Full`], a busy timeout of
    /// [`DEFAULT_BUSY_TIMEOUT`], no size limit, and no master key yet (one is
    /// required: see [`SqliteConfig::master_key`]).
    ///
    /// # Behavior
    /// The file and any missing parent directories are created on the first
    /// [`crate::SqliteStore::open`], readable by the owner only (mode `0600`
    /// for the file and `0700` for directories it creates).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            namespace: Namespace::root(),
            master_key: None,
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_size_bytes: None,
        }
    }

    /// Keys of the opened store live in namespace `ns`, such as
    /// `tenant-1/project-a`; the default is the root namespace. The same as
    /// opening at the root and calling
    /// [`with_namespace`](credstore_core::CredentialStore::with_namespace).
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = ns;
        self
    }

    /// The key that seals every row. Required.
    ///
    /// # Behavior
    /// The first opening of a new database records a sealed check value made
    /// with this key; later openings with any other key fail with a
    /// `wrong master key` [`credstore_core::Error::Config`].
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.master_key = Some(key);
        self
    }

    /// How durable a commit is; see [`Synchronous`]. Default: [`Synchronous::Full`].
    pub fn synchronous(mut self, mode: Synchronous) -> Self {
        self.synchronous = mode;
        self
    }

    /// How long a write (or an opening) waits for a lock held by another
    /// connection or process before failing with the retriable
    /// [`credstore_core::Error::Unavailable`]. Default: [`DEFAULT_BUSY_TIMEOUT`].
    ///
    /// # Behavior
    /// Reads under write-ahead logging do not wait for writers. A read that
    /// meets a lock anyway (see the crate docs, "Reads") never waits on the
    /// calling task: it is made again on Tokio's blocking pool, which waits
    /// up to this timeout.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// Caps the database file at about `bytes` (`PRAGMA max_page_count`).
    ///
    /// # Behavior
    /// A write that would grow the database past the cap fails with the
    /// retriable [`credstore_core::Error::Unavailable`] saying the database
    /// is full, and changes nothing. A cap below the current size keeps the
    /// current size. The cap applies to this store's writes only; it is not
    /// recorded in the file.
    pub fn max_size_bytes(mut self, bytes: u64) -> Self {
        self.max_size_bytes = Some(bytes);
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Debug for SqliteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteConfig")
            .field("path", &self.path)
            .field("namespace", &self.namespace)
            .field("master_key", &self.master_key)
            .field("synchronous", &self.synchronous)
            .field("busy_timeout", &self.busy_timeout)
            .field("max_size_bytes", &self.max_size_bytes)
            .finish()
    }
}
