//! Conditional writes on a real OpenBao dev server, checked against KV v2
//! itself with the `bao` CLI: create-only is `cas=0`, replace-if-version is
//! `cas=<number>`, Vault's check-and-set mismatch is a precondition failure
//! that changes nothing, versions of a deleted key never match its new life,
//! and a mount that requires check-and-set works.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::fixtures::key;
use credstore_conformance::unique_name;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Metadata, PurgeTarget, SecretValue, StoreId, Version,
};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::{bao_cli, reason_of};

fn store_on(bao: &OpenBao, mount: &str) -> VaultStore {
    let config = VaultConfig::new(bao.address())
        .token(SecretValue::from(bao.root_token()))
        .mount(mount)
        .prefix(&format!("conditional/{}", unique_name("p")))
        .timeout(Duration::from_secs(10));
    VaultStore::new(StoreId::new("vault-conditional").unwrap(), config).unwrap()
}

/// A store on the `secret` mount of the shared server, key `name` and that
/// key's KV v2 path; `None` without a server.
fn key_on_secret_mount(name: &str) -> Option<(&'static OpenBao, VaultStore, CredentialKey, String)> {
    let bao = OpenBao::shared()?;
    let store = store_on(bao, "secret");
    let k = key(name);
    let path = store.secret_path(&k);
    Some((bao, store, k, path))
}

/// The key's KV v2 `current_version`, as the CLI reports it.
fn current_version(bao: &OpenBao, path: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&bao_cli(bao, &["kv", "metadata", "get", "-format=json", path])).unwrap();
    json["data"]["current_version"].as_u64().unwrap()
}

fn value_of(bao: &OpenBao, path: &str) -> String {
    bao_cli(bao, &["kv", "get", "-field=value", path])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_is_cas_zero_and_refuses_an_existing_key() {
    let Some((bao, store, k, path)) = key_on_secret_mount("api-key") else { return };
    let out = store.create(&k, &SecretValue::from("first"), &Metadata::new()).await.unwrap();
    assert!(out.created);
    assert!(out.version.as_str().starts_with("1-"), "{:?}", out.version);
    assert_eq!(current_version(bao, &path), 1);

    // KV v2 answers "check-and-set parameter did not match the current version".
    let err = store.create(&k, &SecretValue::from("second"), &Metadata::new()).await.unwrap_err();
    assert!(!err.is_retriable());
    assert_eq!(reason_of!(err, PreconditionFailed), "the key exists");
    assert_eq!(value_of(bao, &path), "first", "a failed create changes nothing");
    assert_eq!(current_version(bao, &path), 1, "and writes no version");

    // After delete (a delete marker, version 2, soft-deleted) it succeeds
    // at once, with the marker's number as cas.
    assert!(store.delete(&k).await.unwrap());
    assert_eq!(current_version(bao, &path), 2, "the delete marker");
    let after_delete = store.create(&k, &SecretValue::from("back"), &Metadata::new()).await.unwrap();
    assert!(after_delete.created);
    assert_eq!(current_version(bao, &path), 3);
    // After purge (metadata deleted) too.
    assert!(store.purge(&k, &PurgeTarget::Key).await.unwrap());
    let again = store.create(&k, &SecretValue::from("reborn"), &Metadata::new()).await.unwrap();
    assert!(again.created);
    assert_eq!(current_version(bao, &path), 1, "KV v2 counts from 1 again after a metadata delete");
    assert_ne!(again.version, out.version, "the two version 1s are told apart");
    // A version of the earlier life never matches the new one.
    let err = store.replace(&k, &SecretValue::from("aba"), &Metadata::new(), &out.version).await.unwrap_err();
    assert!(reason_of!(err, PreconditionFailed).contains("current version is"));
    assert_eq!(value_of(bao, &path), "reborn");

    // Over a key another tool soft-deleted: missing, so create-only writes.
    let cli = key("soft-deleted");
    let cli_path = store.secret_path(&cli);
    bao_cli(bao, &["kv", "put", &cli_path, "value=old"]);
    bao_cli(bao, &["kv", "delete", &cli_path]);
    let out = store.create(&cli, &SecretValue::from("new"), &Metadata::new()).await.unwrap();
    assert!(out.created && out.version.as_str().starts_with("2-"), "{out:?}");
    assert_eq!(value_of(bao, &cli_path), "new");
    let got = store.get(&cli).await.unwrap().unwrap();
    assert_eq!((got.version, got.created_at), (out.version, out.created_at));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_is_cas_on_the_current_version() {
    let Some((bao, store, k, path)) = key_on_secret_mount("rotating") else { return };
    let m = Metadata::try_from([("owner", "ops")]).unwrap();

    // Missing: the condition fails, nothing is created.
    let someday = Version::new("1-1").unwrap();
    let err = store.replace(&k, &SecretValue::from("x"), &m, &someday).await.unwrap_err();
    assert_eq!(reason_of!(err, PreconditionFailed), "the key does not exist");
    assert!(tokio::task::block_in_place(|| bao.cli(["kv", "metadata", "get", &path])).is_err());

    let v1 = store.set(&k, &SecretValue::from("one"), &m).await.unwrap();
    let v2 = store.replace(&k, &SecretValue::from("two"), &Metadata::new(), &v1.version).await.unwrap();
    assert!(!v2.created);
    assert_eq!(v2.created_at, v1.created_at);
    assert_ne!(v2.version, v1.version);
    assert_eq!(current_version(bao, &path), 2);
    assert_eq!(store.version(&k).await.unwrap(), Some(v2.version.clone()));

    // Stale, or not a version of this store at all: refused, nothing written.
    for stale in [v1.version.clone(), Version::new("2").unwrap(), Version::new("garbage").unwrap()] {
        let err = store.replace(&k, &SecretValue::from("stale"), &m, &stale).await.unwrap_err();
        reason_of!(err, PreconditionFailed);
    }
    assert_eq!(value_of(bao, &path), "two");
    assert_eq!(current_version(bao, &path), 2);

    // A write by another tool moves the version on.
    bao_cli(bao, &["kv", "put", &path, "value=by-cli"]);
    let err = store.replace(&k, &SecretValue::from("late"), &m, &v2.version).await.unwrap_err();
    reason_of!(err, PreconditionFailed);
    assert_eq!(value_of(bao, &path), "by-cli");

    // Soft-deleted by another tool: missing, even at its current version.
    let current = store.version(&k).await.unwrap().unwrap();
    assert!(current.as_str().starts_with("3-"));
    bao_cli(bao, &["kv", "delete", &path]);
    let err = store.replace(&k, &SecretValue::from("zombie"), &m, &current).await.unwrap_err();
    assert_eq!(reason_of!(err, PreconditionFailed), "the key does not exist");
    assert_eq!(current_version(bao, &path), 3, "nothing written over the deleted version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replacers_from_one_version_one_wins_the_rest_fail_the_precondition() {
    let Some(bao) = OpenBao::shared() else { return };
    let store: Arc<dyn CredentialStore> = Arc::new(store_on(bao, "secret"));
    let k = key("contended");
    let start = store.set(&k, &SecretValue::from("start"), &Metadata::new()).await.unwrap().version;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, k, start) = (store.clone(), k.clone(), start.clone());
            tokio::spawn(async move {
                store.replace(&k, &SecretValue::new(format!("writer-{i}")), &Metadata::new(), &start).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(out) => winners.push((i, out)),
            Err(e) => {
                reason_of!(e, PreconditionFailed);
            }
        }
    }
    assert_eq!(winners.len(), 1, "exactly one replace wins");
    let (i, out) = &winners[0];
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(got.value.expose_str().unwrap(), format!("writer-{i}"));
    assert_eq!(&got.version, &out.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_upserts_all_succeed_and_one_reports_created() {
    let Some(bao) = OpenBao::shared() else { return };
    let store: Arc<dyn CredentialStore> = Arc::new(store_on(bao, "secret"));
    let k = key("fresh");
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, k) = (store.clone(), k.clone());
            tokio::spawn(
                async move { store.set(&k, &SecretValue::new(format!("w{i}")), &Metadata::new()).await },
            )
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap().expect("an upsert never fails for losing a race"));
    }
    assert_eq!(outcomes.iter().filter(|o| o.created).count(), 1, "{outcomes:?}");
    let first = outcomes.iter().find(|o| o.created).unwrap();
    assert!(first.version.as_str().starts_with("1-"));
    let got = store.get(&k).await.unwrap().unwrap();
    assert_eq!(got.created_at, first.created_at);
    assert!(outcomes.iter().all(|o| o.created_at == first.created_at), "{outcomes:?}");
    let mut versions: Vec<_> = outcomes.iter().map(|o| o.version.clone()).collect();
    versions.sort();
    versions.dedup();
    assert_eq!(versions.len(), 8, "every write is its own version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_that_requires_check_and_set_works() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = unique_name("kvcas");
    tokio::task::block_in_place(|| {
        bao.enable_kv_v2(&mount);
        bao.cli(["write", &format!("{mount}/config"), "cas_required=true"]).unwrap();
    });
    let store = store_on(bao, &mount);
    let k = key("guarded");
    let path = store.secret_path(&k);
    let refused = tokio::task::block_in_place(|| bao.cli(["kv", "put", &path, "value=no-cas"]));
    assert!(refused.is_err(), "the mount refuses writes without cas: {refused:?}");
    let a = store.set(&k, &SecretValue::from("one"), &Metadata::new()).await.unwrap();
    let b = store.set(&k, &SecretValue::from("two"), &Metadata::new()).await.unwrap();
    assert!(a.created && !b.created);
    let c = store.replace(&k, &SecretValue::from("three"), &Metadata::new(), &b.version).await.unwrap();
    reason_of!(
        store.create(&k, &SecretValue::from("x"), &Metadata::new()).await.unwrap_err(),
        PreconditionFailed
    );
    assert_eq!(store.get(&k).await.unwrap().unwrap().version, c.version);
    assert_eq!(value_of(bao, &path), "three");
    assert_eq!(current_version(bao, &path), 3);
}
