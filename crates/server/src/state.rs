//! The server's shared state: the stores, with a cache of per-project
//! namespaced handles, and the authenticator.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use credstore_core::{
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, ListOptions,
    ListPage, Metadata, Result, SecretValue, SetOutcome, StoreId, StoreKind, StoreRegistry, StoreStatus,
    TracedStore,
};

use crate::auth::Authenticator;

/// Makes a handle on a sub-namespace of a store.
pub type Namespacer = Arc<dyn Fn(&str) -> Result<Arc<dyn CredentialStore>> + Send + Sync>;

/// One served store: its root handle and a way to get handles on
/// namespaces of it (the backend's `with_namespace`).
#[derive(Clone)]
pub struct Backend {
    root: Arc<dyn CredentialStore>,
    namespacer: Namespacer,
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backend").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Backend {
    /// A backend from its root handle and namespacer.
    pub fn new(root: Arc<dyn CredentialStore>, namespacer: Namespacer) -> Self {
        Self { root, namespacer }
    }

    /// A backend of a cloneable store with a `with_namespace`-like method.
    pub fn of<S, F>(store: S, with_namespace: F) -> Self
    where
        S: CredentialStore + Clone + 'static,
        F: Fn(&S, &str) -> Result<S> + Send + Sync + 'static,
    {
        let root: Arc<dyn CredentialStore> = Arc::new(store.clone());
        let namespacer: Namespacer =
            Arc::new(move |ns| with_namespace(&store, ns).map(|s| Arc::new(s) as Arc<dyn CredentialStore>));
        Self { root, namespacer }
    }

    /// A store that could not be opened: every call answers
    /// [`Error::Unavailable`] with `reason`, and so does its probe.
    pub fn failed(id: StoreId, kind: StoreKind, reason: String) -> Self {
        Self::of(FailedStore { id, kind, reason: Arc::from(reason) }, |s, _| Ok(s.clone()))
    }

    /// The root handle.
    pub fn root(&self) -> &Arc<dyn CredentialStore> {
        &self.root
    }

    /// A new handle on namespace `ns` (not cached).
    ///
    /// # Errors
    /// The backend's `with_namespace` error (an invalid namespace).
    pub fn namespace(&self, ns: &str) -> Result<Arc<dyn CredentialStore>> {
        (self.namespacer)(ns)
    }
}

/// The most namespaced handles kept; past it the cache starts over (handles
/// are cheap to make again).
pub const MAX_CACHED_HANDLES: usize = 10_000;

/// Every served store, by id, with cached handles on `tenant/project`
/// namespaces.
pub struct Stores {
    registry: StoreRegistry,
    backends: HashMap<StoreId, Backend>,
    cache: Mutex<HashMap<(StoreId, String), Arc<dyn CredentialStore>>>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores").field("registry", &self.registry).finish_non_exhaustive()
    }
}

impl Stores {
    /// Serves `backends`, in this order.
    ///
    /// # Errors
    /// [`Error::AlreadyRegistered`] when two have the same id.
    pub fn new(backends: Vec<Backend>) -> Result<Self> {
        let mut registry = StoreRegistry::new();
        let mut by_id = HashMap::new();
        for b in backends {
            registry.register(b.root.clone())?;
            by_id.insert(b.root.id().clone(), b);
        }
        Ok(Self { registry, backends: by_id, cache: Mutex::new(HashMap::new()) })
    }

    /// The root handles, in order (each in a [`TracedStore`]).
    pub fn registry(&self) -> &StoreRegistry {
        &self.registry
    }

    /// The backend `id`, if served.
    pub fn backend(&self, id: &str) -> Option<&Backend> {
        self.backends.get(id)
    }

    /// A handle on store `id` in namespace `ns`, made once and cached;
    /// `None` when no such store is served.
    ///
    /// # Errors
    /// The backend's `with_namespace` error (an invalid namespace).
    pub fn handle(&self, id: &str, ns: &str) -> Option<Result<Arc<dyn CredentialStore>>> {
        let backend = self.backends.get(id)?;
        let key = (backend.root.id().clone(), ns.to_owned());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = cache.get(&key) {
            return Some(Ok(h.clone()));
        }
        let handle = match (backend.namespacer)(ns) {
            Ok(h) => Arc::new(TracedStore::new(h)) as Arc<dyn CredentialStore>,
            Err(e) => return Some(Err(e)),
        };
        if cache.len() >= MAX_CACHED_HANDLES {
            cache.clear();
        }
        cache.insert(key, handle.clone());
        Some(Ok(handle))
    }

    /// Probes every store concurrently, each under `timeout`.
    pub async fn check_all(&self, timeout: Duration) -> Vec<StoreStatus> {
        self.registry.check_all(timeout).await
    }
}

/// The state every handler gets.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The stores.
    pub stores: Arc<Stores>,
    /// The tokens.
    pub auth: Arc<Authenticator>,
    /// How long one store call may take.
    pub store_timeout: Duration,
    /// How long one availability probe may take.
    pub probe_timeout: Duration,
    /// The largest request body.
    pub body_limit: usize,
    /// Set when shutdown starts; `/readyz` then answers 503.
    pub shutting_down: Arc<AtomicBool>,
}

impl AppState {
    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// A store that failed to open. Every call is [`Error::Unavailable`].
#[derive(Clone)]
struct FailedStore {
    id: StoreId,
    kind: StoreKind,
    reason: Arc<str>,
}

impl fmt::Debug for FailedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailedStore").field("id", &self.id).field("reason", &self.reason).finish()
    }
}

impl FailedStore {
    fn err<T>(&self) -> Result<T> {
        Err(Error::unavailable(&self.id, self.reason.to_string()))
    }
}

#[async_trait]
impl CredentialStore for FailedStore {
    fn id(&self) -> &StoreId {
        &self.id
    }
    fn kind(&self) -> StoreKind {
        self.kind.clone()
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }
    async fn get(&self, _: &CredentialKey) -> Result<Option<Credential>> {
        self.err()
    }
    async fn set(&self, _: &CredentialKey, value: &SecretValue, _: &Metadata) -> Result<SetOutcome> {
        credstore_core::check_value(value)?;
        self.err()
    }
    async fn has(&self, _: &CredentialKey) -> Result<bool> {
        self.err()
    }
    async fn delete(&self, _: &CredentialKey) -> Result<bool> {
        self.err()
    }
    async fn list(&self, _: &ListOptions) -> Result<ListPage> {
        self.err()
    }
    async fn check_availability(&self) -> Availability {
        Availability::down(self.reason.to_string())
    }
}
