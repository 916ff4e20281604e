//! The database file: creating it safely, opening connections, the schema and
//! its migrations, and the key check made at every opening.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use credstore_core::{Error, Result, StoreId};
use rusqlite::ffi::ErrorCode;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::crypto::{RowCipher, FORMAT_VERSION};
use crate::errors;
use crate::{MasterKey, SqliteConfig};

/// `PRAGMA application_id` of a credstore database: "CRDS".
pub(crate) const APPLICATION_ID: i32 = 0x4352_4453;

/// Schema migrations; entry `i` takes `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the metadata table (key version, sealed check value, passphrase
    // parameters) and the sealed credentials, one row per namespace and key.
    "CREATE TABLE credstore_meta (
         name  TEXT PRIMARY KEY NOT NULL,
         value BLOB NOT NULL
     ) WITHOUT ROWID;
     CREATE TABLE credentials (
         ns          TEXT    NOT NULL,
         key         TEXT    NOT NULL,
         key_version INTEGER NOT NULL,
         nonce       BLOB    NOT NULL,
         sealed      BLOB    NOT NULL,
         created_at  INTEGER NOT NULL,
         updated_at  INTEGER NOT NULL,
         PRIMARY KEY (ns, key)
     ) WITHOUT ROWID;",
];

/// The schema version this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Names in `credstore_meta`.
pub(crate) const META_KEY_VERSION: &str = "key_version";
pub(crate) const META_CHECK: &str = "check";
pub(crate) const META_KDF: &str = "kdf";
const META_FORMAT: &str = "format";

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

/// What [`open`] hands back: the writer connection, the current key and the
/// file it opened.
pub(crate) struct Opened {
    pub conn: Connection,
    pub cipher: RowCipher,
    pub file: FileId,
}

/// Creates the directory and file if needed, opens the writer connection,
/// creates or migrates the schema and checks the master key.
pub(crate) fn open(id: &StoreId, config: &SqliteConfig, key: &MasterKey) -> Result<Opened> {
    let path = &config.path;
    let dir = prepare_file(id, path)?;
    let sql = |e: rusqlite::Error| {
        // SQLite says "cannot open" or "read-only" when it cannot create the
        // WAL files next to the database; name the real cause.
        let code = errors::code(&e);
        if matches!(code, Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)) && !writable(&dir) {
            return Error::PermissionDenied {
                store: id.clone(),
                reason: format!(
                    "directory {} is not writable: SQLite must create the -wal and -shm files of {} there",
                    dir.display(),
                    path.display()
                ),
            };
        }
        errors::from_sqlite(id, path, &e)
    };
    let conn = connect(path, config.busy_timeout).map_err(sql)?;
    // The first read of the header is where a file that is not SQLite fails.
    // A foreign or newer database is refused before anything is written to it.
    refuse_unknown(id, path, snapshot(&conn, read_state).map_err(sql)?)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::Config {
            store: id.clone(),
            reason: format!(
                "database {} cannot use write-ahead logging (journal mode {mode})",
                path.display()
            ),
        });
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
    let cipher = prepare_schema(id, path, &conn, key)?;
    let file = FileId::of(path).map_err(|e| errors::from_io(id, path, "inspect", &e))?;
    Ok(Opened { conn, cipher, file })
}

/// Opens a connection to an existing database file, never creating one.
pub(crate) fn connect(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(busy_timeout)?;
    conn.execute_batch("PRAGMA trusted_schema = OFF; PRAGMA cell_size_check = ON;")?;
    Ok(conn)
}

/// A connection for reads only.
pub(crate) fn connect_reader(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = connect(path, busy_timeout)?;
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
                return Err(Error::Config {
                    store: id.clone(),
                    reason: format!("{} is not a regular file", path.display()),
                });
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
    Err(Error::Config { store: id.clone(), reason })
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

fn prepare_schema(id: &StoreId, path: &Path, conn: &Connection, key: &MasterKey) -> Result<RowCipher> {
    let sql = |e: rusqlite::Error| errors::from_sqlite(id, path, &e);
    let config = |reason: String| Error::Config { store: id.clone(), reason };
    // Two rounds at most: a new file another process initializes between our
    // look and our write lock is then opened as an existing one.
    for _ in 0..2 {
        match snapshot(conn, read_state).map_err(sql)? {
            state @ (State::Foreign | State::TooNew(_)) => refuse_unknown(id, path, state)?,
            State::Empty => {
                // Derive before taking the write lock: Argon2id takes a while.
                let (material, kdf) = key.resolve(None, true).map_err(config)?;
                let cipher = RowCipher::new(&material, 1);
                let check = cipher.seal_check().map_err(|e| errors::backend(id, e))?;
                conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
                let initialized = (|| {
                    if !matches!(read_state(conn)?, State::Empty) {
                        return Ok(false);
                    }
                    conn.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID};"))?;
                    migrate(conn, 0)?;
                    let put = "INSERT INTO credstore_meta (name, value) VALUES (?1, ?2)";
                    conn.execute(put, rusqlite::params![META_FORMAT, i64::from(FORMAT_VERSION)])?;
                    conn.execute(put, rusqlite::params![META_KEY_VERSION, 1i64])?;
                    conn.execute(put, rusqlite::params![META_CHECK, check])?;
                    if let Some(kdf) = &kdf {
                        conn.execute(put, rusqlite::params![META_KDF, kdf])?;
                    }
                    Ok(true)
                })();
                match initialized {
                    Ok(true) => {
                        if let Err(e) = conn.execute_batch("COMMIT") {
                            let _ = conn.execute_batch("ROLLBACK");
                            return Err(sql(e));
                        }
                        return Ok(cipher);
                    }
                    Ok(false) => conn.execute_batch("ROLLBACK").map_err(sql)?,
                    Err(e) => {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(sql(e));
                    }
                }
            }
            State::Ours(version) => {
                let (key_version, check, kdf) = snapshot(conn, read_key_meta).map_err(sql)?;
                let damaged = |what: &str| {
                    config(format!(
                        "database {} is damaged: its {what} is missing or invalid",
                        path.display()
                    ))
                };
                let key_version = key_version.ok_or_else(|| damaged("key version"))?;
                let check = check.ok_or_else(|| damaged("key check value"))?;
                let (material, _) = key.resolve(kdf.as_deref(), false).map_err(config)?;
                let cipher = RowCipher::new(&material, key_version);
                if !cipher.verify_check(&check) {
                    return Err(errors::wrong_key(id, path));
                }
                if version < SCHEMA_VERSION {
                    conn.execute_batch("BEGIN IMMEDIATE").map_err(sql)?;
                    let migrated = (|| {
                        let now: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                        migrate(conn, now)
                    })();
                    if let Err(e) = migrated.and_then(|()| conn.execute_batch("COMMIT")) {
                        let _ = conn.execute_batch("ROLLBACK");
                        return Err(sql(e));
                    }
                    tracing::info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "migrated schema");
                }
                return Ok(cipher);
            }
        }
    }
    Err(errors::backend(id, format!("database {} changed state twice while being opened", path.display())))
}

/// Applies the migrations after `from`, inside the caller's transaction.
fn migrate(conn: &Connection, from: i64) -> rusqlite::Result<()> {
    for sql in MIGRATIONS.iter().skip(from.max(0) as usize) {
        conn.execute_batch(sql)?;
    }
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION};"))
}

/// The key version, check value and passphrase record, as stored.
pub(crate) type KeyMeta = (Option<u32>, Option<Vec<u8>>, Option<Vec<u8>>);

pub(crate) fn read_key_meta(conn: &Connection) -> rusqlite::Result<KeyMeta> {
    let version = read_key_version(conn)?;
    let blob = |name: &str| -> rusqlite::Result<Option<Vec<u8>>> {
        conn.prepare_cached("SELECT value FROM credstore_meta WHERE name = ?1")?
            .query_row([name], |r| r.get::<_, Vec<u8>>(0))
            .optional()
            .or_else(|e| match e {
                rusqlite::Error::InvalidColumnType(..) => Ok(None),
                e => Err(e),
            })
    };
    Ok((version, blob(META_CHECK)?, blob(META_KDF)?))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_build_the_schema_and_set_the_version() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("BEGIN").unwrap();
        migrate(&conn, 0).unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let v: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('credstore_meta', 'credentials')",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
        // Applying from the current version is a no-op.
        migrate(&conn, SCHEMA_VERSION).unwrap();
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
