//! The keychain as a key-encryption key (`KeychainKeyProvider`) on the
//! real platforms: kernel keyutils in a session keyring of the test's own,
//! and the Secret Service of gnome-keyring on a private bus. Data keys go
//! through `credstore_seal::KeyRecord`, as a store's do.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::Engine as _;

use credstore_core::{CredentialKey, Error, StoreId};
use credstore_keychain::{
    KeychainConfig, KeychainKeySettings, KeyutilsKeyring, Platform, SecretServiceOptions,
};
use credstore_seal::{DataKey, KeyProvider, KeyRecord, MasterKey, StoreUid, WrapContext};

use crate::util::keyctl;
use crate::util::secret_service::Bus;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn id(s: &str) -> StoreId {
    StoreId::new(s).unwrap()
}

/// A session keyring of this thread's own (and of the threads it starts),
/// or `None` after a loud notice (a failure under CI) when the kernel
/// refuses keyutils here.
fn own_session() -> Option<i32> {
    if let Err(why) = keyctl::usable() {
        assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
        eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
        return None;
    }
    Some(keyctl::own_session().expect("a session keyring of the test's own"))
}

/// The settings of a key in the session keyring, entry `entry`.
fn keyutils(entry: &str) -> KeychainKeySettings {
    KeychainKeySettings::new(KeychainConfig::new().platform(Platform::Keyutils(KeyutilsKeyring::Session)))
        .entry(CredentialKey::new(entry).unwrap())
        .accept_volatile_keyring(true)
}

/// The settings of a key on `bus`'s Secret Service, entry `entry`.
fn secret_service(bus: &Bus, entry: &str) -> KeychainKeySettings {
    let options = SecretServiceOptions::default().bus_address(bus.address());
    KeychainKeySettings::new(
        KeychainConfig::new().platform(Platform::SecretService(options)).timeout(Duration::from_secs(10)),
    )
    .entry(CredentialKey::new(entry).unwrap())
}

/// The entry's payload in the session keyring, if any: the text the provider
/// stored (`credstore-kek` / `{entry}` / `0`).
fn keyutils_entry(session: i32, entry: &str) -> Option<String> {
    let service = keyctl::find(session, "keyring", "credstore-kek")?;
    let cred = keyctl::find(service, "keyring", entry)?;
    let chunk = keyctl::find(cred, "user", "0")?;
    assert!(keyctl::find(cred, "user", "1").is_none(), "a 44-byte key in one chunk");
    Some(String::from_utf8(keyctl::read(chunk).unwrap()).unwrap())
}

/// The keys the Secret Service holds for `entry`, as `secret-tool` sees them.
fn secret_service_entries(bus: &Bus, entry: &str) -> Option<Vec<String>> {
    let out = bus.tool(
        "secret-tool",
        &["search", "--all", "--unlock", "service", "credstore-kek", "account", entry],
    )?;
    let text = String::from_utf8(out).unwrap();
    Some(text.lines().filter_map(|l| l.strip_prefix("secret = ")).map(str::to_owned).collect())
}

/// A new store's data key, wrapped by `provider`.
async fn new_record(store: &StoreId, provider: &dyn KeyProvider) -> (DataKey, KeyRecord) {
    let dek = DataKey::generate();
    let record = KeyRecord::wrap(store, StoreUid::generate(), 1, &dek, provider).await.expect("wrap");
    (dek, record)
}

/// What `record` unwraps to under the raw key `base64`, as
/// `MasterKey::from_bytes` of it: the provider wraps exactly as it does.
async fn unwrap_as_master_key(
    store: &StoreId,
    record: &KeyRecord,
    base64: &str,
) -> credstore_core::Result<DataKey> {
    let key = MasterKey::from_base64(base64)?;
    key.unwrap(record.wrapped(), &WrapContext::new(store, record.uid(), record.key_version())).await
}

fn assert_config(err: &Error, store: &str, needles: &[&str]) -> String {
    let Error::Config { store: named, reason, .. } = err else { panic!("expected Config, got {err:?}") };
    assert_eq!(named.as_str(), store, "the error names the store");
    for needle in needles {
        assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
    }
    reason.clone()
}

#[test]
fn keyutils_first_wrap_creates_the_kek_and_a_second_provider_unwraps_with_it() {
    let Some(session) = own_session() else { return };
    let store = id("vault-a");
    runtime().block_on(async {
        assert_eq!(keyutils_entry(session, "kek-a"), None);
        let first = keyutils("kek-a").provider(&store).unwrap();
        let (dek, record) = new_record(&store, &first).await;
        assert_eq!((record.provider_kind(), record.key_ref()), ("keychain", "credstore-kek/kek-a"));
        let stored = keyutils_entry(session, "kek-a").expect("the first wrap created the entry");
        assert_eq!(stored.len(), 44, "the base64 of 32 bytes, nothing else");

        // Another instance, as after a restart: the key record's bytes and
        // the keychain are all it has.
        let record = KeyRecord::from_bytes(&store, &record.to_bytes()).unwrap();
        let second = keyutils("kek-a").provider(&store).unwrap();
        assert_eq!(record.unwrap(&store, &second).await.unwrap().expose_secret(), dek.expose_secret());
        // Wrapped exactly as MasterKey::from_bytes(kek) wraps.
        let as_master = unwrap_as_master_key(&store, &record, &stored).await.unwrap();
        assert_eq!(as_master.expose_secret(), dek.expose_secret());

        // A second wrap reuses the key: the entry is never replaced.
        let (dek2, record2) = new_record(&store, &second).await;
        assert_eq!(keyutils_entry(session, "kek-a").as_deref(), Some(stored.as_str()));
        assert_eq!(record2.unwrap(&store, &first).await.unwrap().expose_secret(), dek2.expose_secret());
    });
    keyctl::clear(session).unwrap();
}

#[test]
fn keyutils_providers_racing_to_create_the_kek_agree_on_one() {
    let Some(session) = own_session() else { return };
    const RACERS: usize = 8;
    for round in 0..4 {
        let entry = format!("race-{round}");
        let barrier = Arc::new(Barrier::new(RACERS));
        // Threads started now share this thread's session keyring.
        let racers: Vec<_> = (0..RACERS)
            .map(|i| {
                let (barrier, entry) = (Arc::clone(&barrier), entry.clone());
                std::thread::spawn(move || {
                    let store = id(&format!("racer-{i}"));
                    let provider = keyutils(&entry).provider(&store).unwrap();
                    let rt = runtime();
                    barrier.wait();
                    let (dek, record) = rt.block_on(new_record(&store, &provider));
                    (store, dek, record)
                })
            })
            .collect();
        let wrapped: Vec<_> = racers.into_iter().map(|t| t.join().expect("a racer panicked")).collect();
        let stored = keyutils_entry(session, &entry).expect("the entry exists");
        runtime().block_on(async {
            for (store, dek, record) in &wrapped {
                // Every racer wrapped under the one key the keychain holds.
                let back = unwrap_as_master_key(store, record, &stored).await.unwrap_or_else(|e| {
                    panic!("round {round}: {store}'s data key is not wrapped by the stored key: {e}")
                });
                assert_eq!(back.expose_secret(), dek.expose_secret());
            }
        });
    }
    keyctl::clear(session).unwrap();
}

#[test]
fn keyutils_deleted_entry_is_a_config_error_and_another_entry_is_the_wrong_key() {
    let Some(session) = own_session() else { return };
    let store = id("vault-b");
    runtime().block_on(async {
        let provider = keyutils("kek-b").provider(&store).unwrap();
        let (_, record) = new_record(&store, &provider).await;
        let key_text = keyutils_entry(session, "kek-b").unwrap();

        // Another entry: another key, created by its own first wrap.
        let other = keyutils("kek-other").provider(&store).unwrap();
        new_record(&store, &other).await;
        let err = record.unwrap(&store, &other).await.unwrap_err();
        let reason = assert_config(&err, "vault-b", &["keychain credstore-kek/kek-other", "AES-GCM"]);
        assert!(reason.starts_with("wrong key-encryption key"), "{reason}");
        assert!(!reason.contains("master-key"), "names this provider, not the key type under it: {reason}");

        // The entry deleted: a clear error, and unwrap creates nothing.
        let service = keyctl::find(session, "keyring", "credstore-kek").unwrap();
        let entry = keyctl::find(service, "keyring", "kek-b").unwrap();
        keyctl::invalidate(entry).unwrap();
        let err = record.unwrap(&store, &provider).await.unwrap_err();
        let reason = assert_config(
            &err,
            "vault-b",
            &["keychain entry credstore-kek/kek-b on the kernel keyutils is missing", "cannot be unwrapped"],
        );
        assert!(!reason.contains(&key_text));
        assert_eq!(keyutils_entry(session, "kek-b"), None, "unwrap never creates a key");

        // Put back from its backup (the base64 text, with a newline as
        // people paste it): the data key unwraps again.
        let cred = keyctl::add_keyring("kek-b", service).unwrap();
        keyctl::add_user_key("0", format!("{key_text}\n").as_bytes(), cred).unwrap();
        assert!(record.unwrap(&store, &provider).await.is_ok(), "restored from the backup");
    });
    keyctl::clear(session).unwrap();
}

#[test]
fn keyutils_entry_that_is_not_a_key_is_refused_without_showing_it() {
    let Some(session) = own_session() else { return };
    let store = id("vault-c");
    let service = keyctl::add_keyring("credstore-kek", session).unwrap();
    let cred = keyctl::add_keyring("kek-c", service).unwrap();
    keyctl::add_user_key("0", b"hunter2-not-a-key", cred).unwrap();
    runtime().block_on(async {
        let provider = keyutils("kek-c").provider(&store).unwrap();
        let err = KeyRecord::wrap(&store, StoreUid::generate(), 1, &DataKey::generate(), &provider)
            .await
            .unwrap_err();
        let reason =
            assert_config(&err, "vault-c", &["does not hold a key-encryption key", "credstore-kek/kek-c"]);
        assert!(!reason.contains("hunter2") && !format!("{err:?}").contains("hunter2"), "{err:?}");
    });
    assert_eq!(keyutils_entry(session, "kek-c").as_deref(), Some("hunter2-not-a-key"), "left as it was");
    keyctl::clear(session).unwrap();
}

#[test]
fn debug_and_errors_show_no_key_material() {
    let Some(session) = own_session() else { return };
    let store = id("vault-d");
    runtime().block_on(async {
        let provider = keyutils("kek-d").provider(&store).unwrap();
        let (_, record) = new_record(&store, &provider).await;
        let key_text = keyutils_entry(session, "kek-d").unwrap();
        let raw = base64::engine::general_purpose::STANDARD.decode(&key_text).unwrap();
        // The key's first bytes as `Debug` of a byte slice, and in hex.
        let as_list = format!("{:?}", &raw[..4]);
        let as_list = &as_list[1..as_list.len() - 1];
        let as_hex: String = raw[..4].iter().map(|b| format!("{b:02x}")).collect();
        let shown = format!("{provider:?}");
        assert!(shown.contains("kek-d") && shown.contains("kernel keyutils"), "{shown}");
        let wrong = keyutils("kek-d2").provider(&store).unwrap();
        new_record(&store, &wrong).await;
        let err = record.unwrap(&store, &wrong).await.unwrap_err();
        for text in [shown, format!("{err}"), format!("{err:?}"), format!("{record:?}")] {
            assert!(
                !text.contains(&key_text) && !text.contains(as_list) && !text.contains(&as_hex),
                "{text}"
            );
        }
    });
    keyctl::clear(session).unwrap();
}

#[test]
fn secret_service_round_trip_second_provider_and_backup_through_secret_tool() {
    let Some(bus) = Bus::start(true) else { return };
    let store = id("vault-ss");
    runtime().block_on(async {
        let first = secret_service(&bus, "kek-ss").provider(&store).unwrap();
        assert_eq!(first.platform_name(), "Secret Service");
        let (dek, record) = new_record(&store, &first).await;
        let Some(entries) = secret_service_entries(&bus, "kek-ss") else { return };
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].len(), 44, "the base64 of 32 bytes, nothing else");

        let record = KeyRecord::from_bytes(&store, &record.to_bytes()).unwrap();
        let second = secret_service(&bus, "kek-ss").provider(&store).unwrap();
        assert_eq!(record.unwrap(&store, &second).await.unwrap().expose_secret(), dek.expose_secret());
        let as_master = unwrap_as_master_key(&store, &record, &entries[0]).await.unwrap();
        assert_eq!(as_master.expose_secret(), dek.expose_secret());
        new_record(&store, &second).await;
        assert_eq!(secret_service_entries(&bus, "kek-ss").unwrap(), entries, "a second wrap adds nothing");

        // Another entry is another key.
        let other = secret_service(&bus, "kek-ss-other").provider(&store).unwrap();
        new_record(&store, &other).await;
        let err = record.unwrap(&store, &other).await.unwrap_err();
        let reason = assert_config(&err, "vault-ss", &["keychain credstore-kek/kek-ss-other"]);
        assert!(reason.starts_with("wrong key-encryption key"), "{reason}");

        // Deleted with the platform's tool: a clear error naming the entry.
        bus.tool("secret-tool", &["clear", "service", "credstore-kek", "account", "kek-ss"]).unwrap();
        let err = record.unwrap(&store, &second).await.unwrap_err();
        assert_config(
            &err,
            "vault-ss",
            &["keychain entry credstore-kek/kek-ss on the Secret Service is missing"],
        );
        assert_eq!(
            secret_service_entries(&bus, "kek-ss").unwrap(),
            Vec::<String>::new(),
            "unwrap creates nothing"
        );

        // Put back from its backup as the docs say, with secret-tool (the
        // key on stdin, a newline after it as `echo` writes it).
        let input = format!("{}\n", entries[0]);
        let args = ["store", "--label=credstore-kek kek-ss", "service", "credstore-kek", "account", "kek-ss"];
        bus.tool_with_input("secret-tool", &args, Some(input.as_bytes())).unwrap();
        assert_eq!(record.unwrap(&store, &second).await.unwrap().expose_secret(), dek.expose_secret());
    });
}

#[test]
fn secret_service_providers_racing_to_create_the_kek_keep_every_data_key_readable() {
    let Some(bus) = Bus::start(true) else { return };
    const RACERS: usize = 6;
    let barrier = Arc::new(Barrier::new(RACERS));
    let racers: Vec<_> = (0..RACERS)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let settings = secret_service(&bus, "kek-race");
            std::thread::spawn(move || {
                let store = id(&format!("racer-{i}"));
                let provider = settings.provider(&store).unwrap();
                let rt = runtime();
                barrier.wait();
                let (dek, record) = rt.block_on(new_record(&store, &provider));
                (store, dek, record)
            })
        })
        .collect();
    let wrapped: Vec<_> = racers.into_iter().map(|t| t.join().expect("a racer panicked")).collect();
    let Some(entries) = secret_service_entries(&bus, "kek-race") else { return };
    assert!(!entries.is_empty() && entries.len() <= RACERS, "{} keys", entries.len());
    runtime().block_on(async {
        let later = secret_service(&bus, "kek-race").provider(&id("later")).unwrap();
        for (store, dek, record) in &wrapped {
            // Each racer wrapped under a key the entry still holds: none was
            // replaced, so a new provider unwraps every data key.
            let back = record.unwrap(store, &later).await.unwrap_or_else(|e| panic!("{store}: {e}"));
            assert_eq!(back.expose_secret(), dek.expose_secret());
        }
    });
    eprintln!("{RACERS} racers left {} key(s) in the Secret Service entry", entries.len());
}

#[test]
fn secret_service_entry_holding_two_keys_unwraps_data_keys_wrapped_under_either() {
    // Without the feature, `Bus::start` says it skips and returns `None`.
    let Some(bus) = Bus::start(true) else { return };
    #[cfg(not(feature = "secret-service"))]
    drop(bus);
    #[cfg(feature = "secret-service")]
    runtime().block_on(async {
        let store = id("vault-two");
        let provider = secret_service(&bus, "kek-two").provider(&store).unwrap();
        let (dek_a, record_a) = new_record(&store, &provider).await;
        // A second key added beside the first, as a racer that found the
        // entry absent adds its own (`CreateItem` without `replace`).
        let other = MasterKey::generate();
        let conn = zbus::connection::Builder::address(bus.address()).unwrap().build().await.unwrap();
        let ss =
            secret_service::SecretService::connect_with_existing(secret_service::EncryptionType::Dh, conn)
                .await
                .unwrap();
        let collection = ss.get_collection_by_alias("default").await.unwrap();
        let attributes =
            std::collections::HashMap::from([("service", "credstore-kek"), ("account", "kek-two")]);
        let text = other.to_base64().unwrap();
        collection
            .create_item("a racer's key", attributes, text.as_bytes(), false, "text/plain")
            .await
            .unwrap();
        assert_eq!(secret_service_entries(&bus, "kek-two").map(|e| e.len()), Some(2));

        // A data key wrapped under either key unwraps, whichever the
        // platform lists first.
        let dek_b = DataKey::generate();
        let context = WrapContext::new(&store, StoreUid::generate(), 1);
        let wrapped_b = other.wrap(&dek_b, &context).await.unwrap();
        assert_eq!(
            provider.unwrap(&wrapped_b, &context).await.unwrap().expose_secret(),
            dek_b.expose_secret()
        );
        assert_eq!(record_a.unwrap(&store, &provider).await.unwrap().expose_secret(), dek_a.expose_secret());
        // And one wrapped under neither names both tries.
        let wrapped_c = MasterKey::generate().wrap(&dek_b, &context).await.unwrap();
        let err = provider.unwrap(&wrapped_c, &context).await.unwrap_err();
        let reason = assert_config(&err, "vault-two", &["with each of its 2 keys"]);
        assert!(reason.starts_with("wrong key-encryption key"), "{reason}");
    });
}

#[test]
fn secret_service_unreachable_or_locked_is_unavailable_naming_the_store() {
    let Some(mut bus) = Bus::start(true) else { return };
    let store = id("vault-down");
    let rt = runtime();
    let provider = secret_service(&bus, "kek-down").provider(&store).unwrap();
    let (dek, record) = rt.block_on(new_record(&store, &provider));
    let assert_unavailable = |err: Error, needle: &str| {
        let Error::Unavailable { store: named, reason, .. } = &err else {
            panic!("expected Unavailable, got {err:?}")
        };
        assert_eq!(named.as_str(), "vault-down");
        assert!(reason.contains(needle), "{reason:?} lacks {needle:?}");
        assert!(err.is_retriable());
    };
    bus.lock_collection();
    rt.block_on(async {
        assert_unavailable(
            record.unwrap(&store, &provider).await.unwrap_err(),
            "collection 'default' is locked",
        );
        let err = KeyRecord::wrap(&id("vault-new"), StoreUid::generate(), 1, &DataKey::generate(), &provider)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "no key created while locked: {err:?}");
    });
    bus.stop_keyring();
    rt.block_on(async {
        assert_unavailable(record.unwrap(&store, &provider).await.unwrap_err(), "no Secret Service provider");
    });
    bus.restart_keyring();
    rt.block_on(async {
        // Back: the same key, nothing lost or replaced meanwhile.
        assert_eq!(record.unwrap(&store, &provider).await.unwrap().expose_secret(), dek.expose_secret());
    });
    assert_eq!(secret_service_entries(&bus, "kek-down").map(|e| e.len()), Some(1));
}
