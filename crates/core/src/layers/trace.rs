//! [`TraceLayer`]: a `tracing` span around every operation.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;

use crate::{
    Availability, Capabilities, Credential, CredentialKey, CredentialStore, Layer, ListOptions, ListPage,
    Metadata, Namespace, Result, SecretValue, SetOptions, SetOutcome, StoreId, StoreKind, Version,
};

/// Runs every call inside a `credstore` span with the fields `store`,
/// `namespace`, `op` and `key` (where there is one). The value is never
/// recorded. Errors are logged at `debug` level with their message, which by
/// contract holds no secret.
///
/// [`crate::StoreRegistry`] puts every store it holds in one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

impl TraceLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

impl Layer for TraceLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        Arc::new(TracedStore { inner })
    }
}

/// A store wrapped by [`TraceLayer`].
#[derive(Debug, Clone)]
pub struct TracedStore {
    inner: Arc<dyn CredentialStore>,
}

impl TracedStore {
    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    fn span(&self, op: &'static str, key: Option<&CredentialKey>) -> tracing::Span {
        let key = key.map(CredentialKey::as_str).unwrap_or("");
        let namespace = self.inner.namespace().as_str();
        tracing::debug_span!("credstore", store = %self.inner.id(), namespace, op, key)
    }
}

fn logged<T>(result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        tracing::debug!(error = %e, retriable = e.is_retriable(), "operation failed");
    }
    result
}

#[async_trait]
impl CredentialStore for TracedStore {
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
        Ok(TraceLayer.layer(self.inner.with_namespace(namespace)?))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        async { logged(self.inner.get(key).await) }.instrument(self.span("get", Some(key))).await
    }

    async fn set_opts(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<SetOutcome> {
        async { logged(self.inner.set_opts(key, value, metadata, options).await) }
            .instrument(self.span("set", Some(key)))
            .await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        async { logged(self.inner.has(key).await) }.instrument(self.span("has", Some(key))).await
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        async { logged(self.inner.version(key).await) }.instrument(self.span("version", Some(key))).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        async { logged(self.inner.delete(key).await) }.instrument(self.span("delete", Some(key))).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        async { logged(self.inner.list(options).await) }.instrument(self.span("list", None)).await
    }

    async fn check_availability(&self) -> Availability {
        async {
            let a = self.inner.check_availability().await;
            if !a.available {
                tracing::debug!(reason = a.reason.as_deref().unwrap_or(""), "store unavailable");
            }
            a
        }
        .instrument(self.span("check_availability", None))
        .await
    }
}
