//! The sealed history (schema 4): kept versions bound to their role and
//! expiry, retention by count and by the store clock, recovery after a
//! delete, purge that leaves no ciphertext in the file, rotation of the
//! history with the data key, and files of earlier versions gaining a
//! history at their next write.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use credstore_conformance::fixtures::key;
use credstore_core::{
    Clock, CredentialStore, CredentialStoreExt, Error, ListOptions, ManualClock, Metadata, PurgeTarget,
    Retention, SecretValue, SetOptions, Version, VersionListOptions, VersionState,
};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

use crate::envelope::write_0_2_database;
use crate::util::*;

/// A store on `path` with `retention`, on `clock`.
async fn open_on(path: &Path, master: &MasterKey, retention: Retention, clock: &ManualClock) -> SqliteStore {
    let clock: Arc<dyn Clock> = Arc::new(clock.clone());
    open_with(SqliteConfig::new(path).master_key(master.clone()).retention(retention).clock(clock)).await
}

/// The versions of `k`, newest first, with their states.
async fn versions(store: &dyn CredentialStore, k: &str) -> Vec<(Version, VersionState)> {
    let page = store.list_versions(&key(k), &VersionListOptions::new()).await.unwrap();
    assert_eq!(page.next_cursor, None);
    page.versions.into_iter().map(|v| (v.version, v.state)).collect()
}

async fn write(store: &dyn CredentialStore, k: &str, v: &str) -> Version {
    store.set(&key(k), &SecretValue::from(v), &Metadata::new()).await.unwrap().version
}

async fn value_at(store: &dyn CredentialStore, k: &str, v: &Version) -> Option<String> {
    store.get_version(&key(k), v).await.unwrap().map(|c| c.value.expose_str().expect("text").to_owned())
}

/// The sealed bytes of `k`'s row at `version` in `table`.
fn sealed_in(path: &Path, table: &str, k: &str, version: &Version) -> Vec<u8> {
    raw(path)
        .query_row(
            &format!("SELECT sealed FROM {table} WHERE key = ?1 AND version = ?2"),
            rusqlite::params![k, version.as_str().parse::<i64>().unwrap()],
            |r| r.get(0),
        )
        .unwrap()
}

fn history_rows(path: &Path, k: &str) -> i64 {
    raw(path).query_row("SELECT count(*) FROM credential_history WHERE key = ?1", [k], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_history_row_copied_over_the_current_row_reads_as_integrity_not_a_value() {
    let (_dir, path, master) = keyed_temp_db("h.db");
    let store = open(&path, &master).await;
    let old = write(&store, "k", "old-secret").await;
    let current = write(&store, "k", "new-secret").await;
    let conn = raw(&path);
    // The history's own copy of the current version: same place, same
    // version, same expiry; only its role differs.
    conn.execute(
        "UPDATE credentials SET (nonce, sealed) =
             (SELECT nonce, sealed FROM credential_history h WHERE h.key = 'k' AND h.version = ?1)
         WHERE key = 'k'",
        [current.as_str().parse::<i64>().unwrap()],
    )
    .unwrap();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(!err.to_string().contains("secret"), "{err}");
    // The older version's row with all its columns, put back as current.
    conn.execute(
        "UPDATE credentials SET (nonce, sealed, created_at, updated_at, version, kind, expires_at) =
             (SELECT nonce, sealed, created_at, updated_at, version, kind, expires_at
              FROM credential_history h WHERE h.key = 'k' AND h.version = ?1)
         WHERE key = 'k'",
        [old.as_str().parse::<i64>().unwrap()],
    )
    .unwrap();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    // And the other way: a current row moved into the history.
    let (_dir2, path2, master2) = keyed_temp_db("h2.db");
    let store2 = open(&path2, &master2).await;
    let v = write(&store2, "k", "only").await;
    raw(&path2)
        .execute(
            "UPDATE credential_history SET (nonce, sealed) = (SELECT nonce, sealed FROM credentials WHERE key = 'k')
             WHERE key = 'k'",
            [],
        )
        .unwrap();
    let err = store2.get_version(&key("k"), &v).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
}

#[tokio::test]
async fn an_expiry_stripped_or_moved_in_the_file_fails_authentication() {
    let (_dir, path, master) = keyed_temp_db("e.db");
    let store = open(&path, &master).await;
    let at = SystemTime::now() + Duration::from_secs(3600);
    let opts = SetOptions::new().with_expires_at(Some(at));
    store.set_opts(&key("k"), &SecretValue::from("token"), &Metadata::new(), &opts).await.unwrap();
    let read = store.get(&key("k")).await.unwrap().unwrap();
    let stored = read.expires_at.expect("the expiry comes back");
    assert!(stored.duration_since(at).unwrap_or_else(|e| e.duration()) < Duration::from_micros(1));
    for edit in [
        "UPDATE credentials SET expires_at = NULL",
        "UPDATE credentials SET expires_at = expires_at + 86400000000000",
    ] {
        let (_d, p, m) = keyed_temp_db("e2.db");
        let s = open(&p, &m).await;
        s.set_opts(&key("k"), &SecretValue::from("token"), &Metadata::new(), &opts).await.unwrap();
        raw(&p).execute(edit, []).unwrap();
        let err = s.get(&key("k")).await.unwrap_err();
        assert!(matches!(err, Error::Integrity { .. }), "{edit}: {err}");
    }
    // An expiry pulled into the past: the row is opened all the same.
    raw(&path).execute("UPDATE credentials SET expires_at = 1", []).unwrap();
    let err = store.get(&key("k")).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
}

#[tokio::test]
async fn an_expired_key_reads_as_absent_and_a_create_only_write_succeeds_over_it() {
    let (_dir, path, master) = keyed_temp_db("x.db");
    let clock = ManualClock::starting_now();
    let store = open_on(&path, &master, Retention::versions(10), &clock).await;
    let at = clock.now() + Duration::from_secs(60);
    let opts = SetOptions::new().with_expires_at(Some(at));
    let first = store.set_opts(&key("k"), &SecretValue::from("t1"), &Metadata::new(), &opts).await.unwrap();
    write(&store, "other", "stays").await;
    clock.advance(Duration::from_secs(59));
    assert!(store.has(&key("k")).await.unwrap(), "one second before");
    clock.advance(Duration::from_secs(1));
    assert!(store.get(&key("k")).await.unwrap().is_none(), "at its expiry");
    assert!(!store.has(&key("k")).await.unwrap());
    assert_eq!(store.version(&key("k")).await.unwrap(), None);
    let listed = store.list(&ListOptions::new()).await.unwrap().keys;
    assert_eq!(listed.iter().map(|k| k.as_str()).collect::<Vec<_>>(), ["other"]);
    assert!(matches!(
        store.replace(&key("k"), &SecretValue::from("x"), &Metadata::new(), &first.version).await,
        Err(Error::PreconditionFailed { .. })
    ));
    assert_eq!(versions(&store, "k").await, [(first.version.clone(), VersionState::Expired)]);
    let again = store.create(&key("k"), &SecretValue::from("t2"), &Metadata::new()).await.unwrap();
    assert!(again.created, "a creation over an expired key");
    assert!(again.created_at > first.created_at || again.created_at == again.updated_at);
    assert_eq!(value(&store, "k").await.as_deref(), Some("t2"));
    assert_eq!(
        versions(&store, "k").await,
        [(again.version, VersionState::Current), (first.version.clone(), VersionState::Expired)]
    );
    assert_eq!(value_at(&store, "k", &first.version).await.as_deref(), Some("t1"), "kept, expired");
    assert!(!store.delete(&key("other-missing")).await.unwrap());
}

#[tokio::test]
async fn versions_are_listed_newest_first_in_pages_and_pruned_to_the_retention_on_write() {
    let (_dir, path, master) = keyed_temp_db("r.db");
    let clock = ManualClock::starting_now();
    let store = open_on(&path, &master, Retention::versions(3), &clock).await;
    let mut written = Vec::new();
    for i in 0..5 {
        let meta = Metadata::try_from([("n", i.to_string().as_str())]).unwrap();
        written.push(store.set(&key("k"), &SecretValue::from(format!("v{i}")), &meta).await.unwrap().version);
    }
    assert_eq!(history_rows(&path, "k"), 3, "pruned at the write");
    let page =
        store.list_versions(&key("k"), &VersionListOptions::new().with_limit(2).unwrap()).await.unwrap();
    assert_eq!(
        page.versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>(),
        [&written[4], &written[3]].map(Clone::clone)
    );
    assert_eq!(page.versions[0].state, VersionState::Current);
    assert_eq!(page.versions[1].state, VersionState::Previous);
    assert_eq!(page.versions[1].metadata.get("n"), Some("3"));
    let next = VersionListOptions::new().with_limit(2).unwrap().after(page.next_cursor.clone());
    let last = store.list_versions(&key("k"), &next).await.unwrap();
    assert_eq!(last.versions.iter().map(|v| v.version.clone()).collect::<Vec<_>>(), [written[2].clone()]);
    assert_eq!(last.next_cursor, None);
    assert_eq!(value_at(&store, "k", &written[2]).await.as_deref(), Some("v2"));
    assert_eq!(value_at(&store, "k", &written[1]).await, None, "past the retention");
    let gone = VersionListOptions::new().after(Some(written[0].clone()));
    assert!(store.list_versions(&key("k"), &gone).await.unwrap().versions.is_empty());
    // A store opened with a smaller retention filters at once.
    drop(store);
    wait_closed(&path);
    let store = open_on(&path, &master, Retention::versions(2), &clock).await;
    assert_eq!(versions(&store, "k").await.len(), 2);
    assert_eq!(value_at(&store, "k", &written[2]).await, None);
}

#[tokio::test]
async fn versions_past_the_age_limit_go_by_the_store_clock() {
    let (_dir, path, master) = keyed_temp_db("a.db");
    let clock = ManualClock::starting_now();
    let hour = Duration::from_secs(3600);
    let store = open_on(&path, &master, Retention::versions(10).with_max_age(Some(hour)), &clock).await;
    let v1 = write(&store, "k", "one").await;
    clock.advance(Duration::from_secs(600));
    let v2 = write(&store, "k", "two").await;
    clock.advance(hour - Duration::from_secs(1));
    assert_eq!(value_at(&store, "k", &v1).await.as_deref(), Some("one"), "just before the limit");
    clock.advance(Duration::from_secs(1));
    assert_eq!(value_at(&store, "k", &v1).await, None, "filtered on read at the limit");
    assert_eq!(versions(&store, "k").await, [(v2.clone(), VersionState::Current)]);
    assert_eq!(history_rows(&path, "k"), 2, "still in the file until a write");
    write(&store, "k", "three").await;
    assert_eq!(history_rows(&path, "k"), 2, "pruned at the write: two and three");
    assert_eq!(value_at(&store, "k", &v2).await.as_deref(), Some("two"), "superseded just now");
}

#[tokio::test]
async fn a_deleted_key_keeps_its_history_and_a_create_only_restore_recovers_it() {
    let (_dir, path, master) = keyed_temp_db("d.db");
    let store = open(&path, &master).await;
    let caps = store.capabilities();
    assert!(caps.versions && caps.recover_deleted && caps.expiry);
    assert_eq!(caps.retention, credstore_sqlite::DEFAULT_RETENTION);
    let v1 = write(&store, "k", "one").await;
    let v2 = write(&store, "k", "two").await;
    assert!(store.delete(&key("k")).await.unwrap());
    assert!(store.get(&key("k")).await.unwrap().is_none());
    assert_eq!(
        versions(&store, "k").await,
        [(v2.clone(), VersionState::Deleted), (v1.clone(), VersionState::Previous)]
    );
    let back = store.restore(&key("k"), &v2, &SetOptions::create_only()).await.unwrap();
    assert!(back.created);
    assert_eq!(value(&store, "k").await.as_deref(), Some("two"));
    assert_eq!(
        versions(&store, "k").await,
        [(back.version, VersionState::Current), (v2, VersionState::Deleted), (v1, VersionState::Previous)]
    );
}

#[tokio::test]
async fn without_history_nothing_is_kept_and_a_delete_drops_what_was() {
    let (_dir, path, master) = keyed_temp_db("n.db");
    let store = open(&path, &master).await;
    write(&store, "k", "one").await;
    write(&store, "k", "two").await;
    drop(store);
    wait_closed(&path);
    let config = SqliteConfig::new(&path).master_key(master.clone()).retention(Retention::NONE);
    let store = open_with(config).await;
    let caps = store.capabilities();
    assert!(!caps.versions && !caps.recover_deleted && caps.expiry);
    assert_eq!(caps.retention, Retention::NONE);
    let err = store.list_versions(&key("k"), &VersionListOptions::new()).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    write(&store, "k", "three").await;
    assert_eq!(history_rows(&path, "k"), 2, "no history row for the write");
    assert!(store.delete(&key("k")).await.unwrap());
    assert_eq!(history_rows(&path, "k"), 0, "a delete without recovery drops the history");
}

/// Whether the database file or its log holds `needle`.
fn in_files(path: &Path, needle: &[u8]) -> bool {
    !files_containing(path.parent().unwrap(), needle).is_empty()
}

#[tokio::test]
async fn a_purge_leaves_no_ciphertext_of_the_purged_rows_in_the_file_or_its_log() {
    let (_dir, path, master) = keyed_temp_db("p.db");
    let store = open(&path, &master).await;
    let leaked = write(&store, "k", "leaked-value").await;
    let leaked_history = sealed_in(&path, "credential_history", "k", &leaked);
    let leaked_current = sealed_in(&path, "credentials", "k", &leaked);
    let rotated = write(&store, "k", "rotated-value").await;
    write(&store, "other", "kept").await;
    assert!(in_files(&path, &leaked_history), "the history row is in the file before the purge");
    let err = store.purge(&key("k"), &PurgeTarget::Version(rotated.clone())).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "the current version: {err}");
    assert!(store.purge(&key("k"), &PurgeTarget::Version(leaked.clone())).await.unwrap());
    assert!(!store.purge(&key("k"), &PurgeTarget::Version(leaked.clone())).await.unwrap(), "gone already");
    assert_eq!(value_at(&store, "k", &leaked).await, None);
    assert_eq!(versions(&store, "k").await, [(rotated.clone(), VersionState::Current)]);
    for (what, needle) in [("history copy", &leaked_history), ("old current row", &leaked_current)] {
        assert!(
            !in_files(&path, &needle[..32]),
            "the purged version's {what} is still in the database or its log"
        );
    }
    // The key and its whole history.
    let current = sealed_in(&path, "credentials", "k", &rotated);
    let history = sealed_in(&path, "credential_history", "k", &rotated);
    assert!(store.purge(&key("k"), &PurgeTarget::Key).await.unwrap());
    assert!(store.get(&key("k")).await.unwrap().is_none());
    assert!(versions(&store, "k").await.is_empty());
    for (what, needle) in [("current row", &current), ("history row", &history)] {
        let hits = files_containing(path.parent().unwrap(), &needle[..32]);
        assert!(hits.is_empty(), "the purged key's {what} is still in {hits:?}");
    }
    assert_eq!(value(&store, "other").await.as_deref(), Some("kept"));
    assert!(!store.purge(&key("k"), &PurgeTarget::Key).await.unwrap(), "nothing left");
    let fresh = store.create(&key("k"), &SecretValue::from("new"), &Metadata::new()).await.unwrap();
    assert!(fresh.created);
    assert_eq!(store.verify().await.unwrap(), 2, "the row set follows the purge");
}

#[tokio::test]
async fn a_data_key_rotation_reseals_the_history_so_every_kept_version_still_opens() {
    let (_dir, path, master) = keyed_temp_db("rot.db");
    let store = open(&path, &master).await;
    let v1 = write(&store, "k", "one").await;
    let v2 = write(&store, "k", "two").await;
    let at = SystemTime::now() + Duration::from_secs(3600);
    store
        .set_opts(
            &key("k"),
            &SecretValue::from("three"),
            &Metadata::new(),
            &SetOptions::new().with_expires_at(Some(at)),
        )
        .await
        .unwrap();
    let report = store.rotate_data_key().await.unwrap();
    assert_eq!((report.rows, report.history_rows, report.key_version), (1, 3, 2));
    let key_versions: Vec<i64> = raw(&path)
        .prepare("SELECT DISTINCT key_version FROM credential_history")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert_eq!(key_versions, [2]);
    assert_eq!(value_at(&store, "k", &v1).await.as_deref(), Some("one"));
    assert_eq!(value_at(&store, "k", &v2).await.as_deref(), Some("two"));
    assert_eq!(value(&store, "k").await.as_deref(), Some("three"), "the expiring row too");
    drop(store);
    wait_closed(&path);
    let store = open(&path, &master).await;
    assert_eq!(versions(&store, "k").await.len(), 3);
    assert_eq!(value_at(&store, "k", &v1).await.as_deref(), Some("one"));
    // Both keys: the history follows as well.
    let next = MasterKey::generate();
    assert_eq!(store.rotate_key(next.clone()).await.unwrap().history_rows, 3);
    assert_eq!(value_at(&store, "k", &v2).await.as_deref(), Some("two"));
}

#[tokio::test]
async fn a_0_2_database_opens_unchanged_and_gains_a_history_at_its_next_write() {
    let (_dir, path, master) = keyed_temp_db("old.db");
    write_0_2_database(&path, &master, 3);
    let store = open(&path, &master).await;
    assert_eq!(value(&store, "k1").await.as_deref(), Some("v1"), "read as it is");
    let before = store.version(&key("k1")).await.unwrap().unwrap();
    assert_eq!(
        versions(&store, "k1").await,
        [(before.clone(), VersionState::Current)],
        "its current version"
    );
    assert_eq!(value_at(&store, "k1", &before).await.as_deref(), Some("v1"));
    // The next write keeps the version it replaces, written before the history.
    let after = write(&store, "k1", "rotated").await;
    assert_eq!(
        versions(&store, "k1").await,
        [(after, VersionState::Current), (before.clone(), VersionState::Previous)]
    );
    assert_eq!(value_at(&store, "k1", &before).await.as_deref(), Some("v1"));
    assert_eq!(history_rows(&path, "k1"), 2);
    // A delete of a key never written since keeps it for recovery too.
    let k2 = store.version(&key("k2")).await.unwrap().unwrap();
    assert!(store.delete(&key("k2")).await.unwrap());
    assert_eq!(versions(&store, "k2").await, [(k2.clone(), VersionState::Deleted)]);
    store.restore(&key("k2"), &k2, &SetOptions::create_only()).await.unwrap();
    assert_eq!(value(&store, "k2").await.as_deref(), Some("v2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_racing_writes_always_shows_exactly_one_current_version() {
    let (_dir, path, master) = keyed_temp_db("race.db");
    let store = open_with(
        SqliteConfig::new(&path)
            .master_key(master.clone())
            .synchronous(credstore_sqlite::Synchronous::Normal),
    )
    .await;
    write(&store, "k", "v").await;
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                store.set(&key("k"), &SecretValue::from(format!("v{i}")), &Metadata::new()).await.unwrap();
            }
        })
    };
    let mut listings = 0;
    while !writer.is_finished() {
        let page = store.list_versions(&key("k"), &VersionListOptions::new()).await.unwrap();
        let current = page.versions.iter().filter(|v| v.state == VersionState::Current).count();
        assert_eq!(current, 1, "listing {listings}: {:?}", page.versions);
        assert_eq!(page.versions[0].state, VersionState::Current, "the newest is the current one");
        listings += 1;
    }
    writer.await.unwrap();
    assert!(listings > 0);
}
