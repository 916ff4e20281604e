//! History, recovery after a delete, purge and expiry on a real OpenBao:
//! KV v2's versions read by number, a delete that leaves the last version
//! readable (a delete marker, soft-deleted), `max_versions` set on new keys,
//! `destroy` for one version, and `expires_at` decided by the store's clock.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::unique_name;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, ListOptions, ManualClock, Metadata,
    PurgeTarget, Retention, SecretValue, SetOptions, StoreId, VersionListOptions, VersionState,
};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::bao_cli;

fn config(bao: &OpenBao) -> VaultConfig {
    VaultConfig::new(bao.address())
        .token(SecretValue::from(bao.root_token()))
        .prefix(&format!("history/{}", unique_name("p")))
        .timeout(Duration::from_secs(10))
}

fn store(config: VaultConfig) -> VaultStore {
    VaultStore::new(StoreId::new("vault-history").unwrap(), config).unwrap()
}

fn v(s: &str) -> SecretValue {
    SecretValue::from(s)
}

fn json(bao: &OpenBao, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&bao_cli(bao, args)).unwrap()
}

async fn states(store: &VaultStore, k: &CredentialKey) -> Vec<(String, VersionState)> {
    let page = store.list_versions(k, &VersionListOptions::new()).await.unwrap();
    page.versions.into_iter().map(|v| (v.version.as_str().to_owned(), v.state)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_key_keeps_its_last_version_readable_and_comes_back_by_restore() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(config(bao));
    let k = CredentialKey::new("db-password").unwrap();
    let meta = Metadata::try_from([("owner", "db")]).unwrap();
    let first = store.set(&k, &v("one"), &meta).await.unwrap();
    let second = store.set(&k, &v("two"), &meta).await.unwrap();
    assert!(store.delete(&k).await.unwrap());

    // Gone from every read, and from `bao kv get`.
    assert!(store.get(&k).await.unwrap().is_none());
    assert!(!store.has(&k).await.unwrap());
    assert_eq!(store.version(&k).await.unwrap(), None);
    assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
    let path = store.secret_path(&k);
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "get", "-field=value", &path])).is_err());
    assert!(!store.delete(&k).await.unwrap(), "a second delete finds nothing");

    // The history stays: the last version Deleted, readable.
    assert_eq!(
        states(&store, &k).await,
        [
            (second.version.as_str().to_owned(), VersionState::Deleted),
            (first.version.as_str().to_owned(), VersionState::Previous)
        ]
    );
    let kept = store.get_version(&k, &second.version).await.unwrap().expect("the deleted version");
    assert_eq!(kept.value.expose_str().unwrap(), "two");
    assert_eq!((kept.metadata.clone(), kept.updated_at), (meta.clone(), second.updated_at));

    // Restored create-only: a new credential, a new version, a new created_at.
    let back = store.restore(&k, &second.version, &SetOptions::create_only()).await.unwrap();
    assert!(back.created);
    assert!(back.created_at > first.created_at);
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(got.value.expose_str().unwrap(), "two");
    assert_eq!(
        (got.version.clone(), got.created_at, got.metadata),
        (back.version.clone(), back.created_at, meta)
    );
    let listed = states(&store, &k).await;
    assert_eq!(listed[0], (back.version.as_str().to_owned(), VersionState::Current));
    assert_eq!(listed.len(), 3, "the delete marker is not a version: {listed:?}");
    // A second create-only restore finds the key there.
    let err = store.restore(&k, &second.version, &SetOptions::create_only()).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_destroys_one_version_or_the_key_and_refuses_the_current_one() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(config(bao));
    let k = CredentialKey::new("leaked").unwrap();
    let leaked = store.set(&k, &v("leaked-value"), &Metadata::new()).await.unwrap();
    let rotated = store.set(&k, &v("rotated"), &Metadata::new()).await.unwrap();

    let err = store.purge(&k, &PurgeTarget::Version(rotated.version.clone())).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    assert!(store.purge(&k, &PurgeTarget::Version(leaked.version.clone())).await.unwrap());
    assert!(store.get_version(&k, &leaked.version).await.unwrap().is_none());
    assert!(!store.purge(&k, &PurgeTarget::Version(leaked.version.clone())).await.unwrap(), "already gone");
    // Destroyed in KV v2 itself, not only hidden.
    let path = store.secret_path(&k);
    let meta = json(bao, &["kv", "metadata", "get", "-format=json", &path]);
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], true);
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "rotated");

    assert!(store.purge(&k, &PurgeTarget::Key).await.unwrap());
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "metadata", "get", &path])).is_err());
    assert!(store.list_versions(&k, &VersionListOptions::new()).await.unwrap().versions.is_empty());
    assert!(!store.purge(&k, &PurgeTarget::Key).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_versions_is_declared_set_on_new_keys_and_bounds_reads() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(config(bao).max_versions(3));
    assert_eq!(store.capabilities().retention, Retention::versions(3));
    let k = CredentialKey::new("rotated-often").unwrap();
    let mut written = Vec::new();
    for n in 0..5 {
        written.push(store.set(&k, &v(&format!("value-{n}")), &Metadata::new()).await.unwrap().version);
    }
    let path = store.secret_path(&k);
    assert_eq!(json(bao, &["kv", "metadata", "get", "-format=json", &path])["data"]["max_versions"], 3);
    let listed: Vec<_> = states(&store, &k).await.into_iter().map(|(v, _)| v).collect();
    let newest: Vec<_> = written.iter().rev().take(3).map(|v| v.as_str().to_owned()).collect();
    assert_eq!(listed, newest);
    assert!(store.get_version(&k, &written[1]).await.unwrap().is_none(), "past the retention");
    assert!(store.get_version(&k, &written[2]).await.unwrap().is_some());

    // The default is KV v2's own 10, left to the mount: no metadata write.
    let default = self::store(config(bao));
    assert_eq!(default.capabilities().retention, Retention::versions(10));
    default.set(&k, &v("x"), &Metadata::new()).await.unwrap();
    let meta = json(bao, &["kv", "metadata", "get", "-format=json", &default.secret_path(&k)]);
    assert_eq!(meta["data"]["max_versions"], 0, "the mount's setting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_reads_as_absent_by_the_stores_clock() {
    let Some(bao) = OpenBao::shared() else { return };
    let clock = ManualClock::starting_now();
    let store = store(config(bao).clock(Arc::new(clock.clone())));
    let k = CredentialKey::new("access-token").unwrap();
    let expires_at = clock.now_plus(Duration::from_secs(60));
    let opts = SetOptions::new().with_expires_at(Some(expires_at));
    let written = store.set_opts(&k, &v("short-lived"), &Metadata::new(), &opts).await.unwrap();
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(got.expires_at, Some(expires_at));
    let path = store.secret_path(&k);
    assert!(bao_cli(bao, &["kv", "get", "-field=expires_at", &path]).ends_with('Z'));

    // One nanosecond before: present. At the instant: absent everywhere.
    clock.set(expires_at - Duration::from_nanos(1));
    assert!(store.has(&k).await.unwrap());
    clock.set(expires_at);
    assert!(store.get(&k).await.unwrap().is_none());
    assert!(!store.has(&k).await.unwrap());
    assert_eq!(store.version(&k).await.unwrap(), None);
    assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
    assert!(!store.delete(&k).await.unwrap(), "deleting an expired key finds nothing");
    assert_eq!(states(&store, &k).await, [(written.version.as_str().to_owned(), VersionState::Expired)]);
    let err = store.replace(&k, &v("late"), &Metadata::new(), &written.version).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");

    // Create-only over it succeeds: a new credential that never expires.
    let again = store.create(&k, &v("fresh"), &Metadata::new()).await.unwrap();
    assert!(again.created && again.created_at > written.created_at);
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!((got.expires_at, got.created_at), (None, again.created_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upsert_from_a_remembered_state_sees_that_it_expired() {
    let Some(bao) = OpenBao::shared() else { return };
    let clock = ManualClock::starting_now();
    let store = store(config(bao).clock(Arc::new(clock.clone())));
    let k = CredentialKey::new("remembered").unwrap();
    let expires_at = clock.now_plus(Duration::from_secs(5));
    let opts = SetOptions::new().with_expires_at(Some(expires_at));
    let first = store.set_opts(&k, &v("a"), &Metadata::new(), &opts).await.unwrap();
    clock.advance(Duration::from_secs(5));
    // The store remembers the write, not a read: the upsert must still
    // count the expired key as missing.
    let out = store.set(&k, &v("b"), &Metadata::new()).await.unwrap();
    assert!(out.created, "over an expired key, an upsert creates");
    assert!(out.created_at > first.created_at);
    assert_eq!(store.get(&k).await.unwrap().unwrap().created_at, out.created_at);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_written_without_the_new_fields_reads_as_before_and_never_expires() {
    let Some(bao) = OpenBao::shared() else { return };
    let clock = ManualClock::starting_now();
    let store = store(config(bao).clock(Arc::new(clock.clone())));
    let k = CredentialKey::new("from-0-2").unwrap();
    let path = store.secret_path(&k);
    // As credstore 0.2 wrote it: value, metadata, created_at on later writes.
    bao_cli(bao, &["kv", "put", &path, "value=old"]);
    let created = store.get(&k).await.unwrap().unwrap().created_at;
    let meta = json(bao, &["kv", "metadata", "get", "-format=json", &path]);
    let created_text = meta["data"]["created_time"].as_str().unwrap().to_owned();
    bao_cli(bao, &["kv", "put", &path, "value=older-layout", &format!("created_at={created_text}")]);
    clock.advance(Duration::from_secs(100 * 365 * 86_400));
    let got = store.get(&k).await.unwrap().expect("no expiry in 0.2 data");
    assert_eq!(
        (got.value.expose_str().unwrap(), got.expires_at, got.created_at),
        ("older-layout", None, created)
    );
    assert!(got.version.as_str().starts_with("2-"));
    let listed = states(&store, &k).await;
    assert_eq!(
        listed.iter().map(|(_, s)| *s).collect::<Vec<_>>(),
        [VersionState::Current, VersionState::Previous]
    );
    let one = store.get_version(&k, &listed[1].0.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((one.value.expose_str().unwrap(), one.created_at), ("old", created));
}

trait NowPlus {
    fn now_plus(&self, by: Duration) -> std::time::SystemTime;
}

impl NowPlus for ManualClock {
    fn now_plus(&self, by: Duration) -> std::time::SystemTime {
        credstore_core::Clock::now(self) + by
    }
}
