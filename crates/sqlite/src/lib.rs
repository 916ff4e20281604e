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
//! capabilities, the history and expiry, what separates stores, debug
//! builds, the on-disk layout, the encryption, the files of earlier
//! versions, where reads run and the concurrency of writes.
//!
//! # Keys: a data key, wrapped by a key-encryption key
//! Every row is sealed under the store's own random **data key**, drawn
//! when the database is created and stored only wrapped by a
//! **key-encryption key** (KEK), in the database's key record (the
//! envelope layout of [`credstore_seal`]). The KEK is one of:
//! - a **master key** ([`MasterKey`]): 32 bytes from a key file, an
//!   environment variable or your code, or a passphrase stretched with
//!   Argon2id ([`SqliteConfig::master_key`], [`SqliteConfig::master_key_file`]);
//! - any [`KeyProvider`] ([`SqliteConfig::key_provider`]): the OS keychain
//!   (`credstore-keychain`), AWS KMS (`credstore-aws`), Vault / OpenBao
//!   Transit (`credstore-vault`), or your own. Such a KEK never sits on the
//!   machine that holds the data: a copy of the disk is not enough to read
//!   a value.
//!
//! The KEK is called once when the store opens (and at a rotation); reads
//! and writes make no call to it. A master key in a file beside the
//! database protects nothing from a reader of that directory; the server
//! warns about it at start.
//!
//! Make a master key once (`openssl rand -base64 32`, or
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
//! # Rotation, in two kinds
//! - **Key-encryption key rotation** ([`SqliteStore::rewrap_key`],
//!   [`SqliteStore::rewrap_key_file`]) rewraps the data key under a new KEK
//!   or another provider: one provider call, one small record written, no
//!   credential touched, the same time at any size. Use it to move to a
//!   provider or on a schedule.
//! - **Data key rotation** ([`SqliteStore::rotate_data_key`]) re-seals every
//!   credential under a new data key in one transaction. Use it after a
//!   KEK, or a copy of the file together with its KEK, may have leaked.
//! - [`SqliteStore::rotate_key`] and [`SqliteStore::rotate_key_file`] do
//!   both: a new data key wrapped by a new master key (what `rotate-key`
//!   did in 0.2). Each [`RotationReport`] says which kind it was.
//!
//! # Capabilities
//! Everything ([`Capabilities::full`](credstore_core::Capabilities::full)):
//! [`Persistence::Durable`](credstore_core::Persistence::Durable), `list`,
//! metadata, binary values, create-only and replace-if-version writes
//! (checked and applied atomically in the writer's transaction), and
//! `can_be_unavailable` (the file can be locked, deleted, full or
//! unwritable); and `expiry`, `versions` and `recover_deleted` with the
//! store's retention ([`SqliteConfig::retention`], [`DEFAULT_RETENTION`]:
//! 10 versions), except that a store keeping no history
//! ([`Retention::NONE`](credstore_core::Retention::NONE)) declares neither
//! `versions` nor `recover_deleted`. No change feed.
//!
//! # History
//! - **What is kept.** Every write seals the new version twice in its
//!   transaction: as the key's current row (`credentials`) and as a history
//!   row (`credential_history`). The version it replaces is marked ended at
//!   the store's clock ([`SqliteConfig::clock`]); a delete marks it ended
//!   by a delete (state `deleted`) and keeps it, so
//!   [`restore`](credstore_core::CredentialStoreExt::restore) with a
//!   create-only condition recovers the key. A store keeping no history
//!   seals one row per write, and its delete drops the key's history too.
//! - **Retention.** A version is kept while it is among the key's newest
//!   `max_versions` (the current one included) and, with a `max_age`, until
//!   that long after it stopped being current (overwritten, deleted or
//!   expired), by the store's clock. Each write prunes its key's versions
//!   past the retention (two ranges of the history's primary key); reads
//!   (`get_version`, `list_versions`) filter by the same rule, so a version
//!   past its age is gone at once even when its key is not written again.
//!   Settings: [`SqliteConfig::retention`]; `max_versions` and
//!   `max_version_age_secs` in [`SqliteSettings`] (with the `serde`
//!   feature).
//! - **Reads.** `get_version` opens the history row of that version;
//!   `list_versions` reads the key's history rows newest first in one read
//!   transaction, opening each for its metadata, and pages them
//!   ([`VersionListOptions`](credstore_core::VersionListOptions)); both run
//!   where `get` does. Each listed version is one authenticated opening: a
//!   page of 100 versions costs about as much as 60 gets (about 150 µs in
//!   a release build on a 2-core machine, against 2.5 µs for a get). A state is `expired` when the version's `expires_at`
//!   has passed, else `current` for the version `get` returns, `deleted`
//!   for the version a delete ended, `previous` otherwise.
//! - **Expiry.** A write's [`expires_at`](credstore_core::SetOptions::expires_at)
//!   is stored in the clear (`expires_at`, nanoseconds) and bound into both
//!   seals. From that instant by the store's clock the key reads as absent:
//!   `get` (which still opens the row, so an edited expiry fails
//!   authentication), `has`, `version` and `list`; a create-only write
//!   succeeds over it (a new `created_at`), a replace fails, a delete
//!   removes the row and answers `false`.
//! - **Purge.** [`purge`](credstore_core::CredentialStore::purge) deletes
//!   the key's rows (or one version's history row, and the current row
//!   when that version is the current one past its expiry; the current
//!   version itself is refused with `PreconditionFailed`) under
//!   `PRAGMA secure_delete = ON`, which zeroes the deleted cells in their
//!   pages, then checkpoints the write-ahead log into the database and
//!   truncates it before answering: once `purge` returns, no copy of the
//!   purged ciphertext is in the database file or its log. When another
//!   process holds a read snapshot the checkpoint cannot finish; a warning
//!   is logged and the log's pages go at a later checkpoint. Copies outside
//!   the two files (backups, disk snapshots, blocks the file system freed)
//!   are beyond the store.
//! - **Integrity.** History rows are outside the row set: an attacker who
//!   writes the file can delete kept versions (a denial), or put back a
//!   purged row they copied before the purge (which they could read only
//!   with the key-encryption key anyway). What no edit can do is make a
//!   history row read as the current one, as another version or key, or
//!   with another expiry: each fails authentication with
//!   [`Error::Integrity`](credstore_core::Error::Integrity).
//! - **Rotation.** A data key rotation re-seals the history rows with the
//!   credentials, in its transaction
//!   ([`RotationReport::history_rows`]).
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
//! # Layout (schema 4)
//! `PRAGMA application_id` is `0x43524453` ("CRDS"), `PRAGMA user_version`
//! the schema version, 4. Three tables:
//!
//! - `credstore_meta (name TEXT PRIMARY KEY, value BLOB)`: `key_version`
//!   (the data key version in force), `check` (the sealed check value),
//!   `key_record` (the store's uid and its data key wrapped by the KEK:
//!   [`credstore_seal::KeyRecord`], whose docs give its bytes), `format`
//!   (the row format, 4), `last_version` (the last row version handed
//!   out) and `row_set` (the authenticated digest of the rows; see
//!   "Encryption").
//! - `credentials`, primary key `(ns, key)`, one row per credential:
//!
//!   | column | type | holds |
//!   | --- | --- | --- |
//!   | `ns` | TEXT | the namespace, `""` for the root |
//!   | `key` | TEXT | the credential key |
//!   | `key_version` | INTEGER | the data key version that sealed the row |
//!   | `nonce` | BLOB | the 12-byte AES-GCM nonce |
//!   | `sealed` | BLOB | the sealed payload and its 16-byte tag |
//!   | `created_at`, `updated_at` | INTEGER | nanoseconds since the Unix epoch |
//!   | `version` | INTEGER | the row version: the credential's [`Version`](credstore_core::Version) in decimal |
//!   | `kind` | TEXT | `text` or `binary` |
//!   | `expires_at` | INTEGER | when the value expires (nanoseconds since the Unix epoch), NULL for never |
//!
//! - `credential_history`, primary key `(ns, key, version)`, one row per
//!   kept version: the columns of `credentials` (its own nonce and seal,
//!   sealed as a history row), and
//!
//!   | column | type | holds |
//!   | --- | --- | --- |
//!   | `ended_at` | INTEGER | when the version stopped being current, by the store's clock (nanoseconds); NULL while it is current |
//!   | `deleted` | INTEGER | 1 when a delete ended it |
//!
//!   `ended_at` and `deleted` are not sealed: they only decide retention
//!   and the state a listing shows.
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
//! - Every value and its metadata are sealed together with AES-256-GCM under
//!   the data key, with a fresh random 96-bit nonce per write. The
//!   associated data is the domain `credstore-sqlite/row\0`, the row format
//!   (u8, 4), the key version (u32 BE), the store's uid (16 bytes), the
//!   namespace and the key (each a u16 BE length and its bytes),
//!   `created_at` and `updated_at` (i64 BE), the row version (i64 BE), the
//!   kind (u8: 0 text, 1 binary), the role (u8: 0 the current row, 1 a
//!   history row) and the expiry (u8 0 and i64 0 for none, u8 1 and the
//!   instant as i64 BE nanoseconds). Rows written before row format 4 (no
//!   role, no expiry: format 3) open as current rows without expiry, and
//!   as nothing else. A row whose bytes, timestamps,
//!   version, kind or expiry are changed, that is swapped with or copied
//!   onto another row (a history row onto the current one included), or
//!   copied from **another database** (even one whose data
//!   key is wrapped by the same KEK), fails `get` with
//!   [`Error::Integrity`](credstore_core::Error::Integrity) naming the key;
//!   a wrong value is never returned. `has`, `version` and `list` read the
//!   clear columns without opening the seal.
//! - Keys, namespaces, timestamps, versions and kinds are stored in the
//!   clear (listing and conditional writes need them); values and metadata
//!   never reach the disk unsealed, neither in the database, the WAL nor a
//!   temporary file (temporary tables live in memory).
//! - A sealed check value (the text `credstore-sqlite master key check`
//!   under the data key, its associated data binding the key version and
//!   the uid) tells an edited key record at once. A KEK that does not
//!   unwrap the data key fails the opening with a `wrong master key`
//!   [`Error::Config`](credstore_core::Error::Config) that changes nothing.
//! - Data keys, master keys and passphrase-derived keys live in zeroizing
//!   buffers, and so does the expanded AES key schedule (`aes` with its
//!   `zeroize` feature). Argon2id parameters read back are capped, see
//!   [`KdfParams`].
//! - The **row set** (`row_set` in `credstore_meta`, a
//!   [`credstore_seal::RowSet`] record): an authenticated digest of every
//!   row's place and version, their number and the last version handed
//!   out, updated in every write transaction. The opening checks the rows
//!   against it ([`SqliteConfig::verify_rows`], on by default) and so does
//!   [`SqliteStore::verify`]: a row put back to an older copy of itself,
//!   removed or added outside credstore fails with a `failed its integrity
//!   check` [`Error::Config`](credstore_core::Error::Config). A store
//!   already open reads such a row until the next check; a whole file put
//!   back to an earlier copy is an older store in every part and is not
//!   caught. What an attacker who reads the file, writes it, or holds the
//!   KEK can and cannot do: [`credstore_seal`]'s threat model.
//! - Rotations commit at `synchronous = FULL` whatever the store's setting;
//!   a data key rotation then checkpoints and truncates the write-ahead log
//!   (a blocked checkpoint is reported in
//!   [`RotationReport::checkpoint_error`]); row versions do not change.
//!   Measured on a 2-core machine in a release build, re-sealing 100,000
//!   credentials takes 0.8 to 1.0 s
//!   (`cargo run --release -p credstore-sqlite --example rotation_bench`).
//!
//! # Files of earlier versions
//! - **Schema 3** (no history, no expiry): the first opening adds the
//!   `expires_at` column and the empty `credential_history` table and sets
//!   the schema to 4, in one transaction; no row is touched. Its rows
//!   (format 3) read as they are; each key's first overwrite or delete
//!   keeps the version it replaces in the history (re-sealed as a history
//!   row), so the history starts there. A file of schema 4 cannot be
//!   opened by a build of schema 3, which refuses it as newer.
//! - **0.2 (schema 2)**: rows sealed directly under the master key (row
//!   format 2, no uid), the passphrase's salt in `kdf`. Such a file opens
//!   with its master key, key file or passphrase, its rows unchanged (the
//!   opening adds the history table and the expiry column, which 0.2
//!   ignores), and is read as it is. Its first write, or a rotation, moves
//!   it to schema 4 in one
//!   transaction: a data key is drawn (and wrapped by the master key, or by
//!   the provider of [`SqliteStore::rewrap_key`]), every row re-sealed
//!   under it. A [`KeyProvider`] alone cannot open it (the master key is
//!   needed once); the error says so.
//! - **0.1 (schema 1)**: no `version` or `kind` column; row format 1, whose
//!   associated data ends at the timestamps and whose values are UTF-8
//!   text. The first [`SqliteStore::open`], once the master key is checked,
//!   migrates it to schema 2 in one transaction: every row is opened, given
//!   a version (1, 2, … in `(ns, key)` order), the kind `text`, and
//!   re-sealed in format 2; then it moves on as a file of 0.2 does. If a row
//!   fails authentication the opening fails with
//!   [`Error::Integrity`](credstore_core::Error::Integrity) naming its key
//!   and the file stays at schema 1. Schema 1 accepted namespaces up to
//!   1,024 bytes and `.`/`..` segments; such rows are migrated but no
//!   handle can reach them any more (a warning says how many).
//! - A file of schema 3 or 4 cannot be opened by 0.2, which refuses it as
//!   newer.
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
//! [`get_many`](credstore_core::CredentialStore::get_many) is one
//! statement, `… WHERE ns = ?1 AND key IN (SELECT value FROM
//! json_each(?2))` with the keys as a JSON array, in one read transaction
//! (its answers are one snapshot), each row opened as `get` opens it. A
//! batch of at most 32 keys runs where `get` runs, its thread time counted
//! per row against the 2 ms above and charged to the budget below as a
//! whole; a larger one runs on the blocking pool, since opening its rows
//! (about 1.5 µs each in a release build) would keep a worker too long.
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
mod keys;
mod reader;
mod rotation;
mod shared;
mod store;
#[cfg(feature = "serde")]
mod uri;
mod writer;

#[cfg(feature = "serde")]
pub use config::{KeySource, SqliteSettings};
pub use config::{SqliteConfig, Synchronous, DEFAULT_BUSY_TIMEOUT, DEFAULT_RETENTION};
pub use credstore_seal::{KdfParams, KeyFile, KeyProvider, MasterKey, KEY_LEN};
pub use rotation::RotationKind;
pub use rotation::RotationReport;
pub use store::{SqliteStore, WriterStats, PROBE_TIMEOUT};
#[cfg(feature = "serde")]
pub use uri::SqliteScheme;

/// The encrypted SQLite store's [`StoreKind`](credstore_core::StoreKind):
/// `encrypted-sqlite`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("encrypted-sqlite");

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
