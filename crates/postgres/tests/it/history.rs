//! The history table, expiry and retention against a real server: what the
//! SQL keeps and drops, what a tampered row reads as, the layout upgrade of
//! a schema made by 0.2.

use std::sync::Arc;
use std::time::Duration;

use credstore_core::{
    Clock, CredentialKey, CredentialStore, CredentialStoreExt, Error, FeedEvent, ManualClock, Metadata,
    PurgeTarget, Retention, SecretValue, SetOptions, Version, VersionListOptions, VersionState,
};
use credstore_postgres::{MasterKey, PostgresStore};
use credstore_test_servers::postgres::Postgres;

use crate::util::{config, id, open, pg, psql};

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap()
}

fn value(s: &str) -> SecretValue {
    SecretValue::from(s)
}

async fn states(store: &dyn CredentialStore, k: &CredentialKey) -> Vec<(String, VersionState)> {
    let page = store.list_versions(k, &VersionListOptions::new()).await.unwrap();
    page.versions.into_iter().map(|v| (v.version.as_str().to_owned(), v.state)).collect()
}

fn count(pg: &Postgres, schema: &str, table: &str, k: &str) -> usize {
    psql(pg, &format!("SELECT count(*) FROM \"{schema}\".{table} WHERE key = '{k}'")).parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_history_rows_ciphertext_copied_over_the_current_row_reads_as_integrity() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_swap");
    let kek = MasterKey::generate();
    let store = open(pg, &schema, &kek).await;
    let k = key("db-password");
    let first = store.set(&k, &value("leaked"), &Metadata::new()).await.unwrap();
    store.set(&k, &value("rotated"), &Metadata::new()).await.unwrap();
    assert_eq!(count(pg, &schema, "history", "db-password"), 1, "the overwritten row went to the history");
    // Every clear column of the history row and its ciphertext over the
    // current row: only the role bound in the seal differs.
    psql(
        pg,
        &format!(
            "UPDATE \"{schema}\".credentials c SET version = h.version, created_ns = h.created_ns, \
             updated_ns = h.updated_ns, expires_ns = h.expires_ns, kind = h.kind, format = h.format, \
             nonce = h.nonce, sealed = h.sealed \
             FROM \"{schema}\".history h WHERE h.ns = c.ns AND h.key = c.key"
        ),
    );
    let err = store.get(&k).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    assert!(!err.to_string().contains("leaked"));
    // Nor does the current row's own history copy pass as the current row.
    let fresh = key("api-token");
    store.set(&fresh, &value("v1"), &Metadata::new()).await.unwrap();
    psql(
        pg,
        &format!(
            "UPDATE \"{schema}\".credentials SET nonce = hist_nonce, sealed = hist_sealed WHERE key = 'api-token'"
        ),
    );
    let err = store.get(&fresh).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    // A history row moved to another version of the key fails too.
    psql(pg, &format!("UPDATE \"{schema}\".history SET version = version + 1000 WHERE key = 'db-password'"));
    let moved = Version::from_counter(first.version.as_str().parse::<u64>().unwrap() + 1000);
    let err = store.get_version(&k, &moved).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiry_edited_in_the_database_reads_as_integrity() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_expiry_edit");
    let store = open(pg, &schema, &MasterKey::generate()).await;
    let k = key("session");
    let soon = std::time::SystemTime::now() + Duration::from_secs(3600);
    let opts = SetOptions::new().with_expires_at(Some(soon));
    store.set_opts(&k, &value("token"), &Metadata::new(), &opts).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().expires_at, Some(soon));
    psql(pg, &format!("UPDATE \"{schema}\".credentials SET expires_ns = expires_ns + 86400000000000"));
    let err = store.get(&k).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "{err}");
    psql(pg, &format!("UPDATE \"{schema}\".credentials SET expires_ns = NULL"));
    let err = store.get(&k).await.unwrap_err();
    assert!(matches!(err, Error::Integrity { .. }), "an expiry stripped: {err}");
}

/// The store that knows the row it overwrites (`KnownRows`) writes in one
/// statement: the row it replaces must reach the history all the same,
/// also when another instance wrote in between.
#[tokio::test(flavor = "multi_thread")]
async fn overwrites_on_the_known_row_path_and_from_two_instances_all_reach_the_history_in_order() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_order");
    let kek = MasterKey::generate();
    let (a, b) = (open(pg, &schema, &kek).await, open(pg, &schema, &kek).await);
    let k = key("rotated");
    let mut written = Vec::new();
    for (i, store) in [&a, &a, &b, &a, &b, &b].into_iter().enumerate() {
        let mut meta = Metadata::new();
        meta.insert("n", i.to_string()).unwrap();
        written.push(store.set(&k, &value(&format!("v{i}")), &meta).await.unwrap().version);
    }
    let newest_first: Vec<String> = written.iter().rev().map(|v| v.as_str().to_owned()).collect();
    let listed = states(&a, &k).await;
    assert_eq!(listed.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(), newest_first);
    assert_eq!(listed[0].1, VersionState::Current);
    assert!(listed[1..].iter().all(|(_, s)| *s == VersionState::Previous), "{listed:?}");
    for (i, v) in written.iter().enumerate() {
        let old = b.get_version(&k, v).await.unwrap().expect("kept");
        assert_eq!(old.value.expose_str().unwrap(), format!("v{i}"));
        assert_eq!(old.metadata.get("n"), Some(i.to_string().as_str()));
        assert_eq!(&old.version, v);
    }
    // One page at a time, newest first.
    let opts = VersionListOptions::new().with_limit(4).unwrap();
    let first = a.list_versions(&k, &opts).await.unwrap();
    let second = a.list_versions(&k, &opts.clone().after(first.next_cursor.clone())).await.unwrap();
    assert_eq!(first.versions.len(), 4);
    assert_eq!(second.next_cursor, None);
    let paged: Vec<String> =
        first.versions.iter().chain(&second.versions).map(|v| v.version.as_str().to_owned()).collect();
    assert_eq!(paged, newest_first);
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_by_count_deletes_the_rows_in_the_write_and_by_age_hides_them_by_the_store_clock() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_retention");
    let kek = MasterKey::generate();
    let clock = ManualClock::starting_now();
    let retention = Retention::versions(3).with_max_age(Some(Duration::from_secs(60)));
    let store = PostgresStore::open(
        id(&schema),
        config(pg, &schema, &kek).retention(retention).clock(Arc::new(clock.clone())),
    )
    .await
    .unwrap();
    assert_eq!(store.info().capabilities().retention, retention);
    let k = key("k");
    let mut versions = Vec::new();
    for i in 0..5 {
        versions.push(store.set(&k, &value(&format!("v{i}")), &Metadata::new()).await.unwrap().version);
    }
    assert_eq!(count(pg, &schema, "history", "k"), 2, "3 versions kept, the current one included");
    assert_eq!(states(&store, &k).await.len(), 3);
    assert!(store.get_version(&k, &versions[1]).await.unwrap().is_none());
    assert!(store.get_version(&k, &versions[2]).await.unwrap().is_some());
    // Superseded a minute ago by the store's clock: gone from every read at
    // once, and from the table at the key's next write.
    clock.advance(Duration::from_secs(60));
    assert!(store.get_version(&k, &versions[3]).await.unwrap().is_none());
    assert_eq!(states(&store, &k).await, vec![(versions[4].as_str().to_owned(), VersionState::Current)]);
    assert!(!store.purge(&k, &PurgeTarget::Version(versions[3].clone())).await.unwrap(), "no longer kept");
    store.set(&k, &value("v5"), &Metadata::new()).await.unwrap();
    assert_eq!(count(pg, &schema, "history", "k"), 1, "only the version just overwritten");
}

#[tokio::test(flavor = "multi_thread")]
async fn expiry_follows_the_store_clock_and_an_expired_key_can_be_created_but_not_replaced() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_expiry");
    let clock = ManualClock::starting_now();
    let store = PostgresStore::open(
        id(&schema),
        config(pg, &schema, &MasterKey::generate()).clock(Arc::new(clock.clone())),
    )
    .await
    .unwrap();
    let (k, other) = (key("oauth-token"), key("z-kept"));
    let at = clock.now() + Duration::from_secs(10);
    let opts = SetOptions::new().with_expires_at(Some(at));
    let written = store.set_opts(&k, &value("t1"), &Metadata::new(), &opts).await.unwrap();
    store.set(&other, &value("x"), &Metadata::new()).await.unwrap();
    assert_eq!(store.get(&k).await.unwrap().unwrap().expires_at, Some(at));
    clock.advance(Duration::from_secs(9));
    assert!(store.has(&k).await.unwrap());
    clock.advance(Duration::from_secs(1));
    assert!(store.get(&k).await.unwrap().is_none());
    assert!(!store.has(&k).await.unwrap());
    assert_eq!(store.version(&k).await.unwrap(), None);
    let listed = store.list(&credstore_core::ListOptions::new()).await.unwrap();
    assert_eq!(listed.keys, vec![other.clone()]);
    let err = store.replace(&k, &value("t2"), &Metadata::new(), &written.version).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    assert_eq!(states(&store, &k).await, vec![(written.version.as_str().to_owned(), VersionState::Expired)]);
    let again = store.create(&k, &value("t3"), &Metadata::new()).await.unwrap();
    assert!(again.created && again.created_at > written.created_at, "a new key over the expired one");
    assert_eq!(
        states(&store, &k).await,
        vec![
            (again.version.as_str().to_owned(), VersionState::Current),
            (written.version.as_str().to_owned(), VersionState::Expired)
        ]
    );
    let old = store.get_version(&k, &written.version).await.unwrap().unwrap();
    assert_eq!((old.value.expose_str().unwrap(), old.expires_at), ("t1", Some(at)));
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_keeps_the_history_restore_recovers_and_purge_destroys_the_rows_reporting_each_change() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_delete");
    let store = open(pg, &schema, &MasterKey::generate()).await;
    let k = key("deploy-key");
    let v1 = store.set(&k, &value("one"), &Metadata::new()).await.unwrap().version;
    let v2 = store.set(&k, &value("two"), &Metadata::new()).await.unwrap().version;
    let mut feed = store.subscribe().await.unwrap();
    assert!(store.delete(&k).await.unwrap());
    assert_eq!(
        states(&store, &k).await,
        vec![
            (v2.as_str().to_owned(), VersionState::Deleted),
            (v1.as_str().to_owned(), VersionState::Previous)
        ]
    );
    let restored = store.restore(&k, &v2, &SetOptions::create_only()).await.unwrap();
    assert!(restored.created);
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "two");
    // The leaked first value: purged for real, the rest stays.
    let err = store.purge(&k, &PurgeTarget::Version(restored.version.clone())).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    assert!(store.purge(&k, &PurgeTarget::Version(v1.clone())).await.unwrap());
    assert!(!store.purge(&k, &PurgeTarget::Version(v1.clone())).await.unwrap());
    assert!(store.get_version(&k, &v1).await.unwrap().is_none());
    assert!(store.purge(&k, &PurgeTarget::Key).await.unwrap());
    assert_eq!(
        count(pg, &schema, "history", "deploy-key") + count(pg, &schema, "credentials", "deploy-key"),
        0
    );
    assert!(store.list_versions(&k, &VersionListOptions::new()).await.unwrap().versions.is_empty());
    assert!(!store.purge(&k, &PurgeTarget::Key).await.unwrap());
    let mut seen = Vec::new();
    while seen.len() < 4 {
        match tokio::time::timeout(Duration::from_secs(10), feed.next()).await.expect("reported") {
            Some(FeedEvent::Changed(c)) => seen.push(c.version),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        seen,
        vec![None, Some(restored.version.clone()), Some(restored.version), None],
        "delete, restore, purge of a version, purge of the key"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rewrapping_the_key_keeps_every_history_row_readable() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_rewrap");
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let store = open(pg, &schema, &old).await;
    let k = key("k");
    let v1 = store.set(&k, &value("one"), &Metadata::new()).await.unwrap().version;
    store.set(&k, &value("two"), &Metadata::new()).await.unwrap();
    store.rewrap_key(new.clone()).await.unwrap();
    let reopened = open(pg, &schema, &new).await;
    assert_eq!(reopened.get_version(&k, &v1).await.unwrap().unwrap().value.expose_str().unwrap(), "one");
}

/// A schema of layout 1, as credstore-postgres 0.2 made it: the history
/// table and the new columns are added under the migration lock; old rows
/// keep reading, and have no history until they are written again.
#[tokio::test(flavor = "multi_thread")]
async fn a_schema_of_layout_1_is_upgraded_in_place_only_with_the_right_key() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_upgrade");
    let kek = MasterKey::generate();
    let store = open(pg, &schema, &kek).await;
    let k = key("old");
    let v0 = store.set(&k, &value("from 0.2"), &Metadata::new()).await.unwrap();
    drop(store);
    psql(
        pg,
        &format!(
            "DROP TABLE \"{schema}\".history; ALTER TABLE \"{schema}\".credentials DROP COLUMN seq, \
             DROP COLUMN expires_ns, DROP COLUMN hist_version, DROP COLUMN hist_nonce, DROP COLUMN hist_sealed; \
             UPDATE \"{schema}\".meta SET value = '1'::bytea WHERE name = 'schema_version'"
        ),
    );
    let layout = || {
        psql(
            pg,
            &format!("SELECT encode(value, 'escape') FROM \"{schema}\".meta WHERE name = 'schema_version'"),
        )
    };
    let err =
        PostgresStore::open(id(&schema), config(pg, &schema, &MasterKey::generate())).await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert_eq!(layout(), "1", "a wrong key upgrades nothing");
    // Replicas starting at once: one upgrades under the lock, the others
    // find it done.
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let (id, config) = (id(&schema), config(pg, &schema, &kek));
            tokio::spawn(async move { PostgresStore::open(id, config).await })
        })
        .collect();
    let mut stores = Vec::new();
    for o in opens {
        stores.push(o.await.unwrap().expect("every replica opens"));
    }
    let store = stores.pop().unwrap();
    assert_eq!(layout(), "2");
    let read = store.get(&k).await.unwrap().unwrap();
    assert_eq!((read.value.expose_str().unwrap(), read.version.clone()), ("from 0.2", v0.version.clone()));
    let v1 = store.set(&k, &value("new"), &Metadata::new()).await.unwrap();
    assert_eq!(states(&store, &k).await, vec![(v1.version.as_str().to_owned(), VersionState::Current)]);
    let v2 = store.set(&k, &value("newer"), &Metadata::new()).await.unwrap();
    assert_eq!(
        states(&store, &k).await,
        vec![
            (v2.version.as_str().to_owned(), VersionState::Current),
            (v1.version.as_str().to_owned(), VersionState::Previous)
        ]
    );
}

/// A purge of the key racing a write that holds the key's row (and has
/// moved the value it overwrote to the history): the purge waits for the
/// row, and must then see that history row too, not only what was there
/// when it started.
#[tokio::test(flavor = "multi_thread")]
async fn a_purge_waiting_on_a_racing_write_destroys_the_history_row_that_write_added() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_purge_race");
    let store = open(pg, &schema, &MasterKey::generate()).await;
    let k = key("leaked");
    store.set(&k, &value("v1"), &Metadata::new()).await.unwrap();
    // The racing write, by hand: it holds the row and has moved a copy to
    // the history, uncommitted.
    let (writer, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={} dbname=postgres",
            pg.port(),
            pg.user(),
            pg.password()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    writer
        .batch_execute(&format!(
            "BEGIN;
             INSERT INTO \"{schema}\".history (ns, key, version, seq, created_ns, updated_ns, expires_ns,
                 superseded_ns, deleted, kind, key_version, format, nonce, sealed)
             SELECT ns, key, hist_version, seq, created_ns, updated_ns, expires_ns, 0, false, kind, key_version,
                 format, hist_nonce, hist_sealed FROM \"{schema}\".credentials WHERE key = 'leaked';
             UPDATE \"{schema}\".credentials SET seq = seq + 1 WHERE key = 'leaked';"
        ))
        .await
        .unwrap();
    let purge = {
        let (store, k) = (store.clone(), k.clone());
        tokio::spawn(async move { store.purge(&k, &PurgeTarget::Key).await })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = psql(
            pg,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%DELETE FROM \"{schema}\".credentials%'"
            ),
        );
        if waiting == "1" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the purge never waited for the row");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writer.batch_execute("COMMIT").await.unwrap();
    assert!(purge.await.unwrap().unwrap());
    assert_eq!(count(pg, &schema, "history", "leaked"), 0, "the history row of the racing write survived");
    assert_eq!(count(pg, &schema, "credentials", "leaked"), 0);
}

/// `max_versions = 1` is no history: nothing declared, nothing kept, and a
/// delete destroys what a store with a history left on the same schema.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_keeping_one_version_declares_no_history_and_its_delete_destroys_any() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_none");
    let kek = MasterKey::generate();
    let with = open(pg, &schema, &kek).await;
    let without =
        PostgresStore::open(id(&schema), config(pg, &schema, &kek).retention(Retention::versions(1)))
            .await
            .unwrap();
    let caps = without.info().capabilities();
    assert!(!caps.versions && !caps.recover_deleted && caps.expiry);
    assert_eq!(caps.retention, Retention::NONE);
    let k = key("k");
    let v1 = with.set(&k, &value("one"), &Metadata::new()).await.unwrap().version;
    with.set(&k, &value("two"), &Metadata::new()).await.unwrap();
    assert_eq!(count(pg, &schema, "history", "k"), 1);
    let err = without.get_version(&k, &v1).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    without.set(&k, &value("three"), &Metadata::new()).await.unwrap();
    assert_eq!(count(pg, &schema, "history", "k"), 0, "an overwrite keeping one version keeps none");
    with.set(&k, &value("four"), &Metadata::new()).await.unwrap();
    assert_eq!(count(pg, &schema, "history", "k"), 1);
    assert!(without.delete(&k).await.unwrap());
    assert_eq!(count(pg, &schema, "history", "k"), 0, "the delete destroyed the history");
}

/// Racing overwrites of one key from two instances (each on its known-row
/// path or its read-then-update retry): every version written is kept
/// exactly once, the last one current, and each opens.
#[tokio::test(flavor = "multi_thread")]
async fn racing_overwrites_from_two_instances_lose_no_version_to_the_history() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("hist_race");
    let kek = MasterKey::generate();
    let open_unbounded = || async {
        Arc::new(
            PostgresStore::open(id(&schema), config(pg, &schema, &kek).retention(Retention::UNBOUNDED))
                .await
                .unwrap(),
        )
    };
    let (a, b) = (open_unbounded().await, open_unbounded().await);
    let k = key("contended");
    let first = a.set(&k, &value("v0"), &Metadata::new()).await.unwrap().version;
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let (store, k) = (if i % 2 == 0 { a.clone() } else { b.clone() }, k.clone());
            tokio::spawn(async move { store.set(&k, &value(&format!("v{}", i + 1)), &Metadata::new()).await })
        })
        .collect();
    let mut written = vec![first.as_str().to_owned()];
    for w in writers {
        written.push(w.await.unwrap().unwrap().version.as_str().to_owned());
    }
    let opts = VersionListOptions::new().with_limit(100).unwrap();
    let page = a.list_versions(&k, &opts).await.unwrap();
    let mut listed: Vec<String> = page.versions.iter().map(|v| v.version.as_str().to_owned()).collect();
    assert_eq!(page.versions.iter().filter(|v| v.state == VersionState::Current).count(), 1);
    let current = a.get(&k).await.unwrap().unwrap();
    assert_eq!(listed[0], current.version.as_str(), "the current version is listed first");
    for v in &page.versions {
        assert!(b.get_version(&k, &v.version).await.unwrap().is_some());
    }
    listed.sort();
    written.sort();
    assert_eq!(listed, written, "every version written is kept exactly once");
}
