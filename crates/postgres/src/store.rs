//! [`PostgresStore`]: the [`CredentialStore`] implementation.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use credstore_core::{
    Availability, Capabilities, ChangeFeed, Credential, CredentialKey, CredentialStore, Error, ListCursor,
    ListOptions, ListPage, Namespace, Result, SetMode, SetOutcome, StoreId, StoreInfo, Version, WriteRequest,
};
use credstore_seal::{
    decode_payload_owned, encode_payload, DataKey, KeyProvider, KeyRecord, RowCipher, RowPlace, StoreUid,
    ValueKind, FORMAT_V3, FORMAT_VERSION,
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

/// Nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
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
        let caps = Capabilities::full().with_change_feed(feed.is_some());
        let info = StoreInfo::new(id.clone(), crate::KIND, caps).in_namespace(config.namespace.clone());
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
        if let Some(record) = parse_meta(id, sql, rows)? {
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
        tx.query(&sql.read_meta, &[]).await
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
    if let Some(record) = parse_meta(id, sql, &rows)? {
        // Another replica made it while this one waited for the lock.
        drop(tx);
        let dek = record.unwrap(id, kek).await?;
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

/// The key record of `meta`'s rows, `None` when there is none yet.
fn parse_meta(id: &StoreId, sql: &Sql, rows: &[tokio_postgres::Row]) -> Result<Option<KeyRecord>> {
    let mut record = None;
    for row in rows {
        let name: &str = row.get(0);
        let value: &[u8] = row.get(1);
        match name {
            layout::META_SCHEMA_VERSION => {
                let version = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                match version {
                    Some(v) if v == layout::SCHEMA_VERSION => {}
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
    Ok(record)
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

/// A sealed row: its nonce, its ciphertext and its kind's code.
type Sealed = (Vec<u8>, Vec<u8>, i16);

/// What a write's read of the row found: its version and `created_ns`,
/// `None` when the key is missing.
type Current = Option<(i64, i64)>;

impl PostgresStore {
    fn ns(&self) -> &str {
        self.info.namespace().as_str()
    }

    fn seal(
        &self,
        key: &CredentialKey,
        req: &WriteRequest<'_>,
        version: i64,
        created_ns: i64,
        updated_ns: i64,
    ) -> Result<Sealed> {
        let kind = ValueKind::of(req.value());
        let place = RowPlace::new(self.ns(), key.as_str(), created_ns, updated_ns, version, kind);
        let payload = encode_payload(req.value(), req.metadata());
        let (nonce, sealed) =
            self.shared.cipher.seal_row(&place, &payload).map_err(|e| errors::backend(&self.shared.id, e))?;
        Ok((nonce.to_vec(), sealed, kind_code(kind)))
    }

    async fn read_current(
        &self,
        conn: &Object,
        key: &CredentialKey,
    ) -> std::result::Result<Current, tokio_postgres::Error> {
        let st = conn.prepare_cached(&self.shared.sql.read_for_write).await?;
        let row = conn.query_opt(&st, &[&self.ns(), &key.as_str()]).await?;
        Ok(row.map(|r| (r.get(1), r.get(0))))
    }

    /// Runs `sql` (one of the schema's statements, taking the namespace and
    /// the key) on a pooled connection under the call timeout: at most one
    /// row. `what` names the operation in errors.
    async fn query_key(
        &self,
        what: &str,
        sql: &str,
        key: &CredentialKey,
    ) -> Result<Option<tokio_postgres::Row>> {
        let shared = &*self.shared;
        let conn = shared.conn(what).await?;
        timed!(shared, conn, what, async {
            let st = conn.prepare_cached(sql).await?;
            conn.query_opt(&st, &[&self.ns(), &key.as_str()]).await
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

    async fn insert(
        &self,
        conn: &Object,
        key: &CredentialKey,
        version: i64,
        now: i64,
        sealed: &Sealed,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let st = conn.prepare_cached(&self.shared.sql.insert).await?;
        let (nonce, ct, kind) = sealed;
        let key_version = self.shared.cipher.version() as i32;
        let format = i16::from(FORMAT_VERSION);
        let params: [&(dyn ToSql + Sync); 10] =
            [&self.ns(), &key.as_str(), &version, &now, &now, kind, &key_version, &format, nonce, ct];
        conn.execute(&st, &params).await
    }

    async fn update(
        &self,
        conn: &Object,
        key: &CredentialKey,
        version: i64,
        now: i64,
        sealed: &Sealed,
        expected: i64,
    ) -> std::result::Result<u64, tokio_postgres::Error> {
        let st = conn.prepare_cached(&self.shared.sql.update).await?;
        let (nonce, ct, kind) = sealed;
        let key_version = self.shared.cipher.version() as i32;
        let format = i16::from(FORMAT_VERSION);
        let params: [&(dyn ToSql + Sync); 10] =
            [&self.ns(), &key.as_str(), &version, &now, kind, &key_version, &format, nonce, ct, &expected];
        conn.execute(&st, &params).await
    }
}

/// The outcome of one attempt of a write.
enum Attempt {
    Done(SetOutcome, i64),
    Precondition(&'static str),
    Failed(Error),
    Retry,
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
        if let SetMode::Create = request.mode() {
            let v = self.next_version(conn).await?;
            let sealed = match self.seal(key, request, v, now, now) {
                Ok(s) => s,
                Err(e) => return Ok(Attempt::Failed(e)),
            };
            return Ok(match self.insert(conn, key, v, now, &sealed).await? {
                0 => Attempt::Precondition("the key exists already"),
                _ => {
                    known.saw(ns, key.as_str(), v, now);
                    Attempt::Done(outcome(true, v, now, now), v)
                }
            });
        }
        // An overwrite of the row this store last saw: one statement (see
        // `versions`), and a read only when the row moved on.
        let sure = match (expected, known.get(ns, key.as_str())) {
            (Some(e), Some((v, created))) if v == e => Some((v, created)),
            (None, seen) => seen,
            _ => None,
        };
        if let Some((read, created)) = sure {
            let v = self.next_version(conn).await?;
            let sealed = match self.seal(key, request, v, created, now) {
                Ok(s) => s,
                Err(e) => return Ok(Attempt::Failed(e)),
            };
            if self.update(conn, key, v, now, &sealed, read).await? == 1 {
                known.saw(ns, key.as_str(), v, created);
                return Ok(Attempt::Done(outcome(false, v, created, now), v));
            }
            known.forget(ns, key.as_str());
            if expected.is_some() {
                // The row at `expected` was created at `created`: it is no
                // longer there.
                return Ok(Attempt::Precondition("the key is at another version"));
            }
        }
        let cur = self.read_current(conn, key).await?;
        match (expected, cur) {
            (Some(_), None) => return Ok(Attempt::Precondition("the key does not exist")),
            (Some(e), Some((v, _))) if e != v => {
                return Ok(Attempt::Precondition("the key is at another version"))
            }
            _ => {}
        }
        let v = self.next_version(conn).await?;
        let created = cur.map_or(now, |(_, created)| created);
        let sealed = match self.seal(key, request, v, created, now) {
            Ok(s) => s,
            Err(e) => return Ok(Attempt::Failed(e)),
        };
        let written = match cur {
            None => self.insert(conn, key, v, now, &sealed).await?,
            Some((read, _)) => self.update(conn, key, v, now, &sealed, read).await?,
        };
        Ok(match (written, cur) {
            (0, Some(_)) if expected.is_some() => Attempt::Precondition("the key is at another version"),
            (0, _) => Attempt::Retry,
            (_, None) => {
                known.saw(ns, key.as_str(), v, now);
                Attempt::Done(outcome(true, v, now, now), v)
            }
            (_, Some(_)) => {
                known.saw(ns, key.as_str(), v, created);
                Attempt::Done(outcome(false, v, created, now), v)
            }
        })
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
        let row = self.query_key("read a credential", &shared.sql.get, key).await?;
        let Some(row) = row else { return Ok(None) };
        let version: i64 = row.get(0);
        let created_ns: i64 = row.get(1);
        let updated_ns: i64 = row.get(2);
        let kind = match row.get::<_, i16>(3) {
            0 => ValueKind::Text,
            1 => ValueKind::Binary,
            other => {
                return Err(errors::integrity(&shared.id, key, format!("the row's kind {other} is unknown")))
            }
        };
        let key_version: i32 = row.get(4);
        let format: i16 = row.get(5);
        // Rows written before row format 4 are format 3: they open as current
        // rows without expiry.
        let known = format == i16::from(FORMAT_VERSION) || format == i16::from(FORMAT_V3);
        if i64::from(key_version) != i64::from(shared.cipher.version()) || !known {
            return Err(errors::integrity(
                &shared.id,
                key,
                format!(
                    "the row is sealed under key version {key_version} in format {format}, not this store's"
                ),
            ));
        }
        let place = RowPlace::new(self.ns(), key.as_str(), created_ns, updated_ns, version, kind);
        let nonce: &[u8] = row.get(6);
        let sealed: &[u8] = row.get(7);
        let plain = shared.cipher.open_row_format(format as u8, &place, nonce, sealed).ok_or_else(|| {
            errors::integrity(
                &shared.id,
                key,
                "the row fails authentication: it was edited, moved or copied from another store",
            )
        })?;
        let (value, metadata) = decode_payload_owned(plain, FORMAT_VERSION, kind)
            .ok_or_else(|| errors::integrity(&shared.id, key, "the row's payload cannot be decoded"))?;
        shared.known.saw(self.ns(), key.as_str(), version, created_ns);
        Ok(Some(Credential {
            key: key.clone(),
            value,
            metadata,
            version: Version::from_counter(version as u64),
            created_at: time_of(created_ns),
            updated_at: time_of(updated_ns),
            expires_at: None,
        }))
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let shared = &*self.shared;
        let key = request.key();
        let what = "write a credential";
        let conn = shared.conn(what).await?;
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
        let row = self.query_key("read a credential's version", &self.shared.sql.version, key).await?;
        Ok(row.map(|r| Version::from_counter(r.get::<_, i64>(0) as u64)))
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let shared = &*self.shared;
        let row = self.query_key("delete a credential", &shared.sql.delete, key).await?;
        shared.known.forget(self.ns(), key.as_str());
        if row.is_some() {
            shared.notify(self.info.namespace(), key, None);
        }
        Ok(row.is_some())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let shared = &*self.shared;
        let what = "list credentials";
        let after = options.cursor().map_or("", |c| c.start_after().as_str());
        let prefix = options.prefix();
        let end = layout::prefix_end(prefix);
        let limit = options.limit() as i64 + 1;
        let conn = shared.conn(what).await?;
        let rows = timed!(shared, conn, what, async {
            let st = conn.prepare_cached(&shared.sql.list).await?;
            conn.query(&st, &[&self.ns(), &after, &prefix, &end.as_str(), &limit]).await
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

fn outcome(created: bool, version: i64, created_ns: i64, updated_ns: i64) -> SetOutcome {
    SetOutcome {
        created,
        version: Version::from_counter(version as u64),
        created_at: time_of(created_ns),
        updated_at: time_of(updated_ns),
    }
}
