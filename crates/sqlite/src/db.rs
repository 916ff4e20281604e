//! The database file: creating it safely, opening connections, the schema and
//! its migrations, and the key check made at every opening.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{CredentialKey, Error, Namespace, Result, StoreId};
use rusqlite::ffi::ErrorCode;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use credstore_seal::files::weak_stored_params;
use credstore_seal::{
    decode_payload, encode_payload, DataKey, KeyProvider, KeyRecord, RowCipher, RowPlace, RowSetState,
    StoreUid, ValueKind, FORMAT_V1, FORMAT_V2, FORMAT_VERSION,
};

use crate::errors;
use crate::keys::{Keys, Prepared};
use crate::{MasterKey, SqliteConfig};

/// `PRAGMA application_id` of a credstore database: "CRDS".
pub(crate) const APPLICATION_ID: i32 = 0x4352_4453;

/// The metadata table: key version, sealed check value, passphrase
/// parameters, row format and the last row version handed out.
const CREATE_META: &str = "CREATE TABLE credstore_meta (
         name  TEXT PRIMARY KEY NOT NULL,
         value BLOB NOT NULL
     ) WITHOUT ROWID;";

/// The sealed credentials, one row per namespace and key, in a table named
/// `name`: the columns of schema 2 and, since schema 4, `expires_at`.
fn create_credentials(name: &str) -> String {
    format!(
        "CREATE TABLE {name} (
             ns          TEXT    NOT NULL,
             key         TEXT    NOT NULL,
             key_version INTEGER NOT NULL,
             nonce       BLOB    NOT NULL,
             sealed      BLOB    NOT NULL,
             created_at  INTEGER NOT NULL,
             updated_at  INTEGER NOT NULL,
             version     INTEGER NOT NULL,
             kind        TEXT    NOT NULL,
             expires_at  INTEGER,
             PRIMARY KEY (ns, key)
         ) WITHOUT ROWID;"
    )
}

/// The kept versions of each key (schema 4): one sealed row per version,
/// sealed as a history row (role `History`), bound to its place, version,
/// kind and expiry. `ended_at` is when the version stopped being current
/// (overwritten or deleted) by the store's clock, `deleted` whether a
/// delete ended it.
pub(crate) const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS credential_history (
         ns          TEXT    NOT NULL,
         key         TEXT    NOT NULL,
         version     INTEGER NOT NULL,
         key_version INTEGER NOT NULL,
         nonce       BLOB    NOT NULL,
         sealed      BLOB    NOT NULL,
         created_at  INTEGER NOT NULL,
         updated_at  INTEGER NOT NULL,
         kind        TEXT    NOT NULL,
         expires_at  INTEGER,
         ended_at    INTEGER,
         deleted     INTEGER NOT NULL DEFAULT 0,
         PRIMARY KEY (ns, key, version)
     ) WITHOUT ROWID;";

/// The schema version this build writes (`PRAGMA user_version`): rows
/// sealed under a data key (row formats 3 and 4), its key record in
/// `credstore_meta`, the `expires_at` column and the `credential_history`
/// table. Schema 3 had no history and no expiry: opening such a file adds
/// them, nothing else changes ([`add_history`]). Schema 2 (0.2) had the
/// tables of schema 3, its rows sealed directly under the master key
/// (format 2); such a file opens as it is (the history table and the
/// expiry column are added) and moves to schema 4 at its first write or
/// rotation. Schema 1 had no `version` and `kind` columns and sealed rows
/// in format 1; opening such a file migrates it to schema 2 first (see
/// [`migrate_v1`]).
pub(crate) const SCHEMA_VERSION: i64 = 4;
/// The first schema whose rows are sealed under a data key.
const DATA_KEY_SCHEMA: i64 = 3;
/// The schema of 0.2, and of 0.1's files once migrated at opening.
const LEGACY_SCHEMA: i64 = 2;

/// Names in `credstore_meta`.
pub(crate) const META_KEY_VERSION: &str = "key_version";
pub(crate) const META_CHECK: &str = "check";
pub(crate) const META_KDF: &str = "kdf";
pub(crate) const META_LAST_VERSION: &str = "last_version";
pub(crate) const META_FORMAT: &str = "format";
/// The key record: the store's uid and its data key, wrapped.
pub(crate) const META_KEY_RECORD: &str = "key_record";
/// The row set: the authenticated digest of the rows and the last version.
pub(crate) const META_ROW_SET: &str = "row_set";

/// Rows migrated per read of the old table.
const MIGRATION_CHUNK: i64 = 1000;

/// Which file a store opened: its device and inode, to notice a file that was
/// deleted or replaced while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn of(path: &Path) -> io::Result<Self> {
        let m = fs::metadata(path)?;
        Ok(Self { dev: m.dev(), ino: m.ino() })
    }
}

/// What [`open`] hands back: the writer connection, the keys and the file
/// it opened.
pub(crate) struct Opened {
    pub conn: Connection,
    pub keys: Keys,
    pub file: FileId,
    /// Which of the key-encryption keys given to [`open`] opened the database.
    pub key_index: usize,
}

/// A key-encryption key to try: a provider, and for a local master key the
/// key itself, which also opens a database of 0.2.
#[derive(Clone)]
pub(crate) struct Kek {
    pub provider: Arc<dyn KeyProvider>,
    pub legacy: Option<MasterKey>,
}

impl Kek {
    pub(crate) fn local(key: MasterKey) -> Self {
        Self { provider: Arc::new(key.clone()), legacy: Some(key) }
    }
}

/// Runs a provider call from the blocking pool (where [`open`] runs).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Handle::current().block_on(f)
}

/// Creates the directory and file if needed, opens the writer connection,
/// creates or migrates the schema and unwraps the data key.
/// `keks` are tried in turn on an existing database (the first is used for
/// a new one); none opening it is a `wrong master key` error. Runs on
/// Tokio's blocking pool: a provider's call is waited for here.
pub(crate) fn open(id: &StoreId, config: &SqliteConfig, keks: &[Kek]) -> Result<Opened> {
    let path = &config.path;
    let dir = prepare_file(id, path)?;
    let sql = |e: rusqlite::Error| {
        // SQLite says "cannot open" or "read-only" when it cannot create the
        // WAL files next to the database; name the real cause.
        let code = errors::code(&e);
        if matches!(code, Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)) && !writable(&dir) {
            return Error::permission_denied(
                id,
                format!(
                    "directory {} is not writable: SQLite must create the -wal and -shm files of {} there",
                    dir.display(),
                    path.display()
                ),
            )
            .with_source(errors::NativeError::of(&e));
        }
        errors::from_sqlite(id, path, &e)
    };
    let conn = connect(path, config.busy_timeout).map_err(sql)?;
    // The first read of the header is where a file that is not SQLite fails.
    // A foreign or newer database is refused before anything is written to it.
    refuse_unknown(id, path, snapshot(&conn, read_state).map_err(sql)?)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::config(
            id,
            format!("database {} cannot use write-ahead logging (journal mode {mode})", path.display()),
        ));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {};
         PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;",
        config.synchronous.pragma()
    ))
    .map_err(sql)?;
    if let Some(bytes) = config.max_size_bytes {
        let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(sql)?;
        let pages = (bytes / page.max(512) as u64).max(1);
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(())).map_err(sql)?;
    }
    let (keys, key_index) = prepare_schema(id, path, &conn, keks, config.verify_rows)?;
    add_history(id, path, &conn)?;
    let file = FileId::of(path).map_err(|e| errors::from_io(id, path, "inspect", &e))?;
    Ok(Opened { conn, keys, file, key_index })
}

/// Opens a connection to an existing database file, never creating one.
pub(crate) fn connect(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.execute_batch("PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON;")?;
    Ok(conn)
}

/// A connection for reads only, with the busy handler off: a read made on
/// the blocking pool sets the busy timeout for its duration.
pub(crate) fn connect_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = connect(path, Duration::ZERO)?;
    conn.execute_batch("PRAGMA query_only = ON;")?;
    Ok(conn)
}

/// Makes sure the file exists, created owner-only, before SQLite opens it, so
/// SQLite never creates it (or its WAL files, which copy its mode) with the
/// process umask.
/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Returns the directory of `path`.
fn prepare_file(id: &StoreId, path: &Path) -> Result<PathBuf> {
    let dir: PathBuf = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| errors::from_io(id, &dir, "create the directory", &e))?;
    }
    match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => {
            file.sync_all().map_err(|e| errors::from_io(id, path, "sync", &e))?;
            // The new directory entry must be durable too.
            if let Ok(d) = fs::File::open(&dir) {
                let _ = d.sync_all();
            }
            tracing::info!(path = %path.display(), "created a new credential database");
            Ok(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::metadata(path).map_err(|e| errors::from_io(id, path, "inspect", &e))?;
            if !meta.is_file() {
                return Err(Error::config(id, format!("{} is not a regular file", path.display())));
            }
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "credential database is accessible to others than its owner; chmod 600 it"
                );
            }
            Ok(dir)
        }
        Err(e) => Err(errors::from_io(id, path, "create", &e)),
    }
}

enum State {
    Empty,
    Foreign,
    TooNew(i64),
    Ours(i64),
}

fn read_state(conn: &Connection) -> rusqlite::Result<State> {
    let app: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    Ok(match (app, version, objects) {
        (0, 0, 0) => State::Empty,
        (APPLICATION_ID, v, _) if v > SCHEMA_VERSION => State::TooNew(v),
        (APPLICATION_ID, v, _) if v >= 1 => State::Ours(v),
        _ => State::Foreign,
    })
}

/// Refuses a database of another application or of a newer schema.
fn refuse_unknown(id: &StoreId, path: &Path, state: State) -> Result<()> {
    let reason = match state {
        State::Foreign => format!(
            "{} is a SQLite database of another application, not a credential database; it was left untouched",
            path.display()
        ),
        State::TooNew(v) => format!(
            "database {} has schema version {v}, newer than this build knows ({SCHEMA_VERSION}); upgrade \
             credstore-sqlite",
            path.display()
        ),
        State::Empty | State::Ours(_) => return Ok(()),
    };
    Err(Error::config(id, reason))
}

/// Reads the state in one read transaction.
pub(crate) fn snapshot<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("BEGIN")?;
    let out = f(conn);
    conn.execute_batch("COMMIT")?;
    out
}

fn prepare_schema(
    id: &StoreId,
    path: &Path,
    conn: &Connection,
    keks: &[Kek],
    verify: bool,
) -> Result<(Keys, usize)> {
    let first = keks.first().ok_or_else(|| Error::config(id, "no master key configured"))?;
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let damaged = |what: &str| {
        Error::config(id, format!("database {} is damaged: its {what} is missing or invalid", path.display()))
    };
    // Two rounds at most: a new file another process initializes between our
    // look and our write lock is then opened as an existing one.
    for _ in 0..2 {
        match snapshot(conn, read_state).map_err(sql)? {
            state @ (State::Foreign | State::TooNew(_)) => refuse_unknown(id, path, state)?,
            State::Empty => {
                // Wrap before taking the write lock: a provider may take a while.
                let (uid, dek) = (StoreUid::generate(), DataKey::generate());
                let record = block_on(KeyRecord::wrap(id, uid, 1, &dek, first.provider.as_ref()))?;
                let cipher = RowCipher::new(&dek, 1, uid);
                let check = cipher.seal_check().map_err(|e| errors::backend(id, e))?;
                let row_set =
                    cipher.row_set().expect("a data key's cipher").seal_state(&RowSetState::default());
                conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
                let initialized = (|| {
                    if !matches!(read_state(conn)?, State::Empty) {
                        return Ok(false);
                    }
                    conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))?;
                    create_schema(conn)?;
                    let put = "INSERT INTO credstore_meta (name, value) VALUES (?1, ?2)";
                    conn.execute(put, rusqlite::params![META_FORMAT, i64::from(FORMAT_VERSION)])?;
                    conn.execute(put, rusqlite::params![META_LAST_VERSION, 0i64])?;
                    conn.execute(put, rusqlite::params![META_KEY_VERSION, 1i64])?;
                    conn.execute(put, rusqlite::params![META_CHECK, check])?;
                    conn.execute(put, rusqlite::params![META_KEY_RECORD, record.to_bytes()])?;
                    conn.execute(put, rusqlite::params![META_ROW_SET, row_set])?;
                    Ok(true)
                })();
                match initialized {
                    Ok(true) => {
                        if let Err(e) = conn.execute_batch("COMMIT") {
                            let _ = conn.execute_batch("ROLLBACK");
                            return Err(sql(e));
                        }
                        let keys = Keys {
                            current: Arc::new(cipher),
                            pending: None,
                            dek: Some(dek),
                            provider: first.provider.clone(),
                            upgrade: None,
                        };
                        return Ok((keys, 0));
                    }
                    Ok(false) => conn.execute_batch("ROLLBACK").map_err(sql)?,
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(sql(e));
                    }
                }
            }
            State::Ours(version) if version >= DATA_KEY_SCHEMA => {
                let (key_version, check, record) = snapshot(conn, read_key_meta).map_err(sql)?;
                let key_version = key_version.ok_or_else(|| damaged("key version"))?;
                let check = check.ok_or_else(|| damaged("key check value"))?;
                let record = KeyRecord::from_bytes(id, &record.ok_or_else(|| damaged("key record"))?)?;
                if record.key_version() != key_version {
                    return Err(damaged("key record's version"));
                }
                let mut refused = None;
                for (index, kek) in keks.iter().enumerate() {
                    match block_on(record.unwrap(id, kek.provider.as_ref())) {
                        Ok(dek) => {
                            let cipher = RowCipher::new(&dek, key_version, record.uid());
                            if !cipher.verify_check(&check) {
                                return Err(Error::config(
                                    id,
                                    format!(
                                        "database {} is damaged: its key record does not match its check value \
                                         (the record's uid or the check was edited)",
                                        path.display()
                                    ),
                                ));
                            }
                            if verify {
                                verify_rows(id, path, conn, &cipher)?;
                            } else {
                                tracing::warn!(path = %path.display(), "the rows were not checked against their authenticated state at this opening (verify_rows = false)");
                            }
                            let keys = Keys {
                                current: Arc::new(cipher),
                                pending: None,
                                dek: Some(dek),
                                provider: kek.provider.clone(),
                                upgrade: None,
                            };
                            return Ok((keys, index));
                        }
                        // The wrong key: try the next one.
                        Err(e @ Error::Config { .. }) => refused = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                return Err(match refused {
                    Some(Error::Config { reason, .. }) => errors::wrong_key_because(id, path, &reason),
                    _ => errors::wrong_key(id, path),
                });
            }
            State::Ours(version) => return open_legacy(id, path, conn, keks, version),
        }
    }
    Err(errors::backend(id, format!("database {} changed state twice while being opened", path.display())))
}

/// The state of the rows as they are: their digest under `cipher`'s row
/// set, their number and highest version. Runs in the caller's transaction.
pub(crate) fn rows_state(conn: &Connection, cipher: &RowCipher) -> rusqlite::Result<(RowSetState, i64)> {
    let set = cipher.row_set().expect("a data key's cipher");
    let mut state = RowSetState::default();
    let mut max_version = 0i64;
    let mut stmt = conn.prepare("SELECT ns, key, version, created_at, updated_at FROM credentials")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (ns, key) = (r.get_ref(0)?.as_str().unwrap_or(""), r.get_ref(1)?.as_str().unwrap_or(""));
        let (version, created, updated) =
            (lenient_int(r.get_ref(2)?), lenient_int(r.get_ref(3)?), lenient_int(r.get_ref(4)?));
        state.add(&set.element(ns, key, version, created, updated));
        max_version = max_version.max(version);
    }
    Ok((state, max_version))
}

/// Checks, in one read transaction, that the rows are the ones the row set
/// recorded at the last write: none rolled back to an older copy, removed
/// or added outside credstore (see the crate docs, "Encryption").
pub(crate) fn verify_rows(id: &StoreId, path: &Path, conn: &Connection, cipher: &RowCipher) -> Result<u64> {
    let set = cipher.row_set().expect("a data key's cipher");
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let (record, last_version, (rows, max_version)) = snapshot(conn, |c| {
        let last: i64 =
            c.query_row("SELECT value FROM credstore_meta WHERE name = ?1", [META_LAST_VERSION], |r| {
                Ok(lenient_int(r.get_ref(0)?))
            })?;
        Ok((read_blob(c, META_ROW_SET)?, last, rows_state(c, cipher)?))
    })
    .map_err(sql)?;
    let recorded = record.as_deref().and_then(|r| set.open_state(r));
    match recorded {
        Some(recorded) if recorded.last_version == last_version && recorded.matches(&rows, max_version) => {
            Ok(rows.count())
        }
        _ => Err(Error::config(
            id,
            format!(
                "database {} failed its integrity check: its rows are not the ones its last write left (a row \
                 was put back to an older copy of itself, removed or added outside credstore, or its row set \
                 record was edited); no value was read. Restore the file from a backup, or, to accept the rows \
                 as they are, open it with verify_rows = false and rotate its data key",
                path.display()
            ),
        )),
    }
}

/// Opens a database of schema 2 (0.2), or 1 (migrated to 2 first), with
/// a master key: its rows stay sealed under that key, and the data key its
/// first write moves it to is drawn and wrapped now.
fn open_legacy(
    id: &StoreId,
    path: &Path,
    conn: &Connection,
    keks: &[Kek],
    version: i64,
) -> Result<(Keys, usize)> {
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let config = |reason: String| Error::config(id, reason);
    let damaged = |what: &str| {
        Error::config(id, format!("database {} is damaged: its {what} is missing or invalid", path.display()))
    };
    let (key_version, check, _) = snapshot(conn, read_key_meta).map_err(sql)?;
    let kdf = snapshot(conn, |c| read_blob(c, META_KDF)).map_err(sql)?;
    let key_version = key_version.ok_or_else(|| damaged("key version"))?;
    let check = check.ok_or_else(|| damaged("key check value"))?;
    if keks.iter().all(|k| k.legacy.is_none()) {
        return Err(config(format!(
            "database {} is in the format of credstore 0.2, sealed directly under its master key, which {} \
             cannot give: open it once with its master key (master_key_file, master_key_env or a passphrase); \
             its first write moves it to a data key, which rewrap-key can then put under this provider",
            path.display(),
            keks[0].provider.info()
        )));
    }
    let mut opened = None;
    for (index, kek) in keks.iter().enumerate() {
        let Some(key) = &kek.legacy else { continue };
        let (material, _) = key.resolve(kdf.as_deref(), false).map_err(config)?;
        let cipher = RowCipher::legacy(&material, key_version);
        if cipher.verify_check(&check) {
            opened = Some((cipher, index));
            break;
        }
    }
    let Some((cipher, index)) = opened else { return Err(errors::wrong_key(id, path)) };
    let kek = &keks[index];
    if let Some(weak) = kdf
        .as_deref()
        .filter(|_| kek.legacy.as_ref().is_some_and(MasterKey::is_passphrase))
        .and_then(weak_stored_params)
    {
        tracing::warn!(
            path = %path.display(),
            memory_kib = weak.memory_kib(),
            iterations = weak.iterations(),
            "the passphrase of this database is stretched with Argon2id parameters below OWASP's minimum (19 \
             MiB, 2 passes), as 0.2 allowed; its first write (or rotate-key) wraps its new data key under the \
             current defaults"
        );
    }
    if version < LEGACY_SCHEMA {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
        match upgrade(id, path, conn, &cipher).and_then(|()| conn.execute_batch("COMMIT").map_err(sql)) {
            Ok(()) => {}
            Err(e) => {
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                return Err(e);
            }
        }
    }
    let next = key_version.checked_add(1).ok_or_else(|| errors::backend(id, "key version overflow"))?;
    let upgrade = block_on(prepare(id, StoreUid::generate(), next, kek.provider.clone()))?;
    let keys = Keys {
        current: Arc::new(cipher),
        pending: None,
        dek: None,
        provider: kek.provider.clone(),
        upgrade: Some(Arc::new(upgrade)),
    };
    Ok((keys, index))
}

/// A fresh data key of version `version` for the store `uid`, wrapped by
/// `provider`: one provider call.
pub(crate) async fn prepare(
    id: &StoreId,
    uid: StoreUid,
    version: u32,
    provider: Arc<dyn KeyProvider>,
) -> Result<Prepared> {
    let dek = DataKey::generate();
    let record = KeyRecord::wrap(id, uid, version, &dek, provider.as_ref()).await?;
    Ok(Prepared { cipher: Arc::new(RowCipher::new(&dek, version, uid)), dek, record, provider })
}

/// Creates the schema of this build in an empty database, inside the
/// caller's transaction.
fn create_schema(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(CREATE_META)?;
    conn.execute_batch(&create_credentials("credentials"))?;
    conn.execute_batch(CREATE_HISTORY)?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
}

/// Adds what schema 4 has and older files lack, once their key is checked,
/// in one write transaction: the `expires_at` column of `credentials`
/// (NULL: no expiry, as every row written before) and the empty
/// `credential_history` table; a file of schema 3 becomes schema 4. Rows
/// are not touched: writes made before keep their row and have no history.
/// Files of schemas 1 and 2 keep their schema version (their rows are
/// sealed under the master key until their first write moves them on).
fn add_history(id: &StoreId, path: &Path, conn: &Connection) -> Result<()> {
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let done = |c: &Connection| -> rusqlite::Result<bool> {
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let history: i64 = c.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'credential_history'",
            [],
            |r| r.get(0),
        )?;
        Ok(v != DATA_KEY_SCHEMA && history == 1 && has_expiry_column(c)?)
    };
    if snapshot(conn, done).map_err(sql)? {
        return Ok(());
    }
    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
    let added = (|| {
        if !has_expiry_column(conn)? {
            conn.execute_batch("ALTER TABLE credentials ADD COLUMN expires_at INTEGER;")?;
        }
        conn.execute_batch(CREATE_HISTORY)?;
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if v == DATA_KEY_SCHEMA {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))?;
        }
        conn.execute_batch("COMMIT")
    })();
    if let Err(e) = added {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        return Err(sql(e));
    }
    tracing::info!(path = %path.display(), "added the version history and expiry of schema {SCHEMA_VERSION}");
    Ok(())
}

fn has_expiry_column(conn: &Connection) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_table_info('credentials') WHERE name = 'expires_at'",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n == 1)
}

/// Migrates an older schema to this build's, inside the caller's write
/// transaction. The schema version is read again under the lock: another
/// process may have migrated the file meanwhile.
fn upgrade(id: &StoreId, path: &Path, conn: &Connection, cipher: &RowCipher) -> Result<()> {
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let from: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sql)?;
    if from >= LEGACY_SCHEMA {
        return Ok(());
    }
    // The key checked before the lock must still be the file's.
    let (on_disk, check, _) = read_key_meta(conn).map_err(sql)?;
    if on_disk != Some(cipher.version()) || !check.as_deref().is_some_and(|c| cipher.verify_check(c)) {
        return Err(errors::rotated_elsewhere(id, path, cipher.version(), on_disk.unwrap_or(0)));
    }
    let rows = migrate_v1(id, path, conn, cipher)?;
    conn.execute_batch(&format!("PRAGMA user_version = {LEGACY_SCHEMA};")).map_err(sql)?;
    tracing::info!(path = %path.display(), from, to = LEGACY_SCHEMA, rows, "migrated the schema");
    Ok(())
}

/// Schema 1 to 2: every row is opened in format 1 (text values; the
/// associated data binds no version or kind), given a version from 1 up in
/// `(ns, key)` order and the kind `text`, and re-sealed in format 2 into a
/// new table that then replaces the old one; `last_version` is the number
/// of rows. A row that fails authentication fails the migration, which
/// changes nothing. Returns the number of rows.
fn migrate_v1(id: &StoreId, path: &Path, conn: &Connection, cipher: &RowCipher) -> Result<i64> {
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    conn.execute_batch(&create_credentials("credentials_v2")).map_err(sql)?;
    let mut next = 0i64;
    let mut unreachable = 0usize;
    let mut after = (String::new(), String::new());
    loop {
        let rows = read_v1_chunk(conn, &after).map_err(sql)?;
        let Some(last) = rows.last() else { break };
        after = (last.ns.clone(), last.key.clone());
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO credentials_v2 (ns, key, key_version, nonce, sealed, created_at, updated_at, version, kind)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(sql)?;
        for row in &rows {
            let tampered = |reason: &str| {
                match CredentialKey::new(row.key.as_str()) {
                Ok(key) => errors::integrity(
                    id,
                    &key,
                    format!(
                        "{reason}, so the database cannot be migrated to schema {LEGACY_SCHEMA}; nothing was \
                         changed: restore the database from a backup, or delete this row (namespace {:?}) with \
                         the sqlite3 tool",
                        row.ns
                    ),
                ),
                Err(_) => errors::backend(id, "a row of schema 1 holds an invalid key name; nothing was migrated"),
            }
            };
            next += 1;
            let old = RowPlace::new(&row.ns, &row.key, row.created, row.updated, 0, ValueKind::Text);
            if row.seal.key_version != i64::from(cipher.version()) {
                return Err(tampered("the row is sealed under another key version"));
            }
            let plain = cipher
                .open_row_format(FORMAT_V1, &old, &row.seal.nonce, &row.seal.sealed)
                .ok_or_else(|| tampered("stored data failed authentication"))?;
            let (value, metadata) = decode_payload(&plain, FORMAT_V1, ValueKind::Text)
                .ok_or_else(|| tampered("the authenticated payload is malformed"))?;
            let payload = encode_payload(&value, &metadata);
            let place = RowPlace { version: next, ..old };
            let (nonce, sealed) = cipher.seal_row(&place, &payload).map_err(|e| errors::backend(id, e))?;
            insert
                .execute(rusqlite::params![
                    row.ns,
                    row.key,
                    cipher.version(),
                    &nonce[..],
                    sealed,
                    row.created,
                    row.updated,
                    next,
                    ValueKind::Text.as_str()
                ])
                .map_err(sql)?;
            if !row.ns.is_empty() && Namespace::new(row.ns.as_str()).is_err() {
                unreachable += 1;
            }
        }
    }
    conn.execute_batch("DROP TABLE credentials; ALTER TABLE credentials_v2 RENAME TO credentials;")
        .map_err(sql)?;
    let put = "INSERT OR REPLACE INTO credstore_meta (name, value) VALUES (?1, ?2)";
    conn.execute(put, rusqlite::params![META_LAST_VERSION, next]).map_err(sql)?;
    conn.execute(put, rusqlite::params![META_FORMAT, i64::from(FORMAT_V2)]).map_err(sql)?;
    if unreachable > 0 {
        tracing::warn!(
            path = %path.display(),
            rows = unreachable,
            "rows in namespaces that break the namespace rules of this version (longer than {} bytes, or with \
             `.` or `..` segments) were migrated but no handle can reach them",
            credstore_core::MAX_NAMESPACE_LEN
        );
    }
    Ok(next)
}

/// The sealed columns of a row, the same in schemas 1 and 2, read in
/// chunks in key order by the migration and the key rotation: where the
/// row is, its seal, and its times (`created_at`, `updated_at`, in
/// nanoseconds since the Unix epoch).
pub(crate) struct SealedRow {
    pub ns: String,
    pub key: String,
    pub seal: Seal,
    pub created: i64,
    pub updated: i64,
}

/// A row's seal: the master key version it is sealed under
/// (`key_version`), its `nonce`, and the `sealed` payload.
pub(crate) struct Seal {
    pub key_version: i64,
    pub nonce: Vec<u8>,
    pub sealed: Vec<u8>,
}

impl SealedRow {
    /// The columns [`SealedRow::read`] takes, in its order, for the start of
    /// a `SELECT`.
    pub(crate) const COLUMNS: &'static str = "ns, key, key_version, nonce, sealed, created_at, updated_at";

    /// The first seven columns of `r`, selected as [`SealedRow::COLUMNS`].
    /// Columns of the wrong type (a tampered row) become values that fail
    /// authentication, so the row is reported by key.
    pub(crate) fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        let blob = |v: rusqlite::types::ValueRef<'_>| v.as_blob().map(<[u8]>::to_vec).unwrap_or_default();
        Ok(SealedRow {
            ns: r.get(0)?,
            key: r.get(1)?,
            seal: Seal {
                key_version: lenient_int(r.get_ref(2)?),
                nonce: blob(r.get_ref(3)?),
                sealed: blob(r.get_ref(4)?),
            },
            created: lenient_int(r.get_ref(5)?),
            updated: lenient_int(r.get_ref(6)?),
        })
    }
}

/// An integer column, or a value no row holds (`i64::MIN`) when it is not
/// an integer, so that the row fails authentication.
pub(crate) fn lenient_int(v: rusqlite::types::ValueRef<'_>) -> i64 {
    v.as_i64().unwrap_or(i64::MIN)
}

fn read_v1_chunk(conn: &Connection, after: &(String, String)) -> rusqlite::Result<Vec<SealedRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM credentials WHERE (ns, key) > (?1, ?2) ORDER BY ns, key LIMIT ?3",
        SealedRow::COLUMNS
    ))?;
    let rows = stmt.query_map(rusqlite::params![after.0, after.1, MIGRATION_CHUNK], SealedRow::read)?;
    rows.collect()
}

/// Whether `key` opens the existing database at `path` (it unwraps the
/// data key, or for a database of 0.2 its check value authenticates), read
/// on a connection of its own. Runs on Tokio's blocking pool.
pub(crate) fn key_opens(id: &StoreId, path: &Path, key: &MasterKey) -> Result<bool> {
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let conn = connect(path, crate::DEFAULT_BUSY_TIMEOUT).map_err(sql)?;
    let (version, check, record) = snapshot(&conn, read_key_meta).map_err(sql)?;
    let (Some(version), Some(check)) = (version, check) else { return Ok(false) };
    if let Some(record) = record {
        let record = KeyRecord::from_bytes(id, &record)?;
        return match block_on(record.unwrap(id, key)) {
            Ok(dek) => Ok(RowCipher::new(&dek, version, record.uid()).verify_check(&check)),
            Err(Error::Config { .. }) => Ok(false),
            Err(e) => Err(e),
        };
    }
    let kdf = snapshot(&conn, |c| read_blob(c, META_KDF)).map_err(sql)?;
    let (material, _) = key.resolve(kdf.as_deref(), false).map_err(|reason| Error::config(id, reason))?;
    Ok(RowCipher::legacy(&material, version).verify_check(&check))
}

/// The key version, check value and key record (none in a database of
/// 0.2), as stored.
pub(crate) type KeyMeta = (Option<u32>, Option<Vec<u8>>, Option<Vec<u8>>);

pub(crate) fn read_key_meta(conn: &Connection) -> rusqlite::Result<KeyMeta> {
    let version = read_key_version(conn)?;
    Ok((version, read_blob(conn, META_CHECK)?, read_blob(conn, META_KEY_RECORD)?))
}

/// A blob of `credstore_meta`; `None` when missing or not a blob.
pub(crate) fn read_blob(conn: &Connection, name: &str) -> rusqlite::Result<Option<Vec<u8>>> {
    conn.prepare_cached("SELECT value FROM credstore_meta WHERE name = ?1")?
        .query_row([name], |r| r.get::<_, Vec<u8>>(0))
        .optional()
        .or_else(|e| match e {
            rusqlite::Error::InvalidColumnType(..) => Ok(None),
            e => Err(e),
        })
}

/// The stored key version; `None` when missing or not a positive 32-bit integer.
pub(crate) fn read_key_version(conn: &Connection) -> rusqlite::Result<Option<u32>> {
    let v: Option<rusqlite::types::Value> = conn
        .prepare_cached("SELECT value FROM credstore_meta WHERE name = ?1")?
        .query_row([META_KEY_VERSION], |r| r.get(0))
        .optional()?;
    Ok(match v {
        Some(rusqlite::types::Value::Integer(n)) => u32::try_from(n).ok().filter(|&n| n >= 1),
        _ => None,
    })
}

/// `t` in nanoseconds since the Unix epoch, as the database keeps times;
/// times before it clamp to 0, times past the year 2262 to `i64::MAX`.
pub(crate) fn to_nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_built_with_its_version() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("BEGIN").unwrap();
        create_schema(&conn).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let columns: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('credentials')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(
            columns,
            [
                "ns",
                "key",
                "key_version",
                "nonce",
                "sealed",
                "created_at",
                "updated_at",
                "version",
                "kind",
                "expires_at"
            ]
        );
    }

    #[test]
    fn state_tells_empty_foreign_newer_and_ours() {
        let conn = Connection::open_in_memory().unwrap();
        assert!(matches!(read_state(&conn).unwrap(), State::Empty));
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        assert!(matches!(read_state(&conn).unwrap(), State::Foreign));
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"))
            .unwrap();
        assert!(matches!(read_state(&conn).unwrap(), State::Ours(1)));
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
        assert!(matches!(read_state(&conn).unwrap(), State::TooNew(99)));
    }
}
