//! [`SqliteConfig`]: the settings of a [`crate::SqliteStore`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{Clock, Namespace, Retention, SystemClock};

use crate::{KeyFile, KeyProvider, MasterKey};

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

/// The history a store keeps unless told otherwise: the 10 newest versions
/// of each key (the current one included), with no age limit.
pub const DEFAULT_RETENTION: Retention = Retention::versions(10);

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
#[derive(Clone, Debug)]
pub struct SqliteConfig {
    pub(crate) path: PathBuf,
    pub(crate) namespace: Namespace,
    pub(crate) master_key: Option<MasterKey>,
    pub(crate) key_file: Option<KeyFile>,
    pub(crate) provider: Option<Arc<dyn KeyProvider>>,
    pub(crate) verify_rows: bool,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_size_bytes: Option<u64>,
    pub(crate) retention: Retention,
    pub(crate) clock: Arc<dyn Clock>,
}

impl SqliteConfig {
    /// Settings for the database at `path`, with the defaults: the root
    /// namespace, [`Synchronous::Full`], a busy timeout of
    /// [`DEFAULT_BUSY_TIMEOUT`], no size limit, [`DEFAULT_RETENTION`], the
    /// system clock, and no master key yet (one is required: see
    /// [`SqliteConfig::master_key`]).
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
            key_file: None,
            provider: None,
            verify_rows: true,
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_size_bytes: None,
            retention: DEFAULT_RETENTION,
            clock: Arc::new(SystemClock),
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

    /// The key-encryption key is `key`, a local key or a passphrase. One of
    /// this, [`SqliteConfig::master_key_file`] and
    /// [`SqliteConfig::key_provider`] is required; each replaces the others.
    ///
    /// # Behavior
    /// A new database draws a random data key, which seals every row, and
    /// records it wrapped by this key (see the crate docs, "Encryption");
    /// later openings with any other key fail with a `wrong master key`
    /// [`credstore_core::Error::Config`]. A database of 0.2, whose rows are
    /// sealed directly under its master key, opens with that key unchanged
    /// and moves to a data key at its first write or rotation.
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.master_key = Some(key);
        self.key_file = None;
        self.provider = None;
        self
    }

    /// The key-encryption key is kept by `provider`: the OS keychain, AWS
    /// KMS, Vault Transit (in the crates of those services), or a custom
    /// [`KeyProvider`]. It replaces [`SqliteConfig::master_key`] and
    /// [`SqliteConfig::master_key_file`].
    ///
    /// # Behavior
    /// The provider is called once when the store opens (to wrap a new
    /// database's data key, or unwrap an existing one) and at rotations;
    /// never for a read or a write. A provider that cannot be reached makes
    /// the opening fail with its retriable
    /// [`credstore_core::Error::Unavailable`]. A database of 0.2 is sealed
    /// under its master key, which a provider cannot give: open it once with
    /// that key, then move it with [`crate::SqliteStore::rewrap_key`].
    pub fn key_provider(mut self, provider: impl KeyProvider + 'static) -> Self {
        self.provider = Some(Arc::new(provider));
        self.master_key = None;
        self.key_file = None;
        self
    }

    /// The key that seals every row is in the key file `file` (created with
    /// a fresh random key when missing): an alternative to
    /// [`SqliteConfig::master_key`], which it replaces, and what
    /// [`crate::SqliteStore::rotate_key_file`] needs.
    ///
    /// # Behavior
    /// The opening reads the file as [`KeyFile::read_or_create`] does. A
    /// rotation of the key file interrupted by a crash is recovered, so the
    /// store opens whether the crash came before or after the database's
    /// commit (see [`crate::SqliteStore::rotate_key_file`]):
    /// - the key in `<file>` opens the database: leftover `<file>.new` (a key
    ///   never used) and `<file>.old` (the key before a rotation that
    ///   completed) are removed;
    /// - it does not, but the key in `<file>.new` does (the crash came after
    ///   the commit): the rotation is completed, `<file>.new` renamed to
    ///   `<file>` and `<file>.old` removed, and a warning says so;
    /// - neither does, but the key in `<file>.old` does (the database was
    ///   restored from a backup, or a disk lost a synced write): that key is
    ///   used, no file is changed, and a warning says so.
    ///
    /// Files are only changed while no rotation of a key file in the same
    /// directory runs (an advisory lock on the directory), and the directory
    /// is synced after each change.
    pub fn master_key_file(mut self, file: KeyFile) -> Self {
        self.key_file = Some(file);
        self.master_key = None;
        self.provider = None;
        self
    }

    /// Whether the opening checks every row against the row set, the
    /// authenticated digest of the rows that every write keeps (see the
    /// crate docs, "Encryption"): a row put back to an older copy of itself,
    /// removed or added outside credstore fails the opening. Default: `true`.
    ///
    /// # Behavior
    /// The check reads the clear columns of every row once (no value is
    /// opened): about 10 ms per 10,000 credentials in a release build.
    /// `false` skips it, with a warning: to open a file whose rows you
    /// accept as they are, then rotate its data key
    /// ([`crate::SqliteStore::rotate_data_key`]), which records them anew.
    /// [`crate::SqliteStore::verify`] runs the same check on an open store.
    pub fn verify_rows(mut self, verify: bool) -> Self {
        self.verify_rows = verify;
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

    /// How much history the store keeps of each key; see the crate docs,
    /// "History". Default: [`DEFAULT_RETENTION`], the 10 newest versions.
    ///
    /// # Behavior
    /// - Every write also seals a copy of the new version into the key's
    ///   history, and drops the versions past the retention: beyond
    ///   `max_versions` (the current one included), or that stopped being
    ///   current more than `max_age` ago by the store's clock. Reads filter
    ///   by the same rule, so a version past its age is gone at once even
    ///   if its key is not written again.
    /// - [`Retention::NONE`] (`max_versions` 1) keeps no history: the store
    ///   declares no `versions` nor `recover_deleted`, writes seal one row,
    ///   and a delete also drops any history kept before.
    /// - The retention is this store's, not the file's: another store
    ///   opened on the same file with another retention prunes by its own
    ///   at its writes.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The clock the store decides expiry and age-based retention by (its
    /// [`StoreInfo::clock`](credstore_core::StoreInfo::clock)); tests give a
    /// [`ManualClock`](credstore_core::ManualClock). Default: the system
    /// clock. Timestamps (`created_at`, `updated_at`) stay the system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where the key-encryption key of a store opened from [`SqliteSettings`]
/// comes from: the sealing crate's, shared with the PostgreSQL store's
/// settings.
#[cfg(feature = "serde")]
pub use credstore_seal::KeySource;

/// The settings of an encrypted SQLite store in a config file (the `serde`
/// feature): one store's table, such as a `credstore-server` `[[stores]]`
/// table without its `id`, `type` and `cache`. Relative paths are relative
/// to the [`ConfigContext`](credstore_core::config::ConfigContext)'s base
/// directory (the config file's).
///
/// ```toml
/// path = "team.db"                 # the database, created (0600) when missing
/// master_key_file = "team.key"     # base64 of 32 bytes, created (0600) when missing;
///                                  # or master_key_env = "TEAM_DB_KEY" (base64),
///                                  # or passphrase_file / passphrase_env (Argon2id),
///                                  # or key = { provider = .. } (built by the caller:
///                                  # see KeySource::Provider)
/// synchronous = "full"             # optional: full (default) | normal
/// busy_timeout_ms = 5000           # optional
/// max_size_bytes = 104857600       # optional
/// max_versions = 10                # optional: versions kept per key, the current one
///                                  # included (default 10; 1 keeps no history)
/// max_version_age_secs = 2592000   # optional: drop versions that stopped being current
///                                  # this long ago (default: no age limit)
/// allow_loose_permissions = false  # optional: accept a key or passphrase file
///                                  # that its group or others may read (default: refused)
/// ```
///
/// A key file holds the base64 of the key (see [`crate::KeyFile`] for the
/// raw 32-byte files of 0.2); a passphrase is named as one, with
/// `passphrase_file` or `passphrase_env`, and stretched with Argon2id. A key
/// or passphrase file that grants any permission to its group or others is
/// refused unless `allow_loose_permissions = true`:
///
/// ```toml
/// path = "team.db"
/// passphrase_file = "/run/secrets/team-passphrase"   # mode 0640, group-readable by design
/// allow_loose_permissions = true
/// ```
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
/// use credstore_core::{config::ConfigContext, CredentialStoreExt};
/// use credstore_sqlite::SqliteSettings;
///
/// let dir = tempfile::tempdir().unwrap();
/// let settings: SqliteSettings =
///     serde_json::from_str(r#"{"path": "team.db", "master_key_file": "team.key"}"#).unwrap();
/// let store = settings.open("team-sqlite".parse()?, &ConfigContext::new(dir.path())).await?;
/// assert!(dir.path().join("team.key").exists());
/// assert_eq!(store.id().as_str(), "team-sqlite");
/// # Ok(()) }
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "de::RawSqliteSettings")]
pub struct SqliteSettings {
    pub(crate) path: PathBuf,
    pub(crate) master_key: KeySource,
    pub(crate) synchronous: Synchronous,
    pub(crate) busy_timeout: Duration,
    pub(crate) max_size_bytes: Option<u64>,
    pub(crate) allow_loose_permissions: bool,
    pub(crate) retention: Retention,
}

#[cfg(feature = "serde")]
impl SqliteSettings {
    /// The settings of the database at `path` keyed from `master_key`, with
    /// the defaults of [`SqliteConfig::new`].
    pub fn new(path: impl Into<PathBuf>, master_key: KeySource) -> Self {
        Self {
            path: path.into(),
            master_key,
            synchronous: Synchronous::default(),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            max_size_bytes: None,
            allow_loose_permissions: false,
            retention: DEFAULT_RETENTION,
        }
    }

    /// `max_versions` and `max_version_age_secs`: the history kept; see
    /// [`SqliteConfig::retention`]. Default: [`DEFAULT_RETENTION`].
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The history kept of each key.
    pub fn retention_settings(&self) -> Retention {
        self.retention
    }

    /// `allow_loose_permissions`: accept a key file or passphrase file that
    /// grants permissions to its group or others (with a warning logged).
    /// Default: `false`, such a file is refused, naming the file, its mode and
    /// this setting.
    pub fn allow_loose_permissions(mut self, allow: bool) -> Self {
        self.allow_loose_permissions = allow;
        self
    }

    /// Whether a key or passphrase file open to its group or others is
    /// accepted.
    pub fn allows_loose_permissions(&self) -> bool {
        self.allow_loose_permissions
    }

    /// The database file, as given (relative paths not yet resolved).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the master key comes from.
    pub fn master_key(&self) -> &KeySource {
        &self.master_key
    }

    /// The [`SqliteConfig`] of these settings without its key: the database
    /// file (resolved with `ctx`), the durability, locking and size options
    /// and the retention.
    /// The caller gives the key ([`SqliteConfig::master_key`],
    /// [`SqliteConfig::master_key_file`] or [`SqliteConfig::key_provider`]),
    /// as a store whose key is [`KeySource::Provider`] needs.
    pub fn base_config(&self, ctx: &credstore_core::config::ConfigContext) -> SqliteConfig {
        let config = SqliteConfig::new(ctx.path(&self.path))
            .synchronous(self.synchronous)
            .busy_timeout(self.busy_timeout)
            .retention(self.retention);
        match self.max_size_bytes {
            Some(bytes) => config.max_size_bytes(bytes),
            None => config,
        }
    }

    /// Loads the master key of store `id` from its source, creating the key
    /// file when [`KeySource::File`] names none.
    ///
    /// # Errors
    /// [`credstore_core::Error::Config`] naming `id` and the source: the file
    /// cannot be read or created, holds no key (see [`crate::KeyFile`]) or
    /// grants permissions to its group or others (unless
    /// `allow_loose_permissions`), the variable is unset or not the base64 of
    /// 32 bytes, the passphrase cannot be read or its file is open to others;
    /// the key is [`KeySource::Provider`], which these settings cannot load.
    pub fn load_master_key(
        &self,
        id: &credstore_core::StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> credstore_core::Result<MasterKey> {
        self.master_key.load(
            self.allow_loose_permissions,
            id,
            ctx,
            "SqliteSettings::base_config and SqliteConfig::key_provider",
        )
    }
}

#[cfg(feature = "serde")]
pub(crate) mod de {
    use super::*;

    /// The fields of a config file's table, also filled from a URI by
    /// [`crate::SqliteScheme`] and checked by the same `try_from`.
    #[derive(Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawSqliteSettings {
        pub(crate) path: PathBuf,
        #[serde(default)]
        pub(crate) master_key_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) master_key_env: Option<String>,
        #[serde(default)]
        pub(crate) passphrase_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) passphrase_env: Option<String>,
        #[serde(default)]
        pub(crate) synchronous: Option<String>,
        #[serde(default)]
        pub(crate) busy_timeout_ms: Option<u64>,
        #[serde(default)]
        pub(crate) max_size_bytes: Option<u64>,
        #[serde(default)]
        pub(crate) allow_loose_permissions: bool,
        #[serde(default)]
        pub(crate) max_versions: Option<u32>,
        #[serde(default)]
        pub(crate) max_version_age_secs: Option<u64>,
        /// `key = { provider = .. }`: read by the caller, only noted here.
        #[serde(default)]
        pub(crate) key: Option<serde::de::IgnoredAny>,
    }

    impl TryFrom<RawSqliteSettings> for SqliteSettings {
        type Error = String;

        fn try_from(raw: RawSqliteSettings) -> std::result::Result<Self, String> {
            if raw.path.as_os_str().is_empty() {
                return Err("path is empty".into());
            }
            let master_key = KeySource::from_fields(credstore_seal::KeyFields {
                master_key_file: raw.master_key_file,
                master_key_env: raw.master_key_env,
                passphrase_file: raw.passphrase_file,
                passphrase_env: raw.passphrase_env,
                provider_table: raw.key.is_some(),
            })?;
            let synchronous = match raw.synchronous.as_deref() {
                None | Some("full") => Synchronous::Full,
                Some("normal") => Synchronous::Normal,
                Some(other) => return Err(format!("synchronous is \"full\" or \"normal\", not {other:?}")),
            };
            let busy_timeout = match raw.busy_timeout_ms {
                None => DEFAULT_BUSY_TIMEOUT,
                Some(0) => return Err("busy_timeout_ms must be at least 1".into()),
                Some(ms) => Duration::from_millis(ms),
            };
            if raw.max_size_bytes == Some(0) {
                return Err("max_size_bytes must be at least 1; leave it out for no cap".into());
            }
            let retention = credstore_core::config::retention_from(
                raw.max_versions,
                raw.max_version_age_secs,
                DEFAULT_RETENTION,
            )?;
            Ok(SqliteSettings {
                path: raw.path,
                master_key,
                synchronous,
                busy_timeout,
                max_size_bytes: raw.max_size_bytes,
                allow_loose_permissions: raw.allow_loose_permissions,
                retention,
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use credstore_core::config::SecretSource;

        fn parse(json: &str) -> std::result::Result<SqliteSettings, String> {
            serde_json::from_str(json).map_err(|e| e.to_string())
        }

        #[test]
        fn settings_parse_with_defaults() {
            let s = parse(r#"{"path": "a.db", "master_key_env": "K"}"#).unwrap();
            assert_eq!(s, SqliteSettings::new("a.db", KeySource::Env("K".into())));
            let s = parse(
                r#"{"path": "a.db", "passphrase_file": "p", "synchronous": "normal", "busy_timeout_ms": 20}"#,
            )
            .unwrap();
            assert_eq!(s.master_key(), &KeySource::Passphrase(SecretSource::File("p".into())));
            assert_eq!((s.synchronous, s.busy_timeout), (Synchronous::Normal, Duration::from_millis(20)));
            assert_eq!(s.retention_settings(), DEFAULT_RETENTION);
        }

        #[test]
        fn retention_settings_parse_and_reach_the_config() {
            let s = parse(r#"{"path": "a.db", "master_key_env": "K", "max_versions": 3, "max_version_age_secs": 86400}"#)
                .unwrap();
            let expected = Retention::versions(3).with_max_age(Some(Duration::from_secs(86_400)));
            assert_eq!(s.retention_settings(), expected);
            let dir = tempfile::tempdir().unwrap();
            let config = s.base_config(&credstore_core::config::ConfigContext::new(dir.path()));
            assert_eq!(config.retention, expected);
            let s = parse(r#"{"path": "a.db", "master_key_env": "K", "max_versions": 1}"#).unwrap();
            assert_eq!(s.retention_settings(), Retention::NONE);
            let s = parse(r#"{"path": "a.db", "master_key_env": "K", "max_version_age_secs": 60}"#).unwrap();
            assert_eq!(s.retention_settings(), DEFAULT_RETENTION.with_max_age(Some(Duration::from_secs(60))));
        }

        #[test]
        fn mistakes_are_named() {
            for (json, needle) in [
                (r#"{"path": "a.db"}"#, "exactly one of master_key_file"),
                (r#"{"path": "a.db", "master_key_file": "k", "master_key_env": "K"}"#, "exactly one of"),
                (
                    r#"{"path": "a.db", "passphrase_file": "k", "passphrase_env": "K"}"#,
                    "at most one of passphrase_file",
                ),
                (r#"{"path": "", "master_key_env": "K"}"#, "path is empty"),
                (r#"{"path": "a.db", "master_key_env": "K", "synchronous": "off"}"#, "synchronous"),
                (r#"{"path": "a.db", "master_key_env": "K", "busy_timeout_ms": 0}"#, "busy_timeout_ms"),
                (r#"{"path": "a.db", "master_key_env": "K", "max_size_bytes": 0}"#, "max_size_bytes"),
                (
                    r#"{"path": "a.db", "master_key_env": "K", "max_versions": 0}"#,
                    "max_versions must be at least 1",
                ),
                (
                    r#"{"path": "a.db", "master_key_env": "K", "max_version_age_secs": 0}"#,
                    "max_version_age_secs must be at least 1",
                ),
                (
                    r#"{"path": "a.db", "master_key_env": "K", "master_key": "x"}"#,
                    "unknown field `master_key`",
                ),
                (r#"{"master_key_env": "K"}"#, "missing field `path`"),
                (
                    r#"{"path": "a.db", "master_key_file": "k", "key": {"provider": "x"}}"#,
                    "two keys for one store",
                ),
                (r#"{"path": "a.db", "passphrase_env": "P", "key": {}}"#, "two keys for one store"),
            ] {
                let err = parse(json).unwrap_err();
                assert!(err.contains(needle), "{json}: {err}");
            }
        }

        #[tokio::test]
        async fn a_key_table_is_left_to_the_caller_and_the_rest_still_applies() {
            let s = parse(
                r#"{"path": "a.db", "key": {"provider": "vault-transit", "key": "k"}, "busy_timeout_ms": 20,
                    "max_size_bytes": 4096}"#,
            )
            .unwrap();
            assert_eq!(s.master_key(), &KeySource::Provider);
            let dir = tempfile::tempdir().unwrap();
            let ctx = credstore_core::config::ConfigContext::new(dir.path());
            let config = s.base_config(&ctx);
            assert_eq!(config.path(), dir.path().join("a.db"));
            assert!(format!("{config:?}").contains("busy_timeout: 20ms"), "{config:?}");
            let id: credstore_core::StoreId = "s".parse().unwrap();
            let err = s.clone().open(id.clone(), &ctx).await.unwrap_err();
            assert!(matches!(err, credstore_core::Error::Config { .. }), "{err}");
            assert!(err.to_string().contains("key_provider"), "{err}");
            assert!(!dir.path().join("a.db").exists(), "refused before any file is made");
        }

        #[tokio::test]
        async fn key_and_passphrase_files_open_to_others_are_refused_unless_allowed() {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let ctx = credstore_core::config::ConfigContext::new(dir.path());
            let id: credstore_core::StoreId = "s".parse().unwrap();
            let key = format!("{}\n", *MasterKey::generate().to_base64().unwrap());
            std::fs::write(dir.path().join("k.key"), key).unwrap();
            std::fs::write(dir.path().join("pass"), "a passphrase\n").unwrap();
            for name in ["k.key", "pass"] {
                let path = dir.path().join(name);
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            }
            for json in [
                r#"{"path": "a.db", "master_key_file": "k.key"}"#,
                r#"{"path": "b.db", "passphrase_file": "pass"}"#,
            ] {
                let settings = parse(json).unwrap();
                let err = settings.load_master_key(&id, &ctx).unwrap_err();
                assert!(matches!(err, credstore_core::Error::Config { .. }), "{err}");
                let shown = err.to_string();
                assert!(
                    shown.contains("mode 640") && shown.contains("allow_loose_permissions = true"),
                    "{json}: {shown}"
                );
                assert!(!shown.contains("a passphrase"), "{shown}");
                let allowed = parse(&json.replace('}', r#", "allow_loose_permissions": true}"#)).unwrap();
                assert!(allowed.allows_loose_permissions());
                assert!(allowed.load_master_key(&id, &ctx).is_ok(), "{json}");
            }
        }

        #[tokio::test]
        async fn env_keys_come_from_the_context_and_errors_name_the_variable() {
            let dir = tempfile::tempdir().unwrap();
            let key = MasterKey::generate().to_base64().unwrap().to_string();
            let ctx = credstore_core::config::ConfigContext::new(dir.path()).with_env(move |v| {
                (v == "GOOD").then(|| key.clone()).or_else(|| (v == "BAD").then(|| "nope".into()))
            });
            let id: credstore_core::StoreId = "s".parse().unwrap();
            let good = SqliteSettings::new("s.db", KeySource::Env("GOOD".into()));
            good.open(id.clone(), &ctx).await.unwrap();
            assert!(dir.path().join("s.db").exists());
            for (var, needle) in [
                ("BAD", "BAD (master_key_env) is not the base64"),
                ("UNSET", "UNSET (master_key_env) is not set"),
            ] {
                let err = SqliteSettings::new("t.db", KeySource::Env(var.into()))
                    .open(id.clone(), &ctx)
                    .await
                    .unwrap_err();
                assert!(matches!(err, credstore_core::Error::Config { .. }), "{err}");
                assert!(err.to_string().contains(needle), "{err}");
            }
        }
    }
}
