//! The conformance suite against `credstore-memory` configured with a
//! small retention and an age limit (3 versions, one day), so that the
//! retention cases write past both: versions past the count and versions
//! superseded a day ago, by the store's clock, are gone.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::NamespaceFactory;
use credstore_core::{CredentialStore, Retention, StoreId};
use credstore_memory::{MemoryConfig, MemoryStore};

const RETENTION: Retention = Retention::versions(3).with_max_age(Some(Duration::from_secs(86_400)));

fn config() -> MemoryConfig {
    MemoryConfig::new().retention(RETENTION)
}

fn id() -> StoreId {
    StoreId::new("memory-retention").expect("valid id")
}

credstore_conformance::conformance_main!(Some(
    NamespaceFactory::new(Arc::new(MemoryStore::with_config(id(), config()))).on_clock(|clock| {
        Arc::new(MemoryStore::with_config(id(), config().clock(clock))) as Arc<dyn CredentialStore>
    })
));
