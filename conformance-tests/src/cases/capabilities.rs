//! Declared capabilities are honest both ways: what is declared on works,
//! what is declared off is refused with `Unsupported` and stores nothing.

use std::time::{Duration, SystemTime};

use credstore_core::{
    CredentialStoreExt, FeedEvent, ListOptions, Metadata, PurgeTarget, Retention, SecretValue, SetOptions,
    VersionListOptions, VersionState,
};

use super::{
    absent, assert_precondition_failed, assert_unchanged, assert_unsupported, at, caps, kept, key, meta,
    must_get, must_get_version, ns, set, set_text, text, version_states, FEED_WAIT,
};
use crate::StoreFactory;

/// `list: true` means `list` works; `false` means `Unsupported`.
pub async fn capabilities_list_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "listed", "v").await;
    let result = store.list(&ListOptions::new()).await;
    if caps(&*store).list {
        let page = result.expect("the store declares list, so list must work");
        assert_eq!(page.keys, vec![key("listed")]);
    } else {
        assert_unsupported(result, "list");
    }
}

/// `metadata: true` means metadata round-trips; `false` means `Unsupported`
/// for non-empty metadata, with nothing stored.
pub async fn capabilities_metadata_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("meta-honesty");
    let m = meta([("x", "y")]);
    let result = store.set(&k, &SecretValue::from("v"), &m).await;
    if caps(&*store).metadata {
        result.expect("the store declares metadata, so a set with metadata must work");
        assert_eq!(must_get(&*store, &k).await.metadata, m);
    } else {
        assert_unsupported(result, "metadata");
        assert!(absent(&*store, &k).await, "a refused write with metadata stored the value");
    }
}

/// `binary: true` means a non-UTF-8 value round-trips; `false` means
/// `Unsupported`, with nothing stored and an existing value unchanged.
pub async fn capabilities_binary_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("binary-honesty");
    let bin = SecretValue::from(vec![0xff, 0x00, 0xfe]);
    let result = store.set(&k, &bin, &Metadata::new()).await;
    if caps(&*store).binary {
        result.expect("the store declares binary, so a binary value must be stored");
        assert!(must_get(&*store, &k).await.value == bin);
    } else {
        assert_unsupported(result, "a binary value");
        assert!(absent(&*store, &k).await, "a refused binary value was stored");
        set_text(&*store, "binary-honesty", "text").await;
        let before = must_get(&*store, &k).await;
        assert_unsupported(store.set(&k, &bin, &Metadata::new()).await, "a binary overwrite");
        assert_unchanged(&before, &must_get(&*store, &k).await, "after a refused binary overwrite");
    }
}

/// `create_only: true` means create-only writes create and then refuse;
/// `false` means `Unsupported`, with nothing stored or changed.
pub async fn capabilities_create_only_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("create-honesty");
    let result = store.create(&k, &SecretValue::from("v"), &Metadata::new()).await;
    if caps(&*store).create_only {
        result.expect("the store declares create_only, so a create of an absent key must work");
        let again = store.create(&k, &SecretValue::from("w"), &Metadata::new()).await;
        assert_precondition_failed(again, "a second create-only write");
    } else {
        assert_unsupported(result, "a create-only write");
        assert!(absent(&*store, &k).await, "a refused create-only write stored the value");
        set_text(&*store, "create-honesty", "v").await;
        let before = must_get(&*store, &k).await;
        assert_unsupported(store.create(&k, &SecretValue::from("w"), &Metadata::new()).await, "create-only");
        assert_unchanged(&before, &must_get(&*store, &k).await, "after a refused create-only write");
    }
}

/// `replace_if_version: true` means a replace at the current version works
/// and a stale one fails; `false` means `Unsupported`, nothing changed.
pub async fn capabilities_replace_if_version_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("replace-honesty");
    let first = set(&*store, &k, &SecretValue::from("v1"), &Metadata::new()).await;
    let result = store.replace(&k, &SecretValue::from("v2"), &Metadata::new(), &first.version).await;
    if caps(&*store).replace_if_version {
        result.expect("the store declares replace_if_version, so a replace at the current version must work");
        let stale = store.replace(&k, &SecretValue::from("v3"), &Metadata::new(), &first.version).await;
        assert_precondition_failed(stale, "a stale replace");
    } else {
        assert_unsupported(result, "a replace-if-version write");
        let before = must_get(&*store, &k).await;
        assert_eq!(before.version, first.version, "a refused replace changed the version");
        let missing = key("replace-honesty-missing");
        let r = store.replace(&missing, &SecretValue::from("v"), &Metadata::new(), &first.version).await;
        assert_unsupported(r, "a replace-if-version write of a missing key");
        assert!(absent(&*store, &missing).await);
    }
}

/// A persistence class that survives a restart needs a factory that
/// reopens the store with its data; a store that lives in the process must
/// not keep data across a reopen (the factory may return `None`).
pub async fn capabilities_persistence_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let persistence = caps(&*store).persistence;
    let k = key("persist-honesty");
    set_text(&*store, "persist-honesty", "v").await;
    match f.reopen(store).await {
        Some(reopened) if persistence.survives_restart() => {
            assert!(
                reopened.has(&k).await.expect("has"),
                "a store declared {persistence:?} lost data on reopen"
            )
        }
        Some(reopened) => assert!(
            !reopened.has(&k).await.expect("has"),
            "the store keeps data across a reopen but declares {persistence:?}"
        ),
        None => assert!(
            !persistence.survives_restart(),
            "the store declares {persistence:?}, but the factory cannot reopen it"
        ),
    }
}

/// `can_be_unavailable: false` means the probe always answers available and
/// the factory has no unreachable variant; `true` needs one.
pub async fn capabilities_availability_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let unreachable = f.unreachable().await;
    if caps(&*store).can_be_unavailable {
        assert!(
            unreachable.is_some(),
            "declares can_be_unavailable but the factory builds no unreachable store"
        );
    } else {
        assert!(
            unreachable.is_none(),
            "declares it is never unavailable, yet the factory builds an unreachable store"
        );
        for _ in 0..3 {
            let a = store.check_availability().await;
            assert!(a.available, "a store that is never unavailable answered {a:?}");
        }
    }
}

/// `change_feed: true` means `subscribe` gives a feed that reports a write;
/// `false` means `Unsupported`, from every handle and before any I/O (the
/// factory's unreachable store, if any, answers it too).
pub async fn capabilities_change_feed_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    if caps(&*store).change_feed {
        let mut feed =
            store.subscribe().await.expect("the store declares change_feed, so subscribe must work");
        let written = set_text(&*store, "feed-honesty", "v").await;
        let event = tokio::time::timeout(FEED_WAIT, feed.next()).await;
        match event.unwrap_or_else(|_| panic!("the feed reported no change within {} s", FEED_WAIT.as_secs()))
        {
            Some(FeedEvent::Changed(change)) => {
                assert_eq!((change.key, change.version), (key("feed-honesty"), Some(written.version)))
            }
            other => panic!("expected the write to be reported, got {other:?}"),
        }
    } else {
        assert_unsupported(store.subscribe().await, "subscribe");
        let nested = store.with_namespace(&ns("feed-honesty")).expect("a namespace handle");
        assert_unsupported(nested.subscribe().await, "subscribe on a namespace handle");
        if let Some(unreachable) = f.unreachable().await {
            if !caps(&*unreachable).change_feed {
                assert_unsupported(
                    unreachable.subscribe().await,
                    "subscribe on an unreachable store (before I/O)",
                );
            }
        }
    }
}

/// `versions: true` means a key's history lists, reads and restores (within
/// a retention that keeps at least the current version); `false` means
/// `get_version`, `list_versions`, purging one version and `restore` are
/// `Unsupported` before any I/O, with nothing changed, and the declared
/// retention is [`Retention::NONE`].
pub async fn capabilities_versions_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("versions-honesty");
    let first = set_text(&*store, "versions-honesty", "v1").await;
    let second = set_text(&*store, "versions-honesty", "v2").await;
    let c = caps(&*store);
    if c.versions {
        let states = version_states(&*store, &k).await;
        assert_eq!(states.first(), Some(&(second.version.clone(), VersionState::Current)), "{states:?}");
        assert_eq!(states.len(), kept(&*store, 2), "retention {:?}", c.retention);
        assert_eq!(text(&must_get_version(&*store, &k, &second.version).await.value), "v2");
        if kept(&*store, 2) == 2 {
            assert_eq!(text(&must_get_version(&*store, &k, &first.version).await.value), "v1");
            store.restore(&k, &first.version, &at(&*store, &second.version)).await.expect("a restore");
            assert_eq!(text(&must_get(&*store, &k).await.value), "v1", "restore wrote the old value back");
        }
    } else {
        assert_eq!(c.retention, Retention::NONE, "a store without versions declares no retention");
        let before = must_get(&*store, &k).await;
        assert_unsupported(store.get_version(&k, &first.version).await, "get_version");
        assert_unsupported(store.list_versions(&k, &VersionListOptions::new()).await, "list_versions");
        assert_unsupported(
            store.purge(&k, &PurgeTarget::Version(first.version.clone())).await,
            "purge(Version)",
        );
        assert_unsupported(store.restore(&k, &first.version, &SetOptions::new()).await, "restore");
        assert_unchanged(&before, &must_get(&*store, &k).await, "after the refused history calls");
        let nested = store.with_namespace(&ns("versions-honesty")).expect("a namespace handle");
        assert_unsupported(
            nested.list_versions(&k, &VersionListOptions::new()).await,
            "list_versions (nested)",
        );
        if let Some(unreachable) = f.unreachable().await {
            if !caps(&*unreachable).versions {
                let r = unreachable.get_version(&k, &first.version).await;
                assert_unsupported(r, "get_version on an unreachable store (before I/O)");
            }
        }
    }
}

/// `recover_deleted: true` means a delete keeps the history (the last
/// version `Deleted`) and a create-only restore recovers the key, and needs
/// `versions`; `false` with `versions` means a delete leaves no version.
pub async fn capabilities_recover_deleted_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("recover-honesty");
    let c = caps(&*store);
    let written = set_text(&*store, "recover-honesty", "v").await;
    assert!(store.delete(&k).await.expect("delete"));
    if c.recover_deleted {
        assert!(c.versions, "recover_deleted is declared without versions");
        let states = version_states(&*store, &k).await;
        assert_eq!(
            states,
            vec![(written.version.clone(), VersionState::Deleted)],
            "the history after a delete"
        );
        let out = store.restore(&k, &written.version, &SetOptions::create_only()).await;
        out.unwrap_or_else(|e| panic!("the store declares recover_deleted, but the recovery failed: {e}"));
        assert_eq!(text(&must_get(&*store, &k).await.value), "v");
    } else if c.versions {
        assert_eq!(
            version_states(&*store, &k).await,
            vec![],
            "a delete kept versions without recover_deleted"
        );
    } else {
        assert_unsupported(store.list_versions(&k, &VersionListOptions::new()).await, "list_versions");
        assert!(absent(&*store, &k).await);
    }
}

/// `expiry: true` means a write carries `expires_at` and `get` returns it;
/// `false` means such a write is `Unsupported` before any I/O, with nothing
/// stored or changed.
pub async fn capabilities_expiry_honest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("expiry-honesty");
    let now = store.info().now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs() + 3600);
    let options = SetOptions::new().with_expires_at(Some(at));
    let result = store.set_opts(&k, &SecretValue::from("v"), &Metadata::new(), &options).await;
    if caps(&*store).expiry {
        let out = result.expect("the store declares expiry, so a write with expires_at must work");
        let c = must_get(&*store, &k).await;
        assert_eq!((c.version, c.expires_at), (out.version, Some(at)), "get returns the expiry written");
    } else {
        assert_unsupported(result, "a write with expires_at");
        assert!(absent(&*store, &k).await, "a refused write with expires_at stored the value");
        set_text(&*store, "expiry-honesty", "plain").await;
        let before = must_get(&*store, &k).await;
        assert_eq!(before.expires_at, None, "a store without expiry reports one");
        let r = store.set_opts(&k, &SecretValue::from("w"), &Metadata::new(), &options).await;
        assert_unsupported(r, "an overwrite with expires_at");
        assert_unchanged(&before, &must_get(&*store, &k).await, "after a refused overwrite with expires_at");
    }
}
