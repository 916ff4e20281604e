//! [`KeychainStore`]: the `CredentialStore` implementation over a platform.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use credstore_core::{
    async_trait, Availability, Credential, CredentialKey, CredentialStore, Error, ListOptions, ListPage,
    Namespace, Result, SetMode, SetOutcome, StoreId, StoreInfo, WriteRequest,
};

use crate::errors::{Failure, Kind, PResult};
use crate::layout::{self, Entry};
use crate::platform::Platform as PlatformImpl;
use crate::{KeychainConfig, Platform};

/// A credential store in the operating system's credential store. See the
/// crate docs for the layout and what each platform supports.
///
/// Cloning is cheap and gives another handle on the same platform store.
#[derive(Clone)]
pub struct KeychainStore {
    /// Id, kind, the platform's capabilities and this handle's namespace.
    info: StoreInfo,
    service: Arc<str>,
    platform: Arc<dyn PlatformImpl>,
    timeout: std::time::Duration,
}

impl fmt::Debug for KeychainStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeychainStore")
            .field("id", self.info.id())
            .field("namespace", self.info.namespace())
            .field("platform", &self.platform)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl KeychainStore {
    /// A store with id `id` in the platform store `config` names.
    ///
    /// # Behavior
    /// Makes no platform call: a Secret Service that is not running, a
    /// locked collection or a refused keyring does not stop the store from
    /// being built; [`CredentialStore::check_availability`] reports it.
    ///
    /// # Errors
    /// [`Error::Config`] when the timeout is zero, the Secret Service
    /// collection alias is empty, or the platform is not one of this target
    /// (the macOS Keychain on Linux) or of this build (the Secret Service
    /// without the `secret-service` feature).
    pub fn new(id: StoreId, config: KeychainConfig) -> Result<Self> {
        config.validate(&id)?;
        let platform = platform(&id, &config.platform)?;
        let service = Arc::from(layout::service_name(&id, &Namespace::root()));
        let mut info = StoreInfo::new(id, crate::KIND, platform.capabilities());
        if let Some(clock) = config.clock {
            info = info.with_clock(clock);
        }
        Ok(Self { info, service, platform, timeout: config.timeout })
    }

    /// The service name this handle's credentials are stored under:
    /// `credstore:{store id}` or `credstore:{store id}:{namespace}`. The
    /// account is the key.
    pub fn service_name(&self) -> &str {
        &self.service
    }

    /// Which platform store this is: `kernel keyutils`, `Secret Service`,
    /// `macOS Keychain` or `Windows Credential Manager`.
    pub fn platform_name(&self) -> &'static str {
        self.platform.name()
    }

    /// A handle on the entries of `service`, a name outside the
    /// `credstore:` ones of stores (the key-encryption keys'), with errors
    /// naming `id`.
    #[cfg(unix)]
    pub(crate) fn for_service(id: StoreId, config: KeychainConfig, service: &str) -> Result<Self> {
        Ok(Self { service: Arc::from(service), ..Self::new(id, config)? })
    }

    /// The same handle with errors naming `id`.
    #[cfg(unix)]
    pub(crate) fn naming(&self, id: &StoreId) -> Self {
        let info = StoreInfo::new(id.clone(), crate::KIND, self.platform.capabilities())
            .with_clock(self.info.clock().clone());
        Self { info, ..self.clone() }
    }

    /// Every entry of `account`, as stored (no layout): one, or several
    /// where the platform keeps duplicates.
    #[cfg(unix)]
    pub(crate) async fn read_raw(&self, account: &str) -> Result<Vec<zeroize::Zeroizing<Vec<u8>>>> {
        self.run(None, self.platform.read_all(&self.service, account)).await
    }

    /// Adds an entry of `account` as is (no layout), never replacing one:
    /// `false` when one exists.
    #[cfg(unix)]
    pub(crate) async fn add_raw(&self, account: &str, entry: &[u8]) -> Result<bool> {
        self.run(None, self.platform.add(&self.service, account, entry)).await
    }

    /// Runs one platform call under the timeout and translates its failure.
    async fn run<T>(&self, key: Option<&CredentialKey>, fut: impl Future<Output = PResult<T>>) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(f)) => Err(f.into_error(self.info.id(), key)),
            Err(_) => Err(self.timed_out().into_error(self.info.id(), key)),
        }
    }

    fn timed_out(&self) -> Failure {
        Failure::new(
            Kind::Unavailable,
            format!("{} did not answer within {:?}", self.platform.name(), self.timeout),
        )
    }

    async fn read(&self, key: &CredentialKey) -> Result<Option<Entry>> {
        Ok(self.read_entry(key).await?.map(|(entry, _)| entry))
    }

    /// The entry of `key` as stored, decoded and raw.
    async fn read_entry(&self, key: &CredentialKey) -> Result<Option<(Entry, zeroize::Zeroizing<Vec<u8>>)>> {
        let bytes = self.run(Some(key), self.platform.read(&self.service, key.as_str())).await?;
        bytes
            .map(|b| {
                layout::decode(&b).map(|entry| (entry, b)).map_err(|e| {
                    Error::integrity(self.info.id(), key, "the stored entry is not in credstore's layout")
                        .with_source(e)
                })
            })
            .transpose()
    }

    /// The live entry of `key`: `None` when there is none or it is past its
    /// `expires_at` by the store's clock.
    async fn read_live(&self, key: &CredentialKey) -> Result<Option<Entry>> {
        let now = self.info.now();
        Ok(self.read(key).await?.filter(|e| !e.is_expired(now)))
    }

    /// Clears the entry of `key` away if it is one past its `expires_at`
    /// (never a newer write that replaced it meanwhile); whether it was.
    async fn clear_expired(&self, key: &CredentialKey) -> Result<bool> {
        let (entry, raw) = match self.read_entry(key).await {
            Ok(Some(found)) => found,
            // Gone since, or another tool's item: nothing expired to clear.
            Ok(None) | Err(Error::Integrity { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        if !entry.is_expired(self.info.now()) {
            return Ok(false);
        }
        self.run(Some(key), self.platform.delete_entry(&self.service, key.as_str(), &raw)).await?;
        Ok(true)
    }
}

/// The platform implementation for `choice` on this target.
fn platform(id: &StoreId, choice: &Platform) -> Result<Arc<dyn PlatformImpl>> {
    let unsupported =
        |what: &str| Err(Error::config(id, format!("{what} is not available on this target or build")));
    // The fallback arms below are reached on the targets without that platform.
    #[allow(unreachable_patterns)]
    match choice {
        Platform::Default => {
            #[cfg(target_os = "macos")]
            return platform(id, &Platform::MacosKeychain);
            #[cfg(target_os = "windows")]
            return platform(id, &Platform::WindowsCredentialManager);
            #[cfg(all(target_os = "linux", feature = "secret-service"))]
            return platform(id, &Platform::SecretService(Default::default()));
            #[cfg(all(target_os = "linux", not(feature = "secret-service")))]
            return platform(id, &Platform::Keyutils(Default::default()));
            #[allow(unreachable_code)]
            unsupported("an operating system credential store")
        }
        #[cfg(target_os = "linux")]
        Platform::Keyutils(ring) => Ok(Arc::new(crate::keyutils::Keyutils::new(*ring))),
        #[cfg(all(target_os = "linux", feature = "secret-service"))]
        Platform::SecretService(options) => {
            Ok(Arc::new(crate::secret_service::SecretService::new(options.clone())))
        }
        #[cfg(target_os = "macos")]
        Platform::MacosKeychain => crate::native::Native::macos()
            .map(|n| Arc::new(n) as Arc<dyn PlatformImpl>)
            .map_err(|f| f.into_error(id, None)),
        #[cfg(target_os = "windows")]
        Platform::WindowsCredentialManager => crate::native::Native::windows()
            .map(|n| Arc::new(n) as Arc<dyn PlatformImpl>)
            .map_err(|f| f.into_error(id, None)),
        Platform::Keyutils(_) => unsupported("kernel keyutils"),
        Platform::SecretService(_) => unsupported("the Secret Service"),
        Platform::MacosKeychain => unsupported("the macOS Keychain"),
        Platform::WindowsCredentialManager => unsupported("the Windows Credential Manager"),
    }
}

#[async_trait]
impl CredentialStore for KeychainStore {
    /// Capabilities are the platform's (see the crate docs).
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let info = self.info.join(namespace)?;
        let service = Arc::from(layout::service_name(info.id(), info.namespace()));
        Ok(Arc::new(Self { info, service, ..self.clone() }))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        Ok(self.read_live(key).await?.map(|e| Credential {
            key: key.clone(),
            value: e.value,
            metadata: e.metadata,
            version: e.version,
            created_at: e.created_at,
            updated_at: e.updated_at,
            expires_at: e.expires_at,
        }))
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let (key, value, metadata) = (request.key(), request.value(), request.metadata());
        let create_only = match request.mode() {
            SetMode::Create => true,
            SetMode::Upsert => false,
            // The request's check refused it: no platform declares it.
            _ => return Err(Error::unsupported(self.info.id(), "replace-if-version writes")),
        };
        // The previous live entry gives `created_at`; an expired one, or a
        // foreign item under the same names, is overwritten as if absent.
        let previous = match if create_only { Ok(None) } else { self.read_live(key).await } {
            Ok(p) => p,
            Err(Error::Integrity { .. }) => None,
            Err(e) => return Err(e),
        };
        let updated_at = layout::write_time(previous.as_ref().map(|p| p.updated_at));
        let created_at = previous.as_ref().map_or(updated_at, |p| p.created_at);
        let expires_at = request.expires_at();
        let version = layout::new_version();
        let times = layout::Times { created_at, updated_at, expires_at };
        let entry = layout::encode(value, metadata, &version, times, self.platform.encoding());
        // The time left by the store's clock, for a platform that expires
        // entries itself (checked later than that clock by the request).
        let ttl = expires_at.map(|at| at.duration_since(self.info.now()).unwrap_or_default());
        let service = &self.service;
        let written = self
            .run(Some(key), self.platform.write_expiring(service, key.as_str(), &entry, create_only, ttl))
            .await;
        match written {
            // A create-only write over an expired entry: that entry counts as
            // absent, so it is cleared away (only if it is still the expired
            // one) and the create-only write tried again, still atomic
            // against a live entry.
            Err(Error::PreconditionFailed { .. }) if create_only && self.clear_expired(key).await? => {
                self.run(Some(key), self.platform.write_expiring(service, key.as_str(), &entry, true, ttl))
                    .await?
            }
            other => other?,
        }
        Ok(SetOutcome { created: previous.is_none(), version, created_at, updated_at })
    }

    /// Reads the entry: whether it exists depends on its `expires_at`,
    /// which is in the entry. Another tool's item under the key's name
    /// exists, as it did.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        match self.read_live(key).await {
            Ok(entry) => Ok(entry.is_some()),
            Err(Error::Integrity { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// An entry past its `expires_at` is cleared away and counts as absent
    /// (`false`).
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        match self.read_entry(key).await {
            Ok(Some((entry, raw))) if entry.is_expired(self.info.now()) => {
                self.run(Some(key), self.platform.delete_entry(&self.service, key.as_str(), &raw)).await?;
                return Ok(false);
            }
            Ok(_) | Err(Error::Integrity { .. }) => {}
            Err(e) => return Err(e),
        }
        self.run(Some(key), self.platform.delete(&self.service, key.as_str())).await
    }

    /// Reads each listed entry's header, so that a key past its
    /// `expires_at` is left out (a foreign item under a listed name stays
    /// listed, as it did).
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        if !self.info.capabilities().list {
            return Err(Error::unsupported(self.info.id(), "list"));
        }
        let accounts = self.run(None, self.platform.list(&self.service)).await?;
        let mut keys: Vec<CredentialKey> =
            accounts.into_iter().filter_map(|a| CredentialKey::new(a).ok()).collect();
        keys.sort();
        keys.dedup();
        let now = self.info.now();
        let mut live = Vec::with_capacity(keys.len());
        for key in keys {
            match self.read(&key).await {
                Ok(Some(entry)) if entry.is_expired(now) => {}
                Ok(Some(_)) | Err(Error::Integrity { .. }) => live.push(key),
                // Deleted since it was listed.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(options.page_from_sorted(live))
    }

    async fn check_availability(&self) -> Availability {
        match tokio::time::timeout(self.timeout, self.platform.probe()).await {
            Ok(Ok(())) => Availability::up(),
            Ok(Err(f)) => Availability::down(f.reason),
            Err(_) => Availability::down(self.timed_out().reason),
        }
    }
}

/// Opening a store from its settings lives here, beside the store: the
/// settings (in `config`) know nothing of the store they open.
#[cfg(feature = "serde")]
impl crate::KeychainSettings {
    /// Builds the store `id` on the platform store these settings name; see
    /// [`crate::KeychainStore::new`] (no I/O: the platform is reached on
    /// first use).
    ///
    /// # Errors
    /// Those of [`crate::KeychainStore::new`]: the platform is not
    /// available on this target or was not built in.
    pub async fn open(
        self,
        id: credstore_core::StoreId,
        _ctx: &credstore_core::config::ConfigContext,
    ) -> Result<crate::KeychainStore> {
        crate::KeychainStore::new(id, self.0)
    }
}
