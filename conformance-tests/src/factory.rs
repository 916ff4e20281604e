//! [`NamespaceFactory`]: the factory of a store with namespaces, written
//! once.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use credstore_core::{Clock, CredentialStore, Namespace};

use crate::{unique_name, StoreFactory};

/// A [`StoreFactory`] whose stores are namespaces of one root store, each
/// its own: the isolation cases then check namespaces of one store rather
/// than separate stores, and whatever the root is built of (a layer, a
/// shared version counter) is exercised across them.
///
/// - [`reopen`](StoreFactory::reopen) answers `None` unless
///   [`reopen_by_handle`](Self::reopen_by_handle) is set: then it hands back
///   a new handle on the same namespace of the root, as reopening a file
///   would for a store whose handles share nothing else.
/// - [`unreachable`](StoreFactory::unreachable) answers the store given to
///   [`with_unreachable`](Self::with_unreachable), if any; stores that
///   declare `can_be_unavailable` need one.
/// - [`create_on_clock`](StoreFactory::create_on_clock) answers `None`
///   unless [`on_clock`](Self::on_clock) is given a builder: then it builds
///   a fresh root on the clock and hands back a fresh namespace of it, so
///   that the cases about time run across namespaces too.
///
/// ```no_run
/// use std::sync::Arc;
/// use credstore_conformance::{conformance_main, NamespaceFactory};
/// use credstore_conformance::mock::MockStore; // your store here
/// use credstore_core::StoreId;
///
/// conformance_main!(Some(NamespaceFactory::new(Arc::new(MockStore::new(StoreId::new("m").unwrap())))));
/// ```
#[derive(Clone)]
pub struct NamespaceFactory {
    root: Arc<dyn CredentialStore>,
    reopen_by_handle: bool,
    unreachable: Option<Arc<dyn CredentialStore>>,
    on_clock: Option<Arc<ClockBuilder>>,
}

/// What [`NamespaceFactory::on_clock`] takes: a fresh root store on a clock.
type ClockBuilder = dyn Fn(Arc<dyn Clock>) -> Arc<dyn CredentialStore> + Send + Sync;

impl fmt::Debug for NamespaceFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NamespaceFactory")
            .field("root", &self.root)
            .field("reopen_by_handle", &self.reopen_by_handle)
            .field("unreachable", &self.unreachable)
            .field("on_clock", &self.on_clock.is_some())
            .finish()
    }
}

impl NamespaceFactory {
    /// Stores on fresh namespaces of `root`.
    pub fn new(root: Arc<dyn CredentialStore>) -> Self {
        Self { root, reopen_by_handle: false, unreachable: None, on_clock: None }
    }

    /// Builds the stores of [`create_on_clock`](StoreFactory::create_on_clock)
    /// with `build`, which makes a fresh root store (like the one given to
    /// [`new`](Self::new)) on the clock it is given; each is used through a
    /// fresh namespace.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use credstore_conformance::{mock::MockStore, NamespaceFactory};
    /// use credstore_core::{CredentialStore, StoreId};
    ///
    /// let id = || StoreId::new("m").unwrap();
    /// let factory = NamespaceFactory::new(Arc::new(MockStore::new(id())))
    ///     .on_clock(move |clock| Arc::new(MockStore::new(id()).with_clock(clock)) as Arc<dyn CredentialStore>);
    /// # let _ = factory;
    /// ```
    pub fn on_clock<F>(mut self, build: F) -> Self
    where
        F: Fn(Arc<dyn Clock>) -> Arc<dyn CredentialStore> + Send + Sync + 'static,
    {
        self.on_clock = Some(Arc::new(build));
        self
    }

    /// Reopens a store as a new handle on its namespace of the root.
    pub fn reopen_by_handle(mut self, reopen: bool) -> Self {
        self.reopen_by_handle = reopen;
        self
    }

    /// The store [`unreachable`](StoreFactory::unreachable) answers.
    pub fn with_unreachable(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.unreachable = Some(store);
        self
    }
}

#[async_trait]
impl StoreFactory for NamespaceFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let ns = Namespace::new(unique_name("ns")).expect("a valid namespace");
        self.root.with_namespace(&ns).expect("a namespace of the root")
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let ns = store.info().namespace().clone();
        drop(store);
        self.reopen_by_handle.then(|| self.root.with_namespace(&ns).expect("a namespace of the root"))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        self.unreachable.clone()
    }

    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        let root = (self.on_clock.as_ref()?)(clock);
        let ns = Namespace::new(unique_name("ns")).expect("a valid namespace");
        Some(root.with_namespace(&ns).expect("a namespace of the root"))
    }
}
