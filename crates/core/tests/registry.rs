//! StoreRegistry and TracedStore against small test stores.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use credstore_core::*;

/// A store whose probe behaves as told; `set` records nothing but answers.
#[derive(Debug)]
struct Probe {
    id: StoreId,
    behaviour: &'static str,
}

#[async_trait]
impl CredentialStore for Probe {
    fn id(&self) -> &StoreId {
        &self.id
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Custom("probe".into())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }
    async fn get(&self, _: &CredentialKey) -> Result<Option<Credential>> {
        Ok(None)
    }
    async fn set(&self, key: &CredentialKey, value: &SecretValue, _: &Metadata) -> Result<SetOutcome> {
        check_value(value)?;
        if key.as_str() == "fail" {
            return Err(Error::unavailable(&self.id, "backend down"));
        }
        let now = SystemTime::now();
        Ok(SetOutcome { created: true, created_at: now, updated_at: now })
    }
    async fn has(&self, _: &CredentialKey) -> Result<bool> {
        Ok(false)
    }
    async fn delete(&self, _: &CredentialKey) -> Result<bool> {
        Ok(false)
    }
    async fn list(&self, _: &ListOptions) -> Result<ListPage> {
        Ok(ListPage { keys: vec![], next_cursor: None })
    }
    async fn check_availability(&self) -> Availability {
        match self.behaviour {
            "hang" => std::future::pending().await,
            "panic" => panic!("probe exploded"),
            "down" => Availability::down("sealed"),
            _ => Availability::up(),
        }
    }
}

fn probe(id: &str, behaviour: &'static str) -> Arc<dyn CredentialStore> {
    Arc::new(Probe { id: StoreId::new(id).unwrap(), behaviour })
}

#[tokio::test]
async fn duplicate_ids_are_refused_and_the_first_store_stays() {
    let mut r = StoreRegistry::new();
    r.register(probe("a", "up")).unwrap();
    let err = r.register(probe("a", "down")).unwrap_err();
    assert!(matches!(err, Error::AlreadyRegistered { ref store } if store == "a"), "{err:?}");
    assert_eq!(r.len(), 1);
    assert!(r.get("a").unwrap().check_availability().await.available);
    assert!(r.get("missing").is_none());
}

#[tokio::test]
async fn check_all_is_concurrent_bounded_and_in_registration_order() {
    let mut r = StoreRegistry::new();
    for (id, b) in
        [("z-hang", "hang"), ("a-up", "up"), ("m-down", "down"), ("b-panic", "panic"), ("c-hang", "hang")]
    {
        r.register(probe(id, b)).unwrap();
    }
    let started = Instant::now();
    let statuses = r.check_all(Duration::from_millis(300)).await;
    // Two hanging probes run at once: the whole check takes one timeout, not two.
    assert!(started.elapsed() < Duration::from_millis(550), "took {:?}", started.elapsed());
    let ids: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["z-hang", "a-up", "m-down", "b-panic", "c-hang"]);
    assert_eq!(statuses[0].availability, Availability::down("no answer within 300 ms"));
    assert_eq!(statuses[1].availability, Availability::up());
    assert_eq!(statuses[2].availability, Availability::down("sealed"));
    assert_eq!(statuses[3].availability, Availability::down("the availability probe panicked"));
    let json = serde_json::to_value(&statuses[2]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id": "m-down", "type": "probe", "available": false, "reason": "sealed"})
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn traced_operations_log_store_op_and_key_but_never_the_value() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut r = StoreRegistry::new();
    r.register(probe("traced", "up")).unwrap();
    let store = r.get("traced").unwrap();
    let secret = SecretValue::from("TOP-SECRET-VALUE-42");
    store.set(&CredentialKey::new("api-key").unwrap(), &secret, &Metadata::new()).await.unwrap();
    let err = store.set(&CredentialKey::new("fail").unwrap(), &secret, &Metadata::new()).await.unwrap_err();
    assert!(err.is_retriable());
    let big = SecretValue::new("TOP-SECRET-VALUE-42".repeat(4000));
    store.set(&CredentialKey::new("big").unwrap(), &big, &Metadata::new()).await.unwrap_err();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("store=traced") && log.contains("op=\"set\"") && log.contains("key=\"api-key\""),
        "{log}"
    );
    assert!(log.contains("backend down"), "errors are logged: {log}");
    assert!(!log.contains("TOP-SECRET"), "the value reached the log: {log}");
}
