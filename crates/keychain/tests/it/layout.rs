//! The layout the crate docs describe, as other tools see it: `keyctl`'s
//! view of the keyring tree, and `secret-tool`'s view of the items.

use credstore_conformance::fixtures::key;
use credstore_core::{CredentialStore, CredentialStoreExt, Metadata, Namespace, SecretValue, StoreId};
use credstore_keychain::{KeychainConfig, KeychainStore, KeyutilsKeyring, Platform};

use crate::util::keyctl;
use crate::util::secret_service::Bus;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

#[test]
fn keyutils_tree_and_entries() {
    if let Err(why) = keyctl::usable() {
        assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
        eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
        return;
    }
    // This thread's own session keyring; the runtime below runs on this thread.
    let session = keyctl::own_session().expect("a session keyring of the test's own");
    let config = KeychainConfig::new().platform(Platform::Keyutils(KeyutilsKeyring::Session));
    let store = KeychainStore::new(StoreId::new("layout").unwrap(), config).unwrap();
    assert_eq!(store.service_name(), "credstore:layout");
    let meta = Metadata::try_from([("owner", "ci")]).unwrap();
    let big = "a".repeat(credstore_core::MAX_VALUE_BYTES);
    runtime().block_on(async {
        store.set(&key("github-token"), &SecretValue::from("ghp_example"), &meta).await.unwrap();
        store.set(&key(".hidden"), &SecretValue::from("h"), &Metadata::new()).await.unwrap();
        store.set(&key("big"), &SecretValue::from(big.as_str()), &Metadata::new()).await.unwrap();
        store.set(&key("empty"), &SecretValue::from(""), &Metadata::new()).await.unwrap();
        let team = store.with_namespace(&Namespace::new("team/a").unwrap()).unwrap();
        team.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    });
    let tree = keyctl::tree(session);
    for want in [
        "keyring /credstore:layout",
        "keyring /credstore:layout/github-token",
        "user /credstore:layout/github-token/0",
        "keyring /credstore:layout/~.hidden",
        "user /credstore:layout/big/2",
        "user /credstore:layout/empty/0",
        "keyring /credstore:layout:team/a",
        "user /credstore:layout:team/a/k/0",
    ] {
        assert!(tree.iter().any(|k| k == want), "{want:?} missing from {tree:#?}");
    }
    assert!(!tree.iter().any(|k| k.contains("github-token/1")), "a small entry took two chunks: {tree:#?}");
    let ns = keyctl::search(session, "keyring", "credstore:layout").unwrap();
    let cred = keyctl::search(ns, "keyring", "github-token").unwrap();
    let chunk = keyctl::read(keyctl::search(cred, "user", "0").unwrap()).unwrap();
    let text = String::from_utf8(chunk).unwrap();
    let (header, value) = text.split_once('\n').unwrap();
    assert!(header.starts_with("credstore/1 {\"v\":\""), "{header}");
    assert!(header.contains("\"m\":{\"owner\":\"ci\"}"), "{header}");
    assert_eq!(value, "ghp_example");
    keyctl::clear(session).unwrap();
}

#[test]
fn secret_service_items_as_secret_tool_sees_them() {
    let Some(bus) = Bus::start(true) else { return };
    let store = bus.store("layout");
    runtime().block_on(async {
        let meta = Metadata::try_from([("owner", "ci")]).unwrap();
        store.set(&key("github-token"), &SecretValue::from("ghp_example"), &meta).await.unwrap();
        store
            .set(&key("raw"), &SecretValue::from_bytes(vec![0xff, 0x00, 0x41]), &Metadata::new())
            .await
            .unwrap();
    });
    let Some(out) =
        bus.tool("secret-tool", &["lookup", "service", "credstore:layout", "account", "github-token"])
    else {
        return;
    };
    let text = String::from_utf8(out).unwrap();
    let (header, value) = text.split_once('\n').unwrap();
    assert!(header.starts_with("credstore/1 {") && header.contains("\"owner\":\"ci\""), "{header}");
    assert_eq!(value.trim_end_matches('\n'), "ghp_example");
    // Bytes that are not text are base64 on the Secret Service.
    let raw = bus.tool("secret-tool", &["lookup", "service", "credstore:layout", "account", "raw"]).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(raw.contains("\"e\":\"base64\"") && raw.trim_end().ends_with("\n/wBB"), "{raw}");
    let found = bus.tool("secret-tool", &["search", "--all", "service", "credstore:layout"]).unwrap();
    let found = String::from_utf8_lossy(&found);
    assert!(found.contains("label = github-token (credstore:layout)"), "{found}");
    assert!(found.contains("label = raw (credstore:layout)"), "{found}");
}

#[test]
fn keyutils_parent_keyrings_resolve_without_writing_to_them() {
    if keyctl::usable().is_err() {
        return; // reported by keyutils_tree_and_entries
    }
    // The probe touches the parent only to look it up; its test key goes
    // to a staging keyring of the process.
    let rt = runtime();
    for ring in [KeyutilsKeyring::User, KeyutilsKeyring::Session] {
        let config = KeychainConfig::new().platform(Platform::Keyutils(ring));
        let store = KeychainStore::new(StoreId::new("parents").unwrap(), config).unwrap();
        let status = rt.block_on(store.check_availability());
        assert!(status.available, "{ring}: {status:?}");
        assert_eq!(store.platform_name(), "kernel keyutils");
    }
    let unsupported = KeychainStore::new(
        StoreId::new("mac").unwrap(),
        KeychainConfig::new().platform(Platform::MacosKeychain),
    );
    assert!(matches!(unsupported, Err(credstore_core::Error::Config { .. })), "{unsupported:?}");
}
