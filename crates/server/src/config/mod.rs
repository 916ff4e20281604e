//! Settings: defaults, then the TOML config file, then `CREDSTORE_*`
//! environment variables, then command-line flags, each overriding the one
//! before.
//!
//! | setting | TOML | environment | default |
//! | --- | --- | --- | --- |
//! | listen address | `listen` | `CREDSTORE_LISTEN` | `127.0.0.1:8080` |
//! | data directory | `data_dir` | `CREDSTORE_DATA_DIR` | `./credstore-data` |
//! | master key of `sqlite-default` | — | `CREDSTORE_MASTER_KEY` (base64) | generated into `data_dir/master.key` |
//! | admin token | — | `CREDSTORE_ADMIN_TOKEN` | generated on first run, hash in `data_dir/admin-token.sha256` |
//! | admin token may read values (`reveal`) | `admin_reveal` | — | `false` |
//! | config file | — | `CREDSTORE_CONFIG` (or `--config`) | none |
//! | embedded stores | `default_stores` | — | `true` |
//! | log format | `log_format` | `CREDSTORE_LOG_FORMAT` | `text` (or `json`) |
//! | request timeout | `request_timeout_ms` | — | 30,000 |
//! | timeout of one store call | `store_timeout_ms` | — | 10,000 |
//! | availability probe timeout | `probe_timeout_ms` | — | 3,000 |
//! | body limit | `body_limit_bytes` | — | 1,048,576 |
//! | shutdown grace period | `shutdown_grace_ms` | — | 30,000 |
//! | time between two probes of a store (±10 %) | `probe_interval_ms` | — | 10,000 |
//! | age past which a probe result is refreshed on demand | `probe_staleness_ms` | — | 30,000 |
//! | audit log | `audit_log` (a path, or `-` for stderr) | `CREDSTORE_AUDIT_LOG` | `data_dir/audit.log` (mode 0600) |
//! | audit log size at which it is rotated (0: never; SIGHUP reopens it) | `audit_max_bytes` | — | 104,857,600 |
//! | rotated audit logs kept (`audit.log.1` ...) | `audit_keep` | — | 5 (1 to 1000) |
//! | refusals for a missing or unknown token one address gets at once, then a minute (past them: 429) | `auth_failure_burst`, `auth_failures_per_minute` | — | 20, 60 |
//! | console session idle timeout / lifetime (see [`crate::auth::sessions`]) | `session_idle_timeout_ms`, `session_lifetime_ms` | — | 1,800,000 (30 min), 43,200,000 (12 h) |
//! | separate metrics listener | `metrics_listen` | `CREDSTORE_METRICS_LISTEN` | none (`/metrics` on `listen`, behind a token) |
//! | TLS certificate chain (PEM, leaf first) | `tls.cert_file` | `CREDSTORE_TLS_CERT_FILE` | none (plaintext) |
//! | TLS private key (PEM) | `tls.key_file` | `CREDSTORE_TLS_KEY_FILE` | none |
//! | CA of the client certificates every client must present | `tls.client_ca_file` | `CREDSTORE_TLS_CLIENT_CA_FILE` | none (no client certificates) |
//! | plaintext on a non-loopback address (behind a TLS-terminating proxy) | `allow_plaintext` | `CREDSTORE_ALLOW_PLAINTEXT` | `false` |
//! | time to a complete request head (and TLS handshake) | `header_read_timeout_ms` | — | 10,000 |
//! | idle keep-alive connection closed after | `idle_timeout_ms` | — | 60,000 |
//! | open connections at most | `max_connections` | — | 10,000 (kept below the open-file limit) |
//! | concurrent HTTP/2 streams per connection | `http2_max_concurrent_streams` | — | 100 |
//!
//! A `listen` (or `metrics_listen`) address that is not loopback needs
//! `tls`, or `allow_plaintext = true` when a TLS-terminating proxy is the
//! server's only client: the server refuses to start otherwise. See
//! [`crate::runtime::tls`] and [`crate::runtime::listener`] for TLS and the connection limits.
//!
//! Secrets never come from the config file or the command line: the master
//! key and admin token come from the environment, and further stores name
//! the file or environment variable that holds theirs. Relative paths in
//! the config file are relative to the file's directory.
//!
//! A `type = "postgres"` store's table (`credstore_postgres::PostgresSettings`;
//! the server README's PostgreSQL stores has the details):
//!
//! | setting | TOML | default |
//! | --- | --- | --- |
//! | the server: a host name, an address or a Unix socket's folder | `host` (with `port`, `user`, `database`) | one of `host`, `url_env`, `url` |
//! | port, user, database | `port`, `user`, `database` | 5432, required, the user's name |
//! | a whole `postgres://` URL, password allowed, in an environment variable | `url_env` | — |
//! | a URL without a password (one with a password is refused) | `url` | — |
//! | the password | `password_file` or `password_env` | none |
//! | the schema of the store's tables | `schema` | `credstore` |
//! | TLS: `verify-full` or `disable` | `tls` | `disable` on loopback and Unix sockets, else `verify-full` |
//! | the CA (PEM) of the database's certificate | `ca_file` | the platform's roots |
//! | pool size | `max_connections` | 16 |
//! | connect, pool acquire and statement timeouts | `connect_timeout_ms`, `acquire_timeout_ms`, `statement_timeout_ms` | 5,000 each |
//! | the change feed (LISTEN/NOTIFY) that keeps other replicas' caches fresh | `change_feed` | `true` |
//! | the key-encryption key | `key = { provider = "aws-kms" \| "vault-transit" \| "keychain" \| "master-key" \| "passphrase", … }` ([`keys`]), or `master_key_file` / `master_key_env` / `passphrase_file` / `passphrase_env` | required |
//!
//! This module keeps the process's settings. Each `[[stores]]` table is
//! `id`, `type`, an optional `cache` ([`CacheSettings`]) and the settings
//! of its type, which the backend crate owns (`credstore_vault::VaultSettings`
//! and its siblings) and [`crate::config::backends`] maps `type` to.
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/credstore"
//! tls = { cert_file = "/etc/credstore/tls/fullchain.pem", key_file = "/etc/credstore/tls/key.pem" }
//!
//! [[stores]]
//! id = "team-sqlite"
//! type = "encrypted-sqlite"
//! path = "team.db"
//! master_key_file = "team.key"     # base64 of 32 bytes, created (0600) when missing;
//!                                  # refused when group or others may read it,
//!                                  # unless allow_loose_permissions = true;
//!                                  # or key = { provider = "passphrase", passphrase_env = "TEAM_PASS" }
//!                                  # (a key provider: see crate::config::keys)
//!
//! [[stores]]
//! id = "scratch"
//! type = "memory"
//!
//! [[stores]]
//! id = "vault-prod"
//! type = "vault"
//! address = "https://vault.example.com:8200"
//! token_file = "/run/secrets/vault-token"
//! cache = { ttl_ms = 60000 }      # a read-through cache; see CacheSettings
//!
//! [[stores]]
//! id = "team-pg"
//! type = "postgres"                # the `postgres` feature (on by default)
//! host = "db.internal"
//! user = "credstore"
//! database = "secrets"
//! password_file = "/run/secrets/pg-password"
//! schema = "team_a"
//! key = { provider = "aws-kms", key_id = "alias/credstore" }
//! cache = { ttl_ms = 60000 }      # kept fresh across replicas by the change feed
//!
//! [[stores]]
//! id = "laptop"
//! type = "keychain"                # the `keychain` feature (on by default)
//! platform = "keyutils"
//! keyring = "user"
//!
//! [[tokens]]
//! name = "ci"
//! sha256 = "<64 hex digits: `credstore hash-token < token-file`>"
//! tenants = ["tenant_123"]        # or ["*"]
//! projects = ["*"]
//! stores = ["vault-prod"]         # optional; every store when left out
//! actions = ["view", "edit"]
//!
//! [[tokens]]                      # grants: each allows its own cross product only
//! name = "deploy"
//! sha256 = "<64 hex digits>"
//! grants = [
//!   { tenants = ["a"], projects = ["web"], actions = ["view", "edit"] },
//!   { tenants = ["b"], projects = ["api"], stores = ["vault-prod"], actions = ["view", "reveal"] },
//! ]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use credstore_core::config::ConfigContext;
use credstore_core::{SecretValue, StoreId};
use credstore_layers::CacheLayer;
use credstore_memory::MemorySettings;
use credstore_sqlite::{KeySource, SqliteSettings};
use serde::Deserialize;

use crate::audit::{AuditTarget, Rotation};
use crate::auth::failures::AuthFailureLimit;
use crate::auth::sessions::SessionSettings;
use crate::auth::{Action, Grant, Scope, TokenEntry, TokenHash};
use backends::Backends;
pub use backends::StoreSpec;

pub mod backends;
#[cfg(test)]
mod key_tests;
pub mod keys;
#[cfg(all(test, feature = "postgres"))]
mod postgres_tests;
pub mod uri;

/// The default time between two probes of a store: 10 s.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(10);
/// The default age past which a result is refreshed on demand: 30 s.
pub const DEFAULT_PROBE_STALENESS: Duration = Duration::from_secs(30);

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./credstore-data";
/// The id of the embedded memory store.
pub const MEMORY_DEFAULT_ID: &str = "memory-default";
/// The id of the embedded encrypted SQLite store.
pub const SQLITE_DEFAULT_ID: &str = "sqlite-default";
/// The file name of `sqlite-default`'s database in the data directory.
pub const SQLITE_DEFAULT_DB: &str = "sqlite-default.db";
/// The file name of `sqlite-default`'s master key in the data directory.
pub const MASTER_KEY_FILE: &str = "master.key";
/// The environment variable that may hold `sqlite-default`'s master key
/// (base64), instead of the key file.
pub const MASTER_KEY_ENV: &str = "CREDSTORE_MASTER_KEY";

/// A misconfiguration, with where it was found.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The largest `cache.ttl_ms` and `cache.max_stale_ms`: 24 hours.
pub const MAX_CACHE_MS: u64 = 24 * 60 * 60 * 1000;
/// The largest `cache.max_entries`: 1,000,000.
pub const MAX_CACHE_ENTRIES: usize = 1_000_000;

/// A store's read-through cache, as written in TOML
/// (`cache = { ttl_ms = 60000 }`); every field is optional, so
/// `cache = {}` is a cache with the defaults of
/// [`CacheLayer`].
///
/// | field | default | allowed |
/// | --- | --- | --- |
/// | `ttl_ms` | 300000 | 1 to 86400000 (24 h) |
/// | `max_entries` | 1000 | 1 to 1000000 |
/// | `max_stale_ms` | `ttl_ms`, at most 60000 | 0 (off) to 86400000 (24 h) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// How long a value read from the store is served without asking it.
    pub ttl_ms: Option<u64>,
    /// The most entries the store's cache holds, all projects together
    /// (least recently used evicted first).
    pub max_entries: Option<usize>,
    /// How long past its TTL an entry may still be served while the store
    /// fails with retriable errors (and is revalidated by version
    /// otherwise); 0 turns both off.
    pub max_stale_ms: Option<u64>,
}

impl CacheSettings {
    /// The cache these settings describe.
    ///
    /// # Errors
    /// A value out of its range (see the table), naming the field.
    pub fn to_layer(&self) -> Result<CacheLayer, String> {
        let mut layer = CacheLayer::new();
        if let Some(ms) = self.ttl_ms {
            if !(1..=MAX_CACHE_MS).contains(&ms) {
                return Err(format!(
                    "cache.ttl_ms must be between 1 and {MAX_CACHE_MS} (24 h), not {ms}{}",
                    if ms == 0 { "; leave `cache` out for no cache" } else { "" }
                ));
            }
            layer = layer.with_ttl(Duration::from_millis(ms));
        }
        if let Some(n) = self.max_entries {
            if !(1..=MAX_CACHE_ENTRIES).contains(&n) {
                return Err(format!(
                    "cache.max_entries must be between 1 and {MAX_CACHE_ENTRIES}, not {n}{}",
                    if n == 0 { "; leave `cache` out for no cache" } else { "" }
                ));
            }
            layer = layer.with_max_entries(n);
        }
        if let Some(ms) = self.max_stale_ms {
            if ms > MAX_CACHE_MS {
                return Err(format!(
                    "cache.max_stale_ms must be at most {MAX_CACHE_MS} (24 h), not {ms}; 0 turns serving stale values off"
                ));
            }
            layer = layer.with_max_stale(Duration::from_millis(ms));
        }
        Ok(layer)
    }
}

/// The default `header_read_timeout_ms`: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `idle_timeout_ms`: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default `max_connections`: 10,000 (lowered at start to stay below
/// the process's open-file limit; see [`crate::runtime::listener`]).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The default `http2_max_concurrent_streams`: 100.
pub const DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS: u32 = 100;

/// TLS on the listeners, as written in TOML
/// (`tls = { cert_file = "…", key_file = "…" }`); relative paths are
/// relative to the config file's directory. The files are read (and
/// checked: readable, the key matches the certificate, the certificates
/// are valid now) when the server starts and again on SIGHUP; see
/// [`crate::runtime::tls`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// The certificate chain, PEM: the server's certificate first, then the
    /// intermediates (a "full chain" file).
    pub cert_file: PathBuf,
    /// The private key of the certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, every client must present a certificate issued by one of
    /// the CA certificates in this PEM file (bearer tokens are still
    /// required). Read at start only.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// The resolved settings of a `credstore` process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded stores keep their files and the admin token hash.
    pub data_dir: PathBuf,
    /// The admin token from the environment, if set.
    pub admin_token: Option<SecretValue>,
    /// Whether the admin token may read credential values (the `reveal`
    /// action); off unless the config file says `admin_reveal = true`.
    pub admin_reveal: bool,
    /// Further tokens with their scopes.
    pub tokens: Vec<TokenEntry>,
    /// The stores, in the order they are listed.
    pub stores: Vec<StoreSpec>,
    /// The read-through cache of each store configured with one
    /// (`cache = { .. }`), by store id.
    pub caches: BTreeMap<StoreId, CacheLayer>,
    /// The log format.
    pub log_format: LogFormat,
    /// How long one request may take.
    pub request_timeout: Duration,
    /// How long one store call may take.
    pub store_timeout: Duration,
    /// How long one store's availability probe may take.
    pub probe_timeout: Duration,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_grace: Duration,
    /// The time between two availability probes of one store (jittered
    /// by ±10 %).
    pub probe_interval: Duration,
    /// The age past which a probe result is refreshed when a request finds
    /// it (the request still answers at once).
    pub probe_staleness: Duration,
    /// Where the audit trail goes.
    pub audit_log: AuditTarget,
    /// When a file audit log is rotated, and how many files are kept.
    pub audit_rotation: Rotation,
    /// How many refusals for a missing or unknown token one address gets.
    pub auth_failure_limit: AuthFailureLimit,
    /// How long console sessions last ([`crate::auth::sessions`]).
    pub sessions: SessionSettings,
    /// A separate listener serving `/metrics` without a token.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS on both listeners; `None` serves plaintext HTTP.
    pub tls: Option<TlsSettings>,
    /// Whether plaintext HTTP may be served on a non-loopback address
    /// (for a TLS-terminating proxy in front of the server).
    pub allow_plaintext: bool,
    /// How long a connection may take from being accepted (or from its
    /// previous answer, on a kept-alive HTTP/1.1 connection) to a complete
    /// request head, TLS handshake included.
    pub header_read_timeout: Duration,
    /// How long a connection that has answered at least one request may
    /// stay open with no request in flight (HTTP/2; an HTTP/1.1 connection
    /// waiting for its next request is closed after `header_read_timeout`).
    pub idle_timeout: Duration,
    /// The most connections open at once on the main listener; lowered to
    /// stay below the open-file limit (see [`crate::runtime::listener`]).
    pub max_connections: usize,
    /// The most concurrent streams (requests) of one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
}

impl Settings {
    /// Settings with every default and no file or environment: the embedded
    /// stores in `data_dir`, listening on `listen`.
    pub fn defaults(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let audit_log = AuditTarget::default_in(&data_dir);
        Self {
            listen,
            stores: default_stores(
                &data_dir,
                &Backends::builtin(),
                &ConfigContext::new("").with_env(|_| None),
            ),
            caches: BTreeMap::new(),
            data_dir,
            admin_token: None,
            admin_reveal: false,
            tokens: Vec::new(),
            log_format: LogFormat::Text,
            request_timeout: Duration::from_millis(30_000),
            store_timeout: Duration::from_millis(10_000),
            probe_timeout: Duration::from_millis(3_000),
            body_limit: 1024 * 1024,
            shutdown_grace: Duration::from_millis(30_000),
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_staleness: DEFAULT_PROBE_STALENESS,
            audit_log,
            audit_rotation: Rotation::DEFAULT,
            auth_failure_limit: AuthFailureLimit::DEFAULT,
            sessions: SessionSettings::DEFAULT,
            metrics_listen: None,
            tls: None,
            allow_plaintext: false,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            http2_max_concurrent_streams: DEFAULT_HTTP2_MAX_CONCURRENT_STREAMS,
        }
    }

    /// Resolves the settings from the config file (the `config` argument, else
    /// `CREDSTORE_CONFIG`), then the environment read through `env`. Each
    /// `[[stores]]` table is read as the settings of its `type` in
    /// `backends`; their relative paths are relative to the config file's
    /// directory, and the secrets they name by `*_env` are read through
    /// `env` too.
    ///
    /// # Errors
    /// An unreadable or invalid config file or environment variable.
    pub fn load(
        config: Option<&Path>,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        backends: &Backends,
    ) -> Result<Self, ConfigError> {
        let config_path =
            config.map(Path::to_path_buf).or_else(|| env("CREDSTORE_CONFIG").map(PathBuf::from));
        let (file, base) = match &config_path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
                let file: FileConfig = toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))?;
                let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
                (file, base)
            }
            None => (FileConfig::default(), PathBuf::new()),
        };
        Self::from_file(file, &base, env, backends)
    }

    /// Resolves the settings from a parsed config file whose relative paths
    /// are relative to `base`, then the environment.
    ///
    /// # Errors
    /// As for [`Settings::load`].
    pub fn from_file(
        file: FileConfig,
        base: &Path,
        env: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        backends: &Backends,
    ) -> Result<Self, ConfigError> {
        let env = std::sync::Arc::new(env);
        let ctx = {
            let env = env.clone();
            ConfigContext::new(base).with_env(move |var| env(var))
        };
        let listen_text =
            env("CREDSTORE_LISTEN").or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = parse_listen(&listen_text)?;
        let data_dir = match env("CREDSTORE_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => file.data_dir.map(|d| base.join(d)).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        };
        let admin_token = env("CREDSTORE_ADMIN_TOKEN").map(SecretValue::from);
        let log_format = match env("CREDSTORE_LOG_FORMAT") {
            Some(f) => match f.to_ascii_lowercase().as_str() {
                "json" => LogFormat::Json,
                "text" => LogFormat::Text,
                other => {
                    return Err(ConfigError(format!("CREDSTORE_LOG_FORMAT is {other:?}; use text or json")))
                }
            },
            None => file.log_format.unwrap_or_default(),
        };

        let mut stores = if file.default_stores.unwrap_or(true) {
            default_stores(&data_dir, backends, &ctx)
        } else {
            Vec::new()
        };
        let mut caches = BTreeMap::new();
        for (i, table) in file.stores.into_iter().enumerate() {
            let (spec, cache) =
                resolve_store(table, backends, &ctx).map_err(|e| ConfigError(format!("stores[{i}]: {e}")))?;
            if let Some(cache) = cache {
                caches.insert(spec.id().clone(), cache);
            }
            stores.push(spec);
        }
        let mut seen = BTreeSet::new();
        for s in &stores {
            if !seen.insert(s.id().clone()) {
                return Err(ConfigError(format!("two stores have the id '{}'", s.id())));
            }
        }
        let tokens = file
            .tokens
            .into_iter()
            .enumerate()
            .map(|(i, t)| t.resolve().map_err(|e| ConfigError(format!("tokens[{i}]: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;

        let defaults = Self::defaults(listen, data_dir.clone());
        let ms = |v: Option<u64>, d: Duration, name: &str| -> Result<Duration, ConfigError> {
            match v {
                Some(0) => Err(ConfigError(format!("{name} must be above 0"))),
                Some(v) => Ok(Duration::from_millis(v)),
                None => Ok(d),
            }
        };
        Ok(Self {
            listen,
            data_dir,
            admin_token,
            admin_reveal: file.admin_reveal.unwrap_or(false),
            tokens,
            stores,
            caches,
            log_format,
            request_timeout: ms(file.request_timeout_ms, defaults.request_timeout, "request_timeout_ms")?,
            store_timeout: ms(file.store_timeout_ms, defaults.store_timeout, "store_timeout_ms")?,
            probe_timeout: ms(file.probe_timeout_ms, defaults.probe_timeout, "probe_timeout_ms")?,
            body_limit: match file.body_limit_bytes {
                Some(n) if n < 1024 => {
                    return Err(ConfigError("body_limit_bytes must be at least 1024".into()))
                }
                Some(n) => n,
                None => defaults.body_limit,
            },
            shutdown_grace: ms(file.shutdown_grace_ms, defaults.shutdown_grace, "shutdown_grace_ms")?,
            probe_interval: ms(file.probe_interval_ms, defaults.probe_interval, "probe_interval_ms")?,
            probe_staleness: ms(file.probe_staleness_ms, defaults.probe_staleness, "probe_staleness_ms")?,
            audit_log: match env("CREDSTORE_AUDIT_LOG").or(file.audit_log) {
                Some(text) if text.is_empty() => {
                    return Err(ConfigError("audit_log is empty; give a path, or - for stderr".into()))
                }
                Some(text) => match AuditTarget::parse(&text) {
                    AuditTarget::File(path) => AuditTarget::File(base.join(path)),
                    stderr => stderr,
                },
                None => defaults.audit_log,
            },
            audit_rotation: Rotation {
                max_bytes: file.audit_max_bytes.unwrap_or(defaults.audit_rotation.max_bytes),
                keep: match file.audit_keep {
                    Some(n) if !(1..=1000).contains(&n) => {
                        return Err(ConfigError(format!("audit_keep must be between 1 and 1000, not {n}")))
                    }
                    Some(n) => n,
                    None => defaults.audit_rotation.keep,
                },
            },
            auth_failure_limit: AuthFailureLimit {
                burst: match file.auth_failure_burst {
                    Some(0) => return Err(ConfigError("auth_failure_burst must be at least 1".into())),
                    Some(n) => n,
                    None => defaults.auth_failure_limit.burst,
                },
                per_minute: match file.auth_failures_per_minute {
                    Some(0) => return Err(ConfigError("auth_failures_per_minute must be at least 1".into())),
                    Some(n) => n,
                    None => defaults.auth_failure_limit.per_minute,
                },
            },
            sessions: SessionSettings {
                idle_timeout: ms(
                    file.session_idle_timeout_ms,
                    defaults.sessions.idle_timeout,
                    "session_idle_timeout_ms",
                )?,
                lifetime: ms(file.session_lifetime_ms, defaults.sessions.lifetime, "session_lifetime_ms")?,
                ..defaults.sessions
            },
            metrics_listen: match env("CREDSTORE_METRICS_LISTEN").or(file.metrics_listen) {
                Some(text) => Some(
                    parse_listen(&text)
                        .map_err(|_| ConfigError(format!("metrics_listen {text:?} is not host:port")))?,
                ),
                None => None,
            },
            tls: resolve_tls(file.tls, base, &*env)?,
            allow_plaintext: match env("CREDSTORE_ALLOW_PLAINTEXT") {
                Some(v) => match v.to_ascii_lowercase().as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => {
                        return Err(ConfigError(format!(
                            "CREDSTORE_ALLOW_PLAINTEXT is {v:?}; use true or false"
                        )))
                    }
                },
                None => file.allow_plaintext.unwrap_or(false),
            },
            header_read_timeout: ms(
                file.header_read_timeout_ms,
                defaults.header_read_timeout,
                "header_read_timeout_ms",
            )?,
            idle_timeout: ms(file.idle_timeout_ms, defaults.idle_timeout, "idle_timeout_ms")?,
            max_connections: match file.max_connections {
                Some(0) => return Err(ConfigError("max_connections must be above 0".into())),
                Some(n) => n,
                None => defaults.max_connections,
            },
            http2_max_concurrent_streams: match file.http2_max_concurrent_streams {
                Some(0) => return Err(ConfigError("http2_max_concurrent_streams must be above 0".into())),
                Some(n) => n,
                None => defaults.http2_max_concurrent_streams,
            },
        })
    }

    /// The spec of the store `id`.
    pub fn store(&self, id: &str) -> Option<&StoreSpec> {
        self.stores.iter().find(|s| s.id() == id)
    }

    /// The read-through cache configured for store `id`, if any.
    pub fn cache(&self, id: &str) -> Option<CacheLayer> {
        self.caches.iter().find(|(k, _)| k.as_str() == id).map(|(_, c)| *c)
    }
}

/// The `tls` table with its paths resolved against `base`, each path
/// overridden by its `CREDSTORE_TLS_*` variable.
fn resolve_tls(
    file: Option<TlsSettings>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TlsSettings>, ConfigError> {
    let cert = env("CREDSTORE_TLS_CERT_FILE").map(PathBuf::from);
    let key = env("CREDSTORE_TLS_KEY_FILE").map(PathBuf::from);
    let client_ca = env("CREDSTORE_TLS_CLIENT_CA_FILE").map(PathBuf::from);
    let given = [
        ("tls.cert_file", file.as_ref().map(|t| &t.cert_file), &cert),
        ("tls.key_file", file.as_ref().map(|t| &t.key_file), &key),
    ];
    for (name, in_file, in_env) in given {
        if in_file.into_iter().chain(in_env.as_ref()).any(|p| p.as_os_str().is_empty()) {
            return Err(ConfigError(format!("{name} is empty; give the path of a PEM file")));
        }
    }
    let from_file = file.map(|t| TlsSettings {
        cert_file: base.join(t.cert_file),
        key_file: base.join(t.key_file),
        client_ca_file: t.client_ca_file.map(|p| base.join(p)),
    });
    let (cert, key, client_ca) = match from_file {
        Some(t) => (cert.unwrap_or(t.cert_file), key.unwrap_or(t.key_file), client_ca.or(t.client_ca_file)),
        None => match (cert, key) {
            (Some(c), Some(k)) => (c, k, client_ca),
            (None, None) if client_ca.is_none() => return Ok(None),
            (None, None) => {
                return Err(ConfigError(
                    "CREDSTORE_TLS_CLIENT_CA_FILE is set without a certificate and key \
                     (tls.cert_file and tls.key_file, or CREDSTORE_TLS_CERT_FILE and CREDSTORE_TLS_KEY_FILE)"
                        .into(),
                ))
            }
            (Some(_), None) => {
                return Err(ConfigError(
                    "CREDSTORE_TLS_CERT_FILE is set without CREDSTORE_TLS_KEY_FILE".into(),
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "CREDSTORE_TLS_KEY_FILE is set without CREDSTORE_TLS_CERT_FILE".into(),
                ))
            }
        },
    };
    Ok(Some(TlsSettings { cert_file: cert, key_file: key, client_ca_file: client_ca }))
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError(format!("listen address {text:?} is not host:port")))
}

/// The embedded stores: `memory-default` and `sqlite-default` (in
/// `data_dir`, keyed by the base64 key in `CREDSTORE_MASTER_KEY` when `ctx`
/// has it set, else by the key file `data_dir/master.key`).
///
/// # Panics
/// When `backends` lacks `memory` or `encrypted-sqlite`, which
/// [`Backends::builtin`] always has.
pub fn default_stores(data_dir: &Path, backends: &Backends, ctx: &ConfigContext) -> Vec<StoreSpec> {
    let master_key = match ctx.env(MASTER_KEY_ENV) {
        Some(_) => KeySource::Env(MASTER_KEY_ENV.to_owned()),
        None => KeySource::File(data_dir.join(MASTER_KEY_FILE)),
    };
    let id = |s: &str| StoreId::new(s).expect("valid id");
    let memory = backends.spec_of(id(MEMORY_DEFAULT_ID), "memory", MemorySettings::default(), ctx.clone());
    let sqlite = backends.spec_of(
        id(SQLITE_DEFAULT_ID),
        "encrypted-sqlite",
        SqliteSettings::new(data_dir.join(SQLITE_DEFAULT_DB), master_key),
        ctx.clone(),
    );
    vec![memory.expect("memory is built in"), sqlite.expect("encrypted-sqlite is built in")]
}

/// The TOML config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// `host:port` to listen on.
    #[serde(default)]
    pub listen: Option<String>,
    /// The data directory.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Whether to serve `memory-default` and `sqlite-default` (default true).
    #[serde(default)]
    pub default_stores: Option<bool>,
    /// Whether the admin token gets the `reveal` action, reading
    /// credential values (default false).
    #[serde(default)]
    pub admin_reveal: Option<bool>,
    /// `text` or `json`.
    #[serde(default)]
    pub log_format: Option<LogFormat>,
    /// Request timeout in ms.
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    /// Timeout of one store call in ms.
    #[serde(default)]
    pub store_timeout_ms: Option<u64>,
    /// Timeout of one availability probe in ms.
    #[serde(default)]
    pub probe_timeout_ms: Option<u64>,
    /// The largest request body in bytes.
    #[serde(default)]
    pub body_limit_bytes: Option<usize>,
    /// Shutdown grace period in ms.
    #[serde(default)]
    pub shutdown_grace_ms: Option<u64>,
    /// Time between two probes of a store, in ms.
    #[serde(default)]
    pub probe_interval_ms: Option<u64>,
    /// Age past which a probe result is refreshed on demand, in ms.
    #[serde(default)]
    pub probe_staleness_ms: Option<u64>,
    /// The audit log: a path (relative to the config file), or `-` for
    /// stderr.
    #[serde(default)]
    pub audit_log: Option<String>,
    /// The audit log's size at which it is rotated; 0: never.
    #[serde(default)]
    pub audit_max_bytes: Option<u64>,
    /// How many rotated audit logs are kept.
    #[serde(default)]
    pub audit_keep: Option<u32>,
    /// Refusals for a missing or unknown token one address gets at once.
    #[serde(default)]
    pub auth_failure_burst: Option<u32>,
    /// Refusals for a missing or unknown token one address gets a minute,
    /// past the burst.
    #[serde(default)]
    pub auth_failures_per_minute: Option<u32>,
    /// A console session unused for this long ends, in ms.
    #[serde(default)]
    pub session_idle_timeout_ms: Option<u64>,
    /// A console session ends this long after its sign-in, in ms.
    #[serde(default)]
    pub session_lifetime_ms: Option<u64>,
    /// `host:port` of a separate listener serving `/metrics` without a
    /// token.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// TLS: `tls = { cert_file = "…", key_file = "…" }` and optionally
    /// `client_ca_file`.
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Serve plaintext HTTP on a non-loopback address (default false).
    #[serde(default)]
    pub allow_plaintext: Option<bool>,
    /// Time to a complete request head in ms.
    #[serde(default)]
    pub header_read_timeout_ms: Option<u64>,
    /// Idle time after which a kept-alive connection is closed, in ms.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
    /// The most connections open at once.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// The most concurrent streams of one HTTP/2 connection.
    #[serde(default)]
    pub http2_max_concurrent_streams: Option<u32>,
    /// Further stores: each table's `id`, `type` and optional `cache`,
    /// and the settings of its type.
    #[serde(default)]
    pub stores: Vec<toml::Table>,
    /// Scoped tokens.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// One `[[stores]]` table: `id`, `type`, an optional `cache`, and the
/// settings of its type (see [`crate::config::backends`]); or `id`, `uri`
/// and an optional `cache` (see [`crate::config::uri`]).
fn resolve_store(
    mut table: toml::Table,
    backends: &Backends,
    ctx: &ConfigContext,
) -> Result<(StoreSpec, Option<CacheLayer>), String> {
    let by_uri = table.contains_key("uri");
    let mut take_str = |name: &str| match table.remove(name) {
        Some(toml::Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{name}` must be a string, not {}", other.type_str())),
        None => Err(format!("missing field `{name}`")),
    };
    let id = take_str("id")?;
    let kind = if by_uri { uri::URI_KIND.as_str().to_owned() } else { take_str("type")? };
    let id = StoreId::new(id).map_err(|e| e.to_string())?;
    if by_uri {
        if let Some(extra) = table.keys().find(|k| !matches!(k.as_str(), "uri" | "cache")) {
            return Err(format!(
                "store '{id}': `uri` is the store's whole configuration, so `{extra}` cannot be given with it \
                 (the URI's scheme names the type; every other setting is a parameter of the URI)"
            ));
        }
    }
    let cache = match table.remove("cache") {
        Some(value) => {
            let settings: CacheSettings =
                value.try_into().map_err(|e: toml::de::Error| format!("cache: {}", e.message()))?;
            Some(settings.to_layer()?)
        }
        None => None,
    };
    let spec = backends
        .spec(id.clone(), &kind, table, ctx.clone())
        .map_err(|e| format!("store '{id}' (type {kind:?}): {e}"))?;
    let uri_cache = spec.settings::<uri::UriSettings>().is_some_and(|s| s.uri().param("cache_ttl").is_some());
    if uri_cache && cache.is_some() {
        return Err(format!(
            "store '{id}': give one cache: `cache_ttl` in the uri or a `cache` table, not both"
        ));
    }
    Ok((spec, cache))
}

/// One `[[tokens]]` table: a name, the token's hash, and what it may do,
/// either as one grant written in the table (`tenants`, `projects`,
/// optionally `stores`, and `actions`: their cross product) or as a list of
/// `grants`, each its own cross product. A request is allowed by one grant
/// that matches its tenant, project, store and action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// A name for logs.
    pub name: String,
    /// The token's SHA-256, 64 hex digits (`credstore hash-token`).
    pub sha256: String,
    /// Tenant ids, or `["*"]` for all (the grant written in the table).
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Project ids, or `["*"]` for all (the grant written in the table).
    #[serde(default)]
    pub projects: Option<Vec<String>>,
    /// Store ids, or `["*"]` for all, the default (the grant written in the
    /// table).
    #[serde(default)]
    pub stores: Option<Vec<String>>,
    /// `view`, `edit`, `purge`, `metrics` and/or `reveal` (the grant written in the
    /// table).
    #[serde(default)]
    pub actions: Option<Vec<Action>>,
    /// The grants, when the table does not write one itself.
    #[serde(default)]
    pub grants: Vec<RawGrant>,
}

/// One grant of `grants = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    /// Tenant ids, or `["*"]` for all.
    pub tenants: Vec<String>,
    /// Project ids, or `["*"]` for all.
    pub projects: Vec<String>,
    /// Store ids, or `["*"]` for all (the default).
    #[serde(default)]
    pub stores: Option<Vec<String>>,
    /// `view`, `edit`, `purge`, `metrics` and/or `reveal`.
    pub actions: Vec<Action>,
}

impl RawGrant {
    fn resolve(self) -> Result<Grant, String> {
        for id in self.tenants.iter().chain(&self.projects) {
            if id != "*" {
                crate::ids::check_scope_id("tenant or project", id).map_err(|e| e.to_string())?;
            }
        }
        let stores = self.stores.unwrap_or_else(|| vec!["*".into()]);
        for id in stores.iter().filter(|id| *id != "*") {
            StoreId::new(id.as_str()).map_err(|e| format!("stores: {e}"))?;
        }
        if self.actions.is_empty() {
            return Err("actions is empty; give view, edit, purge, metrics and/or reveal".into());
        }
        Ok(Grant {
            tenants: Scope::from_list(&self.tenants),
            projects: Scope::from_list(&self.projects),
            stores: Scope::from_list(&stores),
            actions: self.actions.into_iter().collect(),
        })
    }
}

impl RawToken {
    fn resolve(self) -> Result<TokenEntry, String> {
        let hash = TokenHash::from_hex(&self.sha256)?;
        let Self { name, tenants, projects, stores, actions, grants, .. } = self;
        let inline = tenants.is_some() || projects.is_some() || stores.is_some() || actions.is_some();
        let grants = match (inline, grants.is_empty()) {
            (true, false) => {
                return Err("give either tenants, projects, stores and actions, or grants, not both".into())
            }
            (false, false) => grants
                .into_iter()
                .enumerate()
                .map(|(i, g)| g.resolve().map_err(|e| format!("grants[{i}]: {e}")))
                .collect::<Result<Vec<_>, _>>()?,
            (_, true) => {
                let missing = |field: &str| format!("missing {field} (or grants)");
                let grant = RawGrant {
                    tenants: tenants.ok_or_else(|| missing("tenants"))?,
                    projects: projects.ok_or_else(|| missing("projects"))?,
                    stores,
                    actions: actions.ok_or_else(|| missing("actions"))?,
                };
                vec![grant.resolve()?]
            }
        };
        Ok(TokenEntry { name, hash, grants })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[cfg(feature = "vault")]
    #[test]
    fn vault_jwt_login_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credstore.toml");
        let load = |stores: &str| {
            std::fs::write(&path, stores).unwrap();
            Settings::load(Some(&path), env_of(&[]), &Backends::builtin())
        };
        let s = load(
            r#"
[[stores]]
id = "vault-k8s"
type = "vault"
address = "http://127.0.0.1:8200"
jwt_role = "app"
jwt_file = "token.jwt"
jwt_mount = "kubernetes"
"#,
        )
        .unwrap();
        let spec = s.store("vault-k8s").expect("the vault store");
        let vault = spec.settings::<credstore_vault::VaultSettings>().expect("vault settings");
        let config = vault.to_config(spec.id(), spec.context()).unwrap();
        assert_eq!(config.auth_method(), "jwt");
        // Relative to the config file's directory.
        assert_eq!(config.jwt_file(), Some(dir.path().join("token.jwt").as_path()));
        assert_eq!(config.jwt_mount_path(), "kubernetes");

        let both = load(
            "[[stores]]\nid = \"v\"\ntype = \"vault\"\naddress = \"http://127.0.0.1:8200\"\n\
             jwt_role = \"app\"\ntoken_env = \"VAULT_TOKEN\"\n",
        );
        assert!(both.unwrap_err().to_string().contains("one of a token, an AppRole login and a JWT login"));
        let orphan = load(
            "[[stores]]\nid = \"v\"\ntype = \"vault\"\naddress = \"http://127.0.0.1:8200\"\n\
             jwt_file = \"token.jwt\"\n",
        );
        assert!(orphan.unwrap_err().to_string().contains("need jwt_role"));
    }

    #[test]
    fn defaults_need_nothing() {
        let s = Settings::load(None, env_of(&[]), &Backends::builtin()).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let ids: Vec<_> = s.stores.iter().map(|s| s.id().to_string()).collect();
        assert_eq!(ids, [MEMORY_DEFAULT_ID, SQLITE_DEFAULT_ID]);
        let sqlite = s.stores[1].settings::<SqliteSettings>().expect("sqlite settings");
        assert!(matches!(sqlite.master_key(), KeySource::File(p) if p.ends_with(MASTER_KEY_FILE)));
        assert_eq!(s.stores[0].kind(), credstore_memory::KIND);
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credstore.toml");
        std::fs::write(
            &path,
            r#"
listen = "127.0.0.1:9000"
data_dir = "data"
request_timeout_ms = 5000
[[stores]]
id = "extra"
type = "encrypted-sqlite"
path = "extra.db"
master_key_env = "EXTRA_KEY"
[[stores]]
id = "scratch"
type = "memory"
[[tokens]]
name = "ci"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
tenants = ["t1"]
projects = ["*"]
actions = ["view"]
"#,
        )
        .unwrap();
        let env = env_of(&[
            ("CREDSTORE_LISTEN", "127.0.0.1:9100"),
            ("EXTRA_KEY", "k"),
            ("CREDSTORE_MASTER_KEY", "m"),
        ]);
        let s = Settings::load(Some(&path), env, &Backends::builtin()).unwrap();
        assert_eq!(s.listen.port(), 9100);
        assert_eq!(s.data_dir, dir.path().join("data"));
        assert_eq!(s.request_timeout, Duration::from_secs(5));
        assert_eq!(s.stores.len(), 4);
        let default = s.stores[1].settings::<SqliteSettings>().unwrap();
        assert_eq!(default.master_key(), &KeySource::Env("CREDSTORE_MASTER_KEY".into()));
        let extra = &s.stores[2];
        assert_eq!(
            extra.context().path(extra.settings::<SqliteSettings>().unwrap().path()),
            dir.path().join("extra.db")
        );
        // The key is read through the same environment, when the store opens.
        assert_eq!(extra.context().env("EXTRA_KEY").as_deref(), Some("k"));
        assert_eq!(s.tokens.len(), 1);
        assert!(s.tokens[0].allows("t1", "p", None, Action::View));
        assert!(!s.tokens[0].allows("t1", "p", None, Action::Edit));
        assert!(!format!("{s:?}").contains("\"m\""));
    }

    #[test]
    fn rejects_mistakes() {
        let bad = [
            "unknown = 1",
            "[[stores]]\nid = \"memory-default\"\ntype = \"memory\"",
            "[[stores]]\nid = \"bad id\"\ntype = \"memory\"",
            "[[stores]]\nid = \"x\"\ntype = \"nosuch\"",
            "[[stores]]\nid = \"x\"\ntype = \"memory\"\npath = \"p\"",
            "[[stores]]\nid = \"x\"\ntype = \"encrypted-sqlite\"\npath = \"p\"",
            "[[tokens]]\nname = \"a\"\nsha256 = \"abc\"\ntenants = [\"*\"]\nprojects = [\"*\"]\nactions = [\"view\"]",
            "request_timeout_ms = 0",
            "[[stores]]\nid = \"x\"\ntype = \"vault\"\naddress = \"http://v\"\nadress = \"http://v\"",
            "[[stores]]\nid = \"x\"\ntype = \"keychain\"\nplatfrom = \"keyutils\"",
            "[[stores]]\nid = \"x\"\ntype = \"memory\"\ncache = 5",
            "[[stores]]\nid = \"x\"\ntype = \"aws-secrets-manager\"\nregoin = \"eu-west-1\"",
            "[[stores]]\ntype = \"memory\"",
            "[[stores]]\nid = \"x\"",
            "[[stores]]\nid = 5\ntype = \"memory\"",
        ];
        for text in bad {
            let file: Result<FileConfig, _> = toml::from_str(text);
            let result = file.map_err(|e| e.to_string()).and_then(|f| {
                Settings::from_file(f, Path::new("."), env_of(&[]), &Backends::builtin())
                    .map_err(|e| e.to_string())
            });
            assert!(result.is_err(), "accepted: {text}");
        }
    }

    fn parse(text: &str) -> Result<Settings, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        Settings::from_file(file, Path::new("."), env_of(&[]), &Backends::builtin())
            .map_err(|e| e.to_string())
    }

    #[cfg(all(feature = "vault", feature = "aws"))]
    #[test]
    fn caches_parse_with_the_cache_layers_defaults() {
        let s = parse(
            r#"
default_stores = false
[[stores]]
id = "plain"
type = "memory"
[[stores]]
id = "defaults"
type = "memory"
cache = {}
[[stores]]
id = "tuned"
type = "aws-secrets-manager"
region = "eu-west-1"
cache = { ttl_ms = 60000, max_entries = 10, max_stale_ms = 0 }
[[stores]]
id = "sub-table"
type = "vault"
address = "http://127.0.0.1:8200"
[stores.cache]
ttl_ms = 1500
"#,
        )
        .unwrap();
        assert_eq!(s.stores.len(), 4);
        assert_eq!(s.cache("plain"), None);
        let d = s.cache("defaults").unwrap();
        assert_eq!(d, CacheLayer::new());
        // The documented defaults are the cache layer's.
        assert_eq!(d.ttl(), Duration::from_millis(300_000));
        assert_eq!(d.max_entries(), 1000);
        assert_eq!(d.max_stale(), Duration::from_millis(60_000));
        let t = s.cache("tuned").unwrap();
        assert_eq!((t.ttl(), t.max_entries(), t.max_stale()), (Duration::from_secs(60), 10, Duration::ZERO));
        assert_eq!(s.stores[2].kind(), credstore_core::StoreKind::from_static("aws-secrets-manager"));
        let v = s.cache("sub-table").unwrap();
        assert_eq!((v.ttl(), v.max_entries()), (Duration::from_millis(1500), 1000));
        let vault = s.stores[3].settings::<credstore_vault::VaultSettings>().unwrap();
        assert_eq!(vault.address(), "http://127.0.0.1:8200");
    }

    #[test]
    fn cache_mistakes_name_the_store_and_the_field() {
        let store = |cache: &str| format!("[[stores]]\nid = \"c\"\ntype = \"memory\"\ncache = {cache}\n");
        // Each field just out of its range.
        let out_of_range = [
            ("ttl_ms", 0),
            ("ttl_ms", 86400001),
            ("max_entries", 0),
            ("max_entries", 1000001),
            ("max_stale_ms", 86400001),
        ];
        for (field, value) in out_of_range {
            let err = parse(&store(&format!("{{ {field} = {value} }}"))).unwrap_err();
            assert!(
                err.starts_with("stores[0]: ") && err.contains(&format!("cache.{field}")),
                "{field} = {value}: {err}"
            );
        }
        let err = parse(&store("{ ttl = 5 }")).unwrap_err();
        assert!(err.contains("unknown field `ttl`"), "{err}");
        let err = parse(&store("{ ttl_ms = -1 }")).unwrap_err();
        assert!(err.contains("integer `-1`"), "{err}");
        // The largest allowed values pass.
        parse(&store("{ ttl_ms = 86400000, max_entries = 1000000, max_stale_ms = 86400000 }")).unwrap();
    }

    #[cfg(feature = "keychain")]
    #[test]
    fn keychain_stores_take_the_backends_options() {
        let s = parse(
            r#"
[[stores]]
id = "laptop"
type = "keychain"
platform = "keyutils"
keyring = "session"
timeout_ms = 2000
cache = { ttl_ms = 1000 }
[[stores]]
id = "desktop"
type = "keychain"
platform = "secret-service"
collection = "login"
bus_address = "unix:path=/run/user/1000/bus"
[[stores]]
id = "usual"
type = "keychain"
"#,
        )
        .unwrap();
        assert_eq!(s.stores[2].id().as_str(), "laptop");
        assert_eq!(s.cache("laptop").unwrap().ttl(), Duration::from_secs(1));
        assert_eq!(s.stores[2].kind(), credstore_core::StoreKind::from_static("keychain"));
        {
            use credstore_keychain::{KeychainSettings, KeyutilsKeyring, Platform};
            let keychain = |i: usize| s.stores[i].settings::<KeychainSettings>().unwrap().config();
            assert!(
                matches!(keychain(3).platform_choice(), Platform::SecretService(o) if o.collection == "login")
            );
            assert_eq!(s.stores[4].settings::<KeychainSettings>().unwrap(), &KeychainSettings::default());
            let config = keychain(2);
            assert_eq!(config.platform_choice(), &Platform::Keyutils(KeyutilsKeyring::Session));
            assert_eq!(config.request_timeout(), Duration::from_secs(2));
            // The backend's own checks run when the config is read.
            for (text, why) in [
                ("platform = \"floppy\"", "unknown platform"),
                ("platform = \"keyutils\"\nkeyring = \"nope\"", "not a keyring"),
                ("platform = \"keyutils\"\ncollection = \"x\"", "applies to"),
                ("timeout_ms = 0", "timeout_ms"),
            ] {
                let err = parse(&format!("[[stores]]\nid = \"k\"\ntype = \"keychain\"\n{text}")).unwrap_err();
                assert!(err.starts_with("stores[0]: ") && err.contains(why), "{text}: {err}");
            }
        }
        let err = parse("[[stores]]\nid = \"k\"\ntype = \"keychain\"\nplatfrom = \"keyutils\"").unwrap_err();
        assert!(err.contains("unknown field `platfrom`"), "{err}");
    }

    #[test]
    fn store_tables_go_to_their_types_settings() {
        let err = parse("[[stores]]\nid = \"x\"\ntype = \"nosuch\"").unwrap_err();
        assert!(err.starts_with("stores[0]: store 'x' (type \"nosuch\"): unknown type"), "{err}");
        assert!(
            err.contains("encrypted-sqlite") && err.contains("memory"),
            "names what this build serves: {err}"
        );
        let err = parse("[[stores]]\nid = \"x\"\ntype = \"memory\"\npath = \"p\"").unwrap_err();
        assert!(err.contains("store 'x' (type \"memory\"): unknown field `path`"), "{err}");
        let err = parse("[[stores]]\nid = \"x\"\ntype = \"sqlite\"\npath = \"p\"").unwrap_err();
        assert!(
            err.contains("exactly one of master_key_file"),
            "the alias reaches sqlite's own checks: {err}"
        );

        // A type registered by the embedder.
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Greeting {
            greeting: String,
        }
        let mut backends = Backends::builtin();
        backends.register(
            credstore_core::StoreKind::from_static("greeter"),
            |id, g: Greeting, _ctx| async move {
                Ok(credstore_memory::MemoryStore::with_config(
                    id,
                    credstore_memory::MemoryConfig::new().env_prefix(g.greeting),
                ))
            },
        );
        let file: FileConfig = toml::from_str(
            "default_stores = false\n[[stores]]\nid = \"hi\"\ntype = \"greeter\"\ngreeting = \"HELLO_\"",
        )
        .unwrap();
        let s = Settings::from_file(file, Path::new("."), env_of(&[]), &backends).unwrap();
        assert_eq!(s.stores[0].kind().as_str(), "greeter");
        assert_eq!(s.stores[0].settings::<Greeting>().unwrap().greeting, "HELLO_");
        assert!(format!("{:?}", s.stores[0]).contains("HELLO_"), "Debug shows the settings");
        let file: FileConfig = toml::from_str("[[stores]]\nid = \"hi\"\ntype = \"greeter\"").unwrap();
        let err = Settings::from_file(file, Path::new("."), env_of(&[]), &backends).unwrap_err();
        assert!(err.to_string().contains("missing field `greeting`"), "{err}");
    }

    /// A config file of `stores` in `dir`, with `TEAM_KEY` (a master key)
    /// in its environment.
    fn uri_config(dir: &Path, stores: &str) -> Result<Settings, String> {
        let key = credstore_sqlite::MasterKey::generate().to_base64().unwrap().to_string();
        let file: FileConfig =
            toml::from_str(&format!("default_stores = false\n{stores}")).map_err(|e| e.to_string())?;
        Settings::from_file(file, dir, env_of(&[("TEAM_KEY", &key)]), &Backends::builtin())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn a_uri_store_is_opened_by_its_scheme_with_the_tables_id() {
        use credstore_core::{CredentialKey, CredentialStoreExt, Metadata};
        let dir = tempfile::tempdir().unwrap();
        let s = uri_config(
            dir.path(),
            "[[stores]]\nid = \"team\"\nuri = \"sqlite:data/team.db?master_key_env=TEAM_KEY&max_versions=3\"\n\
             cache = { ttl_ms = 5000 }\n",
        )
        .unwrap();
        let spec = s.store("team").expect("the uri store");
        assert_eq!(spec.kind(), uri::URI_KIND);
        assert!(s.cache("team").is_some(), "a cache table applies to a uri store too");
        let store = spec.open().await.unwrap();
        assert_eq!(store.info().id().as_str(), "team", "the table's id");
        assert_eq!(store.info().kind(), &credstore_sqlite::KIND, "opened by the sqlite: scheme");
        let key = CredentialKey::new("db-password").unwrap();
        store.set(&key, &SecretValue::from("hunter2"), &Metadata::new()).await.unwrap();
        assert_eq!(store.get(&key).await.unwrap().unwrap().value.expose_str().unwrap(), "hunter2");
        assert!(dir.path().join("data/team.db").exists(), "relative to the config file's directory");
    }

    #[test]
    fn a_secret_in_a_store_uri_is_a_config_error_naming_the_env_way() {
        let dir = tempfile::tempdir().unwrap();
        let err = uri_config(
            dir.path(),
            "[[stores]]\nid = \"team\"\nuri = \"sqlite:team.db?master_key=c2VjcmV0LWtleQ\"\n",
        )
        .unwrap_err();
        assert!(err.starts_with("stores[0]: store 'team'"), "{err}");
        assert!(err.contains("master_key_env") && err.contains("master_key_file"), "{err}");
        assert!(!err.contains("c2VjcmV0LWtleQ"), "{err}");
        assert!(!dir.path().join("team.db").exists());
    }

    #[test]
    fn a_uri_with_other_backend_keys_or_a_type_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let uri = "uri = \"sqlite:team.db?master_key_env=TEAM_KEY\"";
        for (extra, named) in [
            ("path = \"other.db\"", "`path`"),
            ("type = \"encrypted-sqlite\"", "`type`"),
            ("master_key_env = \"TEAM_KEY\"", "`master_key_env`"),
        ] {
            let err =
                uri_config(dir.path(), &format!("[[stores]]\nid = \"team\"\n{uri}\n{extra}\n")).unwrap_err();
            assert!(err.contains(named) && err.contains("whole configuration"), "{extra}: {err}");
        }
        for (stores, needle) in [
            ("uri = \"sqlite:t.db?master_key_env=K&id=other\"", "leave id= out"),
            ("uri = \"ftp://files/t\"", "no store scheme ftp:"),
            ("uri = \"memory:?cache_ttl=5s\"\ncache = { ttl_ms = 5000 }", "one cache"),
            ("uri = 5", "string"),
        ] {
            let err = uri_config(dir.path(), &format!("[[stores]]\nid = \"team\"\n{stores}\n")).unwrap_err();
            assert!(err.contains(needle), "{stores}: {err}");
        }
    }

    #[test]
    fn tls_settings_come_from_the_file_or_the_environment() {
        let from = |text: &str, env: &[(&str, &str)]| {
            let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
            Settings::from_file(file, Path::new("/etc/credstore"), env_of(env), &Backends::builtin())
                .map_err(|e| e.to_string())
        };
        assert_eq!(from("", &[]).unwrap().tls, None);
        let s = from("tls = { cert_file = \"tls/chain.pem\", key_file = \"/keys/k.pem\" }", &[]).unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/etc/credstore/tls/chain.pem"), "relative to the file");
        assert_eq!(tls.key_file, PathBuf::from("/keys/k.pem"));
        assert_eq!(tls.client_ca_file, None);
        let s = from(
            "[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_ca_file = \"ca.pem\"",
            &[("CREDSTORE_TLS_CERT_FILE", "/run/c.pem")],
        )
        .unwrap();
        let tls = s.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/run/c.pem"), "the environment overrides the file");
        assert_eq!(tls.client_ca_file, Some(PathBuf::from("/etc/credstore/ca.pem")));
        let s =
            from("", &[("CREDSTORE_TLS_CERT_FILE", "c.pem"), ("CREDSTORE_TLS_KEY_FILE", "k.pem")]).unwrap();
        assert_eq!(s.tls.unwrap().key_file, PathBuf::from("k.pem"));
        for (env, why) in [
            (&[("CREDSTORE_TLS_CERT_FILE", "c.pem")][..], "without CREDSTORE_TLS_KEY_FILE"),
            (&[("CREDSTORE_TLS_KEY_FILE", "k.pem")][..], "without CREDSTORE_TLS_CERT_FILE"),
            (&[("CREDSTORE_TLS_CLIENT_CA_FILE", "ca.pem")][..], "without a certificate and key"),
            (&[("CREDSTORE_ALLOW_PLAINTEXT", "yes")][..], "CREDSTORE_ALLOW_PLAINTEXT"),
        ] {
            let err = from("", env).unwrap_err();
            assert!(err.contains(why), "{env:?}: {err}");
        }
        for (text, why) in [
            ("tls = { cert_file = \"c.pem\" }", "missing field `key_file`"),
            ("tls = { cert_file = \"c.pem\", key_file = \"k.pem\", ca = \"x\" }", "unknown field `ca`"),
            ("tls = { cert_file = \"\", key_file = \"k.pem\" }", "tls.cert_file is empty"),
        ] {
            let err = from(text, &[]).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        assert!(!from("", &[]).unwrap().allow_plaintext);
        assert!(from("allow_plaintext = true", &[]).unwrap().allow_plaintext);
        assert!(
            !from("allow_plaintext = true", &[("CREDSTORE_ALLOW_PLAINTEXT", "false")])
                .unwrap()
                .allow_plaintext
        );
    }

    #[test]
    fn connection_limits_have_documented_defaults_and_refuse_zero() {
        let d = parse("").unwrap();
        assert_eq!(d.header_read_timeout, Duration::from_secs(10));
        assert_eq!(d.idle_timeout, Duration::from_secs(60));
        assert_eq!(d.max_connections, 10_000);
        assert_eq!(d.http2_max_concurrent_streams, 100);
        let s = parse(
            "header_read_timeout_ms = 2500\nidle_timeout_ms = 7000\nmax_connections = 64\nhttp2_max_concurrent_streams = 8",
        )
        .unwrap();
        assert_eq!(s.header_read_timeout, Duration::from_millis(2500));
        assert_eq!(s.idle_timeout, Duration::from_secs(7));
        assert_eq!((s.max_connections, s.http2_max_concurrent_streams), (64, 8));
        for name in
            ["header_read_timeout_ms", "idle_timeout_ms", "max_connections", "http2_max_concurrent_streams"]
        {
            let err = parse(&format!("{name} = 0")).unwrap_err();
            assert!(err.contains(name) && err.contains("above 0"), "{err}");
        }
    }

    #[test]
    fn probe_audit_and_metrics_settings() {
        let d = parse("").unwrap();
        assert!(!d.admin_reveal, "no token reads values by default, the admin token included");
        assert!(parse("admin_reveal = true").unwrap().admin_reveal);
        assert!(parse("admin_reveal = \"yes\"").is_err());
        assert_eq!(d.probe_interval, Duration::from_secs(10));
        assert_eq!(d.probe_staleness, Duration::from_secs(30));
        assert_eq!(d.audit_log, AuditTarget::File(PathBuf::from(DEFAULT_DATA_DIR).join("audit.log")));
        assert_eq!(d.metrics_listen, None);
        let s = parse(
            "probe_interval_ms = 2000\nprobe_staleness_ms = 5000\naudit_log = \"-\"\nmetrics_listen = \"127.0.0.1:9464\"",
        )
        .unwrap();
        assert_eq!(s.probe_interval, Duration::from_secs(2));
        assert_eq!(s.probe_staleness, Duration::from_secs(5));
        assert_eq!(s.audit_log, AuditTarget::Stderr);
        assert_eq!(s.metrics_listen, Some("127.0.0.1:9464".parse().unwrap()));
        let file: FileConfig = toml::from_str("audit_log = \"logs/audit.log\"").unwrap();
        let s = Settings::from_file(file, Path::new("/etc/credstore"), env_of(&[]), &Backends::builtin())
            .unwrap();
        assert_eq!(s.audit_log, AuditTarget::File(PathBuf::from("/etc/credstore/logs/audit.log")));
        let file: FileConfig = toml::from_str("audit_log = \"a.log\"").unwrap();
        let env = env_of(&[("CREDSTORE_AUDIT_LOG", "-"), ("CREDSTORE_METRICS_LISTEN", "127.0.0.1:1")]);
        let s = Settings::from_file(file, Path::new("."), env, &Backends::builtin()).unwrap();
        assert_eq!(s.audit_log, AuditTarget::Stderr, "the environment overrides the file");
        assert_eq!(s.metrics_listen, Some("127.0.0.1:1".parse().unwrap()));
        assert_eq!(s.audit_rotation, Rotation::DEFAULT);
        let s = parse("audit_max_bytes = 0\naudit_keep = 3").unwrap();
        assert_eq!(s.audit_rotation, Rotation { max_bytes: 0, keep: 3 });
        for (text, why) in [
            ("probe_interval_ms = 0", "probe_interval_ms"),
            ("probe_staleness_ms = 0", "probe_staleness_ms"),
            ("audit_log = \"\"", "audit_log"),
            ("metrics_listen = \"nowhere\"", "metrics_listen"),
            ("audit_keep = 0", "audit_keep must be between 1 and 1000"),
        ] {
            assert!(parse(text).unwrap_err().contains(why), "{text}");
        }
        let token = "[[tokens]]\nname = \"prom\"\nsha256 = \"{h}\"\ntenants = []\nprojects = []\nactions = [\"metrics\"]";
        let s = parse(&token.replace("{h}", &TokenHash::of("scraper-token-0123").to_hex())).unwrap();
        assert!(s.tokens[0].check_metrics().is_ok());
    }

    #[test]
    fn token_grants_are_each_their_own_cross_product() {
        let h = TokenHash::of("deploy-token-0123").to_hex();
        let s = parse(&format!(
            r#"[[tokens]]
name = "deploy"
sha256 = "{h}"
grants = [
  {{ tenants = ["a"], projects = ["web"], actions = ["view", "edit"] }},
  {{ tenants = ["b"], projects = ["api"], stores = ["vault-prod"], actions = ["view"] }},
]
[[tokens]]
name = "one-store"
sha256 = "{h}"
tenants = ["a", "b"]
projects = ["web", "api"]
stores = ["sqlite-default"]
actions = ["view"]
"#
        ))
        .unwrap();
        let deploy = &s.tokens[0];
        assert!(deploy.allows("a", "web", Some("anything"), Action::Edit));
        assert!(!deploy.allows("a", "api", None, Action::View), "not the cross product of the grants");
        assert!(deploy.allows("b", "api", Some("vault-prod"), Action::View));
        assert!(!deploy.allows("b", "api", Some("sqlite-default"), Action::View));
        let inline = &s.tokens[1];
        assert!(
            inline.allows("a", "api", Some("sqlite-default"), Action::View),
            "one table: the cross product"
        );
        assert!(!inline.allows("a", "api", Some("memory-default"), Action::View));

        let table = |body: &str| format!("[[tokens]]\nname = \"t\"\nsha256 = \"{h}\"\n{body}");
        for (body, why) in [
            ("tenants = [\"a\"]\nprojects = [\"*\"]\nactions = [\"view\"]\ngrants = [{ tenants = [\"a\"], projects = [\"*\"], actions = [\"view\"] }]", "not both"),
            ("projects = [\"*\"]\nactions = [\"view\"]", "missing tenants"),
            ("tenants = [\"*\"]\nprojects = [\"*\"]\nstores = [\"bad id\"]\nactions = [\"view\"]", "stores"),
            ("grants = [{ tenants = [\"*\"], projects = [\"*\"], actions = [] }]", "actions is empty"),
            ("grants = [{ tenants = [\"*\"], projects = [\"*\"], actions = [\"view\"], extra = 1 }]", "extra"),
        ] {
            let err = parse(&table(body)).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
    }
}
