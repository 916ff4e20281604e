//! [`PostgresStore`]: the [`CredentialStore`] implementation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use credstore_core::{
    Availability, Capabilities, ChangeFeed, Credential, CredentialKey, CredentialStore, Error, ListCursor,
    ListOptions, ListPage, Metadata, Namespace, PurgeTarget, Result, Retention, SecretValue, SetMode,
    SetOutcome, StoreId, StoreInfo, Version, VersionInfo, VersionListOptions, VersionPage, VersionState,
    WriteRequest,
};
use credstore_seal::{
    decode_payload_owned, encode_payload, DataKey, KeyProvider, KeyRecord, RowCipher, RowPlace, RowRole,
    StoreUid, ValueKind, FORMAT_V3, FORMAT_VERSION,
};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;

use crate::config::{PostgresConfig, TlsMode};
use crate::errors;
use crate::feed::Feed;
use crate::layout::{self, Sql};
use crate::versions::{KnownRows, VersionBlock};

/// How long [`CredentialStore::check_availability`] waits for its probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the client waits past the server's statement timeout before it
/// gives up on a call itself.
const CLIENT_GRACE: Duration = Duration::from_millis(500);
/// How many times an upsert retries when another writer changed the row
/// between its read and its write.
const UPSERT_ATTEMPTS: usize = 16;

/// The encrypted PostgreSQL credential store.
///
/// - One schema of one database holds any number of namespaces; every row
///   is sealed with AES-256-GCM under the store's data key (see the crate
///   docs).
/// - Cloning is cheap, and so is
///   [`with_namespace`](CredentialStore::with_namespace): every handle shares
///   the same pool, data key and change feed.
/// - Any number of processes may open the same schema at once (replicas):
///   conditional writes are atomic in SQL, versions come from one sequence.
///
/// `Debug` shows the id, schema and namespace only.
///
/// # Panics
/// [`PostgresStore::open`] spawns the change feed's notifier on the current
/// Tokio runtime, so it panics outside one. The pool's connections, the
/// notifier and the feed's listener run on the runtime that made them: use
/// the store while that runtime runs.
#[derive(Clone)]
pub struct PostgresStore {
    shared: Arc<Shared>,
    info: StoreInfo,
}

pub(crate) struct Shared {
    pub(crate) id: StoreId,
    pool: Pool,
    pub(crate) sql: Sql,
    cipher: RowCipher,
    /// The data key, for a rewrap (the cipher holds its expanded form).
    dek: DataKey,
    /// The key record as this store last read or wrote it.
    record: tokio::sync::Mutex<KeyRecord>,
    /// The client's limit for one call's statements.
    call_timeout: Duration,
    pub(crate) feed: Option<Feed>,
    /// Versions drawn from the sequence and not yet handed out.
    versions: VersionBlock,
    /// The version and creation time this store last saw of each key.
    known: KnownRows,
    /// How much of each key's history is kept.
    retention: Retention,
    /// The availability probe's own connection (made at the first probe,
    /// again after a failure), so that a busy pool never reads as a server
    /// that is down.
    probe: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    pg: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    connect_timeout: Duration,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("id", self.info.id())
            .field("schema", &self.shared.sql.schema)
            .field("namespace", self.info.namespace())
            .finish_non_exhaustive()
    }
}

/// Nanoseconds since the Unix epoch, by the system's clock (timestamps).
fn now_ns() -> i64 {
    ns_of(SystemTime::now())
}

/// `t` in nanoseconds since the Unix epoch (0 before it, `i64::MAX` past
/// 2262).
fn ns_of(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn time_of(ns: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
}

fn kind_code(kind: ValueKind) -> i16 {
    match kind {
        ValueKind::Text => 0,
        ValueKind::Binary => 1,
    }
}

/// Runs `$body` (an async block using `$conn`) under the store's client
/// timeout, and gives the connection back; one that timed out is taken out
/// of the pool, since it may still be busy with the statement.
macro_rules! timed {
    ($shared:expr, $conn:ident, $what:expr, $body:expr) => {{
        let shared: &Shared = $shared;
        let result = tokio::time::timeout(shared.call_timeout, $body).await;
        match result {
            Ok(r) => {
                drop($conn);
                r.map_err(|e: tokio_postgres::Error| errors::from_pg(&shared.id, $what, &e))
            }
            Err(_) => {
                drop(Object::take($conn));
                Err(errors::timed_out(&shared.id, $what, shared.call_timeout))
            }
        }
    }};
}

impl PostgresStore {
    /// Opens the store of `config`: connects, creates or checks the
    /// schema's tables (see the crate docs, "Layout" and "Migrations"), and
    /// unwraps the data key, drawing and wrapping it when the schema is new.
    ///
    /// # Behavior
    /// - Every setting is checked first: a misconfiguration fails with
    ///   [`Error::Config`] naming the store and the setting, before any I/O.
    /// - The key-encryption key is called once.
    /// - `tls = disable` to a host that is not loopback logs a warning.
    ///
    /// # Errors
    /// - [`Error::Config`] for a misconfiguration, a wrong key-encryption key
    ///   (`wrong key-encryption key`, nothing changed), a schema of a newer
    ///   version or holding another application's tables, a missing database.
    /// - [`Error::PermissionDenied`] when the login is refused or the user
    ///   may not create or use the schema.
    /// - [`Error::Unavailable`] when the server cannot be reached in time.
    pub async fn open(id: StoreId, config: PostgresConfig) -> Result<Self> {
        let resolved = config.resolve(&id)?;
        let kek: Arc<dyn KeyProvider> = match (&config.master_key, &config.key_file, &config.provider) {
            (Some(key), ..) => Arc::new(key.clone()),
            (None, Some(file), _) => Arc::new(file.read_or_create().map_err(|e| match e {
                Error::InvalidInput { .. } => Error::config(&id, e.to_string()),
                e => e,
            })?),
            (None, None, Some(provider)) => provider.clone(),
            (None, None, None) => unreachable!("resolve checks that a key is configured"),
        };
        if resolved.tls == TlsMode::Disable && resolved.remote {
            tracing::warn!(
                store = %id,
                "tls = \"disable\" to a host that is not loopback: sealed rows and key names cross the network \
                 in the clear"
            );
        }
        let connector = crate::tls::connector(resolved.roots).map_err(|e| Error::config(&id, e))?;
        let manager = Manager::from_config(
            resolved.pg.clone(),
            connector.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            // The connection used last goes out first: one caller at a
            // time keeps reusing one warm backend instead of waking each
            // idle one in turn.
            .queue_mode(QueueMode::Lifo)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.acquire_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| errors::backend(&id, format!("cannot build the connection pool: {e}")))?;
        let sql = Sql::new(&config.schema);
        let call_timeout = config.statement_timeout + CLIENT_GRACE;
        let (record, dek) = migrate_and_unlock(&id, &pool, &sql, call_timeout, kek.as_ref()).await?;
        drop(kek);
        let cipher = RowCipher::new(&dek, record.key_version(), record.uid());
        let feed = config.change_feed.then(|| {
            Feed::new(
                id.clone(),
                pool.clone(),
                sql.channel.clone(),
                resolved.pg.clone(),
                connector.clone(),
                config.connect_timeout,
                call_timeout,
            )
        });
        tracing::debug!(store = %id, schema = %sql.schema, "opened");
        // One version per key is no history at all: nothing to read back,
        // and a delete destroys.
        let history = config.retention.max_versions != Some(1);
        let caps = Capabilities::full()
            .with_change_feed(feed.is_some())
            .with_versions(history)
            .with_recover_deleted(history)
            .with_expiry(true)
            .with_retention(if history { config.retention } else { Retention::NONE });
        let mut info = StoreInfo::new(id.clone(), crate::KIND, caps).in_namespace(config.namespace.clone());
        if let Some(clock) = &config.clock {
            info = info.with_clock(clock.clone());
        }
        let shared = Shared {
            id,
            pool,
            sql,
            cipher,
            dek,
            record: tokio::sync::Mutex::new(record),
            call_timeout,
            feed,
            versions: VersionBlock::default(),
            known: KnownRows::default(),
            retention: config.retention,
            probe: tokio::sync::Mutex::new(None),
            pg: resolved.pg,
            tls: connector,
            connect_timeout: config.connect_timeout,
        };
        Ok(Self { shared: Arc::new(shared), info })
    }

    /// The schema of the store's tables.
    pub fn schema(&self) -> &str {
        &self.shared.sql.schema
    }

    /// The version of the data key: 1 (data key rotation is not offered by
    /// this store yet; see the crate docs).
    pub fn key_version(&self) -> u32 {
        self.shared.cipher.version()
    }

    /// Rotates the key-encryption key: the data key is rewrapped by
    /// `provider` (a new local key, the OS keychain, AWS KMS, Vault Transit)
    /// and the key record replaced in one statement; no credential is
    /// touched. One provider call.
    ///
    /// # Behavior
    /// - Afterwards the store opens with `provider` only; replicas that have
    ///   it open keep working (the data key is the same).
    /// - The record is replaced only if it is still the one this store read:
    ///   of two rewraps racing from two processes, one wins and the other
    ///   fails with [`Error::Conflict`], changing nothing.
    ///
    /// # Errors
    /// The provider's errors ([`KeyProvider::wrap`]), which change nothing;
    /// [`Error::Conflict`] when another process rewrapped the key first; the
    /// errors of a write otherwise.
    pub async fn rewrap_key(&self, provider: impl KeyProvider + 'static) -> Result<()> {
        let shared = &*self.shared;
        let mut record = shared.record.lock().await;
        let new = record.rewrap(&shared.id, &shared.dek, &provider).await?;
        let (old_bytes, new_bytes) = (record.to_bytes(), new.to_bytes());
        let what = "rewrap the data key";
        let conn = shared.conn(what).await?;
        let n = timed!(shared, conn, what, async {
            let st = conn.prepare_cached(&shared.sql.swap_key_record).await?;
            conn.execute(&st, &[&new_bytes, &old_bytes]).await
        })?;
        if n != 1 {
            return Err(Error::conflict(
                &shared.id,
                "the key record was rewrapped by another process since this store opened; nothing was changed \
                 (open the store again with the new key-encryption key)",
            ));
        }
        *record = new;
        tracing::info!(store = %shared.id, provider = %provider.info(), "key-encryption key rotated");
        Ok(())
    }
}

/// Creates or checks the schema and returns its key record and data key.
async fn migrate_and_unlock(
    id: &StoreId,
    pool: &Pool,
    sql: &Sql,
    call_timeout: Duration,
    kek: &dyn KeyProvider,
) -> Result<(KeyRecord, DataKey)> {
    let what = "open the store";
    let mut conn = pool.get().await.map_err(|e| errors::from_pool(id, what, e))?;
    let to = |e: tokio_postgres::Error| errors::from_pg(id, what, &e);
    // Fast path: a schema made already (no lock, no CREATE privilege needed).
    let meta = match tokio::time::timeout(call_timeout, conn.query(&sql.read_meta, &[])).await {
        Err(_) => return Err(errors::timed_out(id, what, call_timeout)),
        Ok(Ok(rows)) => Some(rows),
        Ok(Err(e)) if e.code().is_some_and(|c| c.code() == "42P01" || c.code() == "3F000") => None,
        Ok(Err(e)) => return Err(to(e)),
    };
    if let Some(rows) = &meta {
        if let (Some(layout::SCHEMA_VERSION), Some(record)) = parse_meta(id, sql, rows)? {
            let dek = record.unwrap(id, kek).await?;
            return Ok((record, dek));
        }
    }
    // Slow path: under the schema's advisory lock, in one transaction.
    let tx = tokio::time::timeout(call_timeout, conn.transaction())
        .await
        .map_err(|_| errors::timed_out(id, what, call_timeout))?
        .map_err(to)?;
    let locked = async {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&sql.lock_id]).await?;
        tx.batch_execute(&sql.migrate).await?;
        let rows = tx.query(&sql.read_meta, &[]).await?;
        if let Ok((Some(1), _)) = parse_meta(id, sql, &rows) {
            // A schema of 0.2: the columns of expiry and history (the
            // history table was made above). Committed below, once the
            // key-encryption key proved right.
            tx.batch_execute(&sql.upgrade_1_to_2).await?;
            tracing::info!(store = %id, schema = %sql.schema, "upgraded the schema's layout from 1 to 2 (history)");
            return tx.query(&sql.read_meta, &[]).await;
        }
        Ok(rows)
    };
    let rows = tokio::time::timeout(call_timeout * 2, locked)
        .await
        .map_err(|_| errors::timed_out(id, what, call_timeout * 2))?
        .map_err(|e| match e.code().map(|c| c.code()) {
            Some("42P07") => Error::config(
                id,
                format!("schema {} holds tables that are not a credential store's", sql.schema),
            ),
            _ => to(e),
        })?;
    if let (_, Some(record)) = parse_meta(id, sql, &rows)? {
        // Another replica made it while this one waited for the lock, or
        // a schema made by 0.2 was just upgraded: kept only with the right
        // key-encryption key (a wrong one changes nothing).
        let dek = record.unwrap(id, kek).await?;
        tokio::time::timeout(call_timeout, tx.commit())
            .await
            .map_err(|_| errors::timed_out(id, what, call_timeout))?
            .map_err(to)?;
        return Ok((record, dek));
    }
    let (uid, dek) = (StoreUid::generate(), DataKey::generate());
    let record = KeyRecord::wrap(id, uid, 1, &dek, kek).await?;
    let commit = async {
        tx.execute(&sql.insert_key_record, &[&record.to_bytes()]).await?;
        tx.commit().await
    };
    tokio::time::timeout(call_timeout, commit)
        .await
        .map_err(|_| errors::timed_out(id, what, call_timeout))?
        .map_err(to)?;
    tracing::info!(store = %id, schema = %sql.schema, "created the store's tables and data key");
    Ok((record, dek))
}

/// The layout version and the key record of `meta`'s rows, each `None`
/// when there is none yet.
fn parse_meta(
    id: &StoreId,
    sql: &Sql,
    rows: &[tokio_postgres::Row],
) -> Result<(Option<u32>, Option<KeyRecord>)> {
    let (mut layout_version, mut record) = (None, None);
    for row in rows {
        let name: &str = row.get(0);
        let value: &[u8] = row.get(1);
        match name {
            layout::META_SCHEMA_VERSION => {
                let version = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                match version {
                    Some(v) if (1..=layout::SCHEMA_VERSION).contains(&v) => layout_version = Some(v),
                    Some(v) if v > layout::SCHEMA_VERSION => {
                        return Err(Error::config(
                            id,
                            format!(
                            "schema {} is of version {v}, newer than this credstore's {}; upgrade credstore",
                            sql.schema,
                            layout::SCHEMA_VERSION
                        ),
                        ))
                    }
                    _ => {
                        return Err(Error::config(
                            id,
                            format!("schema {} has an unknown schema_version", sql.schema),
                        ))
                    }
                }
            }
            layout::META_KEY_RECORD => record = Some(KeyRecord::from_bytes(id, value)?),
            _ => {}
        }
    }
    Ok((layout_version, record))
}

impl Shared {
    async fn conn(&self, what: &str) -> Result<Object> {
        self.pool.get().await.map_err(|e| errors::from_pool(&self.id, what, e))
    }

    fn notify(&self, ns: &Namespace, key: &CredentialKey, version: Option<i64>) {
        if let Some(feed) = &self.feed {
            feed.notify(ns.as_str(), key.as_str(), version);
        }
    }
}

/// A sealed row, twice: as the current row and as its history row (what an
/// overwrite or a delete moves to the history without opening it), with
/// its kind's code.
struct Sealed {
    nonce: Vec<u8>,
    sealed: Vec<u8>,
    hist_nonce: Vec<u8>,
    hist_sealed: Vec<u8>,
    kind: i16,
}

/// What a write's read of the row found.
#[derive(Debug, Clone, Copy)]
struct Current {
    version: i64,
    created_ns: i64,
    expires_ns: Option<i64>,
}

/// Whether a row expiring at `expires_ns` still reads as present at `now`.
fn live(expires_ns: Option<i64>, now: i64) -> bool {
    expires_ns.is_none_or(|e| e > now)
}

/// The columns a read of a sealed row needs to open it.
struct RowColumns<'r> {
    role: RowRole,
    version: i64,
    created_ns: i64,
    updated_ns: i64,
    expires_ns: Option<i64>,
    kind: i16,
    key_version: i32,
    format: i16,
    nonce: &'r [u8],
    sealed: &'r [u8],
}

impl PostgresStore {
    fn ns(&self) -> &str {
        self.info.namespace().as_str()
    }

    /// The store clock's time (expiry, age retention), in nanoseconds.
    fn clock_ns(&self) -> i64 {
        ns_of(self.info.now())
    }

    /// The retention's parameters at `now` (see [`Sql`]): `cut`, and `off`
    /// for a write after which `rows_after` history rows of the key come
    /// on top of the existing ones (the new current row included).
    fn retention_params(&self, now: i64, rows_after: i64) -> (i64, i64) {
        let retention = &self.shared.retention;
        let cut = retention
            .max_age
            .map_or(i64::MIN, |age| now.saturating_sub(i64::try_from(age.as_nanos()).unwrap_or(i64::MAX)));
        let off = retention.max_versions.map_or(i64::MAX, |m| (i64::from(m) - rows_after).max(0));
        (cut, off)
    }

    /// Seals the request's value and metadata for the row at `version`,
    /// as the current row and as its history row.
    fn seal(
        &self,
        key: &CredentialKey,
        req: &WriteRequest<'_>,
        version: i64,
        created_ns: i64,
        updated_ns: i64,
        expires_ns: Option<i64>,
    ) -> Result<Sealed> {
        let kind = ValueKind::of(req.value());
        let place = RowPlace::new(self.ns(), key.as_str(), created_ns, updated_ns, version, kind)
            .with_expiry(expires_ns);
        let payload = encode_payload(req.value(), req.metadata());
        let cipher = &self.shared.cipher;
        let err = |e| errors::backend(&self.shared.id, e);
        let (nonce, sealed) = cipher.seal_row(&place, &payload).map_err(err)?;
        let (hist_nonce, hist_sealed) =
            cipher.seal_row(&place.with_role(RowRole::History), &payload).map_err(err)?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            sealed,
            hist_nonce: hist_nonce.to_vec(),
            hist_sealed,
            kind: kind_code(kind),
        })
    }

    /// Opens a row read from either table: its value and metadata, or
    /// [`Error::Integrity`] naming the key.
    fn open_row(&self, key: &CredentialKey, row: &RowColumns<'_>) -> Result<(SecretValue, Metadata)> {
        let shared = &*self.shared;
        let kind = match row.kind {
            0 => ValueKind::Text,
            1 => ValueKind::Binary,
            other => {
                return Err(errors::integrity(&shared.id, key, format!("the row's kind {other} is unknown")))
            }
        };
        // Rows written before row format 4 (credstore-postgres 0.2) are of
        // format 3: they open as current rows without expiry only.
        let known = row.format == i16::from(FORMAT_VERSION) || row.format == i16::from(FORMAT_V3);
        if i64::from(row.key_version) != i64::from(shared.cipher.version()) || !known {
            return Err(errors::integrity(
                &shared.id,
                key,
                format!(
                    "the row is sealed under key version {} in format {}, not this store's",
                    row.key_version, row.format
                ),
            ));
        }
        let place = RowPlace::new(self.ns(), key.as_str(), row.created_ns, row.updated_ns, row.version, kind)
            .with_role(row.role)
            .with_expiry(row.expires_ns);
        let plain = shared
            .cipher
            .open_row_format(row.format as u8, &place, row.nonce, row.sealed)
            .ok_or_else(|| {
                errors::integrity(
                    &shared.id,
                    key,
                    "the row fails authentication: it was edited, moved or copied from another store, or is \
                     another version's",
                )
            })?;
        decode_payload_owned(plain, FORMAT_VERSION, kind)
            .ok_or_else(|| errors::integrity(&shared.id, key, "the row's payload cannot be decoded"))
    }

    /// The credential of a current row of [`Sql::get`](crate::layout::Sql)
    /// (or `get_many`'s, whose first columns are the same), `None` when it
    /// expired by `now`; opened and authenticated for `key`.
    fn current_of(
        &self,
        key: &CredentialKey,
        row: &tokio_postgres::Row,
        now: i64,
    ) -> Result<Option<Credential>> {
        let columns = RowColumns {
            role: RowRole::Current,
            version: row.get(0),
            created_ns: row.get(1),
            updated_ns: row.get(2),
            kind: row.get(3),
            key_version: row.get(4),
            format: row.get(5),
            nonce: row.get(6),
            sealed: row.get(7),
            expires_ns: row.get(8),
        };
        if !live(columns.expires_ns, now) {
            return Ok(None);
        }
        let (value, metadata) = self.open_row(key, &columns)?;
        self.shared.known.saw(self.ns(), key.as_str(), columns.version, columns.created_ns);
        Ok(Some(credential(key, value, metadata, &columns)))
    }

    async fn read_current(
        &self,
        conn: &Object,
        key: &CredentialKey,
    ) -> std::result::Result<Option<Current>, tokio_postgres::Error> {
        let st = conn.prepare_cached(&self.shared.sql.read_for_write).await?;
        let row = conn.query_opt(&st, &[&self.ns(), &key.as_str()]).await?;
        Ok(row.map(|r| Current { created_ns: r.get(0), version: r.get(1), expires_ns: r.get(2) }))
    }

    /// Runs `sql` (one of the schema's statements, taking the namespace and
    /// the key, then `more`) on a pooled connection under the call timeout:
    /// at most one row. `what` names the operation in errors.
    async fn query_key(
        &self,
        what: &str,
        sql: &str,
        key: &CredentialKey,
        more: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>> {
        let shared = &*self.shared;
        let conn = shared.conn(what).await?;
        let (ns, k) = (self.ns(), key.as_str());
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&ns, &k];
        params.extend_from_slice(more);
        timed!(shared, conn, what, async {
            let st = conn.prepare_cached(sql).await?;
            conn.query_opt(&st, &params).await
        })
    }

    /// The version of the next write: from the block in hand, or from a
    /// new block drawn from the sequence.
    async fn next_version(&self, conn: &Object) -> std::result::Result<i64, tokio_postgres::Error> {
        if let Some(v) = self.shared.versions.take() {
            return Ok(v);
        }
        let st = conn.prepare_cached(&self.shared.sql.next_versions).await?;
        let mut drawn: Vec<i64> = conn.query(&st, &[]).await?.iter().map(|r| r.get(0)).collect();
        let first = drawn.pop().expect("generate_series yields the whole block");
        self.shared.versions.refill(drawn);
        Ok(first)
    }

    /// Inserts the key's row (a create), pruning the history a delete left.
    async fn insert(
        &self,
        conn: &Object,
        key: &CredentialKey,
        version: i64,
        now: i64,
        expires_ns: Option<i64>,
        sealed: &Sealed,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let st = conn.prepare_cached(&self.shared.sql.insert).await?;
        let key_version = self.shared.cipher.version() as i32;
        let format = i16::from(FORMAT_VERSION);
        let (cut, off) = self.retention_params(self.clock_ns(), 1);
        let params: [&(dyn ToSql + Sync); 14] = [
            &self.ns(),
            &key.as_str(),
            &version,
            &now,
            &expires_ns,
            &sealed.kind,
            &key_version,
            &format,
            &sealed.nonce,
            &sealed.sealed,
            &sealed.hist_nonce,
            &sealed.hist_sealed,
            &cut,
            &off,
        ];
        let row = conn.query_one(&st, &params).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Overwrites the row at version `expected` (not expired unless
    /// `over_expired`), moving it to the history and pruning the history in
    /// the same statement.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        conn: &Object,
        key: &CredentialKey,
        version: i64,
        created_ns: i64,
        now: i64,
        expires_ns: Option<i64>,
        sealed: &Sealed,
        expected: i64,
        over_expired: bool,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let st = conn.prepare_cached(&self.shared.sql.update).await?;
        let key_version = self.shared.cipher.version() as i32;
        let format = i16::from(FORMAT_VERSION);
        let clock = self.clock_ns();
        let live_after = if over_expired { i64::MIN } else { clock };
        let keep = self.keeps_history();
        let (cut, off) = self.retention_params(clock, 2);
        let params: [&(dyn ToSql + Sync); 19] = [
            &self.ns(),
            &key.as_str(),
            &version,
            &now,
            &sealed.kind,
            &key_version,
            &format,
            &sealed.nonce,
            &sealed.sealed,
            &expected,
            &created_ns,
            &expires_ns,
            &sealed.hist_nonce,
            &sealed.hist_sealed,
            &live_after,
            &clock,
            &keep,
            &cut,
            &off,
        ];
        let row = conn.query_one(&st, &params).await?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

/// The outcome of one attempt of a write.
enum Attempt {
    Done(SetOutcome, i64),
    Precondition(&'static str),
    Failed(Error),
    Retry,
}

/// Seals, or returns [`Attempt::Failed`] from the attempt.
macro_rules! sealed_or_fail {
    ($e:expr) => {
        match $e {
            Ok(s) => s,
            Err(e) => return Ok(Attempt::Failed(e)),
        }
    };
}

impl PostgresStore {
    /// One attempt of a write: [`Attempt::Retry`] when an upsert lost a race
    /// between its read and its write.
    async fn attempt(
        &self,
        conn: &Object,
        request: &WriteRequest<'_>,
        expected: Option<i64>,
    ) -> std::result::Result<Attempt, tokio_postgres::Error> {
        let key = request.key();
        let (ns, known) = (self.ns(), &self.shared.known);
        let now = now_ns();
        let expires = request.expires_at().map(ns_of);
        if let SetMode::Create = request.mode() {
            let v = self.next_version(conn).await?;
            let sealed = sealed_or_fail!(self.seal(key, request, v, now, now, expires));
            if self.insert(conn, key, v, now, expires, &sealed).await? == 1 {
                known.saw(ns, key.as_str(), v, now);
                return Ok(Attempt::Done(outcome(true, v, now, now), v));
            }
            // The key has a row: a create succeeds over an expired one,
            // which goes to the history as any row overwritten.
            return Ok(match self.read_current(conn, key).await? {
                None => Attempt::Retry,
                Some(cur) if live(cur.expires_ns, self.clock_ns()) => {
                    Attempt::Precondition("the key exists already")
                }
                Some(cur) => {
                    match self.update(conn, key, v, now, now, expires, &sealed, cur.version, true).await? {
                        0 => Attempt::Retry,
                        _ => {
                            known.saw(ns, key.as_str(), v, now);
                            Attempt::Done(outcome(true, v, now, now), v)
                        }
                    }
                }
            });
        }
        // An overwrite of the row this store last saw: one statement (see
        // `versions`), and a read only when the row moved on or expired.
        let sure = match (expected, known.get(ns, key.as_str())) {
            (Some(e), Some((v, created))) if v == e => Some((v, created)),
            (None, seen) => seen,
            _ => None,
        };
        let mut spare = None;
        if let Some((read, created)) = sure {
            let v = self.next_version(conn).await?;
            let sealed = sealed_or_fail!(self.seal(key, request, v, created, now, expires));
            if self.update(conn, key, v, created, now, expires, &sealed, read, false).await? == 1 {
                known.saw(ns, key.as_str(), v, created);
                return Ok(Attempt::Done(outcome(false, v, created, now), v));
            }
            known.forget(ns, key.as_str());
            if expected.is_some() {
                // The row at `expected` was created at `created`: it is no
                // longer there, or it expired.
                return Ok(Attempt::Precondition("the key is at another version, or expired"));
            }
            // Never written: still this process's to hand out.
            spare = Some(v);
        }
        let clock = self.clock_ns();
        let cur = self.read_current(conn, key).await?;
        let cur_live = cur.is_some_and(|c| live(c.expires_ns, clock));
        match (expected, cur) {
            (Some(_), None) => return Ok(Attempt::Precondition("the key does not exist")),
            (Some(_), Some(_)) if !cur_live => return Ok(Attempt::Precondition("the key has expired")),
            (Some(e), Some(c)) if e != c.version => {
                return Ok(Attempt::Precondition("the key is at another version"))
            }
            _ => {}
        }
        let v = match spare {
            Some(v) => v,
            None => self.next_version(conn).await?,
        };
        // Over an expired row the key starts anew, as after a delete.
        let created = match cur {
            Some(c) if cur_live => c.created_ns,
            _ => now,
        };
        let sealed = sealed_or_fail!(self.seal(key, request, v, created, now, expires));
        let written = match cur {
            None => self.insert(conn, key, v, now, expires, &sealed).await?,
            Some(c) => {
                self.update(conn, key, v, created, now, expires, &sealed, c.version, !cur_live).await?
            }
        };
        Ok(match written {
            0 if expected.is_some() => Attempt::Precondition("the key is at another version"),
            0 => Attempt::Retry,
            _ => {
                known.saw(ns, key.as_str(), v, created);
                Attempt::Done(outcome(!cur_live, v, created, now), v)
            }
        })
    }

    /// A row of [`Sql::get_version`] or [`Sql::list_versions`]: its
    /// columns, in their order there.
    fn kept_columns<'r>(row: &'r tokio_postgres::Row) -> RowColumns<'r> {
        RowColumns {
            role: if row.get::<_, bool>(0) { RowRole::Current } else { RowRole::History },
            version: row.get(1),
            created_ns: row.get(2),
            updated_ns: row.get(3),
            expires_ns: row.get(4),
            kind: row.get(6),
            key_version: row.get(7),
            format: row.get(8),
            nonce: row.get(9),
            sealed: row.get(10),
        }
    }

    /// Whether the store keeps any history (see [`Capabilities::versions`]).
    fn keeps_history(&self) -> bool {
        self.info.capabilities().versions
    }

    /// [`Error::Unsupported`] unless the store keeps a history.
    fn need_history(&self) -> Result<()> {
        match self.keeps_history() {
            true => Ok(()),
            false => Err(Error::unsupported(&self.shared.id, "version history")),
        }
    }

    /// The retention's bounds for reads: the most versions (`i64::MAX`
    /// unbounded) and `cut`.
    fn read_bounds(&self, now: i64) -> (i64, i64) {
        let max = self.shared.retention.max_versions.map_or(i64::MAX, i64::from);
        (max, self.retention_params(now, 0).0)
    }
}

#[async_trait]
impl CredentialStore for PostgresStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(Arc::new(Self { shared: self.shared.clone(), info: self.info.join(namespace)? }))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let shared = &*self.shared;
        let row = self.query_key("read a credential", &shared.sql.get, key, &[]).await?;
        let Some(row) = row else { return Ok(None) };
        self.current_of(key, &row, self.clock_ns())
    }

    /// One query for the whole batch (`key = ANY($2)`), each row opened as
    /// `get` opens it; the answers are one snapshot of the namespace.
    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        credstore_core::check_batch(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let shared = &*self.shared;
        let what = "read credentials";
        let by_name: HashMap<&str, &CredentialKey> = keys.iter().map(|k| (k.as_str(), k)).collect();
        let asked: Vec<&str> = by_name.keys().copied().collect();
        let conn = shared.conn(what).await?;
        let ns = self.ns();
        let rows = timed!(shared, conn, what, async {
            let st = conn.prepare_cached(&shared.sql.get_many).await?;
            conn.query(&st, &[&ns, &asked]).await
        })?;
        let now = self.clock_ns();
        let mut found: HashMap<&str, Credential> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let name: &str = row.get(9);
            // A row the query matched is one of the keys asked.
            let Some(&key) = by_name.get(name) else { continue };
            if let Some(c) = self.current_of(key, row, now)? {
                found.insert(key.as_str(), c);
            }
        }
        Ok(keys.iter().map(|k| found.get(k.as_str()).cloned()).collect())
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let shared = &*self.shared;
        let key = request.key();
        let what = "write a credential";
        let expected = match request.mode() {
            SetMode::Replace(v) => match v.as_str().parse::<i64>() {
                Ok(v) => Some(v),
                Err(_) => {
                    return Err(Error::precondition_failed(
                        &shared.id,
                        key,
                        "the key has never had that version",
                    ))
                }
            },
            SetMode::Create | SetMode::Upsert => None,
            _ => return Err(Error::unsupported(&shared.id, "this write mode")),
        };
        let conn = shared.conn(what).await?;
        let attempt: std::result::Result<Attempt, Error> = timed!(shared, conn, what, async {
            for _ in 0..UPSERT_ATTEMPTS {
                match self.attempt(&conn, request, expected).await? {
                    Attempt::Retry => continue,
                    other => return Ok(other),
                }
            }
            Ok(Attempt::Retry)
        });
        let done = match attempt? {
            Attempt::Done(outcome, v) => (outcome, v),
            Attempt::Failed(e) => return Err(e),
            Attempt::Precondition(reason) => return Err(Error::precondition_failed(&shared.id, key, reason)),
            Attempt::Retry => {
                return Err(Error::unavailable(
                    &shared.id,
                    format!(
                        "key '{key}' changed under {UPSERT_ATTEMPTS} attempts in a row to overwrite it: too much \
                         contention on one key; try again"
                    ),
                ))
            }
        };
        shared.notify(self.info.namespace(), key, Some(done.1));
        Ok(done.0)
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        Ok(self.version(key).await?.is_some())
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        let row = self.query_key("read a credential's version", &self.shared.sql.version, key, &[]).await?;
        Ok(row
            .filter(|r| live(r.get(1), self.clock_ns()))
            .map(|r| Version::from_counter(r.get::<_, i64>(0) as u64)))
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let shared = &*self.shared;
        let clock = self.clock_ns();
        let (cut, off) = self.retention_params(clock, 1);
        let keep = self.keeps_history();
        let params: [&(dyn ToSql + Sync); 4] = [&clock, &cut, &off, &keep];
        let row = self.query_key("delete a credential", &shared.sql.delete, key, &params).await?;
        shared.known.forget(self.ns(), key.as_str());
        let Some(row) = row else { return Ok(false) };
        shared.notify(self.info.namespace(), key, None);
        // An expired key read as absent already: its delete finds nothing.
        Ok(live(row.get(1), clock))
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.need_history()?;
        let Ok(version) = version.as_str().parse::<i64>() else { return Ok(None) };
        let (max, cut) = self.read_bounds(self.clock_ns());
        let sql = &self.shared.sql.get_version;
        let row = self.query_key("read a credential's version", sql, key, &[&max, &cut, &version]).await?;
        let Some(row) = row else { return Ok(None) };
        let columns = Self::kept_columns(&row);
        let (value, metadata) = self.open_row(key, &columns)?;
        Ok(Some(credential(key, value, metadata, &columns)))
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        let shared = &*self.shared;
        let what = "list a credential's versions";
        self.need_history()?;
        let after = match options.start_after() {
            None => None,
            Some(v) => match v.as_str().parse::<i64>() {
                Ok(v) => Some(v),
                // A version this store never gave: not kept.
                Err(_) => return Ok(VersionPage::default()),
            },
        };
        let now = self.clock_ns();
        let (max, cut) = self.read_bounds(now);
        let limit = options.limit() as i64 + 1;
        let conn = shared.conn(what).await?;
        let rows = timed!(shared, conn, what, async {
            let st = conn.prepare_cached(&shared.sql.list_versions).await?;
            conn.query(&st, &[&self.ns(), &key.as_str(), &max, &cut, &after, &limit]).await
        })?;
        let mut versions = Vec::with_capacity(rows.len().min(options.limit()));
        for row in rows.iter().take(options.limit()) {
            let columns = Self::kept_columns(row);
            let (_, metadata) = self.open_row(key, &columns)?;
            let state = if !live(columns.expires_ns, now) {
                VersionState::Expired
            } else if columns.role == RowRole::Current {
                VersionState::Current
            } else if row.get::<_, bool>(5) {
                VersionState::Deleted
            } else {
                VersionState::Previous
            };
            versions.push(
                VersionInfo::new(
                    Version::from_counter(columns.version as u64),
                    state,
                    time_of(columns.updated_ns),
                )
                .with_expires_at(columns.expires_ns.map(time_of))
                .with_metadata(metadata),
            );
        }
        let next_cursor =
            if rows.len() > options.limit() { versions.last().map(|v| v.version.clone()) } else { None };
        Ok(VersionPage { versions, next_cursor })
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        let shared = &*self.shared;
        let what = "purge a credential";
        match target {
            PurgeTarget::Key => {
                // Two statements in one transaction: the second one's
                // snapshot is taken once the first has the key's row, so
                // a write that held it (and moved the value it overwrote to
                // the history) has committed, and its history row is seen.
                let mut conn = shared.conn(what).await?;
                let (ns, k) = (self.ns(), key.as_str());
                let removed = timed!(shared, conn, what, async {
                    let tx = conn.transaction().await?;
                    let current = tx.prepare_cached(&shared.sql.purge_key_current).await?;
                    let history = tx.prepare_cached(&shared.sql.purge_key_history).await?;
                    let n =
                        tx.execute(&current, &[&ns, &k]).await? + tx.execute(&history, &[&ns, &k]).await?;
                    tx.commit().await?;
                    Ok(n)
                })?;
                shared.known.forget(self.ns(), key.as_str());
                let gone = removed > 0;
                if gone {
                    shared.notify(self.info.namespace(), key, None);
                }
                Ok(gone)
            }
            PurgeTarget::Version(version) => {
                self.need_history()?;
                let Ok(version) = version.as_str().parse::<i64>() else { return Ok(false) };
                let now = self.clock_ns();
                let row = self.query_key(what, &shared.sql.purge_version, key, &[&version, &now]).await?;
                let Some(row) = row else { return Ok(false) };
                let (current, expires): (Option<i64>, Option<i64>) = (row.get(0), row.get(1));
                let current_live = current.is_some() && live(expires, now);
                if current == Some(version) && current_live {
                    return Err(Error::precondition_failed(
                        &shared.id,
                        key,
                        "that version is the current one: write another first, then purge it",
                    ));
                }
                let (history, current_gone) = (row.get::<_, Option<i64>>(2), row.get::<_, i64>(3) > 0);
                if current_gone {
                    shared.known.forget(self.ns(), key.as_str());
                }
                if history.is_none() && !current_gone {
                    return Ok(false);
                }
                let now_current = current.filter(|_| current_live && !current_gone);
                shared.notify(self.info.namespace(), key, now_current);
                // A version past the age retention was no longer kept.
                let cut = self.retention_params(now, 0).0;
                Ok(current_gone || history.is_some_and(|superseded| superseded > cut))
            }
            _ => Err(Error::unsupported(&shared.id, "this purge target")),
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let shared = &*self.shared;
        let what = "list credentials";
        let after = options.cursor().map_or("", |c| c.start_after().as_str());
        let prefix = options.prefix();
        let end = layout::prefix_end(prefix);
        let limit = options.limit() as i64 + 1;
        let now = self.clock_ns();
        let conn = shared.conn(what).await?;
        let rows = timed!(shared, conn, what, async {
            let st = conn.prepare_cached(&shared.sql.list).await?;
            conn.query(&st, &[&self.ns(), &after, &prefix, &end.as_str(), &limit, &now]).await
        })?;
        let mut keys = Vec::with_capacity(rows.len());
        for row in &rows {
            let k: &str = row.get(0);
            keys.push(CredentialKey::new(k).map_err(|_| {
                errors::backend(&shared.id, "the credentials table holds a key that is not valid")
            })?);
        }
        let more = keys.len() > options.limit();
        keys.truncate(options.limit());
        let next_cursor = if more { keys.last().map(ListCursor::after) } else { None };
        Ok(ListPage { keys, next_cursor })
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        match &self.shared.feed {
            Some(feed) => feed.subscribe(self.info.namespace()).await,
            None => Err(Error::unsupported(&self.shared.id, "change feeds")),
        }
    }

    async fn check_availability(&self) -> Availability {
        match tokio::time::timeout(PROBE_TIMEOUT, self.shared.probe()).await {
            Ok(Ok(())) => Availability::up(),
            Ok(Err(e)) => Availability::down(e.to_string()),
            Err(_) => {
                // A connection that did not answer is not kept.
                if let Ok(mut held) = self.shared.probe.try_lock() {
                    *held = None;
                }
                Availability::down(format!("PostgreSQL did not answer within {PROBE_TIMEOUT:?}"))
            }
        }
    }
}

impl Shared {
    /// `SELECT 1` on the probe's own connection, made first if needed;
    /// a connection that failed is dropped.
    async fn probe(&self) -> Result<()> {
        let what = "probe the server";
        let mut held = self.probe.lock().await;
        if held.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, connection) =
                tokio::time::timeout(self.connect_timeout, self.pg.connect(self.tls.clone()))
                    .await
                    .map_err(|_| errors::timed_out(&self.id, what, self.connect_timeout))?
                    .map_err(|e| errors::from_pg(&self.id, what, &e))?;
            tokio::spawn(connection);
            *held = Some(client);
        }
        let client = held.as_ref().expect("connected above");
        if let Err(e) = client.simple_query("SELECT 1").await {
            *held = None;
            return Err(errors::from_pg(&self.id, what, &e));
        }
        Ok(())
    }
}

/// The credential of an opened row.
fn credential(
    key: &CredentialKey,
    value: SecretValue,
    metadata: Metadata,
    row: &RowColumns<'_>,
) -> Credential {
    Credential {
        key: key.clone(),
        value,
        metadata,
        version: Version::from_counter(row.version as u64),
        created_at: time_of(row.created_ns),
        updated_at: time_of(row.updated_ns),
        expires_at: row.expires_ns.map(time_of),
    }
}

fn outcome(created: bool, version: i64, created_ns: i64, updated_ns: i64) -> SetOutcome {
    SetOutcome {
        created,
        version: Version::from_counter(version as u64),
        created_at: time_of(created_ns),
        updated_at: time_of(updated_ns),
    }
}
