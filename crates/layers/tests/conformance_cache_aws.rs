//! The whole conformance suite on a cache over `credstore-aws`, on a real
//! Secrets Manager API: moto's server on loopback.
//!
//! Every store is a fresh cache over an AWS store with its own random name
//! prefix on one shared server; the store id doubles as the prefix, so
//! `reopen` builds a new cache over the same secrets from the id alone.

use std::sync::Arc;
use std::time::Duration;

use credstore_aws::{AwsConfig, AwsStore};
use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{CredentialStore, CredentialStoreExt, SecretValue, StoreExt, StoreId};
use credstore_layers::CacheLayer;
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

struct CachedAwsFactory {
    endpoint: String,
}

fn factory() -> Option<CachedAwsFactory> {
    Moto::shared().map(|moto| CachedAwsFactory { endpoint: moto.endpoint() })
}

fn config(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .region(REGION)
        .endpoint_url(endpoint)
        .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
        .timeout(Duration::from_secs(20))
}

fn cached(store: AwsStore) -> Arc<dyn CredentialStore> {
    (Arc::new(store) as Arc<dyn CredentialStore>).with_layer(CacheLayer::new())
}

fn store_at(endpoint: &str, id: &StoreId) -> Arc<dyn CredentialStore> {
    let config = config(endpoint).prefix(&format!("cached-conformance/{id}"));
    cached(AwsStore::new(id.clone(), config).expect("store"))
}

#[credstore_core::async_trait]
impl StoreFactory for CachedAwsFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        store_at(&self.endpoint, &StoreId::new(unique_name("cached-aws")).expect("id"))
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        drop(store);
        Some(store_at(&self.endpoint, &id))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        let closed = format!("http://127.0.0.1:{}", credstore_test_servers::free_port());
        let id = StoreId::new(unique_name("cached-aws-down")).expect("id");
        let config = config(&closed).timeout(Duration::from_secs(2)).max_attempts(2).prefix(id.as_str());
        Some(cached(AwsStore::new(id, config).expect("store")))
    }
}

conformance_main!(factory());
