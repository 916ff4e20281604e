//! [`TracedStore`]: a layer that opens a `tracing` span around every operation.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;

use crate::{
    Availability, Capabilities, Credential, CredentialKey, CredentialStore, ListOptions, ListPage, Metadata,
    Result, SecretValue, SetOutcome, StoreId, StoreKind,
};

/// Wraps a store so that every call runs inside a `credstore` span with the
/// fields `store`, `op` and `key` (where there is one). The value is never
/// recorded. Errors are logged at `debug` level with their message, which by
/// contract holds no secret.
///
/// [`crate::StoreRegistry`] wraps every store it holds in one.
#[derive(Debug, Clone)]
pub struct TracedStore {
    inner: Arc<dyn CredentialStore>,
}

impl TracedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn CredentialStore>) -> Self {
        Self { inner }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    fn span(&self, op: &'static str, key: Option<&CredentialKey>) -> tracing::Span {
        let key = key.map(CredentialKey::as_str).unwrap_or("");
        tracing::debug_span!("credstore", store = %self.inner.id(), op, key)
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

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        async { logged(self.inner.get(key).await) }.instrument(self.span("get", Some(key))).await
    }

    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome> {
        async { logged(self.inner.set(key, value, metadata).await) }
            .instrument(self.span("set", Some(key)))
            .await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        async { logged(self.inner.has(key).await) }.instrument(self.span("has", Some(key))).await
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
