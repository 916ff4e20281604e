//! Fault tests against real OpenBao dev servers: a server stopped mid-run
//! and brought back on the same port, a sealed server, a wrong token, a KV v1
//! mount, a missing mount, and a server that accepts connections but never
//! answers.
//!
//! Tests that stop or seal a server start one of their own; the others share
//! this binary's server.

use std::time::{Duration, Instant};

use credstore_conformance::fixtures::key;
use credstore_conformance::unique_name;
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId, Version};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{VaultConfig, VaultStore};

fn store(bao: &OpenBao, timeout: Duration) -> VaultStore {
    let config = VaultConfig::new(bao.address())
        .token(SecretValue::from(bao.root_token()))
        .prefix(&unique_name("faults"))
        .timeout(timeout);
    VaultStore::new(StoreId::new(unique_name("vault-faults")).unwrap(), config).unwrap()
}

/// Runs every operation, conditional writes included, and checks each fails
/// fast with a retriable error whose text holds `reason_part`.
async fn all_ops_fail_retriable(store: &VaultStore, within: Duration, reason_part: &str) {
    let k = key("k");
    let v = SecretValue::from("the-value-SECRET");
    let started = Instant::now();
    let errors: Vec<(&str, Error)> = vec![
        ("set", store.set(&k, &v, &Metadata::new()).await.map(drop).unwrap_err()),
        ("create", store.create(&k, &v, &Metadata::new()).await.map(drop).unwrap_err()),
        (
            "replace",
            store
                .replace(&k, &v, &Metadata::new(), &Version::new("1-1").unwrap())
                .await
                .map(drop)
                .unwrap_err(),
        ),
        ("get", store.get(&k).await.map(drop).unwrap_err()),
        ("has", store.has(&k).await.map(drop).unwrap_err()),
        ("version", store.version(&k).await.map(drop).unwrap_err()),
        ("delete", store.delete(&k).await.map(drop).unwrap_err()),
        ("list", store.list(&Default::default()).await.map(drop).unwrap_err()),
    ];
    let elapsed = started.elapsed();
    assert!(elapsed < within * 8, "eight failing operations took {elapsed:?}");
    for (op, err) in errors {
        assert!(err.is_retriable(), "{op}: expected a retriable error, got {err:?}");
        assert!(matches!(err, Error::Unavailable { .. }), "{op}: {err:?}");
        let text = format!("{err} {err:?}");
        assert!(text.contains(reason_part), "{op}: {text}");
        assert!(!text.contains("SECRET") && !text.contains(store_token_marker()), "{op}: {text}");
    }
}

fn store_token_marker() -> &'static str {
    "credstore-root-"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_is_unavailable_then_the_same_store_recovers_on_restart() {
    let Some(bao) = OpenBao::start() else { return };
    let timeout = Duration::from_secs(3);
    let store = store(&bao, timeout);
    let k = key("survivor");
    store.set(&k, &SecretValue::from("before"), &Metadata::new()).await.unwrap();
    assert!(store.check_availability().await.available);

    tokio::task::block_in_place(|| bao.stop());
    let started = Instant::now();
    let a = store.check_availability().await;
    assert!(started.elapsed() <= timeout + Duration::from_millis(500), "probe took {:?}", started.elapsed());
    assert!(!a.available);
    // The first request may still go out on a pooled connection the stopped
    // server closed under it (seen on a loaded machine): "connection closed
    // before message completed". The next one finds the port closed.
    let a = store.check_availability().await;
    assert!(!a.available);
    let reason = a.reason.unwrap();
    assert_eq!(reason, format!("connection refused at {}", bao.address()));
    all_ops_fail_retriable(&store, timeout, "connection refused").await;
    // The native cause is kept, sanitized: the network error chain.
    let err = store.get(&k).await.unwrap_err();
    let chain: Vec<String> = std::iter::successors(std::error::Error::source(&err), |e| (*e).source())
        .map(ToString::to_string)
        .collect();
    assert!(!chain.is_empty(), "{err:?}");
    assert!(chain.iter().any(|c| c.to_lowercase().contains("refused")), "{chain:?}");
    assert!(!format!("{err:#} {chain:?}").contains(bao.root_token()));

    tokio::task::block_in_place(|| bao.restart());
    // The same store, not rebuilt: the dev server lost its data, but works.
    let a = store.check_availability().await;
    assert!(a.available, "{:?}", a.reason);
    assert!(store.get(&k).await.unwrap().is_none(), "dev mode keeps nothing across a restart");
    let out = store.set(&k, &SecretValue::from("after"), &Metadata::new()).await.unwrap();
    assert!(out.created);
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_server_reports_sealed() {
    let Some(bao) = OpenBao::start() else { return };
    let timeout = Duration::from_secs(3);
    let store = store(&bao, timeout);
    store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    tokio::task::block_in_place(|| bao.seal());
    let a = store.check_availability().await;
    assert!(!a.available);
    assert_eq!(a.reason.as_deref(), Some("vault is sealed"));
    all_ops_fail_retriable(&store, timeout, "sealed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_reports_token_rejected() {
    let Some(bao) = OpenBao::shared() else { return };
    let wrong = "credstore-root-WRONG-TOKEN-0123";
    let config =
        VaultConfig::new(bao.address()).token(SecretValue::from(wrong)).prefix(&unique_name("wrong"));
    let store = VaultStore::new(StoreId::new("vault-wrong-token").unwrap(), config).unwrap();
    let a = store.check_availability().await;
    assert!(!a.available);
    assert_eq!(a.reason.as_deref(), Some("token rejected"));
    let k = key("k");
    for err in [
        store.get(&k).await.map(drop).unwrap_err(),
        store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.map(drop).unwrap_err(),
        store.list(&Default::default()).await.map(drop).unwrap_err(),
    ] {
        assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
        assert!(!err.is_retriable());
        let text = format!("{err} {err:?} {store:?}");
        assert!(!text.contains(wrong) && !text.contains(bao.root_token()), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_v1_and_missing_mounts_are_refused_with_a_reason() {
    let Some(bao) = OpenBao::shared() else { return };
    let v1 = unique_name("kv1");
    tokio::task::block_in_place(|| bao.enable_kv_v1(&v1));
    let config = |mount: &str| {
        VaultConfig::new(bao.address()).token(SecretValue::from(bao.root_token())).mount(mount).prefix("p")
    };
    let store = VaultStore::new(StoreId::new("vault-kv1").unwrap(), config(&v1)).unwrap();
    let a = store.check_availability().await;
    assert!(!a.available);
    assert_eq!(a.reason.unwrap(), format!("mount '{v1}' is not a KV v2 mount (it is KV version 1)"));
    let err = store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap_err();
    assert!(matches!(&err, Error::Config { reason, .. } if reason.contains("not a KV v2 mount")), "{err:?}");
    assert!(!err.is_retriable());
    // Nothing was written into the v1 mount.
    let listed = bao.cli(["kv", "list", &v1]);
    assert!(listed.is_err() || listed.as_deref() == Ok(""), "{listed:?}");

    let missing = unique_name("nomount");
    let store = VaultStore::new(StoreId::new("vault-nomount").unwrap(), config(&missing)).unwrap();
    let a = store.check_availability().await;
    assert_eq!(a.reason.unwrap(), format!("mount '{missing}' does not exist or the token cannot use it"));
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(matches!(&err, Error::Config { reason, .. } if reason.contains("does not exist")), "{err:?}");
}

/// A server that accepts connections and never answers: the probe and the
/// operations give up at the timeout, retriably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_server_times_out_within_the_timeout() {
    let addr = credstore_test_servers::silent_server();
    let timeout = Duration::from_millis(800);
    let config = VaultConfig::new(format!("http://{addr}")).token(SecretValue::from("t")).timeout(timeout);
    let store = VaultStore::new(StoreId::new("vault-silent").unwrap(), config).unwrap();
    let started = Instant::now();
    let a = store.check_availability().await;
    let took = started.elapsed();
    assert!(took < timeout + Duration::from_millis(500), "probe took {took:?}");
    assert!(!a.available);
    assert!(a.reason.as_deref().unwrap().contains("no answer from"), "{:?}", a.reason);
    let started = Instant::now();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(started.elapsed() < timeout + Duration::from_millis(500), "get took {:?}", started.elapsed());
    assert!(err.is_retriable(), "{err:?}");
}

/// Over HTTPS: the server's own CA is trusted when configured, refused (not
/// retriably) when not, and anything goes with `skip_verify`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_ca_cert_and_skip_verify() {
    let dir = std::env::temp_dir().join(unique_name("credstore-bao-tls"));
    std::fs::create_dir_all(&dir).unwrap();
    let Some(bao) = tokio::task::block_in_place(|| OpenBao::start_tls(&dir)) else { return };
    assert!(bao.address().starts_with("https://"));
    let config = || {
        VaultConfig::new(bao.address())
            .token(SecretValue::from(bao.root_token()))
            .prefix(&unique_name("tls"))
            .timeout(Duration::from_secs(5))
    };
    let id = || StoreId::new("vault-tls").unwrap();
    let k = key("over-tls");

    let trusted = VaultStore::new(id(), config().ca_cert(bao.ca_cert().unwrap())).unwrap();
    let a = trusted.check_availability().await;
    assert!(a.available, "{:?}", a.reason);
    trusted.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    assert_eq!(trusted.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "v");

    let untrusted = VaultStore::new(id(), config()).unwrap();
    let a = untrusted.check_availability().await;
    assert!(!a.available);
    let reason = a.reason.unwrap();
    assert!(reason.contains(&bao.address()) && reason.to_lowercase().contains("certificate"), "{reason}");
    let err = untrusted.get(&k).await.unwrap_err();
    assert!(
        matches!(err, Error::Config { .. }),
        "an untrusted certificate is a configuration error: {err:?}"
    );

    let reckless = VaultStore::new(id(), config().skip_verify(true)).unwrap();
    assert!(reckless.has(&k).await.is_ok());
    drop(bao);
    std::fs::remove_dir_all(&dir).unwrap();
}
