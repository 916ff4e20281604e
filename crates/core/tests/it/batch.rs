//! The provided `get_many`: answers in the order asked, checks the batch
//! before any I/O, and fails as a whole.

use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::*;

fn key(name: &str) -> CredentialKey {
    CredentialKey::new(name).unwrap()
}

async fn store_with(keys: &[&str]) -> MockStore {
    let store = MockStore::new(StoreId::new("mock").unwrap());
    for k in keys {
        store.set(&key(k), &SecretValue::from(format!("value of {k}")), &Metadata::new()).await.unwrap();
    }
    store.reset_calls();
    store
}

#[tokio::test]
async fn answers_follow_the_order_of_the_keys_with_none_for_missing_and_repeats_answered_twice() {
    let store = store_with(&["a", "b", "c"]).await;
    let keys = [key("c"), key("missing"), key("a"), key("c")];
    let answers = store.get_many(&keys).await.unwrap();
    let values: Vec<Option<String>> =
        answers.iter().map(|c| c.as_ref().map(|c| c.value.expose_str().unwrap().to_owned())).collect();
    assert_eq!(
        values,
        [Some("value of c".into()), None, Some("value of a".into()), Some("value of c".into())]
    );
    assert_eq!(answers[0].as_ref().unwrap().key, key("c"));
    assert_eq!(store.calls(Op::Get), 4);
    assert!(store.get_many(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_before_any_read() {
    let store = store_with(&["a"]).await;
    let keys = vec![key("a"); MAX_BATCH_KEYS + 1];
    match store.get_many(&keys).await {
        Err(Error::InvalidInput { field, reason }) => {
            assert_eq!(field, "keys");
            assert!(reason.contains(&MAX_BATCH_KEYS.to_string()), "{reason}");
        }
        other => panic!("expected InvalidInput on keys, got {other:?}"),
    }
    assert_eq!(store.total_calls(), 0);
    assert_eq!(store.get_many(&keys[..MAX_BATCH_KEYS]).await.unwrap().len(), MAX_BATCH_KEYS);
}

#[tokio::test]
async fn one_failed_read_fails_the_whole_batch() {
    let store = store_with(&["a", "b"]).await;
    store.fail_next_op(Op::Get, 1, Fault::PermissionDenied);
    let err = store.get_many(&[key("a"), key("b")]).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
}
