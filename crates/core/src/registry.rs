//! [`StoreRegistry`]: the stores of one application, by id.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use crate::layers::TraceLayer;
use crate::{Availability, CredentialStore, Error, Layer, Result, StoreId, StoreStatus};

/// The default time [`StoreRegistry::check_all`] gives each store's probe.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A set of stores with unique ids, kept in registration order.
///
/// Every registered store is wrapped in a [`TraceLayer`](crate::layers::TraceLayer), so each operation
/// through the registry gets a `tracing` span.
///
/// ```
/// # use credstore_core::*;
/// # use std::sync::Arc;
/// use credstore_conformance::mock::MockStore;
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let mut registry = StoreRegistry::new();
/// registry.register(Arc::new(MockStore::new(StoreId::new("a")?)))?;
/// assert!(registry.register(Arc::new(MockStore::new(StoreId::new("a")?))).is_err());
/// let statuses = registry.check_all(StoreRegistry::DEFAULT_TIMEOUT).await;
/// assert!(statuses[0].availability.available);
/// # Ok(()) }
/// ```
#[derive(Debug, Default, Clone)]
pub struct StoreRegistry {
    stores: Vec<Arc<dyn CredentialStore>>,
    by_id: HashMap<StoreId, usize>,
}

impl StoreRegistry {
    /// The default per-store probe timeout of [`StoreRegistry::check_all`].
    pub const DEFAULT_TIMEOUT: Duration = DEFAULT_CHECK_TIMEOUT;

    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `store` under its own id.
    ///
    /// # Errors
    /// [`Error::AlreadyRegistered`] when a store with the same id is already
    /// there; the registry is unchanged and the earlier store stays.
    pub fn register(&mut self, store: Arc<dyn CredentialStore>) -> Result<()> {
        let id = store.info().id().clone();
        if self.by_id.contains_key(&id) {
            return Err(Error::AlreadyRegistered { store: id });
        }
        self.by_id.insert(id, self.stores.len());
        self.stores.push(TraceLayer.layer(store));
        Ok(())
    }

    /// The store with id `id`, if registered.
    pub fn get(&self, id: &str) -> Option<&Arc<dyn CredentialStore>> {
        self.by_id.get(id).map(|&i| &self.stores[i])
    }

    /// Every store, in registration order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn CredentialStore>> {
        self.stores.iter()
    }

    /// The number of stores.
    pub fn len(&self) -> usize {
        self.stores.len()
    }

    /// Whether no store is registered.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    /// Probes every store at once, each under `timeout`, and returns the
    /// results in registration order.
    ///
    /// # Behavior
    /// Never fails and returns within about `timeout`: a probe that does not
    /// answer in time, or panics, is reported unavailable with the reason.
    pub async fn check_all(&self, timeout: Duration) -> Vec<StoreStatus> {
        let probes = self.stores.iter().map(|store| async move {
            let probe = AssertUnwindSafe(store.check_availability()).catch_unwind();
            let availability = match tokio::time::timeout(timeout, probe).await {
                Ok(Ok(a)) => a,
                Ok(Err(_)) => Availability::down("the availability probe panicked"),
                Err(_) => Availability::down(format!("no answer within {} ms", timeout.as_millis())),
            };
            StoreStatus { id: store.info().id().clone(), kind: store.info().kind().clone(), availability }
        });
        futures::future::join_all(probes).await
    }
}
