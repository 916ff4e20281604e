//! The value never leaks into Debug output or errors.

use credstore_core::{CredentialStoreExt, Metadata, SecretValue, MAX_VALUE_BYTES};

use super::{assert_no_secret, key, meta, meta_if, must_get, secret};
use crate::StoreFactory;

/// The value never shows in `Debug` of the credential, the outcome or the
/// store, nor in the errors of a refused write.
pub async fn secret_absent_from_debug_and_errors(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("hidden");
    let v = secret("debug");
    let out = store.set(&k, &v, &meta_if(&*store, meta([("label", "not secret")]))).await.expect("set");
    let c = must_get(&*store, &k).await;
    assert_no_secret("Debug of Credential", &format!("{c:?} {c:#?}"), &v);
    assert_no_secret("Debug of SecretValue", &format!("{:?}", c.value), &v);
    assert_no_secret("Debug of SetOutcome", &format!("{out:?}"), &v);
    assert_no_secret("Debug of the store", &format!("{store:?}"), &v);
    assert!(format!("{c:?}").contains("hidden"), "Debug should still show the key");
    let big = SecretValue::from(v.expose_secret().repeat(MAX_VALUE_BYTES / v.len() + 1));
    let err = store.set(&k, &big, &Metadata::new()).await.expect_err("over limit");
    assert_no_secret("the over-limit error", &format!("{err} {err:?}"), &v);
    if store.capabilities().create_only {
        let err = store.create(&k, &v, &Metadata::new()).await.expect_err("create of a present key");
        assert_no_secret("the precondition error", &format!("{err} {err:?}"), &v);
    }
}
