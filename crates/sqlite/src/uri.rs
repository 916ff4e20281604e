//! [`SqliteScheme`]: encrypted SQLite stores named by URI (the `serde`
//! feature).

use std::path::PathBuf;
use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{async_trait, CredentialStore, Error, Result, StoreId, StoreScheme, StoreUri};

use crate::config::de::RawSqliteSettings;
use crate::SqliteSettings;

/// Opens `sqlite:` URIs into a [`crate::SqliteStore`], with the
/// [`SqliteSettings`] a config file gives: every setting is a parameter of
/// the same name, checked as in a config file.
///
/// | URI part | setting |
/// |---|---|
/// | the path | `path`: the database file |
/// | `id` | the store id (default `encrypted-sqlite`) |
/// | `master_key_env` / `master_key_file` | the master key (base64 of 32 bytes; a missing file is created) |
/// | `passphrase_env` / `passphrase_file` | or a passphrase, stretched with Argon2id |
/// | `synchronous`, `busy_timeout_ms`, `max_size_bytes`, `max_versions`, `max_version_age_secs`, `allow_loose_permissions` | as in a config file |
///
/// The path: `sqlite:app.db` and `sqlite:data/app.db` are relative to
/// [`ConfigContext::base_dir`] (the current directory for
/// [`SchemeRegistry::open`](credstore_core::SchemeRegistry::open)),
/// `sqlite:///var/lib/app.db` is absolute. With two slashes the first
/// segment is a host, which a file has not: `sqlite://data/app.db` is read
/// as the relative `data/app.db`. A key provider (`key = { provider = .. }`
/// in a config file) has no URI form.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
/// use credstore_core::config::ConfigContext;
/// use credstore_core::{SchemeRegistry, StoreUri};
/// use credstore_sqlite::SqliteScheme;
///
/// let dir = tempfile::tempdir().unwrap();
/// let mut schemes = SchemeRegistry::new();
/// schemes.register(SqliteScheme)?;
/// let uri = StoreUri::parse("sqlite:team.db?master_key_file=team.key&max_versions=5")?;
/// let store = schemes.open_uri(uri, &ConfigContext::new(dir.path())).await?;
/// assert!(dir.path().join("team.db").exists() && dir.path().join("team.key").exists());
/// assert_eq!(store.info().id().as_str(), "encrypted-sqlite");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteScheme;

impl SqliteScheme {
    /// The store id and the settings `uri` names, read without any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri` when it is not a `sqlite:` URI, has
    /// a user or port or no path, or on `uri.{name}` for a parameter that
    /// is unknown or does not parse; [`Error::InvalidKey`] for an `id` that
    /// is not a store id; [`Error::Config`] naming the store for settings a
    /// config file could not have either (no master key, two of them, ...).
    pub fn settings(mut uri: StoreUri) -> Result<(StoreId, SqliteSettings)> {
        if uri.scheme() != "sqlite" {
            return Err(invalid(format!("{}: is not a sqlite: URI", uri.scheme())));
        }
        if uri.username().is_some() || uri.port().is_some() {
            return Err(invalid("a sqlite: URI names a file: it has no user or port".into()));
        }
        let path = match uri.host() {
            Some(host) => format!("{host}{}", uri.path()),
            None => uri.path().to_owned(),
        };
        if path.is_empty() {
            return Err(invalid("a sqlite: URI names the database file: sqlite:app.db".into()));
        }
        let id = uri.take_store_id(crate::KIND.as_str())?;
        let (master_key_file, master_key_env) = uri.take_secret_fields("master_key")?;
        let (passphrase_file, passphrase_env) = uri.take_secret_fields("passphrase")?;
        let raw = RawSqliteSettings {
            path: PathBuf::from(path),
            master_key_file,
            master_key_env,
            passphrase_file,
            passphrase_env,
            synchronous: uri.take("synchronous"),
            busy_timeout_ms: uri.take_parsed("busy_timeout_ms")?,
            max_size_bytes: uri.take_parsed("max_size_bytes")?,
            allow_loose_permissions: uri.take_bool("allow_loose_permissions")?.unwrap_or(false),
            max_versions: uri.take_parsed("max_versions")?,
            max_version_age_secs: uri.take_parsed("max_version_age_secs")?,
            key: None,
        };
        uri.finish()?;
        let settings = SqliteSettings::try_from(raw).map_err(|reason| Error::config(&id, reason))?;
        Ok((id, settings))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidInput { field: "uri".into(), reason }
}

#[async_trait]
impl StoreScheme for SqliteScheme {
    fn schemes(&self) -> &[&'static str] {
        &["sqlite"]
    }

    /// Opens the store as [`SqliteSettings::open`] does.
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let (id, settings) = Self::settings(uri)?;
        Ok(Arc::new(settings.open(id, ctx).await?))
    }
}
