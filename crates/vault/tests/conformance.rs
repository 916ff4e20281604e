//! The conformance suite against `credstore-vault`, on a real OpenBao dev
//! server (`bao server -dev`, started once for this test binary).
//!
//! Every store gets its own random path prefix in the `secret/` KV v2 mount
//! of the shared server; the store id doubles as that prefix, so `reopen`
//! rebuilds the same store from its id. Namespace handles come from the
//! store itself (`with_namespace`), under that prefix.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{CredentialStore, CredentialStoreExt, SecretValue, StoreId};
use credstore_test_servers::{free_port, openbao::OpenBao};
use credstore_vault::{VaultConfig, VaultStore};

struct VaultFactory {
    bao: &'static OpenBao,
}

fn factory() -> Option<VaultFactory> {
    OpenBao::shared().map(|bao| VaultFactory { bao })
}

impl VaultFactory {
    fn store(&self, id: StoreId) -> Arc<dyn CredentialStore> {
        let config = VaultConfig::new(self.bao.address())
            .token(SecretValue::from(self.bao.root_token()))
            .prefix(&format!("conformance/{id}"))
            .timeout(Duration::from_secs(10));
        Arc::new(VaultStore::new(id, config).expect("vault store"))
    }
}

#[credstore_core::async_trait]
impl StoreFactory for VaultFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        self.store(StoreId::new(unique_name("vault")).unwrap())
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let (id, namespace) = (store.id().clone(), store.namespace().clone());
        drop(store);
        Some(self.store(id).with_namespace(&namespace).expect("the same namespace"))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        // A port that was just free: nothing listens there.
        let config = VaultConfig::new(format!("http://127.0.0.1:{}", free_port()))
            .token(SecretValue::from(self.bao.root_token()))
            .timeout(Duration::from_secs(2));
        let id = StoreId::new(unique_name("vault-down")).unwrap();
        Some(Arc::new(VaultStore::new(id, config).expect("vault store")))
    }
}

conformance_main!(factory());
