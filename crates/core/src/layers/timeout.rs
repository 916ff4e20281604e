//! [`TimeoutLayer`]: a deadline on every operation.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::{
    Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, Layer, ListOptions,
    ListPage, Metadata, Namespace, Result, SecretValue, SetOptions, SetOutcome, StoreId, StoreKind, Version,
};

/// Bounds every call of the wrapped store by one duration.
///
/// # Behavior
/// - An operation that does not finish in time fails with
///   [`Error::Unavailable`] ("no answer within N ms"), which is retriable; a
///   probe answers `available: false` with the same reason.
/// - A write that timed out may still reach the backend afterwards: read
///   before retrying a create-only write.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use credstore_core::{layers::TimeoutLayer, CredentialStore, StoreExt};
/// fn bounded(store: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
///     store.with_layer(TimeoutLayer::new(Duration::from_secs(3)))
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

impl TimeoutLayer {
    /// A layer that gives every operation `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The duration each operation gets.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Layer for TimeoutLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        Arc::new(TimeoutStore { inner, layer: *self })
    }
}

/// A store wrapped by [`TimeoutLayer`].
#[derive(Debug, Clone)]
pub struct TimeoutStore {
    inner: Arc<dyn CredentialStore>,
    layer: TimeoutLayer,
}

impl TimeoutStore {
    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    fn reason(&self) -> String {
        format!("no answer within {} ms", self.layer.timeout.as_millis())
    }

    async fn bounded<T>(&self, op: impl Future<Output = Result<T>>) -> Result<T> {
        match tokio::time::timeout(self.layer.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(Error::unavailable(self.inner.id(), self.reason())),
        }
    }
}

#[async_trait]
impl CredentialStore for TimeoutStore {
    fn id(&self) -> &StoreId {
        self.inner.id()
    }

    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(self.layer.layer(self.inner.with_namespace(namespace)?))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.bounded(self.inner.get(key)).await
    }

    async fn set_opts(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<SetOutcome> {
        self.bounded(self.inner.set_opts(key, value, metadata, options)).await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.bounded(self.inner.has(key)).await
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.bounded(self.inner.version(key)).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.bounded(self.inner.delete(key)).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.bounded(self.inner.list(options)).await
    }

    async fn check_availability(&self) -> Availability {
        match tokio::time::timeout(self.layer.timeout, self.inner.check_availability()).await {
            Ok(a) => a,
            Err(_) => Availability::down(self.reason()),
        }
    }
}
