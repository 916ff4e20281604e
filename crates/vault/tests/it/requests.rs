//! How many HTTP requests each operation makes, counted by a proxy on
//! loopback between the store and a real OpenBao dev server, and named
//! (method and path), so that an extra round trip fails CI, not only a
//! benchmark. The counts are the ones the crate docs state:
//!
//! | operation | requests |
//! |---|---|
//! | `get`, `has`, `version` | 1 |
//! | `set` of a key this connection saw in the last 30 s (read, written, found missing or deleted) | 1 |
//! | `set` of a key it did not see | 2 (read, write) |
//! | `create` | 1 (2 when the key exists: the refused write, then a read) |
//! | `replace` | 2 (read, write) |
//! | `delete` | 3 (read, delete marker, its soft delete) |
//! | `list` | 1, plus one read per listed key |
//! | `get_version` | 2 at once (the version's data, the key's metadata) |
//! | `list_versions` | 1 metadata read, plus one read per version listed |
//! | `purge` of the key | 2 (metadata read, metadata delete) |
//! | `purge` of a version | 2 (metadata read, destroy) |
//!
//! plus a metadata read on `get` and before the first write of a key last
//! written by credstore 0.1 or another tool at a version above 1.

use std::net::SocketAddr;
use std::time::Duration;

use credstore_conformance::fixtures::key;
use credstore_conformance::unique_name;
use credstore_core::{
    CredentialStore, CredentialStoreExt, ListOptions, Metadata, PurgeTarget, SecretValue, StoreId,
    VersionListOptions,
};
use credstore_test_servers::openbao::OpenBao;
use credstore_test_servers::proxy::CountingProxy;
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::bao_cli;

fn v(s: &str) -> SecretValue {
    SecretValue::from(s)
}

/// A store that reaches `bao` through `proxy`, warmed up (its one-time
/// mount check done) and with the proxy's count reset.
async fn store_via(bao: &OpenBao, proxy: &CountingProxy, prefix: &str) -> VaultStore {
    let config = VaultConfig::new(proxy.url())
        .token(SecretValue::from(bao.root_token()))
        .prefix(prefix)
        .timeout(Duration::from_secs(10));
    let store = VaultStore::new(StoreId::new("vault-requests").unwrap(), config).unwrap();
    let a = store.check_availability().await;
    assert!(a.available, "{:?}", a.reason);
    assert_eq!(
        proxy.take(),
        [
            "GET /v1/sys/health?standbyok=true&perfstandbyok=true".to_owned(),
            "GET /v1/auth/token/lookup-self".to_owned(),
            "GET /v1/sys/internal/ui/mounts/secret".to_owned(),
        ]
    );
    store
}

/// The shared server, a counting proxy to it, a fresh prefix and a store
/// that reaches the server through the proxy under that prefix.
struct Counted {
    bao: &'static OpenBao,
    proxy: CountingProxy,
    prefix: String,
    store: VaultStore,
}

impl Counted {
    /// `None` without a server; the prefix is `requests/<name>-<random>`.
    async fn setup(name: &str) -> Option<Self> {
        let bao = OpenBao::shared()?;
        let proxy = CountingProxy::start(SocketAddr::from(([127, 0, 0, 1], bao.port()))).unwrap();
        let prefix = format!("requests/{}", unique_name(name));
        let store = store_via(bao, &proxy, &prefix).await;
        Some(Self { bao, proxy, prefix, store })
    }

    /// The KV v2 data path of key `k`.
    fn data(&self, k: &str) -> String {
        format!("/v1/secret/data/{}/{k}", self.prefix)
    }

    /// The KV v2 metadata path of key `k`.
    fn metadata(&self, k: &str) -> String {
        format!("/v1/secret/metadata/{}/{k}", self.prefix)
    }

    /// A read of key `k`: vaultrs sends an empty query (no `version`), for
    /// the current version.
    fn get(&self, k: &str) -> String {
        format!("GET {}?", self.data(k))
    }

    /// A write of key `k`.
    fn post(&self, k: &str) -> String {
        format!("POST {}", self.data(k))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_makes_the_stated_requests() {
    let Some(counted) = Counted::setup("p").await else { return };
    let Counted { bao, proxy, prefix, store } = &counted;
    let get = |k: &str| counted.get(k);
    let post = |k: &str| counted.post(k);
    let metadata = |k: &str| counted.metadata(k);
    let m = Metadata::try_from([("owner", "ops")]).unwrap();

    // A key this connection never saw: read, then write with cas=0.
    let first = store.set(&key("a"), &v("one"), &m).await.unwrap();
    assert!(first.created);
    assert_eq!(proxy.take(), [get("a"), post("a")], "set of an unseen key");
    // Seen: one write, with cas and created_at.
    let second = store.set(&key("a"), &v("two"), &m).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(proxy.take(), [post("a")], "overwrite");

    // Reads: one request each.
    let got = store.get(&key("a")).await.unwrap().unwrap();
    assert_eq!((got.version.clone(), got.created_at), (second.version.clone(), first.created_at));
    assert_eq!(proxy.take(), [get("a")], "get");
    assert!(store.has(&key("a")).await.unwrap());
    assert_eq!(proxy.take(), [get("a")], "has");
    assert_eq!(store.version(&key("a")).await.unwrap(), Some(second.version.clone()));
    assert_eq!(proxy.take(), [get("a")], "version");
    assert!(store.get(&key("b")).await.unwrap().is_none());
    assert!(!store.has(&key("b")).await.unwrap());
    assert_eq!(proxy.take(), [get("b"), get("b")], "get and has of a missing key");

    // Found missing by a read: one write.
    assert!(store.set(&key("b"), &v("new"), &m).await.unwrap().created);
    assert_eq!(proxy.take(), [post("b")], "set after a read found the key missing");

    // Create-only: one write; two when the key exists.
    assert!(store.create(&key("c"), &v("c"), &m).await.unwrap().created);
    assert_eq!(proxy.take(), [post("c")], "create");
    assert!(store.create(&key("c"), &v("again"), &m).await.is_err());
    assert_eq!(proxy.take(), [post("c"), get("c")], "create of an existing key");

    // Replace: read (to check the version), then write with cas.
    let current = store.version(&key("c")).await.unwrap().unwrap();
    proxy.take();
    let replaced = store.replace(&key("c"), &v("c2"), &m, &current).await.unwrap();
    assert_eq!(proxy.take(), [get("c"), post("c")], "replace");
    assert!(!replaced.created);

    // Delete: a read (did it exist?), the delete marker with cas, its soft
    // delete; then set is one write, with the marker's number as cas.
    assert!(store.delete(&key("c")).await.unwrap());
    assert_eq!(proxy.take(), [get("c"), post("c"), format!("POST /v1/secret/delete/{prefix}/c")], "delete");
    assert!(store.set(&key("c"), &v("reborn"), &m).await.unwrap().created);
    assert_eq!(proxy.take(), [post("c")], "set after delete");

    // History: a version read is its data and the key's metadata, at once;
    // a listing is the metadata and each listed version's data.
    let versions = store.list_versions(&key("c"), &VersionListOptions::new()).await.unwrap();
    assert_eq!(versions.versions.len(), 3, "reborn, replaced, created: {versions:?}");
    let mut requests = proxy.take();
    assert_eq!(requests.remove(0), format!("GET {}", metadata("c")));
    requests.sort();
    let at = |n: u64| format!("GET {}?version={n}", counted.data("c"));
    assert_eq!(requests, [at(1), at(2), at(4)], "list_versions");
    let old = &versions.versions[2].version;
    store.get_version(&key("c"), old).await.unwrap().expect("kept");
    let mut requests = proxy.take();
    requests.sort();
    assert_eq!(requests, [at(1), format!("GET {}", metadata("c"))], "get_version");
    assert!(store.purge(&key("c"), &PurgeTarget::Version(old.clone())).await.unwrap());
    assert_eq!(
        proxy.take(),
        [format!("GET {}", metadata("c")), format!("POST /v1/secret/destroy/{prefix}/c")],
        "purge of a version"
    );

    // `has` or `version` on another connection is a hint for its upsert too.
    let other = store_via(bao, proxy, prefix).await;
    assert!(other.has(&key("a")).await.unwrap());
    let third = other.set(&key("a"), &v("three"), &m).await.unwrap();
    assert_eq!((third.created, third.created_at), (false, first.created_at));
    assert_eq!(proxy.take(), [get("a"), post("a")], "has, then set");

    // List: one LIST, one read per key (its current version's data tells
    // a delete marker and an expired credential apart from a live one).
    let listed = store.list(&ListOptions::new()).await.unwrap();
    assert_eq!(listed.keys, [key("a"), key("b"), key("c")]);
    let mut requests = proxy.take();
    assert_eq!(requests.remove(0), format!("LIST /v1/secret/metadata/{prefix}/"));
    requests.sort();
    assert_eq!(requests, ["a", "b", "c"].map(get), "list");

    // Purge of the key: metadata read (was anything there?), metadata delete.
    assert!(store.purge(&key("c"), &PurgeTarget::Key).await.unwrap());
    assert_eq!(
        proxy.take(),
        [format!("GET {}", metadata("c")), format!("DELETE {}", metadata("c"))],
        "purge of the key"
    );
}

/// Another client's write makes the hint stale: the write that used it is
/// refused (cas), and the store reads and writes again: three requests,
/// and the outcome is still exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_hint_costs_a_read_and_a_second_write_never_a_wrong_outcome() {
    let Some(Counted { bao, proxy, prefix, store: ours }) = Counted::setup("stale").await else { return };
    let theirs = VaultStore::new(
        StoreId::new("vault-other-client").unwrap(),
        VaultConfig::new(bao.address()).token(SecretValue::from(bao.root_token())).prefix(&prefix),
    )
    .unwrap();
    let k = key("shared");
    let path = format!("/v1/secret/data/{prefix}/shared");
    let first = ours.set(&k, &v("ours-1"), &Metadata::new()).await.unwrap();
    theirs.set(&k, &v("theirs"), &Metadata::new()).await.unwrap();
    proxy.take();
    let out = ours.set(&k, &v("ours-2"), &Metadata::new()).await.unwrap();
    assert_eq!(proxy.take(), [format!("POST {path}"), format!("GET {path}?"), format!("POST {path}")]);
    assert!(!out.created);
    assert_eq!(out.created_at, first.created_at);
    assert!(out.version.as_str().starts_with("3-"), "{:?}", out.version);
    // Deleted and re-created by the other client: the hint's cas fails
    // again, and the write sees the new credential.
    assert!(theirs.delete(&k).await.unwrap());
    let reborn = theirs.set(&k, &v("theirs-again"), &Metadata::new()).await.unwrap();
    proxy.take();
    let out = ours.set(&k, &v("ours-3"), &Metadata::new()).await.unwrap();
    assert_eq!(proxy.take().len(), 3);
    assert_eq!((out.created, out.created_at), (false, reborn.created_at));
    let got = ours.get(&k).await.unwrap().unwrap();
    assert_eq!((got.created_at, got.version), (reborn.created_at, out.version));
}

/// Keys written as credstore 0.1 wrote them (no `created_at` in the data),
/// here by the CLI: version 1 reads in one request, a later version in two
/// (the metadata holds its creation); the store's first write adds
/// `created_at`, and from then on one request does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_without_created_at_is_read_through_the_metadata_until_rewritten() {
    let Some(counted) = Counted::setup("old").await else { return };
    let Counted { bao, proxy, prefix, store } = &counted;
    let cli_path = |k: &str| format!("secret/{prefix}/{k}");
    let get = |k: &str| counted.get(k);
    let meta = |k: &str| format!("GET {}", counted.metadata(k));

    bao_cli(bao, &["kv", "put", &cli_path("v1"), "value=only"]);
    let once = store.get(&key("v1")).await.unwrap().unwrap();
    assert_eq!(once.created_at, once.updated_at);
    assert_eq!(proxy.take(), [get("v1")], "version 1: its own created_time is the creation");

    bao_cli(bao, &["kv", "put", &cli_path("v2"), "value=first"]);
    bao_cli(bao, &["kv", "put", &cli_path("v2"), "value=second"]);
    let old = store.get(&key("v2")).await.unwrap().unwrap();
    assert_eq!(old.value.expose_str().unwrap(), "second");
    assert!(old.created_at < old.updated_at);
    assert_eq!(proxy.take(), [get("v2"), meta("v2")], "version 2 without created_at");

    // A fresh connection, so that nothing was seen: read (data, metadata), write.
    let fresh = store_via(bao, proxy, prefix).await;
    let out = fresh.set(&key("v2"), &v("third"), &Metadata::new()).await.unwrap();
    assert_eq!(out.created_at, old.created_at, "the first write keeps the creation");
    assert_eq!(proxy.take(), [get("v2"), meta("v2"), counted.post("v2")]);
    let new = fresh.get(&key("v2")).await.unwrap().unwrap();
    assert_eq!((new.created_at, new.version), (old.created_at, out.version));
    assert_eq!(proxy.take(), [get("v2")], "rewritten: one request");
}
