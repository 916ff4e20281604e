//! The shared conformance suite against the encrypted SQLite backend.
//!
//! The factory keeps one database file in a temporary directory. Every
//! store it creates opens that same file (its own connection, its own
//! writer) in a namespace of its own, so isolation is checked between
//! namespaces of one file and between writers of one file. `reopen` opens
//! the file and namespace again with the same key. The unreachable store is
//! opened in a directory that is then deleted: its probe and every
//! operation notice at once that the database file is gone.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{CredentialStore, CredentialStoreExt, Namespace, StoreId};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

struct SqliteFactory {
    dir: tempfile::TempDir,
    key: MasterKey,
    namespaces: Mutex<HashMap<StoreId, Namespace>>,
}

impl SqliteFactory {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("temporary directory"),
            key: MasterKey::generate(),
            namespaces: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("conformance.db")
    }

    async fn open(&self, id: StoreId, ns: Namespace) -> Arc<dyn CredentialStore> {
        let config = SqliteConfig::new(self.path()).namespace(ns).master_key(self.key.clone());
        let store = SqliteStore::open(id, config).await.unwrap_or_else(|e| panic!("open failed: {e}"));
        Arc::new(store)
    }
}

fn factory() -> Option<SqliteFactory> {
    Some(SqliteFactory::new())
}

#[credstore_conformance::async_trait]
impl StoreFactory for SqliteFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let id = StoreId::new(unique_name("sqlite")).expect("valid id");
        let ns = Namespace::new(format!("conformance/{}", unique_name("ns"))).expect("valid namespace");
        self.namespaces.lock().unwrap().insert(id.clone(), ns.clone());
        self.open(id, ns).await
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        let ns = self.namespaces.lock().unwrap().get(&id).cloned().expect("a store this factory created");
        drop(store);
        Some(self.open(id, ns).await)
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
}

credstore_conformance::conformance_main!(factory());
