//! [`ReadOnlyLayer`]: a store that refuses every write before any I/O.

use std::sync::Arc;

use async_trait::async_trait;
use credstore_core::{
    Availability, ChangeFeed, Credential, CredentialKey, CredentialStore, Error, Layer, ListOptions,
    ListPage, Namespace, PurgeTarget, Result, SetOutcome, StoreInfo, Version, VersionListOptions,
    VersionPage, WriteRequest,
};

/// The `operation` named by the [`Error::Unsupported`] a read-only store
/// answers every write and delete with.
pub const READ_ONLY_OPERATION: &str = "writes (the store is read-only)";

/// Makes a store read-only: reads pass through, writes are refused.
///
/// # Behavior
/// - `write` (and so `set_opts` and `set`) and `delete` fail with
///   [`Error::Unsupported`] whose operation is [`READ_ONLY_OPERATION`],
///   before any I/O: the wrapped store never sees the call. `create` and
///   `replace` fail with `Unsupported` too, from the write's own check,
///   naming the mode this layer declares off (`create-only writes`,
///   `replace-if-version writes`). `Unsupported`
///   was chosen over `PermissionDenied` because nothing was asked of the
///   backend: the refusal is a property of this handle, stable and not
///   retriable, like any other capability the store lacks.
/// - `get`, `has`, `version`, `list` and `check_availability` pass through.
/// - [`info`](CredentialStore::info) is the wrapped store's, with capabilities
///   with `create_only` and `replace_if_version` off, since no write of any
///   mode is accepted.
/// - Namespace handles are read-only too.
///
/// ```
/// use std::sync::Arc;
/// use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, StoreExt};
/// use credstore_layers::ReadOnlyLayer;
///
/// # async fn demo(store: Arc<dyn CredentialStore>) -> credstore_core::Result<()> {
/// let store = store.with_layer(ReadOnlyLayer::new());
/// let key = CredentialKey::new("api-token")?;
/// let err = store.set(&key, &"x".into(), &Metadata::new()).await.unwrap_err();
/// assert!(matches!(err, Error::Unsupported { .. }));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOnlyLayer;

impl ReadOnlyLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl Layer for ReadOnlyLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        let caps = inner
            .info()
            .capabilities()
            .with_create_only(false)
            .with_replace_if_version(false)
            .with_expiry(false);
        Arc::new(ReadOnlyStore { info: inner.info().with_capabilities(caps), inner })
    }
}

/// A store wrapped by [`ReadOnlyLayer`].
#[derive(Debug, Clone)]
pub struct ReadOnlyStore {
    inner: Arc<dyn CredentialStore>,
    info: StoreInfo,
}

impl ReadOnlyStore {
    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    fn refuse(&self) -> Error {
        Error::unsupported(self.info.id(), READ_ONLY_OPERATION)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl CredentialStore for ReadOnlyStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(ReadOnlyLayer.layer(self.inner.with_namespace(namespace)?))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.inner.get(key).await
    }

    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        self.inner.get_many(keys).await
    }

    /// Always [`Error::Unsupported`], before any I/O.
    async fn write(&self, _request: &WriteRequest<'_>) -> Result<SetOutcome> {
        Err(self.refuse())
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.inner.has(key).await
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.inner.version(key).await
    }

    /// Always [`Error::Unsupported`], before any I/O.
    async fn delete(&self, _key: &CredentialKey) -> Result<bool> {
        Err(self.refuse())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        self.inner.subscribe().await
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.inner.get_version(key, version).await
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        self.inner.list_versions(key, options).await
    }

    /// Always [`Error::Unsupported`], before any I/O.
    async fn purge(&self, _key: &CredentialKey, _target: &PurgeTarget) -> Result<bool> {
        Err(self.refuse())
    }

    async fn check_availability(&self) -> Availability {
        self.inner.check_availability().await
    }
}
