//! [`Around`]: the one wrapper behind every layer that only acts around each
//! call (tracing, timeouts, metrics).

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    Availability, ChangeFeed, Credential, CredentialKey, CredentialStore, Layer, ListOptions, ListPage,
    Namespace, PurgeTarget, Result, SetOutcome, StoreInfo, Version, VersionListOptions, VersionPage,
    WriteRequest,
};

/// Which method of [`CredentialStore`] a [`Call`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// [`CredentialStore::get`].
    Get,
    /// [`CredentialStore::write`], whatever its mode.
    Set,
    /// [`CredentialStore::has`].
    Has,
    /// [`CredentialStore::version`].
    Version,
    /// [`CredentialStore::delete`].
    Delete,
    /// [`CredentialStore::list`].
    List,
    /// [`CredentialStore::check_availability`].
    CheckAvailability,
    /// [`CredentialStore::subscribe`]: setting up the feed, not the events
    /// read from it.
    Subscribe,
    /// [`CredentialStore::get_version`].
    GetVersion,
    /// [`CredentialStore::list_versions`].
    ListVersions,
    /// [`CredentialStore::purge`], of a key or of one version.
    Purge,
    /// [`CredentialStore::get_many`] (one call for the whole batch).
    GetMany,
}

impl Operation {
    /// Every operation, in declaration order.
    pub const ALL: [Operation; 12] = [
        Operation::Get,
        Operation::Set,
        Operation::Has,
        Operation::Version,
        Operation::Delete,
        Operation::List,
        Operation::CheckAvailability,
        Operation::Subscribe,
        Operation::GetVersion,
        Operation::ListVersions,
        Operation::Purge,
        Operation::GetMany,
    ];

    /// The operation's name in logs and metrics: `get`, `set`, `has`,
    /// `version`, `delete`, `list`, `check_availability`, `subscribe`,
    /// `get_version`, `list_versions`, `purge` or `get_many`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Get => "get",
            Operation::Set => "set",
            Operation::Has => "has",
            Operation::Version => "version",
            Operation::Delete => "delete",
            Operation::List => "list",
            Operation::CheckAvailability => "check_availability",
            Operation::Subscribe => "subscribe",
            Operation::GetVersion => "get_version",
            Operation::ListVersions => "list_versions",
            Operation::Purge => "purge",
            Operation::GetMany => "get_many",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The future of one call of a store, as [`Around::around`] takes and
/// returns it: any `Future<Output = Result<T>> + Send + 'a`.
pub trait CallFuture<'a, T>: Future<Output = Result<T>> + Send + 'a {}

impl<'a, T, F: Future<Output = Result<T>> + Send + 'a> CallFuture<'a, T> for F {}

/// The future of a store's availability probe, as [`Around::around_probe`]
/// takes and returns it: any `Future<Output = Availability> + Send + 'a`.
pub trait ProbeFuture<'a>: Future<Output = Availability> + Send + 'a {}

impl<'a, F: Future<Output = Availability> + Send + 'a> ProbeFuture<'a> for F {}

/// One call through an [`AroundStore`]: which store, which operation, which
/// key. Never the value.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Call<'a> {
    /// The wrapped store's info (id, kind, capabilities, namespace).
    pub store: &'a StoreInfo,
    /// The method called.
    pub operation: Operation,
    /// The key, for the methods that take one.
    pub key: Option<&'a CredentialKey>,
}

/// What a layer does around each call of the store it wraps, and nothing
/// else (implementations write `async fn around`, as below): the store's answers pass through unchanged unless `around` changes
/// them. [`AroundStore`] turns an `Around` into a whole [`CredentialStore`];
/// [`TraceLayer`](crate::layers::TraceLayer) and
/// [`TimeoutLayer`](crate::layers::TimeoutLayer) are built this way.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use credstore_core::layers::{Around, Call, CallFuture};
/// use credstore_core::{CredentialStore, Result, StoreExt};
///
/// /// Counts calls that failed.
/// #[derive(Debug, Clone, Default)]
/// struct CountFailures(Arc<AtomicU64>);
///
/// impl Around for CountFailures {
///     async fn around<'a, T: Send + 'a>(&'a self, _call: Call<'a>, op: impl CallFuture<'a, T>) -> Result<T> {
///         let result = op.await;
///         if result.is_err() {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///         result
///     }
/// }
///
/// // Every `Around` is a `Layer`.
/// fn counted(store: Arc<dyn CredentialStore>, failures: &CountFailures) -> Arc<dyn CredentialStore> {
///     store.with_layer(failures.clone())
/// }
/// ```
pub trait Around: Clone + fmt::Debug + Send + Sync + 'static {
    /// Runs `op`, the call `call` of the wrapped store, and returns its
    /// result (or another: a timeout's).
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: impl CallFuture<'a, T>,
    ) -> impl CallFuture<'a, T>;

    /// Runs `probe`, the wrapped store's availability probe. By default it
    /// only awaits it.
    fn around_probe<'a>(&'a self, call: Call<'a>, probe: impl ProbeFuture<'a>) -> impl ProbeFuture<'a> {
        let _ = call;
        probe
    }
}

/// A store wrapped by an [`Around`]: every call goes through
/// [`Around::around`], `info` is the inner store's, and a namespace handle is
/// the same `Around` over the inner store's handle.
#[derive(Debug, Clone)]
pub struct AroundStore<A> {
    inner: Arc<dyn CredentialStore>,
    around: A,
}

impl<A: Around> AroundStore<A> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn CredentialStore>, around: A) -> Self {
        Self { inner, around }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    /// What acts around each call.
    pub fn around(&self) -> &A {
        &self.around
    }

    fn call<'a>(&'a self, operation: Operation, key: Option<&'a CredentialKey>) -> Call<'a> {
        Call { store: self.inner.info(), operation, key }
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl<A: Around> CredentialStore for AroundStore<A> {
    fn info(&self) -> &StoreInfo {
        self.inner.info()
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(Arc::new(Self::new(self.inner.with_namespace(namespace)?, self.around.clone())))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.around.around(self.call(Operation::Get, Some(key)), self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        self.around.around(self.call(Operation::GetMany, None), self.inner.get_many(keys)).await
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        self.around.around(self.call(Operation::Set, Some(request.key())), self.inner.write(request)).await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.around.around(self.call(Operation::Has, Some(key)), self.inner.has(key)).await
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.around.around(self.call(Operation::Version, Some(key)), self.inner.version(key)).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.around.around(self.call(Operation::Delete, Some(key)), self.inner.delete(key)).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.around.around(self.call(Operation::List, None), self.inner.list(options)).await
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        self.around.around(self.call(Operation::Subscribe, None), self.inner.subscribe()).await
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.around
            .around(self.call(Operation::GetVersion, Some(key)), self.inner.get_version(key, version))
            .await
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        self.around
            .around(self.call(Operation::ListVersions, Some(key)), self.inner.list_versions(key, options))
            .await
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        self.around.around(self.call(Operation::Purge, Some(key)), self.inner.purge(key, target)).await
    }

    async fn check_availability(&self) -> Availability {
        self.around
            .around_probe(self.call(Operation::CheckAvailability, None), self.inner.check_availability())
            .await
    }
}

/// Every [`Around`] is a layer: it wraps a store in an [`AroundStore`].
impl<A: Around> Layer for A {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        Arc::new(AroundStore::new(inner, self.clone()))
    }
}
