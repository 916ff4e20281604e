//! The conformance suite against `credstore-aws`, on a real Secrets Manager
//! API: moto's server on loopback (`credstore_test_servers::moto`).
//!
//! Every created store has its own random name prefix on one shared server,
//! so the isolation cases check prefixes and namespaces on one account. The
//! unreachable store points at a closed loopback port with a short timeout
//! and few attempts.

use std::sync::Arc;
use std::time::Duration;

use credstore_aws::{AwsConfig, AwsStore};
use credstore_conformance::{conformance_main, unique_name, StoreFactory};
use credstore_core::{CredentialStore, CredentialStoreExt, SecretValue, StoreId};
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

struct AwsFactory {
    endpoint: String,
}

fn factory() -> Option<AwsFactory> {
    Moto::shared().map(|moto| AwsFactory { endpoint: moto.endpoint() })
}

fn config(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .region(REGION)
        .endpoint_url(endpoint)
        .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
        .timeout(Duration::from_secs(20))
}

/// The store id doubles as its name prefix, so `reopen` finds the same
/// secrets from the id alone.
fn store_at(endpoint: &str, id: &StoreId) -> AwsStore {
    AwsStore::new(id.clone(), config(endpoint).prefix(&format!("conformance/{id}"))).expect("store")
}

#[credstore_core::async_trait]
impl StoreFactory for AwsFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        let id = StoreId::new(unique_name("aws")).expect("id");
        Arc::new(store_at(&self.endpoint, &id))
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        drop(store);
        Some(Arc::new(store_at(&self.endpoint, &id)))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        let closed = format!("http://127.0.0.1:{}", credstore_test_servers::free_port());
        let id = StoreId::new(unique_name("aws-unreachable")).expect("id");
        let config = config(&closed).timeout(Duration::from_secs(2)).max_attempts(2).prefix(id.as_str());
        Some(Arc::new(AwsStore::new(id, config).expect("store")))
    }
}

conformance_main!(factory());
