//! [`CacheLayer`]: a read-through cache in front of any store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use credstore_core::{
    Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, Layer, ListOptions,
    ListPage, Metadata, Namespace, Result, SecretValue, SetOptions, SetOutcome, StoreId, StoreKind, Version,
};
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use tokio::time::Instant;

/// The default time a value is served from the cache: 300 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The default largest number of entries of one cache: 1,000.
pub const DEFAULT_MAX_ENTRIES: usize = 1000;
/// The default time past its TTL an entry is kept, to be served on a
/// retriable backend error or revalidated: 300 s.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(300);

/// A read-through cache of `get`, for stores that cost a network round trip
/// per read (Vault, AWS Secrets Manager).
///
/// # Behavior
/// - **Fresh reads.** `get` answers from the cache while an entry is younger
///   than the [TTL](CacheLayer::with_ttl) (default 300 s); otherwise it reads
///   the store and caches the answer. `has` and `version` answer from a
///   fresh entry too, and otherwise ask the store without caching. `list`
///   and `check_availability` always go to the store.
/// - **Bounded size.** At most [`max_entries`](CacheLayer::with_max_entries)
///   entries (default 1,000) in one cached store, all its namespaces
///   together; inserting one more evicts the least recently used.
/// - **Zeroized when gone.** The cache holds one clone of each value it
///   caches ([`SecretValue`] clones share one buffer): when an entry is
///   evicted, expires, is invalidated or cleared, that clone is dropped, and
///   the buffer is zeroized once callers have dropped theirs too. Entries
///   whose time is up are dropped on the next call to the cache (or by
///   [`CachedStore::purge_expired`]); nothing runs in the background.
/// - **Read your writes.** `set_opts` (so `set`, `create`, `replace`) and
///   `delete` pass through unchanged, conditions included, and invalidate
///   the key before they return, whatever the outcome: after a success, a
///   failed condition ([`Error::PreconditionFailed`]), an error, or even a
///   cancelled call. A read that was under way during the write does not put
///   its older answer back. The next `get` reads the store, so timestamps
///   and versions are exactly the store's.
/// - **Single flight.** However many `get`s miss one key at once, the store
///   sees one read; they all get its answer. A caller that gives up does not
///   cancel the read for the others.
/// - **Stale if error.** When a read fails with a retriable error
///   ([`Error::is_retriable`]) and the cache holds an entry whose TTL ran out
///   less than [`max_stale`](CacheLayer::with_max_stale) ago (default 300 s),
///   that value is served, counted in [`CacheStats::stale_served`] and
///   logged with `tracing` at `warn` (store, namespace, key, age and the
///   error; never the value). Never past `max_stale`: the entry is dropped
///   then. Other errors are returned and drop the entry. `max_stale` of zero
///   turns this (and revalidation) off.
/// - **Revalidation.** When an entry's TTL has run out but it is still kept,
///   the cache first asks the store for the key's current
///   [`version`](CredentialStore::version); when it is the cached one, the
///   value is kept and fresh again ([`CacheStats::revalidations`]), without
///   reading the value. Stores whose `version` is cheaper than `get` (Vault
///   reads metadata, AWS describes the secret) save the transfer of the value;
///   for the others it costs what a read costs, and one call more when the
///   version changed: turn it off with
///   [`with_revalidate(false)`](CacheLayer::with_revalidate).
/// - **Negative caching.** A missing key is remembered for
///   [`negative_ttl`](CacheLayer::with_negative_ttl) (default zero: off), so
///   that reads of a key that does not exist cannot stampede the store.
/// - **Per namespace.** Entries are kept per namespace: a handle from
///   [`with_namespace`](CredentialStore::with_namespace) never hits an entry
///   of another namespace (nested ones included). Every handle of one cached
///   store shares its cache, so a write through one handle is read back
///   through another on the same namespace at once, and a namespace's
///   entries outlive its handles (a server that makes a handle per request
///   still hits). Two stores built by [`CacheLayer::build`] share nothing.
/// - **Other writers.** A change made to the store by anyone else (another
///   process, another cached store over the same backend) is seen once the
///   cached entry's TTL runs out, or at once after
///   [`refresh`](CachedStore::refresh), [`invalidate`](CachedStore::invalidate)
///   or [`clear`](CachedStore::clear).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use credstore_core::{CredentialKey, CredentialStore, Metadata};
/// use credstore_layers::CacheLayer;
///
/// # async fn demo(vault: Arc<dyn CredentialStore>) -> credstore_core::Result<()> {
/// let cached = CacheLayer::new()
///     .with_ttl(Duration::from_secs(60))
///     .with_max_entries(500)
///     .with_max_stale(Duration::from_secs(600))
///     .build(vault);
/// let key = CredentialKey::new("db-password")?;
/// let first = cached.get(&key).await?; // reads the store
/// let again = cached.get(&key).await?; // from the cache
/// assert_eq!(first.map(|c| c.version), again.map(|c| c.version));
/// let stats = cached.stats();
/// assert_eq!((stats.hits, stats.misses), (1, 1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLayer {
    ttl: Duration,
    max_entries: usize,
    max_stale: Duration,
    negative_ttl: Duration,
    revalidate: bool,
}

impl Default for CacheLayer {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_stale: DEFAULT_MAX_STALE,
            negative_ttl: Duration::ZERO,
            revalidate: true,
        }
    }
}

impl CacheLayer {
    /// The defaults: TTL 300 s, 1,000 entries, 300 s of staleness on error,
    /// no negative caching, revalidation on.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a read value is served without asking the store. Zero
    /// caches nothing (single flight still applies).
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The most entries the cache holds, all namespaces together; the least
    /// recently used is evicted to make room. Zero caches nothing.
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.max_entries = max_entries;
        self
    }

    /// How long past its TTL an entry is kept: served when the store fails
    /// with a retriable error, and revalidated by version otherwise.
    pub fn with_max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = max_stale;
        self
    }

    /// How long a missing key is remembered as missing; zero (the default)
    /// remembers nothing.
    pub fn with_negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = negative_ttl;
        self
    }

    /// Whether an expired entry is revalidated through
    /// [`CredentialStore::version`] before it is read again (the default).
    pub fn with_revalidate(mut self, revalidate: bool) -> Self {
        self.revalidate = revalidate;
        self
    }

    /// The TTL of a value.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The most entries of one cache.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// How long past its TTL an entry may be served on error.
    pub fn max_stale(&self) -> Duration {
        self.max_stale
    }

    /// How long a missing key is remembered.
    pub fn negative_ttl(&self) -> Duration {
        self.negative_ttl
    }

    /// Whether expired entries are revalidated by version.
    pub fn revalidate(&self) -> bool {
        self.revalidate
    }

    /// Wraps `inner` and returns the typed store, whose counters and
    /// [`refresh`](CachedStore::refresh)/[`clear`](CachedStore::clear) the
    /// owner can reach ([`Layer::layer`] returns the same store as a
    /// `dyn CredentialStore`).
    pub fn build(&self, inner: Arc<dyn CredentialStore>) -> Arc<CachedStore> {
        let cache = Arc::new(Cache {
            config: *self,
            counters: Counters::default(),
            state: Mutex::new(State::default()),
        });
        Arc::new(CachedStore { namespace: inner.namespace().clone(), inner, cache })
    }
}

impl Layer for CacheLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        self.build(inner)
    }
}

/// A snapshot of a cache's counters, from [`CachedStore::stats`]: every
/// namespace of one cached store together, what a server exports per
/// configured store. Counters only grow; `entries` is the size at the time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// `get`, `has` and `version` calls answered from a fresh entry.
    pub hits: u64,
    /// Calls that found no fresh entry and went to the store (or joined a
    /// read of it already under way).
    pub misses: u64,
    /// Reads the cache made of the store: one per single flight, however
    /// many callers it served, plus [`CachedStore::refresh`]es.
    pub loads: u64,
    /// Reads answered with an expired value because the store failed with a
    /// retriable error.
    pub stale_served: u64,
    /// Entries dropped to make room for another.
    pub evictions: u64,
    /// Entries dropped because their time was up: past the TTL and, for
    /// values, past the staleness allowed.
    pub expirations: u64,
    /// Expired entries kept because the store's version had not changed.
    pub revalidations: u64,
    /// Entries held now, values and remembered misses.
    pub entries: usize,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    stale_served: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    revalidations: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    fn snapshot(&self, entries: usize) -> CacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            loads: get(&self.loads),
            stale_served: get(&self.stale_served),
            evictions: get(&self.evictions),
            expirations: get(&self.expirations),
            revalidations: get(&self.revalidations),
            entries,
        }
    }
}

/// Where an entry lives: its namespace and key.
type Slot = (Namespace, CredentialKey);

/// What a flight hands every caller waiting on it: the answer, and whether
/// one of them already logged serving a stale value for it.
type FlightOutput = (Result<Option<Credential>>, Arc<AtomicBool>);
type FlightFuture = BoxFuture<'static, FlightOutput>;

struct Flight {
    id: u64,
    shared: WeakShared<FlightFuture>,
}

struct Entry {
    /// `None` remembers a missing key.
    credential: Option<Credential>,
    fresh_until: Instant,
    /// When the entry is dropped: `fresh_until` plus the staleness allowed.
    retain_until: Instant,
    tick: u64,
    seq: u64,
}

#[derive(Default)]
struct State {
    entries: HashMap<Slot, Entry>,
    /// Use order: the smallest tick is the least recently used.
    lru: BTreeMap<u64, Slot>,
    /// Drop order.
    deadlines: BTreeMap<(Instant, u64), Slot>,
    flights: HashMap<Slot, Flight>,
    next: u64,
}

impl State {
    fn next(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    fn remove(&mut self, slot: &Slot) -> Option<Entry> {
        let entry = self.entries.remove(slot)?;
        self.lru.remove(&entry.tick);
        self.deadlines.remove(&(entry.retain_until, entry.seq));
        Some(entry)
    }

    /// Removes every entry whose time is up.
    fn sweep(&mut self, now: Instant, dropped: &mut Vec<Entry>) {
        while let Some((&(at, _), slot)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            let slot = slot.clone();
            dropped.extend(self.remove(&slot));
        }
    }

    /// The fresh entry in `slot`, marked as just used.
    fn fresh(&mut self, slot: &Slot, now: Instant) -> Option<&Entry> {
        if self.entries.get(slot).is_none_or(|e| e.fresh_until <= now) {
            return None;
        }
        let tick = self.next();
        let entry = self.entries.get_mut(slot)?;
        self.lru.remove(&entry.tick);
        entry.tick = tick;
        self.lru.insert(tick, slot.clone());
        Some(entry)
    }

    /// Inserts `entry`, evicting the least recently used beyond
    /// `max_entries`; returns how many were evicted.
    fn insert(&mut self, slot: Slot, entry: Entry, max_entries: usize, dropped: &mut Vec<Entry>) -> u64 {
        dropped.extend(self.remove(&slot));
        self.lru.insert(entry.tick, slot.clone());
        self.deadlines.insert((entry.retain_until, entry.seq), slot.clone());
        self.entries.insert(slot, entry);
        let mut evicted = 0;
        while self.entries.len() > max_entries {
            let Some((_, oldest)) = self.lru.pop_first() else { break };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.deadlines.remove(&(entry.retain_until, entry.seq));
                dropped.push(entry);
                evicted += 1;
            }
        }
        evicted
    }
}

/// The cache of one cached store, shared by all its namespace handles.
struct Cache {
    config: CacheLayer,
    counters: Counters,
    state: Mutex<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// `now + d`, saturating far in the future instead of overflowing.
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// What a flight learned from the store.
enum Fetched {
    Loaded(Option<Credential>),
    Revalidated(Credential),
    Failed(Error),
}

/// A fresh cache answer, or a read to wait for.
enum Lookup {
    Hit(Option<Credential>),
    Wait(Shared<FlightFuture>),
}

impl Cache {
    /// Runs `f` on the state after dropping what is due; every entry removed
    /// is dropped (and its value released) only after the lock is released.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, Instant, &mut Vec<Entry>) -> R) -> R {
        let now = Instant::now();
        let mut dropped = Vec::new();
        let result = {
            let mut state = lock(&self.state);
            state.sweep(now, &mut dropped);
            bump(&self.counters.expirations, dropped.len() as u64);
            f(&mut state, now, &mut dropped)
        };
        drop(dropped);
        result
    }

    /// A fresh entry's answer through `answer`, counted as a hit, or `None`,
    /// counted as a miss.
    fn fresh<T>(&self, slot: &Slot, answer: impl FnOnce(Option<&Credential>) -> T) -> Option<T> {
        let found =
            self.with_state(|state, now, _| state.fresh(slot, now).map(|e| answer(e.credential.as_ref())));
        bump(if found.is_some() { &self.counters.hits } else { &self.counters.misses }, 1);
        found
    }

    /// Forgets `slot` and detaches any read of it under way, so that its
    /// answer is not cached.
    fn invalidate(&self, slot: &Slot) {
        self.with_state(|state, _, dropped| {
            dropped.extend(state.remove(slot));
            state.flights.remove(slot);
        });
    }

    /// Forgets every entry for which `matches` holds.
    fn clear(&self, matches: impl Fn(&Slot) -> bool) {
        let (entries, flights) = self.with_state(|state, _, _| {
            let slots: Vec<Slot> = state.entries.keys().filter(|s| matches(s)).cloned().collect();
            let entries: Vec<Entry> = slots.iter().filter_map(|s| state.remove(s)).collect();
            let flights: Vec<Slot> = state.flights.keys().filter(|s| matches(s)).cloned().collect();
            let flights: Vec<Flight> = flights.iter().filter_map(|s| state.flights.remove(s)).collect();
            (entries, flights)
        });
        drop(entries);
        drop(flights);
    }

    fn entry_for(&self, found: Option<Credential>, now: Instant, state: &mut State) -> Option<Entry> {
        let config = &self.config;
        let (fresh_for, stale_for) = match found {
            Some(_) => (config.ttl, config.max_stale),
            None => (config.negative_ttl, Duration::ZERO),
        };
        if fresh_for.is_zero() || config.max_entries == 0 {
            return None;
        }
        let fresh_until = later(now, fresh_for);
        Some(Entry {
            credential: found,
            fresh_until,
            retain_until: later(fresh_until, stale_for),
            tick: state.next(),
            seq: state.next(),
        })
    }

    fn store(
        &self,
        slot: &Slot,
        found: Option<Credential>,
        now: Instant,
        state: &mut State,
        dropped: &mut Vec<Entry>,
    ) {
        dropped.extend(state.remove(slot));
        if let Some(entry) = self.entry_for(found, now, state) {
            let evicted = state.insert(slot.clone(), entry, self.config.max_entries, dropped);
            bump(&self.counters.evictions, evicted);
        }
    }

    /// Applies what flight `id` learned, unless a write, an invalidation or
    /// a refresh detached it meanwhile.
    fn complete(&self, slot: &Slot, id: u64, fetched: &Fetched) {
        self.with_state(|state, now, dropped| {
            if state.flights.get(slot).map(|f| f.id) != Some(id) {
                return;
            }
            state.flights.remove(slot);
            match fetched {
                Fetched::Loaded(found) => self.store(slot, found.clone(), now, state, dropped),
                Fetched::Revalidated(credential) => {
                    bump(&self.counters.revalidations, 1);
                    self.store(slot, Some(credential.clone()), now, state, dropped);
                }
                // Kept for stale-if-error until its time is up.
                Fetched::Failed(e) if e.is_retriable() => {}
                Fetched::Failed(_) => dropped.extend(state.remove(slot)),
            }
        });
    }

    /// After a retriable error: the value kept in `slot`, if its time is not
    /// up, and how long ago it stopped being fresh (zero if it is fresh).
    fn kept(&self, slot: &Slot) -> Option<(Credential, Duration)> {
        self.with_state(|state, now, _| {
            let entry = state.entries.get(slot)?;
            let credential = entry.credential.clone()?;
            (entry.retain_until > now).then(|| (credential, now.saturating_duration_since(entry.fresh_until)))
        })
    }
}

/// Detaches a flight when it ends without completing (every caller gave
/// up), so the next read starts a new one.
struct FlightGuard {
    cache: Arc<Cache>,
    slot: Slot,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let detached = {
            let mut state = lock(&self.cache.state);
            match state.flights.get(&self.slot) {
                Some(f) if f.id == self.id => state.flights.remove(&self.slot),
                _ => None,
            }
        };
        drop(detached);
    }
}

/// Invalidates a slot when a write through the cache ends, however it ends
/// (a cancelled write may have landed).
struct InvalidateOnDrop<'a> {
    cache: &'a Cache,
    slot: Slot,
}

impl Drop for InvalidateOnDrop<'_> {
    fn drop(&mut self) {
        self.cache.invalidate(&self.slot);
    }
}

/// A store wrapped by [`CacheLayer`]; see there for its behaviour.
pub struct CachedStore {
    inner: Arc<dyn CredentialStore>,
    /// The inner handle's namespace: the first half of every slot.
    namespace: Namespace,
    cache: Arc<Cache>,
}

impl fmt::Debug for CachedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedStore")
            .field("inner", &self.inner)
            .field("config", &self.cache.config)
            .field("stats", &self.stats())
            .finish()
    }
}

impl CachedStore {
    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    /// The cache's settings.
    pub fn config(&self) -> &CacheLayer {
        &self.cache.config
    }

    /// The counters of the cache, shared by every namespace handle of this
    /// cached store.
    pub fn stats(&self) -> CacheStats {
        let entries = lock(&self.cache.state).entries.len();
        self.cache.counters.snapshot(entries)
    }

    /// How many entries this handle's namespace holds now.
    pub fn namespace_entries(&self) -> usize {
        lock(&self.cache.state).entries.keys().filter(|(ns, _)| *ns == self.namespace).count()
    }

    /// Like [`CredentialStore::with_namespace`], typed, so the cache's
    /// counters and controls stay reachable.
    ///
    /// # Errors
    /// As for the wrapped store's `with_namespace`.
    pub fn cached_namespace(&self, namespace: &Namespace) -> Result<Arc<CachedStore>> {
        let inner = self.inner.with_namespace(namespace)?;
        Ok(Arc::new(CachedStore {
            namespace: inner.namespace().clone(),
            inner,
            cache: Arc::clone(&self.cache),
        }))
    }

    fn slot(&self, key: &CredentialKey) -> Slot {
        (self.namespace.clone(), key.clone())
    }

    /// Reads `key` from the store now, whatever the cache holds, and caches
    /// the answer; reads that start meanwhile wait for this one.
    ///
    /// # Errors
    /// The store's error, as is: a refresh never serves a stale value. After
    /// a retriable error the cached entry is kept as it was; after another
    /// it is dropped.
    pub async fn refresh(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let slot = self.slot(key);
        let shared = self.cache.with_state(|state, _, _| self.start_flight(state, slot, None));
        shared.await.0
    }

    /// Forgets `key` in this handle's namespace: the next read goes to the
    /// store.
    pub fn invalidate(&self, key: &CredentialKey) {
        self.cache.invalidate(&self.slot(key));
    }

    /// Forgets every entry of this handle's namespace (nested namespaces are
    /// namespaces of their own); the values are released before this
    /// returns, and zeroized unless callers still hold clones.
    pub fn clear(&self) {
        self.cache.clear(|(ns, _)| *ns == self.namespace);
    }

    /// Forgets every entry of every namespace.
    pub fn clear_all(&self) {
        self.cache.clear(|_| true);
    }

    /// Drops the entries whose time is up. Every call to the cache does this
    /// already; an owner that wants expired values gone from memory on time
    /// even while nobody reads calls this on a timer.
    pub fn purge_expired(&self) {
        self.cache.with_state(|_, _, _| ());
    }

    /// Starts a flight for `slot`, detaching any under way.
    fn start_flight(
        &self,
        state: &mut State,
        slot: Slot,
        revalidate: Option<Credential>,
    ) -> Shared<FlightFuture> {
        let id = state.next();
        let guard = FlightGuard { cache: Arc::clone(&self.cache), slot: slot.clone(), id };
        let inner = Arc::clone(&self.inner);
        let future: FlightFuture = Box::pin(async move {
            bump(&guard.cache.counters.loads, 1);
            let fetched = fetch(inner.as_ref(), &guard.slot.1, revalidate).await;
            guard.cache.complete(&guard.slot, guard.id, &fetched);
            let result = match fetched {
                Fetched::Loaded(found) => Ok(found),
                Fetched::Revalidated(credential) => Ok(Some(credential)),
                Fetched::Failed(e) => Err(e),
            };
            (result, Arc::new(AtomicBool::new(false)))
        });
        let shared = future.shared();
        if let Some(weak) = shared.downgrade() {
            state.flights.insert(slot, Flight { id, shared: weak });
        }
        shared
    }

    /// A fresh answer, or the flight to wait for: the one under way for the
    /// key, or a new one.
    fn lookup(&self, key: &CredentialKey) -> Lookup {
        let slot = self.slot(key);
        let lookup = self.cache.with_state(|state, now, _| {
            if let Some(entry) = state.fresh(&slot, now) {
                return Lookup::Hit(entry.credential.clone());
            }
            if let Some(shared) = state.flights.get(&slot).and_then(|f| f.shared.upgrade()) {
                return Lookup::Wait(shared);
            }
            let revalidate = match self.cache.config.revalidate {
                true => state.entries.get(&slot).and_then(|e| e.credential.clone()),
                false => None,
            };
            Lookup::Wait(self.start_flight(state, slot.clone(), revalidate))
        });
        let counter = match lookup {
            Lookup::Hit(_) => &self.cache.counters.hits,
            Lookup::Wait(_) => &self.cache.counters.misses,
        };
        bump(counter, 1);
        lookup
    }
}

/// One read of the store: a version check first when there is a value to
/// revalidate, then the value if needed.
async fn fetch(inner: &dyn CredentialStore, key: &CredentialKey, revalidate: Option<Credential>) -> Fetched {
    if let Some(cached) = revalidate {
        match inner.version(key).await {
            Ok(Some(version)) if version == cached.version => return Fetched::Revalidated(cached),
            Ok(Some(_)) => {}
            Ok(None) => return Fetched::Loaded(None),
            Err(e) => return Fetched::Failed(e),
        }
    }
    match inner.get(key).await {
        Ok(found) => Fetched::Loaded(found),
        Err(e) => Fetched::Failed(e),
    }
}

#[async_trait]
impl CredentialStore for CachedStore {
    fn id(&self) -> &StoreId {
        self.inner.id()
    }

    fn kind(&self) -> StoreKind {
        self.inner.kind()
    }

    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    fn namespace(&self) -> &Namespace {
        self.inner.namespace()
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(self.cached_namespace(namespace)?)
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let shared = match self.lookup(key) {
            Lookup::Hit(found) => return Ok(found),
            Lookup::Wait(shared) => shared,
        };
        let (result, logged) = shared.await;
        let error = match result {
            Err(e) if e.is_retriable() => e,
            other => return other,
        };
        let Some((credential, stale_for)) = self.cache.kept(&self.slot(key)) else { return Err(error) };
        if stale_for.is_zero() {
            // Another read cached a fresh value meanwhile.
            return Ok(Some(credential));
        }
        bump(&self.cache.counters.stale_served, 1);
        if !logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                store = %self.inner.id(),
                namespace = self.namespace.as_str(),
                key = key.as_str(),
                stale_ms = u64::try_from(stale_for.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "serving a stale cached value: the store failed with a retriable error"
            );
        }
        Ok(Some(credential))
    }

    async fn set_opts(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<SetOutcome> {
        credstore_core::check_set(self, value, metadata, options)?;
        let _invalidate = InvalidateOnDrop { cache: &self.cache, slot: self.slot(key) };
        self.inner.set_opts(key, value, metadata, options).await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        match self.cache.fresh(&self.slot(key), |c| c.is_some()) {
            Some(found) => Ok(found),
            None => self.inner.has(key).await,
        }
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        match self.cache.fresh(&self.slot(key), |c| c.map(|c| c.version.clone())) {
            Some(version) => Ok(version),
            None => self.inner.version(key).await,
        }
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let _invalidate = InvalidateOnDrop { cache: &self.cache, slot: self.slot(key) };
        self.inner.delete(key).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }

    async fn check_availability(&self) -> Availability {
        self.inner.check_availability().await
    }
}
