//! The conformance suite's [`StoreFactory`] for `credstore-postgres`, shared
//! by the suite's three runs (`conformance.rs`, `conformance_retention.rs`,
//! `conformance_no_history.rs`).
//!
//! Every store gets a schema of its own on the shared server; the store id
//! names the schema, so `reopen` opens a second store on the same schema
//! (nothing shared with the first). `unreachable` is a store opened on a
//! server of its own that is then stopped: its port is closed.
//! `create_on_clock` opens a fresh schema on the given clock.

use std::sync::Arc;

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{Clock, CredentialStore, Retention, StoreId};
use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore};
use credstore_test_servers::postgres::Postgres;

/// Opens every store on the shared server with one key-encryption key and
/// one retention.
pub struct Factory {
    pg: &'static Postgres,
    kek: MasterKey,
    retention: Retention,
}

impl Factory {
    /// The factory of stores with `retention`, `None` (after a loud notice)
    /// without PostgreSQL.
    pub fn new(retention: Retention) -> Option<Self> {
        Postgres::shared().map(|pg| Factory { pg, kek: MasterKey::generate(), retention })
    }

    fn config(&self, schema: &str) -> PostgresConfig {
        PostgresConfig::new(self.pg.host())
            .port(self.pg.port())
            .user(self.pg.user())
            .password(self.pg.password().into())
            .database("postgres")
            .schema(schema)
            .retention(self.retention)
            .master_key(self.kek.clone())
    }

    async fn open(&self, schema: &str) -> Arc<dyn CredentialStore> {
        self.open_with(schema, self.config(schema)).await
    }

    async fn open_with(&self, schema: &str, config: PostgresConfig) -> Arc<dyn CredentialStore> {
        let id = StoreId::new(schema.replace('_', "-")).unwrap();
        Arc::new(PostgresStore::open(id, config).await.expect("open the store"))
    }
}

#[credstore_conformance::async_trait]
impl StoreFactory for Factory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        self.open(&Postgres::fresh_schema("conformance")).await
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let schema = store.info().id().as_str().replace('-', "_");
        drop(store);
        Some(self.open(&schema).await)
    }

    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        let schema = Postgres::fresh_schema("conformance");
        Some(self.open_with(&schema, self.config(&schema).clock(clock)).await)
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        // Opening needs the server (the key record lives there): open on a
        // server of its own, then stop and remove that server, leaving the
        // store with a closed port.
        let own = tokio::task::spawn_blocking(Postgres::start).await.unwrap()?;
        let config = PostgresConfig::new(own.host())
            .port(own.port())
            .user(own.user())
            .password(own.password().into())
            .database("postgres")
            .master_key(self.kek.clone())
            .connect_timeout(std::time::Duration::from_secs(1))
            .acquire_timeout(std::time::Duration::from_secs(1));
        let store =
            PostgresStore::open(StoreId::new(unique_name("unreachable")).unwrap(), config).await.unwrap();
        tokio::task::spawn_blocking(move || drop(own)).await.unwrap();
        Some(Arc::new(store))
    }
}
