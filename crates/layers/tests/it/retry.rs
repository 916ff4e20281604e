//! The retry layer against the suite's mock store: what is retried, how
//! often, and within what time (tokio's paused clock).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::fixtures::key;
use credstore_conformance::mock::{Fault, MockStore, Op};
use credstore_core::{
    Availability, Credential, CredentialKey, CredentialStore, CredentialStoreExt, Error, ListOptions,
    ListPage, Metadata, Namespace, Result, SecretValue, SetOutcome, StoreExt, StoreId, StoreInfo,
    WriteRequest,
};
use credstore_layers::{RetryLayer, RETRIED_PRECONDITION_NOTE};
use tokio::time::Instant;

fn mock() -> MockStore {
    MockStore::new(StoreId::new("backend").expect("valid id"))
}

fn retried(mock: &MockStore, layer: RetryLayer) -> Arc<dyn CredentialStore> {
    (Arc::new(mock.clone()) as Arc<dyn CredentialStore>).with_layer(layer)
}

fn value(text: &str) -> SecretValue {
    SecretValue::from(text)
}

#[tokio::test(start_paused = true)]
async fn retriable_errors_are_retried_until_success() {
    let mock = mock();
    mock.set(&key("k"), &value("v"), &Metadata::new()).await.expect("set");
    let store = retried(&mock, RetryLayer::new().with_max_attempts(3));
    mock.reset_calls();
    mock.fail_next_op(Op::Get, 2, Fault::Unavailable);
    assert!(store.get(&key("k")).await.expect("the third attempt succeeds").is_some());
    assert_eq!(mock.calls(Op::Get), 3);

    mock.fail_next_op(Op::Set, 1, Fault::Conflict);
    store.set(&key("k"), &value("w"), &Metadata::new()).await.expect("a conflict is retried");
    assert_eq!(mock.calls(Op::Set), 2);
    for op in [Op::Has, Op::Version, Op::Delete, Op::List] {
        mock.fail_next_op(op, 1, Fault::Unavailable);
    }
    assert!(store.has(&key("k")).await.expect("has"));
    assert!(store.version(&key("k")).await.expect("version").is_some());
    assert_eq!(store.list(&ListOptions::new()).await.expect("list").keys, vec![key("k")]);
    assert!(store.delete(&key("k")).await.expect("delete"));
    for op in [Op::Has, Op::Version, Op::Delete, Op::List] {
        assert_eq!(mock.calls(op), 2, "{op:?} was retried once");
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded() {
    let mock = mock();
    let store = retried(&mock, RetryLayer::new().with_max_attempts(4));
    mock.fail_next_op(Op::Get, 100, Fault::Unavailable);
    let err = store.get(&key("k")).await.expect_err("every attempt fails");
    assert!(matches!(err, Error::Unavailable { .. }), "the last error is returned: {err:?}");
    assert_eq!(mock.calls(Op::Get), 4);

    let once = retried(&mock, RetryLayer::new().with_max_attempts(1));
    mock.reset_calls();
    assert!(once.get(&key("k")).await.is_err());
    assert_eq!(mock.calls(Op::Get), 1, "one attempt means no retry");
}

#[tokio::test(start_paused = true)]
async fn only_retriable_errors_are_retried() {
    let mock = mock();
    let store = retried(&mock, RetryLayer::new().with_max_attempts(5));
    for fault in [Fault::PermissionDenied, Fault::Backend] {
        mock.reset_calls();
        mock.fail_next_op(Op::Get, 5, fault);
        assert!(store.get(&key("k")).await.is_err());
        assert_eq!(mock.calls(Op::Get), 1, "{fault:?} is not retried");
        mock.clear_faults();
    }

    mock.set(&key("k"), &value("v"), &Metadata::new()).await.expect("set");
    mock.reset_calls();
    let err = store.create(&key("k"), &value("w"), &Metadata::new()).await.expect_err("exists");
    assert!(
        matches!(&err, Error::PreconditionFailed { reason, .. } if !reason.contains(RETRIED_PRECONDITION_NOTE))
    );
    assert_eq!(mock.calls(Op::Set), 1, "a failed precondition is never retried");

    // Bad input is refused before any attempt.
    let big = SecretValue::from("x".repeat(credstore_core::MAX_VALUE_BYTES + 1));
    assert!(matches!(store.set(&key("k"), &big, &Metadata::new()).await, Err(Error::InvalidInput { .. })));
    assert_eq!(mock.calls(Op::Set), 1);
}

#[tokio::test(start_paused = true)]
async fn the_total_budget_is_respected() {
    let mock = mock();
    let layer = RetryLayer::new()
        .with_max_attempts(100)
        .with_initial_backoff(Duration::from_secs(1))
        .with_max_backoff(Duration::from_secs(1))
        .with_budget(Duration::from_millis(3_500));
    let store = retried(&mock, layer);
    mock.fail_next_op(Op::Get, 1000, Fault::Unavailable);
    let started = Instant::now();
    assert!(store.get(&key("k")).await.is_err());
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_millis(3_500), "took {elapsed:?}");
    // Waits are 0.5 to 1 s each: 4 to 8 attempts fit in 3.5 s.
    let attempts = mock.calls(Op::Get);
    assert!((4..=8).contains(&attempts), "{attempts} attempts");
}

#[tokio::test(start_paused = true)]
async fn the_budget_cuts_an_attempt_that_hangs() {
    let mock = mock();
    let store = retried(&mock, RetryLayer::new().with_budget(Duration::from_secs(2)));
    mock.fail_next_op(Op::Get, 1, Fault::Hang);
    let started = Instant::now();
    let err = store.get(&key("k")).await.expect_err("the budget is spent");
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert!(matches!(&err, Error::Unavailable { reason, .. } if reason.contains("retry budget")), "{err:?}");
    assert_eq!(mock.calls(Op::Get), 1);
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_between_attempts() {
    let mock = mock();
    let layer = RetryLayer::new()
        .with_max_attempts(4)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(10));
    let store = retried(&mock, layer);
    mock.fail_next_op(Op::Get, 3, Fault::Unavailable);
    let started = Instant::now();
    store.get(&key("k")).await.expect("the fourth attempt succeeds");
    // Waits of 50-100, 100-200 and 200-400 ms.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(350) && elapsed <= Duration::from_millis(700), "{elapsed:?}");
}

/// A store whose first write is applied and then answered with a timeout:
/// what a retry of a write that did land sees.
#[derive(Debug)]
struct LandsThenTimesOut {
    inner: MockStore,
    struck: AtomicBool,
}

#[credstore_core::async_trait]
impl CredentialStore for LandsThenTimesOut {
    fn info(&self) -> &StoreInfo {
        self.inner.info()
    }
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        self.inner.with_namespace(namespace)
    }
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.inner.get(key).await
    }
    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let outcome = self.inner.write(request).await?;
        if !self.struck.swap(true, Ordering::SeqCst) {
            return Err(Error::unavailable(self.id(), "no answer within 10 ms"));
        }
        Ok(outcome)
    }
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.inner.delete(key).await
    }
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }
    async fn check_availability(&self) -> Availability {
        self.inner.check_availability().await
    }
}

#[tokio::test(start_paused = true)]
async fn a_retried_create_reports_a_marked_precondition_failure_for_its_own_earlier_success() {
    let mock = mock();
    let flaky = Arc::new(LandsThenTimesOut { inner: mock.clone(), struck: AtomicBool::new(false) });
    let store = (flaky as Arc<dyn CredentialStore>).with_layer(RetryLayer::new());
    let err = store.create(&key("k"), &value("mine"), &Metadata::new()).await.expect_err("documented");
    match &err {
        Error::PreconditionFailed { reason, .. } => {
            assert!(reason.contains(RETRIED_PRECONDITION_NOTE), "{reason}")
        }
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    let stored = mock.get(&key("k")).await.expect("get").expect("the first attempt landed");
    assert_eq!(stored.value.expose_str().expect("text"), "mine", "nothing was overwritten");
    assert_eq!(mock.calls(Op::Set), 2);
}

#[tokio::test(start_paused = true)]
async fn conditional_writes_can_be_left_unretried() {
    let mock = mock();
    let store = retried(&mock, RetryLayer::new().with_retry_conditional_writes(false));
    mock.fail_next_op(Op::Set, 1, Fault::Unavailable);
    assert!(store.create(&key("k"), &value("v"), &Metadata::new()).await.unwrap_err().is_retriable());
    assert_eq!(mock.calls(Op::Set), 1, "a conditional write is not retried then");
    mock.fail_next_op(Op::Set, 1, Fault::Unavailable);
    store.set(&key("k"), &value("v"), &Metadata::new()).await.expect("upserts still are");
    assert_eq!(mock.calls(Op::Set), 3);
}

#[tokio::test(start_paused = true)]
async fn namespaces_keep_the_retries_and_probes_are_not_retried() {
    let mock = mock();
    let store = retried(&mock, RetryLayer::new());
    let tenant = store.with_namespace(&Namespace::new("tenant").expect("ns")).expect("ns");
    mock.fail_next_op(Op::Get, 1, Fault::Unavailable);
    assert!(tenant.get(&key("k")).await.expect("retried").is_none());
    assert_eq!(mock.calls(Op::Get), 2);
    mock.set_availability(Availability::down("maintenance"));
    assert!(!tenant.check_availability().await.available);
    assert_eq!(mock.calls(Op::CheckAvailability), 1);
}

#[tokio::test(start_paused = true)]
async fn the_policy_runs_any_call_outside_a_store() {
    let id = StoreId::new("vault").expect("id");
    let mut calls = 0;
    let answer = RetryLayer::new()
        .with_max_attempts(5)
        .retry(&id, "login", || {
            calls += 1;
            let outcome = if calls < 3 { Err(Error::conflict(&id, "busy")) } else { Ok(calls) };
            async move { outcome }
        })
        .await
        .expect("the third attempt succeeds");
    assert_eq!(answer, 3);

    let mut calls = 0;
    let err = RetryLayer::new()
        .retry(&id, "login", || {
            calls += 1;
            async { Err::<(), _>(Error::permission_denied(&id, "bad token")) }
        })
        .await
        .expect_err("not retriable");
    assert!(matches!(err, Error::PermissionDenied { .. }));
    assert_eq!(calls, 1);
}

#[tokio::test(start_paused = true)]
async fn history_reads_and_purges_are_retried_on_retriable_errors() {
    let caps = MockStore::DEFAULT_CAPABILITIES
        .with_versions(true)
        .with_retention(credstore_core::Retention::versions(5));
    let mock = mock().with_capabilities(caps);
    let first = mock.set(&key("k"), &value("v1"), &Metadata::new()).await.expect("set").version;
    mock.set(&key("k"), &value("v2"), &Metadata::new()).await.expect("set");
    let store = retried(&mock, RetryLayer::new().with_max_attempts(3));
    mock.reset_calls();
    mock.fail_next_op(Op::GetVersion, 2, Fault::Unavailable);
    assert!(store.get_version(&key("k"), &first).await.expect("the third attempt").is_some());
    mock.fail_next_op(Op::ListVersions, 1, Fault::Conflict);
    let page = store.list_versions(&key("k"), &credstore_core::VersionListOptions::new()).await;
    assert_eq!(page.expect("the second attempt").versions.len(), 2);
    mock.fail_next_op(Op::Purge, 1, Fault::Unavailable);
    assert!(store
        .purge(&key("k"), &credstore_core::PurgeTarget::Version(first))
        .await
        .expect("the second attempt"));
    assert_eq!((mock.calls(Op::GetVersion), mock.calls(Op::ListVersions), mock.calls(Op::Purge)), (3, 2, 2));
    mock.fail_next_op(Op::Purge, 1, Fault::PermissionDenied);
    let denied = store.purge(&key("k"), &credstore_core::PurgeTarget::Key).await;
    assert!(matches!(denied, Err(Error::PermissionDenied { .. })), "{denied:?}");
    assert_eq!(mock.calls(Op::Purge), 3, "a non-retriable error is not retried");
}
