//! The server's shared state: the stores (with their read-through caches
//! and a cache of per-project namespaced handles), and the authenticator.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credstore_core::layers::TimeoutLayer;
use credstore_core::{
    CredentialStore, CredentialStoreExt, Namespace, Result, StoreExt, StoreId, StoreRegistry, StoreStatus,
};
use credstore_layers::{CacheLayer, CachedStore};

pub use super::failure::{FailedStore, FAILED_TO_OPEN};
use crate::audit::AuditLog;
use crate::auth::sessions::Sessions;
use crate::auth::Authenticator;
use crate::auth_failures::AuthFailures;
use crate::metrics::{Metrics, MetricsLayer};
use crate::status::StatusBoard;

/// The most namespaced handles kept; past it the cache starts over (handles
/// are cheap to make again).
pub const MAX_CACHED_HANDLES: usize = 10_000;

/// Every served store, by id, with cached handles on `tenant/project`
/// namespaces.
///
/// Each store is wrapped once, when it is added: in a
/// [`TimeoutLayer`] (every call bounded by the store timeout), then, for a
/// store given a cache ([`Stores::with_caches`]), in a [`CacheLayer`] over
/// the timeout (so a hit makes no call at all), then, by the
/// [`StoreRegistry`], in a
/// [`TraceLayer`](credstore_core::layers::TraceLayer). Handles on namespaces
/// come from the wrapped store's [`CredentialStore::with_namespace`], so they
/// keep every layer; all handles of a cached store share its one cache.
pub struct Stores {
    registry: StoreRegistry,
    metrics: Arc<Metrics>,
    caches: Vec<(StoreId, Arc<CachedStore>)>,
    handles: Mutex<HashMap<(StoreId, Namespace), Arc<dyn CredentialStore>>>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl Stores {
    /// Serves `stores`, in this order, each call of each store bounded by
    /// `store_timeout` (a call over it fails with
    /// [`Error::Unavailable`](credstore_core::Error::Unavailable): "no answer within N ms").
    ///
    /// # Errors
    /// [`Error::AlreadyRegistered`](credstore_core::Error::AlreadyRegistered) when two have the same id.
    pub fn new(stores: Vec<Arc<dyn CredentialStore>>, store_timeout: Duration) -> Result<Self> {
        Self::with_caches(stores.into_iter().map(|s| (s, None)).collect(), store_timeout)
    }

    /// Like [`Stores::new`], with a read-through cache over the stores that
    /// come with a [`CacheLayer`]: the cache wraps the timeout layer, so a
    /// hit makes no call and a miss is bounded by the store timeout. The
    /// caches are reachable through [`Stores::cache`] (for their
    /// [`stats`](CachedStore::stats)).
    ///
    /// # Errors
    /// [`Error::AlreadyRegistered`](credstore_core::Error::AlreadyRegistered) when two have the same id.
    pub fn with_caches(
        stores: Vec<(Arc<dyn CredentialStore>, Option<CacheLayer>)>,
        store_timeout: Duration,
    ) -> Result<Self> {
        let mut registry = StoreRegistry::new();
        let mut caches = Vec::new();
        let timeout = TimeoutLayer::new(store_timeout);
        let metrics = Arc::new(Metrics::new());
        let metered = MetricsLayer::new(metrics.clone());
        for (store, cache) in stores {
            let id = store.id().clone();
            let store = store.with_layer(timeout).with_layer(metered.clone());
            let served: Arc<dyn CredentialStore> = match cache {
                Some(layer) => {
                    let cached = layer.build(store);
                    metrics.add_cache(&id, Arc::clone(&cached));
                    caches.push((id, Arc::clone(&cached)));
                    cached
                }
                None => store,
            };
            registry.register(served)?;
        }
        Ok(Self { registry, metrics, caches, handles: Mutex::new(HashMap::new()) })
    }

    /// The metrics these stores count their calls in (see
    /// [`MetricsLayer`]); the server adds its request and probe figures.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The read-through cache of store `id`, when it has one: its
    /// [`stats`](CachedStore::stats) are those of every project together.
    pub fn cache(&self, id: &str) -> Option<&Arc<CachedStore>> {
        self.caches.iter().find(|(i, _)| i.as_str() == id).map(|(_, c)| c)
    }

    /// Every cached store with its id, in the order served.
    pub fn caches(&self) -> impl Iterator<Item = (&StoreId, &Arc<CachedStore>)> {
        self.caches.iter().map(|(i, c)| (i, c))
    }

    /// The root handles, in order (each in a timeout layer, a cache when
    /// configured, and a tracing layer).
    pub fn registry(&self) -> &StoreRegistry {
        &self.registry
    }

    /// The root handle of store `id`, if served.
    pub fn root(&self, id: &str) -> Option<&Arc<dyn CredentialStore>> {
        self.registry.get(id)
    }

    /// A handle on store `id` in namespace `ns`, made once and cached;
    /// `None` when no such store is served.
    ///
    /// # Errors
    /// The store's [`CredentialStore::with_namespace`] error:
    /// [`Error::InvalidNamespace`](credstore_core::Error::InvalidNamespace) when `ns` is longer than the store holds.
    pub fn handle(&self, id: &str, ns: &Namespace) -> Option<Result<Arc<dyn CredentialStore>>> {
        let root = self.registry.get(id)?;
        let key = (root.id().clone(), ns.clone());
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = handles.get(&key) {
            return Some(Ok(h.clone()));
        }
        let handle = match root.with_namespace(ns) {
            Ok(h) => h,
            Err(e) => return Some(Err(e)),
        };
        if handles.len() >= MAX_CACHED_HANDLES {
            handles.clear();
        }
        handles.insert(key, handle.clone());
        Some(Ok(handle))
    }

    /// Probes every store concurrently, each under `timeout`.
    pub async fn check_all(&self, timeout: Duration) -> Vec<StoreStatus> {
        self.registry.check_all(timeout).await
    }
}

/// The state every handler gets: a handle on one [`SharedState`], which it
/// dereferences to (`state.stores`, `state.auth`, …).
///
/// One `Arc`, so the clones axum makes of a route's state on every request
/// cost one reference count, not one per field.
#[derive(Debug, Clone)]
pub struct AppState(Arc<SharedState>);

impl AppState {
    /// A handle on `shared`.
    pub fn new(shared: SharedState) -> Self {
        Self(Arc::new(shared))
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// What every handler shares.
#[derive(Debug)]
pub struct SharedState {
    /// The stores.
    pub stores: Arc<Stores>,
    /// The tokens.
    pub auth: Arc<Authenticator>,
    /// The last availability of every store, kept by the probers.
    pub status: Arc<StatusBoard>,
    /// The audit log.
    pub audit: Arc<AuditLog>,
    /// The console's sessions (the `cookieAuth` cookies).
    pub sessions: Arc<Sessions>,
    /// Refusals for a missing or unknown token, per peer.
    pub(crate) auth_failures: AuthFailures,
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// How long one availability probe may take.
    pub probe_timeout: Duration,
    /// The largest request body.
    pub body_limit: usize,
    /// Set when shutdown starts; `/readyz` then answers 503.
    pub shutting_down: Arc<AtomicBool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::{CredentialKey, Metadata, SecretValue};

    #[tokio::test]
    async fn handles_keep_the_timeout_and_are_cached() {
        use credstore_conformance::mock::{Fault, MockStore, Op};
        let mock = MockStore::new(StoreId::new("h").unwrap());
        mock.fail_next_op(Op::Get, 1, Fault::Hang);
        let stores = Stores::new(vec![Arc::new(mock.clone())], Duration::from_millis(50)).unwrap();
        let ns = Namespace::new("t/p").unwrap();
        let a = stores.handle("h", &ns).unwrap().unwrap();
        let b = stores.handle("h", &ns).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one handle per store and namespace");
        assert_eq!(a.namespace(), &ns);
        let key = CredentialKey::new("k").unwrap();
        let err = a.get(&key).await.unwrap_err();
        assert!(err.is_retriable() && err.to_string().contains("no answer within 50 ms"), "{err}");
        // The handle is the mock's namespace: a write through it is not at the root.
        a.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        assert!(!stores.root("h").unwrap().has(&key).await.unwrap());
        assert_eq!(mock.calls(Op::Get), 1);
        assert!(stores.handle("nosuch", &ns).is_none());
    }

    #[tokio::test]
    async fn a_cache_wraps_the_timeout_and_is_shared_by_every_handle() {
        use credstore_conformance::mock::{Fault, MockStore, Op};
        let mock = MockStore::new(StoreId::new("c").unwrap());
        let plain = MockStore::new(StoreId::new("p").unwrap());
        let stores = Stores::with_caches(
            vec![(Arc::new(mock.clone()), Some(CacheLayer::new())), (Arc::new(plain), None)],
            Duration::from_millis(50),
        )
        .unwrap();
        assert!(stores.cache("p").is_none());
        let cache = Arc::clone(stores.cache("c").expect("kept"));
        assert_eq!(stores.caches().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), ["c"]);
        let ns = Namespace::new("t/p").unwrap();
        let key = CredentialKey::new("k").unwrap();
        let a = stores.handle("c", &ns).unwrap().unwrap();
        a.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        assert!(a.get(&key).await.unwrap().is_some());
        // From now on the store hangs: a hit still answers, through the
        // handle of another request on the same namespace too; a miss is cut
        // by the timeout under the cache.
        mock.fail_next_op(Op::Get, usize::MAX, Fault::Hang);
        stores.handles.lock().unwrap().clear();
        let b = stores.handle("c", &ns).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
        assert_eq!(b.get(&key).await.unwrap().unwrap().value.expose_secret(), b"v");
        let err = b.get(&CredentialKey::new("other").unwrap()).await.unwrap_err();
        assert!(err.to_string().contains("no answer within 50 ms"), "{err}");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.loads), (1, 2), "{stats:?}");
        assert_eq!(mock.calls(Op::Get), 2);
    }
}
