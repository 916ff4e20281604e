//! [`MockStore`]: a scriptable, fault-injecting in-memory store for tests.
//!
//! It is a complete store (namespaces, versions, atomic create-only and
//! replace-if-version writes, binary values, listing) that passes the whole
//! conformance suite, plus a script: fail the next calls, fail a ratio of
//! calls, hang, panic, answer slowly, report itself down, and count every
//! call. Use it to test code that uses a store: a cache, a retry layer, a
//! server handler.
//!
//! ```
//! use std::sync::Arc;
//! use credstore_conformance::mock::{Fault, MockStore, Op};
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
//! let mock = MockStore::new(StoreId::new("mock")?);
//! let store: Arc<dyn CredentialStore> = Arc::new(mock.clone()); // shares state and script
//! let key = CredentialKey::new("api-key")?;
//!
//! mock.fail_next_op(Op::Set, 1, Fault::Unavailable);
//! let err = store.set(&key, &SecretValue::from("v1"), &Metadata::new()).await.unwrap_err();
//! assert!(err.is_retriable());
//! assert!(store.get(&key).await?.is_none(), "a failed scripted call changes nothing");
//!
//! store.set(&key, &SecretValue::from("v1"), &Metadata::new()).await?; // the script is used up
//! assert_eq!(mock.calls(Op::Set), 2);
//! assert_eq!(mock.calls(Op::Get), 1);
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use credstore_core::{
    Availability, Capabilities, ChangeFeed, ChangeHub, Credential, CredentialKey, CredentialStore, Error,
    ListOptions, ListPage, Metadata, Namespace, Persistence, PurgeTarget, Result, SecretValue, SetMode,
    SetOutcome, StoreId, StoreInfo, StoreKind, Version, VersionInfo, VersionListOptions, VersionPage,
    VersionState, WriteRequest,
};

/// An operation of [`CredentialStore`], as the mock counts and scripts them:
/// core's [`Operation`](credstore_core::layers::Operation).
pub use credstore_core::layers::Operation as Op;

fn index(op: Op) -> usize {
    Op::ALL.iter().position(|o| *o == op).expect("every operation is in Op::ALL")
}

/// What a scripted call does instead of its work.
///
/// For [`Op::CheckAvailability`] the error faults answer
/// `available: false` with the fault in the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fault {
    /// Fails with [`Error::Unavailable`] (retriable).
    Unavailable,
    /// Fails with [`Error::PermissionDenied`].
    PermissionDenied,
    /// Fails with [`Error::Conflict`] (retriable).
    Conflict,
    /// Fails with [`Error::Backend`].
    Backend,
    /// Never answers: the future stays pending forever (for timeout tests).
    Hang,
    /// Panics (for tests of code that must survive a panicking store).
    Panic,
}

impl Fault {
    fn describe(self) -> &'static str {
        match self {
            Fault::Unavailable => "scripted fault: unavailable",
            Fault::PermissionDenied => "scripted fault: permission denied",
            Fault::Conflict => "scripted fault: conflict",
            Fault::Backend => "scripted fault: backend failure",
            Fault::Hang => "scripted fault: hang",
            Fault::Panic => "scripted fault: panic",
        }
    }

    fn error(self, store: &StoreId) -> Error {
        match self {
            Fault::Unavailable => Error::unavailable(store, self.describe()),
            Fault::PermissionDenied => Error::permission_denied(store, self.describe()),
            Fault::Conflict => Error::conflict(store, self.describe()),
            Fault::Backend | Fault::Hang | Fault::Panic => Error::backend(store, self.describe()),
        }
    }

    /// Acts out the fault: hangs, panics, or returns the error to answer with.
    async fn strike(self, store: &StoreId) -> Error {
        match self {
            Fault::Hang => std::future::pending().await,
            Fault::Panic => panic!("{} in store '{store}'", self.describe()),
            _ => self.error(store),
        }
    }
}

/// One stored credential.
#[derive(Clone)]
struct Entry {
    value: SecretValue,
    metadata: Metadata,
    version: Version,
    created_at: SystemTime,
    updated_at: SystemTime,
    expires_at: Option<SystemTime>,
}

impl Entry {
    fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn credential(&self, key: &CredentialKey) -> Credential {
        Credential {
            key: key.clone(),
            value: self.value.clone(),
            metadata: self.metadata.clone(),
            version: self.version.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
        }
    }

    fn info(&self, state: VersionState) -> VersionInfo {
        VersionInfo::new(self.version.clone(), state, self.updated_at)
            .with_expires_at(self.expires_at)
            .with_metadata(self.metadata.clone())
    }
}

/// An earlier version of a key, where the mock declares `versions`.
struct Past {
    entry: Entry,
    /// When it stopped being current, by the mock's clock.
    superseded_at: SystemTime,
    /// It was current when the key was deleted.
    deleted: bool,
}

#[derive(Default)]
struct Data {
    namespaces: BTreeMap<Namespace, BTreeMap<CredentialKey, Entry>>,
    /// The earlier versions of each key, oldest first.
    history: BTreeMap<(Namespace, CredentialKey), Vec<Past>>,
    /// The last version handed out, shared by every key and namespace.
    counter: u64,
}

struct Script {
    any: Option<(usize, Fault)>,
    per_op: BTreeMap<Op, (usize, Fault)>,
    ratio: Option<(f64, Fault)>,
    rng: u64,
    latency: Duration,
    availability: Availability,
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for Script {
    fn default() -> Self {
        Self {
            any: None,
            per_op: BTreeMap::new(),
            ratio: None,
            rng: SEED,
            latency: Duration::ZERO,
            availability: Availability::up(),
        }
    }
}

impl Script {
    /// The fault for one call of `op`, using up the script.
    fn draw(&mut self, op: Op) -> Option<Fault> {
        if let Some((n, fault)) = self.per_op.get_mut(&op) {
            let fault = *fault;
            *n -= 1;
            if *n == 0 {
                self.per_op.remove(&op);
            }
            return Some(fault);
        }
        if let Some((n, fault)) = &mut self.any {
            let fault = *fault;
            *n -= 1;
            if *n == 0 {
                self.any = None;
            }
            return Some(fault);
        }
        let (ratio, fault) = self.ratio?;
        // xorshift64: deterministic, so a test with a ratio is repeatable.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64;
        (unit < ratio).then_some(fault)
    }
}

struct Shared {
    data: Mutex<Data>,
    script: Mutex<Script>,
    calls: [AtomicUsize; Op::ALL.len()],
    changes: ChangeHub,
}

/// How many unread events each subscriber of a mock's feed keeps.
const FEED_CAPACITY: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A scripted panic never happens while a lock is held; recover anyway.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scriptable in-memory store; see the [module docs](self).
///
/// # Behavior
/// - A complete store: namespaces ([`CredentialStore::with_namespace`]),
///   a version from one counter shared by every key, atomic create-only and
///   replace-if-version writes, binary values, listing in key order.
///   Credentials live as long as the mock ([`Persistence::Process`]).
/// - A history of each key when declared (`versions`, `recover_deleted`,
///   with the declared `retention`; off in
///   [`MockStore::DEFAULT_CAPABILITIES`], as the feed is): `get_version`,
///   `list_versions`, `purge` of one version and `restore` work, and a
///   delete keeps the history where `recover_deleted` is declared. Expiry
///   when declared (`expiry`): a credential past its `expires_at`, by the
///   mock's clock ([`MockStore::with_clock`]), reads as absent. Each is
///   done only when declared, so a test can put a mock behind a store that
///   declares otherwise and see the honesty cases catch it.
/// - A change feed ([`CredentialStore::subscribe`]) of every successful
///   write and delete through any handle, in process, when declared
///   (`change_feed`, off in [`MockStore::DEFAULT_CAPABILITIES`]); a test
///   reports the feed lost or restored, or any change, through
///   [`MockStore::change_hub`]. `subscribe` is counted and scripted like
///   every operation ([`Op::Subscribe`]).
/// - Clones and namespace handles share the data, the script and the call
///   counters, so a test keeps one `MockStore` to script and inspect while
///   the code under test holds an `Arc<dyn CredentialStore>`.
/// - Every call that reaches the mock is counted ([`MockStore::calls`]): a
///   write refused by its [`WriteRequest`] check (size, capabilities) never
///   does, as with every backend. For every operation, the
///   latency is waited and the script is consulted: per-operation faults
///   ([`MockStore::fail_next_op`]) first, then faults of any operation
///   ([`MockStore::fail_next`]), then the ratio ([`MockStore::fail_ratio`]).
///   A call that faults changes nothing.
/// - While [`MockStore::set_availability`] says down, the probe answers that
///   and every other operation fails with [`Error::Unavailable`] and the same
///   reason.
/// - Declared capabilities are enforced: a mock declared without `list`
///   refuses it with [`Error::Unsupported`], and writes it declares off
///   (`binary`, `metadata`, create-only, replace-if-version) are refused by
///   the request's check before they reach it.
#[derive(Clone)]
pub struct MockStore {
    info: StoreInfo,
    shared: Arc<Shared>,
}

impl fmt::Debug for MockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockStore").field("info", &self.info).finish_non_exhaustive()
    }
}

impl MockStore {
    /// An empty mock with id `id`, kind [`MockStore::KIND`], at the root
    /// namespace, declaring [`MockStore::DEFAULT_CAPABILITIES`].
    pub fn new(id: StoreId) -> Self {
        Self {
            info: StoreInfo::new(id, Self::KIND, Self::DEFAULT_CAPABILITIES),
            shared: Arc::new(Shared {
                data: Mutex::new(Data::default()),
                script: Mutex::new(Script::default()),
                calls: Default::default(),
                changes: ChangeHub::new(FEED_CAPACITY),
            }),
        }
    }

    /// What a new mock declares: everything [`Capabilities::full`] does,
    /// with [`Persistence::Process`] (`can_be_unavailable` is on, since
    /// [`MockStore::set_availability`] can take it down). The optional
    /// change feed is off, as there: turn it on with
    /// `with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true))`.
    pub const DEFAULT_CAPABILITIES: Capabilities =
        Capabilities::full().with_persistence(Persistence::Process);

    /// The kind of a new mock: `mock`.
    pub const KIND: StoreKind = StoreKind::from_static("mock");

    /// Returns the mock declaring `capabilities`, and enforcing them: what is
    /// declared off is refused with [`Error::Unsupported`]. Handles made
    /// earlier keep what they had.
    pub fn with_capabilities(mut self, capabilities: Capabilities) -> Self {
        self.info = self.info.with_capabilities(capabilities);
        self
    }

    /// Returns the mock deciding expiry and age-based retention by `clock`
    /// (its [`StoreInfo::clock`]); handles made earlier keep theirs.
    pub fn with_clock(mut self, clock: Arc<dyn credstore_core::Clock>) -> Self {
        self.info = self.info.with_clock(clock);
        self
    }

    /// Returns the mock reporting `kind`.
    pub fn with_kind(mut self, kind: StoreKind) -> Self {
        self.info = StoreInfo::new(self.info.id().clone(), kind, self.info.capabilities())
            .in_namespace(self.info.namespace().clone())
            .with_clock(self.info.clock().clone());
        self
    }

    /// The next `n` calls of any operation fail with `fault`, replacing an
    /// earlier `fail_next`. `n == 0` clears it.
    pub fn fail_next(&self, n: usize, fault: Fault) {
        lock(&self.shared.script).any = (n > 0).then_some((n, fault));
    }

    /// The next `n` calls of `op` fail with `fault`, replacing an earlier
    /// script for `op`; these come before [`MockStore::fail_next`].
    /// `n == 0` clears it.
    pub fn fail_next_op(&self, op: Op, n: usize, fault: Fault) {
        let mut script = lock(&self.shared.script);
        if n == 0 {
            script.per_op.remove(&op);
        } else {
            script.per_op.insert(op, (n, fault));
        }
    }

    /// From now on, each call not otherwise scripted fails with `fault` with
    /// probability `ratio` (clamped to 0..=1; 0 turns it off). The draws
    /// come from a fixed seed, reset by this call, so a test is repeatable.
    pub fn fail_ratio(&self, ratio: f64, fault: Fault) {
        let mut script = lock(&self.shared.script);
        let ratio = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1.0) };
        script.ratio = (ratio > 0.0).then_some((ratio, fault));
        script.rng = SEED;
    }

    /// Removes every scripted fault (next, per operation and ratio).
    pub fn clear_faults(&self) {
        let mut script = lock(&self.shared.script);
        script.any = None;
        script.per_op.clear();
        script.ratio = None;
    }

    /// Every call waits `latency` before it answers (`Duration::ZERO`, the
    /// default, for none).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared.script).latency = latency;
    }

    /// What the probe answers from now on; while it is down, every other
    /// operation fails with [`Error::Unavailable`] giving its reason.
    pub fn set_availability(&self, availability: Availability) {
        lock(&self.shared.script).availability = availability;
    }

    /// The hub the mock's change feed is built on, shared by every handle:
    /// its [`lost`](ChangeHub::lost) and [`restored`](ChangeHub::restored)
    /// reach every subscriber, as a backend's broken and restored
    /// connection would, and [`publish`](ChangeHub::publish) reports a
    /// change made elsewhere.
    pub fn change_hub(&self) -> &ChangeHub {
        &self.shared.changes
    }

    /// How many calls of `op` were made, through any handle of this mock,
    /// since it was made or [`MockStore::reset_calls`].
    pub fn calls(&self, op: Op) -> usize {
        self.shared.calls[index(op)].load(Ordering::SeqCst)
    }

    /// How many calls of any operation were made.
    pub fn total_calls(&self) -> usize {
        Op::ALL.iter().map(|&op| self.calls(op)).sum()
    }

    /// Sets every call counter back to zero.
    pub fn reset_calls(&self) {
        for c in &self.shared.calls {
            c.store(0, Ordering::SeqCst);
        }
    }

    fn count(&self, op: Op) {
        self.shared.calls[index(op)].fetch_add(1, Ordering::SeqCst);
    }

    /// Waits the latency and consults the script and the availability; an
    /// error means the call must answer it and change nothing.
    async fn io(&self, op: Op) -> Result<()> {
        let (latency, fault, down) = {
            let mut script = lock(&self.shared.script);
            let fault = script.draw(op);
            let down = (!script.availability.available).then(|| script.availability.reason.clone());
            (script.latency, fault, down)
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if let Some(fault) = fault {
            return Err(fault.strike(self.info.id()).await);
        }
        if let Some(reason) = down {
            let reason = reason.unwrap_or_else(|| "the mock is set unavailable".to_owned());
            return Err(Error::unavailable(self.info.id(), reason));
        }
        Ok(())
    }

    fn read<T>(&self, f: impl FnOnce(Option<&BTreeMap<CredentialKey, Entry>>) -> T) -> T {
        let data = lock(&self.shared.data);
        f(data.namespaces.get(self.info.namespace()))
    }

    /// The current entry of `key` if it reads as present at `now`: not
    /// expired, where expiry is declared.
    fn present<'a>(
        &self,
        keys: Option<&'a BTreeMap<CredentialKey, Entry>>,
        key: &CredentialKey,
    ) -> Option<&'a Entry> {
        let now = self.info.now();
        let expiry = self.info.capabilities().expiry;
        keys.and_then(|k| k.get(key)).filter(|e| !(expiry && e.is_expired(now)))
    }

    fn history_key(&self, key: &CredentialKey) -> (Namespace, CredentialKey) {
        (self.info.namespace().clone(), key.clone())
    }

    /// Drops the versions of `past` beyond the declared retention at `now`.
    fn prune(&self, past: &mut Vec<Past>, now: SystemTime) {
        let retention = self.info.capabilities().retention;
        let max_past = retention.max_versions.map_or(usize::MAX, |n| (n.max(1) - 1) as usize);
        if past.len() > max_past {
            past.drain(..past.len() - max_past);
        }
        past.retain(|p| !retention.is_past_age(p.superseded_at, now));
    }

    /// Refuses the history operations when `versions` is not declared.
    fn check_versions(&self) -> Result<()> {
        match self.info.capabilities().versions {
            true => Ok(()),
            false => Err(Error::unsupported(self.info.id(), "version history")),
        }
    }
}

#[async_trait]
impl CredentialStore for MockStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(Arc::new(Self { info: self.info.join(namespace)?, ..self.clone() }))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.count(Op::Get);
        self.io(Op::Get).await?;
        Ok(self.read(|keys| self.present(keys, key).map(|e| e.credential(key))))
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let (key, value, metadata) = (request.key(), request.value(), request.metadata());
        self.count(Op::Set);
        self.io(Op::Set).await?;
        let mut data = lock(&self.shared.data);
        let current = self.present(data.namespaces.get(self.info.namespace()), key);
        match (request.mode(), current) {
            (SetMode::Create, Some(_)) => {
                return Err(Error::precondition_failed(self.info.id(), key, "the key exists"));
            }
            (SetMode::Replace(_), None) => {
                return Err(Error::precondition_failed(self.info.id(), key, "the key does not exist"));
            }
            (SetMode::Replace(expected), Some(e)) if &e.version != expected => {
                let reason = format!("the current version is {}, not {expected}", e.version);
                return Err(Error::precondition_failed(self.info.id(), key, reason));
            }
            _ => {}
        }
        let now = SystemTime::now();
        let created_at = current.map_or(now, |e| e.created_at);
        let created = current.is_none();
        data.counter += 1;
        let version = Version::from_counter(data.counter);
        let caps = self.info.capabilities();
        let entry = Entry {
            value: value.clone(),
            metadata: metadata.clone(),
            version: version.clone(),
            created_at,
            updated_at: now,
            expires_at: if caps.expiry { request.expires_at() } else { None },
        };
        let old =
            data.namespaces.entry(self.info.namespace().clone()).or_default().insert(key.clone(), entry);
        if caps.versions {
            let clock_now = self.info.now();
            let past = data.history.entry(self.history_key(key)).or_default();
            if let Some(old) = old {
                past.push(Past { entry: old, superseded_at: clock_now, deleted: false });
            }
            self.prune(past, clock_now);
        }
        // Under the lock: the changes of a key are reported in version order.
        self.shared.changes.publish(self.info.namespace(), key, Some(&version));
        drop(data);
        Ok(SetOutcome { created, version, created_at, updated_at: now })
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.count(Op::Has);
        self.io(Op::Has).await?;
        Ok(self.read(|keys| self.present(keys, key).is_some()))
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.count(Op::Version);
        self.io(Op::Version).await?;
        Ok(self.read(|keys| self.present(keys, key).map(|e| e.version.clone())))
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.count(Op::Delete);
        self.io(Op::Delete).await?;
        let mut data = lock(&self.shared.data);
        if self.present(data.namespaces.get(self.info.namespace()), key).is_none() {
            return Ok(false);
        }
        let Some(keys) = data.namespaces.get_mut(self.info.namespace()) else { return Ok(false) };
        let removed = keys.remove(key);
        if keys.is_empty() {
            data.namespaces.remove(self.info.namespace());
        }
        let caps = self.info.capabilities();
        match removed {
            Some(entry) if caps.versions && caps.recover_deleted => {
                let now = self.info.now();
                let past = data.history.entry(self.history_key(key)).or_default();
                past.push(Past { entry, superseded_at: now, deleted: true });
                self.prune(past, now);
            }
            _ => {
                data.history.remove(&self.history_key(key));
            }
        }
        self.shared.changes.publish(self.info.namespace(), key, None);
        Ok(true)
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.count(Op::List);
        if !self.info.capabilities().list {
            return Err(Error::unsupported(self.info.id(), "list"));
        }
        self.io(Op::List).await?;
        Ok(self.read(|keys| {
            let present = keys.into_iter().flat_map(|k| k.keys()).filter(|k| self.present(keys, k).is_some());
            options.page_from_sorted(present.cloned())
        }))
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.count(Op::GetVersion);
        self.check_versions()?;
        self.io(Op::GetVersion).await?;
        let now = self.info.now();
        let retention = self.info.capabilities().retention;
        let data = lock(&self.shared.data);
        let current = data.namespaces.get(self.info.namespace()).and_then(|k| k.get(key));
        let past = data.history.get(&self.history_key(key)).into_iter().flatten();
        let kept = past.filter(|p| !retention.is_past_age(p.superseded_at, now)).map(|p| &p.entry);
        Ok(current.into_iter().chain(kept).find(|e| &e.version == version).map(|e| e.credential(key)))
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        self.count(Op::ListVersions);
        self.check_versions()?;
        self.io(Op::ListVersions).await?;
        let now = self.info.now();
        let caps = self.info.capabilities();
        let expired = |e: &Entry| caps.expiry && e.is_expired(now);
        let data = lock(&self.shared.data);
        let current = data
            .namespaces
            .get(self.info.namespace())
            .and_then(|k| k.get(key))
            .map(|e| e.info(if expired(e) { VersionState::Expired } else { VersionState::Current }));
        let past = data.history.get(&self.history_key(key)).into_iter().flatten().rev();
        let past = past.filter(|p| !caps.retention.is_past_age(p.superseded_at, now)).map(|p| {
            let state = match (expired(&p.entry), p.deleted) {
                (true, _) => VersionState::Expired,
                (false, true) => VersionState::Deleted,
                (false, false) => VersionState::Previous,
            };
            p.entry.info(state)
        });
        Ok(options.page_from_newest(current.into_iter().chain(past)))
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        self.count(Op::Purge);
        if let PurgeTarget::Version(_) = target {
            self.check_versions()?;
        }
        self.io(Op::Purge).await?;
        let mut data = lock(&self.shared.data);
        let ns = self.info.namespace();
        match target {
            PurgeTarget::Version(version) => {
                if data.namespaces.get(ns).and_then(|k| k.get(key)).is_some_and(|e| &e.version == version) {
                    let reason = "it is the current version: write a new one first";
                    return Err(Error::precondition_failed(self.info.id(), key, reason));
                }
                let Some(past) = data.history.get_mut(&self.history_key(key)) else { return Ok(false) };
                let before = past.len();
                past.retain(|p| &p.entry.version != version);
                Ok(past.len() < before)
            }
            _ => {
                let history = data.history.remove(&self.history_key(key)).is_some_and(|p| !p.is_empty());
                let keys = data.namespaces.get_mut(ns);
                let live = keys.is_some_and(|k| k.remove(key).is_some());
                if data.namespaces.get(ns).is_some_and(BTreeMap::is_empty) {
                    data.namespaces.remove(ns);
                }
                if live || history {
                    self.shared.changes.publish(ns, key, None);
                }
                Ok(live || history)
            }
        }
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        self.count(Op::Subscribe);
        if !self.info.capabilities().change_feed {
            return Err(Error::unsupported(self.info.id(), "change feeds"));
        }
        self.io(Op::Subscribe).await?;
        Ok(self.shared.changes.subscribe(self.info.namespace()))
    }

    async fn check_availability(&self) -> Availability {
        self.count(Op::CheckAvailability);
        let (latency, fault, availability) = {
            let mut script = lock(&self.shared.script);
            (script.latency, script.draw(Op::CheckAvailability), script.availability.clone())
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            Some(Fault::Hang) => std::future::pending().await,
            Some(Fault::Panic) => panic!("{} in store '{}'", Fault::Panic.describe(), self.info.id()),
            Some(fault) => Availability::down(fault.describe()),
            None => availability,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::key;
    use credstore_core::CredentialStoreExt;

    fn mock() -> MockStore {
        MockStore::new(StoreId::new("mock").unwrap())
    }

    #[tokio::test]
    async fn scripted_faults_come_in_order_and_change_nothing() {
        let m = mock();
        let k = key("k");
        m.set(&k, &SecretValue::from("v1"), &Metadata::new()).await.unwrap();
        m.fail_next(2, Fault::Conflict);
        m.fail_next_op(Op::Set, 1, Fault::PermissionDenied);
        let e1 = m.set(&k, &SecretValue::from("v2"), &Metadata::new()).await.unwrap_err();
        assert!(matches!(e1, Error::PermissionDenied { .. }), "{e1:?}");
        let e2 = m.set(&k, &SecretValue::from("v2"), &Metadata::new()).await.unwrap_err();
        assert!(matches!(e2, Error::Conflict { .. }), "{e2:?}");
        let e3 = m.delete(&k).await.unwrap_err();
        assert!(matches!(e3, Error::Conflict { .. }), "{e3:?}");
        let got = m.get(&k).await.unwrap().unwrap();
        assert_eq!(got.value.expose_str().unwrap(), "v1", "a faulted call changed the value");
        assert_eq!(got.version, Version::from_counter(1));
        assert_eq!((m.calls(Op::Set), m.calls(Op::Delete), m.calls(Op::Get)), (3, 1, 1));
        assert_eq!(m.total_calls(), 5);
        m.reset_calls();
        assert_eq!(m.total_calls(), 0);
    }

    #[tokio::test]
    async fn ratio_is_deterministic_and_near_its_value() {
        let m = mock();
        let run = |m: &MockStore| {
            m.fail_ratio(0.3, Fault::Unavailable);
            let m = m.clone();
            async move {
                let mut pattern = Vec::new();
                for _ in 0..1000 {
                    pattern.push(m.has(&key("k")).await.is_err());
                }
                pattern
            }
        };
        let first = run(&m).await;
        let second = run(&m).await;
        assert_eq!(first, second, "the same ratio gives the same pattern");
        let failed = first.iter().filter(|f| **f).count();
        assert!((200..400).contains(&failed), "{failed} of 1000 failed at ratio 0.3");
        m.fail_ratio(0.0, Fault::Unavailable);
        assert!(m.has(&key("k")).await.is_ok());
    }

    #[tokio::test]
    async fn hang_latency_and_availability() {
        let m = mock();
        m.fail_next_op(Op::Get, 1, Fault::Hang);
        let r = tokio::time::timeout(Duration::from_millis(50), m.get(&key("k"))).await;
        assert!(r.is_err(), "a hanging call answered");
        m.set_latency(Duration::from_millis(30));
        let started = std::time::Instant::now();
        m.get(&key("k")).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(30));
        m.set_latency(Duration::ZERO);
        m.set_availability(Availability::down("sealed"));
        assert_eq!(m.check_availability().await, Availability::down("sealed"));
        let err = m.get(&key("k")).await.unwrap_err();
        assert!(err.is_retriable() && err.to_string().contains("sealed"), "{err}");
        m.fail_next_op(Op::CheckAvailability, 1, Fault::Backend);
        m.set_availability(Availability::up());
        assert!(!m.check_availability().await.available);
        assert!(m.check_availability().await.available);
    }

    #[tokio::test]
    async fn panic_fault_panics() {
        let m = mock();
        m.fail_next(1, Fault::Panic);
        let handle = tokio::spawn({
            let m = m.clone();
            async move { m.has(&key("k")).await }
        });
        assert!(handle.await.unwrap_err().is_panic());
        assert!(m.has(&key("k")).await.is_ok(), "the mock works after a scripted panic");
    }

    #[tokio::test]
    async fn declared_off_is_refused() {
        let m = mock().with_capabilities(
            MockStore::DEFAULT_CAPABILITIES.with_list(false).with_binary(false).with_create_only(false),
        );
        assert!(matches!(m.list(&ListOptions::new()).await, Err(Error::Unsupported { .. })));
        let bin = SecretValue::from(vec![0xff]);
        assert!(matches!(m.set(&key("k"), &bin, &Metadata::new()).await, Err(Error::Unsupported { .. })));
        let v = SecretValue::from("v");
        assert!(matches!(m.create(&key("k"), &v, &Metadata::new()).await, Err(Error::Unsupported { .. })));
        assert!(!m.has(&key("k")).await.unwrap());
        let quiet = mock();
        quiet.fail_next_op(Op::Subscribe, 1, Fault::Hang);
        assert!(matches!(quiet.subscribe().await, Err(Error::Unsupported { .. })), "refused before any I/O");
    }

    #[tokio::test]
    async fn history_and_expiry_work_only_where_declared() {
        let k = key("k");
        let plain = mock();
        plain.set(&k, &SecretValue::from("v1"), &Metadata::new()).await.unwrap();
        let v1 = plain.version(&k).await.unwrap().unwrap();
        assert!(matches!(plain.get_version(&k, &v1).await, Err(Error::Unsupported { .. })));
        let clock = credstore_core::ManualClock::starting_now();
        let caps = MockStore::DEFAULT_CAPABILITIES
            .with_versions(true)
            .with_recover_deleted(true)
            .with_expiry(true)
            .with_retention(credstore_core::Retention::versions(2));
        let m = mock().with_capabilities(caps).with_clock(Arc::new(clock.clone()));
        let first = m.set(&k, &SecretValue::from("v1"), &Metadata::new()).await.unwrap().version;
        let at = credstore_core::Clock::now(&clock) + Duration::from_secs(5);
        let opts = credstore_core::SetOptions::new().with_expires_at(Some(at));
        let second = m.set_opts(&k, &SecretValue::from("v2"), &Metadata::new(), &opts).await.unwrap().version;
        assert_eq!(m.get_version(&k, &first).await.unwrap().unwrap().value.expose_str().unwrap(), "v1");
        clock.set(at);
        assert!(m.get(&k).await.unwrap().is_none(), "expired by the mock's clock");
        let page = m.list_versions(&k, &VersionListOptions::new()).await.unwrap();
        let states: Vec<_> = page.versions.iter().map(|i| (i.version.clone(), i.state)).collect();
        assert_eq!(states, [(second, VersionState::Expired), (first.clone(), VersionState::Previous)]);
        let third = m.set(&k, &SecretValue::from("v3"), &Metadata::new()).await.unwrap().version;
        assert!(m.get_version(&k, &first).await.unwrap().is_none(), "past max_versions 2");
        assert!(m.delete(&k).await.unwrap());
        m.restore(&k, &third, &credstore_core::SetOptions::create_only()).await.unwrap();
        assert_eq!(m.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "v3");
        assert_eq!((m.calls(Op::GetVersion), m.calls(Op::ListVersions)), (3, 1));
    }

    #[tokio::test]
    async fn the_feed_reports_writes_and_deletes_and_a_scripted_loss() {
        let m = mock().with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true));
        let tenant = m.with_namespace(&crate::fixtures::ns("t")).unwrap();
        let mut feed = m.subscribe().await.unwrap();
        let out = tenant.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        assert!(!tenant.delete(&key("missing")).await.unwrap());
        assert!(tenant.delete(&key("k")).await.unwrap());
        m.change_hub().lost("scripted");
        let change = |version| {
            credstore_core::FeedEvent::Changed(credstore_core::Change::new(
                crate::fixtures::ns("t"),
                key("k"),
                version,
            ))
        };
        assert_eq!(feed.next().await, Some(change(Some(out.version))));
        assert_eq!(feed.next().await, Some(change(None)));
        assert_eq!(feed.next().await, Some(credstore_core::FeedEvent::Lost { reason: "scripted".into() }));
        m.fail_next_op(Op::Subscribe, 1, Fault::Unavailable);
        assert!(m.subscribe().await.unwrap_err().is_retriable(), "subscribe is scripted like the rest");
        assert_eq!(m.calls(Op::Subscribe), 2);
    }
}
