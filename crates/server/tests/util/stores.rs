//! Misbehaving stores for the error-path tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, ListOptions,
    ListPage, Metadata, Result, SecretValue, SetOutcome, StoreId, StoreKind,
};
use credstore_memory::MemoryStore;
use credstore_server::state::Backend;

/// A memory store whose probe and operations take `delay` first.
#[derive(Debug, Clone)]
pub struct SlowStore {
    inner: MemoryStore,
    probe_delay: Duration,
    op_delay: Duration,
    /// How many `set` calls have started.
    sets_started: Arc<AtomicUsize>,
}

impl SlowStore {
    pub fn backend(id: &str, probe_delay: Duration, op_delay: Duration) -> Backend {
        Self::counted(id, probe_delay, op_delay).0
    }

    /// The backend and a counter of the `set` calls that have started.
    pub fn counted(id: &str, probe_delay: Duration, op_delay: Duration) -> (Backend, Arc<AtomicUsize>) {
        let sets_started = Arc::new(AtomicUsize::new(0));
        let s = SlowStore {
            inner: MemoryStore::new(StoreId::new(id).unwrap()),
            probe_delay,
            op_delay,
            sets_started: sets_started.clone(),
        };
        (
            Backend::of(s, |s, ns| Ok(SlowStore { inner: s.inner.with_namespace(ns)?, ..s.clone() })),
            sets_started,
        )
    }
}

#[async_trait]
impl CredentialStore for SlowStore {
    fn id(&self) -> &StoreId {
        self.inner.id()
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Custom("slow".into())
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        tokio::time::sleep(self.op_delay).await;
        self.inner.get(key).await
    }
    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome> {
        self.sets_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.op_delay).await;
        self.inner.set(key, value, metadata).await
    }
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        tokio::time::sleep(self.op_delay).await;
        self.inner.has(key).await
    }
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        tokio::time::sleep(self.op_delay).await;
        self.inner.delete(key).await
    }
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        tokio::time::sleep(self.op_delay).await;
        self.inner.list(options).await
    }
    async fn check_availability(&self) -> Availability {
        tokio::time::sleep(self.probe_delay).await;
        Availability::up()
    }
}

/// What a [`FaultyStore`] does on every operation.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// `Error::Backend` whose message is "disk controller on fire".
    Backend,
    /// `Error::Conflict`.
    Conflict,
    /// A panic.
    Panic,
    /// `Error::PermissionDenied` (the backend refused the server).
    Denied,
}

/// A store that fails every operation with its fault.
#[derive(Debug, Clone)]
pub struct FaultyStore {
    id: StoreId,
    fault: Fault,
}

impl FaultyStore {
    pub fn backend(id: &str, fault: Fault) -> Backend {
        let s = FaultyStore { id: StoreId::new(id).unwrap(), fault };
        Backend::new(
            Arc::new(s.clone()),
            Arc::new(move |_| Ok(Arc::new(s.clone()) as Arc<dyn CredentialStore>)),
        )
    }

    fn fail<T>(&self) -> Result<T> {
        match self.fault {
            Fault::Backend => Err(Error::backend(&self.id, "disk controller on fire")),
            Fault::Conflict => {
                Err(Error::Conflict { store: self.id.clone(), reason: "concurrent rotation".into() })
            }
            Fault::Panic => panic!("faulty store panics on purpose"),
            Fault::Denied => {
                Err(Error::PermissionDenied { store: self.id.clone(), reason: "policy says no".into() })
            }
        }
    }
}

#[async_trait]
impl CredentialStore for FaultyStore {
    fn id(&self) -> &StoreId {
        &self.id
    }
    fn kind(&self) -> StoreKind {
        StoreKind::Custom("faulty".into())
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }
    async fn get(&self, _: &CredentialKey) -> Result<Option<Credential>> {
        self.fail()
    }
    async fn set(&self, _: &CredentialKey, _: &SecretValue, _: &Metadata) -> Result<SetOutcome> {
        self.fail()
    }
    async fn has(&self, _: &CredentialKey) -> Result<bool> {
        self.fail()
    }
    async fn delete(&self, _: &CredentialKey) -> Result<bool> {
        self.fail()
    }
    async fn list(&self, _: &ListOptions) -> Result<ListPage> {
        self.fail()
    }
    async fn check_availability(&self) -> Availability {
        if matches!(self.fault, Fault::Panic) {
            panic!("faulty probe panics on purpose");
        }
        Availability::up()
    }
}
