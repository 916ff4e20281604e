//! The backend types a server can serve: a registry from a `[[stores]]`
//! table's `type` to the settings that table deserializes into and the
//! store those settings open.
//!
//! Every backend crate owns the settings of its stores (its `serde`
//! feature): `credstore_memory::MemorySettings`,
//! `credstore_sqlite::SqliteSettings`, `credstore_vault::VaultSettings`,
//! `credstore_aws::AwsSettings`, `credstore_postgres::PostgresSettings` and
//! `credstore_keychain::KeychainSettings`. [`Backends::builtin`] registers
//! the ones this build has, by cargo feature: `memory` and
//! `encrypted-sqlite` always, `vault`, `aws-secrets-manager`, `postgres`
//! and `keychain` with the features of those names (`aws` for
//! `aws-secrets-manager`).
//!
//! A custom backend registers its own type, and is then served with
//! everything else (auth, isolation per project, problem+json, the audit
//! log, metrics, the store prober, `cache = { .. }`):
//!
//! ```no_run
//! use std::process::ExitCode;
//! use credstore_core::{config::ConfigContext, StoreId, StoreKind};
//! use credstore_memory::{MemoryConfig, MemoryStore};
//! use credstore_server::backends::Backends;
//!
//! /// `[[stores]] type = "team-vault" greeting_env = "..."`: here a memory
//! /// store stands in for the team's own backend.
//! #[derive(Clone, Debug, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct TeamSettings {
//!     env_prefix: String,
//! }
//!
//! fn main() -> ExitCode {
//!     let mut backends = Backends::builtin();
//!     backends.register(StoreKind::from_static("team-vault"), |id: StoreId, s: TeamSettings, _ctx: ConfigContext| async move {
//!         Ok(MemoryStore::with_config(id, MemoryConfig::new().env_prefix(s.env_prefix)))
//!     });
//!     credstore_server::cli::main_with(backends)
//! }
//! ```

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{CredentialStore, StoreId, StoreKind};
use serde::de::DeserializeOwned;

use super::keys::{KeyProviders, KeySpec};
use super::uri::{UriSettings, URI_KIND};

/// What opening a store gives.
pub type OpenFuture = Pin<Box<dyn Future<Output = credstore_core::Result<Arc<dyn CredentialStore>>> + Send>>;

type Settings = Arc<dyn Any + Send + Sync>;
type Parse = dyn Fn(toml::Table) -> Result<Settings, String> + Send + Sync;
type Open = dyn Fn(StoreId, &Settings, Option<KeySpec>, ConfigContext) -> OpenFuture + Send + Sync;
type DebugSettings = dyn Fn(&Settings, &mut fmt::Formatter<'_>) -> fmt::Result + Send + Sync;

/// One registered backend type.
struct BackendType {
    kind: StoreKind,
    settings_type: TypeId,
    /// Whether a `key = { provider = .. }` table is read for it.
    keyed: bool,
    parse: Box<Parse>,
    open: Box<Open>,
    debug: Box<DebugSettings>,
}

/// The store a backend's `open` gives, as the [`OpenFuture`] of any store.
fn boxed<St, Fut>(fut: Fut) -> OpenFuture
where
    Fut: Future<Output = credstore_core::Result<St>> + Send + 'static,
    St: CredentialStore + 'static,
{
    Box::pin(async move { Ok(Arc::new(fut.await?) as Arc<dyn CredentialStore>) })
}

/// Backend types built without their cargo feature, to name the feature
/// when a config asks for one.
const FEATURE_GATED: [(&str, &str); 5] = [
    ("vault", "vault"),
    ("aws-secrets-manager", "aws"),
    ("aws", "aws"),
    ("keychain", "keychain"),
    ("postgres", "postgres"),
];

/// The registry: backend types by name (the `type` of a `[[stores]]`
/// table), with aliases.
#[derive(Clone, Default)]
pub struct Backends {
    types: BTreeMap<String, Arc<BackendType>>,
    aliases: BTreeMap<String, String>,
    key_providers: KeyProviders,
}

impl Backends {
    /// A registry with no type and no key provider at all.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backends of this build: `memory`, `encrypted-sqlite` (alias
    /// `sqlite`, which takes a `key = { provider = .. }` setting), and with
    /// their features `vault`, `aws-secrets-manager` (alias `aws`),
    /// `postgres` (which takes a `key` setting too) and `keychain`; `uri`,
    /// a store given as one URI (see [`crate::config::uri`]); with the key
    /// providers of [`KeyProviders::builtin`].
    pub fn builtin() -> Self {
        // Registers a backend crate's settings type under the crate's
        // `KIND`: its settings open the store.
        macro_rules! register {
            ($b:ident, $krate:ident::$settings:ident) => {
                $b.register(
                    $krate::KIND,
                    |id, s: $krate::$settings, ctx| async move { s.open(id, &ctx).await },
                )
            };
        }
        let mut b = Self::new();
        b.key_providers = KeyProviders::builtin();
        register!(b, credstore_memory::MemorySettings);
        b.register_keyed(
            credstore_sqlite::KIND,
            |id, s: credstore_sqlite::SqliteSettings, key, ctx| async move {
                super::keys::open_sqlite(id, &s, key.as_ref(), &ctx).await
            },
        );
        b.alias("sqlite", credstore_sqlite::KIND.as_str());
        #[cfg(feature = "postgres")]
        b.register_keyed(
            credstore_postgres::KIND,
            |id, s: credstore_postgres::PostgresSettings, key, ctx| async move {
                super::keys::open_postgres(id, &s, key.as_ref(), &ctx).await
            },
        );
        #[cfg(feature = "vault")]
        register!(b, credstore_vault::VaultSettings);
        #[cfg(feature = "aws")]
        register!(b, credstore_aws::AwsSettings).alias("aws", credstore_aws::KIND.as_str());
        #[cfg(feature = "keychain")]
        register!(b, credstore_keychain::KeychainSettings);
        b.register_uri();
        b
    }

    /// Registers the backend type `kind` (its name is
    /// [`kind.as_str()`](StoreKind::as_str)), replacing any of that name.
    ///
    /// # Behavior
    /// A `[[stores]]` table of this type, without its `id`, `type` and
    /// `cache`, is deserialized into `S` when the config is read, so a
    /// mistake stops the start with the store's index and the serde
    /// message. `open` runs when the server starts (and for each CLI
    /// command that needs the store); a store it fails to open is served
    /// as unavailable with the error as its reason. Settings should name
    /// secrets by file or environment variable
    /// ([`credstore_core::config::SecretSource`]), never hold them inline.
    pub fn register<S, St, F, Fut>(&mut self, kind: StoreKind, open: F) -> &mut Self
    where
        S: DeserializeOwned + fmt::Debug + Send + Sync + 'static,
        F: Fn(StoreId, S, ConfigContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = credstore_core::Result<St>> + Send + 'static,
        S: Clone,
        St: CredentialStore + 'static,
    {
        self.insert(kind, false, move |id, s: S, _key, ctx| boxed(open(id, s, ctx)))
    }

    /// Registers the backend type `kind` as [`Backends::register`] does,
    /// for a backend that seals with a key-encryption key: a `key = {
    /// provider = "…", … }` table in its `[[stores]]` table is read with
    /// [`Backends::key_providers`] when the config is read, and given to
    /// `open` (`None` without one).
    ///
    /// # Behavior
    /// The table `S` deserializes from keeps `key`, so that `S` can tell a
    /// store keyed by a provider from one keyed by its own settings (see
    /// `credstore_sqlite::KeySource::Provider`): `S` must accept the field.
    pub fn register_keyed<S, St, F, Fut>(&mut self, kind: StoreKind, open: F) -> &mut Self
    where
        S: DeserializeOwned + fmt::Debug + Clone + Send + Sync + 'static,
        F: Fn(StoreId, S, Option<KeySpec>, ConfigContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = credstore_core::Result<St>> + Send + 'static,
        St: CredentialStore + 'static,
    {
        self.insert(kind, true, move |id, s: S, key, ctx| boxed(open(id, s, key, ctx)))
    }

    /// Registers `uri`: the type of a `[[stores]]` table that gives `uri`
    /// instead of `type` (see [`crate::config::uri`]).
    fn register_uri(&mut self) -> &mut Self {
        self.insert(URI_KIND, false, |id, s: UriSettings, _key, ctx| {
            Box::pin(async move { s.open(&id, &ctx).await })
        })
    }

    fn insert<S, F>(&mut self, kind: StoreKind, keyed: bool, open: F) -> &mut Self
    where
        S: DeserializeOwned + fmt::Debug + Clone + Send + Sync + 'static,
        F: Fn(StoreId, S, Option<KeySpec>, ConfigContext) -> OpenFuture + Send + Sync + 'static,
    {
        let name = kind.as_str().to_owned();
        let parse = |table: toml::Table| -> Result<Settings, String> {
            let settings: S =
                toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.message().to_owned())?;
            Ok(Arc::new(settings))
        };
        let open =
            move |id: StoreId, settings: &Settings, key: Option<KeySpec>, ctx: ConfigContext| -> OpenFuture {
                let settings = settings.downcast_ref::<S>().expect("settings of this type").clone();
                open(id, settings, key, ctx)
            };
        let debug = |settings: &Settings, f: &mut fmt::Formatter<'_>| match settings.downcast_ref::<S>() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => f.write_str(".."),
        };
        self.aliases.remove(&name);
        self.types.insert(
            name,
            Arc::new(BackendType {
                kind,
                settings_type: TypeId::of::<S>(),
                keyed,
                parse: Box::new(parse),
                open: Box::new(open),
                debug: Box::new(debug),
            }),
        );
        self
    }

    /// Lets `alias` stand for the registered type `name` in a config.
    pub fn alias(&mut self, alias: &str, name: &str) -> &mut Self {
        self.aliases.insert(alias.to_owned(), name.to_owned());
        self
    }

    /// The key providers a keyed backend's `key` table may name.
    pub fn key_providers(&self) -> &KeyProviders {
        &self.key_providers
    }

    /// The key providers, to register more (see [`crate::config::keys`]).
    pub fn key_providers_mut(&mut self) -> &mut KeyProviders {
        &mut self.key_providers
    }

    /// The names of the registered types, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.types.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Result<&Arc<BackendType>, String> {
        let canonical = self.aliases.get(name).map(String::as_str).unwrap_or(name);
        if let Some(t) = self.types.get(canonical) {
            return Ok(t);
        }
        let known: Vec<&str> = self.names().collect();
        match FEATURE_GATED.iter().find(|(n, _)| *n == name) {
            Some((_, feature)) => Err(format!(
                "type {name:?} needs credstore-server's `{feature}` feature, which this build does not have"
            )),
            None => Err(format!("unknown type {name:?}; this build serves: {}", known.join(", "))),
        }
    }

    /// The store `id` of type `type_name` from its config table (without
    /// `id`, `type` and `cache`), resolved later with `ctx`.
    ///
    /// # Errors
    /// An unknown type, the table does not deserialize into the type's
    /// settings (the serde message), or its `key` names no registered
    /// provider or does not deserialize into the provider's settings.
    pub fn spec(
        &self,
        id: StoreId,
        type_name: &str,
        table: toml::Table,
        ctx: ConfigContext,
    ) -> Result<StoreSpec, String> {
        let backend = self.get(type_name)?.clone();
        let key = match table.get("key") {
            Some(key) if backend.keyed => Some(self.key_providers.spec(key.clone())?),
            _ => None,
        };
        let settings = (backend.parse)(table)?;
        Ok(StoreSpec { id, backend, settings, key, ctx })
    }

    /// The store `id` of type `type_name` with settings built in code.
    ///
    /// # Errors
    /// An unknown type, or `settings` is not the type's settings type.
    pub fn spec_of<S: Send + Sync + 'static>(
        &self,
        id: StoreId,
        type_name: &str,
        settings: S,
        ctx: ConfigContext,
    ) -> Result<StoreSpec, String> {
        let backend = self.get(type_name)?.clone();
        if backend.settings_type != TypeId::of::<S>() {
            return Err(format!("the settings given are not those of type {type_name:?}"));
        }
        Ok(StoreSpec { id, backend, settings: Arc::new(settings), key: None, ctx })
    }
}

impl fmt::Debug for Backends {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backends")
            .field("types", &self.types.keys().collect::<Vec<_>>())
            .field("aliases", &self.aliases)
            .finish()
    }
}

/// One configured store: its id, its type and its settings, not yet opened.
#[derive(Clone)]
pub struct StoreSpec {
    id: StoreId,
    backend: Arc<BackendType>,
    settings: Settings,
    key: Option<KeySpec>,
    ctx: ConfigContext,
}

impl StoreSpec {
    /// The store's id.
    pub fn id(&self) -> &StoreId {
        &self.id
    }

    /// The store's kind (its type).
    pub fn kind(&self) -> StoreKind {
        self.backend.kind.clone()
    }

    /// The settings, when they are an `S`.
    pub fn settings<S: 'static>(&self) -> Option<&S> {
        self.settings.downcast_ref::<S>()
    }

    /// The store's `key = { provider = .. }` setting, when its type reads
    /// one and the table has it.
    pub fn key(&self) -> Option<&KeySpec> {
        self.key.as_ref()
    }

    /// Where the settings' relative paths and secrets are resolved.
    pub fn context(&self) -> &ConfigContext {
        &self.ctx
    }

    /// Opens the store, on its root namespace.
    ///
    /// # Errors
    /// Whatever the backend's `open` answers: usually
    /// [`credstore_core::Error::Config`] naming the store.
    pub fn open(&self) -> OpenFuture {
        (self.backend.open)(self.id.clone(), &self.settings, self.key.clone(), self.ctx.clone())
    }
}

impl fmt::Debug for StoreSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct S<'a>(&'a StoreSpec);
        impl fmt::Debug for S<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                (self.0.backend.debug)(&self.0.settings, f)
            }
        }
        f.debug_struct("StoreSpec")
            .field("id", &self.id)
            .field("type", &self.backend.kind.as_str())
            .field("settings", &S(self))
            .field("key", &self.key)
            .finish()
    }
}
