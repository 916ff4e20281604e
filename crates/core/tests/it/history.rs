//! The history and expiry contract's checks that need no store: what
//! `WriteRequest` refuses before any I/O, and what the provided methods
//! answer for a store that declares no history.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credstore_conformance::mock::MockStore;
use credstore_core::*;

fn info_on(clock: &ManualClock, caps: Capabilities) -> StoreInfo {
    StoreInfo::new(StoreId::new("s").unwrap(), StoreKind::from_static("memory"), caps)
        .with_clock(Arc::new(clock.clone()))
}

#[test]
fn an_expiry_at_or_before_the_store_clock_is_refused_and_one_instant_later_accepted() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let info = info_on(&clock, Capabilities::full().with_expiry(true));
    let (key, value, meta) = (CredentialKey::new("k").unwrap(), SecretValue::from("v"), Metadata::new());
    let now = clock.now();
    for past in [now, now - Duration::from_nanos(1), SystemTime::UNIX_EPOCH] {
        let opts = SetOptions::new().with_expires_at(Some(past));
        match WriteRequest::new(&info, &key, &value, &meta, &opts) {
            Err(Error::InvalidInput { field, reason }) => {
                assert_eq!(field, "expires_at");
                assert!(reason.contains("'k'") && reason.contains("'s'"), "{reason}");
            }
            other => panic!("expected InvalidInput on expires_at, got {other:?}"),
        }
    }
    let opts = SetOptions::new().with_expires_at(Some(now + Duration::from_nanos(1)));
    let request =
        WriteRequest::new(&info, &key, &value, &meta, &opts).expect("one instant ahead is accepted");
    assert_eq!(request.expires_at(), Some(now + Duration::from_nanos(1)));
    // The same time is refused once the store's clock reaches it.
    clock.advance(Duration::from_nanos(1));
    assert!(WriteRequest::new(&info, &key, &value, &meta, &opts).is_err());
}

#[test]
fn an_expiry_on_a_store_without_expiry_is_unsupported_and_none_is_always_accepted() {
    let clock = ManualClock::starting_now();
    let info = info_on(&clock, Capabilities::full());
    let (key, value, meta) = (CredentialKey::new("k").unwrap(), SecretValue::from("v"), Metadata::new());
    let opts = SetOptions::new().with_expires_at(Some(clock.now() + Duration::from_secs(60)));
    match WriteRequest::new(&info, &key, &value, &meta, &opts) {
        Err(Error::Unsupported { operation, .. }) => assert_eq!(operation, "expiring credentials"),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    let never = SetOptions::new();
    let request = WriteRequest::new(&info, &key, &value, &meta, &never).unwrap();
    assert_eq!(request.expires_at(), None);
}

#[test]
fn store_info_compares_without_its_clock_and_namespace_handles_share_it() {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    let info = info_on(&clock, Capabilities::full());
    let plain =
        StoreInfo::new(StoreId::new("s").unwrap(), StoreKind::from_static("memory"), Capabilities::full());
    assert_eq!(info, plain);
    let joined = info.join(&Namespace::new("a").unwrap()).unwrap();
    clock.advance(Duration::from_secs(7));
    assert_eq!(joined.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(7));
    assert!(plain.now() > SystemTime::UNIX_EPOCH + Duration::from_secs(7));
}

#[tokio::test]
async fn a_store_without_history_answers_unsupported_before_any_io_and_purges_a_key_by_deleting_it() {
    let store = MockStore::new(StoreId::new("m").unwrap());
    assert!(!store.capabilities().versions);
    let key = CredentialKey::new("k").unwrap();
    let written = store.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let unsupported = |r: Result<()>| match r {
        Err(Error::Unsupported { operation, .. }) => assert_eq!(operation, "version history"),
        other => panic!("expected Unsupported, got {other:?}"),
    };
    unsupported(store.get_version(&key, &written.version).await.map(drop));
    unsupported(store.list_versions(&key, &VersionListOptions::new()).await.map(drop));
    unsupported(store.purge(&key, &PurgeTarget::Version(written.version.clone())).await.map(drop));
    unsupported(store.restore(&key, &written.version, &SetOptions::new()).await.map(drop));
    // Nothing changed, and purging the key is a delete.
    assert!(store.has(&key).await.unwrap());
    assert!(store.purge(&key, &PurgeTarget::Key).await.unwrap());
    assert!(!store.has(&key).await.unwrap());
    assert!(!store.purge(&key, &PurgeTarget::Key).await.unwrap());
}

#[test]
fn version_state_names_are_the_api_spellings() {
    let names: Vec<&str> =
        [VersionState::Current, VersionState::Previous, VersionState::Deleted, VersionState::Expired]
            .into_iter()
            .map(VersionState::as_str)
            .collect();
    assert_eq!(names, ["current", "previous", "deleted", "expired"]);
    assert_eq!(serde_json::to_string(&VersionState::Deleted).unwrap(), "\"deleted\"");
    let r = serde_json::to_value(Retention::versions(3).with_max_age(Some(Duration::from_secs(90)))).unwrap();
    assert_eq!(r, serde_json::json!({"max_versions": 3, "max_age": 90}));
}
