//! StoreRegistry, TraceLayer and TimeoutLayer against scripted mock stores.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::layers::{TimeoutLayer, TraceLayer};
use credstore_core::*;

fn mock(id: &str) -> MockStore {
    MockStore::new(StoreId::new(id).unwrap()).with_kind(StoreKind::from_static("probe"))
}

#[tokio::test]
async fn duplicate_ids_are_refused_and_the_first_store_stays() {
    let mut r = StoreRegistry::new();
    r.register(Arc::new(mock("a"))).unwrap();
    let second = mock("a");
    second.set_availability(Availability::down("sealed"));
    let err = r.register(Arc::new(second.clone())).unwrap_err();
    assert!(matches!(err, Error::AlreadyRegistered { ref store } if store == "a"), "{err:?}");
    assert_eq!(r.len(), 1);
    assert!(r.get("a").unwrap().check_availability().await.available, "the first store was replaced");
    assert_eq!(second.calls(Op::CheckAvailability), 0);
    assert!(r.get("missing").is_none());
}

/// On tokio's paused clock, so the durations are exact, whatever the load.
#[tokio::test(start_paused = true)]
async fn check_all_is_concurrent_bounded_and_in_registration_order() {
    let (hang_z, up, down, panics, hang_c) =
        (mock("z-hang"), mock("a-up"), mock("m-down"), mock("b-panic"), mock("c-hang"));
    hang_z.fail_next_op(Op::CheckAvailability, 1, Fault::Hang);
    hang_c.fail_next_op(Op::CheckAvailability, 1, Fault::Hang);
    down.set_availability(Availability::down("sealed"));
    panics.fail_next_op(Op::CheckAvailability, 1, Fault::Panic);
    let mut r = StoreRegistry::new();
    for m in [&hang_z, &up, &down, &panics, &hang_c] {
        r.register(Arc::new(m.clone())).unwrap();
    }
    let started = Instant::now();
    let statuses = r.check_all(Duration::from_millis(300)).await;
    // Two hanging probes run at once: the whole check takes one timeout, not two.
    let took = started.elapsed();
    assert_eq!(took, Duration::from_millis(300), "the hanging probes ran one after the other");
    let ids: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["z-hang", "a-up", "m-down", "b-panic", "c-hang"]);
    assert_eq!(statuses[0].availability, Availability::down("no answer within 300 ms"));
    assert_eq!(statuses[1].availability, Availability::up());
    assert_eq!(statuses[2].availability, Availability::down("sealed"));
    assert_eq!(statuses[3].availability, Availability::down("the availability probe panicked"));
    assert_eq!(statuses[4].availability, Availability::down("no answer within 300 ms"));
    for m in [&hang_z, &up, &down, &panics, &hang_c] {
        assert_eq!(m.calls(Op::CheckAvailability), 1, "each store is probed once");
    }
    let json = serde_json::to_value(&statuses[2]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id": "m-down", "type": "probe", "available": false, "reason": "sealed"})
    );
    let json = serde_json::to_value(&statuses[1]).unwrap();
    assert_eq!(json, serde_json::json!({"id": "a-up", "type": "probe", "available": true, "reason": null}));
    // The scripts are used up: the next check finds every store up but the sealed one.
    let again = r.check_all(Duration::from_millis(300)).await;
    let up_now: Vec<bool> = again.iter().map(|s| s.availability.available).collect();
    assert_eq!(up_now, [true, true, false, true, true]);
}

/// On tokio's paused clock, so the duration is exact, whatever the load.
#[tokio::test(start_paused = true)]
async fn timeout_layer_turns_a_hang_into_a_retriable_unavailable() {
    let inner = mock("slow");
    let store = (Arc::new(inner.clone()) as Arc<dyn CredentialStore>)
        .with_layer(TimeoutLayer::new(Duration::from_millis(100)));
    let k = key("k");

    inner.fail_next_op(Op::Get, 1, Fault::Hang);
    let started = Instant::now();
    let err = store.get(&k).await.unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_millis(100), "the timeout did not bound the call");
    match &err {
        Error::Unavailable { store: id, reason, .. } => {
            assert_eq!(id, "slow");
            assert_eq!(reason, "no answer within 100 ms");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(err.is_retriable());

    // A hanging write changes nothing; a slow call within the timeout answers.
    inner.fail_next_op(Op::Set, 1, Fault::Hang);
    assert!(store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.is_err());
    assert!(store.get(&k).await.unwrap().is_none());
    inner.set_latency(Duration::from_millis(10));
    store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    inner.set_latency(Duration::ZERO);

    // The probe answers down instead of hanging.
    inner.fail_next_op(Op::CheckAvailability, 1, Fault::Hang);
    assert_eq!(store.check_availability().await, Availability::down("no answer within 100 ms"));
    assert!(store.check_availability().await.available);

    // Namespace handles keep the layer.
    let ns = store.with_namespace(&Namespace::new("tenant-1/project-1").unwrap()).unwrap();
    assert_eq!(ns.namespace().as_str(), "tenant-1/project-1");
    inner.fail_next_op(Op::Has, 1, Fault::Hang);
    let err = ns.has(&k).await.unwrap_err();
    assert!(err.is_retriable() && err.to_string().contains("no answer within 100 ms"), "{err}");
    inner.fail_next_op(Op::Version, 1, Fault::Hang);
    assert!(ns.version(&k).await.unwrap_err().is_retriable());
    assert_eq!(inner.calls(Op::Has), 1);
}

#[tokio::test]
async fn trace_and_timeout_layers_stack() {
    let inner = mock("stacked");
    let store = (Arc::new(inner.clone()) as Arc<dyn CredentialStore>)
        .with_layer(TimeoutLayer::new(Duration::from_millis(100)))
        .with_layer(TraceLayer::new());
    inner.fail_next(1, Fault::Hang);
    let err = store.delete(&key("k")).await.unwrap_err();
    assert!(err.to_string().contains("no answer within 100 ms"), "{err}");
    assert_eq!(store.id(), "stacked");
    assert_eq!(store.capabilities(), inner.capabilities());
}
