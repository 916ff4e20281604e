//! Opening the configured stores.
//!
//! Stores open concurrently. A store that fails to open (a wrong master
//! key, an unreadable file) does not stop the server: it is served as
//! unavailable, with the failure as its `reason`, and the error is logged.
//! One whose opening failed with a retriable error (a key provider or a
//! service that cannot be reached) is opened again by its prober until it
//! opens, and serves from then on ([`PendingStore`]).
//!
//! A store configured with `cache = { .. }` is served through a
//! [`CacheLayer`](credstore_layers::CacheLayer) over its timeout layer (see
//! [`Stores::with_caches`]); the CLI's one-off commands
//! ([`open_one`]) read the stores directly, without a cache.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use credstore_core::layers::TimeoutLayer;
use credstore_core::{CredentialStore, CredentialStoreExt, StoreExt};
use credstore_sqlite::{KeySource, MasterKey, RotationKind, RotationReport, SqliteSettings, SqliteStore};

use crate::config::{Settings, StoreSpec};
pub use crate::runtime::pending::{PendingStore, Retry};
use crate::runtime::state::{FailedStore, Stores};

/// Opens one store, on its root namespace.
///
/// # Errors
/// Why the store cannot be opened, in plain words (no secret).
pub async fn open_store(spec: &StoreSpec) -> Result<Arc<dyn CredentialStore>, String> {
    spec.open().await.map_err(|e| e.to_string())
}

/// Opens one store, or stands in a store that says why it is not open:
/// [`open_or_retried`] with the default probe interval and opening timeout.
pub async fn open_or_failed(spec: &StoreSpec) -> Arc<dyn CredentialStore> {
    open_or_retried(spec, Retry::default()).await
}

/// Opens one store, or stands in a store that says why it is not open: a
/// [`PendingStore`], opened again by its prober as `retry` says, when the
/// opening failed with a retriable error ([`Error::Unavailable`]: a key
/// provider or service that cannot be reached) or took longer than
/// `retry.open_timeout`; a [`FailedStore`] otherwise (a wrong key, a bad
/// setting).
///
/// [`Error::Unavailable`]: credstore_core::Error::Unavailable
pub async fn open_or_retried(spec: &StoreSpec, retry: Retry) -> Arc<dyn CredentialStore> {
    let opened = match tokio::time::timeout(retry.open_timeout, spec.open()).await {
        Ok(opened) => opened,
        Err(_) => Err(credstore_core::Error::unavailable(
            spec.id(),
            format!("opening took longer than {} ms", retry.open_timeout.as_millis()),
        )),
    };
    match opened {
        Ok(store) => {
            tracing::info!(store = %spec.id(), kind = %store.kind(), "store opened");
            store
        }
        Err(e @ credstore_core::Error::Unavailable { .. }) => {
            tracing::warn!(store = %spec.id(), error = %e, "cannot open store yet; serving it as unavailable and trying again at each probe");
            PendingStore::arc(spec.clone(), &e, retry)
        }
        Err(e) => {
            let reason = e.to_string();
            tracing::error!(store = %spec.id(), %reason, "cannot open store; serving it as unavailable");
            FailedStore::arc(spec.id().clone(), spec.kind(), reason)
        }
    }
}

/// Opens every store of `settings`, concurrently, each bounded by
/// `settings.store_timeout`, and cached where `settings.caches` says so (see
/// [`Stores::with_caches`]).
///
/// # Errors
/// Only a duplicate id, which [`Settings`] already rules out.
pub async fn open_all(settings: &Settings) -> credstore_core::Result<Stores> {
    let retry = Retry::of(settings);
    let stores =
        futures::future::join_all(settings.stores.iter().map(|spec| open_or_retried(spec, retry))).await;
    let stores = stores
        .into_iter()
        .map(|store| {
            let cache = settings.cache(store.id().as_str());
            (store, cache)
        })
        .collect();
    Stores::with_caches(stores, settings.store_timeout)
}

/// Opens the store `id` of `settings` for a CLI command, on its root
/// namespace, every call bounded by `settings.store_timeout`. A configured
/// cache is not applied: a one-off command reads the store itself.
///
/// # Errors
/// No such store, or it cannot be opened.
pub async fn open_one(settings: &Settings, id: &str) -> Result<Arc<dyn CredentialStore>, String> {
    let spec = settings.store(id).ok_or_else(|| {
        let ids: Vec<String> = settings.stores.iter().map(|s| s.id().to_string()).collect();
        format!("no store with id '{id}'; the stores are: {}", ids.join(", "))
    })?;
    let store = open_store(spec).await?;
    Ok(store.with_layer(TimeoutLayer::new(settings.store_timeout)))
}

/// The providers that keep a store's key-encryption key off its data
/// directory, as the start-up warning names them.
pub const PROVIDERS_OFF_THE_BOX: &str = "aws-kms, vault-transit, keychain, passphrase";

/// An encrypted SQLite store whose key file is in the same directory as its
/// database: one copy of that directory (a backup, a stolen disk) holds the
/// data and the key that opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBesideData {
    /// The store.
    pub store: credstore_core::StoreId,
    /// Its database file (absolute).
    pub database: PathBuf,
    /// Its key file, in the same directory (absolute).
    pub key_file: PathBuf,
}

/// The encrypted SQLite stores of `settings` whose key file
/// (`master_key_file`, or `key = { provider = "master-key", key_file = .. }`)
/// is in the directory of their database, as `sqlite-default`'s
/// `master.key` is beside `sqlite-default.db` unless `CREDSTORE_MASTER_KEY`
/// is set. Paths are compared after resolving symbolic links where they
/// exist.
pub fn keys_beside_data(settings: &Settings) -> Vec<KeyBesideData> {
    settings
        .stores
        .iter()
        .filter_map(|spec| {
            let sqlite = spec.settings::<SqliteSettings>()?;
            let ctx = spec.context();
            let key_file = match (spec.key(), sqlite.master_key()) {
                (Some(key), _) => key.key_file(ctx)?.path().to_owned(),
                (None, KeySource::File(path)) => ctx.path(path),
                (None, _) => return None,
            };
            let database = ctx.path(sqlite.path());
            let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
            same_dir(&database, &key_file).then(|| KeyBesideData {
                store: spec.id().clone(),
                database: absolute(database),
                key_file: absolute(key_file),
            })
        })
        .collect()
}

/// Whether the files `a` and `b` are in the same directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    let dir = |p: &Path| {
        let absolute = std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        let parent = absolute.parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::canonicalize(&parent).unwrap_or(parent)
    };
    dir(a) == dir(b)
}

/// Logs one `warn` line for each store of [`keys_beside_data`], naming the
/// store, both paths and the providers that keep the key elsewhere.
pub fn warn_keys_beside_data(settings: &Settings) {
    for found in keys_beside_data(settings) {
        tracing::warn!(
            store = %found.store,
            database = %found.database.display(),
            key_file = %found.key_file.display(),
            "the key of this store is in the same directory as its data: one copy of that directory \
             (a backup, a stolen disk) reads every credential; keep the key elsewhere with \
             key = {{ provider = .. }}: {PROVIDERS_OFF_THE_BOX}"
        );
    }
}

/// Creates the data directory (owner-only, `0700`) when it does not exist.
///
/// # Errors
/// It cannot be created.
pub fn prepare_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Where `rotate-key` gets the new master key.
pub enum NewKey {
    /// A file holding its base64.
    File(std::path::PathBuf),
    /// Its base64, read from stdin.
    Text(zeroize::Zeroizing<String>),
    /// Generate one; the store's key must live in a key file, which is replaced.
    Generate,
}

/// The spec and settings of the encrypted SQLite store `id` of `settings`.
fn sqlite_spec<'a>(settings: &'a Settings, id: &str) -> Result<(&'a StoreSpec, &'a SqliteSettings), String> {
    let spec = settings.store(id).ok_or_else(|| format!("no store with id '{id}'"))?;
    match spec.settings::<SqliteSettings>() {
        Some(sqlite) => Ok((spec, sqlite)),
        None => Err(format!("store '{id}' is not an encrypted SQLite store")),
    }
}

/// Opens the encrypted SQLite store of `spec` with its configured key.
async fn open_sqlite(spec: &StoreSpec, sqlite: &SqliteSettings) -> Result<SqliteStore, String> {
    crate::config::keys::open_sqlite(spec.id().clone(), sqlite, spec.key(), spec.context())
        .await
        .map_err(|e| e.to_string())
}

/// The key file the store of `spec` is keyed by, resolved: its
/// `master_key_file`, or the `key_file` of a `master-key` provider.
fn key_file_of(spec: &StoreSpec, sqlite: &SqliteSettings) -> Option<PathBuf> {
    match (spec.key(), sqlite.master_key()) {
        (Some(key), _) => key.key_file(spec.context()).map(|f| f.path().to_owned()),
        (None, KeySource::File(path)) => Some(spec.context().path(path)),
        (None, _) => None,
    }
}

/// What a rotation of the store `id` did, in one line: which kind of
/// rotation ([`RotationKind::describe`]), the credentials re-sealed, the
/// time and the data key version.
pub fn describe_rotation(id: &str, report: &RotationReport) -> String {
    let mut line = format!("rotated '{id}': {}", report.kind.describe());
    if report.kind == RotationKind::DataKey {
        line.push_str(&format!(": {} credentials re-sealed", report.rows));
    }
    line.push_str(&format!(" in {} ms; data key version {}", report.elapsed.as_millis(), report.key_version));
    if let Some(reason) = &report.checkpoint_error {
        line.push_str(&format!(
            "; the write-ahead log still holds pages sealed under the old key until the next checkpoint \
             ({reason})"
        ));
    }
    line
}

/// What servers that have the store open do after a rotation of `kind`.
fn after_rotation(kind: RotationKind) -> &'static str {
    match kind {
        RotationKind::DataKey => " Restart servers that have this store open.",
        _ => {
            " Servers that have this store open keep serving it (its data key is the same); they need the new \
             key when they next open it."
        }
    }
}

/// Rotates the master key of the encrypted SQLite store `id`, and returns
/// a line saying what was done: which rotation
/// ([`RotationKind::describe`]), the credentials re-sealed, where the new
/// key is.
///
/// # Behavior
/// Both keys by default: a new data key re-seals every credential, wrapped
/// by the new master key. With `kek_only`, the key-encryption key alone:
/// the data key is rewrapped by the new master key and no credential is
/// touched ([`SqliteStore::rewrap_key`], [`SqliteStore::rewrap_key_file`]).
///
/// With [`NewKey::Generate`], the store's key must live in a key file
/// (`master_key_file`, or the `key_file` of `key = { provider =
/// "master-key" }`), which is rotated by
/// [`SqliteStore::rotate_key_file`] (or
/// [`SqliteStore::rewrap_key_file`]): the old key is kept as `<file>.old`
/// and the new one written to `<file>.new` (synced) before the database is
/// changed (its commit synced whatever the store's `synchronous`); then
/// `<file>.new` replaces `<file>` and, once the new key has opened the
/// database, `<file>.old` is removed, the directory synced after each step.
/// A crash at any point leaves a key file that opens the store: the next
/// opening (a server start, any CLI command) completes or undoes the
/// rotation.
///
/// With a key given ([`NewKey::File`], [`NewKey::Text`]), only the database
/// is changed: the new key must then be stored where the old one was.
///
/// After a data key rotation, servers that have the database open must be
/// restarted: they still hold the old data key and answer 503 until then.
///
/// # Errors
/// No such store, not encrypted SQLite, a bad new key, or a failed rotation.
pub async fn rotate_key(
    settings: &Settings,
    id: &str,
    new_key: NewKey,
    kek_only: bool,
) -> Result<String, String> {
    rotate_key_with_progress(settings, id, new_key, kek_only, None).await
}

/// How far a rotation is: `(done, total)` credentials re-sealed.
pub type RotationProgress = Box<dyn FnMut(usize, usize) + Send + 'static>;

/// [`rotate_key`], calling `progress` after each chunk of re-sealed
/// credentials where the store reports it (a data key rotation to a given
/// key, [`SqliteStore::rotate_key_with_progress`]); never for the others.
///
/// # Errors
/// As [`rotate_key`].
pub async fn rotate_key_with_progress(
    settings: &Settings,
    id: &str,
    new_key: NewKey,
    kek_only: bool,
    progress: Option<RotationProgress>,
) -> Result<String, String> {
    let (spec, sqlite) = sqlite_spec(settings, id)?;
    let given = match new_key {
        NewKey::File(p) => Some(MasterKey::from_file(&p).map_err(|e| e.to_string())?),
        NewKey::Text(text) => Some(
            MasterKey::from_base64(&text)
                .map_err(|_| "stdin does not hold the base64 of a 32-byte key".to_owned())?,
        ),
        NewKey::Generate => None,
    };
    let key_file = match (&given, key_file_of(spec, sqlite)) {
        (None, Some(key_file)) => Some(key_file),
        (None, None) => {
            return Err(format!(
            "the master key of '{id}' does not come from a key file; give the new key with --new-key-file \
                 or --new-key-stdin, and update its source afterwards (or rotate its data key alone with \
                 rotate-data-key, or move it to another key provider with rewrap-key)"
        ))
        }
        (Some(_), _) => None,
    };
    let store = open_sqlite(spec, sqlite).await?;
    let report = match (given, kek_only) {
        (Some(key), false) => match progress {
            Some(progress) => store.rotate_key_with_progress(key, progress).await,
            None => store.rotate_key(key).await,
        },
        (Some(key), true) => store.rewrap_key(key).await,
        (None, false) => store.rotate_key_file().await,
        (None, true) => store.rewrap_key_file().await,
    }
    .map_err(|e| format!("rotation failed: {e}"))?;
    let mut line = describe_rotation(id, &report);
    match key_file {
        Some(key_file) => line.push_str(&format!("; the new key is in {}", key_file.display())),
        None => line.push_str("; store the new key where the old one was"),
    }
    line.push('.');
    line.push_str(after_rotation(report.kind));
    Ok(line)
}

/// Rotates the data key of the encrypted SQLite store `id` alone: a new
/// data key re-seals every credential, wrapped by the key-encryption key in
/// force (whatever its provider; one provider call). Returns a line saying
/// what was done.
///
/// # Errors
/// No such store, not encrypted SQLite, it cannot be opened, or a failed
/// rotation (which changes nothing).
pub async fn rotate_data_key(settings: &Settings, id: &str) -> Result<String, String> {
    let (spec, sqlite) = sqlite_spec(settings, id)?;
    let store = open_sqlite(spec, sqlite).await?;
    let report =
        store.rotate_data_key().await.map_err(|e| format!("rotation failed, nothing changed: {e}"))?;
    Ok(format!(
        "{}; the key-encryption key is unchanged.{}",
        describe_rotation(id, &report),
        after_rotation(report.kind)
    ))
}

/// Moves the data key of the encrypted SQLite (or PostgreSQL) store `id` under another key
/// provider: opens the store with its configured key, builds the provider
/// `to` describes (an inline TOML table, as the `key = { .. }` setting:
/// `{ provider = "passphrase", passphrase_env = "TEAM_PASSPHRASE" }`, its
/// relative paths relative to the config file's directory) with
/// `providers`, and rewraps the data key with it (a key-encryption key
/// rotation: no credential touched). Returns what was done and the `key =
/// { .. }` line to put in the store's table in place of its key setting.
///
/// A PostgreSQL store is rewrapped the same way
/// ([`credstore_postgres::PostgresStore::rewrap_key`]): replicas that have it
/// open keep serving, and need the new setting when they next open it.
///
/// # Errors
/// No such store, not encrypted SQLite nor PostgreSQL, `to` is not a valid key setting
/// (the message lists the known providers), the store or the new provider
/// cannot be opened, or a failed rewrap (which changes nothing).
pub async fn rewrap_key(
    settings: &Settings,
    providers: &crate::config::keys::KeyProviders,
    id: &str,
    to: &str,
) -> Result<String, String> {
    #[cfg(feature = "postgres")]
    if let Some(spec) = settings.store(id) {
        if let Some(postgres) = spec.settings::<credstore_postgres::PostgresSettings>() {
            return rewrap_postgres_key(spec, postgres, providers, id, to).await;
        }
    }
    let (spec, sqlite) = sqlite_spec(settings, id)?;
    let embedded = spec.id().as_str() == crate::config::SQLITE_DEFAULT_ID
        && spec.context().path(sqlite.path()) == settings.data_dir.join(crate::config::SQLITE_DEFAULT_DB);
    if embedded {
        return Err(format!(
            "'{id}' is the embedded store, keyed by {} (or CREDSTORE_MASTER_KEY) only: nothing was changed. To key \
             it by a provider, set default_stores = false, declare it as a [[stores]] table (type = \
             \"encrypted-sqlite\", path = \"{}\", master_key_file = \"{}\"), and run rewrap-key again",
            settings.data_dir.join(crate::config::MASTER_KEY_FILE).display(),
            settings.data_dir.join(crate::config::SQLITE_DEFAULT_DB).display(),
            settings.data_dir.join(crate::config::MASTER_KEY_FILE).display(),
        ));
    }
    let (to, target) = parse_key_setting(providers, to)?;
    let store = open_sqlite(spec, sqlite).await?;
    let provider = target.provider(spec.id(), spec.context()).await.map_err(|e| format!("--to: {e}"))?;
    let report =
        store.rewrap_key(provider).await.map_err(|e| format!("rewrap failed, nothing changed: {e}"))?;
    Ok(format!(
        "{}.{}{}",
        describe_rotation(id, &report),
        after_rotation(report.kind),
        replace_key_setting(id, to)
    ))
}

/// `rewrap-key --to`: the inline TOML table, trimmed, and the key provider
/// it describes.
fn parse_key_setting<'a>(
    providers: &crate::config::keys::KeyProviders,
    to: &'a str,
) -> Result<(&'a str, crate::config::keys::KeySpec), String> {
    let to = to.trim();
    let parsed: toml::Table = toml::from_str(&format!("key = {to}"))
        .map_err(|e| format!("--to is not an inline TOML table such as {{ provider = \"passphrase\", passphrase_env = \"TEAM_PASSPHRASE\" }}: {}", e.message()))?;
    let value = parsed.get("key").cloned().ok_or("--to is empty")?;
    Ok((to, providers.spec(value).map_err(|e| format!("--to: {e}"))?))
}

/// The closing lines of `rewrap-key`: the setting to put in the store's table.
fn replace_key_setting(id: &str, to: &str) -> String {
    format!(
        "\nIn the table of store '{id}' in the config file, replace its key setting (master_key_file, \
         master_key_env, passphrase_file, passphrase_env or key) with:\n\n    key = {to}\n"
    )
}

/// [`rewrap_key`] for a PostgreSQL store: one provider call and one key
/// record replaced ([`credstore_postgres::PostgresStore::rewrap_key`]); the
/// data key is the same, so replicas that have the store open keep serving.
#[cfg(feature = "postgres")]
async fn rewrap_postgres_key(
    spec: &StoreSpec,
    postgres: &credstore_postgres::PostgresSettings,
    providers: &crate::config::keys::KeyProviders,
    id: &str,
    to: &str,
) -> Result<String, String> {
    let (to, target) = parse_key_setting(providers, to)?;
    let store = crate::config::keys::open_postgres(spec.id().clone(), postgres, spec.key(), spec.context())
        .await
        .map_err(|e| e.to_string())?;
    let provider = target.provider(spec.id(), spec.context()).await.map_err(|e| format!("--to: {e}"))?;
    store.rewrap_key(provider).await.map_err(|e| format!("rewrap failed, nothing changed: {e}"))?;
    Ok(format!(
        "rotated '{id}': {}.{}{}",
        RotationKind::KeyEncryptionKey.describe(),
        after_rotation(RotationKind::KeyEncryptionKey),
        replace_key_setting(id, to)
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use credstore_core::config::ConfigContext;
    use credstore_core::{Availability, StoreId, StoreKind};

    use super::*;
    use crate::config::backends::Backends;

    #[derive(Debug, Clone, serde::Deserialize)]
    struct NoSettings {}

    #[tokio::test(start_paused = true)]
    async fn an_opening_that_hangs_is_cut_and_tried_again_by_the_prober() {
        let opens = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&opens);
        let mut backends = Backends::new();
        backends.register(StoreKind::from_static("hangs"), move |id: StoreId, _: NoSettings, _ctx| {
            let first = counter.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    std::future::pending::<()>().await;
                }
                Ok(credstore_memory::MemoryStore::new(id))
            }
        });
        let spec = backends
            .spec(StoreId::new("slow").unwrap(), "hangs", toml::Table::new(), ConfigContext::new("."))
            .unwrap();
        let retry = Retry { interval: Duration::from_secs(10), open_timeout: Duration::from_secs(2) };
        let store = open_or_retried(&spec, retry).await;
        let a = store.check_availability().await;
        let reason = a.reason.unwrap_or_default();
        assert!(reason.contains("opening took longer than 2000 ms"), "{reason}");
        assert_eq!(crate::runtime::status::shown_reason(&Availability::down(reason)), "unreachable");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(store.check_availability().await.available);
        assert_eq!(opens.load(Ordering::SeqCst), 2);
    }
}
