//! What every module uses: the shared server, configs on it, raw SQL.

use credstore_core::StoreId;
use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore};
use credstore_test_servers::postgres::Postgres;

/// The shared server, `None` (after a loud notice) when PostgreSQL is missing.
pub fn pg() -> Option<&'static Postgres> {
    Postgres::shared()
}

/// A config of `schema` on `pg` as its superuser, keyed by `kek`.
pub fn config(pg: &Postgres, schema: &str, kek: &MasterKey) -> PostgresConfig {
    PostgresConfig::new(pg.host())
        .port(pg.port())
        .user(pg.user())
        .password(pg.password().into())
        .database("postgres")
        .schema(schema)
        .master_key(kek.clone())
}

/// A store id for `schema`.
pub fn id(schema: &str) -> StoreId {
    StoreId::new(schema.replace('_', "-")).unwrap()
}

/// Opens `schema` on `pg` with `kek`.
pub async fn open(pg: &Postgres, schema: &str, kek: &MasterKey) -> PostgresStore {
    PostgresStore::open(id(schema), config(pg, schema, kek)).await.expect("open the store")
}

/// Runs `sql` as the superuser on the `postgres` database.
pub fn psql(pg: &Postgres, sql: &str) -> String {
    pg.psql("postgres", sql).unwrap_or_else(|e| panic!("{e}"))
}
