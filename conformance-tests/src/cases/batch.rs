//! Batch reads ([`CredentialStore::get_many`]): one answer per key, in the
//! order asked, each what `get` of that key answers.

use std::time::Duration;

use credstore_core::{
    Clock as _, Credential, CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue,
    SetOptions, MAX_BATCH_KEYS,
};

use super::{
    assert_invalid_input, assert_unchanged, caps, key, meta, meta_if, must_get, ns, on_clock, set, set_text,
    text,
};
use crate::StoreFactory;

/// `get_many` of `keys`, panicking with the error when it fails, and
/// checking that there is one answer per key.
async fn batch(store: &dyn CredentialStore, keys: &[CredentialKey]) -> Vec<Option<Credential>> {
    let answers =
        store.get_many(keys).await.unwrap_or_else(|e| panic!("get_many of {} keys failed: {e}", keys.len()));
    assert_eq!(answers.len(), keys.len(), "get_many answered {} of {} keys", answers.len(), keys.len());
    answers
}

/// Each answer's key and text value, `None` for an absent key.
fn texts(answers: &[Option<Credential>]) -> Vec<Option<(String, String)>> {
    answers.iter().map(|a| a.as_ref().map(|c| (c.key.to_string(), text(&c.value).to_owned()))).collect()
}

fn some(k: &str, v: &str) -> Option<(String, String)> {
    Some((k.to_owned(), v.to_owned()))
}

/// Asserts that a batch's answer for a key is exactly what `get` answered:
/// key, value, metadata, version, both times and the expiry.
fn assert_same(got: &Option<Credential>, want: &Option<Credential>, what: &str) {
    match (got, want) {
        (None, None) => {}
        (Some(got), Some(want)) => {
            assert_eq!(got.key, want.key, "{what}: the key differs from get's");
            assert_unchanged(want, got, &format!("{what}: get_many against get"));
            assert_eq!(got.expires_at, want.expires_at, "{what}: expires_at differs from get's");
        }
        (got, want) => panic!(
            "{what}: get_many found {} where get found {}",
            if got.is_some() { "a credential" } else { "none" },
            if want.is_some() { "a credential" } else { "none" },
        ),
    }
}

/// Answers come in the order of the keys asked, `None` for a key never
/// set, and a key asked twice is answered twice, the same both times.
pub async fn batch_answers_in_order_with_none_for_missing_and_repeats_answered_twice(f: &dyn StoreFactory) {
    let store = f.create().await;
    for n in ["alpha", "beta", "gamma"] {
        set_text(&*store, n, &format!("value-of-{n}")).await;
    }
    let keys = [key("gamma"), key("never-set"), key("alpha"), key("gamma"), key("beta")];
    let answers = batch(&*store, &keys).await;
    assert_eq!(
        texts(&answers),
        [
            some("gamma", "value-of-gamma"),
            None,
            some("alpha", "value-of-alpha"),
            some("gamma", "value-of-gamma"),
            some("beta", "value-of-beta"),
        ],
        "the answers, in the order asked"
    );
    assert_same(&answers[3], &answers[0], "a key asked twice");
}

/// A deleted key answers `None` in a batch, beside a key still there.
pub async fn batch_answers_none_for_a_deleted_key(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "deleted", "gone").await;
    set_text(&*store, "kept", "here").await;
    assert!(store.delete(&key("deleted")).await.expect("delete"), "the delete found the key");
    let answers = batch(&*store, &[key("deleted"), key("kept"), key("deleted")]).await;
    assert_eq!(texts(&answers), [None, some("kept", "here"), None]);
}

/// Where expiry is declared, a key past its `expires_at` (by the store's
/// clock) answers `None` in a batch from exactly that instant, and is
/// answered with its expiry up to a nanosecond before it.
pub async fn batch_answers_none_for_an_expired_key(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let at = clock.now() + Duration::from_secs(60);
    let opts = SetOptions::new().with_expires_at(Some(at));
    store
        .set_opts(&key("expiring"), &SecretValue::from("brief"), &Metadata::new(), &opts)
        .await
        .expect("set");
    set_text(&*store, "lasting", "long").await;
    let keys = [key("expiring"), key("lasting")];
    clock.set(at - Duration::from_nanos(1));
    let answers = batch(&*store, &keys).await;
    assert_eq!(texts(&answers), [some("expiring", "brief"), some("lasting", "long")], "before the expiry");
    assert_eq!(answers[0].as_ref().map(|c| c.expires_at), Some(Some(at)), "the expiry written");
    clock.set(at);
    let answers = batch(&*store, &keys).await;
    assert_eq!(texts(&answers), [None, some("lasting", "long")], "at the expiry");
}

/// A batch through a namespace's handle sees only that namespace's keys:
/// not a sibling's, the parent's or a nested namespace's.
pub async fn batch_sees_only_its_own_namespace(f: &dyn StoreFactory) {
    let root = f.create().await;
    let a = root.with_namespace(&ns("batch-a")).expect("with_namespace a");
    let b = root.with_namespace(&ns("batch-b")).expect("with_namespace b");
    let nested = a.with_namespace(&ns("inner")).expect("with_namespace a/inner");
    set_text(&*a, "shared", "in-a").await;
    set_text(&*a, "only-a", "in-a").await;
    set_text(&*b, "shared", "in-b").await;
    set_text(&*root, "only-root", "in-root").await;
    set_text(&*nested, "only-nested", "in-nested").await;
    let keys = [key("shared"), key("only-a"), key("only-root"), key("only-nested")];
    assert_eq!(texts(&batch(&*a, &keys).await), [some("shared", "in-a"), some("only-a", "in-a"), None, None]);
    assert_eq!(texts(&batch(&*b, &keys).await), [some("shared", "in-b"), None, None, None]);
    assert_eq!(texts(&batch(&*root, &keys).await), [None, None, some("only-root", "in-root"), None]);
    assert_eq!(texts(&batch(&*nested, &keys).await), [None, None, None, some("only-nested", "in-nested")]);
}

/// An empty batch answers an empty list.
pub async fn batch_of_no_keys_answers_empty(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "present", "v").await;
    assert!(batch(&*store, &[]).await.is_empty(), "an empty batch answered something");
}

/// A batch of more than [`MAX_BATCH_KEYS`] keys is refused with
/// `InvalidInput` on `keys` before any I/O (an unreachable store refuses it
/// the same way, not as unavailable) and changes nothing; a batch of exactly
/// [`MAX_BATCH_KEYS`] is read.
pub async fn batch_over_the_limit_is_refused_before_any_io(f: &dyn StoreFactory) {
    let store = f.create().await;
    set_text(&*store, "limit-a", "a").await;
    set_text(&*store, "limit-b", "b").await;
    let before = must_get(&*store, &key("limit-a")).await;
    let names = ["limit-a", "limit-b", "limit-missing"];
    let keys: Vec<CredentialKey> = (0..=MAX_BATCH_KEYS).map(|i| key(names[i % names.len()])).collect();
    let refused = store.get_many(&keys).await.map(|a| a.len());
    assert_invalid_input(&refused.expect_err("a batch over the limit was read"), "keys");
    assert_unchanged(&before, &must_get(&*store, &key("limit-a")).await, "after the refused batch");
    let answers = batch(&*store, &keys[..MAX_BATCH_KEYS]).await;
    for (i, answer) in answers.iter().enumerate() {
        let want = match i % names.len() {
            0 => some("limit-a", "a"),
            1 => some("limit-b", "b"),
            _ => None,
        };
        assert_eq!(texts(std::slice::from_ref(answer)), [want], "answer {i} of a batch at the limit");
    }
    if let Some(unreachable) = f.unreachable().await {
        let refused = unreachable.get_many(&keys).await.map(|a| a.len());
        assert_invalid_input(&refused.expect_err("an unreachable store read a batch over the limit"), "keys");
    }
}

/// After overwrites (new values and metadata, an expiry where declared, a
/// binary value where declared, a delete and a re-create), each answer of
/// a batch is exactly what `get` of its key answers: value, metadata,
/// version, both times and the expiry.
pub async fn batch_agrees_with_get_after_overwrites(f: &dyn StoreFactory) {
    let store = f.create().await;
    let s = &*store;
    for (i, n) in ["one", "two", "three", "four"].into_iter().enumerate() {
        set(s, &key(n), &SecretValue::from(format!("first-{n}")), &meta_if(s, meta([("n", "1")]))).await;
        for round in 0..i {
            let m = meta_if(s, meta([("round", &format!("{round}")), ("owner", n)]));
            set(s, &key(n), &SecretValue::from(format!("round-{round}-{n}")), &m).await;
        }
    }
    if caps(s).expiry {
        let at = s.info().now() + Duration::from_secs(3600);
        let opts = SetOptions::new().with_expires_at(Some(at));
        s.set_opts(&key("two"), &SecretValue::from("expires-later"), &Metadata::new(), &opts)
            .await
            .unwrap_or_else(|e| panic!("a write with an expiry an hour ahead failed: {e}"));
    }
    if caps(s).binary {
        set(s, &key("three"), &SecretValue::from(vec![0u8, 159, 146, 150, 255]), &Metadata::new()).await;
    }
    assert!(s.delete(&key("four")).await.expect("delete"));
    set(s, &key("four"), &SecretValue::from("re-created"), &meta_if(s, meta([("again", "yes")]))).await;
    let keys = [key("four"), key("one"), key("absent"), key("three"), key("two"), key("one")];
    let answers = batch(s, &keys).await;
    for (k, got) in keys.iter().zip(&answers) {
        let want = s.get(k).await.unwrap_or_else(|e| panic!("get {k} failed: {e}"));
        assert_same(got, &want, &format!("key {k}"));
    }
    assert!(answers[2].is_none(), "a key never set was answered");
    assert_eq!(answers[0].as_ref().map(|c| text(&c.value)), Some("re-created"));
}
