//! The whole conformance suite on a cache over `credstore-vault`, on a real
//! OpenBao dev server (`bao server -dev`, started once for this binary).
//!
//! Every store is a fresh cache over a Vault store with its own random path
//! prefix in the `secret/` KV v2 mount; the store id doubles as the prefix,
//! so `reopen` builds a new cache over the same secrets from the id alone.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{CredentialStore, CredentialStoreExt, SecretValue, StoreExt, StoreId};
use credstore_layers::CacheLayer;
use credstore_test_servers::{free_port, openbao::OpenBao};
use credstore_vault::{VaultConfig, VaultStore};

struct CachedVaultFactory {
    bao: &'static OpenBao,
}

fn factory() -> Option<CachedVaultFactory> {
    OpenBao::shared().map(|bao| CachedVaultFactory { bao })
}

fn cached(store: VaultStore) -> Arc<dyn CredentialStore> {
    (Arc::new(store) as Arc<dyn CredentialStore>).with_layer(CacheLayer::new())
}

impl CachedVaultFactory {
    fn store(&self, id: StoreId) -> Arc<dyn CredentialStore> {
        let config = VaultConfig::new(self.bao.address())
            .token(SecretValue::from(self.bao.root_token()))
            .prefix(&format!("cached-conformance/{id}"))
            .timeout(Duration::from_secs(10));
        cached(VaultStore::new(id, config).expect("vault store"))
    }
}

#[credstore_core::async_trait]
impl StoreFactory for CachedVaultFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        self.store(StoreId::new(unique_name("cached-vault")).expect("id"))
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        drop(store);
        Some(self.store(id))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        // A port that was just free: nothing listens there.
        let config = VaultConfig::new(format!("http://127.0.0.1:{}", free_port()))
            .token(SecretValue::from(self.bao.root_token()))
            .timeout(Duration::from_secs(2));
        let id = StoreId::new(unique_name("cached-vault-down")).expect("id");
        Some(cached(VaultStore::new(id, config).expect("vault store")))
    }
}

conformance_main!(factory());
