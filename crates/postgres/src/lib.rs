//! The encrypted PostgreSQL [`CredentialStore`](credstore_core::CredentialStore):
//! credentials shared by every process that opens the same schema (server
//! replicas behind a load balancer), sealed by the application before they
//! reach the database, with a change feed that tells each replica what the
//! others changed.
//!
//! `Cargo.toml`: `credstore-core`, `credstore-postgres`, and tokio with the
//! `macros` and `rt` features.
//!
//! ```no_run
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, FeedEvent, Metadata, SecretValue, StoreId};
//! use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = PostgresConfig::new("db.internal") // TLS verify-full by default off loopback
//!         .user("credstore")
//!         .password(SecretValue::from(std::env::var("PGPASSWORD")?))
//!         .database("secrets")
//!         .schema("team_a")
//!         .master_key(MasterKey::from_env("CREDSTORE_MASTER_KEY")?);
//!     let store = PostgresStore::open(StoreId::new("team-pg")?, config).await?;
//!
//!     // What any process writes to this schema from now on (never a value).
//!     let mut feed = store.subscribe().await?;
//!
//!     let name = CredentialKey::new("stripe-api-key")?;
//!     let written = store.create(&name, &SecretValue::from("sk_live_123"), &Metadata::new()).await?;
//!     assert_eq!(store.get(&name).await?.expect("just set").value.expose_str()?, "sk_live_123");
//!     // Replace only what was read; of racing replicas, one wins.
//!     store.replace(&name, &SecretValue::from("sk_live_456"), &Metadata::new(), &written.version).await?;
//!
//!     if let Some(FeedEvent::Changed(change)) = feed.next().await {
//!         println!("{} is now at {:?}", change.key, change.version);
//!     }
//!     Ok(())
//! }
//! ```
//!
//! With the `serde` feature, `PostgresSettings` reads a store's settings
//! from a config file (a `credstore-server` `[[stores]]` table of `type =
//! "postgres"`); its docs list every setting.
//!
//! # Capabilities
//! Everything the conformance suite knows
//! ([`Capabilities::full`](credstore_core::Capabilities::full)):
//! durable, `list` (keyset pagination in key order), metadata, binary
//! values, create-only and replace-if-version writes atomic in SQL across
//! processes, versions that never repeat for a key, `can_be_unavailable`;
//! the change feed ([`PostgresConfig::change_feed`], on by default); and
//! `versions`, `recover_deleted` and `expiry`, with the retention of
//! [`PostgresConfig::retention`] (default [`DEFAULT_RETENTION`]: 10
//! versions, no age limit; [`Retention::NONE`](credstore_core::Retention::NONE)
//! keeps no history and declares neither `versions` nor `recover_deleted`).
//! See "History" and "Expiry".
//!
//! # What separates two stores
//! The database and the schema ([`PostgresConfig::schema`], default
//! `credstore`). Stores opened on the same pair share their keys whatever
//! their store ids, and must hold the same key-encryption key; stores on
//! two schemas never meet (their rows do not even open in each other: see
//! "Encryption"). The store id names the store in errors, logs and the
//! Credential Stores API only. Inside one schema, namespaces separate key
//! spaces; namespaces are [`credstore_core::Namespace`]s with its cap of
//! [`MAX_NAMESPACE_LEN`](credstore_core::MAX_NAMESPACE_LEN) bytes.
//!
//! # Layout
//! In the store's schema (created on first open, name checked: lowercase
//! ASCII letters, digits and `_`, at most [`MAX_SCHEMA_LEN`] bytes, and
//! always quoted in SQL):
//!
//! - `meta (name text PRIMARY KEY, value bytea NOT NULL)`: `schema_version`
//!   (the decimal digits of the layout version, `2`; `1` was
//!   credstore-postgres 0.2's) and `key_record` (the
//!   store's uid and its data key wrapped by the KEK:
//!   [`credstore_seal::KeyRecord`], whose docs give its bytes).
//! - `credentials`, primary key `(ns, key)`, one row per credential:
//!
//!   | column | type | holds |
//!   | --- | --- | --- |
//!   | `ns` | `text COLLATE "C"` | the namespace, `''` for the root |
//!   | `key` | `text COLLATE "C"` | the credential key (byte order: listing is in key order) |
//!   | `version` | `bigint` | the row version: the credential's [`Version`](credstore_core::Version) in decimal |
//!   | `created_ns`, `updated_ns` | `bigint` | nanoseconds since the Unix epoch |
//!   | `kind` | `smallint` | 0 text, 1 binary |
//!   | `key_version` | `integer` | the data key version that sealed the row (1) |
//!   | `format` | `smallint` | the row format: 4 (the SQLite store's), 3 for a row written by 0.2 |
//!   | `nonce` | `bytea` | the 12-byte AES-GCM nonce |
//!   | `sealed` | `bytea` | the sealed payload and its 16-byte tag, role *current* |
//!   | `seq` | `bigint` | the key's write number: 1 for its first write, one more for each overwrite (0 for rows of 0.2); orders the history |
//!   | `expires_ns` | `bigint` | when the value expires, nanoseconds since the Unix epoch; `NULL` for never |
//!   | `hist_version` | `bigint` | the `version` that `hist_nonce` and `hist_sealed` were sealed for (`NULL` for rows of 0.2) |
//!   | `hist_nonce`, `hist_sealed` | `bytea` | the same payload sealed with role *history*: what an overwrite or a delete moves to `history` |
//!
//! - `history`, primary key `(ns, key, version)`, one row per kept earlier
//!   version (overwritten, deleted or expired):
//!
//!   | column | type | holds |
//!   | --- | --- | --- |
//!   | `ns`, `key`, `version`, `seq`, `created_ns`, `updated_ns`, `expires_ns`, `kind`, `key_version`, `format` | | as in `credentials`, when the version was current (`format` 4) |
//!   | `superseded_ns` | `bigint` | when it stopped being current, by the store's clock (nanoseconds): what the age retention counts from |
//!   | `deleted` | `boolean` | it was current when the key was deleted |
//!   | `nonce`, `sealed` | `bytea` | the payload sealed with role *history* |
//!
//! - the sequence `versions`: every write takes its row version from it,
//!   so a version is never given twice in the schema, not even to a key
//!   deleted and created again, nor by two replicas. A store draws 32 at a
//!   time and hands them out from memory: versions are unique, not ordered
//!   (two replicas' versions interleave).
//!
//! # Migrations
//! The first opening of a schema creates it, its tables and its sequence
//! (`CREATE … IF NOT EXISTS`), records `schema_version` (2), draws the store's
//! uid and data key, wraps the data key with the KEK and inserts the key
//! record: all in one transaction holding `pg_advisory_xact_lock` on a
//! number derived from the schema's name (FNV-1a of
//! `credstore/migrate/<schema>`). Replicas starting at once wait for each
//! other there: one creates, the others find the record made and unwrap it.
//! A later opening reads `meta` first and takes no lock (a user without the
//! `CREATE` privilege on the database can open a schema made by another). A
//! schema of a newer `schema_version` is refused, untouched.
//!
//! A schema of layout 1 (credstore-postgres 0.2) is upgraded by the first
//! opening of this version, under the same lock and in one transaction:
//! `history` is created, `credentials` gains `seq`, `expires_ns`,
//! `hist_version`, `hist_nonce` and `hist_sealed` (`ALTER TABLE … ADD
//! COLUMN`: no row is rewritten, the table is locked for an instant) and
//! `schema_version` becomes 2; the transaction commits only once the
//! key-encryption key has unwrapped the data key, so a wrong key changes
//! nothing. That opening needs the owner's privileges (`ALTER TABLE`); later
//! ones do not. Rows written by 0.2 keep reading (row format 3, no expiry);
//! they have no history copy, so their first overwrite or delete keeps no
//! earlier version: the history starts with the writes of this version. A
//! 0.2 process refuses a schema of layout 2; one still running while the
//! schema is upgraded keeps working, but its writes leave no history (its
//! `UPDATE` leaves `hist_version` behind, so the row's stale history copy is
//! never moved).
//!
//! # Encryption
//! Rows are sealed exactly as the SQLite store's (row format 4 of
//! [`credstore_seal`]): value and metadata together with AES-256-GCM under
//! the store's data key, a fresh nonce per write, the associated data
//! binding the format, the key version, the store's uid, the namespace, the
//! key, both timestamps, the version, the kind, the row's role (*current*
//! in `credentials.sealed`, *history* in `hist_sealed` and in `history`)
//! and its expiry. Each write seals its payload twice, once per role (two
//! AES-GCM passes over a few hundred bytes), so that an overwrite or a
//! delete moves the row to the history inside its one SQL statement,
//! without reading or opening it. The KEK is a
//! [`MasterKey`] (a key file, an environment variable, a passphrase) or any
//! [`KeyProvider`] (the OS keychain, AWS KMS, Vault / OpenBao Transit),
//! called once per opening and never per read or write.
//!
//! Threat model, for someone with **write access to the database**: a row
//! whose bytes, timestamps, version or kind are edited, that is moved to
//! another key or namespace, swapped with another row, or copied from
//! **another store** (another schema or database, even one whose data key
//! is wrapped by the same KEK) fails `get` with
//! [`Error::Integrity`](credstore_core::Error::Integrity) naming the key;
//! a wrong value is never returned. So does a **history row copied over the
//! current row** (its role is bound: an earlier value cannot be passed off
//! as the current one through the history), a history row moved to another
//! version, and an **expiry edited, added or stripped**. Not detected: a row
//! put back to an older sealed copy of itself (an earlier value of the same
//! key, taken from a backup), a row deleted, or the whole schema rolled
//! back; in `history`, edits of the unsealed `seq`, `superseded_ns` and
//! `deleted` (they change the listing's order, when the age retention drops
//! a version, and whether it shows as deleted or previous; never a value,
//! version or expiry). The SQLite store catches the
//! first two with its row set, a digest of every row updated by each
//! write; in a database shared by replicas that digest row would serialize
//! every writer, so this store keeps none. Someone with **read access**
//! learns the namespaces, keys, timestamps, versions, kinds and value
//! sizes, never a value or its metadata without the KEK. `has`, `version`
//! and `list` read the clear columns without opening a seal.
//!
//! Rotation: [`PostgresStore::rewrap_key`] rotates the KEK (one provider
//! call, one record rewritten, no row touched, history rows included: they
//! are sealed under the same data key; replicas keep working). **Data key rotation is not offered**: re-sealing
//! every row while replicas write under the old key needs a protocol
//! between them that this version does not have. Move the credentials to a
//! new schema instead when a KEK together with a copy of the database may
//! have leaked.
//!
//! # Batch reads
//! [`get_many`](credstore_core::CredentialStore::get_many) is one
//! statement, `… WHERE ns = $1 AND key = ANY($2)` with the distinct keys as
//! a `text[]`, within the call timeout like every statement; each row is
//! opened as `get` opens it. Its answers are one snapshot of the
//! namespace.
//!
//! # Writes
//! Atomic in SQL, no explicit transaction, each statement prepared once per
//! connection; most writes are one statement, one round trip:
//! - **create**: a version from the block in hand, then `INSERT … ON
//!   CONFLICT (ns, key) DO NOTHING` (with, in the same statement, the prune
//!   of a history a delete left); no row inserted is
//!   [`Error::PreconditionFailed`](credstore_core::Error::PreconditionFailed),
//!   unless the row there has expired: then the create overwrites it as
//!   below (the key starts anew: `created` is true, a new `created_at`).
//! - **replace** from version *v*: one statement of data-modifying CTEs:
//!   `UPDATE … WHERE ns = … AND key = … AND version = v` and not expired,
//!   the row sealed with *v*'s `created_ns`; in the same statement, when
//!   the update happened, the row's history copy as it was (a self-read of
//!   version *v* in the statement's snapshot) is inserted into `history`
//!   and the key's history pruned to the retention. No row updated is
//!   `PreconditionFailed`. Of any number of racing replaces from *v*, in any
//!   number of processes, exactly one succeeds. The store knows *v*'s
//!   `created_ns` when it last read or wrote that version of the key (a
//!   version is written once, with one `created_ns`, so what it remembers
//!   never turns wrong; it remembers 4,096 keys); otherwise one statement
//!   reads the row's `created_ns` and `version` first.
//! - **upsert**: the same `UPDATE` of the version this store last saw;
//!   when the row moved on (another replica wrote it), or was never seen,
//!   one read, then an insert (missing) or an update of the version read
//!   (present); a write that lost a race to another replica retries, up to
//!   16 times, then fails with a retriable
//!   [`Error::Unavailable`](credstore_core::Error::Unavailable) naming the
//!   contention. `created_at` is kept on overwrite.
//! - **delete**: `DELETE … RETURNING`, the row's history copy inserted into
//!   `history` marked `deleted` and the history pruned, in one statement.
//!
//! A write that returned `Ok` is committed with the server's durability
//! (`synchronous_commit`).
//!
//! # History
//! - `list_versions` reads the current row and the key's history in one
//!   statement per page, newest first: the current row, then the history by
//!   `seq` (ties, which only a create racing a delete of the same key can
//!   make, by `updated_ns` then version). Each entry's metadata is opened
//!   from its sealed row, so a tampered history row fails the listing with
//!   `Integrity`. `get_version` reads one version the same way.
//! - States: `Expired` when its `expires_ns` has passed by the store's
//!   clock, else `Current` for the row of `credentials`, `Deleted` for a
//!   row the delete moved, `Previous` otherwise.
//! - Retention ([`PostgresConfig::retention`]): the newest `max_versions`
//!   versions of a key, the current one included, and of those the
//!   superseded ones whose `superseded_ns` is less than `max_age` ago by the
//!   store's clock. Every read filters by it, so a version past it is gone
//!   from `get_version` and `list_versions` at that instant; the rows are
//!   deleted by the key's next write, in its statement (a key never written
//!   again keeps its rows, unread, until purged).
//! - `delete` keeps the history (`recover_deleted`): the deleted version
//!   stays within the retention, and
//!   [`restore`](credstore_core::CredentialStoreExt::restore) with
//!   [`SetOptions::create_only`](credstore_core::SetOptions::create_only)
//!   brings it back. A key deleted and set again continues its history.
//! - `purge(Key)` deletes the key's row, then every history row, in one
//!   transaction: the second statement's snapshot is taken once the first
//!   holds the row, so the value a racing write just moved to the history
//!   is destroyed too. `purge(Version(v))` deletes that history row (or an expired
//!   current row); purging the live current version is
//!   `PreconditionFailed`. The change feed reports a purge with the key's
//!   version after it (`None` when nothing of the key reads as present).
//!
//! ## What purge guarantees in PostgreSQL
//! Once `purge` returns, the rows are deleted in a committed transaction:
//! no read through any store, and no SQL query, returns them. Their bytes
//! are not overwritten at once: PostgreSQL keeps deleted tuples in the
//! table's pages until `VACUUM` (autovacuum, by default within minutes on a
//! busy table) marks their space free and later writes reuse it, and they
//! stay in the write-ahead log until its segments are recycled, in WAL
//! archives, on streaming replicas' disks and in backups. They stay sealed
//! there, readable only with the data key. This store runs no `VACUUM`
//! itself (it needs the table's owner, cannot run in a transaction, and
//! waits for any older snapshot). After purging a leaked value, an
//! operator who needs the bytes gone from the primary's data files runs
//! `VACUUM (VERBOSE) "<schema>".history, "<schema>".credentials` (or
//! `VACUUM FULL`, which rewrites the tables into new files under an
//! exclusive lock), and rotates the backups and WAL archives that hold the
//! old pages; the only way to make every old copy unreadable is a new
//! schema with a new data key (see "Encryption").
//!
//! # Expiry
//! A write's [`expires_at`](credstore_core::SetOptions::expires_at) is
//! stored in `expires_ns` and bound in both seals. From that instant on, by
//! the store's clock ([`PostgresConfig::clock`]), the key reads as absent:
//! `get`, `version`, `has` and `list` compare `expires_ns` with the clock
//! (`list` in SQL, so pages stay full); a create-only write overwrites the
//! expired row (which goes to the history as `Expired`), a replace against
//! it fails, `delete` returns `false` (and moves the row to the history).
//! Nothing deletes an expired row by itself.
//!
//! # Change feed
//! [`subscribe`](credstore_core::CredentialStore::subscribe) reports every
//! change committed to the schema by any process (key, namespace relative
//! to the handle, version, `None` for a delete; never a value):
//! - Each write, once its statement has committed, queues a notification;
//!   one notifier task per opened store sends what is queued, the writes of
//!   up to 2 ms together, with one
//!   `SELECT pg_notify('credstore_<schema>', payload)` per batch (its
//!   transaction with `synchronous_commit` off: a notification needs no
//!   flush of the WAL), the
//!   payload a JSON array of `{"n": namespace, "k": key, "v": version or
//!   null}` split to stay under PostgreSQL's 8000 bytes. A process's own
//!   writes reach its own subscribers through the same NOTIFY path: one
//!   path, one order.
//! - The first `subscribe` of a store starts a listener on a connection of
//!   its own (not from the pool) that runs `LISTEN "credstore_<schema>"`;
//!   `subscribe` returns once the server acknowledged it, so every change
//!   committed after it returns is reported. All handles of the store share
//!   it. Malformed payloads are skipped (debug log).
//! - A notification is sent after its write returned, so one could reach a
//!   feed taken just after: `subscribe` queues a marker (`{"m": token}`)
//!   behind this store's pending notifications and starts the new feed once
//!   the listener has heard it back, so the store's own earlier writes are
//!   never reported to it. Another process's write whose notification is
//!   still on its way may be (a cache then drops an entry it could have
//!   kept).
//! - When that connection is lost, every subscriber gets
//!   [`FeedEvent::Lost`](credstore_core::FeedEvent::Lost); the listener
//!   reconnects with a backoff (20 ms doubling up to 1 s), listens again
//!   and sends [`FeedEvent::Restored`](credstore_core::FeedEvent::Restored).
//!   A feed taken while it reconnects starts with `Lost`. The feed ends
//!   when the last handle of the store is dropped.
//! - Why notify after the commit, not inside the write's transaction: a
//!   transaction that notifies takes a global lock at its commit, which
//!   serializes the commits of concurrent writers and defeats group
//!   commit. The price: a process killed between a commit and its
//!   notification leaves the other replicas' caches on the old value until
//!   their TTL (the cache's fallback); a notification that fails to send is
//!   logged and reported to this process's subscribers as `Lost` then
//!   `Restored`.
//!
//! # Connections, timeouts and TLS
//! - A pool of [`PostgresConfig::max_connections`] (16) connections; a call
//!   waits at most [`PostgresConfig::acquire_timeout`] (5 s) for one, and a
//!   connection takes at most [`PostgresConfig::connect_timeout`] (5 s) to
//!   open. Statements are limited to [`PostgresConfig::statement_timeout`]
//!   (5 s) by the server (`statement_timeout`, set at login) and by the
//!   client, which gives up half a second later and drops the connection, so
//!   a server that hangs ends the call too. Each is a retriable
//!   [`Error::Unavailable`](credstore_core::Error::Unavailable).
//! - [`check_availability`](credstore_core::CredentialStore::check_availability)
//!   runs `SELECT 1` within [`PROBE_TIMEOUT`] on a connection of its own
//!   (made at the first probe, again after a failure), so a pool busy with
//!   writes does not read as a server that is down.
//! - TLS ([`TlsMode`]): `verify-full` checks the server's certificate
//!   against [`PostgresConfig::ca_file`] or, without one, the platform's
//!   roots, and its host name; `disable` sends no TLS. There is no mode
//!   that encrypts without verifying. The default is `verify-full`, except
//!   for a loopback host (`127.0.0.0/8`, `::1`, `localhost`) or a Unix
//!   socket, where it is `disable`; `disable` to any other host must be set
//!   in so many words and logs a warning at open. A handshake that fails is
//!   an [`Error::Config`](credstore_core::Error::Config), not retried.
//! - The password comes from [`PostgresConfig::password`] (settings:
//!   `password_file`, `password_env`) or a URL ([`PostgresConfig::from_url`];
//!   settings: `url_env`); the settings refuse an inline `url` holding a
//!   password. It is never logged nor shown in an error or `Debug`.
//!
//! # Driver
//! [tokio-postgres](https://docs.rs/tokio-postgres) pooled by
//! [deadpool-postgres](https://docs.rs/deadpool-postgres), TLS by
//! tokio-postgres-rustls on rustls with `ring` (as the Vault store builds
//! it; no aws-lc). Chosen over sqlx for its build (about 85 crates against
//! 130 for sqlx's PostgreSQL driver with the same TLS), no macros and no
//! build-time database or offline query metadata, and because LISTEN needs
//! only the connection's message stream
//! ([`tokio_postgres::Connection::poll_message`]).
//!
//! # Debug builds
//! Each login runs SCRAM-SHA-256 (4096 rounds of HMAC-SHA-256), slow
//! unoptimised. This workspace optimises `postgres-protocol`, `sha2` and
//! `hmac` in its dev profile; put the same `[profile.dev.package.*]`
//! lines (`opt-level = 2`) in your workspace's root `Cargo.toml` if its
//! debug builds open many connections.
//!
//! # Errors
//! Every error names the store, never a value or a password; the driver's
//! error is kept as the [`source`](std::error::Error::source). Unreachable
//! server, pool or statement timeouts and SQLSTATEs `40001`, `40P01`,
//! `57014`, `57P01`–`57P03`, `08xxx` and `53xxx` are retriable
//! [`Error::Unavailable`](credstore_core::Error::Unavailable); a refused
//! login (`28P01`, `28000`) or privilege (`42501`) is
//! [`Error::PermissionDenied`](credstore_core::Error::PermissionDenied); a
//! missing database (`3D000`) or a failed TLS handshake is
//! [`Error::Config`](credstore_core::Error::Config); anything else is
//! [`Error::Backend`](credstore_core::Error::Backend).
#![warn(missing_docs)]

mod config;
mod errors;
mod feed;
mod layout;
mod store;
mod tls;
#[cfg(feature = "serde")]
mod uri;
mod versions;

#[cfg(feature = "serde")]
pub use config::{KeySource, PostgresSettings};
pub use config::{
    PostgresConfig, TlsMode, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PORT, DEFAULT_RETENTION, DEFAULT_SCHEMA, DEFAULT_STATEMENT_TIMEOUT, MAX_SCHEMA_LEN,
};
pub use credstore_seal::{KeyFile, KeyProvider, MasterKey};
pub use store::{PostgresStore, PROBE_TIMEOUT};
#[cfg(feature = "serde")]
pub use uri::PostgresScheme;

/// The kind of every store of this crate: `postgres`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("postgres");

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
