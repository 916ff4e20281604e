//! The encrypted SQLite [`CredentialStore`](credstore_core::CredentialStore):
//! the embedded default of credstore, with no server to run.
//!
//! `Cargo.toml`: `credstore-core`, `credstore-sqlite`, and tokio with the
//! `macros` and `rt` features; the example also uses `tempfile` for a
//! scratch directory.
//!
//! ```
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, Namespace, SecretValue, StoreId};
//! use credstore_sqlite::{KeyFile, SqliteConfig, SqliteStore};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // Your application's data directory; a temporary one here.
//!     let dir = tempfile::tempdir()?;
//!     let (db_path, key_path) = (dir.path().join("credentials.db"), dir.path().join("master.key"));
//!
//!     // The key file is created (random key, base64, mode 0600) on first use.
//!     let config = SqliteConfig::new(&db_path).master_key_file(KeyFile::new(&key_path));
//!     let store = SqliteStore::open(StoreId::new("sqlite-default")?, config).await?;
//!     let name = CredentialKey::new("stripe-api-key")?;
//!     let written = store.create(&name, &SecretValue::from("sk_live_123"), &Metadata::new()).await?;
//!     assert_eq!(store.get(&name).await?.expect("just set").value.expose_str()?, "sk_live_123");
//!
//!     // Replace only what was read; a stale version fails and changes nothing.
//!     store.replace(&name, &SecretValue::from("sk_live_456"), &Metadata::new(), &written.version).await?;
//!     assert!(store.replace(&name, &SecretValue::from("x"), &Metadata::new(), &written.version).await.is_err());
//!
//!     // A tenant's own key space in the same file.
//!     let tenant = store.with_namespace(&Namespace::new("tenant-1")?)?;
//!     assert!(!tenant.has(&name).await?);
//!
//!     // A fresh key, in the key file; no crash along the way loses it.
//!     let report = store.rotate_key_file().await?;
//!     assert_eq!((report.rows, report.key_version), (1, 2));
//!     Ok(())
//! }
//! ```
//!
//! The sections below describe the key sources and key files, the
//! capabilities, what separates stores, debug builds, the on-disk layout,
//! the encryption, the migration from schema 1, where reads run and the
//! concurrency of writes.
//!
//! # Master keys and key files
//! A master key is 32 bytes. Make one once (`openssl rand -base64 32`, or
//! [`MasterKey::generate`] and [`MasterKey::to_base64`]), keep it with your
//! other secrets, and hand it to the application at start, for instance in
//! an environment variable:
//!
//! ```no_run
//! use credstore_core::StoreId;
//! use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> credstore_core::Result<()> {
//!     // The base64 of the key; the error names the variable, never its value.
//!     let key = MasterKey::from_env("CREDSTORE_MASTER_KEY")?;
//!     let config = SqliteConfig::new("data/credentials.db").master_key(key);
//!     let _store = SqliteStore::open(StoreId::new("app-secrets")?, config).await?;
//!     Ok(())
//! }
//! ```
//!
//! - A [`MasterKey`] comes from 32 raw bytes, base64 text (an environment
//!   variable, `master_key_env`), a key file ([`KeyFile`],
//!   `master_key_file`), or a passphrase ([`MasterKey::from_passphrase`],
//!   `passphrase_file` / `passphrase_env`) stretched with Argon2id, whose
//!   salt and parameters are stored in the database. New parameters are at
//!   least OWASP's minimum (19 MiB, 2 passes; [`KdfParams`]); a database of
//!   0.2 with weaker ones still opens, with a warning, until its next
//!   rotation.
//! - A key file holds the base64 of the key's 32 bytes (44 characters and a
//!   newline when credstore writes it, mode `0600`). A raw 32-byte key file
//!   of 0.2 is still read; a 32-byte file of text is refused as a passphrase
//!   that must be named as one. See [`KeyFile`] for how each form is
//!   recognized, and why no real raw key is mistaken for text.
//! - A key or passphrase file that its group or others may access is refused
//!   unless `allow_loose_permissions` ([`KeyFile::allow_loose_permissions`]).
//! - [`SqliteStore::rotate_key_file`] rotates the key of a store opened with
//!   [`SqliteConfig::master_key_file`] so that a crash at any point never
//!   loses the key: the old key is kept in `<file>.old` and the new one
//!   staged in `<file>.new` until the database has committed (synced) and
//!   the new key file has opened it, and an opening with the key file
//!   finishes or undoes an interrupted rotation.
//!
//! # Capabilities
//! Everything ([`Capabilities::full`](credstore_core::Capabilities::full)):
//! [`Persistence::Durable`](credstore_core::Persistence::Durable), `list`,
//! metadata, binary values, create-only and replace-if-version writes
//! (checked and applied atomically in the writer's transaction), and
//! `can_be_unavailable` (the file can be locked, deleted, full or
//! unwritable).
//!
//! # Storage
//! - One SQLite file (bundled SQLite, no system library needed) in
//!   write-ahead-log mode, `synchronous = FULL` by default: a write that
//!   returned `Ok` survives a crash or a power loss ([`Synchronous::Normal`]
//!   relaxes this).
//! - The file is created with mode `0600`, and missing directories with
//!   `0700`; SQLite's WAL files copy the file's mode.
//! - One file holds many namespaces
//!   ([`with_namespace`](credstore_core::CredentialStore::with_namespace),
//!   nested: `a` then `b` is `a/b`), all under one master key. Namespaces
//!   are [`credstore_core::Namespace`]s with its cap of
//!   [`MAX_NAMESPACE_LEN`](credstore_core::MAX_NAMESPACE_LEN) (512) bytes;
//!   this store adds no cap of its own.
//!
//! # What separates two stores
//! The file. Stores opened on one path share its keys whatever their store
//! ids (and must hold its master key); stores on two files never meet. The
//! store id names the store in errors, logs and the Credential Stores API
//! only. Inside one file, namespaces separate key spaces.
//!
//! # Debug builds
//! Argon2id, AES-GCM and SQLite are slow unoptimised, and the
//! `[profile.dev.package.*]` settings of this workspace do not reach yours
//! (cargo reads profiles only from the root manifest of the workspace it
//! builds): a debug build of an application opens a passphrase-keyed store
//! in seconds instead of tenths of a second. Put this in your workspace's
//! root `Cargo.toml`; your own crates still build unoptimised:
//!
//! ```toml
//! [profile.dev.package.argon2]
//! opt-level = 2
//! [profile.dev.package.blake2]
//! opt-level = 2
//! [profile.dev.package.aes]
//! opt-level = 2
//! [profile.dev.package.aes-gcm]
//! opt-level = 2
//! [profile.dev.package.ghash]
//! opt-level = 2
//! [profile.dev.package.libsqlite3-sys]
//! opt-level = 2
//! ```
//!
//! # Layout (schema 2)
//! `PRAGMA application_id` is `0x43524453` ("CRDS"), `PRAGMA user_version`
//! the schema version, 2. Two tables:
//!
//! - `credstore_meta (name TEXT PRIMARY KEY, value BLOB)`: `key_version`
//!   (the master key version in force), `check` (the sealed check value),
//!   `kdf` (salt and Argon2id parameters of a passphrase key), `format` (the
//!   row format, 2) and `last_version` (the last row version handed out).
//! - `credentials`, primary key `(ns, key)`, one row per credential:
//!
//!   | column | type | holds |
//!   | --- | --- | --- |
//!   | `ns` | TEXT | the namespace, `""` for the root |
//!   | `key` | TEXT | the credential key |
//!   | `key_version` | INTEGER | the master key version that sealed the row |
//!   | `nonce` | BLOB | the 12-byte AES-GCM nonce |
//!   | `sealed` | BLOB | the sealed payload and its 16-byte tag |
//!   | `created_at`, `updated_at` | INTEGER | nanoseconds since the Unix epoch |
//!   | `version` | INTEGER | the row version: the credential's [`Version`](credstore_core::Version) in decimal |
//!   | `kind` | TEXT | `text` or `binary` |
//!
//! Row versions come from one counter for the whole file (`last_version`,
//! advanced inside the write transaction), so a version is never given twice,
//! not even to a key deleted and created again: a replace-if-version write
//! can never mistake a new credential for the one it read. The payload,
//! before sealing, is `[format u8 = 2][value length u32 LE][value bytes]`
//! then `[entries u16 LE]` and, per metadata entry, key and value each as
//! `[length u16 LE][UTF-8 bytes]`. The value bytes are the raw value, text
//! or binary alike; `kind` records which, so a value reads back exactly as
//! it was written ([`SecretValue::is_text`](credstore_core::SecretValue::is_text)
//! included).
//!
//! # Encryption
//! - Every value and its metadata are sealed together with AES-256-GCM and
//!   a fresh random 96-bit nonce per write. The associated data is the
//!   domain `credstore-sqlite/row\0`, the format version (u8, 2), the key
//!   version (u32 BE), the namespace and the key (each a u16 BE length and
//!   its bytes), `created_at` and `updated_at` (i64 BE), the row version
//!   (i64 BE) and the kind (u8: 0 text, 1 binary). A row whose bytes,
//!   timestamps, version or kind are changed, or that is swapped with or
//!   copied onto another row, fails `get` with
//!   [`Error::Integrity`](credstore_core::Error::Integrity) naming the key;
//!   a wrong value is never returned. `has`, `version` and `list` read the
//!   clear columns without opening the seal.
//! - Keys, namespaces, timestamps, versions and kinds are stored in the
//!   clear (listing and conditional writes need them); values and metadata
//!   never reach the disk unsealed, neither in the database, the WAL nor a
//!   temporary file (temporary tables live in memory).
//! - The [`MasterKey`] comes from one of the sources above
//!   ([`MasterKey::load_or_create_file`] makes a key file on first use);
//!   Argon2id parameters read back from a database are capped, see
//!   [`KdfParams`]. Key material lives in zeroizing buffers, and so does the
//!   expanded AES key schedule (`aes` with its `zeroize` feature).
//! - A sealed check value makes an opening with the wrong key fail at once
//!   with a `wrong master key` [`Error::Config`](credstore_core::Error::Config).
//!   It is the nonce followed by the sealed text
//!   `credstore-sqlite master key check`, with the associated data
//!   `credstore-sqlite/check\0`, the byte 1 and the key version (u32 BE);
//!   it is unchanged by the migration from schema 1.
//! - [`SqliteStore::rotate_key`] re-seals everything under a new key in one
//!   transaction, committed at `synchronous = FULL` whatever the store's
//!   setting, then checkpoints and truncates the write-ahead log (a blocked
//!   checkpoint is reported in [`RotationReport::checkpoint_error`]); row
//!   versions do not change. Measured on a 2-core machine
//!   in a release build, rotating 100,000 credentials takes 0.8 to 1.0 s
//!   (`cargo run --release -p credstore-sqlite --example rotation_bench`).
//!
//! # Migration from schema 1
//! Files written by credstore-sqlite 0.1 (schema 1: no `version` or `kind`
//! column; row format 1, whose associated data ends at the timestamps and
//! whose values are UTF-8 text) are migrated by the first
//! [`SqliteStore::open`] of this version, once the master key is checked, in
//! one transaction: every row is opened, given a version (1, 2, … in
//! `(ns, key)` order), the kind `text`, and re-sealed in format 2. If a row
//! fails authentication the opening fails with
//! [`Error::Integrity`](credstore_core::Error::Integrity) naming its key and
//! the file stays at schema 1. A file of schema 2 cannot be opened by 0.1,
//! which refuses it as newer. Schema 1 accepted namespaces up to 1,024
//! bytes and `.`/`..` segments; such rows are migrated but no handle can
//! reach them any more (a warning says how many).
//!
//! # Reads: where they run and what they may block
//! `get`, `has` and `version` of one key run on the calling task, through a
//! small pool of read-only connections (one opened with the store, more on
//! the blocking pool when concurrent reads need them, at most 8 kept). Under
//! write-ahead logging a read never waits for a writer, in this process or
//! another: it sees the last committed state, a rotation or migration by
//! another process either entirely or not at all. What such a read may
//! block its thread on, and for how long:
//! - SQLite's work for one row by primary key, and opening its seal: a few
//!   microseconds (a value of at most 16 KiB sealed; a larger row is read on
//!   the blocking pool instead).
//! - File locks are only tried, never waited for: the busy handler of these
//!   connections is off, and a read that meets a lock (another process
//!   recovering the write-ahead log after a crash, holding the database in
//!   exclusive locking mode, or in rollback-journal mode) is made again on
//!   the blocking pool, which waits up to the busy timeout. SQLite's own
//!   retries while another connection updates the write-ahead log index
//!   last microseconds; only a process that breaks SQLite's locking protocol
//!   can stretch them (SQLite gives up with an error after about 10 s).
//! - Reading the pages of the row (2 to 4 B-tree pages, plus up to 4
//!   overflow pages) from the operating system's page cache, or, when they
//!   are not cached, from the disk: then a disk read each. When two such
//!   reads in a row keep their thread longer than 2 ms, the reads of the file
//!   go to the blocking pool for the next 100 ms.
//! - A `stat` of the database path, at most every 50 ms, to notice a
//!   deleted or replaced file (so a read within 50 ms of that may still
//!   answer from the file opened; writes check before every transaction).
//!   Local file systems only: SQLite's write-ahead log does not work over a
//!   network file system anyway.
//!
//! SQLite takes a file lock (two `fcntl` system calls) for each read
//! transaction unless another connection of the process holds the same lock
//! already. So the writer thread holds a read transaction open on a
//! connection of its own between its write transactions (the "anchor"), and
//! reads of the same snapshot only count the lock: about a quarter of the
//! cost of a read. The anchor is let go before each write transaction of
//! this store and taken again after its commit, and while the writer is
//! idle it moves to the newest snapshot every 50 ms: a checkpoint by another
//! connection or process (the CLI's rotate-key truncates the log) waits at
//! most that long for it. No anchor is held while the log is over 8 MiB.
//!
//! An inline read is charged to the task's cooperative budget (Tokio's
//! `task::coop`; one unit per 500 ns the read kept its thread), so a task
//! reading in a loop yields to its worker after about 64 µs of reads, like
//! a task reading a socket that is always ready. `list` (a page may hold
//! many keys) and the availability probe run on Tokio's blocking pool.
//! Decrypted buffers are zeroizing on both paths.
//!
//! # Concurrency
//! Writes go to one writer
//! thread per opened database, which group-commits them: writes that arrive
//! during a commit go into the next transaction, each in a savepoint of its
//! own, and each caller is answered once its own write is durable. A failed
//! condition ([`Error::PreconditionFailed`](credstore_core::Error::PreconditionFailed))
//! fails that write only. Several processes may open the same file; a lock
//! held past the busy timeout is a retriable
//! [`Error::Unavailable`](credstore_core::Error::Unavailable).
//!
//! # Errors
//! SQLite's and the operating system's errors are translated in one place
//! and kept as the error's [`source`](std::error::Error::source): their
//! text, which never holds a value.
#![warn(missing_docs)]

mod config;
mod db;
mod errors;
mod keyfile;
mod reader;
mod rotation;
mod shared;
mod store;
mod writer;

#[cfg(feature = "serde")]
pub use config::{KeySource, SqliteSettings};
pub use config::{SqliteConfig, Synchronous, DEFAULT_BUSY_TIMEOUT};
pub use credstore_seal::{KdfParams, KeyFile, KeyProvider, MasterKey, KEY_LEN};
pub use rotation::RotationKind;
pub use rotation::RotationReport;
pub use store::{SqliteStore, WriterStats, PROBE_TIMEOUT};

/// The encrypted SQLite store's [`StoreKind`](credstore_core::StoreKind):
/// `encrypted-sqlite`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("encrypted-sqlite");

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
