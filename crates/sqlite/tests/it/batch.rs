//! `get_many`: one statement for the batch, on the calling task or the
//! blocking pool, each row opened as `get` opens it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use credstore_conformance::fixtures::{key, meta};
use credstore_core::{Credential, CredentialKey, CredentialStore, CredentialStoreExt, Error, SecretValue};
use credstore_sqlite::MasterKey;

use crate::util::*;

fn number(c: &Option<Credential>) -> u64 {
    c.as_ref().expect("present").value.expose_str().expect("text").parse().expect("a number")
}

/// A writer sets `a` then `b` to 1, 2, 3, ... in separate transactions: in
/// any one snapshot `a` is `b` or one ahead. Separate reads (one `get` per
/// key) can see `b` ahead of `a`, or `a` move between two reads of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_answers_one_snapshot_of_a_concurrent_writer() {
    let (_dir, path) = temp_db("t.db");
    let store = open(&path, &MasterKey::generate()).await;
    put(&store, "a", "0").await;
    put(&store, "b", "0").await;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                put(&store, "a", &n.to_string()).await;
                put(&store, "b", &n.to_string()).await;
            }
            n
        })
    };
    let keys = [key("a"), key("b"), key("a")];
    let mut seen_writes = 0;
    for _ in 0..3_000 {
        let got = store.get_many(&keys).await.expect("get_many");
        let (a1, b1, a2) = (number(&got[0]), number(&got[1]), number(&got[2]));
        assert!(a1 == a2 && (a1 == b1 || a1 == b1 + 1), "not one snapshot: a {a1}, b {b1}, a {a2}");
        seen_writes = a1;
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    assert!(writer.await.expect("writer") > 0 && seen_writes > 0, "the reads saw the writer's writes");
}

/// Small batches (on the calling task), large ones (on the blocking pool)
/// and a batch holding a row too large to open on the calling task answer
/// what `get` answers for each key, in order, repeats and misses included.
#[tokio::test]
async fn get_many_of_small_large_and_oversized_batches_agrees_with_get() {
    let (_dir, path) = temp_db("t.db");
    let store = open(&path, &MasterKey::generate()).await;
    let m = meta([("team", "ops")]);
    for i in 0..120 {
        store
            .set(&key(&format!("k{i:03}")), &SecretValue::from(format!("value-{i}")), &m)
            .await
            .expect("set");
    }
    let big = "x".repeat(60 * 1024);
    put(&store, "big", &big).await;
    store.set(&key("bin"), &SecretValue::from(vec![0u8, 255, 7]), &m).await.expect("set");
    put(&store, "gone", "soon").await;
    assert!(store.delete(&key("gone")).await.expect("delete"));
    let small: Vec<CredentialKey> = ["k007", "missing", "bin", "k007", "gone"].map(key).to_vec();
    let large: Vec<CredentialKey> =
        (0..110).rev().map(|i| key(&format!("k{i:03}"))).chain([key("missing"), key("k005")]).collect();
    let oversized: Vec<CredentialKey> = ["k001", "big", "k002"].map(key).to_vec();
    for (what, keys) in [("small", &small), ("large", &large), ("oversized", &oversized)] {
        let got = store.get_many(keys).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(got.len(), keys.len(), "{what}");
        for (k, answer) in keys.iter().zip(&got) {
            let want = store.get(k).await.expect("get");
            match (answer, &want) {
                (None, None) => {}
                (Some(a), Some(w)) => {
                    assert!(a.value == w.value, "{what}: the value of {k}");
                    assert_eq!(
                        (&a.key, &a.metadata, &a.version, a.created_at, a.updated_at, a.expires_at),
                        (&w.key, &w.metadata, &w.version, w.created_at, w.updated_at, w.expires_at),
                        "{what}: {k}"
                    );
                }
                _ => panic!("{what}: get_many and get disagree about {k}"),
            }
        }
    }
    let got = store.get_many(&oversized).await.expect("get_many");
    assert_eq!(got[1].as_ref().map(|c| c.value.expose_str().expect("text").len()), Some(big.len()));
    // Namespaces stay apart in a batch.
    let tenant = ns(&store, "tenant");
    put(&*tenant, "k001", "tenant's").await;
    let got = tenant.get_many(&[key("k001"), key("k002")]).await.expect("get_many");
    assert_eq!(got[0].as_ref().map(|c| c.value.expose_str().expect("text")), Some("tenant's"));
    assert!(got[1].is_none(), "a key of the root namespace read through a tenant's handle");
}

/// A row that fails authentication fails the whole batch with the
/// integrity error naming its key, as `get` of it does; so does a row
/// under a key version the store does not hold.
#[tokio::test]
async fn a_tampered_row_fails_the_batch_naming_its_key() {
    let (_dir, path) = temp_db("t.db");
    let store = open(&path, &MasterKey::generate()).await;
    for k in ["fine", "victim", "other"] {
        put(&store, k, &format!("TOPSECRET-{k}")).await;
    }
    let conn = raw(&path);
    let keys = [key("fine"), key("victim"), key("other")];
    for (what, sql) in [
        (
            "flipped tag byte",
            "UPDATE credentials SET sealed = CAST(substr(sealed, 1, length(sealed) - 1) || (CASE WHEN \
             substr(sealed, -1) = x'00' THEN x'01' ELSE x'00' END) AS BLOB) WHERE key = 'victim'",
        ),
        ("other key version", "UPDATE credentials SET key_version = 7 WHERE key = 'victim'"),
    ] {
        conn.execute(sql, []).expect(what);
        for batch in [&keys[..], &[&keys[..]; 12].concat()[..]] {
            let err = store.get_many(batch).await.map(|a| a.len()).expect_err(what);
            match &err {
                Error::Integrity { key: named, .. } => assert_eq!(named.as_str(), "victim", "{what}"),
                other => panic!("{what}: expected an integrity error, got {other:?}"),
            }
            assert!(!err.to_string().contains("TOPSECRET"), "{what}: {err}");
        }
        // Put the row back as it was: rewrite it through the store.
        conn.execute("DELETE FROM credentials WHERE key = 'victim'", []).expect("delete");
        put(&store, "victim", "TOPSECRET-victim").await;
    }
    assert_eq!(store.get_many(&keys).await.expect("get_many").iter().flatten().count(), 3);
}
