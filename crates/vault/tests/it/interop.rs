//! The KV v2 layout, checked with the `bao` CLI: what the store writes reads
//! with `bao kv get`, what `bao kv put` writes reads through the store, a
//! soft delete by the CLI hides the key, binary values sit base64 under
//! `value_base64`, writes after the first carry `created_at`, and versions
//! are KV v2's version numbers.

use std::time::Duration;

use credstore_conformance::unique_name;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, ListOptions, Metadata, PurgeTarget, SecretValue,
    StoreId,
};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::bao_cli;

fn store(bao: &OpenBao) -> VaultStore {
    let config = VaultConfig::new(bao.address())
        .token(SecretValue::from(bao.root_token()))
        .prefix(&format!("interop/{}", unique_name("p")))
        .timeout(Duration::from_secs(10));
    VaultStore::new(StoreId::new("vault-interop").unwrap(), config).unwrap()
}

/// An RFC 3339 UTC time with its fraction's trailing zeros dropped, as Go
/// writes it, so that two spellings of one instant compare equal.
fn same_instant(t: &str) -> String {
    let t = t.strip_suffix('Z').expect("UTC");
    match t.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{}Z", frac.trim_end_matches('0')),
        None => format!("{t}.Z"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_writes_read_with_bao_kv_get() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(bao);
    let k = CredentialKey::new("api-key").unwrap();
    let meta = Metadata::try_from([("owner", "payments"), ("env", "prod")]).unwrap();
    let first = store.set(&k, &SecretValue::from("sk_live_123 ✓"), &meta).await.unwrap();
    assert!(first.version.as_str().starts_with("1-"), "{:?}", first.version);
    let path = store.secret_path(&k);
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value", &path]), "sk_live_123 ✓");
    let json: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "get", "-format=json", &path])).unwrap();
    assert_eq!(
        json["data"]["data"],
        serde_json::json!({
            "value": "sk_live_123 ✓",
            "metadata": {"owner": "payments", "env": "prod"},
            "new_credential": true
        })
    );
    assert_eq!(json["data"]["metadata"]["version"], 1);
    assert!(json["data"]["metadata"]["custom_metadata"].is_null(), "custom_metadata is left to operators");

    // Timestamps are the server's: created_time of the key and of the version.
    let cred = store.get(&k).await.unwrap().unwrap();
    store.set(&k, &SecretValue::from("rotated"), &Metadata::new()).await.unwrap();
    let meta_json: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "metadata", "get", "-format=json", &path])).unwrap();
    assert_eq!(meta_json["data"]["current_version"], 2);
    let again = store.get(&k).await.unwrap().unwrap();
    assert!(again.version.as_str().starts_with("2-"), "the KV v2 number leads: {:?}", again.version);
    assert_ne!(again.version, cred.version);
    assert_eq!(again.created_at, cred.created_at);
    assert!(again.updated_at > cred.updated_at);
    let plain: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "get", "-format=json", &path])).unwrap();
    // A write after the first carries the credential's creation time, the
    // key's created_time, so that one read answers `get`.
    let created = meta_json["data"]["created_time"].as_str().unwrap();
    assert_eq!(
        plain["data"]["data"],
        serde_json::json!({"value": "rotated", "created_at": plain["data"]["data"]["created_at"]}),
        "no metadata field when empty"
    );
    let carried = plain["data"]["data"]["created_at"].as_str().unwrap();
    assert_eq!(same_instant(carried), same_instant(created), "{carried} vs {created}");
    assert_eq!(carried.len(), "2024-05-01T12:00:00.123456789Z".len(), "UTC, to the nanosecond: {carried}");

    // `.` and `..` live under an escaped name.
    let dot = CredentialKey::new("..").unwrap();
    store.set(&dot, &SecretValue::from("dots"), &Metadata::new()).await.unwrap();
    assert!(store.secret_path(&dot).ends_with("/~.."));
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value", &store.secret_path(&dot)]), "dots");

    // Deleting soft-deletes: `bao kv get` finds nothing, the versions stay.
    assert!(store.delete(&k).await.unwrap());
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "get", "-field=value", &path])).is_err());
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "metadata", "get", &path])).is_ok());
    // Purging the key removes every version.
    assert!(store.purge(&k, &PurgeTarget::Key).await.unwrap());
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "metadata", "get", &path])).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_writes_and_soft_deletes_are_seen_by_the_store() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(bao);
    let k = CredentialKey::new("from-cli").unwrap();
    let path = store.secret_path(&k);
    bao_cli(bao, &["kv", "put", &path, "value=typed by an operator"]);
    let cred = store.get(&k).await.unwrap().expect("written by the CLI");
    assert_eq!(cred.value.expose_str().unwrap(), "typed by an operator");
    assert!(cred.metadata.is_empty());

    // A foreign secret without a `value` field is refused, without its data in the error.
    let foreign = CredentialKey::new("foreign").unwrap();
    bao_cli(bao, &["kv", "put", &store.secret_path(&foreign), "password=hunter2-SECRET"]);
    let err = store.get(&foreign).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains("hunter2-SECRET"), "{err:?}");
    assert!(err.to_string().contains("value"), "{err}");

    // `bao kv delete` soft-deletes the latest version: the key is gone for the store.
    bao_cli(bao, &["kv", "delete", &path]);
    assert!(!store.has(&k).await.unwrap());
    assert!(store.get(&k).await.unwrap().is_none());
    let listed = store.list(&ListOptions::new()).await.unwrap();
    assert_eq!(listed.keys, vec![foreign.clone()], "soft-deleted keys are not listed");
    // Setting it again is a new credential, with a new created_at.
    let out = store.set(&k, &SecretValue::from("back"), &Metadata::new()).await.unwrap();
    assert!(out.created);
    let back = store.get(&k).await.unwrap().unwrap();
    assert_eq!(back.created_at, out.created_at);
    assert!(back.created_at > cred.created_at);
    // Deleting a soft-deleted key reports it missing; purging it removes it.
    bao_cli(bao, &["kv", "delete", &path]);
    assert!(!store.delete(&k).await.unwrap());
    assert!(store.purge(&k, &PurgeTarget::Key).await.unwrap());
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "metadata", "get", &path])).is_err());
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_are_base64_under_their_own_field() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(bao);
    let k = CredentialKey::new("signing-key").unwrap();
    let mut bytes: Vec<u8> = (0..=255).collect();
    bytes.extend_from_slice(&[0xc3, 0x28, 0xff, 0x00]); // invalid UTF-8 too
    let meta = Metadata::try_from([("kind", "ed25519")]).unwrap();
    store.set(&k, &SecretValue::from(bytes.clone()), &meta).await.unwrap();
    let path = store.secret_path(&k);
    let json: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "get", "-format=json", &path])).unwrap();
    assert_eq!(
        json["data"]["data"],
        serde_json::json!({"value_base64": b64(&bytes), "metadata": {"kind": "ed25519"}, "new_credential": true})
    );
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value_base64", &path]), b64(&bytes));
    let no_text = tokio::task::block_in_place(|| bao.cli(["kv", "get", "-field=value", &path]));
    assert!(no_text.is_err(), "no tool may read the base64 text as the value: {no_text:?}");
    let cred = store.get(&k).await.unwrap().unwrap();
    assert_eq!(cred.value.expose_secret(), bytes.as_slice());
    assert!(matches!(cred.value.expose_str(), Err(credstore_core::Error::NotText { .. })));

    // Overwritten with text, the layout is plain again.
    store.set(&k, &SecretValue::from("now text"), &Metadata::new()).await.unwrap();
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value", &path]), "now text");

    // Written by an operator as base64: read back as bytes.
    let from_cli = CredentialKey::new("cli-binary").unwrap();
    bao_cli(
        bao,
        &[
            "kv",
            "put",
            &store.secret_path(&from_cli),
            &format!("value_base64={}", b64(&[0xde, 0xad, 0xbe, 0xef])),
        ],
    );
    let cred = store.get(&from_cli).await.unwrap().unwrap();
    assert_eq!(cred.value.expose_secret(), &[0xde, 0xad, 0xbe, 0xef]);
    assert!(!cred.value.is_text());

    // An encoding this version does not know is a clear error, without the data.
    let unknown = CredentialKey::new("cli-base85").unwrap();
    bao_cli(bao, &["kv", "put", &store.secret_path(&unknown), "value_base85=hunter2-SECRET"]);
    let err = store.get(&unknown).await.unwrap_err().to_string();
    assert!(err.contains("value_base85") && err.contains("does not know"), "{err}");
    assert!(!err.contains("hunter2-SECRET"), "{err}");
    // Bad base64 too.
    let bad = CredentialKey::new("cli-bad-base64").unwrap();
    bao_cli(bao, &["kv", "put", &store.secret_path(&bad), "value_base64=not*base64-SECRET"]);
    let err = store.get(&bad).await.unwrap_err().to_string();
    assert!(err.contains("not valid base64") && !err.contains("SECRET"), "{err}");
}
