//! The KV v2 layout, checked with the `bao` CLI: what the store writes reads
//! with `bao kv get`, what `bao kv put` writes reads through the store, and
//! a soft delete by the CLI hides the key.

use std::time::Duration;

use credstore_test_servers::openbao::OpenBao;
use credstore_conformance::unique_name;
use credstore_core::{CredentialKey, CredentialStore, ListOptions, Metadata, SecretValue, StoreId};
use credstore_vault::{VaultConfig, VaultStore};

fn store(bao: &OpenBao) -> VaultStore {
    let config = VaultConfig::new(bao.address())
        .token(SecretValue::from(bao.root_token()))
        .prefix(&format!("interop/{}", unique_name("p")))
        .timeout(Duration::from_secs(10));
    VaultStore::new(StoreId::new("vault-interop").unwrap(), config).unwrap()
}

fn bao_cli(bao: &OpenBao, args: &[&str]) -> String {
    tokio::task::block_in_place(|| bao.cli(args)).unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_writes_read_with_bao_kv_get() {
    let Some(bao) = OpenBao::shared() else { return };
    let store = store(bao);
    let k = CredentialKey::new("api-key").unwrap();
    let meta = Metadata::try_from([("owner", "payments"), ("env", "prod")]).unwrap();
    store.set(&k, &SecretValue::from("sk_live_123 ✓"), &meta).await.unwrap();
    let path = store.secret_path(&k);
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value", &path]), "sk_live_123 ✓");
    let json: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "get", "-format=json", &path])).unwrap();
    assert_eq!(
        json["data"]["data"],
        serde_json::json!({"value": "sk_live_123 ✓", "metadata": {"owner": "payments", "env": "prod"}})
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
    assert_eq!(again.created_at, cred.created_at);
    assert!(again.updated_at > cred.updated_at);
    let plain: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "get", "-format=json", &path])).unwrap();
    assert_eq!(
        plain["data"]["data"],
        serde_json::json!({"value": "rotated"}),
        "no metadata field when empty"
    );

    // `.` and `..` live under an escaped name.
    let dot = CredentialKey::new("..").unwrap();
    store.set(&dot, &SecretValue::from("dots"), &Metadata::new()).await.unwrap();
    assert!(store.secret_path(&dot).ends_with("/~.."));
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value", &store.secret_path(&dot)]), "dots");

    // Deleting removes every version.
    assert!(store.delete(&k).await.unwrap());
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
    assert_eq!(cred.value.expose_secret(), "typed by an operator");
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
    // Deleting a soft-deleted key purges it and reports it missing.
    bao_cli(bao, &["kv", "delete", &path]);
    assert!(!store.delete(&k).await.unwrap());
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "metadata", "get", &path])).is_err());
}
