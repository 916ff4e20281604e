//! A key's history ([`CredentialStore::list_versions`],
//! [`CredentialStore::get_version`]), its retention, and restoring an
//! earlier version ([`CredentialStoreExt::restore`]): for stores that
//! declare [`versions`](credstore_core::Capabilities::versions).
//!
//! Every case runs on the handle the factory gives, a namespace of a shared
//! store for most backends: a key's history belongs to its handle's
//! namespace.

use std::collections::BTreeSet;
use std::time::Duration;

use credstore_core::{
    Clock as _, CredentialStore, CredentialStoreExt, Metadata, PurgeTarget, SecretValue, SetOptions,
    SetOutcome, VersionState, MAX_PAGE_SIZE,
};

use super::{
    all_versions, assert_precondition_failed, assert_unchanged, assert_unsupported, assert_version_not_found,
    at, caps, distance, foreign_version, kept, key, meta, meta_if, must_get, must_get_version, ns, on_clock,
    set, set_text, text, version_states,
};
use crate::StoreFactory;

/// How far a version's `written_at` may be from the `updated_at` its write
/// reported (a backend whose server keeps the time may round it).
const SLACK: Duration = Duration::from_secs(1);

/// Writes `n` versions of `k`, `"{tag}-{i}"` with metadata `round = i`
/// where the store keeps metadata; returns each outcome and its metadata,
/// oldest first.
async fn write_versions(
    store: &dyn CredentialStore,
    k: &credstore_core::CredentialKey,
    tag: &str,
    n: usize,
) -> Vec<(SetOutcome, Metadata)> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let m = meta_if(store, meta([("round", &*i.to_string())]));
        out.push((set(store, k, &SecretValue::from(format!("{tag}-{i}")), &m).await, m));
    }
    out
}

/// `list_versions` answers the versions newest first, the newest
/// `Current` and the others `Previous`, each with the time it was written
/// and the metadata written with it, never more than the retention keeps.
pub async fn list_versions_newest_first_with_states_times_and_metadata(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("history");
    let written = write_versions(&*store, &k, "h", 3).await;
    let listed = all_versions(&*store, &k, MAX_PAGE_SIZE).await;
    assert_eq!(listed.len(), kept(&*store, 3), "3 writes, retention {:?}", caps(&*store).retention);
    for (i, info) in listed.iter().enumerate() {
        let (out, m) = &written[written.len() - 1 - i];
        assert_eq!(info.version, out.version, "entry {i} is not the {i}-th newest write: not newest first");
        let state = if i == 0 { VersionState::Current } else { VersionState::Previous };
        assert_eq!(info.state, state, "entry {i} ({})", info.version);
        assert!(
            distance(info.written_at, out.updated_at) <= SLACK,
            "entry {i}: written_at {:?}, but the write reported {:?}",
            info.written_at,
            out.updated_at
        );
        assert_eq!(&info.metadata, m, "entry {i}: the metadata written with it");
        assert_eq!(info.expires_at, None, "entry {i} was written without an expiry");
    }
    for pair in listed.windows(2) {
        assert!(pair[0].written_at >= pair[1].written_at, "newer versions are written later: {pair:?}");
    }
}

/// `get_version` reads every kept version as it was written: value,
/// metadata, version, when it was written, no expiry; `created_at` is the
/// key's. The current one reads as `get` does.
pub async fn get_version_reads_every_kept_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("read-back");
    let written = write_versions(&*store, &k, "rb", 3).await;
    let current = must_get(&*store, &k).await;
    let first_created = written[0].0.created_at;
    let n = written.len();
    for (i, (out, m)) in written.iter().enumerate().skip(n - kept(&*store, n)) {
        let c = must_get_version(&*store, &k, &out.version).await;
        assert_eq!(c.key, k);
        assert_eq!(c.version, out.version, "get_version answered another version");
        assert_eq!(text(&c.value), format!("rb-{i}"), "the value of {}", out.version);
        assert_eq!(&c.metadata, m, "the metadata of {}", out.version);
        assert!(distance(c.updated_at, out.updated_at) <= SLACK, "updated_at of {}", out.version);
        assert!(distance(c.created_at, first_created) <= SLACK, "created_at of {} is the key's", out.version);
        assert_eq!(c.expires_at, None);
    }
    let again = must_get_version(&*store, &k, &current.version).await;
    assert_unchanged(&current, &again, "get_version of the current version");
}

/// `get_version` of a version the key never had (the newest of another
/// key's three) is
/// `None`, as is any version of a key never written; neither is an error.
pub async fn get_version_of_an_unknown_version_is_none(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mine = set_text(&*store, "known", "v").await;
    let other = foreign_version(&*store, &mine, "other").await;
    let got = store.get_version(&key("known"), &other).await;
    assert!(got.as_ref().is_ok_and(Option::is_none), "another key's version read as this one's: {got:?}");
    let got = store.get_version(&key("never-written"), &mine.version).await;
    assert!(got.as_ref().is_ok_and(Option::is_none), "a key never written has a version: {got:?}");
}

/// Following `next_cursor` page by page yields each kept version exactly
/// once, in the order of one big page.
pub async fn list_versions_pages_walk_each_version_once(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("paged");
    write_versions(&*store, &k, "p", 7).await;
    let whole = all_versions(&*store, &k, MAX_PAGE_SIZE).await;
    assert_eq!(whole.len(), kept(&*store, 7));
    for page in [1, 2, 3] {
        let walked = all_versions(&*store, &k, page).await;
        assert_eq!(walked, whole, "pages of {page} differ from one page");
    }
    let unique: BTreeSet<_> = whole.iter().map(|v| v.version.clone()).collect();
    assert_eq!(unique.len(), whole.len(), "a version listed twice");
}

/// A key never written has no versions: an empty page, not an error.
pub async fn list_versions_of_a_never_written_key_is_empty(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "neighbour", "v").await;
    let page = store.list_versions(&key("nobody"), &Default::default()).await;
    let page = page.unwrap_or_else(|e| panic!("list_versions of a missing key failed: {e}"));
    assert!(page.versions.is_empty() && page.next_cursor.is_none(), "{page:?}");
}

/// A key's history belongs to its namespace: the same key in two
/// namespaces of one store lists only its own versions, reads none of the
/// other's, and a purge in one leaves the other.
pub async fn history_is_per_namespace(f: &dyn StoreFactory) {
    let store = f.create().await;
    let a = store.with_namespace(&ns("hist_a")).expect("a namespace handle");
    let b = store.with_namespace(&ns("hist_b")).expect("a namespace handle");
    let k = key("shared-name");
    let in_a = write_versions(&*a, &k, "a", 2).await;
    let in_b = write_versions(&*b, &k, "b", 1).await;
    let listed_a: Vec<_> = version_states(&*a, &k).await.into_iter().map(|(v, _)| v).collect();
    let listed_b: Vec<_> = version_states(&*b, &k).await.into_iter().map(|(v, _)| v).collect();
    let want_a: Vec<_> = in_a.iter().rev().take(kept(&*a, 2)).map(|(o, _)| o.version.clone()).collect();
    assert_eq!(listed_a, want_a, "namespace a lists its own versions only");
    assert_eq!(listed_b, vec![in_b[0].0.version.clone()], "namespace b lists its own versions only");
    assert!(store.list_versions(&k, &Default::default()).await.expect("list_versions").versions.is_empty());
    for (out, _) in &in_a {
        // A store counting versions per key may have a version of the same
        // name in b: it must be b's own write, never a's.
        if let Some(c) = b.get_version(&k, &out.version).await.expect("get_version") {
            assert_eq!(text(&c.value), "b-0", "namespace b read a version written in a");
        }
    }
    assert!(a.purge(&k, &PurgeTarget::Key).await.expect("purge"));
    assert_eq!(text(&must_get(&*b, &k).await.value), "b-0", "a purge in a reached b");
    assert_eq!(version_states(&*b, &k).await.len(), 1);
}

/// With `retention.max_versions` = n, writing n + 2 versions keeps the
/// newest n: the two oldest are gone from `list_versions` and
/// `get_version`.
pub async fn retention_max_versions_drops_the_oldest(f: &dyn StoreFactory) {
    let store = f.create().await;
    let max = caps(&*store).retention.max_versions.expect("a declared max_versions") as usize;
    let k = key("retained");
    let written = write_versions(&*store, &k, "r", max + 2).await;
    let listed: Vec<_> = version_states(&*store, &k).await.into_iter().map(|(v, _)| v).collect();
    let newest: Vec<_> = written.iter().rev().take(max).map(|(o, _)| o.version.clone()).collect();
    assert_eq!(listed, newest, "max_versions {max}: the newest {max} are kept");
    for (out, _) in &written[..2] {
        let got = store.get_version(&k, &out.version).await.expect("get_version");
        assert!(got.is_none(), "version {} is past the retention of {max}, yet still readable", out.version);
    }
    assert_eq!(text(&must_get(&*store, &k).await.value), format!("r-{}", max + 1));
}

/// With `retention.max_age`, a version superseded that long ago, by the
/// store's clock, is gone; one a nanosecond younger is kept; the current
/// version stays however old it is.
pub async fn retention_max_age_drops_superseded_versions(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let age = caps(&*store).retention.max_age.expect("a declared max_age");
    let k = key("aged");
    let first = set_text(&*store, "aged", "old").await;
    clock.advance(Duration::from_secs(1));
    let superseded_at = clock.now();
    let second = set_text(&*store, "aged", "new").await;
    clock.set(superseded_at + age - Duration::from_nanos(1));
    let states = version_states(&*store, &k).await;
    assert_eq!(
        states,
        vec![
            (second.version.clone(), VersionState::Current),
            (first.version.clone(), VersionState::Previous)
        ],
        "a nanosecond before max_age the superseded version is kept"
    );
    must_get_version(&*store, &k, &first.version).await;
    clock.set(superseded_at + age);
    let states = version_states(&*store, &k).await;
    assert_eq!(states, vec![(second.version.clone(), VersionState::Current)], "at max_age it is gone");
    assert!(store.get_version(&k, &first.version).await.expect("get_version").is_none());
    clock.set(superseded_at + age * 3);
    assert_eq!(text(&must_get(&*store, &k).await.value), "new", "the current version is always kept");
    must_get_version(&*store, &k, &second.version).await;
}

/// `restore` writes the old value and metadata back as a new version (one
/// the key never had), keeps `created_at`, and the restored version stays
/// in the history below it.
pub async fn restore_writes_the_old_value_and_metadata_as_a_new_version(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("rollback");
    let written = write_versions(&*store, &k, "rb", 2).await;
    let (good, bad) = (&written[0].0, &written[1].0);
    let out = store
        .restore(&k, &good.version, &at(&*store, &bad.version))
        .await
        .unwrap_or_else(|e| panic!("restore of a kept version failed: {e}"));
    assert!(!out.created, "a restore over a present key is an overwrite");
    assert!(out.version != good.version && out.version != bad.version, "the restore reused a version");
    let c = must_get(&*store, &k).await;
    assert_eq!((text(&c.value), &c.version), ("rb-0", &out.version));
    assert_eq!(c.metadata, written[0].1, "the restored metadata");
    assert!(distance(c.created_at, good.created_at) <= SLACK, "a restore keeps created_at");
    let listed: Vec<_> = version_states(&*store, &k).await;
    let want: Vec<_> = [
        (out.version.clone(), VersionState::Current),
        (bad.version.clone(), VersionState::Previous),
        (good.version.clone(), VersionState::Previous),
    ]
    .into_iter()
    .take(kept(&*store, 3))
    .collect();
    assert_eq!(listed, want, "the restore is a new version on top; the restored one stays");
    if kept(&*store, 3) == 3 {
        assert_eq!(text(&must_get_version(&*store, &k, &good.version).await.value), "rb-0");
    }
}

/// A rollback raced by a rotation: the restorer read version 2 as current,
/// another write landed version 3, and the restore conditional on version 2
/// fails with `PreconditionFailed`, changing neither the value nor the
/// history. (A store without replace-if-version writes refuses the
/// conditional restore as unsupported.)
pub async fn restore_under_a_racing_write_fails_and_changes_nothing(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("raced-rollback");
    let written = write_versions(&*store, &k, "rr", 2).await;
    let read = must_get(&*store, &k).await;
    set(&*store, &k, &SecretValue::from("rotated-meanwhile"), &Metadata::new()).await;
    let before = must_get(&*store, &k).await;
    let history = version_states(&*store, &k).await;
    let restored = store.restore(&k, &written[0].0.version, &SetOptions::replace(read.version.clone())).await;
    if caps(&*store).replace_if_version {
        assert_precondition_failed(restored, "a restore conditional on a version no longer current");
    } else {
        assert_unsupported(restored, "a restore conditional on a version");
    }
    assert_unchanged(&before, &must_get(&*store, &k).await, "after the refused restore");
    assert_eq!(version_states(&*store, &k).await, history, "the refused restore changed the history");
}

/// Restoring a version the key never had is `VersionNotFound`, with
/// nothing written; so is restoring any version of a key never written.
pub async fn restore_of_an_unknown_version_is_version_not_found(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("restore-unknown");
    let mine = set_text(&*store, "restore-unknown", "v").await;
    let elsewhere = foreign_version(&*store, &mine, "restore-elsewhere").await;
    let before = must_get(&*store, &k).await;
    let history = version_states(&*store, &k).await;
    let r = store.restore(&k, &elsewhere, &SetOptions::new()).await;
    assert_version_not_found(r, "a restore of another key's version");
    assert_unchanged(&before, &must_get(&*store, &k).await, "after the refused restore");
    assert_eq!(version_states(&*store, &k).await, history);
    let missing = key("restore-never-written");
    let r = store.restore(&missing, &elsewhere, &SetOptions::new()).await;
    assert_version_not_found(r, "a restore of a key never written");
    assert!(store.get(&missing).await.expect("get").is_none(), "the refused restore created the key");
}
