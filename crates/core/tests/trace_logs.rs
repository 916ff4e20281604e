//! What `TraceLayer` logs. A binary of its own: `tracing` caches per call
//! site whether anyone listens, so a test that installs a subscriber must
//! not share its process with other tests that reach the same call site
//! first.

use std::sync::Arc;

use credstore_conformance::fixtures::{key, LogCapture};
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{CredentialStoreExt, Metadata, Namespace, SecretValue, StoreId, StoreRegistry};

fn mock(id: &str) -> MockStore {
    MockStore::new(StoreId::new(id).unwrap())
}

#[tokio::test]
async fn traced_operations_log_store_op_and_key_but_never_the_value() {
    let captured = LogCapture::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let traced = mock("traced");
    let mut r = StoreRegistry::new();
    r.register(Arc::new(traced.clone())).unwrap();
    let store = r.get("traced").unwrap();
    let secret = SecretValue::from("TOP-SECRET-VALUE-42");
    store.set(&key("api-key"), &secret, &Metadata::new()).await.unwrap();
    traced.fail_next_op(Op::Set, 1, Fault::Unavailable);
    let err = store.set(&key("fail"), &secret, &Metadata::new()).await.unwrap_err();
    assert!(err.is_retriable());
    let big = SecretValue::from("TOP-SECRET-VALUE-42".repeat(4000));
    store.set(&key("big"), &big, &Metadata::new()).await.unwrap_err();
    let bin = SecretValue::from(b"TOP-SECRET-BYTES\xff".to_vec());
    store.set(&key("bin"), &bin, &Metadata::new()).await.unwrap();
    // A namespace handle of a registered store keeps the layer.
    let ns = store.with_namespace(&Namespace::new("tenant-1").unwrap()).unwrap();
    assert!(ns.get(&key("in-ns")).await.unwrap().is_none());
    // The over-limit write was refused by its check and never reached the
    // store; the other three did.
    assert_eq!(traced.calls(Op::Set), 3);

    let log = captured.text();
    assert!(
        log.contains("store=traced") && log.contains("op=\"set\"") && log.contains("key=\"api-key\""),
        "{log}"
    );
    assert!(log.contains("scripted fault: unavailable"), "errors are logged: {log}");
    assert!(log.contains("namespace=\"tenant-1\"") && log.contains("key=\"in-ns\""), "{log}");
    assert!(!log.contains("TOP-SECRET"), "the value reached the log: {log}");
}
