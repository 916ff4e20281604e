//! Expiry on the real platforms: kernel keyutils sets the kernel's own key
//! timeout (seen in `/proc/keys`) and the store decides by its clock; the
//! Secret Service carries the time in the entry's header. Time is moved by
//! a `ManualClock`, never slept through.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credstore_conformance::fixtures::key;
use credstore_core::{
    CredentialStore, CredentialStoreExt, ListOptions, ManualClock, Metadata, SecretValue, SetOptions, StoreId,
};
use credstore_keychain::{KeychainConfig, KeychainStore, KeyutilsKeyring, Platform};

use crate::util::keyctl;
use crate::util::secret_service::Bus;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// The timeout column of `/proc/keys` for key `serial`: `perm`, or the
/// time left (`30s`, `5m`, ...).
fn kernel_timeout(serial: i32) -> String {
    let keys = std::fs::read_to_string("/proc/keys").expect("/proc/keys");
    let prefix = format!("{serial:08x} ");
    let line =
        keys.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{serial} not in /proc/keys"));
    line.split_whitespace().nth(3).unwrap().to_owned()
}

fn seconds_left(column: &str) -> u64 {
    column.strip_suffix('s').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not seconds: {column}"))
}

/// The checks every platform passes: present before the instant, absent
/// from it on (get, has, version, list), a create-only write succeeds over
/// it, and a delete of it answers `false`.
async fn reads_as_absent_from_the_instant(store: &KeychainStore, clock: &ManualClock) {
    let k = key("oauth");
    let at = credstore_core::Clock::now(clock) + Duration::from_millis(30_500);
    let opts = SetOptions::new().with_expires_at(Some(at));
    let meta = Metadata::try_from([("owner", "expiry")]).unwrap();
    store.set_opts(&k, &SecretValue::from("access"), &meta, &opts).await.unwrap();
    store.set(&key("forever"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let read = store.get(&k).await.unwrap().unwrap();
    assert_eq!((read.expires_at, read.metadata), (Some(at), meta.clone()));
    assert_eq!(store.get(&key("forever")).await.unwrap().unwrap().expires_at, None);

    clock.set(at - Duration::from_nanos(1));
    assert!(store.has(&k).await.unwrap());
    clock.set(at);
    assert!(store.get(&k).await.unwrap().is_none());
    assert!(!store.has(&k).await.unwrap());
    assert!(store.version(&k).await.unwrap().is_none());
    let listed = store.list(&ListOptions::new()).await.unwrap();
    assert_eq!(listed.keys.iter().map(|k| k.as_str()).collect::<Vec<_>>(), ["forever"]);
    assert!(!store.delete(&k).await.unwrap(), "an expired key deletes as absent");

    store
        .set_opts(
            &k,
            &SecretValue::from("again"),
            &meta,
            &opts.clone().with_expires_at(Some(at + Duration::from_secs(60))),
        )
        .await
        .unwrap();
    clock.advance(Duration::from_secs(60));
    // A create-only write where the platform has them; a plain one elsewhere:
    // either creates the key anew.
    let fresh = SecretValue::from("fresh");
    let created = if store.capabilities().create_only {
        store.create(&k, &fresh, &Metadata::new()).await.unwrap()
    } else {
        store.set(&k, &fresh, &Metadata::new()).await.unwrap()
    };
    assert!(created.created, "a write over an expired key creates it");
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "fresh");
    let past = SetOptions::new().with_expires_at(Some(credstore_core::Clock::now(clock)));
    let err = store.set_opts(&k, &SecretValue::from("x"), &Metadata::new(), &past).await.unwrap_err();
    assert!(
        matches!(err, credstore_core::Error::InvalidInput { ref field, .. } if field == "expires_at"),
        "{err:?}"
    );
}

#[test]
fn keyutils_sets_the_kernel_timeout_and_the_store_decides_by_its_clock() {
    if let Err(why) = keyctl::usable() {
        assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
        eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
        return;
    }
    let session = keyctl::own_session().expect("a session keyring of the test's own");
    let clock = ManualClock::new(SystemTime::now());
    let config = KeychainConfig::new()
        .platform(Platform::Keyutils(KeyutilsKeyring::Session))
        .clock(Arc::new(clock.clone()));
    let store = KeychainStore::new(StoreId::new("expiry").unwrap(), config).unwrap();
    assert!(store.capabilities().expiry && !store.capabilities().versions);
    runtime().block_on(async {
        let ttl = SetOptions::new()
            .with_expires_at(Some(credstore_core::Clock::now(&clock) + Duration::from_millis(30_500)));
        store.set_opts(&key("timed"), &SecretValue::from("v"), &Metadata::new(), &ttl).await.unwrap();
        store.set(&key("untimed"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    });
    let ns = keyctl::search(session, "keyring", "credstore:expiry").unwrap();
    let timed = keyctl::search(ns, "keyring", "timed").unwrap();
    // 30.5 s rounded up to 31, less what passed since the write.
    let left = seconds_left(&kernel_timeout(timed));
    assert!((25..=31).contains(&left), "{left}");
    let chunk = keyctl::search(timed, "user", "0").unwrap();
    assert!((25..=31).contains(&seconds_left(&kernel_timeout(chunk))));
    let untimed = keyctl::search(ns, "keyring", "untimed").unwrap();
    assert_eq!(kernel_timeout(untimed), "perm");
    assert_eq!(kernel_timeout(keyctl::search(untimed, "user", "0").unwrap()), "perm");

    let config = KeychainConfig::new()
        .platform(Platform::Keyutils(KeyutilsKeyring::Session))
        .clock(Arc::new(clock.clone()));
    let store = KeychainStore::new(StoreId::new("expiry-reads").unwrap(), config).unwrap();
    runtime().block_on(reads_as_absent_from_the_instant(&store, &clock));
    // Another tool's item under a key's name is present, not expired: a
    // create-only write over it fails its condition, as it did.
    let ns = keyctl::search(session, "keyring", "credstore:expiry-reads").unwrap();
    let foreign = keyctl::add_keyring("foreign", ns).unwrap();
    keyctl::add_user_key("0", b"hunter2", foreign).unwrap();
    let err = runtime()
        .block_on(store.create(&key("foreign"), &SecretValue::from("v"), &Metadata::new()))
        .unwrap_err();
    assert!(matches!(err, credstore_core::Error::PreconditionFailed { .. }), "{err:?}");
    assert!(runtime().block_on(store.has(&key("foreign"))).unwrap(), "it exists, as it did");
    let listed = runtime().block_on(store.list(&ListOptions::new())).unwrap();
    assert!(listed.keys.iter().any(|k| k.as_str() == "foreign"), "and is listed, as it was");
    keyctl::clear(session).unwrap();
}

#[test]
fn secret_service_carries_the_expiry_in_the_entry_and_the_store_decides_by_its_clock() {
    let Some(bus) = Bus::start(true) else { return };
    let clock = ManualClock::new(SystemTime::now());
    let store = bus.store_on("expiry", Arc::new(clock.clone()));
    assert!(store.capabilities().expiry && !store.capabilities().versions);
    runtime().block_on(reads_as_absent_from_the_instant(&store, &clock));
}
