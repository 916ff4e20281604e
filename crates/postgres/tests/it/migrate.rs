//! Migrations: replicas opening a new schema at once apply them exactly
//! once; a schema of a newer version is refused.

use std::sync::Arc;

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue};
use credstore_postgres::{MasterKey, PostgresStore};
use credstore_test_servers::postgres::Postgres;

use crate::util::{config, id, open, pg, psql};

#[tokio::test(flavor = "multi_thread")]
async fn replicas_opening_a_new_schema_at_once_migrate_it_once_and_share_one_data_key() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("migrate_race");
    let kek = MasterKey::generate();
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let config = config(pg, &schema, &kek);
            let id = id(&schema);
            tokio::spawn(async move { PostgresStore::open(id, config).await })
        })
        .collect();
    let mut stores: Vec<Arc<dyn CredentialStore>> = Vec::new();
    for o in opens {
        stores.push(Arc::new(o.await.unwrap().expect("every replica opens")));
    }
    assert_eq!(psql(pg, &format!("SELECT count(*) FROM \"{schema}\".meta WHERE name = 'key_record'")), "1");
    assert_eq!(
        psql(
            pg,
            &format!("SELECT encode(value, 'escape') FROM \"{schema}\".meta WHERE name = 'schema_version'")
        ),
        "2"
    );
    for (i, s) in stores.iter().enumerate() {
        s.set(
            &CredentialKey::new(format!("from-{i}")).unwrap(),
            &SecretValue::from(format!("v{i}")),
            &Metadata::new(),
        )
        .await
        .unwrap();
    }
    for s in &stores {
        for i in 0..stores.len() {
            let got =
                s.get(&CredentialKey::new(format!("from-{i}")).unwrap()).await.unwrap().expect("seen by all");
            assert_eq!(got.value.expose_str().unwrap(), format!("v{i}"));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schema_of_a_newer_version_is_refused_untouched() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("migrate_newer");
    let kek = MasterKey::generate();
    drop(open(pg, &schema, &kek).await);
    psql(pg, &format!("UPDATE \"{schema}\".meta SET value = '3'::bytea WHERE name = 'schema_version'"));
    let err = PostgresStore::open(id(&schema), config(pg, &schema, &kek)).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }) && err.to_string().contains("newer"), "{err}");
    assert_eq!(
        psql(
            pg,
            &format!("SELECT encode(value, 'escape') FROM \"{schema}\".meta WHERE name = 'schema_version'")
        ),
        "3"
    );
}
