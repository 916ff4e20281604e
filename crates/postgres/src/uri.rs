//! [`PostgresScheme`]: encrypted PostgreSQL stores named by URI (the
//! `serde` feature).

use std::path::PathBuf;
use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{async_trait, CredentialStore, Error, Result, StoreId, StoreScheme, StoreUri};

use crate::config::de::RawPostgresSettings;
use crate::PostgresSettings;

/// Opens `postgres:` and `postgresql:` URIs into a [`crate::PostgresStore`],
/// with the [`PostgresSettings`] a config file gives: every setting is a
/// parameter of the same name, checked as in a config file.
///
/// | URI part | setting |
/// |---|---|
/// | `postgres://user@host:port/database` | `user`, `host`, `port` (default 5432), `database` |
/// | `id` | the store id (default `postgres`) |
/// | `password_env` / `password_file` | the password (never in the URI's user part) |
/// | `master_key_env` / `master_key_file`, `passphrase_env` / `passphrase_file` | the key-encryption key |
/// | `url_env` | instead of a host: the variable holding a whole `postgres://` URL (`postgres:?url_env=DATABASE_URL`) |
/// | `schema`, `tls`, `ca_file`, `max_connections`, `connect_timeout_ms`, `acquire_timeout_ms`, `statement_timeout_ms`, `change_feed`, `max_versions`, `max_version_age_secs`, `allow_loose_permissions` | as in a config file |
///
/// A key provider (`key = { provider = .. }` in a config file) has no URI
/// form.
///
/// ```
/// use credstore_core::StoreUri;
/// use credstore_postgres::PostgresScheme;
///
/// let uri = StoreUri::parse(
///     "postgres://app@db.internal/creds?password_env=PGPASSWORD&master_key_env=APP_KEK&schema=team_a",
/// )?;
/// let (id, settings) = PostgresScheme::settings(uri)?;
/// assert_eq!((id.as_str(), settings.schema()), ("postgres", "team_a"));
/// assert!(StoreUri::parse("postgres://app:hunter2@db.internal/creds").is_err()); // a password
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresScheme;

impl PostgresScheme {
    /// The store id and the settings `uri` names, read without any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri` when it is not a `postgres:` or
    /// `postgresql:` URI, or on `uri.{name}` for a parameter that is
    /// unknown or does not parse; [`Error::InvalidKey`] for an `id` that is
    /// not a store id; [`Error::Config`] naming the store for settings a
    /// config file could not have either (no user, no key, ...).
    pub fn settings(mut uri: StoreUri) -> Result<(StoreId, PostgresSettings)> {
        if !matches!(uri.scheme(), "postgres" | "postgresql") {
            return Err(Error::InvalidInput {
                field: "uri".into(),
                reason: format!("{}: is not a postgres: URI", uri.scheme()),
            });
        }
        let host = uri.host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned());
        let database = Some(uri.path().trim_start_matches('/').to_owned()).filter(|d| !d.is_empty());
        let (port, user) = (uri.port(), uri.username().map(str::to_owned));
        let id = uri.take_store_id(crate::KIND.as_str())?;
        let (password_file, password_env) = uri.take_secret_fields("password")?;
        let (master_key_file, master_key_env) = uri.take_secret_fields("master_key")?;
        let (passphrase_file, passphrase_env) = uri.take_secret_fields("passphrase")?;
        let raw = RawPostgresSettings {
            url: None,
            url_env: uri.take("url_env"),
            host,
            port,
            user,
            database,
            password_file,
            password_env,
            schema: uri.take("schema"),
            tls: uri.take("tls"),
            ca_file: uri.take("ca_file").map(PathBuf::from),
            max_connections: uri.take_parsed("max_connections")?,
            connect_timeout_ms: uri.take_parsed("connect_timeout_ms")?,
            acquire_timeout_ms: uri.take_parsed("acquire_timeout_ms")?,
            statement_timeout_ms: uri.take_parsed("statement_timeout_ms")?,
            change_feed: uri.take_bool("change_feed")?,
            max_versions: uri.take_parsed("max_versions")?,
            max_version_age_secs: uri.take_parsed("max_version_age_secs")?,
            master_key_file,
            master_key_env,
            passphrase_file,
            passphrase_env,
            allow_loose_permissions: uri.take_bool("allow_loose_permissions")?.unwrap_or(false),
            key: None,
        };
        uri.finish()?;
        let settings = PostgresSettings::try_from(raw).map_err(|reason| Error::config(&id, reason))?;
        Ok((id, settings))
    }
}

#[async_trait]
impl StoreScheme for PostgresScheme {
    fn schemes(&self) -> &[&'static str] {
        &["postgres", "postgresql"]
    }

    /// Opens the store as [`PostgresSettings::open`] does.
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let (id, settings) = Self::settings(uri)?;
        Ok(Arc::new(settings.open(id, ctx).await?))
    }
}
