//! [`NamespaceFactory`]: the factory of a store with namespaces, written
//! once.

use std::sync::Arc;

use async_trait::async_trait;
use credstore_core::{CredentialStore, Namespace};

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
///
/// ```no_run
/// use std::sync::Arc;
/// use credstore_conformance::{conformance_main, NamespaceFactory};
/// use credstore_conformance::mock::MockStore; // your store here
/// use credstore_core::StoreId;
///
/// conformance_main!(Some(NamespaceFactory::new(Arc::new(MockStore::new(StoreId::new("m").unwrap())))));
/// ```
#[derive(Debug, Clone)]
pub struct NamespaceFactory {
    root: Arc<dyn CredentialStore>,
    reopen_by_handle: bool,
    unreachable: Option<Arc<dyn CredentialStore>>,
}

impl NamespaceFactory {
    /// Stores on fresh namespaces of `root`.
    pub fn new(root: Arc<dyn CredentialStore>) -> Self {
        Self { root, reopen_by_handle: false, unreachable: None }
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
}
