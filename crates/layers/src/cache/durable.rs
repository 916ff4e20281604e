//! The durable second tier of a cache (see "Durable tier" on
//! [`CacheLayer`](super::CacheLayer)): what the cache owes the tier, the task
//! that writes it there, and the reads of it when the store is down.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use credstore_core::{
    Credential, CredentialKey, CredentialStore, CredentialStoreExt, Metadata, Namespace, SetOptions, StoreId,
    MAX_VALUE_BYTES,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::envelope::{self, Envelope};
use super::lock;

/// The namespace of the tier the envelopes go under, followed by the
/// wrapped store's id and the namespace of the cached handle.
pub const DURABLE_NAMESPACE: &str = "cache";

/// The most keys whose update may wait for the writer at once: past it, a
/// new value is not written (counted in `durable_failed`); removals are
/// always queued.
pub(super) const MAX_PENDING: usize = 10_000;

/// The longest one read or write of the tier may take: it is a local store,
/// but a stuck one must not hold the writer (or a read) forever.
const TIER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the tier is owed for one key.
#[derive(Clone)]
pub(super) enum Owed {
    /// The envelope of this credential, fetched at this time.
    Put(Credential, SystemTime),
    /// No entry.
    Remove,
}

type Slot = (Namespace, CredentialKey);

/// A cache's durable tier, shared by the cache and its writer task.
pub(super) struct Durable {
    /// The tier under `cache/<store id>`.
    root: Arc<dyn CredentialStore>,
    /// Handles of the tier per namespace of the cache; `None` when the tier
    /// refused one (too long a namespace): that namespace is not kept.
    handles: Mutex<HashMap<Namespace, Option<Arc<dyn CredentialStore>>>>,
    /// The latest update owed per key, with the sequence number it was
    /// queued under; removed once it has landed, unless replaced meanwhile.
    pending: Mutex<HashMap<Slot, (u64, Owed)>>,
    seq: AtomicU64,
    /// Serializes the writes of batches, so a key's updates land in order.
    applying: tokio::sync::Mutex<()>,
    wake: Notify,
    task: Mutex<Option<JoinHandle<()>>>,
    pub(super) written: AtomicU64,
    pub(super) failed: AtomicU64,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").field("tier", &self.root.info().id()).finish_non_exhaustive()
    }
}

impl Durable {
    /// The tier `tier` of the cache of `store`.
    pub(super) fn new(tier: &Arc<dyn CredentialStore>, store: &StoreId) -> Arc<Self> {
        let root = Namespace::new(format!("{DURABLE_NAMESPACE}/{store}"))
            .and_then(|ns| tier.with_namespace(&ns))
            .or_else(|e| {
                tracing::warn!(
                    tier = %tier.info().id(),
                    store = %store,
                    error = %e,
                    "the durable cache cannot name a namespace after the store; it keeps its entries under `{DURABLE_NAMESPACE}`"
                );
                tier.with_namespace(&Namespace::new(DURABLE_NAMESPACE)?)
            })
            .unwrap_or_else(|_| Arc::clone(tier));
        Arc::new(Self {
            root,
            handles: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            seq: AtomicU64::new(0),
            applying: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            task: Mutex::new(None),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// The tier's id, for messages.
    pub(super) fn tier_id(&self) -> &StoreId {
        self.root.info().id()
    }

    /// Queues `owed` for `key` of `namespace`, replacing what was queued for
    /// it. Call it under the lock that ordered the change, so that the queue
    /// holds each key's updates in the order the cache made them; then
    /// [`wake`](Self::wake) the writer.
    pub(super) fn owe(&self, namespace: &Namespace, key: &CredentialKey, owed: Owed) {
        let mut pending = lock(&self.pending);
        let slot = (namespace.clone(), key.clone());
        if matches!(owed, Owed::Put(..)) && pending.len() >= MAX_PENDING && !pending.contains_key(&slot) {
            drop(pending);
            self.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tier = %self.tier_id(),
                namespace = namespace.as_str(),
                key = key.as_str(),
                "the durable cache's writer is {MAX_PENDING} keys behind: this value is not kept there"
            );
            return;
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        pending.insert(slot, (seq, owed));
    }

    /// Tells the writer there is work, starting it on the current runtime
    /// first if it is not running (outside a runtime the work waits for the
    /// next wake inside one, or for [`flush`](Self::flush)).
    pub(super) fn wake(self: &Arc<Self>) {
        let mut task = lock(&self.task);
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                *task = Some(runtime.spawn(write_behind(Arc::clone(self))));
            }
        }
        drop(task);
        self.wake.notify_one();
    }

    /// Tells the writer the cache is gone: it writes what is owed and ends.
    pub(super) fn close(&self) {
        self.wake.notify_one();
    }

    /// Writes everything owed now, in order per key; returns once the
    /// queue is empty (updates queued meanwhile included).
    pub(super) async fn flush(&self) {
        let _order = self.applying.lock().await;
        loop {
            let batch: Vec<(Slot, (u64, Owed))> =
                lock(&self.pending).iter().map(|(slot, owed)| (slot.clone(), owed.clone())).collect();
            if batch.is_empty() {
                return;
            }
            for ((namespace, key), (seq, owed)) in batch {
                self.apply(&namespace, &key, owed).await;
                let mut pending = lock(&self.pending);
                let slot = (namespace, key);
                if pending.get(&slot).is_some_and(|(s, _)| *s == seq) {
                    pending.remove(&slot);
                }
            }
        }
    }

    /// Removes `key`'s entry now (after a write through the cache), besides
    /// the removal queued for it, which lands after any older update the
    /// writer may be making at this moment.
    pub(super) async fn remove_now(&self, namespace: &Namespace, key: &CredentialKey) {
        self.apply(namespace, key, Owed::Remove).await;
    }

    /// The tier's handle on `namespace`.
    fn handle(&self, namespace: &Namespace) -> Option<Arc<dyn CredentialStore>> {
        let mut handles = lock(&self.handles);
        if let Some(handle) = handles.get(namespace) {
            return handle.clone();
        }
        if handles.len() >= 1024 {
            handles.clear();
        }
        let handle = match self.root.with_namespace(namespace) {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::warn!(
                    tier = %self.tier_id(),
                    namespace = namespace.as_str(),
                    error = %e,
                    "the durable cache keeps nothing of this namespace: the tier refuses it"
                );
                None
            }
        };
        handles.insert(namespace.clone(), handle.clone());
        handle
    }

    async fn apply(&self, namespace: &Namespace, key: &CredentialKey, owed: Owed) {
        let Some(tier) = self.handle(namespace) else { return };
        let owed = match owed {
            Owed::Put(credential, fetched_at) => {
                let value = envelope::encode(&credential, fetched_at);
                if value.len() > MAX_VALUE_BYTES {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        tier = %self.tier_id(),
                        namespace = namespace.as_str(),
                        key = key.as_str(),
                        bytes = value.len(),
                        "the durable cache cannot keep this value: its envelope is larger than a store takes"
                    );
                    // An older envelope of the key must not outlive it.
                    None
                } else {
                    Some((value, SetOptions::new().with_expires_at(credential.expires_at)))
                }
            }
            Owed::Remove => None,
        };
        let result = match &owed {
            Some((value, options)) => {
                let metadata = Metadata::new();
                let write = tier.set_opts(key, value, &metadata, options);
                tokio::time::timeout(TIER_TIMEOUT, write).await.map(|r| r.map(drop))
            }
            None => tokio::time::timeout(TIER_TIMEOUT, tier.delete(key)).await.map(|r| r.map(drop)),
        };
        match result {
            Ok(Ok(())) => {
                self.written.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(e)) => self.write_failed(namespace, key, &e.to_string()),
            Err(_) => self.write_failed(namespace, key, "timed out"),
        }
    }

    fn write_failed(&self, namespace: &Namespace, key: &CredentialKey, error: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            tier = %self.tier_id(),
            namespace = namespace.as_str(),
            key = key.as_str(),
            error,
            "the durable cache could not update its entry"
        );
    }

    /// The envelope of `key` in `namespace`: what is owed to the tier if
    /// anything is (it is newer), else what the tier holds. A tier that
    /// fails or holds something that is not an envelope has nothing (logged
    /// at `warn`).
    pub(super) async fn read(&self, namespace: &Namespace, key: &CredentialKey) -> Option<Envelope> {
        let owed = lock(&self.pending).get(&(namespace.clone(), key.clone())).map(|(_, o)| o.clone());
        match owed {
            Some(Owed::Put(credential, fetched_at)) => return Some(Envelope { credential, fetched_at }),
            Some(Owed::Remove) => return None,
            None => {}
        }
        let tier = self.handle(namespace)?;
        let found = match tokio::time::timeout(TIER_TIMEOUT, tier.get(key)).await {
            Ok(Ok(found)) => found?,
            Ok(Err(e)) => return self.read_failed(namespace, key, &e.to_string()),
            Err(_) => return self.read_failed(namespace, key, "timed out"),
        };
        match envelope::decode(key, found.value.expose_secret()) {
            Ok(envelope) => Some(envelope),
            Err(e) => self.read_failed(namespace, key, &e.to_string()),
        }
    }

    fn read_failed(&self, namespace: &Namespace, key: &CredentialKey, error: &str) -> Option<Envelope> {
        tracing::warn!(
            tier = %self.tier_id(),
            namespace = namespace.as_str(),
            key = key.as_str(),
            error,
            "the durable cache could not read its entry"
        );
        None
    }
}

/// Writes what the cache owes its durable tier, as it is owed; ends once
/// the cache is gone and nothing more is owed.
async fn write_behind(durable: Arc<Durable>) {
    loop {
        durable.flush().await;
        if Arc::strong_count(&durable) == 1 {
            // The cache is gone: what it queued last is written above.
            durable.flush().await;
            return;
        }
        durable.wake.notified().await;
    }
}
