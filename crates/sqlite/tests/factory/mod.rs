//! The factory of the conformance runs against the encrypted SQLite
//! backend, shared by the runs of each retention.
//!
//! The factory keeps one database file in a temporary directory. Every
//! store it creates opens that same file (its own connection, its own
//! writer) in a namespace of its own, so isolation is checked between
//! namespaces of one file and between writers of one file. `reopen` opens
//! the file and namespace again with the same key (and clock). The
//! unreachable store is opened in a directory that is then deleted: its
//! probe and every operation notice at once that the database file is
//! gone. Stores on a clock (`create_on_clock`) open the same file in a
//! namespace of their own, on that clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::Retention;
use credstore_core::{Clock, CredentialStore, CredentialStoreExt, Namespace, StoreId};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

/// Where a store of the factory is: its namespace, and its clock if any.
type Placed = (Namespace, Option<Arc<dyn Clock>>);

/// Stores on one database file, each in a namespace of its own.
pub struct SqliteFactory {
    dir: tempfile::TempDir,
    key: MasterKey,
    retention: Retention,
    /// Each store's namespace, and its clock for a store on one.
    namespaces: Mutex<HashMap<StoreId, Placed>>,
}

impl SqliteFactory {
    /// A factory whose stores keep `retention`.
    pub fn new(retention: Retention) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            key: MasterKey::generate(),
            retention,
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("conformance.db")
    }

    async fn open(
        &self,
        id: StoreId,
        ns: Namespace,
        clock: Option<Arc<dyn Clock>>,
    ) -> Arc<dyn CredentialStore> {
        let config = SqliteConfig::new(self.path()).namespace(ns).retention(self.retention);
        let config = match clock {
            Some(clock) => config.clock(clock),
            None => config,
        };
        self.open_with(id, config).await
    }

    async fn open_with(&self, id: StoreId, config: SqliteConfig) -> Arc<dyn CredentialStore> {
        let config = config.master_key(self.key.clone());
        let store = SqliteStore::open(id, config).await.unwrap_or_else(|e| panic!("open failed: {e}"));
        Arc::new(store)
    }
}

#[credstore_conformance::async_trait]
impl StoreFactory for SqliteFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let id = StoreId::new(unique_name("sqlite")).expect("valid id");
        let ns = Namespace::new(format!("conformance/{}", unique_name("ns"))).expect("valid namespace");
        self.namespaces.lock().unwrap().insert(id.clone(), (ns.clone(), None));
        self.open(id, ns, None).await
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        let (ns, clock) =
            self.namespaces.lock().unwrap().get(&id).cloned().expect("a store this factory created");
        drop(store);
        Some(self.open(id, ns, clock).await)
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        let doomed = self.dir.path().join(unique_name("doomed"));
        let config = SqliteConfig::new(doomed.join("gone.db")).master_key(self.key.clone());
        let id = StoreId::new(unique_name("sqlite-unreachable")).expect("valid id");
        let store = SqliteStore::open(id, config).await.unwrap_or_else(|e| panic!("open failed: {e}"));
        // The store's connections may still be creating the `-wal` and
        // `-shm` files beside the database while the directory goes: a file
        // made after the listing fails the last `rmdir` with "not empty".
        // Remove again (bounded) until the directory is gone; then no file
        // can be made there.
        let mut attempts = 0;
        while let Err(e) = std::fs::remove_dir_all(&doomed) {
            attempts += 1;
            assert!(
                e.kind() == std::io::ErrorKind::DirectoryNotEmpty && attempts < 100,
                "remove the store's directory (attempt {attempts}): {e}"
            );
        }
        Some(Arc::new(store))
    }

    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        let id = StoreId::new(unique_name("sqlite-clock")).expect("valid id");
        let ns = Namespace::new(format!("conformance/{}", unique_name("clock"))).expect("valid namespace");
        self.namespaces.lock().unwrap().insert(id.clone(), (ns.clone(), Some(clock.clone())));
        Some(self.open(id, ns, Some(clock)).await)
    }
}
