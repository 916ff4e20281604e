//! [`CacheLayer`]: a read-through cache in front of any store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use credstore_core::{
    Availability, Change, ChangeFeed, Clock, Credential, CredentialKey, CredentialStore, Error, FeedEvent,
    Layer, ListOptions, ListPage, Namespace, PurgeTarget, Result, SetOutcome, StoreInfo, Version,
    VersionListOptions, VersionPage, WriteRequest,
};
use futures::future::{BoxFuture, FutureExt, Shared, WeakShared};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

mod durable;
mod envelope;
mod prefetch;

pub use durable::DURABLE_NAMESPACE;
use durable::{Durable, Owed};
pub use prefetch::DEFAULT_PREFETCH_JITTER;

/// The default time a value is served from the cache: 300 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// The default largest number of entries of one cache: 1,000.
pub const DEFAULT_MAX_ENTRIES: usize = 1000;
/// The most time past its TTL an entry is kept by default, to be served on
/// a retriable backend error or revalidated: 60 s. The default
/// [`max_stale`](CacheLayer::with_max_stale) is the TTL, capped at this.
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(60);

/// The first wait before subscribing again to a store's change feed that
/// failed or ended; it doubles on each failure in a row, up to
/// [`FEED_RETRY_MAX`].
const FEED_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to subscribe again.
const FEED_RETRY_MAX: Duration = Duration::from_secs(5);

/// A read-through cache of `get`, for stores that cost a network round trip
/// per read (Vault, AWS Secrets Manager).
///
/// # Behavior
/// - **Fresh reads.** `get` answers from the cache while an entry is younger
///   than the [TTL](CacheLayer::with_ttl) (default 300 s); otherwise it reads
///   the store and caches the answer. `has` and `version` answer from a
///   fresh entry too, and otherwise ask the store without caching. `list`,
///   `check_availability`, `get_version` and `list_versions` always go to
///   the store (a history is read rarely, and every version of it would
///   crowd the current values out).
/// - **Bounded size.** At most [`max_entries`](CacheLayer::with_max_entries)
///   entries (default 1,000) in one cached store, all its namespaces
///   together; inserting one more evicts the least recently used. Reads
///   through one thread keep the exact use order; hits that race on
///   several threads are ordered among themselves in no particular way (a
///   hit only marks its entry under a read lock, so hits on different keys
///   never wait for each other).
/// - **Zeroized when gone.** The cache holds one clone of each value it
///   caches ([`SecretValue`](credstore_core::SecretValue) clones share one buffer): when an entry is
///   evicted, expires, is invalidated or cleared, that clone is dropped, and
///   the buffer is zeroized once callers have dropped theirs too.
/// - **Gone on time.** An entry is dropped when its time is up (its TTL plus
///   the staleness allowed) even when nobody calls the cache: a timer task
///   on the tokio runtime of the first entry's read wakes at the next
///   deadline, and sleeps without waking while the cache is empty. It exists
///   only while a cached store does (no cache, no task), and ends with the
///   last handle.
/// - **Never past expiry.** An entry whose credential has an
///   [`expires_at`](Credential::expires_at) is never answered from that
///   instant on, by the wrapped store's
///   [`clock`](credstore_core::StoreInfo::clock), whatever its TTL: not by
///   `get`, `has` or `version`, not as a stale value on an error, not kept
///   by a revalidation. The read goes to the store, which answers it as
///   absent.
/// - **Read your writes.** `write` (so `set_opts`, `set`, `create`,
///   `replace`, and a [`restore`](credstore_core::CredentialStoreExt::restore)),
///   `delete` and `purge` pass through unchanged, conditions included, and invalidate
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
///   less than [`max_stale`](CacheLayer::with_max_stale) ago (default: the
///   TTL, at most 60 s),
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
/// - **Batch reads.** [`get_many`](CredentialStore::get_many) answers the
///   keys with a fresh entry from memory, as `get` does, and reads the
///   others (each once, duplicates too) in one `get_many` of the store,
///   caching its answers (a key with a `get` under way keeps that read's
///   answer). A batch does not join single flights of `get`. When the store
///   fails with a retriable error, each missed key is read again through
///   `get`, which serves a stale or durable value where it may; another
///   error fails the batch.
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
///   process, another cached store over the same backend) is seen:
///   - when the store has a change feed
///     ([`Capabilities::change_feed`](credstore_core::Capabilities::change_feed)),
///     as soon as the feed reports it: the cache follows the feed and drops
///     the changed key's entry (a remembered miss too), unless the entry
///     already holds exactly the reported version; a read under way is not
///     cached. See **Change feed** below;
///   - without a feed, or while it is lost, once the cached entry's TTL
///     runs out;
///   - in any case at once after [`refresh`](CachedStore::refresh),
///     [`invalidate`](CachedStore::invalidate) or [`clear`](CachedStore::clear).
/// - **Durable tier** (optional, [`CacheLayer::durable`]): a second store,
///   such as a local encrypted SQLite file, that keeps what the cache reads
///   across restarts, to serve it while the wrapped store is down:
///   - *What it keeps.* Every answer a read of the store brings (a `get`
///     that missed, a revalidation, a [`refresh`](CachedStore::refresh), a
///     [`prefetch`](CachedStore::prefetch)) updates the tier: a value is
///     written as one envelope (below) holding the credential exactly as
///     the store answered it (value, metadata, version, created, updated and
///     expiry times) and the time the read started by the store's
///     [`clock`](credstore_core::StoreInfo::clock); a key found absent or
///     expired is removed. Entries are written with the credential's
///     `expires_at`, so the tier drops them at expiry too.
///   - *When it writes.* Behind the read: the answer is queued (at most
///     one update per key, the latest) and a task on the tokio runtime
///     writes the queue in order; reads never wait for the tier, and the
///     in-memory hit path does not touch it. At most 10,000 keys wait at
///     once; past it a new value is not kept (`durable_failed`, logged).
///     A crash loses the
///     updates still queued: the tier then holds the key's previous
///     envelope, older, and so served for less long. Dropping the cached
///     store lets the task write what is queued;
///     [`flush_durable`](CachedStore::flush_durable) waits for it.
///   - *Writes through the cache.* `write`, `delete` and `purge` remove the
///     key's envelope before they return (whatever their outcome), and queue
///     the removal once more so that it lands after any older value being
///     written at that moment. A change another writer makes, reported by
///     the store's change feed, removes the key's envelope too, unless the
///     cache holds exactly the reported version. A feed that is lost drops
///     the memory tier only: the durable one is read only when the store is
///     down, within the bound below, as the memory tier is without a feed.
///     [`invalidate`](CachedStore::invalidate) and [`clear`](CachedStore::clear)
///     forget memory entries only.
///   - *When it is read.* Only when a `get` misses in memory (or finds
///     nothing there to serve stale) and the store fails with
///     [`Error::Unavailable`]: the store is down, sealed, timed out
///     (a [`TimeoutLayer`](credstore_core::layers::TimeoutLayer) answers
///     `Unavailable`), unreachable. Other errors, `PermissionDenied`,
///     `Integrity`, `Conflict`, a backend error, are returned as they are:
///     the store answered, and is never masked. The tier's value is
///     served when it was fetched less than the TTL plus
///     [`max_stale`](CacheLayer::with_max_stale) ago, by the store's clock:
///     exactly as long as the memory tier would have served it had the
///     process not restarted; never past that, and never past the
///     credential's `expires_at`: then the store's error is returned. Each
///     such read is counted in [`CacheStats::durable_served`] and logged
///     with `tracing` at `warn` (store, tier, namespace, key, age and the
///     error; never the value), and puts the value in memory as it would
///     have been then: fresh for what is left of its TTL, then stale, so
///     the next reads retry the store and are served stale on failure as
///     usual. Set `max_stale` to the longest outage to ride out: its
///     default (the TTL, at most 60 s) is meant for the memory tier.
///   - *Where.* Under the namespace
///     `cache/<store id>/<namespace of the handle>` of the tier
///     ([`DURABLE_NAMESPACE`]), each key under its own name, so one file can
///     serve several caches. A tier that fails is logged and counted
///     (`durable_failed`) and never fails a read or a write of the cache.
///     Give the tier no history (`Retention::NONE` for SQLite): otherwise
///     it keeps superseded values.
///   - *Envelope* (the tier's value for a key; integers big-endian, a time
///     is `i64` seconds since the Unix epoch then `u32` nanoseconds): magic
///     `CSC\x01` (4 bytes); fetched at, created at, updated at (12 each);
///     an expiry flag (1 byte, 1 when 12 bytes of expiry follow); the version
///     (1 byte of length, then ASCII); the metadata (2 bytes of count, then
///     per entry 1 byte of key length, key, 2 bytes of value length, value);
///     the value (4 bytes of length, then bytes). Nothing may follow; an
///     envelope that does not read back exactly is ignored (logged). The
///     envelope is built in a buffer that is zeroized, and the value read
///     back gets a zeroizing buffer of its own. A value whose envelope
///     exceeds the tier's largest value
///     ([`MAX_VALUE_BYTES`](credstore_core::MAX_VALUE_BYTES), i.e. values
///     within about 1 KB of it) is not kept.
/// - **Prefetch** (optional, [`CacheLayer::prefetch_keys`],
///   [`CacheLayer::prefetch_prefix`]): [`CachedStore::prefetch`] reads the
///   given keys and those under a prefix into the cache at start, through
///   the store's [`get_many`](CredentialStore::get_many) in batches of at
///   most [`MAX_BATCH_KEYS`](credstore_core::MAX_BATCH_KEYS), after a
///   random delay of at most the [jitter](CacheBuilder::prefetch_jitter)
///   and with its batches spread within it. Its keys are then hits.
/// - **Change feed.** When the wrapped store declares a feed, the cached
///   store subscribes to it once, for all its namespace handles, on the
///   tokio runtime of its first read that goes to the store (a store without
///   a feed gets no task). The task ends with the last handle. When the
///   feed reports changes may have been missed
///   ([`FeedEvent::Lost`]), the cache drops every entry, counts it in
///   [`CacheStats::feed_lost`], clears [`CacheStats::feed_live`] and logs
///   one `warn` line: until the feed is restored, other writers' changes
///   are seen at TTL. When it is whole again ([`FeedEvent::Restored`]) the
///   cache drops every entry once more (those read meanwhile may have
///   missed a change), sets `feed_live` and logs at `info`. A failed
///   subscription or a feed that ends counts as lost, and the cache
///   subscribes again with a backoff from 100 ms to 5 s; a new
///   subscription is a restoration. A change made while the very first
///   subscription is being set up may be seen at TTL only.
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
    /// `None`: the TTL, capped at [`DEFAULT_MAX_STALE`].
    max_stale: Option<Duration>,
    negative_ttl: Duration,
    revalidate: bool,
}

impl Default for CacheLayer {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_stale: None,
            negative_ttl: Duration::ZERO,
            revalidate: true,
        }
    }
}

impl CacheLayer {
    /// The defaults: TTL 300 s, 1,000 entries, 60 s of staleness on error
    /// (the TTL when it is shorter), no negative caching, revalidation on.
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
    /// with a retriable error, and revalidated by version otherwise. The
    /// default is the TTL, at most [`DEFAULT_MAX_STALE`] (60 s): a rotated or
    /// deleted value is never served longer than that past its TTL unless
    /// you ask for it here. With a [durable tier](Self::durable) it bounds
    /// that tier too: a value is served from it while the store is down for
    /// at most the TTL plus `max_stale` after it was fetched, across
    /// restarts; set it to the longest outage to ride out.
    pub fn with_max_stale(mut self, max_stale: Duration) -> Self {
        self.max_stale = Some(max_stale);
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

    /// How long past its TTL an entry may be served on error: the value
    /// given to [`with_max_stale`](Self::with_max_stale), or else the TTL
    /// capped at [`DEFAULT_MAX_STALE`].
    pub fn max_stale(&self) -> Duration {
        self.max_stale.unwrap_or(self.ttl.min(DEFAULT_MAX_STALE))
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
        CacheBuilder::from(*self).build(inner)
    }

    /// These settings with a durable second tier: see [`CacheBuilder::durable`].
    pub fn durable(self, tier: Arc<dyn CredentialStore>) -> CacheBuilder {
        CacheBuilder::from(self).durable(tier)
    }

    /// These settings with keys to read at start: see
    /// [`CacheBuilder::prefetch_keys`].
    pub fn prefetch_keys(self, keys: impl IntoIterator<Item = CredentialKey>) -> CacheBuilder {
        CacheBuilder::from(self).prefetch_keys(keys)
    }

    /// These settings with a prefix whose keys are read at start: see
    /// [`CacheBuilder::prefetch_prefix`].
    ///
    /// # Errors
    /// As [`CacheBuilder::prefetch_prefix`].
    pub fn prefetch_prefix(self, prefix: impl Into<String>) -> Result<CacheBuilder> {
        CacheBuilder::from(self).prefetch_prefix(prefix)
    }
}

impl Layer for CacheLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        self.build(inner)
    }
}

/// A [`CacheLayer`]'s settings with what cannot be copied: a durable second
/// tier ([`durable`](Self::durable)) and the keys to read at start
/// ([`prefetch_keys`](Self::prefetch_keys),
/// [`prefetch_prefix`](Self::prefetch_prefix),
/// [`prefetch_jitter`](Self::prefetch_jitter)). Made by the same-named
/// methods of [`CacheLayer`] or from one with `From`; a layer itself.
///
/// The settings map one to one to options of a store's URI: `cache_ttl`
/// ([`CacheLayer::with_ttl`]), `max_stale` ([`CacheLayer::with_max_stale`]),
/// `cache_file` (a local encrypted SQLite store given to
/// [`durable`](Self::durable)) and `prefetch` (a prefix or keys).
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use credstore_core::{CredentialKey, CredentialStore};
/// use credstore_layers::CacheLayer;
///
/// # async fn demo(vault: Arc<dyn CredentialStore>, local: Arc<dyn CredentialStore>) -> credstore_core::Result<()> {
/// let cached = CacheLayer::new()
///     .with_ttl(Duration::from_secs(60))
///     .with_max_stale(Duration::from_secs(24 * 3600)) // served up to a day into an outage
///     .durable(local) // e.g. a SqliteStore with Retention::NONE
///     .prefetch_prefix("db.")?
///     .prefetch_jitter(Duration::from_secs(5))
///     .build(vault);
/// cached.prefetch().await?; // reads every `db.` key, in batches, within 5 s
/// let key = CredentialKey::new("db.password")?;
/// cached.get(&key).await?; // a hit
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct CacheBuilder {
    layer: CacheLayer,
    durable: Option<Arc<dyn CredentialStore>>,
    prefetch: prefetch::Plan,
}

impl From<CacheLayer> for CacheBuilder {
    fn from(layer: CacheLayer) -> Self {
        Self { layer, durable: None, prefetch: prefetch::Plan::default() }
    }
}

impl CacheBuilder {
    /// Keeps every value the cache reads in `tier` too, to be served from
    /// there when the store is down, within
    /// [`max_stale`](CacheLayer::max_stale), after a restart as well: see
    /// "Durable tier" on [`CacheLayer`]. Give it a local store that keeps no
    /// history, such as an encrypted `SqliteStore` with `Retention::NONE`,
    /// on its own file or namespace.
    pub fn durable(mut self, tier: Arc<dyn CredentialStore>) -> Self {
        self.durable = Some(tier);
        self
    }

    /// Adds keys that [`CachedStore::prefetch`] reads.
    pub fn prefetch_keys(mut self, keys: impl IntoIterator<Item = CredentialKey>) -> Self {
        self.prefetch.keys.extend(keys);
        self
    }

    /// Makes [`CachedStore::prefetch`] read every key that starts with
    /// `prefix` too (listed at start); an empty prefix is every key.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `prefix` when no key can start with
    /// it, before any I/O.
    pub fn prefetch_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let options = ListOptions::new().with_prefix(prefix)?;
        self.prefetch.prefix = Some(options.prefix().to_owned());
        Ok(self)
    }

    /// The bound of the random delay before [`CachedStore::prefetch`]
    /// reads, and of the spread of its batches (default
    /// [`DEFAULT_PREFETCH_JITTER`], 1 s); zero reads at once.
    pub fn prefetch_jitter(mut self, jitter: Duration) -> Self {
        self.prefetch.jitter = jitter;
        self
    }

    /// Like [`CacheLayer::with_ttl`], for settings given after the tier.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.layer = self.layer.with_ttl(ttl);
        self
    }

    /// Like [`CacheLayer::with_max_stale`], for settings given after the
    /// tier.
    pub fn with_max_stale(mut self, max_stale: Duration) -> Self {
        self.layer = self.layer.with_max_stale(max_stale);
        self
    }

    /// Like [`CacheLayer::with_max_entries`], for settings given after the
    /// tier.
    pub fn with_max_entries(mut self, max_entries: usize) -> Self {
        self.layer = self.layer.with_max_entries(max_entries);
        self
    }

    /// The copyable settings.
    pub fn settings(&self) -> &CacheLayer {
        &self.layer
    }

    /// The durable tier, if one was given.
    pub fn durable_tier(&self) -> Option<&Arc<dyn CredentialStore>> {
        self.durable.as_ref()
    }

    /// The keys given to [`prefetch_keys`](Self::prefetch_keys).
    pub fn prefetched_keys(&self) -> &[CredentialKey] {
        &self.prefetch.keys
    }

    /// The prefix given to [`prefetch_prefix`](Self::prefetch_prefix).
    pub fn prefetched_prefix(&self) -> Option<&str> {
        self.prefetch.prefix.as_deref()
    }

    /// The bound of the prefetch's jitter.
    pub fn jitter(&self) -> Duration {
        self.prefetch.jitter
    }

    /// Wraps `inner`; see [`CacheLayer::build`].
    pub fn build(&self, inner: Arc<dyn CredentialStore>) -> Arc<CachedStore> {
        let cache = Cache::new(self, &inner);
        Arc::new(CachedStore::over(inner, cache))
    }
}

impl Layer for CacheBuilder {
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
    /// Entries (and reads under way) dropped because the store's change
    /// feed reported their key changed.
    pub feed_invalidations: u64,
    /// Times the cache lost the store's change feed (it reported changes
    /// missed, ended, or could not be set up) and fell back to its TTL.
    pub feed_lost: u64,
    /// Whether the cache follows a change feed now: false for a store
    /// without one, before the first read, and while it is lost.
    pub feed_live: bool,
    /// Reads answered from the durable tier because the store was
    /// unavailable (see "Durable tier" on [`CacheLayer`]).
    pub durable_served: u64,
    /// Updates of the durable tier that landed: entries written or removed.
    pub durable_written: u64,
    /// Updates of the durable tier that failed or were not made (the
    /// writer too far behind, a value too large for the tier); each is
    /// logged at `warn`.
    pub durable_failed: u64,
    /// Values cached by [`CachedStore::prefetch`].
    pub prefetched: u64,
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
    feed_invalidations: AtomicU64,
    feed_lost: AtomicU64,
    durable_served: AtomicU64,
    prefetched: AtomicU64,
}

fn bump(counter: &AtomicU64, n: u64) {
    if n > 0 {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl Counters {
    fn snapshot(&self, entries: usize, feed_live: bool, durable: Option<&Durable>) -> CacheStats {
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
            feed_invalidations: get(&self.feed_invalidations),
            feed_lost: get(&self.feed_lost),
            feed_live,
            durable_served: get(&self.durable_served),
            durable_written: durable.map_or(0, |d| get(&d.written)),
            durable_failed: durable.map_or(0, |d| get(&d.failed)),
            prefetched: get(&self.prefetched),
        }
    }
}

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
    /// The stamp of its last use (see [`Cache::touch`]); hits raise it under
    /// a read lock.
    used: AtomicU64,
    /// The stamp the LRU index files it under: `used` when it was indexed,
    /// so never more than `used`.
    indexed: u64,
    /// Unique per entry: ties in the indexes are impossible.
    seq: u64,
}

/// One namespace's entries and the reads of its keys under way, shared by
/// every handle on the namespace. A hit takes its read lock only.
struct Space {
    namespace: Namespace,
    slots: RwLock<Slots>,
}

#[derive(Default)]
struct Slots {
    entries: HashMap<CredentialKey, Entry>,
    flights: HashMap<CredentialKey, Flight>,
}

/// Where an entry lives, as the cache-wide indexes hold it.
#[derive(Clone)]
struct SlotRef {
    space: Arc<Space>,
    key: CredentialKey,
}

/// The cache-wide order of the entries of every namespace. Entries are
/// added and removed only with this locked (then their space's write lock),
/// so it always files exactly the entries there are.
#[derive(Default)]
struct Index {
    /// Use order, lazily: an entry is filed under the stamp it had when it
    /// was filed; one used since is filed again under its newer stamp when
    /// it reaches the front, so the front is the least recently used.
    lru: BTreeMap<(u64, u64), SlotRef>,
    /// Drop order.
    deadlines: BTreeMap<(Instant, u64), SlotRef>,
    len: usize,
}

/// What a change of the cache removed: released after the locks are.
#[derive(Default)]
struct Dropped {
    entries: Vec<Entry>,
    slots: Vec<SlotRef>,
    flights: Vec<Flight>,
}

/// Removes `key`'s entry from `slots` and the index.
fn unlink(index: &mut Index, slots: &mut Slots, key: &CredentialKey, dropped: &mut Dropped) -> bool {
    let Some(entry) = slots.entries.remove(key) else { return false };
    dropped.slots.extend(index.lru.remove(&(entry.indexed, entry.seq)));
    dropped.slots.extend(index.deadlines.remove(&(entry.retain_until, entry.seq)));
    index.len -= 1;
    dropped.entries.push(entry);
    true
}

/// Files `entry` under `key` (which holds none) in `slots` and the index.
fn link(index: &mut Index, slots: &mut Slots, space: &Arc<Space>, key: &CredentialKey, entry: Entry) {
    let slot = SlotRef { space: Arc::clone(space), key: key.clone() };
    index.lru.insert((entry.indexed, entry.seq), slot.clone());
    index.deadlines.insert((entry.retain_until, entry.seq), slot);
    index.len += 1;
    slots.entries.insert(key.clone(), entry);
}

impl Index {
    /// Removes every entry whose time is up; returns how many.
    fn sweep(&mut self, now: Instant, dropped: &mut Dropped) -> u64 {
        let mut expired = 0;
        while let Some((&(at, _), _)) = self.deadlines.first_key_value() {
            if at > now {
                break;
            }
            let Some((_, slot)) = self.deadlines.pop_first() else { break };
            let mut slots = write(&slot.space.slots);
            expired += u64::from(unlink(self, &mut slots, &slot.key, dropped));
            drop(slots);
            dropped.slots.push(slot);
        }
        expired
    }

    /// Evicts least recently used entries until at most `max_entries` are
    /// left; returns how many. Takes each victim's space lock in turn, so
    /// the caller holds none.
    fn evict(&mut self, max_entries: usize, dropped: &mut Dropped) -> u64 {
        let mut evicted = 0;
        while self.len > max_entries {
            let Some(((filed, seq), slot)) = self.lru.pop_first() else { break };
            let mut slots = write(&slot.space.slots);
            let Some(entry) = slots.entries.get_mut(&slot.key) else {
                drop(slots);
                dropped.slots.push(slot);
                continue;
            };
            let used = *entry.used.get_mut();
            if used > filed {
                // Used since it was filed: file it again where it belongs.
                entry.indexed = used;
                drop(slots);
                self.lru.insert((used, seq), slot);
                continue;
            }
            evicted += u64::from(unlink(self, &mut slots, &slot.key, dropped));
            drop(slots);
            dropped.slots.push(slot);
        }
        evicted
    }
}

/// The cache of one cached store, shared by all its namespace handles.
///
/// Locks, always taken in this order: `index`, then one space's `slots`;
/// `spaces` alone. A hit takes one space's read lock and nothing else.
struct Cache {
    config: CacheLayer,
    counters: Counters,
    /// The origin of `next_due`.
    epoch: Instant,
    /// The last use stamp handed out.
    clock: AtomicU64,
    /// Flight ids and entry sequence numbers.
    ids: AtomicU64,
    /// When the first entry's time is up, in nanoseconds after `epoch`
    /// (`u64::MAX`: never), so a call checks without a lock whether to sweep.
    next_due: AtomicU64,
    index: Mutex<Index>,
    /// The space of every namespace that has entries, reads under way or
    /// handles.
    spaces: Mutex<HashMap<Namespace, Arc<Space>>>,
    /// Wakes the sweeper when a deadline earlier than the one it sleeps
    /// until is filed. Shared with it, so that it waits without keeping the
    /// cache alive.
    wake: Arc<Notify>,
    /// The task that drops entries when their time is up ([`sweep_on_time`]):
    /// started on the runtime that files the first entry, and again on a
    /// later one if that runtime has ended.
    sweeper: Mutex<Option<JoinHandle<()>>>,
    /// This cache, for the sweeper and the feed's task to hold weakly.
    me: Weak<Cache>,
    /// The store's change feed, when it has one.
    feed: Option<Feed>,
    /// The wrapped store's clock, which decides when a credential expires
    /// and dates what the durable tier keeps.
    store_clock: Arc<dyn Clock>,
    /// The durable second tier, if the cache has one.
    durable: Option<Arc<Durable>>,
    /// What [`CachedStore::prefetch`] reads.
    plan: prefetch::Plan,
    /// Raised by every invalidation, so that a prefetch does not cache what
    /// was read before one.
    invalidations: AtomicU64,
}

/// What a cache knows of the change feed it follows.
struct Feed {
    /// The store the cached store was built over: its feed reports the
    /// changes of every namespace of the cache, relative to its namespace.
    source: Arc<dyn CredentialStore>,
    /// The task that follows the feed ([`follow_changes`]): started by the
    /// first read that goes to the store, and again on a later one if its
    /// runtime has ended.
    task: Mutex<Option<JoinHandle<()>>>,
    /// [`FEED_IDLE`], [`FEED_LIVE`] or [`FEED_DOWN`].
    state: AtomicU8,
}

/// Not subscribed yet.
const FEED_IDLE: u8 = 0;
/// Following the feed: another writer's change is dropped when reported.
const FEED_LIVE: u8 = 1;
/// Lost: the cache falls back to its TTL until the feed is restored.
const FEED_DOWN: u8 = 2;

impl Drop for Cache {
    fn drop(&mut self) {
        if let Some(durable) = &self.durable {
            durable.close();
        }
        if let Some(task) = self.sweeper.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        if let Some(feed) = &mut self.feed {
            if let Some(task) = feed.task.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
                task.abort();
            }
        }
    }
}

type Subscribing = BoxFuture<'static, Result<ChangeFeed>>;

/// How [`follow_changes`] starts, or goes on after a failure.
enum Follow {
    /// With a feed that is live (and marked so).
    Feed(ChangeFeed),
    /// With a subscription under way.
    Subscribing(Subscribing),
    /// By waiting, then subscribing again.
    Retry,
}

fn subscribing(source: &Arc<dyn CredentialStore>) -> Subscribing {
    let source = Arc::clone(source);
    Box::pin(async move { source.subscribe().await })
}

/// Marks the feed down if the task following it is dropped while the cache
/// lives (its runtime ended): nobody follows the feed any more.
struct FeedTaskGuard(Weak<Cache>);

impl Drop for FeedTaskGuard {
    fn drop(&mut self) {
        if let Some(feed) = self.0.upgrade().as_ref().and_then(|c| c.feed.as_ref()) {
            feed.state.store(FEED_DOWN, Ordering::Relaxed);
        }
    }
}

/// Follows the change feed of `source` for `cache`: applies each event,
/// and subscribes again with a bounded backoff when the subscription fails
/// or the feed ends. Holds the cache only while it applies an event, and
/// ends when the cache is gone.
async fn follow_changes(cache: Weak<Cache>, source: Arc<dyn CredentialStore>, mut next: Follow) {
    let _guard = FeedTaskGuard(cache.clone());
    let mut backoff = FEED_RETRY_FIRST;
    loop {
        let mut feed = match next {
            Follow::Feed(feed) => feed,
            Follow::Subscribing(subscribing) => {
                let subscribed = subscribing.await;
                let Some(cache) = cache.upgrade() else { return };
                match subscribed {
                    Ok(feed) => {
                        cache.feed_up();
                        feed
                    }
                    Err(e) => {
                        cache.feed_down(&format!("subscribing failed: {e}"), Some(backoff));
                        next = Follow::Retry;
                        continue;
                    }
                }
            }
            Follow::Retry => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(FEED_RETRY_MAX);
                if cache.strong_count() == 0 {
                    return;
                }
                next = Follow::Subscribing(subscribing(&source));
                continue;
            }
        };
        while let Some(event) = feed.next().await {
            let Some(cache) = cache.upgrade() else { return };
            if matches!(event, FeedEvent::Changed(_)) {
                backoff = FEED_RETRY_FIRST;
            }
            cache.feed_event(event);
        }
        let Some(cache) = cache.upgrade() else { return };
        cache.feed_down("the change feed ended", Some(backoff));
        next = Follow::Retry;
    }
}

/// Drops the entries of `cache` when their time is up, whether or not
/// anyone calls it: sleeps until the next deadline (or, while the cache is
/// empty, until woken), and ends when the cache is gone. It holds the cache
/// only while it sweeps, never while it sleeps.
async fn sweep_on_time(cache: Weak<Cache>, wake: Arc<Notify>) {
    loop {
        let due = {
            let Some(cache) = cache.upgrade() else { return };
            cache.sweep_if_due(Instant::now());
            cache.due_at()
        };
        match due {
            // A millisecond late, so that the deadline has surely passed
            // when it wakes (tokio's timer has millisecond resolution).
            Some(at) => tokio::select! {
                () = tokio::time::sleep_until(at + Duration::from_millis(1)) => {}
                () = wake.notified() => {}
            },
            None => wake.notified().await,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
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
    fn new(builder: &CacheBuilder, inner: &Arc<dyn CredentialStore>) -> Arc<Self> {
        let config = builder.layer;
        let feed = inner.info().capabilities().change_feed.then(|| Feed {
            source: Arc::clone(inner),
            task: Mutex::new(None),
            state: AtomicU8::new(FEED_IDLE),
        });
        Arc::new_cyclic(|me| Self {
            config,
            counters: Counters::default(),
            epoch: Instant::now(),
            clock: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            next_due: AtomicU64::new(u64::MAX),
            index: Mutex::new(Index::default()),
            spaces: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            sweeper: Mutex::new(None),
            me: me.clone(),
            feed,
            store_clock: Arc::clone(inner.info().clock()),
            durable: builder.durable.as_ref().map(|tier| Durable::new(tier, inner.info().id())),
            plan: builder.prefetch.clone(),
            invalidations: AtomicU64::new(0),
        })
    }

    /// Whether the cache follows a live change feed.
    fn feed_live(&self) -> bool {
        self.feed.as_ref().is_some_and(|f| f.state.load(Ordering::Relaxed) == FEED_LIVE)
    }

    /// Starts following the store's change feed, if it has one and nobody
    /// follows it yet: before a read goes to the store, so that the read's
    /// answer is dropped when the feed reports a later change. A
    /// subscription that completes at once (a store in this process) is
    /// live before this returns; one that needs I/O completes in the task.
    fn follow_feed(&self) {
        let Some(feed) = &self.feed else { return };
        let mut task = lock(&feed.task);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let mut pending = subscribing(&feed.source);
        let start = match (&mut pending).now_or_never() {
            None => Follow::Subscribing(pending),
            Some(Ok(subscribed)) => {
                self.feed_up();
                Follow::Feed(subscribed)
            }
            Some(Err(e)) => {
                self.feed_down(&format!("subscribing failed: {e}"), Some(FEED_RETRY_FIRST));
                Follow::Retry
            }
        };
        *task = Some(runtime.spawn(follow_changes(self.me.clone(), Arc::clone(&feed.source), start)));
    }

    /// The feed is live: when it was lost before, every entry is dropped,
    /// since those read meanwhile may have missed a change it did not
    /// report.
    fn feed_up(&self) {
        let Some(feed) = &self.feed else { return };
        match feed.state.swap(FEED_LIVE, Ordering::Relaxed) {
            FEED_DOWN => {
                self.clear_everything();
                tracing::info!(
                    store = %feed.source.info().id(),
                    "the change feed is restored: the cache dropped its entries and again drops what \
                     another writer changes as soon as the feed reports it"
                );
            }
            FEED_IDLE => {
                tracing::debug!(store = %feed.source.info().id(), "the cache follows the change feed")
            }
            _ => {}
        }
    }

    /// The feed is lost (changes may have been missed, it ended, or it
    /// could not be set up): every entry is dropped, and the cache falls
    /// back to its TTL until the feed is restored. Counted and logged once
    /// per loss.
    /// `retry_in`: when the cache subscribes again, if it must (a feed that
    /// reported a loss goes on by itself).
    fn feed_down(&self, reason: &str, retry_in: Option<Duration>) {
        let Some(feed) = &self.feed else { return };
        self.clear_everything();
        let store = feed.source.info().id();
        let retry_ms = retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        if feed.state.swap(FEED_DOWN, Ordering::Relaxed) == FEED_DOWN {
            tracing::debug!(store = %store, reason, retry_ms, "the change feed is still lost");
            return;
        }
        bump(&self.counters.feed_lost, 1);
        tracing::warn!(
            store = %store,
            reason,
            retry_ms,
            "the change feed is lost: the cache dropped its entries and falls back to its TTL until the \
             feed is restored"
        );
    }

    /// Applies one event of the feed.
    fn feed_event(&self, event: FeedEvent) {
        match event {
            FeedEvent::Changed(change) => self.feed_changed(&change),
            // The feed goes on by itself: no need to subscribe again.
            FeedEvent::Lost { reason } => self.feed_down(&reason, None),
            FeedEvent::Restored => self.feed_up(),
            _ => {}
        }
    }

    /// Drops the entry of the changed key, unless it holds exactly the
    /// reported version, and detaches a read of it under way, so that an
    /// older answer is not cached.
    fn feed_changed(&self, change: &Change) {
        let Some(feed) = &self.feed else { return };
        // A namespace too long to join holds no entry of this cache.
        let Ok(namespace) = feed.source.info().namespace().join(&change.namespace) else { return };
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        let Some(space) = lock(&self.spaces).get(&namespace).cloned() else {
            // Nothing in memory, but the durable tier may hold the key from
            // before a restart.
            if self.owe_removal(&namespace, &change.key) {
                self.wake_durable();
            }
            return;
        };
        let (dropped, owed) = self.with_index(Instant::now(), |index, _, dropped| {
            let mut slots = write(&space.slots);
            let held = slots.entries.get(&change.key).map(|e| e.credential.as_ref().map(|c| &c.version));
            if held == Some(change.version.as_ref()) {
                return (false, false);
            }
            let owed = self.owe_removal(&namespace, &change.key);
            let unlinked = unlink(index, &mut slots, &change.key, dropped);
            let detached = slots.flights.remove(&change.key);
            let any = unlinked || detached.is_some();
            dropped.flights.extend(detached);
            (any, owed)
        });
        if dropped {
            bump(&self.counters.feed_invalidations, 1);
        }
        if owed {
            self.wake_durable();
        }
        self.prune(&space);
    }

    /// Forgets every entry and read under way of every namespace.
    fn clear_everything(&self) {
        let spaces: Vec<Arc<Space>> = lock(&self.spaces).values().cloned().collect();
        self.clear(&spaces);
        for space in &spaces {
            self.prune(space);
        }
    }

    /// When the first entry's time is up, if the cache holds any.
    fn due_at(&self) -> Option<Instant> {
        let due = self.next_due.load(Ordering::Relaxed);
        (due != u64::MAX).then(|| self.epoch + Duration::from_nanos(due))
    }

    /// Tells the sweeper that an earlier deadline was filed, starting it
    /// first if it is not running (outside a tokio runtime it cannot be, and
    /// entries are then dropped by the next call, as before).
    fn wake_sweeper(&self) {
        let mut task = lock(&self.sweeper);
        if task.as_ref().is_none_or(JoinHandle::is_finished) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
            *task = Some(runtime.spawn(sweep_on_time(self.me.clone(), Arc::clone(&self.wake))));
        }
        drop(task);
        self.wake.notify_one();
    }

    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// A new use stamp, later than every one handed out before.
    fn stamp(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Marks `entry` as just used. An entry that already holds the latest
    /// stamp is left as it is, so a key read over and over costs no write to
    /// shared memory. Reads by one thread keep the exact use order;
    /// concurrent hits are ordered among themselves arbitrarily.
    fn touch(&self, entry: &Entry) {
        if entry.used.load(Ordering::Relaxed) != self.clock.load(Ordering::Relaxed) {
            entry.used.store(self.stamp(), Ordering::Relaxed);
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The space of `namespace`, shared by every handle on it.
    fn space(&self, namespace: &Namespace) -> Arc<Space> {
        let mut spaces = lock(&self.spaces);
        let space = spaces.entry(namespace.clone()).or_insert_with(|| {
            Arc::new(Space { namespace: namespace.clone(), slots: RwLock::new(Slots::default()) })
        });
        Arc::clone(space)
    }

    /// Forgets `space` when the caller's reference is the last one besides
    /// the registry's: no handle, entry or read under way needs it, and
    /// none can get it but through the registry, which is locked.
    fn prune(&self, space: &Arc<Space>) {
        let mut spaces = lock(&self.spaces);
        if Arc::strong_count(space) == 2
            && spaces.get(&space.namespace).is_some_and(|s| Arc::ptr_eq(s, space))
        {
            spaces.remove(&space.namespace);
        }
    }

    /// Releases what a change removed (values, flights, slots), outside
    /// every lock.
    fn release(&self, dropped: Dropped) {
        drop(dropped.entries);
        drop(dropped.flights);
        for slot in dropped.slots {
            self.prune(&slot.space);
        }
    }

    /// Runs `f` on the index after dropping what is due; what is removed is
    /// released after the lock is.
    fn with_index<R>(&self, now: Instant, f: impl FnOnce(&mut Index, Instant, &mut Dropped) -> R) -> R {
        let mut dropped = Dropped::default();
        let (result, earlier) = {
            let mut index = lock(&self.index);
            let expired = index.sweep(now, &mut dropped);
            bump(&self.counters.expirations, expired);
            let result = f(&mut index, now, &mut dropped);
            let due = index.deadlines.first_key_value().map_or(u64::MAX, |(&(at, _), _)| self.nanos(at));
            (result, due < self.next_due.swap(due, Ordering::Relaxed))
        };
        self.release(dropped);
        if earlier {
            self.wake_sweeper();
        }
        result
    }

    /// Drops what is due, if anything is: a lock-free check otherwise.
    fn sweep_if_due(&self, now: Instant) {
        if self.nanos(now) >= self.next_due.load(Ordering::Relaxed) {
            self.with_index(now, |_, _, _| ());
        }
    }

    /// Whether `credential` is past its `expires_at` by the wrapped store's
    /// clock: such an entry is never answered, whatever its TTL. Reads the
    /// clock only for a credential that expires.
    fn expired(&self, credential: Option<&Credential>) -> bool {
        credential.and_then(|c| c.expires_at).is_some_and(|at| at <= self.store_clock.now())
    }

    /// Whether `entry` may answer a read at `now`: fresh, and not expired.
    fn usable(&self, entry: &Entry, now: Instant) -> bool {
        entry.fresh_until > now && !self.expired(entry.credential.as_ref())
    }

    /// The answer of `key`'s fresh entry in `space`, through `answer`, with
    /// the entry marked as used; under the space's read lock only.
    fn hit<T>(
        &self,
        space: &Space,
        key: &CredentialKey,
        now: Instant,
        answer: impl FnOnce(Option<&Credential>) -> T,
    ) -> Option<T> {
        let slots = read(&space.slots);
        let entry = slots.entries.get(key).filter(|e| self.usable(e, now))?;
        self.touch(entry);
        Some(answer(entry.credential.as_ref()))
    }

    /// A fresh entry's answer through `answer`, counted as a hit, or `None`,
    /// counted as a miss.
    fn fresh<T>(
        &self,
        space: &Space,
        key: &CredentialKey,
        answer: impl FnOnce(Option<&Credential>) -> T,
    ) -> Option<T> {
        let now = Instant::now();
        self.sweep_if_due(now);
        let found = self.hit(space, key, now, answer);
        bump(if found.is_some() { &self.counters.hits } else { &self.counters.misses }, 1);
        found
    }

    /// Forgets `key` in `space` and detaches any read of it under way, so
    /// that its answer is not cached.
    fn invalidate(&self, space: &Arc<Space>, key: &CredentialKey) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.with_index(Instant::now(), |index, _, dropped| {
            let mut slots = write(&space.slots);
            unlink(index, &mut slots, key, dropped);
            dropped.flights.extend(slots.flights.remove(key));
        });
    }

    /// Forgets every entry and read under way of `spaces`.
    fn clear(&self, spaces: &[Arc<Space>]) {
        self.invalidations.fetch_add(1, Ordering::Relaxed);
        self.with_index(Instant::now(), |index, _, dropped| {
            for space in spaces {
                let mut slots = write(&space.slots);
                let keys: Vec<CredentialKey> = slots.entries.keys().cloned().collect();
                for key in &keys {
                    unlink(index, &mut slots, key, dropped);
                }
                dropped.flights.extend(slots.flights.drain().map(|(_, f)| f));
            }
        });
    }

    fn entry_for(&self, found: Option<Credential>, now: Instant) -> Option<Entry> {
        if self.expired(found.as_ref()) {
            return None;
        }
        let config = &self.config;
        let (fresh_for, stale_for) = match found {
            Some(_) => (config.ttl, config.max_stale()),
            None => (config.negative_ttl, Duration::ZERO),
        };
        if fresh_for.is_zero() || config.max_entries == 0 {
            return None;
        }
        let fresh_until = later(now, fresh_for);
        let stamp = self.stamp();
        Some(Entry {
            credential: found,
            fresh_until,
            retain_until: later(fresh_until, stale_for),
            used: AtomicU64::new(stamp),
            indexed: stamp,
            seq: self.next_id(),
        })
    }

    /// Applies what flight `id` learned, unless a write, an invalidation or
    /// a refresh detached it meanwhile.
    /// `fetched_at`: when the read started, by the store's clock (read only
    /// when there is a durable tier to tell).
    fn complete(
        &self,
        space: &Arc<Space>,
        key: &CredentialKey,
        id: u64,
        fetched: &Fetched,
        fetched_at: Option<SystemTime>,
    ) {
        let owed = self.with_index(Instant::now(), |index, now, dropped| {
            let mut slots = write(&space.slots);
            if slots.flights.get(key).map(|f| f.id) != Some(id) {
                return false;
            }
            dropped.flights.extend(slots.flights.remove(key));
            // Owed under the lock that decided it: a write's removal that
            // detached this read comes after it, never before.
            let owed = self.owe_fetched(&space.namespace, key, fetched, fetched_at);
            let found = match fetched {
                Fetched::Loaded(found) => found.clone(),
                Fetched::Revalidated(credential) => {
                    bump(&self.counters.revalidations, 1);
                    Some(credential.clone())
                }
                // Kept for stale-if-error until its time is up.
                Fetched::Failed(e) if e.is_retriable() => return owed,
                Fetched::Failed(_) => {
                    unlink(index, &mut slots, key, dropped);
                    return owed;
                }
            };
            unlink(index, &mut slots, key, dropped);
            let Some(entry) = self.entry_for(found, now) else { return owed };
            link(index, &mut slots, space, key, entry);
            drop(slots);
            let evicted = index.evict(self.config.max_entries, dropped);
            bump(&self.counters.evictions, evicted);
            owed
        });
        if owed {
            self.wake_durable();
        }
    }

    /// Queues for the durable tier what a read learned: the value (fetched
    /// at `fetched_at`), or the removal of a key that is absent or expired.
    /// Returns whether anything was queued.
    fn owe_fetched(
        &self,
        namespace: &Namespace,
        key: &CredentialKey,
        fetched: &Fetched,
        fetched_at: Option<SystemTime>,
    ) -> bool {
        let (Some(durable), Some(fetched_at)) = (&self.durable, fetched_at) else { return false };
        let owed = match fetched {
            Fetched::Loaded(Some(c)) | Fetched::Revalidated(c) if !self.expired(Some(c)) => {
                Owed::Put(c.clone(), fetched_at)
            }
            Fetched::Loaded(_) | Fetched::Revalidated(_) => Owed::Remove,
            Fetched::Failed(_) => return false,
        };
        durable.owe(namespace, key, owed);
        true
    }

    /// Queues the removal of `key`'s durable entry (a write through the
    /// cache, or another writer's change the feed reported).
    fn owe_removal(&self, namespace: &Namespace, key: &CredentialKey) -> bool {
        let Some(durable) = &self.durable else { return false };
        durable.owe(namespace, key, Owed::Remove);
        true
    }

    /// Starts the durable tier's writer on what was queued.
    fn wake_durable(&self) {
        if let Some(durable) = &self.durable {
            durable.wake();
        }
    }

    /// Puts a value the durable tier served, fetched `age` ago, in memory as
    /// if it had been read then: fresh for what is left of its TTL, kept for
    /// `max_stale` after. Leaves an entry that is there alone, and puts
    /// nothing when an invalidation happened since `before` (a write through
    /// the cache may have removed the value while it was read).
    fn fill(
        &self,
        space: &Arc<Space>,
        key: &CredentialKey,
        credential: &Credential,
        age: Duration,
        before: u64,
    ) {
        let config = &self.config;
        if config.ttl.is_zero() || config.max_entries == 0 {
            return;
        }
        self.with_index(Instant::now(), |index, now, dropped| {
            let mut slots = write(&space.slots);
            if slots.entries.contains_key(key) || self.invalidations.load(Ordering::Relaxed) != before {
                return;
            }
            // Counted from now, so that a time before the monotonic clock's
            // origin can only make it shorter.
            let left = config.ttl.saturating_add(config.max_stale()).saturating_sub(age);
            if left.is_zero() {
                return;
            }
            let retain_until = later(now, left);
            let fresh_until = match age.checked_sub(config.ttl) {
                None => later(now, config.ttl - age),
                Some(past) => now.checked_sub(past).unwrap_or(now),
            };
            let stamp = self.stamp();
            let entry = Entry {
                credential: Some(credential.clone()),
                fresh_until,
                retain_until,
                used: AtomicU64::new(stamp),
                indexed: stamp,
                seq: self.next_id(),
            };
            link(index, &mut slots, space, key, entry);
            drop(slots);
            let evicted = index.evict(config.max_entries, dropped);
            bump(&self.counters.evictions, evicted);
        });
    }

    /// Caches what a batch read of the store found (`found`, in the order
    /// of `keys`, which are unique): values, and misses when negative caching
    /// is on, replacing what entries held; a key with a read under way keeps
    /// that read's answer. Nothing is cached when an invalidation happened
    /// since `before`: the batch could be older than the change. The durable
    /// tier is owed the same. Returns how many values it cached.
    fn store_batch(
        &self,
        space: &Arc<Space>,
        keys: &[CredentialKey],
        found: &[Option<Credential>],
        before: u64,
        fetched_at: Option<SystemTime>,
    ) -> usize {
        let (cached, owed) = self.with_index(Instant::now(), |index, now, dropped| {
            let mut slots = write(&space.slots);
            if self.invalidations.load(Ordering::Relaxed) != before {
                return (0, false);
            }
            let (mut cached, mut owed) = (0, false);
            for (key, credential) in keys.iter().zip(found) {
                if slots.flights.contains_key(key) {
                    continue;
                }
                let loaded = Fetched::Loaded(credential.clone());
                owed |= self.owe_fetched(&space.namespace, key, &loaded, fetched_at);
                unlink(index, &mut slots, key, dropped);
                if let Some(entry) = self.entry_for(credential.clone(), now) {
                    cached += usize::from(credential.is_some());
                    link(index, &mut slots, space, key, entry);
                }
            }
            drop(slots);
            let evicted = index.evict(self.config.max_entries, dropped);
            bump(&self.counters.evictions, evicted);
            (cached, owed)
        });
        if owed {
            self.wake_durable();
        }
        cached
    }

    /// After a retriable error: the value kept for `key`, if its time is not
    /// up, and how long ago it stopped being fresh (zero if it is fresh).
    fn kept(&self, space: &Space, key: &CredentialKey) -> Option<(Credential, Duration)> {
        let now = Instant::now();
        self.sweep_if_due(now);
        let slots = read(&space.slots);
        let entry = slots.entries.get(key).filter(|e| e.retain_until > now)?;
        let credential = entry.credential.clone().filter(|c| !self.expired(Some(c)))?;
        Some((credential, now.saturating_duration_since(entry.fresh_until)))
    }
}

/// Detaches a flight when it ends without completing (every caller gave
/// up), so the next read starts a new one.
struct FlightGuard {
    cache: Arc<Cache>,
    space: Arc<Space>,
    key: CredentialKey,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let detached = {
            let mut slots = write(&self.space.slots);
            match slots.flights.get(&self.key) {
                Some(f) if f.id == self.id => slots.flights.remove(&self.key),
                _ => None,
            }
        };
        drop(detached);
        self.cache.prune(&self.space);
    }
}

/// Invalidates a key when a write through the cache ends, however it ends
/// (a cancelled write may have landed).
struct InvalidateOnDrop<'a> {
    store: &'a CachedStore,
    key: &'a CredentialKey,
}

impl Drop for InvalidateOnDrop<'_> {
    fn drop(&mut self) {
        self.store.invalidate(self.key);
        // Queued after the invalidation, which detached any read that could
        // queue an older value: the removal lands last.
        if self.store.cache.owe_removal(&self.store.space.namespace, self.key) {
            self.store.cache.wake_durable();
        }
    }
}

/// A store wrapped by [`CacheLayer`]; see there for its behaviour.
pub struct CachedStore {
    inner: Arc<dyn CredentialStore>,
    /// The entries of the inner handle's namespace.
    space: Arc<Space>,
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

impl Drop for CachedStore {
    fn drop(&mut self) {
        self.cache.prune(&self.space);
    }
}

impl CachedStore {
    fn over(inner: Arc<dyn CredentialStore>, cache: Arc<Cache>) -> Self {
        let space = cache.space(inner.info().namespace());
        Self { inner, space, cache }
    }

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
        let entries = lock(&self.cache.index).len;
        self.cache.counters.snapshot(entries, self.cache.feed_live(), self.cache.durable.as_deref())
    }

    /// How many entries this handle's namespace holds now.
    pub fn namespace_entries(&self) -> usize {
        read(&self.space.slots).entries.len()
    }

    /// Like [`CredentialStore::with_namespace`], typed, so the cache's
    /// counters and controls stay reachable.
    ///
    /// # Errors
    /// As for the wrapped store's `with_namespace`.
    pub fn cached_namespace(&self, namespace: &Namespace) -> Result<Arc<CachedStore>> {
        let inner = self.inner.with_namespace(namespace)?;
        Ok(Arc::new(CachedStore::over(inner, Arc::clone(&self.cache))))
    }

    /// Reads `key` from the store now, whatever the cache holds, and caches
    /// the answer; reads that start meanwhile wait for this one.
    ///
    /// # Errors
    /// The store's error, as is: a refresh never serves a stale value. After
    /// a retriable error the cached entry is kept as it was; after another
    /// it is dropped.
    pub async fn refresh(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.cache.sweep_if_due(Instant::now());
        self.cache.follow_feed();
        let (shared, detached) = {
            let mut slots = write(&self.space.slots);
            self.start_flight(&mut slots, key, None)
        };
        drop(detached);
        shared.await.0
    }

    /// Forgets `key` in this handle's namespace: the next read goes to the
    /// store.
    pub fn invalidate(&self, key: &CredentialKey) {
        self.cache.invalidate(&self.space, key);
    }

    /// Forgets every entry of this handle's namespace (nested namespaces are
    /// namespaces of their own); the values are released before this
    /// returns, and zeroized unless callers still hold clones.
    pub fn clear(&self) {
        self.cache.clear(std::slice::from_ref(&self.space));
    }

    /// Forgets every entry of every namespace.
    pub fn clear_all(&self) {
        self.cache.clear_everything();
    }

    /// Drops the entries whose time is up now. Every call to the cache does
    /// this already, and so does the cache's timer when a deadline passes
    /// (see "Gone on time" on [`CacheLayer`]); this is for an owner that
    /// wants it done at a moment of its choosing.
    pub fn purge_expired(&self) {
        self.cache.with_index(Instant::now(), |_, _, _| ());
    }

    /// Writes what the durable tier is owed now (the writer does so in the
    /// background as well), and returns once it has landed: for a graceful
    /// shutdown, or a test. Without a durable tier it does nothing.
    pub async fn flush_durable(&self) {
        if let Some(durable) = &self.cache.durable {
            durable.flush().await;
        }
    }

    /// Reads the keys given to [`CacheBuilder::prefetch_keys`] and those
    /// under [`CacheBuilder::prefetch_prefix`] (listed first), at most
    /// [`max_entries`](CacheLayer::max_entries) of them, into the cache
    /// (and its durable tier): after a random delay of at most the
    /// [jitter](CacheBuilder::prefetch_jitter), in batches of at most
    /// [`MAX_BATCH_KEYS`](credstore_core::MAX_BATCH_KEYS) through the store's
    /// [`get_many`](CredentialStore::get_many), each batch started at a
    /// random time within the jitter too, so that replicas starting together
    /// do not read at once. Returns how many values it cached (missing keys
    /// are not remembered; a key read meanwhile keeps that read's answer).
    /// A batch is not cached at all when anything was written or
    /// invalidated through the cache, or reported changed by its feed, while
    /// it was read: it could be older than the change. Without keys to read
    /// it returns 0 at once.
    ///
    /// # Errors
    /// The store's error from listing or from a batch; the batches read
    /// before it stay cached.
    pub async fn prefetch(&self) -> Result<usize> {
        let plan = &self.cache.plan;
        if plan.is_empty() {
            return Ok(0);
        }
        let start = Instant::now();
        let times = prefetch::schedule(1, plan.jitter);
        tokio::time::sleep_until(start + times[0]).await;
        let keys = plan.keys(self.inner.as_ref(), self.cache.config.max_entries).await?;
        let batches: Vec<&[CredentialKey]> = keys.chunks(credstore_core::MAX_BATCH_KEYS).collect();
        let elapsed = start.elapsed().min(plan.jitter);
        let times = prefetch::schedule(batches.len(), plan.jitter - elapsed);
        let mut cached = 0;
        for (batch, at) in batches.into_iter().zip(times) {
            tokio::time::sleep_until(start + elapsed + at).await;
            self.cache.follow_feed();
            let before = self.cache.invalidations.load(Ordering::Relaxed);
            let fetched_at = self.cache.durable.as_ref().map(|_| self.cache.store_clock.now());
            let found = self.inner.get_many(batch).await?;
            bump(&self.cache.counters.loads, 1);
            cached += self.cache.store_batch(&self.space, batch, &found, before, fetched_at);
        }
        bump(&self.cache.counters.prefetched, cached as u64);
        Ok(cached)
    }

    /// Forgets `key`'s durable entry after a write through the cache: now,
    /// and once more through the writer's queue, so that an older value it
    /// may be writing at this moment does not stay.
    async fn forget_durable(&self, key: &CredentialKey) {
        let Some(durable) = &self.cache.durable else { return };
        if self.cache.owe_removal(&self.space.namespace, key) {
            self.cache.wake_durable();
        }
        durable.remove_now(&self.space.namespace, key).await;
    }

    /// After the store failed with `error` and memory held nothing to
    /// serve: the durable tier's value of `key`, when the store is down
    /// ([`Error::Unavailable`]) and the value was fetched less than the TTL
    /// plus [`max_stale`](CacheLayer::max_stale) ago and has not expired;
    /// `error` otherwise.
    async fn served_durable(&self, key: &CredentialKey, error: Error) -> Result<Option<Credential>> {
        let Some(durable) = &self.cache.durable else { return Err(error) };
        if !matches!(error, Error::Unavailable { .. }) {
            return Err(error);
        }
        let before = self.cache.invalidations.load(Ordering::Relaxed);
        let Some(envelope) = durable.read(&self.space.namespace, key).await else { return Err(error) };
        let age = self.cache.store_clock.now().duration_since(envelope.fetched_at).unwrap_or(Duration::ZERO);
        let config = &self.cache.config;
        let limit = config.ttl.saturating_add(config.max_stale());
        let age_ms = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        if age >= limit || self.cache.expired(Some(&envelope.credential)) {
            tracing::warn!(
                store = %self.inner.info().id(),
                namespace = self.space.namespace.as_str(),
                key = key.as_str(),
                age_ms,
                limit_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "the store is unavailable and the durable cache's value is past max_stale or expired: not served"
            );
            return Err(error);
        }
        self.cache.fill(&self.space, key, &envelope.credential, age, before);
        bump(&self.cache.counters.durable_served, 1);
        tracing::warn!(
            store = %self.inner.info().id(),
            tier = %durable.tier_id(),
            namespace = self.space.namespace.as_str(),
            key = key.as_str(),
            age_ms,
            error = %error,
            "serving a value from the durable cache: the store is unavailable"
        );
        Ok(Some(envelope.credential))
    }

    /// Starts a flight for `key`, detaching any under way (returned, to be
    /// dropped once the lock is released).
    fn start_flight(
        &self,
        slots: &mut Slots,
        key: &CredentialKey,
        revalidate: Option<Credential>,
    ) -> (Shared<FlightFuture>, Option<Flight>) {
        let id = self.cache.next_id();
        let guard = FlightGuard {
            cache: Arc::clone(&self.cache),
            space: Arc::clone(&self.space),
            key: key.clone(),
            id,
        };
        let inner = Arc::clone(&self.inner);
        let future: FlightFuture = Box::pin(async move {
            bump(&guard.cache.counters.loads, 1);
            let fetched_at = guard.cache.durable.as_ref().map(|_| guard.cache.store_clock.now());
            let fetched = fetch(inner.as_ref(), &guard.key, revalidate).await;
            guard.cache.complete(&guard.space, &guard.key, guard.id, &fetched, fetched_at);
            let result = match fetched {
                Fetched::Loaded(found) => Ok(found),
                Fetched::Revalidated(credential) => Ok(Some(credential)),
                Fetched::Failed(e) => Err(e),
            };
            (result, Arc::new(AtomicBool::new(false)))
        });
        let shared = future.shared();
        let detached = match shared.downgrade() {
            Some(weak) => slots.flights.insert(key.clone(), Flight { id, shared: weak }),
            None => slots.flights.remove(key),
        };
        (shared, detached)
    }

    /// After a lock-free miss: a fresh answer (another read cached it
    /// meanwhile), or the flight to wait for: the one under way for the
    /// key, or a new one.
    fn lookup(&self, key: &CredentialKey, now: Instant) -> Lookup {
        self.cache.follow_feed();
        let (lookup, detached) = {
            let mut slots = write(&self.space.slots);
            if let Some(entry) = slots.entries.get(key).filter(|e| self.cache.usable(e, now)) {
                self.cache.touch(entry);
                (Lookup::Hit(entry.credential.clone()), None)
            } else if let Some(shared) = slots.flights.get(key).and_then(|f| f.shared.upgrade()) {
                (Lookup::Wait(shared), None)
            } else {
                let revalidate = match self.cache.config.revalidate {
                    true => slots
                        .entries
                        .get(key)
                        .filter(|e| e.retain_until > now)
                        .and_then(|e| e.credential.clone())
                        .filter(|c| !self.cache.expired(Some(c))),
                    false => None,
                };
                let (shared, detached) = self.start_flight(&mut slots, key, revalidate);
                (Lookup::Wait(shared), detached)
            }
        };
        drop(detached);
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
#[deny(clippy::missing_trait_methods)]
impl CredentialStore for CachedStore {
    fn info(&self) -> &StoreInfo {
        self.inner.info()
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(self.cached_namespace(namespace)?)
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        // The hit path: one clock read, one lookup under a read lock.
        let now = Instant::now();
        self.cache.sweep_if_due(now);
        if let Some(found) = self.cache.hit(&self.space, key, now, |c| c.cloned()) {
            bump(&self.cache.counters.hits, 1);
            return Ok(found);
        }
        let shared = match self.lookup(key, now) {
            Lookup::Hit(found) => return Ok(found),
            Lookup::Wait(shared) => shared,
        };
        let (result, logged) = shared.await;
        let error = match result {
            Err(e) if e.is_retriable() => e,
            other => return other,
        };
        let Some((credential, stale_for)) = self.cache.kept(&self.space, key) else {
            return self.served_durable(key, error).await;
        };
        if stale_for.is_zero() {
            // Another read cached a fresh value meanwhile.
            return Ok(Some(credential));
        }
        bump(&self.cache.counters.stale_served, 1);
        if !logged.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                store = %self.inner.info().id(),
                namespace = self.space.namespace.as_str(),
                key = key.as_str(),
                stale_ms = u64::try_from(stale_for.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "serving a stale cached value: the store failed with a retriable error"
            );
        }
        Ok(Some(credential))
    }

    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        credstore_core::check_batch(keys)?;
        // Hits as `get` has them; the misses in one batch read of the store.
        let now = Instant::now();
        self.cache.sweep_if_due(now);
        let mut answers: Vec<Option<Option<Credential>>> =
            keys.iter().map(|key| self.cache.hit(&self.space, key, now, |c| c.cloned())).collect();
        let mut missed: Vec<CredentialKey> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (key, answer) in keys.iter().zip(&answers) {
            if answer.is_none() && seen.insert(key) {
                missed.push(key.clone());
            }
        }
        bump(&self.cache.counters.hits, (keys.len() - answers.iter().filter(|a| a.is_none()).count()) as u64);
        if !missed.is_empty() {
            bump(&self.cache.counters.misses, answers.iter().filter(|a| a.is_none()).count() as u64);
            self.cache.follow_feed();
            let before = self.cache.invalidations.load(Ordering::Relaxed);
            let fetched_at = self.cache.durable.as_ref().map(|_| self.cache.store_clock.now());
            bump(&self.cache.counters.loads, 1);
            let found = match self.inner.get_many(&missed).await {
                Ok(found) => {
                    self.cache.store_batch(&self.space, &missed, &found, before, fetched_at);
                    found
                }
                // Each missed key through `get`, which serves what may be
                // served while the store fails (stale, or from the durable
                // tier) and counts it.
                Err(e) if e.is_retriable() => credstore_core::get_many_concurrently(self, &missed).await?,
                Err(e) => return Err(e),
            };
            let found: HashMap<&CredentialKey, &Option<Credential>> = missed.iter().zip(&found).collect();
            for (key, answer) in keys.iter().zip(answers.iter_mut()) {
                if answer.is_none() {
                    *answer = found.get(key).map(|c| (*c).clone());
                }
            }
        }
        Ok(answers.into_iter().map(Option::flatten).collect())
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let _invalidate = InvalidateOnDrop { store: self, key: request.key() };
        let outcome = self.inner.write(request).await;
        self.forget_durable(request.key()).await;
        outcome
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        match self.cache.fresh(&self.space, key, |c| c.is_some()) {
            Some(found) => Ok(found),
            None => self.inner.has(key).await,
        }
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        match self.cache.fresh(&self.space, key, |c| c.map(|c| c.version.clone())) {
            Some(version) => Ok(version),
            None => self.inner.version(key).await,
        }
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let _invalidate = InvalidateOnDrop { store: self, key };
        let deleted = self.inner.delete(key).await;
        self.forget_durable(key).await;
        deleted
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.inner.list(options).await
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        self.inner.subscribe().await
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.inner.get_version(key, version).await
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        self.inner.list_versions(key, options).await
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        let _invalidate = InvalidateOnDrop { store: self, key };
        let purged = self.inner.purge(key, target).await;
        self.forget_durable(key).await;
        purged
    }

    async fn check_availability(&self) -> Availability {
        self.inner.check_availability().await
    }
}

#[cfg(test)]
mod tests {
    use credstore_conformance::fixtures::ns;
    use credstore_core::{CredentialStoreExt, Metadata, SecretValue, StoreId};

    use super::*;

    /// A namespace's space is forgotten once no handle, entry or read
    /// needs it, so per-request handles on many namespaces leave nothing.
    #[test]
    fn spaces_are_forgotten_when_nothing_needs_them() {
        let inner = Arc::new(credstore_memory::MemoryStore::new(StoreId::new("m").expect("id")));
        let root = CacheLayer::new().build(inner);
        let spaces = || lock(&root.cache.spaces).len();
        assert_eq!(spaces(), 1, "the root handle's");
        let a = root.cached_namespace(&ns("a")).expect("ns");
        let again = root.cached_namespace(&ns("a")).expect("ns");
        assert!(Arc::ptr_eq(&a.space, &again.space), "handles on one namespace share its entries");
        assert_eq!(spaces(), 2);
        drop(a);
        assert_eq!(spaces(), 2, "a handle is left");
        drop(again);
        assert_eq!(spaces(), 1, "nothing needs the namespace any more");

        // One with an entry is kept until the entry goes.
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        let b = root.cached_namespace(&ns("b")).expect("ns");
        let key = CredentialKey::new("k").expect("key");
        rt.block_on(b.set(&key, &SecretValue::from("v"), &Metadata::new())).expect("set");
        rt.block_on(b.get(&key)).expect("get").expect("present");
        drop(b);
        assert_eq!(spaces(), 2, "its entry outlives the handle");
        let b = root.cached_namespace(&ns("b")).expect("ns");
        assert_eq!(b.namespace_entries(), 1, "and a new handle sees it");
        b.clear();
        drop(b);
        assert_eq!(spaces(), 1);
        assert_eq!(root.stats().entries, 0);
    }
}
