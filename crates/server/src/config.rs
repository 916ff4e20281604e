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
//! | separate metrics listener | `metrics_listen` | `CREDSTORE_METRICS_LISTEN` | none (`/metrics` on `listen`, behind a token) |
//!
//! Secrets never come from the config file or the command line: the master
//! key and admin token come from the environment, and further stores name
//! the file or environment variable that holds theirs. Relative paths in
//! the config file are relative to the file's directory.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! data_dir = "/var/lib/credstore"
//!
//! [[stores]]
//! id = "team-sqlite"
//! type = "encrypted-sqlite"
//! path = "team.db"
//! master_key_file = "team.key"     # created (owner-only) when missing
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
//! actions = ["view", "edit"]
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use credstore_core::{SecretValue, StoreId};
use credstore_layers::CacheLayer;
use serde::{Deserialize, Serialize};

use crate::audit::AuditTarget;
use crate::auth::{Action, Scope, TokenEntry, TokenHash};

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

/// Where the master key of an encrypted SQLite store comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum MasterKeySource {
    /// A key file, created with a fresh key (owner-only) when missing.
    File(PathBuf),
    /// A base64 key taken from the environment variable named here.
    Env {
        /// The variable's name.
        var: String,
        /// Its value.
        value: SecretValue,
    },
}

impl std::fmt::Debug for MasterKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MasterKeySource::File(p) => f.debug_tuple("File").field(p).finish(),
            MasterKeySource::Env { var, .. } => {
                f.debug_struct("Env").field("var", var).finish_non_exhaustive()
            }
        }
    }
}

/// One store the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// An in-memory store.
    Memory {
        /// Its id.
        id: StoreId,
    },
    /// An encrypted SQLite store.
    Sqlite {
        /// Its id.
        id: StoreId,
        /// The database file.
        path: PathBuf,
        /// Its master key.
        master_key: MasterKeySource,
    },
    /// A HashiCorp Vault / OpenBao store.
    Vault {
        /// Its id.
        id: StoreId,
        /// The backend's settings (boxed: they are much larger than the
        /// other variants').
        settings: Box<VaultSettings>,
    },
    /// An AWS Secrets Manager store.
    Aws {
        /// Its id.
        id: StoreId,
        /// The backend's settings.
        settings: AwsSettings,
    },
    /// The operating system's credential store.
    Keychain {
        /// Its id.
        id: StoreId,
        /// The backend's settings.
        settings: KeychainSettings,
    },
}

impl StoreSpec {
    /// The store's id.
    pub fn id(&self) -> &StoreId {
        match self {
            StoreSpec::Memory { id } | StoreSpec::Sqlite { id, .. } => id,
            StoreSpec::Vault { id, .. } | StoreSpec::Aws { id, .. } | StoreSpec::Keychain { id, .. } => id,
        }
    }
}

/// The settings of a Vault / OpenBao store, as written in TOML. The token
/// or AppRole secret id is read from a file or an environment variable,
/// never from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    /// The server's address, such as `https://vault.example.com:8200`.
    pub address: String,
    /// The KV v2 mount; default `secret`.
    #[serde(default)]
    pub mount: Option<String>,
    /// A path prefix inside the mount under which every key lives.
    #[serde(default)]
    pub prefix: Option<String>,
    /// A Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default)]
    pub vault_namespace: Option<String>,
    /// A file holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The environment variable holding the token. When no token and no
    /// AppRole is configured, `VAULT_TOKEN` is used if set.
    #[serde(default)]
    pub token_env: Option<String>,
    /// AppRole login: the role id (not secret).
    #[serde(default)]
    pub approle_role_id: Option<String>,
    /// AppRole login: the file holding the secret id.
    #[serde(default)]
    pub approle_secret_id_file: Option<PathBuf>,
    /// AppRole login: the environment variable holding the secret id.
    #[serde(default)]
    pub approle_secret_id_env: Option<String>,
    /// AppRole login: the auth mount; default `approle`.
    #[serde(default)]
    pub approle_mount: Option<String>,
    /// JWT login (Kubernetes service-account tokens): the role to log in as.
    #[serde(default)]
    pub jwt_role: Option<String>,
    /// JWT login: the file holding the JWT, read again at every login
    /// (projected tokens rotate); default the pod's service-account token,
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token`.
    #[serde(default)]
    pub jwt_file: Option<PathBuf>,
    /// JWT login: the auth mount; default `jwt`.
    #[serde(default)]
    pub jwt_mount: Option<String>,
    /// A PEM file of CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// Timeout of one operation, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

/// The settings of an AWS Secrets Manager store, as written in TOML.
/// Credentials come from the standard AWS chain (environment, profile, SSO,
/// instance or container role); never from the config file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// The region, such as `eu-west-1`; default from the AWS environment.
    #[serde(default)]
    pub region: Option<String>,
    /// An endpoint URL to use instead of AWS's (a VPC endpoint, LocalStack, moto).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A prefix of every secret name this store manages (`prod/payments`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// A KMS key (id, ARN or alias) to encrypt values with.
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// Timeout of one request, retries included, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Attempts per request, the first included.
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// The settings of a keychain store (the operating system's credential
/// store), as written in TOML: the options of `credstore-keychain`'s
/// `KeychainConfig`, which checks them (with the `keychain` feature, when
/// the config is read).
///
/// ```toml
/// platform = "keyutils"          # default | keyutils | secret-service | macos-keychain | windows-credential-manager
/// keyring = "user"               # keyutils: user | session | persistent | <serial>
/// collection = "default"         # secret-service: collection alias
/// bus_address = "unix:path=..."  # secret-service: instead of the session bus
/// timeout_ms = 5000
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeychainSettings {
    /// The platform store; default the target's usual one (the Secret
    /// Service on Linux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Kernel keyutils: the parent keyring, `user` (default), `session`,
    /// `persistent` or a serial number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyring: Option<String>,
    /// Secret Service: the collection alias; default `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Secret Service: a D-Bus address instead of the session bus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus_address: Option<String>,
    /// Timeout of one platform call and of the availability probe, in
    /// milliseconds; default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl KeychainSettings {
    /// The backend's config, checked by the backend's own rules.
    ///
    /// # Errors
    /// An unknown platform or keyring, an option of another platform, a
    /// zero timeout.
    #[cfg(feature = "keychain")]
    pub fn to_config(&self) -> Result<credstore_keychain::KeychainConfig, String> {
        let value = serde_json::to_value(self).map_err(|e| e.to_string())?;
        credstore_keychain::KeychainConfig::deserialize(value).map_err(|e| e.to_string())
    }
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
/// | `max_stale_ms` | 300000 | 0 (off) to 86400000 (24 h) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// How long a value read from the store is served without asking it.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// The most entries the store's cache holds, all projects together
    /// (least recently used evicted first).
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// How long past its TTL an entry may still be served while the store
    /// fails with retriable errors (and is revalidated by version
    /// otherwise); 0 turns both off.
    #[serde(default)]
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

/// The resolved settings of a `credstore` process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Where the embedded stores keep their files and the admin token hash.
    pub data_dir: PathBuf,
    /// The admin token from the environment, if set.
    pub admin_token: Option<SecretValue>,
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
    /// A separate listener serving `/metrics` without a token.
    pub metrics_listen: Option<SocketAddr>,
}

impl Settings {
    /// Settings with every default and no file or environment: the embedded
    /// stores in `data_dir`, listening on `listen`.
    pub fn defaults(listen: SocketAddr, data_dir: impl Into<PathBuf>) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let audit_log = AuditTarget::default_in(&data_dir);
        Self {
            listen,
            stores: default_stores(&data_dir, None),
            caches: BTreeMap::new(),
            data_dir,
            admin_token: None,
            tokens: Vec::new(),
            log_format: LogFormat::Text,
            request_timeout: Duration::from_millis(30_000),
            store_timeout: Duration::from_millis(10_000),
            probe_timeout: Duration::from_millis(3_000),
            body_limit: 1024 * 1024,
            shutdown_grace: Duration::from_millis(30_000),
            probe_interval: crate::status::DEFAULT_PROBE_INTERVAL,
            probe_staleness: crate::status::DEFAULT_PROBE_STALENESS,
            audit_log,
            metrics_listen: None,
        }
    }

    /// Resolves the settings from the config file (the `config` argument, else
    /// `CREDSTORE_CONFIG`), then the environment read through `env`.
    ///
    /// # Errors
    /// An unreadable or invalid config file or environment variable.
    pub fn load(config: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
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
        Self::from_file(file, &base, env)
    }

    /// Resolves the settings from a parsed config file whose relative paths
    /// are relative to `base`, then the environment.
    ///
    /// # Errors
    /// As for [`Settings::load`].
    pub fn from_file(
        file: FileConfig,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let listen_text =
            env("CREDSTORE_LISTEN").or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = parse_listen(&listen_text)?;
        let data_dir = match env("CREDSTORE_DATA_DIR") {
            Some(d) => PathBuf::from(d),
            None => file.data_dir.map(|d| base.join(d)).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        };
        let master_key = env("CREDSTORE_MASTER_KEY").map(SecretValue::from);
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
            default_stores(&data_dir, master_key.clone())
        } else {
            Vec::new()
        };
        let mut caches = BTreeMap::new();
        for (i, raw) in file.stores.into_iter().enumerate() {
            let (spec, cache) =
                raw.resolve(base, env).map_err(|e| ConfigError(format!("stores[{i}]: {e}")))?;
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
            metrics_listen: match env("CREDSTORE_METRICS_LISTEN").or(file.metrics_listen) {
                Some(text) => Some(
                    parse_listen(&text)
                        .map_err(|_| ConfigError(format!("metrics_listen {text:?} is not host:port")))?,
                ),
                None => None,
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

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError(format!("listen address {text:?} is not host:port")))
}

/// The embedded stores: `memory-default` and `sqlite-default` (in
/// `data_dir`, keyed by `master_key` when given, else by the key file).
pub fn default_stores(data_dir: &Path, master_key: Option<SecretValue>) -> Vec<StoreSpec> {
    let master_key = match master_key {
        Some(value) => MasterKeySource::Env { var: "CREDSTORE_MASTER_KEY".into(), value },
        None => MasterKeySource::File(data_dir.join(MASTER_KEY_FILE)),
    };
    vec![
        StoreSpec::Memory { id: StoreId::new(MEMORY_DEFAULT_ID).expect("valid id") },
        StoreSpec::Sqlite {
            id: StoreId::new(SQLITE_DEFAULT_ID).expect("valid id"),
            path: data_dir.join(SQLITE_DEFAULT_DB),
            master_key,
        },
    ]
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
    /// `host:port` of a separate listener serving `/metrics` without a
    /// token.
    #[serde(default)]
    pub metrics_listen: Option<String>,
    /// Further stores.
    #[serde(default)]
    pub stores: Vec<RawStore>,
    /// Scoped tokens.
    #[serde(default)]
    pub tokens: Vec<RawToken>,
}

/// One `[[stores]]` table.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum RawStore {
    /// `type = "memory"`.
    #[serde(rename = "memory")]
    Memory {
        /// The store id.
        id: String,
        /// A read-through cache.
        #[serde(default)]
        cache: Option<CacheSettings>,
    },
    /// `type = "encrypted-sqlite"`.
    #[serde(rename = "encrypted-sqlite", alias = "sqlite")]
    Sqlite {
        /// The store id.
        id: String,
        /// The database file.
        path: PathBuf,
        /// The key file (created when missing).
        #[serde(default)]
        master_key_file: Option<PathBuf>,
        /// The environment variable holding the base64 key.
        #[serde(default)]
        master_key_env: Option<String>,
        /// A read-through cache.
        #[serde(default)]
        cache: Option<CacheSettings>,
    },
    /// `type = "vault"`.
    #[serde(rename = "vault")]
    Vault {
        /// The store id.
        id: String,
        /// A read-through cache.
        #[serde(default)]
        cache: Option<CacheSettings>,
        /// Its settings (boxed: much larger than the other variants').
        #[serde(flatten)]
        settings: Box<VaultSettings>,
    },
    /// `type = "aws-secrets-manager"`.
    #[serde(rename = "aws-secrets-manager", alias = "aws")]
    Aws {
        /// The store id.
        id: String,
        /// A read-through cache.
        #[serde(default)]
        cache: Option<CacheSettings>,
        /// Its settings.
        #[serde(flatten)]
        settings: AwsSettings,
    },
    /// `type = "keychain"`.
    #[serde(rename = "keychain")]
    Keychain {
        /// The store id.
        id: String,
        /// A read-through cache.
        #[serde(default)]
        cache: Option<CacheSettings>,
        /// Its settings.
        #[serde(flatten)]
        settings: KeychainSettings,
    },
}

impl RawStore {
    fn resolve(
        self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(StoreSpec, Option<CacheLayer>), String> {
        let cache = match &self {
            RawStore::Memory { cache, .. }
            | RawStore::Sqlite { cache, .. }
            | RawStore::Vault { cache, .. }
            | RawStore::Aws { cache, .. }
            | RawStore::Keychain { cache, .. } => cache.map(|c| c.to_layer()).transpose()?,
        };
        Ok((self.resolve_spec(base, env)?, cache))
    }

    fn resolve_spec(self, base: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<StoreSpec, String> {
        let id = |s: String| StoreId::new(s).map_err(|e| e.to_string());
        Ok(match self {
            RawStore::Memory { id: i, .. } => StoreSpec::Memory { id: id(i)? },
            RawStore::Sqlite { id: i, path, master_key_file, master_key_env, .. } => {
                let master_key = match (master_key_file, master_key_env) {
                    (Some(f), None) => MasterKeySource::File(base.join(f)),
                    (None, Some(var)) => {
                        let value = env(&var).ok_or_else(|| {
                            format!("the environment variable {var} (master_key_env) is not set")
                        })?;
                        MasterKeySource::Env { var, value: SecretValue::from(value) }
                    }
                    _ => return Err("give exactly one of master_key_file and master_key_env".into()),
                };
                StoreSpec::Sqlite { id: id(i)?, path: base.join(path), master_key }
            }
            RawStore::Vault { id: i, mut settings, .. } => {
                let token_ways = [settings.token_file.is_some(), settings.token_env.is_some()];
                let approle_ways =
                    [settings.approle_secret_id_file.is_some(), settings.approle_secret_id_env.is_some()];
                if token_ways.iter().filter(|w| **w).count() > 1 {
                    return Err("give at most one of token_file and token_env".into());
                }
                if settings.approle_role_id.is_some() != approle_ways.iter().any(|w| *w)
                    || approle_ways.iter().all(|w| *w)
                {
                    return Err("AppRole needs approle_role_id and one of approle_secret_id_file and approle_secret_id_env".into());
                }
                if settings.approle_role_id.is_some() && token_ways.iter().any(|w| *w) {
                    return Err("give either a token or an AppRole login, not both".into());
                }
                if settings.jwt_role.is_none()
                    && (settings.jwt_file.is_some() || settings.jwt_mount.is_some())
                {
                    return Err("jwt_file and jwt_mount need jwt_role".into());
                }
                if settings.jwt_role.is_some()
                    && (settings.approle_role_id.is_some() || token_ways.iter().any(|w| *w))
                {
                    return Err("give one of a token, an AppRole login and a JWT login".into());
                }
                settings.jwt_file = settings.jwt_file.map(|f| base.join(f));
                settings.token_file = settings.token_file.map(|f| base.join(f));
                settings.approle_secret_id_file = settings.approle_secret_id_file.map(|f| base.join(f));
                settings.ca_cert = settings.ca_cert.map(|f| base.join(f));
                StoreSpec::Vault { id: id(i)?, settings }
            }
            RawStore::Aws { id: i, settings, .. } => StoreSpec::Aws { id: id(i)?, settings },
            RawStore::Keychain { id: i, settings, .. } => {
                // Checked now, by the backend's rules, so a typo stops the
                // start instead of serving the store as unavailable.
                #[cfg(feature = "keychain")]
                settings.to_config()?;
                StoreSpec::Keychain { id: id(i)?, settings }
            }
        })
    }
}

/// One `[[tokens]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    /// A name for logs.
    pub name: String,
    /// The token's SHA-256, 64 hex digits (`credstore hash-token`).
    pub sha256: String,
    /// Tenant ids, or `["*"]` for all.
    pub tenants: Vec<String>,
    /// Project ids, or `["*"]` for all.
    pub projects: Vec<String>,
    /// `view`, `edit` and/or `metrics`.
    pub actions: Vec<Action>,
}

impl RawToken {
    fn resolve(self) -> Result<TokenEntry, String> {
        let hash = TokenHash::from_hex(&self.sha256)?;
        for id in self.tenants.iter().chain(&self.projects) {
            if id != "*" {
                crate::routes::check_scope_id("tenant or project", id).map_err(|e| e.detail)?;
            }
        }
        if self.actions.is_empty() {
            return Err("actions is empty; give view, edit and/or metrics".into());
        }
        Ok(TokenEntry {
            name: self.name,
            hash,
            tenants: Scope::from_list(&self.tenants),
            projects: Scope::from_list(&self.projects),
            actions: self.actions.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn vault_jwt_login_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credstore.toml");
        let load = |stores: &str| {
            std::fs::write(&path, stores).unwrap();
            Settings::load(Some(&path), &env_of(&[]))
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
        let vault = s.stores.iter().find_map(|spec| match spec {
            StoreSpec::Vault { settings, .. } => Some(settings),
            _ => None,
        });
        let vault = vault.expect("the vault store");
        assert_eq!(vault.jwt_role.as_deref(), Some("app"));
        assert_eq!(vault.jwt_file.as_deref(), Some(dir.path().join("token.jwt").as_path()));
        assert_eq!(vault.jwt_mount.as_deref(), Some("kubernetes"));

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
        let s = Settings::load(None, &env_of(&[])).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        let ids: Vec<_> = s.stores.iter().map(|s| s.id().to_string()).collect();
        assert_eq!(ids, [MEMORY_DEFAULT_ID, SQLITE_DEFAULT_ID]);
        assert!(matches!(&s.stores[1], StoreSpec::Sqlite { master_key: MasterKeySource::File(p), .. }
            if p.ends_with(MASTER_KEY_FILE)));
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
        let s = Settings::load(Some(&path), &env).unwrap();
        assert_eq!(s.listen.port(), 9100);
        assert_eq!(s.data_dir, dir.path().join("data"));
        assert_eq!(s.request_timeout, Duration::from_secs(5));
        assert_eq!(s.stores.len(), 4);
        assert!(
            matches!(&s.stores[1], StoreSpec::Sqlite { master_key: MasterKeySource::Env { var, .. }, .. }
            if var == "CREDSTORE_MASTER_KEY")
        );
        assert!(
            matches!(&s.stores[2], StoreSpec::Sqlite { path, .. } if *path == dir.path().join("extra.db"))
        );
        assert_eq!(s.tokens.len(), 1);
        assert!(s.tokens[0].allows("t1", "p", Action::View));
        assert!(!s.tokens[0].allows("t1", "p", Action::Edit));
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
        ];
        for text in bad {
            let file: Result<FileConfig, _> = toml::from_str(text);
            let result = file.map_err(|e| e.to_string()).and_then(|f| {
                Settings::from_file(f, Path::new("."), &env_of(&[])).map_err(|e| e.to_string())
            });
            assert!(result.is_err(), "accepted: {text}");
        }
    }

    fn parse(text: &str) -> Result<Settings, String> {
        let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        Settings::from_file(file, Path::new("."), &env_of(&[])).map_err(|e| e.to_string())
    }

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
        assert_eq!(d.max_stale(), Duration::from_millis(300_000));
        let t = s.cache("tuned").unwrap();
        assert_eq!((t.ttl(), t.max_entries(), t.max_stale()), (Duration::from_secs(60), 10, Duration::ZERO));
        assert!(
            matches!(&s.stores[2], StoreSpec::Aws { settings, .. } if settings.region.as_deref() == Some("eu-west-1"))
        );
        let v = s.cache("sub-table").unwrap();
        assert_eq!((v.ttl(), v.max_entries()), (Duration::from_millis(1500), 1000));
        assert!(
            matches!(&s.stores[3], StoreSpec::Vault { settings, .. } if settings.address == "http://127.0.0.1:8200")
        );
    }

    #[test]
    fn cache_mistakes_name_the_store_and_the_field() {
        let store = |cache: &str| format!("[[stores]]\nid = \"c\"\ntype = \"memory\"\ncache = {cache}\n");
        for (cache, field) in [
            ("{ ttl_ms = 0 }", "cache.ttl_ms"),
            ("{ ttl_ms = 86400001 }", "cache.ttl_ms"),
            ("{ max_entries = 0 }", "cache.max_entries"),
            ("{ max_entries = 1000001 }", "cache.max_entries"),
            ("{ max_stale_ms = 86400001 }", "cache.max_stale_ms"),
        ] {
            let err = parse(&store(cache)).unwrap_err();
            assert!(err.starts_with("stores[0]: ") && err.contains(field), "{cache}: {err}");
        }
        let err = parse(&store("{ ttl = 5 }")).unwrap_err();
        assert!(err.contains("unknown field `ttl`"), "{err}");
        let err = parse(&store("{ ttl_ms = -1 }")).unwrap_err();
        assert!(err.contains("integer `-1`"), "{err}");
        // The largest allowed values pass.
        parse(&store("{ ttl_ms = 86400000, max_entries = 1000000, max_stale_ms = 86400000 }")).unwrap();
    }

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
        let StoreSpec::Keychain { id, settings } = &s.stores[2] else { panic!("{:?}", s.stores[2]) };
        assert_eq!(id.as_str(), "laptop");
        assert_eq!(settings.keyring.as_deref(), Some("session"));
        assert_eq!(s.cache("laptop").unwrap().ttl(), Duration::from_secs(1));
        assert!(
            matches!(&s.stores[3], StoreSpec::Keychain { settings, .. } if settings.collection.as_deref() == Some("login"))
        );
        assert!(
            matches!(&s.stores[4], StoreSpec::Keychain { settings, .. } if *settings == KeychainSettings::default())
        );
        assert_eq!(crate::stores::kind_of(&s.stores[2]), credstore_core::StoreKind::Keychain);
        #[cfg(feature = "keychain")]
        {
            use credstore_keychain::{KeyutilsKeyring, Platform};
            let config = settings.to_config().unwrap();
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
    fn probe_audit_and_metrics_settings() {
        let d = parse("").unwrap();
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
        let s = Settings::from_file(file, Path::new("/etc/credstore"), &env_of(&[])).unwrap();
        assert_eq!(s.audit_log, AuditTarget::File(PathBuf::from("/etc/credstore/logs/audit.log")));
        let file: FileConfig = toml::from_str("audit_log = \"a.log\"").unwrap();
        let env = env_of(&[("CREDSTORE_AUDIT_LOG", "-"), ("CREDSTORE_METRICS_LISTEN", "127.0.0.1:1")]);
        let s = Settings::from_file(file, Path::new("."), &env).unwrap();
        assert_eq!(s.audit_log, AuditTarget::Stderr, "the environment overrides the file");
        assert_eq!(s.metrics_listen, Some("127.0.0.1:1".parse().unwrap()));
        for (text, why) in [
            ("probe_interval_ms = 0", "probe_interval_ms"),
            ("probe_staleness_ms = 0", "probe_staleness_ms"),
            ("audit_log = \"\"", "audit_log"),
            ("metrics_listen = \"nowhere\"", "metrics_listen"),
        ] {
            assert!(parse(text).unwrap_err().contains(why), "{text}");
        }
        let token = "[[tokens]]\nname = \"prom\"\nsha256 = \"{h}\"\ntenants = []\nprojects = []\nactions = [\"metrics\"]";
        let s = parse(&token.replace("{h}", &TokenHash::of("scraper-token-0123").to_hex())).unwrap();
        assert!(s.tokens[0].actions.contains(&Action::Metrics));
    }
}
