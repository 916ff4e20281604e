//! [`Layer`]: wrappers that stack on any store.
//!
//! A layer turns one `Arc<dyn CredentialStore>` into another that adds
//! behaviour (tracing, timeouts, caching, retries) and forwards the rest.
//! Layered stores pass [`CredentialStore::with_namespace`] through: the
//! handle on a namespace of a layered store is the same layer over the inner
//! store's handle on that namespace, so per-namespace state (a cache) never
//! crosses namespaces.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use credstore_core::layers::{TimeoutLayer, TraceLayer};
//! use credstore_core::{CredentialStore, Namespace, StoreExt};
//!
//! fn harden(store: Arc<dyn CredentialStore>) -> credstore_core::Result<Arc<dyn CredentialStore>> {
//!     let store = store.with_layer(TimeoutLayer::new(Duration::from_secs(3))).with_layer(TraceLayer::new());
//!     // Namespaces keep both layers.
//!     store.with_namespace(&Namespace::new("tenant_1/project_1")?)
//! }
//! ```

use std::sync::Arc;

use crate::CredentialStore;

/// Something that wraps a store in another.
///
/// Implementations keep a clone of themselves in the store they return, so
/// that its `with_namespace` can wrap the inner handle in the same layer.
pub trait Layer: Send + Sync {
    /// Wraps `inner`.
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore>;
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        (**self).layer(inner)
    }
}

/// Stacks layers on a store: `store.with_layer(a).with_layer(b)` puts `b`
/// outermost.
pub trait StoreExt {
    /// Wraps this store in `layer`.
    fn with_layer<L: Layer>(self, layer: L) -> Arc<dyn CredentialStore>;
}

impl StoreExt for Arc<dyn CredentialStore> {
    fn with_layer<L: Layer>(self, layer: L) -> Arc<dyn CredentialStore> {
        layer.layer(self)
    }
}
