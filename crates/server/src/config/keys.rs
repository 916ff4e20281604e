//! The key providers a server can take the key-encryption key (KEK) of an
//! encrypted SQLite or PostgreSQL store from: a registry from the `provider` of a store's
//! `key = { provider = "…", … }` table to the settings the rest of that
//! table deserializes into, and the [`KeyProvider`] those settings give.
//!
//! ```toml
//! [[stores]]
//! id = "team"
//! type = "encrypted-sqlite"
//! path = "team.db"
//! key = { provider = "passphrase", passphrase_file = "/run/secrets/team-passphrase" }
//! ```
//!
//! [`KeyProviders::builtin`] registers `master-key` ([`MasterKeySettings`]:
//! `key_file` or `key_env`) and `passphrase` ([`PassphraseSettings`]:
//! `passphrase_file` or `passphrase_env`). A store without `key` keeps its
//! `master_key_file` / `master_key_env` / `passphrase_*` settings, and the
//! embedded `sqlite-default` needs neither.
//!
//! # Registering a provider
//! One [`KeyProviders::register`] call per provider: its name, and how its
//! settings (any type that implements [`serde::Deserialize`], [`Clone`] and
//! [`Debug`](std::fmt::Debug): the `key` table without `provider` is
//! deserialized into it when the config is read) give the provider for a
//! store, when the store opens. The providers of the service crates
//! register in [`KeyProviders::builtin`] like this:
//!
//! ```text
//! p.register("aws-kms", |id, s: credstore_aws::KmsKeySettings, ctx| async move { s.open(&id, &ctx).await });
//! ```
//!
//! A provider of your own registers the same way on the registry of the
//! [`Backends`](super::backends::Backends) you serve:
//!
//! ```
//! use std::sync::Arc;
//! use credstore_server::backends::Backends;
//! use credstore_sqlite::MasterKey;
//!
//! /// `key = { provider = "team-hsm", slot = 3 }`: here a fixed local key
//! /// stands in for the team's hardware.
//! #[derive(Clone, Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct HsmSettings {
//!     slot: u8,
//! }
//!
//! let mut backends = Backends::builtin();
//! backends.key_providers_mut().register("team-hsm", |_id, s: HsmSettings, _ctx| async move {
//!     Ok(MasterKey::from_bytes([s.slot; 32]))
//! });
//! assert!(backends.key_providers().names().any(|n| n == "team-hsm"));
//! ```

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use credstore_core::config::{ConfigContext, SecretSource};
use credstore_core::{Result, StoreId};
use credstore_sqlite::{KeyFile, KeyProvider, MasterKey, SqliteSettings, SqliteStore};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// What building a store's key provider gives.
pub type ProviderFuture = Pin<Box<dyn Future<Output = Result<Arc<dyn KeyProvider>>> + Send>>;

type Settings = Arc<dyn Any + Send + Sync>;
type Parse = dyn Fn(toml::Table) -> std::result::Result<Settings, String> + Send + Sync;
type Build = dyn Fn(StoreId, &Settings, ConfigContext) -> ProviderFuture + Send + Sync;
type DebugSettings = dyn Fn(&Settings, &mut fmt::Formatter<'_>) -> fmt::Result + Send + Sync;

/// One registered provider.
struct ProviderKind {
    name: String,
    parse: Box<Parse>,
    build: Box<Build>,
    debug: Box<DebugSettings>,
}

/// The registry: key providers by name (the `provider` of a `key` table).
#[derive(Clone, Default)]
pub struct KeyProviders {
    kinds: BTreeMap<String, Arc<ProviderKind>>,
}

impl KeyProviders {
    /// A registry with no provider at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The providers of this build: `master-key` and `passphrase`.
    pub fn builtin() -> Self {
        let mut p = Self::new();
        p.register("master-key", |id, s: MasterKeySettings, ctx| async move { s.provider(&id, &ctx) });
        p.register("passphrase", |id, s: PassphraseSettings, ctx| async move { s.provider(&id, &ctx) });
        // The providers of the service crates, behind the cargo feature of
        // their crate.
        #[cfg(feature = "aws")]
        p.register(
            "aws-kms",
            |id, s: credstore_aws::KmsKeySettings, ctx| async move { s.open(&id, &ctx).await },
        );
        #[cfg(feature = "vault")]
        p.register("vault-transit", |id, s: credstore_vault::TransitKeySettings, ctx| async move {
            s.provider(&id, &ctx)
        });
        #[cfg(all(feature = "keychain", unix))]
        p.register("keychain", |id, s: credstore_keychain::KeychainKeySettings, _ctx| async move {
            s.provider(&id)
        });
        p
    }

    /// Registers the provider `name`, replacing any of that name.
    ///
    /// # Behavior
    /// A store's `key` table naming `provider = "<name>"` is deserialized,
    /// without `provider`, into `S` when the config is read, so a mistake
    /// stops the start naming the store, the provider and the field.
    /// `build` runs when the store opens (a server start, the prober's
    /// next attempt, a CLI command); its error is the store's: an
    /// [`Error::Unavailable`](credstore_core::Error::Unavailable) (a provider that cannot be reached) leaves the
    /// store unavailable and tried again by the prober, any other leaves it
    /// failed. Settings name secrets by file or environment variable
    /// (resolved through the [`ConfigContext`] given to `build`), never hold
    /// them inline.
    pub fn register<S, P, F, Fut>(&mut self, name: &str, build: F) -> &mut Self
    where
        S: DeserializeOwned + Clone + fmt::Debug + Send + Sync + 'static,
        P: KeyProvider + 'static,
        F: Fn(StoreId, S, ConfigContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<P>> + Send + 'static,
    {
        let parse = |table: toml::Table| -> std::result::Result<Settings, String> {
            let settings: S =
                toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
            Ok(Arc::new(settings))
        };
        let build = move |id: StoreId, settings: &Settings, ctx: ConfigContext| -> ProviderFuture {
            let settings = settings.downcast_ref::<S>().expect("settings of this provider").clone();
            let fut = build(id, settings, ctx);
            Box::pin(async move { Ok(Arc::new(fut.await?) as Arc<dyn KeyProvider>) })
        };
        let debug = |settings: &Settings, f: &mut fmt::Formatter<'_>| match settings.downcast_ref::<S>() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => f.write_str(".."),
        };
        self.kinds.insert(
            name.to_owned(),
            Arc::new(ProviderKind {
                name: name.to_owned(),
                parse: Box::new(parse),
                build: Box::new(build),
                debug: Box::new(debug),
            }),
        );
        self
    }

    /// The names of the registered providers, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.kinds.keys().map(String::as_str)
    }

    fn known(&self) -> String {
        self.names().collect::<Vec<_>>().join(", ")
    }

    /// The provider a `key` value describes: a table with `provider` and
    /// that provider's settings.
    ///
    /// # Errors
    /// Not a table, no `provider`, an unknown provider (the message lists
    /// the known ones), or the rest does not deserialize into the
    /// provider's settings (the serde message, naming the provider).
    pub fn spec(&self, key: toml::Value) -> std::result::Result<KeySpec, String> {
        let example = "such as key = { provider = \"master-key\", key_file = \"team.key\" }";
        let toml::Value::Table(mut table) = key else {
            return Err(format!("`key` must be a table, {example}"));
        };
        let name = match table.remove("provider") {
            Some(toml::Value::String(name)) => name,
            Some(other) => return Err(format!("key: `provider` must be a string, not {}", other.type_str())),
            None => {
                return Err(format!(
                    "key: missing field `provider`; this build has the providers: {}",
                    self.known()
                ))
            }
        };
        let Some(kind) = self.kinds.get(&name) else {
            return Err(format!("key: unknown provider {name:?}; this build has: {}", self.known()));
        };
        let settings = (kind.parse)(table).map_err(|e| format!("key (provider {name:?}): {e}"))?;
        Ok(KeySpec { kind: kind.clone(), settings })
    }
}

impl fmt::Debug for KeyProviders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyProviders").field("kinds", &self.kinds.keys().collect::<Vec<_>>()).finish()
    }
}

/// A store's `key` setting: its provider and that provider's settings,
/// not yet built.
#[derive(Clone)]
pub struct KeySpec {
    kind: Arc<ProviderKind>,
    settings: Settings,
}

impl KeySpec {
    /// The provider's name (`master-key`, `passphrase`, `aws-kms`, …).
    pub fn provider_name(&self) -> &str {
        &self.kind.name
    }

    /// The settings, when they are an `S`.
    pub fn settings<S: 'static>(&self) -> Option<&S> {
        self.settings.downcast_ref::<S>()
    }

    /// Builds the provider for the store `id`, resolving relative paths
    /// and secrets with `ctx`.
    ///
    /// # Errors
    /// The provider's: usually [`Error::Config`](credstore_core::Error::Config) naming the store, or
    /// [`Error::Unavailable`](credstore_core::Error::Unavailable) when its service cannot be reached.
    pub fn provider(&self, id: &StoreId, ctx: &ConfigContext) -> ProviderFuture {
        (self.kind.build)(id.clone(), &self.settings, ctx.clone())
    }

    /// The key file of a `master-key` provider given `key_file`, resolved
    /// with `ctx`: a store opened with it keeps the key file's crash-safe
    /// rotation (`rotate-key`).
    pub fn key_file(&self, ctx: &ConfigContext) -> Option<KeyFile> {
        let s = self.settings::<MasterKeySettings>()?;
        let path = s.key_file()?;
        Some(KeyFile::new(ctx.path(path)).allow_loose_permissions(s.allow_loose_permissions))
    }
}

impl fmt::Debug for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct S<'a>(&'a KeySpec);
        impl fmt::Debug for S<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                (self.0.kind.debug)(&self.0.settings, f)
            }
        }
        f.debug_struct("KeySpec").field("provider", &self.kind.name).field("settings", &S(self)).finish()
    }
}

/// A backend's settings in code that take a key-encryption key from a
/// store's `key = { .. }` setting: as a key file or as a provider.
trait KeyedConfig: Sized {
    fn with_key_file(self, file: KeyFile) -> Self;
    fn with_provider(self, provider: Arc<dyn KeyProvider>) -> Self;
}

impl KeyedConfig for credstore_sqlite::SqliteConfig {
    fn with_key_file(self, file: KeyFile) -> Self {
        self.master_key_file(file)
    }

    fn with_provider(self, provider: Arc<dyn KeyProvider>) -> Self {
        self.key_provider(provider)
    }
}

#[cfg(feature = "postgres")]
impl KeyedConfig for credstore_postgres::PostgresConfig {
    fn with_key_file(self, file: KeyFile) -> Self {
        self.master_key_file(file)
    }

    fn with_provider(self, provider: Arc<dyn KeyProvider>) -> Self {
        self.key_provider(provider)
    }
}

/// `config` keyed by the store's `key` setting: a `master-key` key file as
/// the backend's key file (which keeps its crash-safe rotation), any other
/// provider built for the store `id` and given as its key provider.
async fn with_key<C: KeyedConfig>(config: C, key: &KeySpec, id: &StoreId, ctx: &ConfigContext) -> Result<C> {
    Ok(match key.key_file(ctx) {
        Some(file) => config.with_key_file(file),
        None => config.with_provider(key.provider(id, ctx).await?),
    })
}

/// Opens the encrypted SQLite store `id` of `settings`, with its `key`
/// provider when it has one: a `master-key` key file as
/// [`SqliteConfig::master_key_file`](credstore_sqlite::SqliteConfig::master_key_file)
/// (crash-safe rotation of the file), any other provider as
/// [`SqliteConfig::key_provider`](credstore_sqlite::SqliteConfig::key_provider).
///
/// # Errors
/// The provider's (see [`KeySpec::provider`]) and those of
/// [`SqliteStore::open`].
pub async fn open_sqlite(
    id: StoreId,
    settings: &SqliteSettings,
    key: Option<&KeySpec>,
    ctx: &ConfigContext,
) -> Result<SqliteStore> {
    let Some(key) = key else {
        return settings.clone().open(id, ctx).await;
    };
    let config = with_key(settings.base_config(ctx), key, &id, ctx).await?;
    SqliteStore::open(id, config).await
}

/// Opens the PostgreSQL store `id` of `settings` (the `postgres` feature),
/// with its `key` provider when it has one, as [`open_sqlite`] does: a
/// `master-key` key file as
/// [`PostgresConfig::master_key_file`](credstore_postgres::PostgresConfig::master_key_file),
/// any other provider as
/// [`PostgresConfig::key_provider`](credstore_postgres::PostgresConfig::key_provider).
///
/// # Errors
/// Those of [`PostgresSettings::base_config`](credstore_postgres::PostgresSettings::base_config)
/// (before any I/O), the provider's (see [`KeySpec::provider`]) and those of
/// [`PostgresStore::open`](credstore_postgres::PostgresStore::open):
/// [`Error::Unavailable`](credstore_core::Error::Unavailable) when the
/// database cannot be reached, which leaves the store to its prober.
#[cfg(feature = "postgres")]
pub async fn open_postgres(
    id: StoreId,
    settings: &credstore_postgres::PostgresSettings,
    key: Option<&KeySpec>,
    ctx: &ConfigContext,
) -> Result<credstore_postgres::PostgresStore> {
    let Some(key) = key else {
        return settings.clone().open(id, ctx).await;
    };
    let config = with_key(settings.base_config(&id, ctx)?, key, &id, ctx).await?;
    credstore_postgres::PostgresStore::open(id, config).await
}

/// The settings of the `master-key` provider: a local 32-byte key, from a
/// key file (`key_file`, base64 of the key, created owner-only with a
/// fresh random key when missing) or an environment variable (`key_env`,
/// its base64). A key file its group or others may read is refused unless
/// `allow_loose_permissions = true`.
///
/// ```toml
/// key = { provider = "master-key", key_file = "/etc/credstore/keys/team.key" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawMasterKey")]
pub struct MasterKeySettings {
    source: SecretSource,
    allow_loose_permissions: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMasterKey {
    #[serde(default)]
    key_file: Option<PathBuf>,
    #[serde(default)]
    key_env: Option<String>,
    #[serde(default)]
    allow_loose_permissions: bool,
}

impl TryFrom<RawMasterKey> for MasterKeySettings {
    type Error = String;

    fn try_from(raw: RawMasterKey) -> std::result::Result<Self, String> {
        let source = SecretSource::one_of("key", raw.key_file, raw.key_env)?
            .ok_or("give one of key_file and key_env")?;
        if matches!(&source, SecretSource::File(p) if p.as_os_str().is_empty()) {
            return Err("key_file is empty".into());
        }
        Ok(Self { source, allow_loose_permissions: raw.allow_loose_permissions })
    }
}

impl MasterKeySettings {
    /// The key file, as given (relative paths not yet resolved).
    pub fn key_file(&self) -> Option<&Path> {
        match &self.source {
            SecretSource::File(path) => Some(path),
            SecretSource::Env(_) => None,
        }
    }

    /// The key of the store `id`.
    ///
    /// # Errors
    /// [`Error::Config`](credstore_core::Error::Config) naming `id` and the file or variable (never the
    /// key): the file cannot be read or created, holds no key, or is open
    /// to its group or others; the variable is unset or not the base64 of
    /// 32 bytes.
    pub fn provider(&self, id: &StoreId, ctx: &ConfigContext) -> Result<MasterKey> {
        MasterKey::load(&self.source, "key_env", self.allow_loose_permissions, id, ctx)
    }
}

/// The settings of the `passphrase` provider: a key derived with Argon2id
/// from a passphrase in a file (`passphrase_file`) or an environment
/// variable (`passphrase_env`); the salt and parameters are kept in the
/// database. A passphrase file its group or others may read is refused
/// unless `allow_loose_permissions = true`.
///
/// ```toml
/// key = { provider = "passphrase", passphrase_env = "TEAM_PASSPHRASE" }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawPassphrase")]
pub struct PassphraseSettings {
    source: SecretSource,
    allow_loose_permissions: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPassphrase {
    #[serde(default)]
    passphrase_file: Option<PathBuf>,
    #[serde(default)]
    passphrase_env: Option<String>,
    #[serde(default)]
    allow_loose_permissions: bool,
}

impl TryFrom<RawPassphrase> for PassphraseSettings {
    type Error = String;

    fn try_from(raw: RawPassphrase) -> std::result::Result<Self, String> {
        let source = SecretSource::one_of("passphrase", raw.passphrase_file, raw.passphrase_env)?
            .ok_or("give one of passphrase_file and passphrase_env")?;
        Ok(Self { source, allow_loose_permissions: raw.allow_loose_permissions })
    }
}

impl PassphraseSettings {
    /// The passphrase key of the store `id` (derived when the store opens).
    ///
    /// # Errors
    /// [`Error::Config`](credstore_core::Error::Config) naming `id` and the file or variable (never the
    /// passphrase): unreadable, unset, empty, or a file open to its group or
    /// others.
    pub fn provider(&self, id: &StoreId, ctx: &ConfigContext) -> Result<MasterKey> {
        MasterKey::load_passphrase(&self.source, self.allow_loose_permissions, id, ctx)
    }
}
