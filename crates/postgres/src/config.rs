//! [`PostgresConfig`]: the settings of a [`crate::PostgresStore`]; with the
//! `serde` feature, `PostgresSettings`: the same read from a config file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::config::is_loopback_host;
use credstore_core::{Clock, Error, Namespace, Result, Retention, SecretValue, StoreId};

use crate::{KeyFile, KeyProvider, MasterKey};

/// The default schema of a store's tables.
pub const DEFAULT_SCHEMA: &str = "credstore";
/// The default port.
pub const DEFAULT_PORT: u16 = 5432;
/// The default size of the connection pool.
pub const DEFAULT_MAX_CONNECTIONS: usize = 16;
/// The default time to open a connection (TCP, TLS and the login).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time a call waits for a free connection of the pool.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// The default time one statement may run.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default retention of a key's history: the current version and 9
/// earlier ones (deleted ones included), with no age limit.
pub const DEFAULT_RETENTION: Retention = Retention::versions(10);
/// The longest schema name: the change feed's channel is `credstore_` and
/// the schema, and PostgreSQL names are at most 63 bytes.
pub const MAX_SCHEMA_LEN: usize = 53;

/// Whether the connection to PostgreSQL is encrypted. There is no mode that
/// encrypts without checking the server's certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsMode {
    /// TLS, and the server's certificate must be valid for the host name
    /// and signed by the configured CA ([`PostgresConfig::ca_file`]), or by
    /// a root the platform trusts when none is given. A server without TLS
    /// is refused.
    VerifyFull,
    /// No TLS: the password exchange (SCRAM) is not replayable, but the
    /// sealed rows and the names of keys and namespaces cross the network
    /// in the clear. The default for a loopback host or a Unix socket;
    /// for any other host, the setting itself is the statement that this
    /// is wanted, and the opening logs a warning.
    Disable,
}

impl TlsMode {
    /// Its name in settings: `verify-full` or `disable`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::VerifyFull => "verify-full",
            TlsMode::Disable => "disable",
        }
    }

    /// Parses a name of [`TlsMode::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify-full" => Some(TlsMode::VerifyFull),
            "disable" => Some(TlsMode::Disable),
            _ => None,
        }
    }
}

/// Where the server is: a URL, or its parts.
#[derive(Clone)]
pub(crate) enum Target {
    /// A `postgres://` URL (or `key=value` string), password allowed.
    Url(zeroize::Zeroizing<String>),
    /// A host (a name, an address, or a Unix socket's folder starting with
    /// `/`) and the rest.
    Parts { host: String, port: u16, user: Option<String>, database: Option<String> },
}

/// Settings of a [`crate::PostgresStore`]: where the database is, the
/// schema of the store's tables, the pool and its timeouts, TLS, and the
/// key-encryption key. `Debug` never shows a password or key material.
///
/// ```
/// use std::time::Duration;
/// use credstore_core::SecretValue;
/// use credstore_postgres::{MasterKey, PostgresConfig, TlsMode};
///
/// let config = PostgresConfig::new("db.internal")
///     .user("credstore")
///     .password(SecretValue::from("hunter2"))
///     .database("secrets")
///     .schema("team_a")
///     .tls(TlsMode::VerifyFull)
///     .ca_file("/etc/credstore/db-ca.pem")
///     .max_connections(32)
///     .statement_timeout(Duration::from_secs(2))
///     .master_key(MasterKey::from_bytes([7; 32]));
/// assert!(!format!("{config:?}").contains("hunter2"));
/// ```
#[derive(Clone)]
pub struct PostgresConfig {
    pub(crate) target: Target,
    pub(crate) password: Option<SecretValue>,
    pub(crate) schema: String,
    pub(crate) namespace: Namespace,
    pub(crate) tls: Option<TlsMode>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) max_connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) statement_timeout: Duration,
    pub(crate) change_feed: bool,
    pub(crate) retention: Retention,
    pub(crate) clock: Option<Arc<dyn Clock>>,
    pub(crate) master_key: Option<MasterKey>,
    pub(crate) key_file: Option<KeyFile>,
    pub(crate) provider: Option<Arc<dyn KeyProvider>>,
}

impl PostgresConfig {
    /// Settings for the server at `host` (a name, an IP address, or the
    /// folder of a Unix socket, starting with `/`), with the defaults: port
    /// [`DEFAULT_PORT`], the user and database of the client's defaults
    /// (the user is required: see [`PostgresConfig::user`]), schema
    /// [`DEFAULT_SCHEMA`], the root namespace, TLS by
    /// [`PostgresConfig::tls`]'s default, [`DEFAULT_MAX_CONNECTIONS`]
    /// connections, the default timeouts, the change feed on, and no key yet
    /// (one is required: see [`PostgresConfig::master_key`]).
    pub fn new(host: impl Into<String>) -> Self {
        Self::with_target(Target::Parts { host: host.into(), port: DEFAULT_PORT, user: None, database: None })
    }

    /// Settings for the server of `url`, a `postgres://user:password@host:port/database`
    /// URL (or a libpq `key=value` string), with the defaults of
    /// [`PostgresConfig::new`]. The URL may hold a password: keep it out of
    /// logs; in a config file, name it by `url_env`. Parsed when the store
    /// opens; a URL that sets TLS itself (`sslmode`, `sslrootcert`,
    /// `sslcert`, `sslkey`) is refused: TLS is [`PostgresConfig::tls`]'s.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self::with_target(Target::Url(zeroize::Zeroizing::new(url.into())))
    }

    fn with_target(target: Target) -> Self {
        Self {
            target,
            password: None,
            schema: DEFAULT_SCHEMA.to_owned(),
            namespace: Namespace::root(),
            tls: None,
            ca_file: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            change_feed: true,
            retention: DEFAULT_RETENTION,
            clock: None,
            master_key: None,
            key_file: None,
            provider: None,
        }
    }

    /// The port, for settings made with [`PostgresConfig::new`] (a URL
    /// names its own). Default: [`DEFAULT_PORT`].
    pub fn port(mut self, port: u16) -> Self {
        if let Target::Parts { port: p, .. } = &mut self.target {
            *p = port;
        }
        self
    }

    /// The user to log in as, for settings made with [`PostgresConfig::new`].
    pub fn user(mut self, user: impl Into<String>) -> Self {
        if let Target::Parts { user: u, .. } = &mut self.target {
            *u = Some(user.into());
        }
        self
    }

    /// The database, for settings made with [`PostgresConfig::new`].
    /// Default: the user's name.
    pub fn database(mut self, database: impl Into<String>) -> Self {
        if let Target::Parts { database: d, .. } = &mut self.target {
            *d = Some(database.into());
        }
        self
    }

    /// The password to log in with; it replaces one in a URL.
    pub fn password(mut self, password: SecretValue) -> Self {
        self.password = Some(password);
        self
    }

    /// The schema of the store's tables (created on first open). Default:
    /// [`DEFAULT_SCHEMA`]. What separates two stores on one server is the
    /// database and the schema: two stores opened on the same pair share
    /// their keys, whatever their ids.
    ///
    /// # Behavior
    /// Checked when the store opens: 1 to [`MAX_SCHEMA_LEN`] bytes of
    /// lowercase ASCII letters, digits and `_`, not starting with a digit,
    /// and not starting with `pg_`; otherwise the opening fails with
    /// [`Error::Config`] naming `schema`, before any I/O.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Keys of the opened store live in namespace `ns`; the default is the
    /// root namespace. The same as opening at the root and calling
    /// [`with_namespace`](credstore_core::CredentialStore::with_namespace).
    pub fn namespace(mut self, ns: Namespace) -> Self {
        self.namespace = ns;
        self
    }

    /// Whether the connection uses TLS; see [`TlsMode`]. Default:
    /// [`TlsMode::Disable`] for a loopback host (`127.0.0.0/8`, `::1`,
    /// `localhost`) or a Unix socket, [`TlsMode::VerifyFull`] for any other.
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = Some(mode);
        self
    }

    /// The CA certificates (a PEM file) the server's certificate must chain
    /// to under [`TlsMode::VerifyFull`], instead of the platform's roots.
    /// Read when the store opens; an unreadable file, or one without a
    /// certificate, fails the opening with [`Error::Config`] naming `ca_file`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// The most connections the store's pool opens. Default:
    /// [`DEFAULT_MAX_CONNECTIONS`]. The change feed's listener and the
    /// availability probe take one more each, of their own.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// How long opening one connection may take: TCP, TLS and the login.
    /// Default: [`DEFAULT_CONNECT_TIMEOUT`]. A server that does not answer
    /// in time makes the call fail with the retriable
    /// [`Error::Unavailable`].
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a call waits for a connection of the pool when all are busy.
    /// Default: [`DEFAULT_ACQUIRE_TIMEOUT`]; past it the call fails with the
    /// retriable [`Error::Unavailable`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long one statement may run. Default:
    /// [`DEFAULT_STATEMENT_TIMEOUT`].
    ///
    /// # Behavior
    /// Enforced twice: by the server (`statement_timeout`, set for every
    /// connection of the store at login), and by the client, which gives up
    /// on a statement half a second later still, so that a server that
    /// stopped answering ends the call too. Either way the call fails with
    /// the retriable [`Error::Unavailable`], and a write that timed out may
    /// or may not have been committed.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// Whether the store offers a change feed (LISTEN/NOTIFY; see the crate
    /// docs). Default: `true`. Off, [`subscribe`](credstore_core::CredentialStore::subscribe)
    /// answers [`Error::Unsupported`] and writes send no notification.
    pub fn change_feed(mut self, on: bool) -> Self {
        self.change_feed = on;
        self
    }

    /// How much of each key's history the store keeps (see the crate docs,
    /// "History"). Default: [`DEFAULT_RETENTION`], 10 versions (the
    /// current one included) and no age limit; [`Retention::UNBOUNDED`]
    /// keeps every version until it is purged.
    ///
    /// # Behavior
    /// - Versions past [`Retention::max_versions`] and superseded ones
    ///   older than [`Retention::max_age`] (by the store's clock, from when
    ///   they stopped being current) are gone for good from `get_version`
    ///   and `list_versions` at once; their rows are deleted by the next
    ///   write of the key, in that write's statement.
    /// - Stores opened on one schema with different retentions each read
    ///   with their own, and each write prunes with its writer's.
    /// - [`Retention::NONE`] (`max_versions` 1) keeps no history: the store
    ///   declares neither `versions` nor `recover_deleted`, its overwrites
    ///   keep no earlier version and its deletes destroy the key's whole
    ///   history (what another store on the schema kept included).
    /// - A `max_age` of zero is refused with [`Error::Config`] naming
    ///   `max_version_age`, before any I/O.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The clock the store decides expiry and age retention by (its
    /// [`StoreInfo::clock`](credstore_core::StoreInfo::clock)); default: the
    /// system's. Timestamps (`created_at`, `updated_at`) stay the system's
    /// time. Tests hand a [`ManualClock`](credstore_core::ManualClock) to
    /// cross an expiry without sleeping.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The key-encryption key is `key`, a local key or a passphrase. One of
    /// this, [`PostgresConfig::master_key_file`] and
    /// [`PostgresConfig::key_provider`] is required; each replaces the others.
    ///
    /// # Behavior
    /// The first opening of a schema draws a random data key, which seals
    /// every row, and records it wrapped by this key (see the crate docs);
    /// later openings with any other key fail with a `wrong key-encryption
    /// key` [`Error::Config`] and change nothing.
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.master_key = Some(key);
        self.key_file = None;
        self.provider = None;
        self
    }

    /// The key-encryption key is in the key file `file` (created with a
    /// fresh random key when missing, owner-only); it replaces the others.
    pub fn master_key_file(mut self, file: KeyFile) -> Self {
        self.key_file = Some(file);
        self.master_key = None;
        self.provider = None;
        self
    }

    /// The key-encryption key is kept by `provider`: the OS keychain, AWS
    /// KMS, Vault Transit (in the crates of those services), or a custom
    /// [`KeyProvider`]; `Arc<dyn KeyProvider>` is one too. It replaces the
    /// others.
    ///
    /// # Behavior
    /// The provider is called once when the store opens (to wrap a new
    /// schema's data key, or unwrap an existing one) and by
    /// [`crate::PostgresStore::rewrap_key`]; never for a read or a write.
    pub fn key_provider(mut self, provider: impl KeyProvider + 'static) -> Self {
        self.provider = Some(Arc::new(provider));
        self.master_key = None;
        self.key_file = None;
        self
    }

    /// The schema of the store's tables.
    pub fn schema_name(&self) -> &str {
        &self.schema
    }

    /// The TLS mode the store uses: the one set, or the default for the host.
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or_else(|| match &self.target {
            Target::Parts { host, .. } if host.starts_with('/') || is_loopback_host(host) => TlsMode::Disable,
            Target::Parts { .. } => TlsMode::VerifyFull,
            Target::Url(url) => match url_hosts(url) {
                Some(hosts)
                    if !hosts.is_empty()
                        && hosts.iter().all(|h| h.starts_with('/') || is_loopback_host(h)) =>
                {
                    TlsMode::Disable
                }
                _ => TlsMode::VerifyFull,
            },
        })
    }

    /// The CA file, if one is set.
    pub fn ca_file_path(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }
}

/// The hosts of a URL or `key=value` string, `None` when it does not parse.
fn url_hosts(url: &str) -> Option<Vec<String>> {
    let config: tokio_postgres::Config = url.parse().ok()?;
    Some(
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect(),
    )
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("PostgresConfig");
        match &self.target {
            Target::Url(_) => d.field("url", &"<hidden>"),
            Target::Parts { host, port, user, database } => {
                d.field("host", host).field("port", port).field("user", user).field("database", database)
            }
        };
        d.field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("schema", &self.schema)
            .field("namespace", &self.namespace)
            .field("tls", &self.tls_mode())
            .field("ca_file", &self.ca_file)
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("change_feed", &self.change_feed)
            .field("retention", &self.retention)
            .field("clock", &self.clock)
            .field(
                "key",
                &match (&self.master_key, &self.key_file, &self.provider) {
                    (Some(_), ..) => "master key".to_owned(),
                    (None, Some(file), _) => format!("key file {}", file.path().display()),
                    (None, None, Some(p)) => p.info().to_string(),
                    (None, None, None) => "none".to_owned(),
                },
            )
            .finish()
    }
}

/// Checks a schema name (see [`PostgresConfig::schema`]).
pub(crate) fn check_schema(schema: &str) -> std::result::Result<(), String> {
    let ok_chars = schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if schema.is_empty() || schema.len() > MAX_SCHEMA_LEN {
        return Err(format!("schema {schema:?} must be 1 to {MAX_SCHEMA_LEN} bytes long"));
    }
    if !ok_chars || schema.as_bytes()[0].is_ascii_digit() || schema.starts_with("pg_") {
        return Err(format!(
            "schema {schema:?} may hold lowercase ASCII letters, digits and '_' only, must not start with a \
             digit, and must not start with \"pg_\""
        ));
    }
    Ok(())
}

/// What [`PostgresConfig`] resolves to before any I/O: the driver's
/// settings, the TLS mode and CA roots, the checked schema.
pub(crate) struct Resolved {
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: TlsMode,
    pub(crate) roots: Option<rustls::RootCertStore>,
    /// Whether a host is not loopback (for the warning of `tls = "disable"`).
    pub(crate) remote: bool,
}

impl PostgresConfig {
    /// Checks every setting and builds the driver's configuration, before
    /// any network I/O.
    pub(crate) fn resolve(&self, id: &StoreId) -> Result<Resolved> {
        let config_err = |reason: String| Error::config(id, reason);
        check_schema(&self.schema).map_err(config_err)?;
        if self.max_connections == 0 {
            return Err(config_err("max_connections must be at least 1".into()));
        }
        for (name, t) in [
            ("connect_timeout", self.connect_timeout),
            ("acquire_timeout", self.acquire_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            if t.is_zero() {
                return Err(config_err(format!("{name} must be more than zero")));
            }
        }
        if self.retention.max_age.is_some_and(|age| age.is_zero()) {
            return Err(config_err("max_version_age must be more than zero".into()));
        }
        if self.master_key.is_none() && self.key_file.is_none() && self.provider.is_none() {
            return Err(config_err(
                "no key-encryption key configured (PostgresConfig::master_key, master_key_file or key_provider; \
                 in settings master_key_file, master_key_env, passphrase_file, passphrase_env or \
                 key = { provider = .. })"
                    .into(),
            ));
        }
        if let Target::Url(url) = &self.target {
            if ["sslmode", "sslrootcert", "sslcert", "sslkey"].iter().any(|p| url.contains(p)) {
                return Err(config_err(
                    "the PostgreSQL URL sets TLS itself (sslmode, sslrootcert...): set it with `tls` \
                     (\"verify-full\" or \"disable\") and `ca_file` instead, so that it is always verified"
                        .into(),
                ));
            }
        }
        let mut pg = match &self.target {
            // The driver's parse error never repeats the password.
            Target::Url(url) => url.parse::<tokio_postgres::Config>().map_err(|e| {
                config_err(format!(
                    "the PostgreSQL URL is not valid ({e}); expected postgres://user@host:port/database"
                ))
            })?,
            Target::Parts { host, port, user, database } => {
                if host.is_empty() {
                    return Err(config_err("host is empty".into()));
                }
                let mut pg = tokio_postgres::Config::new();
                pg.host(host).port(*port);
                if let Some(user) = user {
                    pg.user(user);
                }
                if let Some(db) = database {
                    pg.dbname(db);
                }
                pg
            }
        };
        if pg.get_hosts().is_empty() {
            return Err(config_err("the PostgreSQL URL names no host".into()));
        }
        if pg.get_user().is_none() {
            return Err(config_err("no user: set `user` (or put it in the URL)".into()));
        }
        if let Some(password) = &self.password {
            pg.password(password.expose_secret());
        }
        let remote = pg.get_hosts().iter().any(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => !is_loopback_host(name),
            tokio_postgres::config::Host::Unix(_) => false,
        });
        let tls = self.tls_mode();
        pg.ssl_mode(match tls {
            TlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        });
        let roots = match &self.ca_file {
            Some(path) => {
                Some(crate::tls::load_roots(path).map_err(|e| config_err(format!("ca_file: {e}")))?)
            }
            None => None,
        };
        let ms = self.statement_timeout.as_millis().max(1);
        let options = match pg.get_options() {
            Some(own) if !own.is_empty() => format!("{own} -c statement_timeout={ms}"),
            _ => format!("-c statement_timeout={ms}"),
        };
        pg.options(&options)
            .connect_timeout(self.connect_timeout)
            .application_name("credstore")
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        Ok(Resolved { pg, tls, roots, remote })
    }
}

/// Where the key-encryption key of a store opened from [`PostgresSettings`]
/// comes from: the sealing crate's, the same settings as the SQLite store's.
#[cfg(feature = "serde")]
pub use credstore_seal::KeySource;

/// Where the connection's settings come from in [`PostgresSettings`].
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq)]
enum Connect {
    /// `url`: a URL without a password.
    Url(String),
    /// `url_env`: a variable holding the whole URL, password allowed.
    UrlEnv(String),
    /// `host`, `port`, `user`, `database`.
    Parts { host: String, port: u16, user: Option<String>, database: Option<String> },
}

/// The settings of a PostgreSQL store in a config file (the `serde`
/// feature): one store's table, such as a `credstore-server` `[[stores]]`
/// table without its `id`, `type` and `cache`. Relative paths are relative
/// to the [`ConfigContext`](credstore_core::config::ConfigContext)'s base
/// directory.
///
/// ```toml
/// host = "db.internal"            # or url_env = "TEAM_PG_URL" (a whole
///                                 # postgres:// URL, password allowed), or
///                                 # url = "postgres://credstore@db.internal/secrets"
///                                 # (no password in it: refused)
/// port = 5432                     # optional
/// user = "credstore"
/// database = "secrets"            # optional: the user's name
/// password_file = "/run/secrets/pg-password"   # or password_env = "PGPASSWORD"
/// schema = "credstore"            # optional: what separates stores in one database
/// tls = "verify-full"             # optional: verify-full | disable (the default
///                                 # for loopback hosts and Unix sockets)
/// ca_file = "/etc/credstore/db-ca.pem"         # optional: else the platform's roots
/// max_connections = 16            # optional
/// connect_timeout_ms = 5000       # optional
/// acquire_timeout_ms = 5000       # optional
/// statement_timeout_ms = 5000     # optional
/// change_feed = true              # optional
/// max_versions = 10               # optional: versions kept per key, the
///                                 # current one included (1: no history)
/// max_version_age_secs = 2592000  # optional: how long a superseded or
///                                 # deleted version is kept (default: no limit)
/// master_key_file = "team.key"    # the key-encryption key: as the SQLite store's
///                                 # settings (master_key_env, passphrase_file,
///                                 # passphrase_env, allow_loose_permissions),
///                                 # or key = { provider = .. } (built by the caller)
/// ```
///
/// ```
/// use credstore_core::config::ConfigContext;
/// use credstore_postgres::PostgresSettings;
///
/// let settings: PostgresSettings = serde_json::from_str(
///     r#"{"host": "db.internal", "user": "credstore", "password_env": "PG_PASSWORD",
///         "schema": "team_a", "master_key_env": "TEAM_KEK"}"#,
/// ).unwrap();
/// let ctx = ConfigContext::new("/etc/credstore")
///     .with_env(|v| (v == "PG_PASSWORD").then(|| "hunter2".to_owned()));
/// let config = settings.base_config(&"team".parse()?, &ctx)?;
/// assert_eq!(config.schema_name(), "team_a");
/// assert!(!format!("{config:?}").contains("hunter2"));
///
/// let inline: Result<PostgresSettings, _> =
///     serde_json::from_str(r#"{"url": "postgres://u:hunter2@db/x", "master_key_env": "K"}"#);
/// let err = inline.unwrap_err().to_string();
/// assert!(err.contains("url_env") && !err.contains("hunter2"));
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "de::RawPostgresSettings")]
pub struct PostgresSettings {
    connect: Connect,
    password: Option<credstore_core::config::SecretSource>,
    schema: String,
    tls: Option<TlsMode>,
    ca_file: Option<PathBuf>,
    max_connections: usize,
    connect_timeout: Duration,
    acquire_timeout: Duration,
    statement_timeout: Duration,
    change_feed: bool,
    retention: Retention,
    master_key: KeySource,
    allow_loose_permissions: bool,
}

#[cfg(feature = "serde")]
impl PostgresSettings {
    /// Where the key-encryption key comes from.
    pub fn master_key(&self) -> &KeySource {
        &self.master_key
    }

    /// The schema of the store's tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The retention of each key's history (`max_versions`,
    /// `max_version_age_secs`; default [`DEFAULT_RETENTION`]).
    pub fn retention(&self) -> Retention {
        self.retention
    }

    /// Whether a key or passphrase file open to its group or others is
    /// accepted.
    pub fn allows_loose_permissions(&self) -> bool {
        self.allow_loose_permissions
    }

    /// The [`PostgresConfig`] of these settings without its key: the
    /// server, with the URL read from `url_env` and the password from
    /// `password_file` / `password_env`, and the CA file resolved with
    /// `ctx`. The caller gives the key ([`PostgresConfig::master_key`],
    /// [`PostgresConfig::master_key_file`] or [`PostgresConfig::key_provider`]),
    /// as a store whose key is [`KeySource::Provider`] needs.
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` and the setting, never the password:
    /// the variable of `url_env` or `password_env` is not set, the password
    /// file cannot be read or is empty, the URL of `url_env` does not parse.
    /// No network I/O is made.
    pub fn base_config(
        &self,
        id: &StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<PostgresConfig> {
        let mut config = match &self.connect {
            Connect::Url(url) => PostgresConfig::from_url(url.clone()),
            Connect::UrlEnv(var) => {
                let url = ctx.env(var).ok_or_else(|| {
                    Error::config(id, format!("the environment variable {var} (url_env) is not set"))
                })?;
                let url = zeroize::Zeroizing::new(url);
                if let Err(e) = url.parse::<tokio_postgres::Config>() {
                    return Err(Error::config(id, format!("{var} (url_env) is not a PostgreSQL URL: {e}")));
                }
                PostgresConfig::from_url(url.to_string())
            }
            Connect::Parts { host, port, user, database } => {
                let mut c = PostgresConfig::new(host.clone()).port(*port);
                if let Some(user) = user {
                    c = c.user(user.clone());
                }
                if let Some(db) = database {
                    c = c.database(db.clone());
                }
                c
            }
        };
        if let Some(source) = &self.password {
            let setting = match source {
                credstore_core::config::SecretSource::File(_) => "password_file",
                credstore_core::config::SecretSource::Env(_) => "password_env",
            };
            let password = source.read(id, ctx).map_err(|e| match e {
                Error::Config { reason, .. } => Error::config(id, format!("{setting}: {reason}")),
                other => other,
            })?;
            config = config.password(password);
        }
        config = config
            .schema(self.schema.clone())
            .max_connections(self.max_connections)
            .connect_timeout(self.connect_timeout)
            .acquire_timeout(self.acquire_timeout)
            .statement_timeout(self.statement_timeout)
            .change_feed(self.change_feed)
            .retention(self.retention);
        if let Some(tls) = self.tls {
            config = config.tls(tls);
        }
        if let Some(ca) = &self.ca_file {
            config = config.ca_file(ctx.path(ca));
        }
        Ok(config)
    }

    /// Loads the key-encryption key of store `id` from its source, creating
    /// the key file when [`KeySource::File`] names none.
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` and the source, as the SQLite store's
    /// settings; the key is [`KeySource::Provider`], which these settings
    /// cannot load.
    pub fn load_master_key(
        &self,
        id: &StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<MasterKey> {
        self.master_key.load(
            self.allow_loose_permissions,
            id,
            ctx,
            "PostgresSettings::base_config and PostgresConfig::key_provider",
        )
    }

    /// Opens the store `id` of these settings with the key of its own
    /// settings ([`PostgresSettings::load_master_key`]).
    ///
    /// # Errors
    /// Those of [`PostgresSettings::base_config`],
    /// [`PostgresSettings::load_master_key`] (before any I/O) and
    /// [`crate::PostgresStore::open`].
    pub async fn open(
        self,
        id: StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<crate::PostgresStore> {
        let config = self.base_config(&id, ctx)?;
        let key = self.load_master_key(&id, ctx)?;
        crate::PostgresStore::open(id, config.master_key(key)).await
    }
}

#[cfg(feature = "serde")]
pub(crate) mod de {
    use super::*;
    use credstore_core::config::SecretSource;

    /// The fields of a config file's table, also filled from a URI by
    /// [`crate::PostgresScheme`] and checked by the same `try_from`.
    #[derive(Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawPostgresSettings {
        #[serde(default)]
        pub(crate) url: Option<String>,
        #[serde(default)]
        pub(crate) url_env: Option<String>,
        #[serde(default)]
        pub(crate) host: Option<String>,
        #[serde(default)]
        pub(crate) port: Option<u16>,
        #[serde(default)]
        pub(crate) user: Option<String>,
        #[serde(default)]
        pub(crate) database: Option<String>,
        #[serde(default)]
        pub(crate) password_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) password_env: Option<String>,
        #[serde(default)]
        pub(crate) schema: Option<String>,
        #[serde(default)]
        pub(crate) tls: Option<String>,
        #[serde(default)]
        pub(crate) ca_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) max_connections: Option<usize>,
        #[serde(default)]
        pub(crate) connect_timeout_ms: Option<u64>,
        #[serde(default)]
        pub(crate) acquire_timeout_ms: Option<u64>,
        #[serde(default)]
        pub(crate) statement_timeout_ms: Option<u64>,
        #[serde(default)]
        pub(crate) change_feed: Option<bool>,
        #[serde(default)]
        pub(crate) max_versions: Option<u32>,
        #[serde(default)]
        pub(crate) max_version_age_secs: Option<u64>,
        #[serde(default)]
        pub(crate) master_key_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) master_key_env: Option<String>,
        #[serde(default)]
        pub(crate) passphrase_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) passphrase_env: Option<String>,
        #[serde(default)]
        pub(crate) allow_loose_permissions: bool,
        /// `key = { provider = .. }`: read by the caller, only noted here.
        #[serde(default)]
        pub(crate) key: Option<serde::de::IgnoredAny>,
    }

    fn millis(name: &str, value: Option<u64>, default: Duration) -> std::result::Result<Duration, String> {
        match value {
            None => Ok(default),
            Some(0) => Err(format!("{name} must be at least 1")),
            Some(ms) => Ok(Duration::from_millis(ms)),
        }
    }

    impl TryFrom<RawPostgresSettings> for PostgresSettings {
        type Error = String;

        fn try_from(raw: RawPostgresSettings) -> std::result::Result<Self, String> {
            let parts_given = raw.port.is_some() || raw.user.is_some() || raw.database.is_some();
            let connect = match (raw.url, raw.url_env, raw.host) {
                (Some(url), None, None) if !parts_given => {
                    // Checked without ever repeating the URL: it may hold a password.
                    let parsed: tokio_postgres::Config = url.parse().map_err(|_| {
                        "url is not a postgres:// URL (give it with url_env if it holds a password)"
                    })?;
                    if parsed.get_password().is_some() {
                        return Err("url holds a password, which a config file must not: put the whole URL in \
                                    an environment variable named by url_env, or the password in password_file \
                                    or password_env"
                            .into());
                    }
                    Connect::Url(url)
                }
                (None, Some(var), None) if !parts_given => Connect::UrlEnv(var),
                (None, None, Some(host)) if !host.is_empty() => Connect::Parts {
                    host,
                    port: raw.port.unwrap_or(DEFAULT_PORT),
                    user: raw.user,
                    database: raw.database,
                },
                (None, None, Some(_)) => return Err("host is empty".into()),
                (None, None, None) => return Err("give the server: host (with user), url_env or url".into()),
                _ => {
                    return Err(
                        "give exactly one of host (with port, user, database), url_env and url".into()
                    );
                }
            };
            if let Connect::Parts { user: None, .. } = &connect {
                return Err("user is missing: give the user to log in as".into());
            }
            let password = SecretSource::one_of("password", raw.password_file, raw.password_env)?;
            let schema = raw.schema.unwrap_or_else(|| DEFAULT_SCHEMA.to_owned());
            check_schema(&schema)?;
            let tls = match raw.tls.as_deref() {
                None => None,
                Some(s) => Some(TlsMode::parse(s).ok_or_else(|| {
                    format!("tls is \"verify-full\" or \"disable\", not {s:?} (there is no unverified TLS)")
                })?),
            };
            let retention = credstore_core::config::retention_from(
                raw.max_versions,
                raw.max_version_age_secs,
                DEFAULT_RETENTION,
            )?;
            if raw.max_connections == Some(0) {
                return Err("max_connections must be at least 1".into());
            }
            let master_key = KeySource::from_fields(credstore_seal::KeyFields {
                master_key_file: raw.master_key_file,
                master_key_env: raw.master_key_env,
                passphrase_file: raw.passphrase_file,
                passphrase_env: raw.passphrase_env,
                provider_table: raw.key.is_some(),
            })?;
            Ok(PostgresSettings {
                connect,
                password,
                schema,
                tls,
                ca_file: raw.ca_file,
                max_connections: raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
                connect_timeout: millis(
                    "connect_timeout_ms",
                    raw.connect_timeout_ms,
                    DEFAULT_CONNECT_TIMEOUT,
                )?,
                acquire_timeout: millis(
                    "acquire_timeout_ms",
                    raw.acquire_timeout_ms,
                    DEFAULT_ACQUIRE_TIMEOUT,
                )?,
                statement_timeout: millis(
                    "statement_timeout_ms",
                    raw.statement_timeout_ms,
                    DEFAULT_STATEMENT_TIMEOUT,
                )?,
                change_feed: raw.change_feed.unwrap_or(true),
                retention,
                master_key,
                allow_loose_permissions: raw.allow_loose_permissions,
            })
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use credstore_core::config::ConfigContext;

        fn parse(json: &str) -> std::result::Result<PostgresSettings, String> {
            serde_json::from_str(json).map_err(|e| e.to_string())
        }

        #[test]
        fn settings_parse_with_defaults() {
            let s = parse(r#"{"host": "db", "user": "u", "master_key_env": "K"}"#).unwrap();
            assert_eq!(s.schema(), DEFAULT_SCHEMA);
            assert_eq!(s.master_key(), &KeySource::Env("K".into()));
            assert_eq!((s.max_connections, s.statement_timeout), (16, Duration::from_secs(5)));
            assert!(s.change_feed);
            assert_eq!(s.retention, DEFAULT_RETENTION);
            let s = parse(
                r#"{"host": "db", "user": "u", "master_key_env": "K", "max_versions": 3,
                    "max_version_age_secs": 86400}"#,
            )
            .unwrap();
            assert_eq!(s.retention, Retention::versions(3).with_max_age(Some(Duration::from_secs(86_400))));
            let s = parse(r#"{"url_env": "U", "key": {"provider": "aws-kms"}, "tls": "disable"}"#).unwrap();
            assert_eq!(s.master_key(), &KeySource::Provider);
            assert_eq!(s.tls, Some(TlsMode::Disable));
        }

        #[test]
        fn mistakes_are_named_and_never_show_a_password() {
            for (json, needle) in [
                (r#"{"user": "u", "master_key_env": "K"}"#, "give the server"),
                (
                    r#"{"host": "db", "url_env": "U", "user": "u", "master_key_env": "K"}"#,
                    "exactly one of host",
                ),
                (r#"{"url_env": "U", "user": "u", "master_key_env": "K"}"#, "exactly one of host"),
                (r#"{"host": "", "user": "u", "master_key_env": "K"}"#, "host is empty"),
                (r#"{"host": "db", "master_key_env": "K"}"#, "user is missing"),
                (r#"{"url": "postgres://u:sekrit@db/x", "master_key_env": "K"}"#, "url_env"),
                (r#"{"url": "::nope::", "master_key_env": "K"}"#, "not a postgres:// URL"),
                (r#"{"host": "db", "user": "u", "schema": "Bad-Name", "master_key_env": "K"}"#, "schema"),
                (r#"{"host": "db", "user": "u", "schema": "pg_x", "master_key_env": "K"}"#, "pg_"),
                (r#"{"host": "db", "user": "u", "tls": "prefer", "master_key_env": "K"}"#, "tls is"),
                (
                    r#"{"host": "db", "user": "u", "max_connections": 0, "master_key_env": "K"}"#,
                    "max_connections",
                ),
                (
                    r#"{"host": "db", "user": "u", "statement_timeout_ms": 0, "master_key_env": "K"}"#,
                    "statement",
                ),
                (
                    r#"{"host": "db", "user": "u", "password_file": "p", "password_env": "P", "master_key_env": "K"}"#,
                    "at most one of password_file",
                ),
                (r#"{"host": "db", "user": "u"}"#, "exactly one of master_key_file"),
                (r#"{"host": "db", "user": "u", "master_key_env": "K", "max_versions": 0}"#, "max_versions"),
                (
                    r#"{"host": "db", "user": "u", "master_key_env": "K", "max_version_age_secs": 0}"#,
                    "max_version_age_secs",
                ),
                (
                    r#"{"host": "db", "user": "u", "master_key_env": "K", "key": {"provider": "x"}}"#,
                    "two keys for one store",
                ),
                (r#"{"host": "db", "user": "u", "master_key_env": "K", "password": "x"}"#, "unknown field"),
            ] {
                let err = parse(json).unwrap_err();
                assert!(err.contains(needle), "{json}: {err}");
                assert!(!err.contains("sekrit"), "{err}");
            }
        }

        #[test]
        fn an_inline_url_without_a_password_is_fine() {
            let s = parse(r#"{"url": "postgres://u@db.internal:6543/x", "master_key_env": "K"}"#).unwrap();
            let config = s.base_config(&"s".parse().unwrap(), &ConfigContext::new("/")).unwrap();
            assert_eq!(config.tls_mode(), TlsMode::VerifyFull);
        }

        #[test]
        fn secrets_come_from_their_source_and_errors_name_the_setting_and_the_store() {
            let dir = tempfile::tempdir().unwrap();
            let ctx = ConfigContext::new(dir.path()).with_env(|v| match v {
                "URL" => Some("postgres://u:sekrit@127.0.0.1:1/x".to_owned()),
                "BADURL" => Some("postgres://u:sekrit@[nope".to_owned()),
                _ => None,
            });
            let id: StoreId = "team-pg".parse().unwrap();
            let s = parse(r#"{"url_env": "URL", "master_key_env": "K"}"#).unwrap();
            let config = s.base_config(&id, &ctx).unwrap();
            assert_eq!(config.tls_mode(), TlsMode::Disable, "loopback");
            assert!(!format!("{config:?}").contains("sekrit"));
            for (json, needle) in [
                (r#"{"url_env": "UNSET", "master_key_env": "K"}"#, "UNSET (url_env) is not set"),
                (
                    r#"{"url_env": "BADURL", "master_key_env": "K"}"#,
                    "BADURL (url_env) is not a PostgreSQL URL",
                ),
                (
                    r#"{"host": "db", "user": "u", "password_file": "missing", "master_key_env": "K"}"#,
                    "password_file",
                ),
                (
                    r#"{"host": "db", "user": "u", "password_env": "NOPE", "master_key_env": "K"}"#,
                    "password_env",
                ),
            ] {
                let err = parse(json).unwrap().base_config(&id, &ctx).unwrap_err();
                assert!(matches!(err, Error::Config { .. }), "{err}");
                let shown = err.to_string();
                assert!(shown.contains(needle) && shown.contains("team-pg"), "{json}: {shown}");
                assert!(!shown.contains("sekrit"), "{shown}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_defaults_to_off_for_loopback_and_sockets_only() {
        assert_eq!(PostgresConfig::new("127.0.0.1").tls_mode(), TlsMode::Disable);
        assert_eq!(PostgresConfig::new("localhost").tls_mode(), TlsMode::Disable);
        assert_eq!(PostgresConfig::new("::1").tls_mode(), TlsMode::Disable);
        assert_eq!(PostgresConfig::new("/run/postgresql").tls_mode(), TlsMode::Disable);
        assert_eq!(PostgresConfig::new("db.internal").tls_mode(), TlsMode::VerifyFull);
        assert_eq!(PostgresConfig::new("10.0.0.1").tls_mode(), TlsMode::VerifyFull);
        assert_eq!(PostgresConfig::from_url("postgres://u@db/x").tls_mode(), TlsMode::VerifyFull);
        assert_eq!(PostgresConfig::from_url("postgres://u@localhost/x").tls_mode(), TlsMode::Disable);
        assert_eq!(PostgresConfig::new("db").tls(TlsMode::Disable).tls_mode(), TlsMode::Disable);
    }

    #[test]
    fn a_url_that_sets_tls_itself_is_refused_before_any_io() {
        let id = StoreId::new("pg").unwrap();
        for url in ["postgres://u@db/x?sslmode=disable", "host=db user=u sslrootcert=/ca.pem"] {
            let err =
                PostgresConfig::from_url(url).master_key(MasterKey::generate()).resolve(&id).err().unwrap();
            assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("`tls`"), "{url}: {err}");
        }
        assert!(PostgresConfig::from_url("postgres://u@db/x")
            .master_key(MasterKey::generate())
            .resolve(&id)
            .is_ok());
    }

    #[test]
    fn a_zero_max_version_age_is_refused_before_any_io() {
        let id = StoreId::new("pg").unwrap();
        let config = PostgresConfig::new("db")
            .master_key(MasterKey::generate())
            .retention(Retention::versions(3).with_max_age(Some(Duration::ZERO)));
        let err = config.resolve(&id).err().unwrap();
        assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("max_version_age"), "{err}");
        assert!(format!("{:?}", config.retention(DEFAULT_RETENTION)).contains("max_versions: Some(10)"));
    }

    #[test]
    fn schema_names_are_checked() {
        for ok in ["credstore", "team_a", "_x", "a1"] {
            assert!(check_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Team", "a-b", "1a", "pg_catalog", "a\"b", &"a".repeat(MAX_SCHEMA_LEN + 1)] {
            assert!(check_schema(bad).is_err(), "{bad}");
        }
    }
}
