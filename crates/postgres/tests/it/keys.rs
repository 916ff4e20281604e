//! The key-encryption key: a wrong one is refused and changes nothing, rows
//! are bound to their place and store, and a rewrap moves the store to a new
//! key without touching a row.

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue};
use credstore_postgres::{MasterKey, PostgresStore};
use credstore_test_servers::postgres::Postgres;

use crate::util::{config, id, open, pg, psql};

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap()
}

fn key_record(pg: &Postgres, schema: &str) -> String {
    psql(pg, &format!("SELECT encode(value, 'hex') FROM \"{schema}\".meta WHERE name = 'key_record'"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_encryption_key_is_refused_and_changes_nothing() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("keys_wrong");
    let kek = MasterKey::generate();
    let store = open(pg, &schema, &kek).await;
    store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let record = key_record(pg, &schema);
    let rows = psql(pg, &format!("SELECT encode(sealed, 'hex') FROM \"{schema}\".credentials"));
    let err =
        PostgresStore::open(id(&schema), config(pg, &schema, &MasterKey::generate())).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains(&format!("credential store '{}'", id(&schema))), "{err}");
    assert!(err.to_string().contains("wrong key-encryption key"), "{err}");
    assert_eq!(key_record(pg, &schema), record, "the key record is unchanged");
    assert_eq!(psql(pg, &format!("SELECT encode(sealed, 'hex') FROM \"{schema}\".credentials")), rows);
    let again = open(pg, &schema, &kek).await;
    assert_eq!(again.get(&key("k")).await.unwrap().unwrap().value.expose_str().unwrap(), "v");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_copied_to_another_store_or_moved_to_another_key_fails_integrity_naming_the_key() {
    let Some(pg) = pg() else { return };
    let kek = MasterKey::generate();
    let (from, to) = (Postgres::fresh_schema("keys_from"), Postgres::fresh_schema("keys_to"));
    let source = open(pg, &from, &kek).await;
    let target = open(pg, &to, &kek).await;
    source.set(&key("copied"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    psql(pg, &format!("INSERT INTO \"{to}\".credentials SELECT * FROM \"{from}\".credentials"));
    let err = target.get(&key("copied")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(err.to_string().contains("copied"), "{err}");
    // Moved to another key, or to another namespace, in its own store.
    psql(pg, &format!("UPDATE \"{from}\".credentials SET key = 'moved' WHERE key = 'copied'"));
    let err = source.get(&key("moved")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }) && err.to_string().contains("moved"), "{err}");
    psql(pg, &format!("UPDATE \"{from}\".credentials SET ns = 'tenant', key = 'copied' WHERE key = 'moved'"));
    let tenant = source.with_namespace(&credstore_core::Namespace::new("tenant").unwrap()).unwrap();
    assert!(matches!(tenant.get(&key("copied")).await.unwrap_err(), Error::Integrity { .. }));
    // An edited version is caught too.
    psql(pg, &format!("UPDATE \"{from}\".credentials SET version = version + 1000"));
    assert!(matches!(tenant.get(&key("copied")).await.unwrap_err(), Error::Integrity { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrap_moves_the_store_to_a_new_key_and_the_old_one_is_refused() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("keys_rewrap");
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let store = open(pg, &schema, &old).await;
    let replica = open(pg, &schema, &old).await;
    store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let rows = psql(pg, &format!("SELECT encode(sealed, 'hex') FROM \"{schema}\".credentials"));
    store.rewrap_key(new.clone()).await.unwrap();
    assert_eq!(
        psql(pg, &format!("SELECT encode(sealed, 'hex') FROM \"{schema}\".credentials")),
        rows,
        "no row touched"
    );
    // A replica opened before keeps working: the data key is the same.
    replica.set(&key("k2"), &SecretValue::from("v2"), &Metadata::new()).await.unwrap();
    let reopened = open(pg, &schema, &new).await;
    assert_eq!(reopened.get(&key("k2")).await.unwrap().unwrap().value.expose_str().unwrap(), "v2");
    let err = PostgresStore::open(id(&schema), config(pg, &schema, &old)).await.unwrap_err();
    assert!(err.to_string().contains("wrong key-encryption key"), "{err}");
    // A second rewrap from the replica, which still holds the old record, loses.
    let err = replica.rewrap_key(MasterKey::generate()).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err}");
    assert!(open(pg, &schema, &new).await.get(&key("k")).await.unwrap().is_some());
}

/// A key-encryption key that counts its calls.
#[derive(Debug)]
struct Counting {
    inner: MasterKey,
    wraps: std::sync::atomic::AtomicUsize,
    unwraps: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl credstore_postgres::KeyProvider for Counting {
    fn info(&self) -> &credstore_seal::ProviderInfo {
        self.inner.info()
    }

    async fn wrap(
        &self,
        key: &credstore_seal::DataKey,
        context: &credstore_seal::WrapContext<'_>,
    ) -> credstore_core::Result<credstore_seal::WrappedKey> {
        self.wraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.wrap(key, context).await
    }

    async fn unwrap(
        &self,
        wrapped: &credstore_seal::WrappedKey,
        context: &credstore_seal::WrapContext<'_>,
    ) -> credstore_core::Result<credstore_seal::DataKey> {
        self.unwraps.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.unwrap(wrapped, context).await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_encryption_key_is_called_once_per_opening_and_never_per_read_or_write() {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("keys_calls");
    let kek = std::sync::Arc::new(Counting {
        inner: MasterKey::generate(),
        wraps: Default::default(),
        unwraps: Default::default(),
    });
    let config = || config(pg, &schema, &MasterKey::generate()).key_provider(kek.clone());
    let first = PostgresStore::open(id(&schema), config()).await.unwrap();
    assert_eq!((kek.wraps.load(SeqCst), kek.unwraps.load(SeqCst)), (1, 0), "a new schema: one wrap");
    let second = PostgresStore::open(id(&schema), config()).await.unwrap();
    assert_eq!((kek.wraps.load(SeqCst), kek.unwraps.load(SeqCst)), (1, 1), "an existing schema: one unwrap");
    for i in 0..10 {
        let k = key(&format!("k{i}"));
        first.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        assert!(second.get(&k).await.unwrap().is_some());
    }
    assert_eq!(
        (kek.wraps.load(SeqCst), kek.unwraps.load(SeqCst)),
        (1, 1),
        "reads and writes call no provider"
    );
}
