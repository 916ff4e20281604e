//! History, purge and expiry on moto: the two versions the staging labels
//! keep (`AWSCURRENT`, `AWSPREVIOUS`), read by version id with the metadata
//! the description kept; `AWSPREVIOUS` taken off a purged version; and
//! `expires_at` in the description, decided by the store's clock.

use std::sync::Arc;
use std::time::Duration;

use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy};
use credstore_conformance::unique_name;
use credstore_core::{
    Clock, CredentialKey, CredentialStore, CredentialStoreExt, Error, ListOptions, ManualClock, Metadata,
    PurgeTarget, Retention, SecretValue, SetOptions, StoreId, VersionListOptions, VersionState,
};
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

fn config(moto: &Moto) -> AwsConfig {
    AwsConfig::new()
        .region(REGION)
        .endpoint_url(&moto.endpoint())
        .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
        .prefix(&format!("history/{}", unique_name("h")))
}

async fn moto() -> Option<&'static Moto> {
    tokio::task::spawn_blocking(Moto::shared).await.expect("moto")
}

fn store(config: AwsConfig) -> AwsStore {
    AwsStore::new(StoreId::new("aws-history").unwrap(), config).unwrap()
}

fn v(s: &str) -> SecretValue {
    SecretValue::from(s)
}

async fn listed(store: &AwsStore, k: &CredentialKey) -> Vec<(String, VersionState)> {
    let page = store.list_versions(k, &VersionListOptions::new()).await.unwrap();
    page.versions.into_iter().map(|v| (v.version.as_str().to_owned(), v.state)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_version_reads_back_with_its_metadata_and_a_rotation_is_undone() {
    let Some(moto) = moto().await else { return };
    let store = store(config(moto));
    assert_eq!(store.capabilities().retention, Retention::versions(2));
    assert!(!store.capabilities().recover_deleted);
    let k = CredentialKey::new("api-key").unwrap();
    let good_meta = Metadata::try_from([("scope", "read write")]).unwrap();
    let good = store.set(&k, &v("good"), &good_meta).await.unwrap();
    let bad = store.set(&k, &v("bad"), &Metadata::try_from([("scope", "read")]).unwrap()).await.unwrap();
    assert_eq!(
        listed(&store, &k).await,
        [
            (bad.version.as_str().to_owned(), VersionState::Current),
            (good.version.as_str().to_owned(), VersionState::Previous)
        ]
    );
    let old = store.get_version(&k, &good.version).await.unwrap().expect("AWSPREVIOUS");
    assert_eq!(old.value.expose_str().unwrap(), "good");
    assert_eq!(
        (old.metadata.clone(), old.updated_at, old.created_at),
        (good_meta.clone(), good.updated_at, good.created_at)
    );

    // Undo: the good value back, conditional on the bad version.
    let undone = store.restore(&k, &good.version, &SetOptions::replace(bad.version.clone())).await.unwrap();
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.value.expose_str().unwrap(), got.metadata, got.version),
        ("good", good_meta, undone.version.clone())
    );
    // Two versions are kept: the first one is gone from this store's reads.
    let now = listed(&store, &k).await;
    assert_eq!(
        now.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>(),
        [undone.version.as_str(), bad.version.as_str()]
    );
    assert!(store.get_version(&k, &good.version).await.unwrap().is_none());

    // A store that never saw the key keeps the history when it writes.
    let other =
        AwsStore::new(StoreId::new("aws-history-2").unwrap(), config(moto).prefix(store.prefix())).unwrap();
    let next = other.set(&k, &v("next"), &Metadata::new()).await.unwrap();
    assert_eq!(
        listed(&other, &k).await,
        [
            (next.version.as_str().to_owned(), VersionState::Current),
            (undone.version.as_str().to_owned(), VersionState::Previous)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_previous_version_whose_metadata_does_not_fit_the_description_is_not_kept() {
    let Some(moto) = moto().await else { return };
    let store = store(config(moto));
    let k = CredentialKey::new("big-metadata").unwrap();
    let mut big = Metadata::new();
    for i in 0..8 {
        big.insert(format!("k{i}"), "\"".repeat(100)).unwrap();
    }
    store.set(&k, &v("one"), &big).await.unwrap();
    let second = store.set(&k, &v("two"), &big).await.unwrap();
    // Two versions' metadata do not fit 2,048 characters: only the current
    // one is listed, never the previous with metadata it did not have.
    assert_eq!(listed(&store, &k).await, [(second.version.as_str().to_owned(), VersionState::Current)]);
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!((got.value.expose_str().unwrap(), got.metadata), ("two", big));
    // A small write after it keeps the big one as its previous version.
    let third = store.set(&k, &v("three"), &Metadata::new()).await.unwrap();
    assert_eq!(
        listed(&store, &k).await,
        [
            (third.version.as_str().to_owned(), VersionState::Current),
            (second.version.as_str().to_owned(), VersionState::Previous)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_the_previous_version_takes_its_label_and_the_current_one_is_refused() {
    let Some(moto) = moto().await else { return };
    let store = store(config(moto));
    let k = CredentialKey::new("leaked").unwrap();
    let leaked = store.set(&k, &v("leaked"), &Metadata::new()).await.unwrap();
    let rotated = store.set(&k, &v("rotated"), &Metadata::new()).await.unwrap();
    let err = store.purge(&k, &PurgeTarget::Version(rotated.version.clone())).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    assert!(store.purge(&k, &PurgeTarget::Version(leaked.version.clone())).await.unwrap());
    assert!(store.get_version(&k, &leaked.version).await.unwrap().is_none());
    assert_eq!(listed(&store, &k).await, [(rotated.version.as_str().to_owned(), VersionState::Current)]);
    assert!(!store.purge(&k, &PurgeTarget::Version(leaked.version.clone())).await.unwrap());
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "rotated");

    // After a replace (a staged write) and an upsert, the previous version
    // is kept and purged the same way.
    let third = store.replace(&k, &v("third"), &Metadata::new(), &rotated.version).await.unwrap();
    let fourth = store.set(&k, &v("fourth"), &Metadata::new()).await.unwrap();
    assert_eq!(
        listed(&store, &k).await,
        [
            (fourth.version.as_str().to_owned(), VersionState::Current),
            (third.version.as_str().to_owned(), VersionState::Previous)
        ]
    );
    assert!(store.purge(&k, &PurgeTarget::Version(third.version.clone())).await.unwrap());
    assert_eq!(listed(&store, &k).await, [(fourth.version.as_str().to_owned(), VersionState::Current)]);
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "fourth");

    // Purging the key deletes the secret at once, whatever the deletion policy.
    let windowed = AwsStore::new(
        StoreId::new("aws-history-window").unwrap(),
        config(moto).prefix(store.prefix()).deletion(DeletionPolicy::RecoveryWindow(7)),
    )
    .unwrap();
    assert!(windowed.purge(&k, &PurgeTarget::Key).await.unwrap());
    assert!(!windowed.purge(&k, &PurgeTarget::Key).await.unwrap(), "nothing left");
    let again = store.create(&k, &v("new"), &Metadata::new()).await.unwrap();
    assert!(again.created);
    assert_eq!(listed(&store, &k).await, [(again.version.as_str().to_owned(), VersionState::Current)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_reads_as_absent_by_the_stores_clock() {
    let Some(moto) = moto().await else { return };
    let clock = ManualClock::starting_now();
    let store = store(config(moto).clock(Arc::new(clock.clone())));
    let k = CredentialKey::new("token").unwrap();
    let expires_at = clock.now() + Duration::from_secs(60);
    let opts = SetOptions::new().with_expires_at(Some(expires_at));
    let written = store.set_opts(&k, &v("short-lived"), &Metadata::new(), &opts).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().expires_at, Some(expires_at));

    clock.set(expires_at - Duration::from_nanos(1));
    assert!(store.has(&k).await.unwrap());
    clock.set(expires_at);
    assert!(store.get(&k).await.unwrap().is_none(), "absent at the instant it expires");
    assert!(!store.has(&k).await.unwrap());
    assert_eq!(store.version(&k).await.unwrap(), None);
    assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
    assert_eq!(listed(&store, &k).await, [(written.version.as_str().to_owned(), VersionState::Expired)]);
    let err = store.replace(&k, &v("late"), &Metadata::new(), &written.version).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
    // Still on AWSCURRENT, which cannot be taken off alone: purge the key.
    let err = store.purge(&k, &PurgeTarget::Version(written.version.clone())).await.unwrap_err();
    assert!(
        matches!(&err, Error::PreconditionFailed { reason, .. } if reason.contains("purge the key")),
        "{err:?}"
    );

    // Create-only over it: a new credential, which never expires.
    let again = store.create(&k, &v("fresh"), &Metadata::new()).await.unwrap();
    assert!(again.created && again.created_at > written.created_at);
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (got.value.expose_str().unwrap(), got.expires_at, got.created_at),
        ("fresh", None, again.created_at)
    );
    // An upsert over an expired key creates too.
    let soon = clock.now() + Duration::from_secs(1);
    store
        .set_opts(&k, &v("x"), &Metadata::new(), &SetOptions::new().with_expires_at(Some(soon)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    let over = store.set(&k, &v("y"), &Metadata::new()).await.unwrap();
    assert!(over.created, "over an expired key, an upsert creates");
    assert_eq!(store.get(&k).await.unwrap().unwrap().created_at, over.created_at);
    // Deleting an expired key finds nothing.
    let soon = clock.now() + Duration::from_secs(1);
    store
        .set_opts(&k, &v("z"), &Metadata::new(), &SetOptions::new().with_expires_at(Some(soon)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(!store.delete(&k).await.unwrap());
}
