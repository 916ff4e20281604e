//! The whole conformance suite on a fallback chain of three kinds of store:
//! an empty read-only mock store first (the primary, whose availability the
//! chain reports), a writable encrypted SQLite store second (so the chain is
//! durable and `reopen` applies), an empty read-only memory store last.
//! Every read falls through the primary, every write skips it, and listings
//! merge all three. The unreachable chain is one of mock stores reporting
//! themselves down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use credstore_conformance::mock::MockStore;
use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{Availability, CredentialStore, CredentialStoreExt, Namespace, StoreId};
use credstore_layers::FallbackStore;
use credstore_memory::MemoryStore;
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

struct FallbackFactory {
    dir: tempfile::TempDir,
    key: MasterKey,
    memory: MemoryStore,
    /// The SQLite namespace of each chain, by the chain's id, for `reopen`.
    namespaces: Mutex<HashMap<StoreId, Namespace>>,
}

fn factory() -> Option<FallbackFactory> {
    Some(FallbackFactory {
        dir: tempfile::tempdir().expect("temporary directory"),
        key: MasterKey::generate(),
        memory: MemoryStore::new(StoreId::new("fallback-memory").expect("valid id")),
        namespaces: Mutex::new(HashMap::new()),
    })
}

fn mock_member(down: bool) -> Arc<dyn CredentialStore> {
    let mock = MockStore::new(StoreId::new(unique_name("fallback-mock")).expect("valid id"));
    if down {
        mock.set_availability(Availability::down("connection refused (the mock is down)"));
    }
    Arc::new(mock)
}

impl FallbackFactory {
    async fn chain(&self, id: StoreId, ns: Namespace) -> Arc<dyn CredentialStore> {
        let config =
            SqliteConfig::new(self.dir.path().join("fallback.db")).namespace(ns).master_key(self.key.clone());
        let sqlite = SqliteStore::open(StoreId::new("fallback-sqlite").expect("valid id"), config)
            .await
            .unwrap_or_else(|e| panic!("open failed: {e}"));
        let memory = self.memory.with_namespace(&Namespace::new(unique_name("ns")).expect("ns")).expect("ns");
        let chain = FallbackStore::new(id)
            .with_read_only(mock_member(false))
            .with_writable(Arc::new(sqlite))
            .with_read_only(memory);
        Arc::new(chain)
    }
}

#[credstore_conformance::async_trait]
impl StoreFactory for FallbackFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let id = StoreId::new(unique_name("fallback")).expect("valid id");
        let ns = Namespace::new(unique_name("chain")).expect("valid namespace");
        self.namespaces.lock().expect("lock").insert(id.clone(), ns.clone());
        self.chain(id, ns).await
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        let ns = self.namespaces.lock().expect("lock").get(&id).cloned().expect("a chain this factory made");
        drop(store);
        Some(self.chain(id, ns).await)
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        let chain = FallbackStore::new(StoreId::new(unique_name("fallback-down")).expect("valid id"))
            .with_read_only(mock_member(true))
            .with_writable(mock_member(true))
            .with_read_only(mock_member(true));
        Some(Arc::new(chain))
    }
}

credstore_conformance::conformance_main!(factory());
