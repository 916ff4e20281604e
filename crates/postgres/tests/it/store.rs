//! The store across instances and processes' worth of concurrency: what a
//! second instance on the same schema sees, versions, races, secrecy.

use std::collections::HashSet;
use std::sync::Arc;

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue};
use credstore_postgres::MasterKey;
use credstore_test_servers::postgres::Postgres;

use crate::util::{open, pg, psql};

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn created_at_is_kept_on_overwrite_and_versions_never_repeat_across_delete_and_instances() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_versions");
    let kek = MasterKey::generate();
    let (a, b) = (open(pg, &schema, &kek).await, open(pg, &schema, &kek).await);
    let k = key("db-password");
    let first = a.set(&k, &SecretValue::from("one"), &Metadata::new()).await.unwrap();
    let second = b.set(&k, &SecretValue::from("two"), &Metadata::new()).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(second.created_at, first.created_at, "created_at is kept on overwrite");
    let read = a.get(&k).await.unwrap().unwrap();
    assert_eq!((read.created_at, read.version.clone()), (first.created_at, second.version.clone()));
    let mut seen: HashSet<String> =
        [first.version.as_str().to_owned(), second.version.as_str().to_owned()].into();
    for round in 0..5 {
        let (deleter, writer) = if round % 2 == 0 { (&a, &b) } else { (&b, &a) };
        assert!(deleter.delete(&k).await.unwrap());
        let again = writer.create(&k, &SecretValue::from("again"), &Metadata::new()).await.unwrap();
        assert!(seen.insert(again.version.as_str().to_owned()), "version {} repeated", again.version);
        assert!(again.created_at > first.created_at, "a re-created key has a new created_at");
    }
    // A replace made with a version from before a delete never succeeds after it.
    let err = a.replace(&k, &SecretValue::from("stale"), &Metadata::new(), &first.version).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
}

/// A store remembers the version it last read or wrote of a key, to
/// overwrite it in one statement; another instance's writes in between
/// must never be lost to that, nor let a stale replace through.
#[tokio::test(flavor = "multi_thread")]
async fn writes_from_a_store_whose_last_seen_version_is_stale_keep_every_guarantee() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_stale_seen");
    let kek = MasterKey::generate();
    let (a, b) = (open(pg, &schema, &kek).await, open(pg, &schema, &kek).await);
    let (k, meta) = (key("api-token"), Metadata::new());
    let first = a.set(&k, &SecretValue::from("a1"), &meta).await.unwrap();
    let by_b = b.set(&k, &SecretValue::from("b1"), &meta).await.unwrap();
    // A last saw `first`: a replace from it is refused, whatever A remembers.
    let err = a.replace(&k, &SecretValue::from("stale"), &meta, &first.version).await.unwrap_err();
    assert!(matches!(err, Error::PreconditionFailed { .. }), "{err}");
    // A replace from B's version, which A never saw, succeeds and keeps created_at.
    let replaced = a.replace(&k, &SecretValue::from("a2"), &meta, &by_b.version).await.unwrap();
    assert_eq!(replaced.created_at, first.created_at);
    // B last saw its own version: its upsert overwrites A's anyway, keeping created_at.
    let upserted = b.set(&k, &SecretValue::from("b2"), &meta).await.unwrap();
    assert_eq!((upserted.created, upserted.created_at), (false, first.created_at));
    let read = a.get(&k).await.unwrap().unwrap();
    assert_eq!((read.value.expose_str().unwrap(), read.version), ("b2", upserted.version.clone()));
    // Deleted and created again by B: A's upsert keeps B's new created_at.
    assert!(b.delete(&k).await.unwrap());
    let again = b.create(&k, &SecretValue::from("b3"), &meta).await.unwrap();
    let over = a.set(&k, &SecretValue::from("a3"), &meta).await.unwrap();
    assert_eq!((over.created, over.created_at), (false, again.created_at));
    assert_eq!(b.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "a3");
    // Deleted by B while A remembers it: A's upsert creates it.
    assert!(b.delete(&k).await.unwrap());
    assert!(a.set(&k, &SecretValue::from("a4"), &meta).await.unwrap().created);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_creates_from_two_instances_have_exactly_one_winner_per_key() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_race");
    let kek = MasterKey::generate();
    let a: Arc<dyn CredentialStore> = Arc::new(open(pg, &schema, &kek).await);
    let b: Arc<dyn CredentialStore> = Arc::new(open(pg, &schema, &kek).await);
    let mut tasks = Vec::new();
    for n in 0..20 {
        for racer in 0..8 {
            let store = if racer % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                let k = key(&format!("race-{n}"));
                let value = SecretValue::from(format!("racer-{racer}"));
                match store.create(&k, &value, &Metadata::new()).await {
                    Ok(_) => Some((n, racer)),
                    Err(Error::PreconditionFailed { .. }) => None,
                    Err(e) => panic!("{e}"),
                }
            }));
        }
    }
    let mut winners = vec![Vec::new(); 20];
    for t in tasks {
        if let Some((n, racer)) = t.await.unwrap() {
            winners[n].push(racer);
        }
    }
    for (n, w) in winners.iter().enumerate() {
        assert_eq!(w.len(), 1, "key race-{n} had winners {w:?}");
        let stored = a.get(&key(&format!("race-{n}"))).await.unwrap().unwrap();
        assert_eq!(
            stored.value.expose_str().unwrap(),
            format!("racer-{}", w[0]),
            "the winner's value is stored"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_upserts_of_one_key_all_succeed_with_distinct_versions() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_upsert");
    let kek = MasterKey::generate();
    let a: Arc<dyn CredentialStore> = Arc::new(open(pg, &schema, &kek).await);
    let b: Arc<dyn CredentialStore> = Arc::new(open(pg, &schema, &kek).await);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                store.set(&key("hot"), &SecretValue::from(format!("v{i}")), &Metadata::new()).await
            })
        })
        .collect();
    let mut versions = HashSet::new();
    for t in tasks {
        let outcome = t.await.unwrap().unwrap();
        assert!(versions.insert(outcome.version.as_str().to_owned()));
    }
    let last = a.get(&key("hot")).await.unwrap().unwrap();
    assert!(versions.contains(last.version.as_str()));
}

#[tokio::test(flavor = "multi_thread")]
async fn values_are_sealed_in_the_database_and_never_in_debug_or_errors() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_secret");
    let kek = MasterKey::generate();
    let store = open(pg, &schema, &kek).await;
    let secret = "sk_live_SEALED_VALUE_42";
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("owner".to_owned(), "META_SECRET_OWNER".to_owned());
    let meta = Metadata::try_from(meta).unwrap();
    let written = store.set(&key("api"), &SecretValue::from(secret), &meta).await.unwrap();
    let dump = psql(
        pg,
        &format!("SELECT encode(nonce, 'escape') || encode(sealed, 'escape') FROM \"{schema}\".credentials"),
    );
    assert!(!dump.is_empty());
    assert!(
        !dump.contains(secret) && !dump.contains("META_SECRET_OWNER"),
        "the row holds the value in the clear"
    );
    let err = store.create(&key("api"), &SecretValue::from(secret), &meta).await.unwrap_err();
    let err2 = store
        .replace(
            &key("api"),
            &SecretValue::from(secret),
            &meta,
            &credstore_core::Version::from_counter(999_999_999),
        )
        .await
        .unwrap_err();
    let read = store.get(&key("api")).await.unwrap().unwrap();
    for shown in
        [format!("{err} {err:?}"), format!("{err2:?}"), format!("{store:?}"), format!("{read:?} {written:?}")]
    {
        assert!(!shown.contains(secret), "{shown}");
    }
    assert!(!format!("{:?}", crate::util::config(pg, &schema, &kek)).contains(pg.password()));
}

/// Waits until `n` sessions wait for a lock on an `UPDATE` of `schema`.
async fn wait_for_blocked_updates(pg: &Postgres, schema: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting = psql(
            pg,
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%UPDATE \"{schema}\".credentials%'"
            ),
        );
        if waiting.parse::<usize>().unwrap() >= n {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "only {waiting} of {n} updates are waiting");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn replaces_that_all_read_the_same_version_before_writing_have_one_winner() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_replace_race");
    let kek = MasterKey::generate();
    let a: Arc<dyn CredentialStore> = Arc::new(open(pg, &schema, &kek).await);
    let b: Arc<dyn CredentialStore> = Arc::new(open(pg, &schema, &kek).await);
    let k = key("rotated");
    let first = a.set(&k, &SecretValue::from("v0"), &Metadata::new()).await.unwrap();
    // Writes (not reads) wait on this lock: every racer reads the row at
    // `first.version` before any of them can write.
    let (locker, connection) = tokio_postgres::connect(
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
    locker.batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".credentials IN SHARE MODE")).await.unwrap();
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let (store, k, version) =
                (if i % 2 == 0 { a.clone() } else { b.clone() }, k.clone(), first.version.clone());
            tokio::spawn(async move {
                store.replace(&k, &SecretValue::from(format!("v{}", i + 1)), &Metadata::new(), &version).await
            })
        })
        .collect();
    wait_for_blocked_updates(pg, &schema, 8).await;
    locker.batch_execute("COMMIT").await.unwrap();
    let mut winners = 0;
    for r in racers {
        match r.await.unwrap() {
            Ok(_) => winners += 1,
            Err(Error::PreconditionFailed { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(winners, 1, "exactly one replace from version {} wins", first.version);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_host_connects_without_tls_by_default() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_socket");
    let socket = pg.socket_dir().to_str().unwrap().to_owned();
    let config = crate::util::config(pg, &schema, &MasterKey::generate());
    let config = credstore_postgres::PostgresConfig::new(socket)
        .port(pg.port())
        .user(pg.user())
        .password(pg.password().into())
        .database("postgres")
        .schema(config.schema_name())
        .master_key(MasterKey::generate());
    assert_eq!(config.tls_mode(), credstore_postgres::TlsMode::Disable);
    let store = credstore_postgres::PostgresStore::open(crate::util::id(&schema), config).await.unwrap();
    store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    assert!(store.has(&key("k")).await.unwrap());
}

/// A writer sets `a` then `b` to 1, 2, 3, ... in separate statements: in
/// any one snapshot `a` is `b` or one ahead. `get_many` is one statement,
/// so one snapshot; separate reads (one `get` per key) can see `b` ahead of
/// `a`, or `a` move between two reads of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_answers_one_snapshot_of_a_concurrent_writer() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_batch_snapshot");
    let kek = MasterKey::generate();
    let store = Arc::new(open(pg, &schema, &kek).await);
    let (a, b) = (key("a"), key("b"));
    for k in [&a, &b] {
        store.set(k, &SecretValue::from("0"), &Metadata::new()).await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop, a, b) = (store.clone(), stop.clone(), a.clone(), b.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                store.set(&a, &SecretValue::from(n.to_string()), &Metadata::new()).await.unwrap();
                store.set(&b, &SecretValue::from(n.to_string()), &Metadata::new()).await.unwrap();
            }
            n
        })
    };
    let number = |c: &Option<credstore_core::Credential>| -> u64 {
        c.as_ref().unwrap().value.expose_str().unwrap().parse().unwrap()
    };
    let keys = [a.clone(), b.clone(), a.clone(), key("never-set")];
    for _ in 0..500 {
        let got = store.get_many(&keys).await.unwrap();
        let (a1, b1, a2) = (number(&got[0]), number(&got[1]), number(&got[2]));
        assert!(a1 == a2 && (a1 == b1 || a1 == b1 + 1), "not one snapshot: a {a1}, b {b1}, a {a2}");
        assert!(got[3].is_none());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(writer.await.unwrap() > 0, "the writer wrote");
}

/// A row that fails authentication fails the whole batch with the
/// integrity error naming its key, as `get` of it does, and shows no value.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_row_fails_the_batch_naming_its_key() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("store_batch_tamper");
    let kek = MasterKey::generate();
    let store = open(pg, &schema, &kek).await;
    let keys = [key("fine"), key("victim"), key("other")];
    for k in &keys {
        store.set(k, &SecretValue::from(format!("TOPSECRET-{k}")), &Metadata::new()).await.unwrap();
    }
    assert_eq!(store.get_many(&keys).await.unwrap().iter().flatten().count(), 3);
    psql(
        pg,
        &format!("UPDATE \"{schema}\".credentials SET updated_ns = updated_ns + 1 WHERE key = 'victim'"),
    );
    let err = store.get_many(&keys).await.map(|a| a.len()).unwrap_err();
    assert!(matches!(&err, Error::Integrity { key, .. } if key.as_str() == "victim"), "{err:?}");
    assert!(!err.to_string().contains("TOPSECRET"), "{err}");
}
